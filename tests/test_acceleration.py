"""Tests of the fast inference / training forms: exactness of BatchNorm folding, parity of the
optimised path with the reference-equivalent path, reduced-precision bounds, guards."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clipdenoise.acceleration import (
    InferenceModel,
    build_reference_equivalent,
    convert_for_inference,
    convert_for_training,
    count_flops,
    fold_batchnorm,
    fold_encoder_batchnorm,
    prepare_for_inference,
)
from clipdenoise.encoder import CLIPResNetEncoder
from clipdenoise.model import CLIPDenoiser, tiny_config


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters (fresh ones are ~identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                bn.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=generator))
                bn.weight.copy_(0.5 + torch.rand(n, generator=generator))
                bn.bias.copy_(0.4 * torch.rand(n, generator=generator) - 0.2)


def psnr(reference: torch.Tensor, estimate: torch.Tensor, data_range: float = 1.0) -> float:
    mse = torch.mean((reference.double() - estimate.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


@pytest.fixture
def model() -> CLIPDenoiser:
    net = CLIPDenoiser(tiny_config()).eval()
    randomize_batchnorm(net)
    return net


@pytest.fixture
def noisy() -> torch.Tensor:
    # Odd sizes exercise the internal reflect padding to a multiple of 32.
    return torch.rand(2, 3, 45, 70, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------------------ folding
def test_fold_batchnorm_single_conv_is_exact_in_eval_mode():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, padding=1, bias=True)
    bn = nn.BatchNorm2d(7)
    randomize_batchnorm(bn, seed=1)
    bn.eval()
    x = torch.randn(2, 5, 9, 11)
    folded = fold_batchnorm(conv, bn)
    assert folded.bias is not None and not folded.weight.requires_grad
    with torch.no_grad():
        assert (folded(x) - bn(conv(x))).abs().max().item() <= 1e-5


def test_fold_batchnorm_rejects_mismatched_or_statless():
    conv = nn.Conv2d(3, 4, 1)
    with pytest.raises(ValueError, match="channels"):
        fold_batchnorm(conv, nn.BatchNorm2d(5))
    with pytest.raises(ValueError, match="running statistics"):
        fold_batchnorm(conv, nn.BatchNorm2d(4, track_running_stats=False))


def test_fold_encoder_batchnorm_tiny_encoder_exact(model):
    encoder = model.encoder
    folded = fold_encoder_batchnorm(encoder)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in encoder.modules())  # source untouched
    assert all(not p.requires_grad for p in folded.parameters())
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = encoder(image)
        actual = folded(image)
    assert [f.shape for f in actual] == [f.shape for f in expected]
    for a, e in zip(actual, expected):
        assert (a - e).abs().max().item() <= 1e-5


def test_fold_encoder_batchnorm_real_width_stage_exact():
    # RN50's real widths: 3-conv stem at 32/32/64 channels and stage 1 (64 -> 256).
    torch.manual_seed(0)
    encoder = CLIPResNetEncoder((3, 1, 1, 1), 64, features=("F1", "F2")).eval()
    randomize_batchnorm(encoder, seed=2)
    folded = fold_encoder_batchnorm(encoder)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for a, e in zip(folded(image), encoder(image)):
            assert (a - e).abs().max().item() <= 1e-5 * max(1.0, e.abs().max().item())


def test_fold_refuses_batch_statistics_mode():
    encoder = CLIPResNetEncoder((1, 1, 1, 1), 8, batchnorm="train").train()
    with pytest.raises(ValueError, match="batch statistics"):
        fold_encoder_batchnorm(encoder)
    assert not any(
        isinstance(m, nn.Identity) and n.startswith("bn") for n, m in encoder.named_children()
    )


# ------------------------------------------------------------------------------ reference path
def test_reference_equivalent_computes_stage4_and_matches(model, noisy):
    reference = build_reference_equivalent(model)
    assert hasattr(reference.encoder.inner, "layer4") and not hasattr(model.encoder, "layer4")
    assert reference.encoder.feature_info == model.encoder.feature_info
    with torch.no_grad():
        assert torch.equal(reference(noisy), model(noisy))
    assert count_flops(reference, (1, 3, 64, 64)) > count_flops(model, (1, 3, 64, 64))


@pytest.mark.parametrize("channels_last", [True, False])
def test_prepared_float32_matches_reference_equivalent(model, noisy, channels_last):
    reference = build_reference_equivalent(model)
    prepared = prepare_for_inference(model, dtype="float32", channels_last=channels_last)
    with torch.no_grad():
        expected = reference(noisy)
    restored = prepared(noisy)
    assert restored.shape == noisy.shape and restored.dtype == torch.float32
    assert restored.is_contiguous()
    assert (restored - expected).abs().max().item() <= 1e-4


def test_prepared_bfloat16_within_psnr_bound(model, noisy):
    reference = build_reference_equivalent(model)
    prepared = prepare_for_inference(model, dtype="bfloat16")
    assert prepared.dtype == torch.bfloat16
    assert prepared.network.decoder.head.weight.dtype == torch.float32
    assert prepared.network.decoder.blocks[0][0].weight.dtype == torch.bfloat16
    with torch.no_grad():
        expected = reference(noisy)
    restored = prepared(noisy)
    assert restored.dtype == torch.float32
    assert psnr(expected, restored) >= 50.0
    assert psnr(expected, restored, data_range=float(expected.max() - expected.min())) >= 35.0


def test_prepared_gray_model_matches(noisy):
    gray = CLIPDenoiser(tiny_config(in_channels=1)).eval()
    randomize_batchnorm(gray)
    image = noisy[:, :1]
    prepared = prepare_for_inference(gray, dtype="float32")
    with torch.no_grad():
        expected = gray(image)
    assert (prepared(image) - expected).abs().max().item() <= 1e-4


def test_prepared_model_refuses_training_and_keeps_source(model, noisy):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare_for_inference(model, dtype="float32")
    with pytest.raises(RuntimeError, match="cannot be trained"):
        prepared.train()
    prepared.eval()  # allowed
    assert not prepared.training
    assert prepared.pad_multiple == 32
    restored = prepared(noisy.requires_grad_())
    assert not restored.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # A trained source model is prepared in eval semantics (BatchNorm running statistics).
    model.train()
    assert (prepare_for_inference(model, dtype="float32")(noisy) - restored).abs().max() <= 1e-6


def test_float16_overflow_falls_back_to_float32(noisy):
    class Overflowing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.inf

    fallback = nn.Identity()
    prepared = InferenceModel(
        Overflowing(),
        device=torch.device("cpu"),
        dtype=torch.float32,
        channels_last=False,
        fallback=fallback,
    )
    with pytest.warns(RuntimeWarning, match="overflowed"):
        restored = prepared(noisy)
    assert torch.equal(restored, noisy)


# ------------------------------------------------------------------------------ guards
def test_cuda_only_options_are_guarded(model):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        prepare_for_inference(model, device="cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="not both"):
        prepare_for_inference(model, device="cuda", compile=True, cuda_graphs=True)


def test_non_clipdenoiser_module_defaults_to_float32():
    prepared = prepare_for_inference(nn.Conv2d(3, 3, 3, padding=1))
    assert prepared.dtype == torch.float32 and prepared.pad_multiple == 1


def test_count_flops_single_conv():
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    assert count_flops(conv, (2, 4, 10, 12)) == 2 * 2 * 10 * 12 * 4 * 6 * 9


# ------------------------------------------------------------------------------ conversions
@pytest.mark.parametrize("channels_last", [True, False])
def test_inference_conversion_is_the_model_with_a_folded_encoder(model, noisy, channels_last):
    converted = convert_for_inference(model, dtype=torch.float32, channels_last=channels_last)
    assert type(converted) is CLIPDenoiser  # the model's own forward, not a second one
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    with torch.no_grad():
        assert (converted(noisy) - model(noisy)).abs().max().item() <= 1e-4
    assert set(model.state_dict()) != set(converted.state_dict())  # folded copy
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # source untouched


# ------------------------------------------------------------------------------ training form
def test_training_conversion_float32_matches_model_forward_and_gradients(model):
    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    model.train()
    fast = convert_for_training(model, dtype="float32")
    assert type(fast) is CLIPDenoiser and fast is not model
    assert fast.decoder is model.decoder and fast.encoder is not model.encoder
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.encoder.modules())
    assert fast.training

    model.aug_generator = torch.Generator().manual_seed(11)
    expected = model(clean)
    expected.abs().mean().backward()
    expected_grads = [p.grad.clone() for p in model.trainable_parameters()]
    model.zero_grad()

    fast.aug_generator = model.aug_generator.manual_seed(11)
    restored = fast(clean)
    restored.abs().mean().backward()
    assert (restored - expected).abs().max().item() <= 1e-4
    for grad, expected_grad in zip([p.grad for p in model.trainable_parameters()], expected_grads):
        assert torch.allclose(grad, expected_grad, rtol=1e-3, atol=1e-6)
    assert all(p.grad is None for p in model.encoder.parameters())


def test_training_conversion_keeps_the_models_keys_and_parameters(model):
    keys = list(model.state_dict())
    fast = convert_for_training(model, dtype="float32")
    assert list(model.state_dict()) == keys  # checkpoints of the trained model unchanged
    assert {id(p) for p in fast.trainable_parameters()} == {
        id(p) for p in model.trainable_parameters()
    }
    generator = torch.Generator().manual_seed(0)
    model.aug_generator = generator
    assert convert_for_training(model, dtype="float32").aug_generator is generator


def test_training_conversion_bfloat16_close_and_trains_decoder(model):
    clean = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    model.eval()  # no augmentation: compare outputs directly
    fast = convert_for_training(model, dtype="bfloat16")
    assert fast.encoder.conv1.weight.dtype == torch.bfloat16
    with torch.no_grad():
        expected = model(clean)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        restored = fast(clean)
    assert psnr(expected, restored.float()) >= 40.0
    restored.float().mean().backward()
    assert all(
        p.grad is not None and p.grad.dtype == torch.float32 for p in model.decoder.parameters()
    )


def test_training_conversion_gray_adapter_gets_gradients():
    gray = CLIPDenoiser(tiny_config(in_channels=1)).train()
    fast = convert_for_training(gray, dtype="float32")
    assert fast.input_adapter is gray.input_adapter
    fast(torch.rand(2, 1, 32, 32)).mean().backward()
    assert gray.input_adapter.weight.grad is not None
    assert gray.input_adapter.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides", [{"encoder_trainable": True}, {"encoder_batchnorm": "train"}])
def test_training_conversion_returns_the_model_when_folding_does_not_apply(overrides):
    net = CLIPDenoiser(tiny_config(**overrides)).train()
    assert convert_for_training(net, dtype="float32") is net


def test_conversions_leave_the_global_rng_alone(model):
    # a resumed run restores the RNG before converting: conversion must not draw from it
    state = torch.get_rng_state()
    convert_for_training(model, dtype="float32")
    convert_for_inference(model)
    assert torch.equal(torch.get_rng_state(), state)
