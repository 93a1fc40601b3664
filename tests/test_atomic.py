"""Tests of clipdenoise.atomic: content, no temporary files left, overwrite refusal, folders."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from clipdenoise.atomic import (
    atomic_output,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    current_umask,
    fsync_folder,
    publish,
)
from clipdenoise.errors import OutputExistsError


class WriterFailed(Exception):
    """Raised on purpose by a writer in these tests."""


def _fail(_stream) -> None:
    raise WriterFailed("boom")


def _names(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_bytes_and_text_are_written_exactly(tmp_path):
    data = bytes(range(256))
    assert atomic_write_bytes(tmp_path / "b.bin", data) == tmp_path / "b.bin"
    assert (tmp_path / "b.bin").read_bytes() == data
    text = "line one\nλ two\r\n"
    atomic_write_text(tmp_path / "t.txt", text)
    assert (tmp_path / "t.txt").read_bytes() == text.encode("utf-8")  # no newline translation
    atomic_write_text(tmp_path / "l.txt", "é", encoding="latin-1")
    assert (tmp_path / "l.txt").read_bytes() == b"\xe9"
    assert _names(tmp_path) == ["b.bin", "l.txt", "t.txt"]


def test_stream_writer_gets_a_seekable_readable_binary_stream(tmp_path):
    def write(stream) -> None:
        stream.write(b"abcdef")
        stream.seek(0)
        assert stream.read(3) == b"abc"
        stream.seek(0, os.SEEK_END)
        stream.write(b"!")

    path = atomic_write(str(tmp_path / "s.bin"), write)  # a str path is accepted
    assert path.read_bytes() == b"abcdef!"
    assert _names(tmp_path) == ["s.bin"]


def test_parent_folders_are_created(tmp_path):
    target = tmp_path / "a" / "b" / "c" / "x.txt"
    atomic_write_text(target, "deep")
    assert target.read_text() == "deep"
    with atomic_output(tmp_path / "d" / "e" / "y.bin") as temporary:
        temporary.write_bytes(b"y")
    assert (tmp_path / "d" / "e" / "y.bin").read_bytes() == b"y"


def test_overwrite_false_refuses_an_existing_file_and_names_it(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("original")
    for write in (
        lambda: atomic_write_bytes(target, b"new", overwrite=False),
        lambda: atomic_write_text(target, "new", overwrite=False),
        lambda: atomic_write(target, lambda stream: stream.write(b"new"), overwrite=False),
    ):
        with pytest.raises(OutputExistsError, match=r"keep\.txt: exists already"):
            write()
    with (
        pytest.raises(OutputExistsError, match=r"keep\.txt: exists already"),
        atomic_output(target, overwrite=False),
    ):
        pytest.fail("the block must not run")  # pragma: no cover
    assert target.read_text() == "original"
    assert _names(tmp_path) == ["keep.txt"]
    assert isinstance(OutputExistsError("x"), FileExistsError)  # callers may catch either


def test_overwrite_false_writes_a_new_file_and_default_replaces(tmp_path):
    target = tmp_path / "new.txt"
    atomic_write_text(target, "first", overwrite=False)
    atomic_write_text(target, "second")
    assert target.read_text() == "second"


def test_failing_writer_leaves_no_temporary_and_the_destination_untouched(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old content")

    def half_then_fail(stream) -> None:
        stream.write(b"partial")
        raise WriterFailed("disk on fire")

    with pytest.raises(WriterFailed, match="disk on fire"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old content"
    assert _names(tmp_path) == ["data.bin"]


def test_failing_writer_without_destination_creates_nothing(tmp_path):
    with pytest.raises(WriterFailed):
        atomic_write(tmp_path / "never.bin", _fail)
    assert _names(tmp_path) == []


def test_keyboard_interrupt_also_removes_the_temporary(tmp_path):
    def interrupted(_stream) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "k.bin", interrupted)
    assert _names(tmp_path) == []


def test_unencodable_text_writes_nothing(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("kept")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "λ", encoding="ascii")
    assert target.read_text() == "kept"
    assert _names(tmp_path) == ["t.txt"]


def test_atomic_output_yields_a_hidden_sibling_that_keeps_the_suffix(tmp_path):
    target = tmp_path / "arr.npy"
    with atomic_output(target) as temporary:
        assert temporary.parent == tmp_path
        assert temporary.name.startswith(".arr.npy.") and temporary.name.endswith(".tmp.npy")
        assert temporary.exists() and not target.exists()
        np.save(temporary, np.arange(4))  # np.save appends .npy unless the name ends with it
    np.testing.assert_array_equal(np.load(target), np.arange(4))
    assert _names(tmp_path) == ["arr.npy"]


def test_atomic_output_failure_removes_the_temporary_and_keeps_the_destination(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"good weights")
    with pytest.raises(WriterFailed), atomic_output(target) as temporary:
        temporary.write_bytes(b"half")
        raise WriterFailed("crash mid-save")
    assert target.read_bytes() == b"good weights"
    assert _names(tmp_path) == ["model.safetensors"]


def test_temporary_names_are_hidden_and_unique(tmp_path):
    seen = []

    def record(stream) -> None:
        seen.extend(path.name for path in tmp_path.iterdir() if path.name.startswith("."))
        stream.write(b"x")

    for _ in range(3):
        atomic_write(tmp_path / "f.bin", record)
    assert len(seen) == len(set(seen)) == 3  # one temporary per write, a fresh name each time
    assert all(name.startswith(".f.bin.") and name.endswith(".tmp") for name in seen)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_files_get_ordinary_permissions_not_mkstemp_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        written = [
            atomic_write_bytes(tmp_path / "a.bin", b"a"),
            atomic_write(tmp_path / "b.bin", lambda stream: stream.write(b"b")),
        ]
        with atomic_output(tmp_path / "c.bin") as temporary:
            temporary.write_bytes(b"c")
        written.append(tmp_path / "c.bin")
    finally:
        os.umask(previous)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_writers_that_recreate_the_file_still_honour_the_umask(tmp_path, umask):
    from safetensors.torch import save_file

    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_output(tmp_path / "w.safetensors") as temporary:
            save_file({"x": torch.zeros(2)}, str(temporary))  # safetensors creates it 0o600
        partial = tmp_path / ".d.part"
        partial.write_bytes(b"done")
        os.chmod(partial, 0o600)
        publish(partial, tmp_path / "d.bin")
    finally:
        os.umask(previous)
    for name in ("w.safetensors", "d.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert not partial.exists() and (tmp_path / "d.bin").read_bytes() == b"done"


def test_fsync_folder_tolerates_a_missing_folder(tmp_path):
    fsync_folder(tmp_path)
    fsync_folder(tmp_path / "missing")  # no error: nothing to sync
