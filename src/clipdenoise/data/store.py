"""Benchmark sets on disk: getting them (download or import), and checking them file by file.

Every set of the registry (:data:`~clipdenoise.data.registry.BENCHMARKS`) lives in its canonical
folder under the data root (``--data-root``, ``$CLIPDENOISE_DATA``, default ``<cache>/data``):
``Kodak24/``, ``CBSD68/``, ``CC15/``, ``DIV2K/``... Its manifest, shipped as package data
(``clipdenoise/manifests/<name>.csv``, columns ``file,bytes,sha256,source``), lists every file the
set must hold with its size and SHA-256 and where it comes from (``source``, a path in the pinned
repository snapshot or archive the registry names). A row without a hash is *unverified*: the
file name is known from the official release but its bytes were not available when the manifest
was made; ``verify`` then checks presence only. Sets without a manifest (Urban100) are checked by
their file count.

- :func:`download_dataset` fetches what is missing (per file from a pinned repository snapshot,
  or one archive), each file hash-checked, resumable and renamed into place atomically;
- :func:`import_dataset` copies a set obtained otherwise (``--from DIR``), refusing altered files;
- :func:`verify_dataset` reports missing, extra and altered files.
"""

from __future__ import annotations

import csv
import shutil
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from clipdenoise.atomic import atomic_write
from clipdenoise.data.folders import list_image_files
from clipdenoise.data.registry import (
    BENCHMARKS,
    BenchmarkInfo,
    benchmark_info,
    default_data_root,
    find_benchmark_folder,
    obtain_hint,
)
from clipdenoise.download import download_file, sha256_file
from clipdenoise.errors import DatasetError, DatasetNotFoundError


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a set: its name in the set's folder, size, SHA-256 (``""`` when unverified)
    and its path in the source (repository snapshot or archive)."""

    file: str
    size: int | None
    sha256: str
    source: str

    @property
    def verified(self) -> bool:
        return bool(self.sha256)


@dataclass
class VerifyReport:
    """What :func:`verify_dataset` found in a set's folder."""

    name: str
    folder: Path
    expected: int
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.altered)

    def summary(self) -> str:
        """One line: ``kodak24: OK, 24/24 files; 24 verified by SHA-256 (/data/Kodak24)``."""
        checked = len(self.present) - len(self.unverified) - len(self.altered)
        parts = [f"{len(self.present)}/{self.expected} files"]
        parts.append(f"{checked} verified by SHA-256")
        if self.unverified:
            parts.append(f"{len(self.unverified)} present but unverified (no recorded hash)")
        for label, names in (
            ("missing", self.missing),
            ("extra", self.extra),
            ("altered", self.altered),
        ):
            if names:
                shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
                parts.append(f"{len(names)} {label}: {shown}")
        state = "OK" if self.ok else "PROBLEMS"
        return f"{self.name}: {state}, {'; '.join(parts)} ({self.folder})"


def manifest(name: str) -> list[ManifestEntry] | None:
    """The shipped manifest of a set (``None`` for sets checked by count only).

    Raises:
        DatasetNotFoundError: unknown set name.
    """
    info = benchmark_info(name)
    resource = resources.files("clipdenoise").joinpath("manifests", f"{info.name}.csv")
    if not resource.is_file():
        return None
    rows = csv.DictReader(resource.read_text().splitlines())
    return [
        ManifestEntry(
            file=row["file"],
            size=int(row["bytes"]) if row["bytes"] else None,
            sha256=row["sha256"].lower(),
            source=row["source"] or row["file"],
        )
        for row in rows
    ]


def expected_count(info: BenchmarkInfo) -> int | None:
    entries = manifest(info.name)
    return len(entries) if entries is not None else info.count


def dataset_folder(name: str, data_root: str | Path | None = None) -> Path:
    """The set's canonical folder under the data root (whether or not it exists), or the
    accepted folder name that exists there."""
    info = benchmark_info(name)
    root = default_data_root(data_root)
    return find_benchmark_folder(info, root) or root / info.folders[0]


