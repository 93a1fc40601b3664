"""Fast inference and training forms of a :class:`~clipdenoise.model.CLIPDenoiser`.

The model modules (``encoder``, ``decoder``, ``model``) stay the readable, reference-equivalent
definition. This module derives faster forms from them without changing their outputs beyond a
stated tolerance:

* **BatchNorm folding.** The frozen CLIP encoder keeps its BatchNorm layers in eval mode, so each
  ``conv -> BN`` pair is one affine map and folds exactly into the convolution's weight and bias
  (:func:`fold_encoder_batchnorm`). Folding is done in float64 on a copy; the model keeps its
  unfolded encoder.
* **Inference form** (:func:`prepare_for_inference`): a copy with folded BatchNorm, weights cast
  once to the compute dtype and laid out channels-last, run under ``torch.inference_mode``. It
  refuses ``train()``.
* **Reduced precision** (:func:`resolve_compute_dtype`): bfloat16 on CPUs with native bf16
  instructions (AVX-512-BF16 or AMX), float16 on CUDA, float32 elsewhere. The output head (one
  3×3 conv) stays in float32 because rounding the restored image to bf16 alone would cost
  ~65 dB PSNR against the float32 output; it is <1 % of the FLOPs.
* **Optional** ``torch.compile`` and CUDA-graph replay for fixed input shapes (tiles) on GPU.
* **Training form** (:class:`AcceleratedTrainingForward`): the train step's forward with the
  frozen encoder folded, cast to the compute dtype and run without autograd, and the decoder under
  autocast. Gradients and the optimizer stay float32.

:func:`build_reference_equivalent` builds the computation of the reference implementation (stage
4 computed and thrown away, BatchNorm unfolded) as the baseline the benchmarks compare against.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from clipdenoise.encoder import FEATURE_NAMES, CLIPResNetEncoder, FeatureInfo
from clipdenoise.inference import pad_to_multiple
from clipdenoise.model import CLIPDenoiser, augment_features

DTypeSpec = torch.dtype | Literal["auto", "float32", "bfloat16", "float16"]

_DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

#: Most input shapes whose CUDA graphs are kept (tiles have one or a few shapes).
MAX_CUDA_GRAPHS = 8


# ---------------------------------------------------------------------------------------------
# Precision policy
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (AVX-512-BF16 or AMX).

    Without those instructions oneDNN emulates bf16 and is slower than float32.
    """
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:
                pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_compute_dtype(device: torch.device | str, dtype: DTypeSpec = "auto") -> torch.dtype:
    """The dtype the network computes in on ``device``.

    Args:
        device: Where the model runs.
        dtype: ``"auto"`` (bfloat16 on CPUs with native bf16, float16 on CUDA, float32
            otherwise), a name (``"float32"``, ``"bfloat16"``, ``"float16"``) or a dtype.

    Raises:
        ValueError: Unknown dtype name, or float16 asked for on a CPU (its CPU kernels are slow
            and less accurate than bfloat16's).
    """
    device = torch.device(device)
    if isinstance(dtype, str):
        if dtype == "auto":
            if device.type == "cuda":
                return torch.float16
            if device.type == "cpu" and cpu_has_fast_bfloat16():
                return torch.bfloat16
            return torch.float32
        try:
            dtype = _DTYPE_NAMES[dtype]
        except KeyError:
            valid = ", ".join(["auto", *_DTYPE_NAMES])
            raise ValueError(f"unknown dtype {dtype!r}; valid values are: {valid}") from None
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"compute dtype must be float32, bfloat16 or float16, got {dtype}")
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("float16 is not supported on CPU; use bfloat16 or float32")
    return dtype


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

    folded = nn.Conv2d(
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
class Float32Head(nn.Module):
    """Runs a wrapped layer in float32 and returns float32, whatever the input dtype."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float())


def _network_for_inference(
    model: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool
) -> nn.Module:
    """Copy of ``model`` with folded BatchNorm, cast to ``dtype`` with a float32 head."""
    memo = {id(model.aug_generator): None} if isinstance(model, CLIPDenoiser) else {}
    network = copy.deepcopy(model, memo=memo).eval()
    if isinstance(network, CLIPDenoiser) and isinstance(network.encoder, CLIPResNetEncoder):
        network.encoder = fold_encoder_batchnorm(network.encoder)
    head = None
    if dtype != torch.float32 and isinstance(network, CLIPDenoiser):
        head = network.decoder.head  # still float32: kept so, see the module docstring
    network = network.to(device=device, dtype=dtype)
    if head is not None:
        network.decoder.head = Float32Head(head.to(device=device, dtype=torch.float32))
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    network.requires_grad_(False)
    return network


class InferenceModel(nn.Module):
    """A model prepared for inference by :func:`prepare_for_inference`.

    ``forward(noisy)`` takes a ``(B, C, H, W)`` float tensor in [0, 1] on any device and dtype
    and returns the restored ``(B, C_out, H, W)`` image as contiguous float32 on
    :attr:`device` (not clamped), computed under ``torch.inference_mode`` in :attr:`dtype`.
    The prepared weights are a copy: later changes to the source model are not seen.

    Attributes:
        network: The prepared network (folded, cast, channels-last).
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
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._run: Callable[[torch.Tensor], torch.Tensor] = network
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

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
            x = noisy.to(device=self.device, dtype=self.dtype, memory_format=memory_format)
            restored = self._graphed(x) if self.cuda_graphs else self._run(x)
            restored = restored.float()
            if self._fallback and not bool(torch.isfinite(restored).all()):
                restored = self._run_fallback(noisy)
            return restored.contiguous()

    def _run_fallback(self, noisy: torch.Tensor) -> torch.Tensor:
        warnings.warn(
            "float16 inference overflowed (non-finite output); recomputing in float32",
            RuntimeWarning,
            stacklevel=3,
        )
        fallback = self._fallback[0].to(self.device)
        return fallback(noisy.to(device=self.device, dtype=torch.float32)).float()

    def _graphed(self, x: torch.Tensor) -> torch.Tensor:
        """Replay a CUDA graph captured for ``x``'s shape (capturing it on first sight)."""
        key = (tuple(x.shape), x.dtype, x.is_contiguous(memory_format=torch.channels_last))
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= MAX_CUDA_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
            static_input = x.clone()
            side_stream = torch.cuda.Stream(device=x.device)
            side_stream.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side_stream):
                for _ in range(2):  # warm-up: cuDNN autotuning and lazy allocations
                    self._run(static_input)
            torch.cuda.current_stream(x.device).wait_stream(side_stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_output = self._run(static_input)
            entry = (graph, static_input, static_output)
            self._graphs[key] = entry
        graph, static_input, static_output = entry
        static_input.copy_(x)
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

    Steps: copy; fold the encoder's BatchNorm into its convolutions (exact in eval mode); cast
    the weights once to the compute dtype (float32 head kept); channels-last layout; and, on
    request, ``torch.compile`` or CUDA-graph replay per input shape.

    Args:
        model: A :class:`CLIPDenoiser` (any other ``nn.Module`` gets the generic steps only, in
            float32 unless ``dtype`` says otherwise).
        device: Where to run; default: the model's device.
        dtype: Compute dtype policy, see :func:`resolve_compute_dtype`. ``"float32"`` matches the
            source model to ~1e-5.
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
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
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
    compute_dtype = resolve_compute_dtype(device, dtype)
    network = _network_for_inference(model, device, compute_dtype, channels_last)
    fallback = None
    if compute_dtype == torch.float16:
        fallback = _network_for_inference(model, torch.device("cpu"), torch.float32, False)
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
def _tensor_versions(module: nn.Module) -> tuple:
    """Identity and in-place version of every parameter and buffer (cheap staleness key)."""
    return tuple(
        (id(tensor), tensor._version) for tensor in (*module.parameters(), *module.buffers())
    )


class AcceleratedTrainingForward(nn.Module):
    """The training forward of a :class:`CLIPDenoiser` with a fast frozen encoder.

    ``forward(noisy)`` equals ``model(noisy)`` (padding, progressive feature augmentation drawn
    from ``model.aug_generator`` in training mode, decoder, crop) except that

    * the frozen encoder runs as a BatchNorm-folded copy cast to the compute dtype, without
      autograd (or with it, when a learnable 1-channel input adapter needs gradients), and
    * the decoder (and input adapter) run under ``torch.autocast`` in the compute dtype;
      parameters, gradients and the optimizer stay float32.

    ``model`` is registered as the only submodule, so wrapping this module in
    ``DistributedDataParallel`` synchronises the model's gradients; the folded copy is kept
    outside the module tree (not in ``state_dict``). It is rebuilt automatically when the
    encoder's weights change in place (``load_state_dict``, optimizer steps of a fine-tuned
    encoder) or move to another device/dtype. When folding does not apply — a trainable
    encoder, or BatchNorm in ``"train"`` (reference, drifting) mode while training — the
    model's own encoder runs (under autocast), so results stay correct.

    Args:
        model: The model being trained (shared, not copied: the optimizer sees its parameters).
        dtype: Compute dtype policy (:func:`resolve_compute_dtype`); ``"float32"`` keeps only
            the folding savings and exact float32 numerics.

    Example:
        >>> from clipdenoise.model import CLIPDenoiser, tiny_config
        >>> model = CLIPDenoiser(tiny_config()).train()
        >>> forward = AcceleratedTrainingForward(model, dtype="bfloat16")
        >>> forward(torch.rand(2, 3, 64, 64)).dtype
        torch.float32
    """

    def __init__(self, model: CLIPDenoiser, *, dtype: DTypeSpec = "auto") -> None:
        if not isinstance(model, CLIPDenoiser):
            raise TypeError(f"expected a CLIPDenoiser, got {type(model).__name__}")
        super().__init__()
        self.model = model
        self.dtype = resolve_compute_dtype(self.device, dtype)
        # Plain attributes (a list hides the copy from the module tree, state_dict and DDP).
        self._folded: list[CLIPResNetEncoder] = []
        self._folded_key: tuple | None = None
        self.train(model.training)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def folding_applies(self) -> bool:
        """Whether the encoder is frozen with eval-mode BatchNorm (so it can be folded)."""
        encoder = self.model.encoder
        if not isinstance(encoder, CLIPResNetEncoder) or encoder.trainable:
            return False
        return encoder.batchnorm == "eval" or not self.model.training

    def refresh(self) -> None:
        """Forget the folded encoder copy (rebuilt from the model on the next call)."""
        self._folded.clear()
        self._folded_key = None

    def folded_encoder(self) -> CLIPResNetEncoder:
        """The folded, cast encoder copy, rebuilt if the source encoder changed."""
        encoder = self.model.encoder
        key = (str(encoder.conv1.weight.device), *_tensor_versions(encoder))
        if not self._folded or key != self._folded_key:
            folded = fold_encoder_batchnorm(encoder).to(device=self.device, dtype=self.dtype)
            if encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last):
                folded = folded.to(memory_format=torch.channels_last)
            self._folded[:] = [folded]
            self._folded_key = key
        return self._folded[0]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Restore ``noisy`` ``(B, C, H, W)`` float in [0, 1]; returns float32, same shape."""
        model = self.model
        config = model.config
        if noisy.dim() != 4 or noisy.shape[1] != config.in_channels:
            raise ValueError(
                f"expected a (B, {config.in_channels}, H, W) tensor, got {tuple(noisy.shape)}"
            )
        padded, (height, width) = pad_to_multiple(noisy, config.pad_multiple)
        with self._autocast():
            image = padded if model.input_adapter is None else model.input_adapter(padded)
            features = self._encode(image)
            if model.training and config.aug_gamma > 0:
                features = augment_features(
                    features, config.aug_gamma, model.aug_generator, noise=model.feature_noise
                )
            restored = model.decoder(features, image)
        return restored[..., :height, :width].float()

    def _encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        if not self.folding_applies:
            return self.model.encoder(image)
        encoder = self.folded_encoder()
        # Gradients must flow through the frozen encoder only to a learnable input adapter.
        with torch.set_grad_enabled(torch.is_grad_enabled() and image.requires_grad):
            return encoder(image.to(self.dtype))


def accelerate_training_forward(
    model: CLIPDenoiser, *, dtype: DTypeSpec = "auto"
) -> AcceleratedTrainingForward:
    """Shorthand for :class:`AcceleratedTrainingForward` (``model`` is shared, not copied)."""
    return AcceleratedTrainingForward(model, dtype=dtype)


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
    "AcceleratedTrainingForward",
    "Float32Head",
    "InferenceModel",
    "accelerate_training_forward",
    "build_reference_equivalent",
    "count_flops",
    "cpu_has_fast_bfloat16",
    "fold_batchnorm",
    "fold_encoder_batchnorm",
    "prepare_for_inference",
    "resolve_compute_dtype",
]
