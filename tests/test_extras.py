"""Missing optional extras end in one line naming the pip command, never a traceback."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from clipdenoise.cli import main
from clipdenoise.errors import MissingExtraError
from clipdenoise.extras import import_optional, install_hint, lazy_exports


def _hide(monkeypatch, *modules: str) -> None:
    """Make ``import module`` fail as if the package were not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _one_line_error(capsys, code: int, pip: str) -> str:
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and pip in lines[0], err
    return lines[0]


def _images(folder, make_image, count=2, size=(32, 48)):
    folder.mkdir()
    for index in range(count):
        pixels = (make_image(*size, seed=index) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"im{index}.png")
    return folder


def test_import_optional_names_the_extra(monkeypatch):
    _hide(monkeypatch, "sklearn")
    with pytest.raises(MissingExtraError) as info:
        import_optional("sklearn.manifold", "t-SNE")
    assert str(info.value) == (
        "t-SNE needs sklearn, which is not installed: pip install 'clipdenoise[analysis]'"
    )
    assert install_hint("gdown") == "pip install 'clipdenoise[drive]'"
    assert import_optional("json", "x").dumps([1]) == "[1]"


def test_evaluate_nlm_without_scikit_image(monkeypatch, capsys, tmp_path, make_image):
    folder = _images(tmp_path / "set", make_image)
    _hide(monkeypatch, "skimage")
    code = main(
        ["evaluate", "nlm", "--datasets", str(folder), "--noise", "gaussian:25",
         "--out", str(tmp_path / "out"), "--no-progress"]
    )  # fmt: skip
    _one_line_error(capsys, code, "pip install 'clipdenoise[baselines]'")


def test_evaluate_plots_without_matplotlib_keeps_the_tables(
    monkeypatch, capsys, tmp_path, make_image
):
    folder = _images(tmp_path / "set", make_image)
    _hide(monkeypatch, "matplotlib")
    out = tmp_path / "out"
    code = main(
        ["evaluate", "noisy", "--datasets", str(folder), "--noise", "gaussian:25",
         "--out", str(out), "--plots", "--no-progress"]
    )  # fmt: skip
    line = _one_line_error(capsys, code, "pip install 'clipdenoise[plot]'")
    assert f"results written to {out}" in line
    assert "noisy" in (out / "results.md").read_text()
    assert (out / "per_image.csv").read_text().count("\n") == 3  # header + 2 images


def test_analyze_figures_without_matplotlib(monkeypatch, capsys, tmp_path, make_image):
    folder = _images(tmp_path / "set", make_image)
    _hide(monkeypatch, "matplotlib")
    code = main(["analyze", str(folder), "--encoder", "avgpool", "--scales", "F1", "-q",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    _one_line_error(capsys, code, "pip install 'clipdenoise[analysis]'")


def test_analyze_tsne_without_scikit_learn(monkeypatch, capsys, tmp_path, make_image):
    folder = _images(tmp_path / "set", make_image, count=3)
    _hide(monkeypatch, "sklearn")
    code = main(["analyze", str(folder), "--encoder", "avgpool", "--scales", "F1", "--tsne",
                 "--tsne-draws", "2", "--no-figures", "-q", "--out", str(tmp_path / "out")])  # fmt: skip
    _one_line_error(capsys, code, "pip install 'clipdenoise[analysis]'")


def test_lazy_exports_import_a_name_on_first_use_and_keep_it():
    import json

    namespace = {"__all__": ["dumps", "other"]}
    getattr_, dir_ = lazy_exports("pkg", {"dumps": "json"}, namespace)
    assert "dumps" not in namespace
    assert getattr_("dumps") is json.dumps
    assert namespace["dumps"] is json.dumps  # later look-ups skip __getattr__
    assert dir_() == ["dumps", "other"]
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'missing'"):
        getattr_("missing")