def _files_in(folder: Path) -> list[str]:
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def verify_dataset(
    name: str, data_root: str | Path | None = None, *, folder: str | Path | None = None
) -> VerifyReport:
    """Check a set's folder against its manifest: missing, extra and altered files.

    Args:
        name: Set name or alias.
        data_root: See :func:`clipdenoise.data.registry.default_data_root`.
        folder: Check this folder instead of the one under the data root.

    Raises:
        DatasetNotFoundError: unknown set, or its folder does not exist (the message says how to
            get it).
    """
    info = benchmark_info(name)
    folder = Path(folder) if folder is not None else dataset_folder(name, data_root)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{info.name}: {folder} does not exist; {obtain_hint(info)}")
    found = _files_in(folder)
    entries = manifest(info.name)
    if entries is None:  # checked by count only
        images = [p.relative_to(folder).as_posix() for p in list_image_files(folder)]
        report = VerifyReport(info.name, folder, info.count or len(images), present=images)
        report.unverified = list(images)
        if info.count is not None and len(images) < info.count:
            report.missing = [f"{info.count - len(images)} image(s)"]
        elif info.count is not None and len(images) > info.count:
            report.extra = [f"{len(images) - info.count} image(s) more than {info.count}"]
        return report
    report = VerifyReport(info.name, folder, len(entries))
    wanted = {entry.file: entry for entry in entries}
    present = set(found)
    for entry in entries:
        if entry.file not in present:
            report.missing.append(entry.file)
            continue
        report.present.append(entry.file)
        if not entry.verified:
            report.unverified.append(entry.file)
        elif sha256_file(folder / entry.file) != entry.sha256:
            report.altered.append(entry.file)
    report.extra = [name for name in found if name not in wanted]
    return report


def import_dataset(
    name: str,
    source: str | Path,
    data_root: str | Path | None = None,
) -> VerifyReport:
    """Copy a set obtained otherwise into its canonical folder, checking every file.

    Files are found in ``source`` by their manifest name (anywhere below it, so an unpacked
    archive's own folder layout is fine); for sets without a manifest every image file directly
    in ``source`` is copied. A file whose SHA-256 differs from the manifest is not copied and is
    reported as altered. Files already in place with the right hash are left alone.

    Returns:
        The :func:`verify_dataset` report of the folder after the import, plus the altered
        source files.

    Raises:
        DatasetNotFoundError: unknown set or ``source`` is not a folder.
        DatasetError: ``source`` holds none of the set's files.
    """
    info = benchmark_info(name)
    source = Path(source).expanduser()
    if not source.is_dir():
        raise DatasetNotFoundError(f"{source}: not a folder (import {info.name} --from DIR)")
    destination = dataset_folder(info.name, data_root)
    entries = manifest(info.name)
    altered: list[str] = []
    if entries is None:
        images = list_image_files(source)
        if not images:
            raise DatasetError(f"{source}: no image files to import as {info.name}")
        for path in images:
            _copy(path, destination / path.name)
    else:
        by_name: dict[str, Path] = {}
        for path in sorted(source.rglob("*")):
            if path.is_file():
                by_name.setdefault(path.name, path)
        matched = 0
        for entry in entries:
            candidate = by_name.get(Path(entry.file).name) or by_name.get(Path(entry.source).name)
            if candidate is None:
                continue
            matched += 1
            if entry.verified and sha256_file(candidate) != entry.sha256:
                altered.append(f"{candidate}")
                continue
            target = destination / entry.file
            if target.is_file() and entry.verified and sha256_file(target) == entry.sha256:
                continue
            _copy(candidate, target)
        if not matched:
            example = ", ".join(entry.file for entry in entries[:3])
            raise DatasetError(
                f"{source}: none of the {len(entries)} files of {info.name} found (e.g. {example})"
            )
    report = verify_dataset(info.name, data_root)
    report.altered.extend(f"{path} (not imported)" for path in altered)
    return report


