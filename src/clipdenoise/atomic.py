"""Crash-safe file writes: a temporary file beside the destination, fsync, then ``os.replace``.

Every file clipdenoise writes (checkpoints, training states, images, CT slices, tables, figures,
manifests) goes through this module, so a killed process or a full disk never leaves a
half-written file under the final name: a reader sees either the old file or the complete new
one. The recipe:

1. the parent folders are created;
2. the data go to a temporary file in the destination's own folder (same filesystem, so the
   rename is atomic), named ``.<name>.<random>.tmp`` so it is hidden and easy to spot;
3. the temporary file is flushed and fsynced, then renamed over the destination with
   ``os.replace``, and the folder is fsynced so the rename itself survives a power cut;
4. on any exception (including ``KeyboardInterrupt``) the temporary file is removed and the
   destination is left as it was.

The final file has the permissions an ordinary ``open(path, "w")`` would give (``0o666`` less
the umask), not ``tempfile.mkstemp``'s ``0o600``, even when a writer recreates the temporary file
with its own mode (``safetensors`` writes ``0o600``).

Four entry points, from the simplest:

- :func:`atomic_write_bytes` and :func:`atomic_write_text` for data already in memory;
- :func:`atomic_write` for writers that take a binary stream (``torch.save``, ``np.save``,
  ``PIL.Image.save``, ``pydicom.dcmwrite``, ``figure.savefig``);
- :func:`atomic_output` for libraries that insist on a file *name*
  (``safetensors.torch.save_file``).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_write_text(folder / "sub" / "note.txt", "hello\\n").read_text()
    'hello\\n'
    >>> with atomic_output(folder / "blob.bin") as temporary:
    ...     _ = temporary.write_bytes(b"\\x00\\x01")
    >>> (folder / "blob.bin").read_bytes()
    b'\\x00\\x01'
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from clipdenoise.errors import OutputExistsError

TEMP_SUFFIX = ".tmp"
_CREATE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_NAME_ATTEMPTS = 100


def atomic_write(
    path: str | Path, write: Callable[[BinaryIO], object], *, overwrite: bool = True
) -> Path:
    """Write a file atomically by streaming into a temporary file beside it.

    Args:
        path: The destination; its parent folders are created.
        write: Called once with the temporary file open in ``"w+b"`` mode (readable and
            seekable, as some encoders need); it writes the whole content. Its return value is
            ignored.
        overwrite: Replace an existing ``path``. When false, an existing ``path`` is refused
            before anything is written (checked once, up front: a file another process creates
            meanwhile is still replaced).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false (the message names it).
        Exception: whatever ``write`` or the filesystem raises, unchanged; the temporary file is
            removed and an existing ``path`` is untouched.
    """
    path = _prepare_destination(path, overwrite=overwrite)
    descriptor, temporary = _create_temporary(path, TEMP_SUFFIX)
    try:
        with os.fdopen(descriptor, "w+b") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: The destination; its parent folders are created.
        data: The complete file content.
        overwrite: Replace an existing ``path`` (see :func:`atomic_write`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false (the message names it).
    """
    return atomic_write(path, lambda stream: stream.write(data), overwrite=overwrite)


