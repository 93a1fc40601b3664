"""The CLIP ResNet trunk as a multi-scale feature extractor (paper Sec. 3.1): features and their
``feature_info`` for every CLIP size, stages built on demand, BatchNorm policy, normalisation."""

from __future__ import annotations

import pytest
import torch

from clipdenoise.encoder import (
    CLIP_ARCHS,
    CLIP_MEAN,
    CLIP_STD,
    CLIPResNetEncoder,
    FeatureInfo,
    arch_layers_width,
    feature_info_for,
)


@pytest.mark.parametrize("arch", list(CLIP_ARCHS))
def test_feature_shapes_match_feature_info_for_every_clip_size(arch):
    layers, width = CLIP_ARCHS[arch]
    # Real widths, one block per stage keeps this fast while checking every size's channels.
    encoder = CLIPResNetEncoder((1, 1, 1, 1), width, features=("F1", "F2", "F3", "F4", "F5"))
    image = torch.rand(1, 3, 64, 64)
    features = encoder(image)
    assert len(features) == 5
    for feature, info in zip(features, encoder.feature_info):
        assert feature.shape == (1, info.channels, 64 // info.stride, 64 // info.stride)
    assert [i.channels for i in encoder.feature_info] == [
        width,
        4 * width,
        8 * width,
        16 * width,
        32 * width,
    ]
    assert [i.stride for i in encoder.feature_info] == [2, 4, 8, 16, 32]
    assert len(layers) == 4


def test_unused_stages_are_not_built():
    encoder = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1", "F2"))
    names = {name for name, _ in encoder.named_children()}
    assert "layer1" in names and "layer2" not in names and "layer4" not in names
    default = CLIPResNetEncoder((1, 1, 1, 1), 8)
    assert not hasattr(default, "layer4")
    assert [i.name for i in default.feature_info] == ["F1", "F2", "F3", "F4"]


def test_fresh_encoder_applies_batchnorm_policy():
    frozen = CLIPResNetEncoder((1, 1, 1, 1), 8)
    assert all(not m.training for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d))
    drifting = CLIPResNetEncoder((1, 1, 1, 1), 8, batchnorm="train")
    assert all(m.training for m in drifting.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_normalize_option_changes_features():
    plain = CLIPResNetEncoder((1, 1, 1, 1), 8)
    normalized = CLIPResNetEncoder((1, 1, 1, 1), 8, normalize=True)
    normalized.load_state_dict(plain.state_dict())
    image = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(plain(image)[0], normalized(image)[0])


def test_feature_info_table_of_the_module_docstring():
    assert [feature_info_for(name, 64) for name in ("F1", "F2", "F3", "F4", "F5")] == [
        FeatureInfo("F1", 64, 2),
        FeatureInfo("F2", 256, 4),
        FeatureInfo("F3", 512, 8),
        FeatureInfo("F4", 1024, 16),
        FeatureInfo("F5", 2048, 32),
    ]
    assert feature_info_for("F3", 80) == FeatureInfo("F3", 640, 8)  # RN50x4


def test_arch_names_and_their_errors():
    assert arch_layers_width("RN50") == ((3, 4, 6, 3), 64)
    assert arch_layers_width("RN50x64") == ((3, 15, 36, 10), 128)
    with pytest.raises(
        ValueError, match="unknown CLIP ResNet 'RN18'; valid names are: RN50, RN101"
    ):
        arch_layers_width("RN18")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": ("F6",)}, "features must be a non-empty subset"),
        ({"features": ()}, "features must be a non-empty subset"),
        ({"layers": (1, 1, 1)}, "layers must be 4 positive block counts"),
        ({"layers": (1, 0, 1, 1)}, "layers must be 4 positive block counts"),
        ({"batchnorm": "frozen"}, "batchnorm must be 'eval' or 'train'"),
    ],
)
def test_invalid_arguments_are_refused(kwargs, message):
    arguments = {"layers": (1, 1, 1, 1), "width": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        CLIPResNetEncoder(**arguments)


def test_features_come_shallow_to_deep_whatever_the_order_asked():
    torch.manual_seed(0)
    encoder = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F3", "F1", "F3"))
    assert encoder.feature_names == ("F1", "F3")
    assert [info.name for info in encoder.feature_info] == ["F1", "F3"]
    shallow, deep = encoder(torch.rand(1, 3, 32, 32))
    assert shallow.shape == (1, 8, 16, 16) and deep.shape == (1, 64, 4, 4)


def test_normalisation_uses_clip_statistics():
    torch.manual_seed(0)
    plain = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1",))
    normalized = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1",), normalize=True)
    normalized.load_state_dict(plain.state_dict())
    image = torch.rand(1, 3, 16, 16)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(normalized(image)[0], plain((image - mean) / std)[0])