def _copy(source: Path, target: Path) -> None:
    with open(source, "rb") as stream:
        atomic_write(target, lambda out: shutil.copyfileobj(stream, out, 1 << 20))


def download_dataset(
    name: str, data_root: str | Path | None = None, *, progress: bool | None = None
) -> VerifyReport:
    """Download what is missing of a set into its canonical folder, then verify it.

    ``"files"`` sets are fetched file by file from the pinned repository snapshot the registry
    names, each checked against the manifest's SHA-256; ``"archive"`` sets download one archive
    into ``<data root>/.downloads`` (resumable) and extract the manifest's members; ``"manual"``
    sets raise with instructions.

    Raises:
        DatasetNotFoundError: unknown set, or one that must be obtained by hand (the message
            says from where, and the ``import`` command to run then).
        DownloadError / ChecksumError: a download failed (offline fails in seconds).
    """
    info = benchmark_info(name)
    if info.download == "manual":
        raise DatasetNotFoundError(
            f"{info.name} cannot be downloaded automatically; {obtain_hint(info)}"
        )
    destination = dataset_folder(info.name, data_root)
    entries = manifest(info.name) or []
    todo = [e for e in entries if not _in_place(destination / e.file, e)]
    if info.download == "files":
        for entry in todo:
            download_file(
                info.origin + entry.source,
                destination / entry.file,
                sha256=entry.sha256 or None,
                progress=progress,
                what=f"{info.name}/{entry.file}",
            )
    elif info.download == "archive" and todo:
        archive = default_data_root(data_root) / ".downloads" / info.origin.rsplit("/", 1)[-1]
        if not archive.is_file():
            download_file(info.origin, archive, progress=progress, what=f"{info.name} archive")
        _extract(archive, todo, destination)
    return verify_dataset(info.name, data_root)


def _in_place(path: Path, entry: ManifestEntry) -> bool:
    if not path.is_file():
        return False
    return not entry.verified or sha256_file(path) == entry.sha256


def _extract(archive: Path, entries: list[ManifestEntry], destination: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = set(bundle.namelist())
            for entry in entries:
                if entry.source not in members:
                    raise DatasetError(f"{archive}: has no member {entry.source}")
                with bundle.open(entry.source) as stream:
                    atomic_write(
                        destination / entry.file,
                        lambda out, stream=stream: shutil.copyfileobj(stream, out, 1 << 20),
                    )
    except zipfile.BadZipFile as error:
        raise DatasetError(f"{archive}: not a readable zip archive ({error}); delete it") from error


def dataset_rows(data_root: str | Path | None = None) -> list[dict[str, str]]:
    """One row per registered set for ``clipdenoise data list``: name, folder, state, files
    present / expected, how it is obtained, whether its hashes are recorded."""
    rows = []
    for info in BENCHMARKS.values():
        folder = dataset_folder(info.name, data_root)
        entries = manifest(info.name)
        expected = len(entries) if entries is not None else info.count
        present = len(_files_in(folder)) if folder.is_dir() else 0
        if entries is None:
            hashes = "none (count only)"
        elif all(e.verified for e in entries):
            hashes = "sha256"
        else:
            hashes = "unverified (names only)"
        rows.append(
            {
                "name": info.name,
                "folder": str(folder),
                "state": "present" if folder.is_dir() else "absent",
                "files": f"{present}/{expected if expected is not None else '?'}",
                "obtain": info.download,
                "hashes": hashes,
                "description": info.description,
            }
        )
    return rows


__all__ = [
    "ManifestEntry",
    "VerifyReport",
    "dataset_folder",
    "dataset_rows",
    "download_dataset",
    "expected_count",
    "import_dataset",
    "manifest",
    "verify_dataset",
]
