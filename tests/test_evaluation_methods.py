"""Method specs: classical methods, our checkpoints (ours and the reference release), learned
baselines and the paper's ablations."""

from __future__ import annotations

import math

import pytest

from clipdenoise.errors import ConfigError
from clipdenoise.evaluation import evaluate, resolve_method


def test_method_specs_and_ablations(tmp_path, tiny_model):
    from clipdenoise.checkpoints import save_checkpoint

    assert resolve_method("floor=noisy").name == "floor"
    assert not resolve_method("bm3d").is_network
    assert resolve_method("nlm-est").options["sigma"] == "estimated"
    path = save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")
    ours = resolve_method(f"clipdenoise:{path}")
    assert ours.name == "tiny" and len(ours.checkpoint_sha256) == 64
    assert resolve_method(f"ablation:frozen:{path}").options == {"ablation": "frozen"}
    with pytest.raises(ConfigError, match="not the 'with-f5' ablation"):
        resolve_method(f"ablation:with-f5:{path}")

    from clipdenoise.baselines import build_baseline, save_baseline

    saved = save_baseline(build_baseline("dncnn", depth=3, features=4), tmp_path / "d.safetensors")
    dncnn_method = resolve_method(f"dncnn:{saved}")
    assert (dncnn_method.name, dncnn_method.kind) == ("dncnn-d", "dncnn")
    assert dncnn_method.checkpoint_sha256 and dncnn_method.module.config.depth == 3


def test_reference_release_checkpoint_is_a_method(fixtures_dir, image_folder):
    path = fixtures_dir / "official" / "official_tiny_rgb_checkpoint.pth"
    method = resolve_method(f"ref=clipdenoise:{path}")
    assert method.name == "ref" and method.kind == "clipdenoise" and method.checkpoint_sha256
    table = evaluate([method], datasets=[image_folder], noises=["gaussian:25"], progress=False)
    cell = table.cells[(table.rows[0], "ref")]
    assert cell.num_images == 2 and math.isfinite(cell.psnr)
    assert table.method_info[0]["checkpoint_sha256"] == method.checkpoint_sha256
