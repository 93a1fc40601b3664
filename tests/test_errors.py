"""The package's user-facing errors: one base class, the built-in kinds callers already catch,
and messages cut to one short line."""

from __future__ import annotations

import io

import pytest

from clipdenoise import errors
from clipdenoise.errors import (
    ChecksumError,
    ClipDenoiseError,
    ConfigError,
    DatasetNotFoundError,
    DownloadError,
    NoiseSpecError,
    WeightsNotFoundError,
    one_line,
)

ERROR_CLASSES = [
    value
    for value in vars(errors).values()
    if isinstance(value, type) and issubclass(value, Exception) and value is not ClipDenoiseError
]


def test_every_error_is_a_clipdenoise_error_and_a_builtin_kind():
    assert len(ERROR_CLASSES) >= 15
    for error_class in ERROR_CLASSES:
        assert issubclass(error_class, ClipDenoiseError), error_class
        builtin = [base for base in error_class.__mro__ if base.__module__ == "builtins"]
        assert builtin[0] is not object and builtin[0] is not Exception, error_class


@pytest.mark.parametrize(
    ("error", "caught_as"),
    [
        (WeightsNotFoundError("w.pt: not found"), FileNotFoundError),
        (DatasetNotFoundError("no Kodak24"), FileNotFoundError),
        (NoiseSpecError("bad kind"), ValueError),
        (NoiseSpecError("bad kind"), ConfigError),
        (ChecksumError("hash differs"), DownloadError),
        (ChecksumError("hash differs"), OSError),
    ],
)
def test_errors_are_caught_by_their_builtin_kinds(error, caught_as):
    with pytest.raises(caught_as):
        raise error


def test_one_line_keeps_the_first_line():
    error = ValueError("first line\n  Traceback-like detail\nmore")
    assert one_line(error) == "first line"
    assert one_line(ValueError("  padded  ")) == "padded"


def test_one_line_drops_object_reprs_and_is_bounded():
    error = OSError(f"cannot identify image file {io.BytesIO()!r}")
    assert one_line(error) == "cannot identify image file"
    assert len(one_line(ValueError("x" * 500))) == 200
    assert one_line(ValueError("y" * 50), limit=10) == "y" * 10


def test_one_line_of_an_empty_message_is_the_class_name():
    assert one_line(KeyError()) == "KeyError"
    assert one_line(RuntimeError("<object at 0xdeadbeef>")) == "RuntimeError"


def test_the_cli_prints_a_clipdenoise_error_as_one_line(capsys, tmp_path):
    from clipdenoise.cli import main

    assert main(["weights", "verify", str(tmp_path / "absent.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clipdenoise weights: error: ") and err.count("\n") == 1
