"""The ImageNet ResNet without torchvision: its layout, strict loading and its features."""

from __future__ import annotations

import pytest
import torch

from clipdenoise.analysis import ImageNetResNet, load_feature_extractor, load_imagenet_resnet
from clipdenoise.errors import WeightsMismatchError


def test_torchvision_layout_resnet50_matches_torchvision():
    model = ImageNetResNet((3, 4, 6, 3))
    # torchvision.models.resnet50(): 25,557,032 parameters, 320 state-dict entries
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    state = model.state_dict()
    assert len(state) == 320
    assert tuple(state["conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(state["layer2.0.conv2.weight"].shape) == (128, 128, 3, 3)
    assert tuple(state["layer4.0.downsample.0.weight"].shape) == (2048, 1024, 1, 1)
    assert tuple(state["fc.weight"].shape) == (1000, 2048)
    assert model.layer2[0].conv2.stride == (2, 2)  # v1.5: stride on the 3x3 conv


def test_imagenet_resnet_loads_strictly_and_extracts_features(tmp_path):
    torch.manual_seed(0)
    source = ImageNetResNet((1, 1, 1, 1), num_classes=10).eval()
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = load_imagenet_resnet(path)
    assert loaded.layers == (1, 1, 1, 1) and loaded.fc.out_features == 10
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(image), source(image))
    extractor = load_feature_extractor(f"imagenet:{path}@r-tiny")
    assert extractor.label == "r-tiny"
    features = extractor(image)
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 32),
        (256, 16, 16),
        (512, 8, 8),
        (1024, 4, 4),
        (2048, 2, 2),
    ]
    normalized = (image - extractor.mean) / extractor.std
    with torch.no_grad():
        expected = source.forward_features(normalized)
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want)

    broken = source.state_dict()
    del broken["layer1.0.bn2.weight"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(WeightsMismatchError, match=r"1 missing: layer1\.0\.bn2\.weight"):
        load_imagenet_resnet(tmp_path / "broken.pth")
