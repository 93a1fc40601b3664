"""Benchmark sets on disk: shipped manifests, download (local server), import, verify."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import zipfile

import pytest

from clipdenoise.cli import main
from clipdenoise.data import BENCHMARKS, BenchmarkInfo, store
from clipdenoise.data.store import (
    ManifestEntry,
    download_dataset,
    import_dataset,
    manifest,
    verify_dataset,
)
from clipdenoise.errors import ChecksumError, DatasetNotFoundError, DownloadError

FILES = {"a.png": b"alpha" * 100, "b.png": b"beta" * 300, "LICENSE.txt": b"terms\n"}


def _entries(files=FILES, verified=True):
    return [
        ManifestEntry(
            name, len(data), hashlib.sha256(data).hexdigest() if verified else "", f"src/{name}"
        )
        for name, data in sorted(files.items())
    ]


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """A registered set ``toy`` (folder ``Toy``) with a three-file manifest."""
    info = BenchmarkInfo("toy", ("Toy", "toy"), "clean", 3, "three files", "a test server")
    monkeypatch.setitem(BENCHMARKS, "toy", info)
    real_manifest = store.manifest
    tables = {"toy": _entries()}
    monkeypatch.setattr(store, "manifest", lambda name: tables.get(name) or real_manifest(name))
    return tables


def _register(monkeypatch, **changes):
    monkeypatch.setitem(BENCHMARKS, "toy", dataclasses.replace(BENCHMARKS["toy"], **changes))


# ---------------------------------------------------------------------------- shipped manifests
def test_manifests_cover_the_registry():
    for name in ("kodak24", "cbsd68", "mcmaster", "cbsd432", "set12", "bsd68", "cc", "polyu"):
        info = BENCHMARKS[name]
        entries = manifest(name)
        assert info.download == "files" and info.origin.startswith("https://raw.githubusercontent")
        assert len(entries) == info.count, name
        assert len({e.file for e in entries}) == len(entries)
        assert all(re.fullmatch(r"[0-9a-f]{64}", e.sha256) and e.size > 0 for e in entries)
    assert [e.file for e in manifest("cc") if not e.file.endswith(".png")] == ["LICENSE.txt"]
    assert sum(e.file.endswith("_real.JPG") for e in manifest("polyu")) == 100
    div2k = manifest("div2k")
    assert len(div2k) == 800 and div2k[0].file == "0001.png" and not div2k[0].verified
    assert div2k[-1].source == "DIV2K_train_HR/0800.png"
    assert {e.file for e in manifest("sidd")} == {
        "ValidationNoisyBlocksSrgb.mat",
        "ValidationGtBlocksSrgb.mat",
    }
    assert manifest("urban100") is None and BENCHMARKS["urban100"].count == 100


SHARED_SETS = {"kodak24", "cbsd68", "cbsd432", "set12", "bsd68", "cc", "rni6", "rni15"}


@pytest.mark.parametrize("name", sorted(SHARED_SETS))
def test_manifests_match_the_shared_benchmark_data(benchmark_data_dir, name):
    report = verify_dataset(name, benchmark_data_dir)
    assert report.ok, report.summary()
    assert not report.unverified and len(report.present) == BENCHMARKS[name].count


# ---------------------------------------------------------------------------- download
def test_download_checks_each_file_and_resumes(toy, file_server, tmp_path, monkeypatch):
    _register(monkeypatch, download="files", origin=f"{file_server.url}/repo/")
    for name, data in FILES.items():
        file_server.files[f"/repo/src/{name}"] = data
    file_server.cut_after["/repo/src/b.png"] = 500
    with pytest.raises(DownloadError, match="interrupted after 500 of 1200 bytes"):
        download_dataset("toy", tmp_path)
    report = download_dataset("toy", tmp_path)  # resumes b.png; files in place are kept
    assert report.ok and sorted(report.present) == sorted(FILES)
    assert (tmp_path / "Toy" / "b.png").read_bytes() == FILES["b.png"]
    assert ("/repo/src/b.png", "bytes=500-") in file_server.requests
    count = len(file_server.requests)
    assert download_dataset("toy", tmp_path).ok  # all in place: no request
    assert len(file_server.requests) == count


def test_download_refuses_an_altered_file(toy, file_server, tmp_path, monkeypatch):
    _register(monkeypatch, download="files", origin=f"{file_server.url}/repo/")
    for name, data in FILES.items():
        file_server.files[f"/repo/src/{name}"] = data
    file_server.files["/repo/src/a.png"] = b"tampered"
    with pytest.raises(ChecksumError, match=r"toy/a\.png: the file downloaded from .* has SHA-256"):
        download_dataset("toy", tmp_path)
    assert not (tmp_path / "Toy" / "a.png").exists()


def test_download_of_an_archive_set(toy, file_server, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in FILES.items():
            bundle.writestr(f"src/{name}", data)
        bundle.writestr("src/unrelated.txt", b"x")
    file_server.files["/toy.zip"] = buffer.getvalue()
    _register(monkeypatch, download="archive", origin=f"{file_server.url}/toy.zip")
    report = download_dataset("toy", tmp_path)
    assert report.ok and sorted(report.present) == sorted(FILES)
    assert (tmp_path / ".downloads" / "toy.zip").is_file()


def test_download_offline_and_manual_sets_fail_fast_with_instructions(toy, tmp_path, monkeypatch):
    _register(monkeypatch, download="files", origin="https://example.org/repo/")
    with pytest.raises(DownloadError, match=r"offline mode \(CLIPDENOISE_OFFLINE=1\)"):
        download_dataset("toy", tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:
        download_dataset("urban100", tmp_path)
    assert "SelfExSR" in str(info.value)
    assert "clipdenoise data import urban100 --from DIR" in str(info.value)


# ---------------------------------------------------------------------------- verify / import
def _write_set(folder, files=FILES):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def test_verify_reports_missing_extra_and_altered(toy, tmp_path, capsys):
    folder = _write_set(tmp_path / "Toy", {**FILES, "a.png": b"changed", "notes.md": b"x"})
    (folder / "b.png").unlink()
    report = verify_dataset("toy", tmp_path)
    assert (report.missing, report.extra, report.altered) == (["b.png"], ["notes.md"], ["a.png"])
    assert not report.ok
    assert main(["data", "--data-root", str(tmp_path), "verify", "toy"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("toy: PROBLEMS, 2/3 files; 1 verified by SHA-256; 1 missing: b.png;")
    assert "1 extra: notes.md; 1 altered: a.png" in out
    _write_set(folder)
    (folder / "notes.md").unlink()
    assert main(["data", "--data-root", str(tmp_path), "verify", "toy"]) == 0
    assert "toy: OK, 3/3 files; 3 verified by SHA-256" in capsys.readouterr().out


def test_import_copies_checked_files_from_any_layout(toy, tmp_path, capsys):
    source = _write_set(tmp_path / "download" / "unpacked" / "deep", {**FILES, "b.png": b"bad"})
    report = import_dataset("toy", tmp_path / "download", tmp_path / "root")
    assert sorted(report.present) == ["LICENSE.txt", "a.png"]
    assert report.missing == ["b.png"]
    assert report.altered == [f"{source / 'b.png'} (not imported)"]
    (source / "b.png").write_bytes(FILES["b.png"])
    code = main(
        ["data", "--data-root", str(tmp_path / "root"), "import", "toy", "--from", str(source)]
    )
    assert code == 0
    assert "toy: OK, 3/3 files" in capsys.readouterr().out
    assert (tmp_path / "root" / "Toy" / "b.png").read_bytes() == FILES["b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "import", "toy", "--from", str(empty)]) == 2
    assert "none of the 3 files of toy found" in capsys.readouterr().err


def test_unverified_and_count_only_sets(tmp_path, make_image):
    from PIL import Image

    folder = tmp_path / "Urban100"
    folder.mkdir()
    for index in range(3):
        Image.fromarray((make_image(8, 8, seed=index) * 255).astype("uint8")).save(
            folder / f"img_{index:03d}.png"
        )
    report = verify_dataset("urban100", tmp_path)
    assert report.missing == ["97 image(s)"] and len(report.unverified) == 3
    sidd = _write_set(tmp_path / "SIDD", {"ValidationGtBlocksSrgb.mat": b"x"})
    report = verify_dataset("sidd", tmp_path)
    assert report.missing == ["ValidationNoisyBlocksSrgb.mat"]
    assert report.unverified == ["ValidationGtBlocksSrgb.mat"] and sidd.is_dir()
    assert "1 present but unverified (no recorded hash)" in report.summary()
