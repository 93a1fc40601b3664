"""The benchmark registry: names, aliases and folder names, the data root, not-found errors."""

from __future__ import annotations

import pytest

from clipdenoise.data import BENCHMARKS, benchmark_info, default_data_root, resolve_dataset_dir
from clipdenoise.errors import DatasetNotFoundError


def test_resolve_dataset_dir_under_a_data_root(tmp_path, monkeypatch):
    (tmp_path / "Kodak24").mkdir()
    (tmp_path / "McM").mkdir()
    monkeypatch.delenv("CLIPDENOISE_DATA", raising=False)
    assert resolve_dataset_dir("kodak24", tmp_path) == tmp_path / "Kodak24"
    assert resolve_dataset_dir("Kodak", tmp_path) == tmp_path / "Kodak24"
    assert resolve_dataset_dir("mcmaster", tmp_path) == tmp_path / "McM"
    monkeypatch.setenv("CLIPDENOISE_DATA", str(tmp_path))
    assert resolve_dataset_dir("KODAK24") == tmp_path / "Kodak24"
    assert resolve_dataset_dir(str(tmp_path / "McM")) == tmp_path / "McM"


def test_missing_benchmark_names_the_folder_and_source(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPDENOISE_DATA", raising=False)
    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset_dir("cbsd68")  # the default data root: <cache>/data
    message = str(info.value)
    assert str(tmp_path / "cache" / "data" / "CBSD68") in message
    assert "--data-root or $CLIPDENOISE_DATA" in message
    assert "clipdenoise data download cbsd68" in message
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset_dir("urban100", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "Urban100") in message and "SelfExSR" in message
    assert "clipdenoise data import urban100 --from DIR" in message
    with pytest.raises(DatasetNotFoundError, match=r"unknown benchmark set 'imagenet'.*kodak24"):
        resolve_dataset_dir("imagenet", tmp_path)


def test_every_benchmark_says_where_to_get_it():
    for name in ("kodak24", "cbsd68", "mcmaster", "urban100", "cbsd432", "set12", "bsd68"):
        assert BENCHMARKS[name].kind == "clean"
    for name in ("cc", "polyu", "sidd"):
        assert BENCHMARKS[name].kind == "paired"
    assert all(info.source and info.folders for info in BENCHMARKS.values())


def test_every_alias_and_folder_name_names_its_set():
    for info in BENCHMARKS.values():
        for name in (info.name, *info.aliases, *info.folders, info.display_name):
            assert benchmark_info(name) is info, name
    assert benchmark_info("SIDD_test_PNG").display_name == "SIDD"
    assert benchmark_info("Urban100/HR").name == "urban100"
    assert benchmark_info("sidd-val").name == "sidd"


def test_folder_names_resolve_to_the_folders_present(tmp_path):
    (tmp_path / "SIDD_test_PNG").mkdir()
    (tmp_path / "CC15").mkdir()
    assert resolve_dataset_dir("SIDD", tmp_path) == tmp_path / "SIDD_test_PNG"
    assert resolve_dataset_dir("CC", tmp_path) == tmp_path / "CC15"


def test_other_names_are_folders_here_or_under_the_data_root(tmp_path, monkeypatch):
    (tmp_path / "root" / "mine").mkdir(parents=True)
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "Set12").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert resolve_dataset_dir("mine", tmp_path / "root") == tmp_path / "root" / "mine"
    # a registered set absent from the data root is taken from the current folder
    assert resolve_dataset_dir("Set12", tmp_path / "root").resolve() == tmp_path / "here" / "Set12"
    with pytest.raises(DatasetNotFoundError, match=r"dataset 'NoSuchSet' not found: no folder"):
        resolve_dataset_dir("NoSuchSet", tmp_path / "root")


def test_default_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPDENOISE_DATA", raising=False)
    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    assert default_data_root() == tmp_path / "cache" / "data"
    monkeypatch.setenv("CLIPDENOISE_DATA", str(tmp_path / "env"))
    assert default_data_root() == tmp_path / "env"
    assert default_data_root(tmp_path / "given") == tmp_path / "given"


def test_shared_benchmarks_resolve(benchmark_data_dir):
    expected = {
        "kodak24": "Kodak24",
        "cbsd68": "CBSD68",
        "cbsd432": "CBSD432",
        "set12": "Set12",
        "bsd68": "BSD68",
        "cc": "CC15",
        "rni15": "RNI15",
    }
    for name, folder in expected.items():
        assert resolve_dataset_dir(name, benchmark_data_dir) == benchmark_data_dir / folder
