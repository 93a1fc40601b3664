"""Evaluation conventions of the reference: grey images scored by RGB networks, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipdenoise import metrics
from clipdenoise.evaluation import evaluate
from clipdenoise.noise import add_reference_noise, parse_noise_spec


def test_grey_images_are_scored_by_an_rgb_model_as_three_equal_channels(
    tmp_path, make_image, tiny_model
):
    folder = tmp_path / "grey"
    folder.mkdir()
    grey = np.round(make_image(32, 32, 1, seed=3) * 255).astype(np.uint8)
    Image.fromarray(grey[..., 0]).save(folder / "g.png")
    table = evaluate({"rgb": tiny_model}, datasets=[folder], noises=["gaussian:25"], progress=False)
    record = table.records[0]
    assert record.channels == 3
    # the reference reads the grey file with cv2.imread: three equal channels, noise per channel
    clean = np.repeat(grey.astype(np.float32) / 255.0, 3, axis=2)
    noisy = add_reference_noise(clean, parse_noise_spec("gaussian:25"), seed=0)
    with torch.no_grad():
        batch = torch.from_numpy(noisy.transpose(2, 0, 1)).float()[None]
        restored = tiny_model(batch)[0].permute(1, 2, 0).numpy()
    reference, output = metrics.to_metric_scale(clean), metrics.to_metric_scale(restored)
    assert record.psnr == pytest.approx(metrics.psnr(reference, output), abs=1e-4)


def test_pad_multiple_below_the_models_own_changes_nothing(tmp_path, make_image, tiny_model):
    from clipdenoise.protocol import EvalProtocol

    folder = tmp_path / "odd"
    folder.mkdir()
    pixels = np.round(make_image(30, 45, 3, seed=4) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "o.png")

    def psnr(multiple: int) -> float:
        protocol = EvalProtocol(pad_multiple=multiple)
        table = evaluate(
            {"m": tiny_model},
            datasets=[folder],
            noises=["gaussian:25"],
            protocol=protocol,
            progress=False,
        )
        return table.records[0].psnr

    assert psnr(1) == psnr(32)  # the model pads to 32 itself
    assert psnr(64) != psnr(32)
