"""``clipdenoise data``: the list of sets and their state, verify without names, errors."""

from __future__ import annotations

import re

import pytest

from clipdenoise.cli import main


def test_data_list(tmp_path, capsys):
    (tmp_path / "CC15").mkdir()
    (tmp_path / "CC15" / "x_real.png").write_bytes(b"1")
    assert main(["data", "--data-root", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert f"data root: {tmp_path}" in out
    assert re.search(r"^cc\s+present\s+1/31\s+files\s+sha256\s+", out, re.M)
    assert re.search(r"^div2k\s+absent\s+0/800\s+archive\s+unverified \(names only\)", out, re.M)
    assert re.search(r"^urban100\s+absent\s+0/100\s+manual\s+none \(count only\)", out, re.M)


def test_verify_without_names_checks_the_sets_present(tmp_path, capsys):
    assert main(["data", "--data-root", str(tmp_path), "verify"]) == 1
    assert "no set present under the data root" in capsys.readouterr().err
    (tmp_path / "CC15").mkdir()
    (tmp_path / "CC15" / "x_real.png").write_bytes(b"1")
    assert main(["data", "--data-root", str(tmp_path), "verify"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("cc: PROBLEMS, 0/31 files; 0 verified by SHA-256; 31 missing: ")
    assert "1 extra: x_real.png" in out
    assert out.count("\n") == 1  # only the set that is present


def test_unknown_set_is_a_one_line_error_listing_the_known_ones(tmp_path, capsys):
    assert main(["data", "--data-root", str(tmp_path), "verify", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clipdenoise data: error: unknown benchmark set 'nope'; known sets: ")
    assert "kodak24" in err and err.count("\n") == 1


def test_download_offline_says_where_to_get_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLIPDENOISE_OFFLINE", "1")
    assert main(["data", "--data-root", str(tmp_path), "download", "cc"]) == 2
    err = capsys.readouterr().err
    assert "not downloaded: offline mode (CLIPDENOISE_OFFLINE=1)" in err
    assert "https://raw.githubusercontent.com/" in err and err.count("\n") == 1
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_an_action_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data"])
    assert exit_info.value.code == 2
    assert "ACTION" in capsys.readouterr().err
