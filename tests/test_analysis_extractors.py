"""Multi-scale feature extractors of the analysis: encoder specs, CLIP trunks (random or from a
weights file), hooks on any module, a Restormer and a trained denoiser's encoder.
"""

from __future__ import annotations

import pytest
import torch

from clipdenoise.analysis import (
    AnalysisConfig,
    HookFeatureExtractor,
    load_feature_extractor,
    parse_encoder_spec,
    run_analysis,
)
from clipdenoise.encoder import CLIPResNetEncoder
from clipdenoise.errors import ConfigError, WeightsNotFoundError


def test_parse_encoder_spec_forms():
    assert parse_encoder_spec("RN50").weights == "openai"
    random = parse_encoder_spec("RN50x64:random")
    assert (random.kind, random.arch, random.weights) == ("clip", "RN50x64", None)
    assert "control" in random.display_label
    assert parse_encoder_spec("RN101:/w/rn101.pt").weights == "/w/rn101.pt"
    labelled = parse_encoder_spec("imagenet:/w/r50.pth@ResNet-50 ImageNet")
    assert (labelled.kind, labelled.weights, labelled.label) == (
        "imagenet",
        "/w/r50.pth",
        "ResNet-50 ImageNet",
    )
    assert parse_encoder_spec("checkpoint:my-model").kind == "checkpoint"
    assert parse_encoder_spec("avgpool").kind == "avgpool"
    with pytest.raises(ConfigError, match="cannot parse encoder 'RN18'"):
        parse_encoder_spec("RN18")
    with pytest.raises(ConfigError, match="cannot parse"):
        parse_encoder_spec("imagenet:")


def test_missing_clip_weights_file_is_a_clear_error(analysis_images, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.pt"):
        load_feature_extractor(f"RN50:{tmp_path / 'nope.pt'}", features=("F1",))
    config = AnalysisConfig(inputs=("x.png",), encoders=(f"RN50:{tmp_path / 'nope.pt'}",))
    with pytest.raises(WeightsNotFoundError, match="--encoder RN50:random analyses"):
        run_analysis(config, tmp_path / "out", images=analysis_images)
    assert not (tmp_path / "out" / "similarity_records.csv").exists()


def test_random_init_clip_encoder_is_seeded_and_trimmed():
    first = load_feature_extractor("RN50:random", features=("F1", "F2"), seed=1)
    again = load_feature_extractor("RN50:random", features=("F1", "F2"), seed=1)
    assert first.feature_names == ("F1", "F2") and first.control
    assert not hasattr(first.encoder, "layer2")  # stages deeper than F2 are not built
    assert torch.equal(first.encoder.conv1.weight, again.encoder.conv1.weight)
    features = first(torch.rand(1, 3, 32, 32))
    assert [tuple(f.shape) for f in features] == [(1, 64, 16, 16), (1, 256, 8, 8)]
    normalized = load_feature_extractor(
        "RN50:random", features=("F1",), seed=1, clip_normalize=True
    )
    assert normalized.encoder.normalize and not first.encoder.normalize


def test_clip_weights_file_is_loaded_into_the_trunk(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(5)
    source = CLIPResNetEncoder((3, 4, 6, 3), 64, features=("F1",))  # RN50 stem only: small
    weights = {f"visual.{k}": v for k, v in source.state_dict().items()}
    save_file(weights, tmp_path / "rn50-stem.safetensors")
    extractor = load_feature_extractor(
        f"RN50:{tmp_path / 'rn50-stem.safetensors'}", features=("F1",)
    )
    assert extractor.label == "CLIP RN50 (rn50-stem.safetensors)" and not extractor.control
    torch.testing.assert_close(extractor.encoder.conv3.weight, source.conv3.weight)
    image = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(extractor(image)[0], source.eval()(image)[0])


def test_hook_extractor_stops_after_the_deepest_feature():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.second = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            x = self.second(torch.relu(self.first(x)))
            raise AssertionError("the head must not run")

    extractor = HookFeatureExtractor(Net(), {"A": "first", "B": "second"}, label="net")
    features = extractor(torch.rand(2, 3, 16, 16))
    assert [tuple(f.shape) for f in features] == [(2, 4, 16, 16), (2, 4, 8, 8)]
    with pytest.raises(ConfigError, match="no submodule named missing"):
        HookFeatureExtractor(Net(), {"A": "missing"}, label="net")


def test_module_extractor_reads_list_and_dict_outputs():
    from clipdenoise.analysis import ModuleFeatureExtractor

    torch.manual_seed(0)
    trunk = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1", "F2", "F3")).eval()
    image = torch.rand(1, 3, 32, 32)
    expected = trunk(image)
    picked = ModuleFeatureExtractor(trunk, ["shallow", "deep"], label="trunk", select=[0, 2])
    got = picked(image)
    assert picked.feature_names == ("shallow", "deep")
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[2])

    class DictNet(torch.nn.Module):
        def forward(self, x):
            return {"a": x, "b": torch.nn.functional.avg_pool2d(x, 2)}

    extractor = ModuleFeatureExtractor(
        DictNet(), ["b"], label="dict", mean=[0.5] * 3, std=[0.5] * 3
    )
    torch.testing.assert_close(
        extractor(image)[0], torch.nn.functional.avg_pool2d((image - 0.5) / 0.5, 2)
    )
    with pytest.raises(RuntimeError, match="output has keys a, b, not c"):
        ModuleFeatureExtractor(DictNet(), ["c"], label="dict")(image)


def test_restormer_encoder_levels_as_scales(tmp_path):
    from clipdenoise.baselines import build_baseline, save_baseline

    torch.manual_seed(0)
    network = build_baseline("restormer", dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)
    path = save_baseline(network.eval(), tmp_path / "restormer.safetensors")
    extractor = load_feature_extractor(f"restormer:{path}")  # F5 asked, not available: dropped
    assert extractor.feature_names == ("F1", "F2", "F3", "F4")
    assert extractor.label == "Restormer encoder (restormer)" and extractor.input_multiple == 8
    image = torch.rand(1, 3, 32, 32)
    features = extractor(image)
    assert [tuple(f.shape[1:]) for f in features] == [
        (8, 32, 32),
        (16, 16, 16),
        (32, 8, 8),
        (64, 4, 4),
    ]
    with torch.no_grad():
        level1 = network.encoder_level1(network.patch_embed(image))
    torch.testing.assert_close(features[0], level1)
    with pytest.raises(ConfigError, match="a Restormer has scales F1, F2, F3, F4"):
        load_feature_extractor(f"restormer:{path}", features=("F5",))


def test_checkpoint_encoder_matches_the_trained_model(tmp_path, tiny_model):
    from clipdenoise.checkpoints import save_checkpoint

    path = save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")
    extractor = load_feature_extractor(f"checkpoint:{path}", features=("F1", "F2", "F3"))
    assert extractor.feature_names == ("F1", "F2", "F3")
    assert extractor.label == "denoiser encoder (tiny)"
    image = torch.rand(1, 3, 32, 32)
    expected = tiny_model.encoder(image)[:3]
    for got, want in zip(extractor(image), expected):
        torch.testing.assert_close(got, want)