def atomic_write_text(
    path: str | Path, text: str, *, overwrite: bool = True, encoding: str = "utf-8"
) -> Path:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding``.

    Line endings are written as given (no ``\\n`` → ``\\r\\n`` translation on Windows), so the
    file is byte-identical on every platform.

    Args:
        path: The destination; its parent folders are created.
        text: The complete file content.
        overwrite: Replace an existing ``path`` (see :func:`atomic_write`).
        encoding: Text encoding of the file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false (the message names it).
        UnicodeEncodeError: ``text`` cannot be encoded (nothing is written).
    """
    return atomic_write_bytes(path, text.encode(encoding), overwrite=overwrite)


@contextlib.contextmanager
def atomic_output(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary file name beside ``path`` to write to; rename it over ``path`` on success.

    For libraries that only write to a file *name*. The temporary name keeps ``path``'s suffix
    (``.<name>.<random>.tmp<suffix>``) because some writers pick the format or append an
    extension from it (``np.save`` adds ``.npy``, ``savefig`` reads the suffix). The file exists
    (empty) when the block starts; the writer replaces its content. When the block ends without
    an exception the file is fsynced and renamed over ``path``; on any exception it is removed
    and ``path`` is left as it was.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> target = Path(tempfile.mkdtemp()) / "ones.npy"
        >>> with atomic_output(target) as temporary:
        ...     np.save(temporary, np.ones(3))
        >>> np.load(target).tolist()
        [1.0, 1.0, 1.0]

    Args:
        path: The destination; its parent folders are created.
        overwrite: Replace an existing ``path`` (see :func:`atomic_write`).

    Yields:
        The temporary file's path, in ``path``'s folder.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false (the message names it).
    """
    path = _prepare_destination(path, overwrite=overwrite)
    descriptor, temporary = _create_temporary(path, TEMP_SUFFIX + path.suffix)
    os.close(descriptor)
    try:
        yield temporary
        publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def publish(temporary: str | Path, path: str | Path) -> Path:
    """Give a finished file its final name: fsync it, set ordinary permissions, rename it over
    ``path`` and fsync the folder.

    For files written under a temporary name by other means (a writer that recreates the file,
    such as ``safetensors`` which creates it ``0o600``; a resumable download's partial file).
    The permissions become ``0o666`` less the umask, as ``open(path, "w")`` would give.

    Args:
        temporary: The complete file, in ``path``'s folder (same filesystem).
        path: The destination.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    temporary, path = Path(temporary), Path(path)
    _fsync_file(temporary)
    os.chmod(temporary, 0o666 & ~current_umask())
    os.replace(temporary, path)
    fsync_folder(path.parent)
    return path


def current_umask() -> int:
    """The process's umask: from ``/proc/self/status`` where it exists (no side effect), else by
    setting and restoring it (Python has no getter)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(path: str | Path, *, older_than_s: float = 60.0) -> list[Path]:
    """Delete temporary files this module left beside ``path`` (a process killed mid-write).

    Only names of this module's exact pattern for ``path`` (``.<name>.<8 hex>.tmp[<suffix>]``)
    whose last change is older than ``older_than_s`` are removed, so a write in progress in
    another process is left alone.

    Args:
        path: The destination whose leftovers to remove.
        older_than_s: Minimum age in seconds of a temporary file to count as stale.

    Returns:
        The files removed.
    """
    path = Path(path)
    pattern = re.compile(
        rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}"
        rf"(?:{re.escape(path.suffix)})?"
    )
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}*"))
    except OSError:
        return removed
    now = time.time()
    for candidate in candidates:
        if not pattern.fullmatch(candidate.name):
            continue
        try:
            if now - candidate.lstat().st_mtime >= older_than_s and candidate.is_file():
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


@contextlib.contextmanager
def interrupt_on_termination() -> Iterator[None]:
    """Treat SIGTERM and SIGHUP like Ctrl+C (``KeyboardInterrupt``) inside the block.

    Their default action kills the process at once, leaving the temporary file of a write in
    progress behind; raised as ``KeyboardInterrupt`` they unwind through the writers here, which
    remove it. Outside the main thread (where handlers cannot be set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {name: signal.signal(getattr(signal, name), interrupt) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def fsync_folder(folder: str | Path) -> None:
    """Make renames in ``folder`` durable; a no-op where folders cannot be opened (Windows).

    Args:
        folder: The folder whose entries changed.
    """
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse to fsync a folder; the data themselves are synced
    finally:
        os.close(descriptor)


def _prepare_destination(path: str | Path, *, overwrite: bool) -> Path:
    """Refuse an existing ``path`` unless ``overwrite``; create its parent folders."""
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputExistsError(f"{path}: exists already (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _create_temporary(path: Path, suffix: str) -> tuple[int, Path]:
    """Create a new, empty, hidden file beside ``path``; returns its open descriptor and path.

    ``O_EXCL`` with mode ``0o666`` (the umask applies) rather than ``tempfile.mkstemp``, whose
    files are ``0o600`` and would keep that mode after the rename.
    """
    for _ in range(_NAME_ATTEMPTS):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(temporary, _CREATE_FLAGS, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: found no free temporary name for {path.name}")


def _fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk (opened for writing: Windows needs that to sync)."""
    descriptor = os.open(path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = [
    "TEMP_SUFFIX",
    "atomic_output",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "fsync_folder",
    "interrupt_on_termination",
    "publish",
    "remove_stale_temporaries",
]
