"""Exceptions the package raises for problems a user can fix.

The CLI prints these as a single clear line (no traceback) and exits with status 2. Every error
about a file names the file and says what is wrong with it.
"""

from __future__ import annotations

import re


class ClipDenoiseError(Exception):
    """Base class of every user-facing error of clipdenoise."""


class ConfigError(ClipDenoiseError, ValueError):
    """A config file, key, value or override is invalid."""


class WeightsNotFoundError(ClipDenoiseError, FileNotFoundError):
    """Model or CLIP weights were not found; the message says where we looked and how to fix it."""


class WeightsMismatchError(ClipDenoiseError, ValueError):
    """A weights file is corrupt, has the wrong hash, or lacks / mis-shapes tensors."""


class ImageReadError(ClipDenoiseError, OSError):
    """An image file could not be read (missing, empty, truncated, unsupported mode, ...)."""


class NoiseSpecError(ConfigError):
    """A noise spec (``kind:level``) names an unknown kind or a bad level; lists the valid ones."""


class DatasetError(ClipDenoiseError, ValueError):
    """A dataset folder is unusable: unpaired files, unknown layout, no images, ..."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A benchmark set or data root was not found; says where we looked and where to get it."""


class EvaluationError(ClipDenoiseError, RuntimeError):
    """An evaluation cannot run as asked (none of a suite's sets found, mismatched pairs, ...)."""


class ImageWriteError(ClipDenoiseError, OSError):
    """An output file could not be written (format cannot hold the image, disk error, ...)."""


class OutputExistsError(ClipDenoiseError, FileExistsError):
    """An output already exists (or is an input) and overwriting was not allowed."""


class ChannelMismatchError(ClipDenoiseError, ValueError):
    """The image's channels do not match the model's and no conversion was asked for."""


class ImageTooSmallError(ClipDenoiseError, ValueError):
    """The image is too small to denoise meaningfully."""


class MissingExtraError(ClipDenoiseError, ImportError):
    """An optional dependency is not installed; the message gives the pip command to run."""


class DownloadError(ClipDenoiseError, OSError):
    """A download failed (offline, unreachable, refused, interrupted); says how to get the file."""


class ChecksumError(DownloadError):
    """A downloaded or imported file's SHA-256 differs from the recorded one (both named)."""


class NonFiniteOutputError(ClipDenoiseError, ArithmeticError):
    """The model produced NaN or infinite values (damaged or diverged weights); nothing is
    written."""


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message as one short line for a user: its first line, at most ``limit``
    characters, with reprs of in-memory objects (``<_io.BytesIO object at 0x...>``) left out."""
    text = str(error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", text).strip()
    return text[:limit] or type(error).__name__
