"""Tests of the CLIPDenoiser: encoder + feature augmentation + decoder (paper Sec. 3.2-3.3)."""

from __future__ import annotations

import pytest
import torch

from clipdenoise.model import CLIPDenoiser, ModelConfig, augment_features, tiny_config


def test_real_rn50_parameter_split():
    model = CLIPDenoiser(ModelConfig(arch="RN50", encoder_weights=None))
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert frozen == 8_562_528
    assert trainable == 10_988_928
    assert sum(p.numel() for p in model.trainable_parameters()) == trainable


def _bn_buffers(module):
    return {
        k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k
    }


@pytest.mark.parametrize("batchnorm", ["eval", "train"])
def test_frozen_encoder_after_optimizer_step(batchnorm):
    model = CLIPDenoiser(tiny_config(encoder_batchnorm=batchnorm))
    model.train()
    params_before = {k: v.clone() for k, v in model.encoder.named_parameters()}
    buffers_before = _bn_buffers(model.encoder)
    decoder_before = [p.clone() for p in model.decoder.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    noisy, clean = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss = (model(noisy) - clean).abs().mean()
    loss.backward()
    optimizer.step()
    for name, param in model.encoder.named_parameters():
        assert not param.requires_grad
        assert param.grad is None
        assert torch.equal(param, params_before[name]), name
    buffers_after = _bn_buffers(model.encoder)
    changed = [k for k in buffers_before if not torch.equal(buffers_before[k], buffers_after[k])]
    if batchnorm == "eval":
        assert changed == []
    else:  # the reference's behaviour: running statistics drift during training
        assert any("running_mean" in k for k in changed)
    assert any(not torch.equal(a, b) for a, b in zip(decoder_before, model.decoder.parameters()))


def test_frozen_encoder_builds_no_graph():
    model = CLIPDenoiser(tiny_config()).train()
    features = model.encoder(torch.rand(1, 3, 32, 32))
    assert all(not f.requires_grad for f in features)


def test_gray_adapter_receives_gradient_through_frozen_encoder():
    model = CLIPDenoiser(tiny_config(in_channels=1)).train()
    loss = model(torch.rand(1, 1, 32, 32)).mean()
    loss.backward()
    assert model.input_adapter.weight.grad is not None
    assert model.input_adapter.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())


def test_augmentation_only_in_training_and_seeded():
    model = CLIPDenoiser(tiny_config())
    noisy = torch.rand(1, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(noisy), model(noisy))
    model.train()

    def run(seed):
        model.aug_generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return model(noisy)

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    off = CLIPDenoiser(tiny_config(aug_gamma=0.0)).train()
    with torch.no_grad():
        assert torch.equal(off(noisy), off(noisy))


def test_augment_features_statistics():
    features = [torch.ones(1, 4, 64, 64) for _ in range(4)]
    out = augment_features(features, 0.025, torch.Generator().manual_seed(0))
    for i, feature in enumerate(out, start=1):
        assert feature.mean().item() == pytest.approx(1.0, abs=0.01)
        assert feature.std().item() == pytest.approx(0.025 * i, rel=0.05)


@pytest.mark.parametrize(("channels", "height", "width"), [(3, 33, 47), (1, 70, 65), (3, 5, 3)])
def test_odd_sizes_return_input_shape(channels, height, width):
    model = CLIPDenoiser(tiny_config(in_channels=channels)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, channels, height, width))
    assert out.shape == (2, channels, height, width)


def test_ablation_switches_build_and_run():
    noisy = torch.rand(1, 3, 40, 40)
    with_f5 = CLIPDenoiser(tiny_config(use_f5=True)).eval()
    assert [i.name for i in with_f5.feature_info][-1] == "F5"
    assert with_f5.config.pad_multiple == 64
    no_input = CLIPDenoiser(tiny_config(use_noisy_input=False)).eval()
    assert no_input.decoder.blocks[-1][0].in_channels == 8
    finetune = CLIPDenoiser(tiny_config(encoder_trainable=True))
    assert all(p.requires_grad for p in finetune.encoder.parameters())
    assert finetune.config.resolved_batchnorm == "train"
    with torch.no_grad():
        for model in (with_f5, no_input, finetune.eval()):
            assert model(noisy).shape == noisy.shape


def test_init_is_seeded():
    a = CLIPDenoiser(tiny_config(init_seed=1))
    b = CLIPDenoiser(tiny_config(init_seed=1))
    c = CLIPDenoiser(tiny_config(init_seed=2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.decoder.head.weight, c.decoder.head.weight)


def test_config_validation():
    with pytest.raises(ValueError, match="valid values"):
        ModelConfig(arch="RN18")
    with pytest.raises(ValueError, match="layers"):
        ModelConfig(arch="custom", width=8)


def test_supplied_feature_noise_must_match_the_features():
    model = CLIPDenoiser(tiny_config(aug_gamma=0.5)).train()
    image = torch.rand(1, 3, 32, 32)
    features = model.encoder(image)
    model.feature_noise = [torch.zeros_like(f) for f in features]
    with torch.no_grad():
        eval_output = model.eval()(image)
        zero_noise_output = model.train()(image)
    torch.testing.assert_close(zero_noise_output, eval_output)  # z = 0 -> alpha = 1
    model.feature_noise = [torch.zeros(1)]
    with pytest.raises(ValueError, match="one tensor per feature"):
        model(image)
