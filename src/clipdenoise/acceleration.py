"""Fast inference and training forms of a :class:`~clipdenoise.model.CLIPDenoiser`.

The model modules (``encoder``, ``decoder``, ``model``) stay the readable, reference-equivalent
definition, and ``CLIPDenoiser.forward`` is the only forward: this module *converts modules*
(as NAFNet's ``convert`` swaps layers) and never re-implements the computation.

* **BatchNorm folding.** The frozen CLIP encoder keeps its BatchNorm layers in eval mode, so each
  ``conv -> BN`` pair is one affine map and folds exactly into the convolution's weight and bias
  (:func:`fold_encoder_batchnorm`). Folding is done in float64 on a copy.
* **Inference conversion** (:func:`convert_for_inference`): a copy of the model with the folded
  encoder swapped in, weights cast once to the compute dtype (the output head stays float32) and
  laid out channels-last. :func:`prepare_for_inference` wraps it in an :class:`InferenceModel`
  that runs it under ``torch.inference_mode`` (and refuses ``train()``).
* **Reduced precision** (:func:`~clipdenoise.devices.resolve_dtype`): bfloat16 on CPUs with
  native bf16 instructions (AVX-512-BF16 or AMX), float16 on CUDA, float32 elsewhere. The output
  head (one 3×3 conv) stays in float32 because rounding the restored image to bf16 alone would
  cost ~65 dB PSNR against the float32 output; it is <1 % of the FLOPs.
* **Optional** ``torch.compile`` and CUDA-graph replay for fixed input shapes (tiles) on GPU.
* **Training conversion** (:func:`convert_for_training`): a model that *shares* the trained
  model's learnable modules (decoder, input adapter: the optimizer, checkpoints and
  ``state_dict`` keys see no difference) with the frozen encoder swapped for a folded copy cast
  to the compute dtype. The training step runs its own ``forward`` under autocast; gradients and
  the optimizer stay float32.

:func:`build_reference_equivalent` builds the computation of the reference implementation (stage
4 computed and thrown away, BatchNorm unfolded) as the baseline the benchmarks compare against.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from clipdenoise.decoder import Window
from clipdenoise.devices import DTypeSpec, resolve_dtype
from clipdenoise.encoder import FEATURE_NAMES, CLIPResNetEncoder, FeatureInfo
from clipdenoise.model import CLIPDenoiser

#: Most input shapes whose CUDA graphs are kept (tiles have one or a few shapes).
MAX_CUDA_GRAPHS = 8


# ---------------------------------------------------------------------------------------------
# BatchNorm folding
# ---------------------------------------------------------------------------------------------
def fold_batchnorm(conv: nn.Conv2d, batchnorm: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution equal to ``batchnorm(conv(x))`` with the BatchNorm in eval mode.

    ``BN(W*x + b) = s*(W*x + b - mean) + beta`` with ``s = gamma / sqrt(var + eps)``, so the
    folded convolution has weight ``s*W`` and bias ``s*(b - mean) + beta``. The arithmetic is done
    in float64 and rounded once to the convolution's dtype.

    Args:
        conv: The convolution feeding ``batchnorm`` (bias or not).
        batchnorm: A BatchNorm with running statistics.

    Returns:
        A new ``nn.Conv2d`` with a bias, on the same device and dtype as ``conv``; its parameters
        do not require grad.

    Raises:
        ValueError: ``batchnorm`` tracks no running statistics, or the channel counts differ.
    """
    if batchnorm.running_mean is None or batchnorm.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    if batchnorm.num_features != conv.out_channels:
        raise ValueError(
            f"BatchNorm has {batchnorm.num_features} channels but the conv outputs "
            f"{conv.out_channels}"
        )
    weight = conv.weight.detach().double()
    mean = batchnorm.running_mean.detach().double()
    scale = torch.rsqrt(batchnorm.running_var.detach().double() + batchnorm.eps)
    if batchnorm.weight is not None:
        scale = scale * batchnorm.weight.detach().double()
    shift = torch.zeros_like(mean) if batchnorm.bias is None else batchnorm.bias.detach().double()
    bias = torch.zeros_like(mean) if conv.bias is None else conv.bias.detach().double()

    # skip_init: no random initialisation, so folding never consumes the global RNG
    folded = nn.utils.skip_init(
        nn.Conv2d,
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        folded.weight.copy_(weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_((bias - mean) * scale + shift)
    folded.requires_grad_(False)
    return folded


def _conv_batchnorm_pairs(module: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    """``(parent, conv_name, bn_name)`` for every conv directly followed by a BatchNorm.

    Two layouts occur in the CLIP trunk: attributes ``convK`` / ``bnK`` (stem and Bottleneck)
    and a Sequential ``[..., Conv2d, BatchNorm2d]`` (the Bottleneck shortcut).
    """
    for parent in module.modules():
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            for previous, name in zip(names, names[1:]):
                if isinstance(children[name], nn.BatchNorm2d) and isinstance(
                    children[previous], nn.Conv2d
                ):
                    yield parent, previous, name
            continue
        for name, child in children.items():
            if isinstance(child, nn.BatchNorm2d) and name.startswith("bn"):
                conv = children.get("conv" + name[2:])
                if isinstance(conv, nn.Conv2d):
                    yield parent, "conv" + name[2:], name


def fold_encoder_batchnorm(encoder: CLIPResNetEncoder) -> CLIPResNetEncoder:
    """A copy of ``encoder`` with every BatchNorm folded into its convolution (eval semantics).

    The copy computes the same features as ``encoder`` in eval mode (to float rounding, ~1e-6
    relative) with one op less per conv; its BatchNorm modules are replaced by ``nn.Identity``.
    The copy is in eval mode, frozen, and must not be trained (a folded BatchNorm cannot
    update statistics).

    Raises:
        ValueError: The encoder's BatchNorm follows the module mode (``batchnorm="train"``) and
            the encoder is in training mode: its output then uses batch statistics, which no
            folded convolution can reproduce.
        RuntimeError: A BatchNorm could not be paired with a preceding convolution.
    """
    if encoder.batchnorm == "train" and encoder.training:
        raise ValueError(
            "cannot fold BatchNorm of an encoder in training mode with batchnorm='train' "
            "(batch statistics); call encoder.eval() or use batchnorm='eval'"
        )
    folded = copy.deepcopy(encoder).eval()
    for parent, conv_name, bn_name in list(_conv_batchnorm_pairs(folded)):
        conv = getattr(parent, conv_name)
        batchnorm = getattr(parent, bn_name)
        setattr(parent, conv_name, fold_batchnorm(conv, batchnorm))
        setattr(parent, bn_name, nn.Identity())
    leftover = [name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if leftover:
        raise RuntimeError(f"BatchNorm layers not preceded by a convolution: {leftover}")
    folded.set_trainable(False)
    return folded


# ---------------------------------------------------------------------------------------------
# Reference-equivalent computation (the benchmarks' baseline)
# ---------------------------------------------------------------------------------------------
class _DiscardDeepestFeature(nn.Module):
    """Wraps an encoder that computes one stage more than needed and drops its last feature."""

    def __init__(self, encoder: CLIPResNetEncoder) -> None:
        super().__init__()
        self.inner = encoder

    @property
    def feature_info(self) -> list[FeatureInfo]:
        return self.inner.feature_info[:-1]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.inner(image)[:-1]


def build_reference_equivalent(model: CLIPDenoiser) -> CLIPDenoiser:
    """A copy of ``model`` that computes what the reference implementation computes.

    The reference runs the whole ResNet trunk, including stage 4 whose output (F5) the decoder
    never uses, and applies every BatchNorm as a separate op. The copy adds that stage (random
    weights drawn with ``model.config.init_seed``; its output is discarded, so they do not matter)
    and keeps the BatchNorm layers. It is float32, contiguous NCHW, and meant to be run under
    ``torch.no_grad()`` as the reference's test scripts do. Outputs equal ``model``'s exactly.
    """
    reference = copy.deepcopy(model, memo={id(model.aug_generator): None}).float()
    encoder = model.encoder
    if not isinstance(encoder, CLIPResNetEncoder) or encoder.num_stages >= len(FEATURE_NAMES) - 1:
        return reference  # already computes every stage (the F5 ablation)
    device = encoder.conv1.weight.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model.config.init_seed)
        full = CLIPResNetEncoder(
            encoder.layers,
            encoder.width,
            features=(*encoder.feature_names, FEATURE_NAMES[-1]),
            in_channels=encoder.conv1.in_channels,
            trainable=encoder.trainable,
            batchnorm=encoder.batchnorm,
            normalize=encoder.normalize,
        ).to(device)
    missing, unexpected = full.load_state_dict(encoder.state_dict(), strict=False)
    if unexpected or any(not key.startswith("layer4.") for key in missing):
        raise RuntimeError(
            f"encoder weights do not transfer: missing {missing}, extra {unexpected}"
        )
    full.train(encoder.training)
    reference.encoder = _DiscardDeepestFeature(full)
    return reference


# ---------------------------------------------------------------------------------------------
# Inference form
# ---------------------------------------------------------------------------------------------
def convert_for_inference(
    model: nn.Module,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
) -> nn.Module:
    """A copy of ``model`` converted for inference (the source is not modified).

    For a :class:`CLIPDenoiser`: the encoder is swapped for its BatchNorm-folded copy, every
    weight is cast once to ``dtype`` except the output head (float32, see the module
    docstring), the layout is channels-last on request, gradients are off and the copy is in
    eval mode. It is still a :class:`CLIPDenoiser`, running ``CLIPDenoiser.forward`` (windows
    for tiles included). Other modules get the copy, cast and layout steps only.
    """
    device = torch.device(device) if device is not None else _module_device(model)
    memo = {id(model.aug_generator): None} if isinstance(model, CLIPDenoiser) else {}
    network = copy.deepcopy(model, memo=memo).eval()
    if isinstance(network, CLIPDenoiser) and isinstance(network.encoder, CLIPResNetEncoder):
        network.encoder = fold_encoder_batchnorm(network.encoder)
    network = network.to(device=device, dtype=dtype)
    if isinstance(network, CLIPDenoiser):
        network.decoder.head.float()
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    network.requires_grad_(False)
    return network


def _module_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class InferenceModel(nn.Module):
    """A model prepared for inference by :func:`prepare_for_inference`.

    ``forward(noisy, window=None)`` takes a ``(B, C, H, W)`` float tensor in [0, 1] on any
    device and dtype (and, for a network that accepts it, the tiles' :class:`Window`) and
    returns the restored ``(B, C_out, H, W)`` image as float32 on :attr:`device` (not clamped),
    computed under ``torch.inference_mode`` in :attr:`dtype` by the network's own forward.
    The prepared weights are a copy: later changes to the source model are not seen.

    Attributes:
        network: The converted network (:func:`convert_for_inference`).
        device: Where it runs.
        dtype: The compute dtype.
        channels_last: Whether activations use the channels-last layout.
        config: The source model's ``ModelConfig`` (``None`` for other modules).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
        compile: bool = False,
        cuda_graphs: bool = False,
        fallback: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        self.config = getattr(network, "config", None)
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple, tuple] = {}
        self._run: Callable[..., torch.Tensor] = network
        if compile:
            self._run = torch.compile(network, dynamic=False)
        # A float32 copy kept off the accelerator, used only if float16 overflows; a list hides
        # it from the module tree (not moved by .to(), not in state_dict).
        self._fallback: list[nn.Module] = [fallback] if fallback is not None else []
        super().train(False)

    def train(self, mode: bool = True) -> InferenceModel:
        if mode:
            raise RuntimeError(
                "an InferenceModel cannot be trained: its BatchNorm is folded and its weights "
                "are a cast copy; train the source model and prepare it again"
            )
        return super().train(False)

    @property
    def pad_multiple(self) -> int:
        """Inputs are padded internally to this multiple (as the source model does)."""
        return self.config.pad_multiple if self.config is not None else 1

    @property
    def accepts_window(self) -> bool:
        """Whether ``forward`` takes a tile :class:`Window` (the network's forward does)."""
        return bool(getattr(self.network, "accepts_window", False))

    def forward(self, noisy: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        with torch.inference_mode():
            memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
            x = noisy.to(device=self.device, dtype=self.dtype, memory_format=memory_format)
            if window is not None:
                window = window.to(self.device)
            restored = self._graphed(x, window) if self.cuda_graphs else self._call(x, window)
            restored = restored.float()
            if self._fallback and not bool(torch.isfinite(restored).all()):
                restored = self._run_fallback(noisy, window)
            return restored.contiguous()

    def _call(self, x: torch.Tensor, window: Window | None) -> torch.Tensor:
        return self._run(x) if window is None else self._run(x, window=window)

    def _run_fallback(self, noisy: torch.Tensor, window: Window | None) -> torch.Tensor:
        warnings.warn(
            "float16 inference overflowed (non-finite output); recomputing in float32",
            RuntimeWarning,
            stacklevel=3,
        )
        fallback = self._fallback[0].to(self.device)
        x = noisy.to(device=self.device, dtype=torch.float32)
        return (fallback(x) if window is None else fallback(x, window=window)).float()

    def _graphed(self, x: torch.Tensor, window: Window | None) -> torch.Tensor:
        """Replay a CUDA graph captured for ``x``'s shape (capturing it on first sight).

        A window's offsets are a graph input like the tiles (copied in before each replay), so
        one graph serves every tile of an image.
        """
        key = (
            tuple(x.shape),
            x.dtype,
            x.is_contiguous(memory_format=torch.channels_last),
            None if window is None else window.full_size,
        )
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= MAX_CUDA_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
            static_input = x.clone()
            static_window = None
            if window is not None:
                static_window = Window(window.offsets.clone(), window.full_size)
            side_stream = torch.cuda.Stream(device=x.device)
            side_stream.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side_stream):
                for _ in range(2):  # warm-up: cuDNN autotuning and lazy allocations
                    self._call(static_input, static_window)
            torch.cuda.current_stream(x.device).wait_stream(side_stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_output = self._call(static_input, static_window)
            entry = (graph, static_input, static_window, static_output)
            self._graphs[key] = entry
        graph, static_input, static_window, static_output = entry
        static_input.copy_(x)
        if static_window is not None:
            static_window.offsets.copy_(window.offsets)
        graph.replay()
        return static_output.clone()


def prepare_for_inference(
    model: nn.Module,
    *,
    device: torch.device | str | None = None,
    dtype: DTypeSpec = "auto",
    channels_last: bool = True,
    compile: bool = False,
    cuda_graphs: bool = False,
) -> InferenceModel:
    """The fast inference form of ``model`` (the source model is not modified).

    Steps: :func:`convert_for_inference` (copy; fold the encoder's BatchNorm into its
    convolutions, exact in eval mode; cast the weights once to the compute dtype, float32 head
    kept; channels-last layout) and, on request, ``torch.compile`` or CUDA-graph replay per
    input shape.

    Args:
        model: A :class:`CLIPDenoiser` (any other ``nn.Module`` gets the generic steps only, in
            float32 unless ``dtype`` says otherwise).
        device: Where to run; default: the model's device.
        dtype: Compute dtype policy, see :func:`~clipdenoise.devices.resolve_dtype`.
            ``"float32"`` matches the source model to ~1e-5.
        channels_last: Use the channels-last (NHWC) layout oneDNN and cuDNN prefer.
        compile: Wrap the network in ``torch.compile`` (first call per shape compiles, which takes
            minutes on a small CPU; pays off for long runs with fixed tile sizes).
        cuda_graphs: Capture one CUDA graph per input shape and replay it (CUDA only; inputs of
            a fixed tile size). Mutually exclusive with ``compile``.

    Returns:
        An :class:`InferenceModel`.

    Raises:
        ValueError: ``cuda_graphs`` on a non-CUDA device or together with ``compile``; an
            unsupported dtype.
    """
    device = torch.device(device) if device is not None else _module_device(model)
    if cuda_graphs and device.type != "cuda":
        raise ValueError(f"cuda_graphs=True needs a CUDA device, got {device}")
    if cuda_graphs and compile:
        raise ValueError("use either compile=True or cuda_graphs=True, not both")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} asked for, but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    if dtype == "auto" and not isinstance(model, CLIPDenoiser):
        dtype = "float32"  # reduced precision is validated for CLIPDenoiser only
    compute_dtype = resolve_dtype(dtype, device)
    network = convert_for_inference(
        model, device=device, dtype=compute_dtype, channels_last=channels_last
    )
    fallback = None
    if compute_dtype == torch.float16:
        fallback = convert_for_inference(model, device="cpu", channels_last=False)
    return InferenceModel(
        network,
        device=device,
        dtype=compute_dtype,
        channels_last=channels_last,
        compile=compile,
        cuda_graphs=cuda_graphs,
        fallback=fallback,
    )


# ---------------------------------------------------------------------------------------------
# Training form
# ---------------------------------------------------------------------------------------------
def folding_applies(model: CLIPDenoiser) -> bool:
    """Whether ``model``'s encoder can run BatchNorm-folded while ``model`` trains.

    True for a frozen encoder whose BatchNorm keeps its running statistics (``"eval"``); false
    for a fine-tuned encoder or the reference's drifting ``"train"`` BatchNorm, whose training
    output depends on batch statistics.
    """
    encoder = model.encoder
    return (
        isinstance(encoder, CLIPResNetEncoder)
        and not encoder.trainable
        and encoder.batchnorm == "eval"
    )


def convert_for_training(model: CLIPDenoiser, *, dtype: DTypeSpec = "auto") -> CLIPDenoiser:
    """The model a training step runs: ``model`` with a fast frozen encoder swapped in.

    The result is a :class:`CLIPDenoiser` that *shares* every module of ``model`` except the
    encoder (decoder, input adapter; same parameter objects, so the optimizer, gradients,
    checkpoints and ``state_dict`` keys of ``model`` are unchanged) and the feature-augmentation
    generator ``model.aug_generator`` as set at conversion (set ``aug_generator`` on the result
    to change it later). Its encoder is a BatchNorm-folded copy of
    ``model.encoder`` cast to the compute dtype (channels-last when ``model`` is), run
    without autograd unless a learnable input adapter needs gradients through it. Its forward is
    ``CLIPDenoiser.forward``; under ``torch.autocast`` in the compute dtype (the training step's
    AMP) the decoder runs in that dtype too.

    The folded copy is a snapshot: convert again after changing the encoder's weights (e.g.
    loading a state). When folding does not apply (:func:`folding_applies`), ``model`` itself
    is returned.

    Args:
        model: The model being trained.
        dtype: Compute dtype of the folded encoder (:func:`~clipdenoise.devices.resolve_dtype`);
            ``"float32"`` keeps exact float32 numerics (folding only).

    Example:
        >>> from clipdenoise.model import CLIPDenoiser, tiny_config
        >>> model = CLIPDenoiser(tiny_config()).train()
        >>> fast = convert_for_training(model, dtype="float32")
        >>> fast.decoder is model.decoder, fast.encoder is model.encoder
        (True, False)
        >>> fast(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """
    if not isinstance(model, CLIPDenoiser):
        raise TypeError(f"expected a CLIPDenoiser, got {type(model).__name__}")
    if not folding_applies(model):
        return model
    device = _module_device(model)
    compute_dtype = resolve_dtype(dtype, device)
    encoder = fold_encoder_batchnorm(model.encoder).to(device=device, dtype=compute_dtype)
    if model.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last):
        encoder = encoder.to(memory_format=torch.channels_last)
    converted = copy.copy(model)
    # own registries (the shallow copy would share them), holding the same modules
    converted._modules = type(model._modules)(model._modules)
    converted._parameters = type(model._parameters)(model._parameters)
    converted._buffers = type(model._buffers)(model._buffers)
    converted.encoder = encoder
    return converted


def count_flops(model: nn.Module, shape: Sequence[int]) -> int:
    """FLOPs (2 per multiply-add) of ``model`` on an input of ``shape``, counted on meta tensors.

    Uses :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matmuls; pointwise
    ops are not counted), so no real computation happens.
    """
    from torch.utils.flop_counter import FlopCounterMode

    source = model.network if isinstance(model, InferenceModel) else model
    memo = {id(source.aug_generator): None} if isinstance(source, CLIPDenoiser) else {}
    meta = copy.deepcopy(source, memo=memo).to("meta")
    dtype = next(meta.parameters()).dtype
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        meta(torch.empty(*shape, device="meta", dtype=dtype))
    return int(counter.get_total_flops())


__all__ = [
    "InferenceModel",
    "build_reference_equivalent",
    "convert_for_inference",
    "convert_for_training",
    "count_flops",
    "fold_batchnorm",
    "fold_encoder_batchnorm",
    "folding_applies",
    "prepare_for_inference",
]
