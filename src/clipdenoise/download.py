"""Downloading files: resumable, hash-checked, atomic, quick to fail when offline.

One function, :func:`download_file`, fetches CLIP weights, benchmark images and archives:

- the data go to a hidden partial file beside the destination (``.<name>.part``); an interrupted
  download keeps it, and the next call resumes it with an HTTP ``Range`` request (a server that
  ignores the range sends the whole file, which then replaces the partial one);
- when complete, the file's SHA-256 is compared with the expected one (a mismatch deletes the
  partial file and raises :class:`~clipdenoise.errors.ChecksumError` naming both hashes);
- the verified file is renamed into place through :func:`clipdenoise.atomic.publish` (fsync,
  permissions from the umask, ``os.replace``), so the destination is either absent or complete;
- a progress bar (tqdm) is shown on a terminal;
- no retries and short timeouts: offline (``CLIPDENOISE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``, no
  route, DNS failure, refused connection) fails in seconds with a
  :class:`~clipdenoise.errors.DownloadError` that says what to do instead.

Only the standard library's ``urllib`` is used (no extra dependency).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from clipdenoise.atomic import publish
from clipdenoise.errors import ChecksumError, DownloadError

#: Environment variables that forbid any download when set to 1 / true / yes / on.
OFFLINE_ENV = ("CLIPDENOISE_OFFLINE", "HF_HUB_OFFLINE")
#: Seconds to wait for a connection or for the next block of data.
DEFAULT_TIMEOUT = 20.0
PARTIAL_SUFFIX = ".part"
_CHUNK = 1 << 16
_USER_AGENT = "clipdenoise-downloader"


def offline_reason() -> str | None:
    """``"HF_HUB_OFFLINE=1"`` (the variables that forbid downloads), or None when online."""
    names = [
        f"{name}=1"
        for name in OFFLINE_ENV
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
    ]
    return ", ".join(names) or None


def partial_path(destination: str | Path) -> Path:
    """The hidden file an unfinished download of ``destination`` is kept in."""
    destination = Path(destination)
    return destination.with_name(f".{destination.name}{PARTIAL_SUFFIX}")


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str,
    destination: str | Path,
    *,
    sha256: str | None = None,
    progress: bool | None = None,
    timeout: float | None = None,
    what: str = "file",
) -> Path:
    """Download ``url`` to ``destination``, resuming a partial download and checking its hash.

    Args:
        url: ``http(s)://`` address.
        destination: Where the file goes; its folder is created.
        sha256: Expected hex SHA-256; ``None`` accepts any content (the caller records the hash).
        progress: Show a progress bar; default: when stderr is a terminal.
        timeout: Seconds for the connection and each read (default
            ``$CLIPDENOISE_DOWNLOAD_TIMEOUT`` or :data:`DEFAULT_TIMEOUT`).
        what: What the file is, for messages (``"CLIP RN50 weights"``).

    Returns:
        ``destination`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: offline, unreachable, HTTP error or interrupted transfer (the partial file
            is kept for the next attempt); the message names the URL and the destination.
        ChecksumError: the complete file's SHA-256 differs from ``sha256`` (nothing is kept).
    """
    destination = Path(destination)
    reason = offline_reason()
    if reason is not None:
        raise DownloadError(
            f"{what} not downloaded: offline mode ({reason}); download {url} yourself and save "
            f"it as {destination}, or unset the variable"
        )
    if timeout is None:
        timeout = float(os.environ.get("CLIPDENOISE_DOWNLOAD_TIMEOUT", DEFAULT_TIMEOUT))
    if progress is None:
        progress = sys.stderr.isatty()
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(destination)
    offset = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the partial file is already complete
            return _finish(partial, destination, sha256, url, what)
        raise DownloadError(
            f"{what}: {url} answered HTTP {error.code} {error.reason}; nothing saved to "
            f"{destination}"
        ) from error
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(_unreachable_message(url, destination, what, error)) from error
    with response:
        if response.status == 206:
            mode = "ab"
        else:  # a full answer: start over
            mode, offset = "wb", 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        received = offset
        bar = _progress_bar(total, offset, f"{what}", progress)
        try:
            with open(partial, mode) as stream:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, ValueError) as error:  # reset, timeout, incomplete read
                        raise DownloadError(_interrupted(url, partial, received, total)) from error
                    if not chunk:
                        break
                    stream.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    if total is not None and received < total:
        raise DownloadError(_interrupted(url, partial, received, total))
    return _finish(partial, destination, sha256, url, what)


def _finish(partial: Path, destination: Path, sha256: str | None, url: str, what: str) -> Path:
    if sha256 is not None:
        actual = sha256_file(partial)
        if actual != sha256.lower():
            partial.unlink(missing_ok=True)
            raise ChecksumError(
                f"{what}: the file downloaded from {url} has SHA-256 {actual}, expected "
                f"{sha256.lower()}; it was deleted (a changed or corrupted source)"
            )
    return publish(partial, destination)


def _interrupted(url: str, partial: Path, received: int, total: int | None) -> str:
    of = f" of {total}" if total is not None else ""
    return (
        f"download of {url} interrupted after {received}{of} bytes; the partial file {partial} "
        "is kept and the same command resumes it"
    )


def _unreachable_message(url: str, destination: Path, what: str, error: Exception) -> str:
    cause = getattr(error, "reason", error)
    if isinstance(cause, socket.gaierror):
        detail = "the host name could not be resolved (no DNS: offline?)"
    elif isinstance(cause, (TimeoutError, socket.timeout)):
        detail = "no answer in time"
    elif isinstance(cause, ConnectionRefusedError):
        detail = "connection refused"
    else:
        detail = str(cause) or type(cause).__name__
    return (
        f"{what}: cannot download {url}: {detail}. Offline, fetch it on a machine with access "
        f"and copy it to {destination}"
    )


def _progress_bar(total: int | None, initial: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=description,
        disable=not enabled,
        leave=False,
    )


__all__ = [
    "DEFAULT_TIMEOUT",
    "OFFLINE_ENV",
    "download_file",
    "offline_reason",
    "partial_path",
    "sha256_file",
]
