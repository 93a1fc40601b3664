"""The repository carries its licence, notices, citation and changelog; the version is single-sourced."""

from __future__ import annotations

import importlib.metadata
import re

import clipdenoise
from conftest import REPO_ROOT


def test_version_comes_from_the_package_metadata():
    assert clipdenoise.__version__ == importlib.metadata.version("clipdenoise")
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert f'version = "{clipdenoise.__version__}"' in pyproject


def test_licence_notice_citation_and_changelog():
    licence = (REPO_ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in licence
    assert 'license = { text = "MIT" }' in (REPO_ROOT / "pyproject.toml").read_text()
    notice = (REPO_ROOT / "NOTICE.md").read_text()
    for resource in (REPO_ROOT / "src" / "clipdenoise" / "resources").iterdir():
        if resource.name != "sample.png":  # generated here, no third-party content
            assert resource.name in notice, resource.name
    for name in ("OpenAI", "DoRF", "CLIPDenoising", "Kodak", "CC", "PolyU", "DIV2K", "SIDD"):
        assert name in notice
    citation = (REPO_ROOT / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in citation
    assert "title: Transfer CLIP for Generalizable Image Denoising" in citation
    assert re.findall(r"family-names: (\w+)", citation) == ["Cheng", "Liang", "Tan"]
    readme = (REPO_ROOT / "README.md").read_text()
    assert "@inproceedings{cheng2024transfer," in readme
    assert "../shared" not in readme  # examples use paths a user has
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{clipdenoise.__version__}]" in changelog


def test_fixture_regeneration_script_checks_its_inputs(tmp_path):
    import subprocess
    import sys

    script = REPO_ROOT / "tests" / "fixtures" / "regenerate.py"
    shown = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0 and "--reference" in shown.stdout and "--curves" in shown.stdout
    failed = subprocess.run(
        [sys.executable, str(script), "--reference", str(tmp_path), "--curves", str(tmp_path),
         "--kodak", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        f"regenerate.py: error: {tmp_path}: not a CLIPDenoising checkout (no CLIPDenoising_arch.py)"
    )
    assert not (tmp_path / "out").exists()


def _markdown_anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    headings = re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_readme_is_short_and_every_relative_link_resolves():
    readme = REPO_ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 250
    pages = [readme, *sorted((REPO_ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.name}: {target}")
            elif (
                anchor
                and resolved.suffix == ".md"
                and anchor not in _markdown_anchors(resolved.read_text())
            ):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
