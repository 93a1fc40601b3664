"""``clipdenoise weights``: where, list, import (released names, --force), convert and verify."""

from __future__ import annotations

import pytest

from clipdenoise.checkpoints import checkpoint_sha256
from clipdenoise.cli import main


def test_weights_cli(tmp_path, monkeypatch, capsys, fixtures_dir):
    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    source = fixtures_dir / "official" / "official_tiny_gray_checkpoint.pth"
    assert main(["weights", "convert", str(source), str(tmp_path / "g.safetensors")]) == 0
    assert main(["weights", "convert", str(source), str(tmp_path / "g.safetensors")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["weights", "import", str(source), "--name", "ct.tiny"]) == 0
    assert main(["weights", "list"]) == 0
    assert "ct.tiny" in capsys.readouterr().out
    assert main(["weights", "verify", str(tmp_path / "g.safetensors")]) == 0
    assert "loads as a denoiser: custom, 1 channel(s)" in capsys.readouterr().out
    assert main(["weights", "verify", str(source), "--sha256", "0" * 64]) == 2
    assert "does not match expected" in capsys.readouterr().err
    assert main(["weights", "where"]) == 0
    assert str(tmp_path / "xdg" / "clip" / "RN50.pt") in capsys.readouterr().out


def test_cli_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "weights" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["weights", "--help"])
    out = capsys.readouterr().out
    for action in ("where", "list", "import", "convert", "verify"):
        assert action in out


def test_weights_cli_import_force_and_list_hashes(tmp_path, monkeypatch, capsys, fixtures_dir):
    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    rgb = fixtures_dir / "official" / "official_tiny_rgb_checkpoint.pth"
    assert main(["weights", "import", str(rgb), "--name", "rn50.synthetic-gaussian15"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "does not fit" in err
    assert main(["weights", "import", str(rgb), "--name", "tiny"]) == 0
    assert main(["weights", "import", str(rgb), "--name", "tiny"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["weights", "import", str(rgb), "--name", "tiny", "--force"]) == 0
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert f"imported from {rgb.name}, sha256 {checkpoint_sha256(rgb)}" in out
    assert "rn50.synthetic-gaussian15" in out and "not imported" in out
