"""Evaluation results: per-image records, the resumable cache, the summary tables, and the
restored crops that figures show.

Layout of an evaluation folder::

    out/
      results.md  results.csv  results.json      summary: rows dataset × noise × level, columns
                                                 methods, PSNR/SSIM, best per row marked
      per_image.csv                              one row per (method, dataset, noise, image)
                                                 (read back by :func:`read_results`)
      cache/<method>/<dataset>/<noise>/<key>/    (or under the evaluation's ``cache_dir``)
        meta.json                                method, protocol, dataset identity
        records.rank<R>.jsonl                    one JSON line per scored image, appended
                                                 (flushed + fsynced) as images finish

The cache key ``<key>`` hashes the method's identity (kind, options, checkpoint sha256) and the
protocol, so changing either starts a fresh entry instead of mixing numbers. Re-running an
evaluation reads the records and only computes the images that are missing; with torchrun each
rank appends to its own file and rank 0 reads them all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipdenoise.atomic import atomic_write_text

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "PER_IMAGE_COLUMNS",
    "RESULTS_SCHEMA",
    "ImageCrops",
    "ImageRecord",
    "ResultCache",
    "ResultsTable",
    "RowKey",
]

RESULTS_SCHEMA = "clipdenoise.evaluation/1"

PER_IMAGE_COLUMNS = (
    "method",
    "dataset",
    "noise",
    "level",
    "image",
    "height",
    "width",
    "channels",
    "psnr",
    "ssim",
    "seconds",
    "sigma_used_255",
    "seed",
    "device",
    "dtype",
    "checkpoint_sha256",
    "package_version",
    "git_commit",
)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


@dataclass(frozen=True, order=True)
class RowKey:
    """One row of the summary table: a dataset under one noise kind and level.

    ``noise`` is a kind name (``gaussian``) or ``real`` for real-noise sets; ``level`` is the text
    form of the level (``"25"``, empty for real noise).
    """

    dataset: str
    noise: str
    level: str

    @property
    def label(self) -> str:
        return f"{self.noise}:{self.level}" if self.level else self.noise


@dataclass
class ImageRecord:
    """The scores of one restored image and how they were obtained."""

    method: str
    dataset: str
    noise: str
    level: str
    image: str
    height: int
    width: int
    channels: int
    psnr: float
    ssim: float
    seconds: float
    sigma_used_255: float | None = None
    seed: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    checkpoint_sha256: str | None = None
    package_version: str = ""
    git_commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {column: getattr(self, column) for column in PER_IMAGE_COLUMNS}

    @classmethod
    def from_dict(cls, mapping: dict[str, Any]) -> ImageRecord:
        return cls(**{column: mapping.get(column) for column in PER_IMAGE_COLUMNS})

    @property
    def row(self) -> RowKey:
        return RowKey(self.dataset, self.noise, self.level)


class ResultCache:
    """Per-image records on disk, one entry per (method, dataset, noise, level, key)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry(self, method: str, row: RowKey, key: str) -> Path:
        """The folder of one (method, dataset, noise, level) entry under cache key ``key``."""
        return (
            self.root
            / _safe_name(method)
            / _safe_name(row.dataset)
            / _safe_name(row.label.replace(":", "_"))
            / key
        )

    def ensure_meta(self, entry: Path, meta: dict[str, Any]) -> None:
        """Write ``meta.json`` once (the first writer wins; later ones only check it exists)."""
        target = entry / "meta.json"
        if not target.exists():
            atomic_write_text(target, json.dumps(meta, indent=2, sort_keys=True, default=str))

    def load(self, entry: Path) -> dict[str, ImageRecord]:
        """All records of an entry, from every rank's file, keyed by image name.

        A torn last line (the process was killed mid-write) is ignored: that image is recomputed.
        """
        records: dict[str, ImageRecord] = {}
        if not entry.is_dir():
            return records
        for path in sorted(entry.glob("records*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = ImageRecord.from_dict(json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    continue
                records[record.image] = record
        return records

    def append(self, entry: Path, records: Iterable[ImageRecord], rank: int = 0) -> None:
        """Append records to this rank's file, durably (flush + fsync)."""
        entry.mkdir(parents=True, exist_ok=True)
        path = entry / f"records.rank{rank}.jsonl"
        torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        with open(path, "a", encoding="utf-8") as stream:
            if torn:  # a previous run died mid-line: start a fresh line
                stream.write("\n")
            for record in records:
                stream.write(json.dumps(record.to_dict(), default=str) + "\n")
            stream.flush()
            os.fsync(stream.fileno())


@dataclass
class Cell:
    """Mean scores of one method on one row."""

    psnr: float
    ssim: float
    num_images: int


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


@dataclass
class ResultsTable:
    """Mean PSNR/SSIM per (row, method), in the paper's layout (rows dataset × noise × level).

    Attributes:
        methods: Column order.
        rows: Row order.
        cells: ``(row, method) -> Cell``; missing cells are methods not (yet) run on a row.
        protocol: The :class:`~clipdenoise.evaluation.protocol.EvalProtocol` as a dict.
        metadata: Package version, git commit, device, dtype, timestamps...
        method_info: ``describe()`` of each method.
    """

    methods: list[str]
    rows: list[RowKey]
    cells: dict[tuple[RowKey, str], Cell] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    method_info: list[dict[str, Any]] = field(default_factory=list)
    records: list[ImageRecord] = field(default_factory=list, repr=False)

    @classmethod
    def from_records(
        cls,
        records: Iterable[ImageRecord],
        *,
        methods: Sequence[str] | None = None,
        rows: Sequence[RowKey] | None = None,
        **kwargs: Any,
    ) -> ResultsTable:
        """Average per-image records into a table (method and row order as first seen)."""
        grouped: dict[tuple[RowKey, str], list[ImageRecord]] = {}
        seen_methods: list[str] = list(methods or [])
        seen_rows: list[RowKey] = list(rows or [])
        for record in records:
            grouped.setdefault((record.row, record.method), []).append(record)
            if record.method not in seen_methods:
                seen_methods.append(record.method)
            if record.row not in seen_rows:
                seen_rows.append(record.row)
        cells = {
            key: Cell(
                psnr=_mean([r.psnr for r in group]),
                ssim=_mean([r.ssim for r in group]),
                num_images=len(group),
            )
            for key, group in grouped.items()
        }
        return cls(methods=seen_methods, rows=seen_rows, cells=cells, **kwargs)

    @classmethod
    def combine(cls, tables: Sequence[ResultsTable]) -> ResultsTable:
        """One table with the rows and methods of several (e.g. runs on different datasets).

        The protocol and metadata of the first table are kept; all tables must share the
        protocol.
        """
        if not tables:
            raise ValueError("nothing to combine")
        first = tables[0]
        combined = cls(methods=[], rows=[], protocol=first.protocol, metadata=dict(first.metadata))
        for table in tables:
            if table.protocol != first.protocol:
                raise ValueError("cannot combine tables computed under different protocols")
            combined.methods += [m for m in table.methods if m not in combined.methods]
            combined.rows += [r for r in table.rows if r not in combined.rows]
            combined.cells.update(table.cells)
            known = {info["name"] for info in combined.method_info}
            combined.method_info += [i for i in table.method_info if i["name"] not in known]
            combined.records += table.records
        return combined

    def best(self, row: RowKey, metric: str = "psnr") -> str | None:
        """The method with the highest mean ``metric`` on ``row`` (None when no cell)."""
        candidates = [
            (getattr(self.cells[(row, m)], metric), m)
            for m in self.methods
            if (row, m) in self.cells and not math.isnan(getattr(self.cells[(row, m)], metric))
        ]
        if not candidates:
            return None
        return max(candidates, key=lambda item: item[0])[1]

    def to_markdown(self, *, psnr_digits: int = 2, ssim_digits: int = 4) -> str:
        """Markdown table, cells ``PSNR/SSIM``; the best PSNR and best SSIM per row in bold."""
        header = ["Dataset", "Noise", "Level", *self.methods]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] * 3 + ["---:"] * len(self.methods)) + "|",
        ]
        for row in self.rows:
            best_psnr, best_ssim = self.best(row, "psnr"), self.best(row, "ssim")
            cells = []
            for method in self.methods:
                cell = self.cells.get((row, method))
                if cell is None:
                    cells.append("–")
                    continue
                psnr_text = f"{cell.psnr:.{psnr_digits}f}"
                ssim_text = f"{cell.ssim:.{ssim_digits}f}"
                if method == best_psnr:
                    psnr_text = f"**{psnr_text}**"
                if method == best_ssim:
                    ssim_text = f"**{ssim_text}**"
                cells.append(f"{psnr_text}/{ssim_text}")
            lines.append("| " + " | ".join([row.dataset, row.noise, row.level, *cells]) + " |")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """Long-format CSV: one line per (row, method) with psnr, ssim, images and best flags."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            [
                "dataset",
                "noise",
                "level",
                "method",
                "psnr",
                "ssim",
                "num_images",
                "best_psnr",
                "best_ssim",
                "protocol",
            ]
        )
        protocol = protocol_fingerprint(self.protocol)
        for row in self.rows:
            best_psnr, best_ssim = self.best(row, "psnr"), self.best(row, "ssim")
            for method in self.methods:
                cell = self.cells.get((row, method))
                if cell is None:
                    continue
                writer.writerow(
                    [
                        row.dataset,
                        row.noise,
                        row.level,
                        method,
                        repr(cell.psnr),
                        repr(cell.ssim),
                        cell.num_images,
                        int(method == best_psnr),
                        int(method == best_ssim),
                        protocol,
                    ]
                )
        return buffer.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema ``clipdenoise.evaluation/1``)."""
        rows = []
        for row in self.rows:
            results = {
                method: {
                    "psnr": cell.psnr,
                    "ssim": cell.ssim,
                    "num_images": cell.num_images,
                }
                for method in self.methods
                if (cell := self.cells.get((row, method))) is not None
            }
            rows.append(
                {
                    "dataset": row.dataset,
                    "noise": row.noise,
                    "level": row.level,
                    "results": results,
                    "best_psnr": self.best(row, "psnr"),
                    "best_ssim": self.best(row, "ssim"),
                }
            )
        return {
            "schema": RESULTS_SCHEMA,
            "protocol": self.protocol,
            "metadata": self.metadata,
            "methods": self.method_info or [{"name": m} for m in self.methods],
            "rows": rows,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ResultsTable:
        """Read back :meth:`to_dict` (e.g. to re-plot or merge saved results)."""
        if document.get("schema") != RESULTS_SCHEMA:
            raise ValueError(
                f"not a clipdenoise results document (schema {document.get('schema')!r}, "
                f"expected {RESULTS_SCHEMA!r})"
            )
        methods = [info["name"] for info in document["methods"]]
        rows, cells = [], {}
        for item in document["rows"]:
            row = RowKey(item["dataset"], item["noise"], item["level"])
            rows.append(row)
            for method, values in item["results"].items():
                cells[(row, method)] = Cell(values["psnr"], values["ssim"], values["num_images"])
        return cls(
            methods=methods,
            rows=rows,
            cells=cells,
            protocol=document.get("protocol", {}),
            metadata=document.get("metadata", {}),
            method_info=document.get("methods", []),
        )

    def write(self, out_dir: str | Path, stem: str = "results") -> dict[str, Path]:
        """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json`` atomically into ``out_dir``."""
        out_dir = Path(out_dir)
        header = (
            f"<!-- clipdenoise {self.metadata.get('package_version', '')} · protocol "
            f"{json.dumps(self.protocol, sort_keys=True)} -->\n"
        )
        return {
            "markdown": atomic_write_text(out_dir / f"{stem}.md", header + self.to_markdown()),
            "csv": atomic_write_text(out_dir / f"{stem}.csv", self.to_csv()),
            "json": atomic_write_text(out_dir / f"{stem}.json", self.to_json()),
        }


def protocol_fingerprint(protocol: dict[str, Any]) -> str:
    """The short hash :meth:`EvalProtocol.fingerprint` gives, from the protocol's dict."""
    text = json.dumps(protocol, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def per_image_csv(records: Iterable[ImageRecord], protocol: dict[str, Any] | None = None) -> str:
    """CSV text with :data:`PER_IMAGE_COLUMNS` plus ``protocol`` (the protocol's fingerprint,
    spelled out in ``protocol.json`` and ``results.json``), one line per record."""
    fingerprint = protocol_fingerprint(protocol) if protocol is not None else ""
    buffer = io.StringIO()
    columns = [*PER_IMAGE_COLUMNS, "protocol"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        values = {k: ("" if v is None else v) for k, v in record.to_dict().items()}
        writer.writerow({**values, "protocol": fingerprint})
    return buffer.getvalue()


__all__ += ["per_image_csv", "protocol_fingerprint"]


@dataclass(frozen=True)
class ImageCrops:
    """One image's crops for a figure: the clean image, the noisy input, each restoration.

    Every crop is the same ``(h, w, C)`` float32 window of its image; scores are ``(psnr,
    ssim)`` of the whole image under the evaluation protocol.

    Attributes:
        name: The image's name (file stem).
        noise: The noise the noisy input was made with (``"gaussian:25"``).
        clean: Crop of the clean image, in [0, 1].
        noisy: Crop of the noisy input as every method saw it, clipped to [0, 1].
        noisy_scores: Scores of the noisy input itself.
        restored: Method name -> crop of its restoration, in method order.
        restored_scores: Method name -> scores of its restoration.
    """

    name: str
    noise: str
    clean: np.ndarray
    noisy: np.ndarray
    noisy_scores: tuple[float, float]
    restored: dict[str, np.ndarray] = field(default_factory=dict)
    restored_scores: dict[str, tuple[float, float]] = field(default_factory=dict)


#: Types of the numeric per-image columns (the others are text).
_COLUMN_TYPES: dict[str, type] = {
    "height": int,
    "width": int,
    "channels": int,
    "psnr": float,
    "ssim": float,
    "seconds": float,
    "sigma_used_255": float,
    "seed": int,
}
#: Columns whose empty cell means ``None`` (written as empty by :func:`per_image_csv`).
_OPTIONAL_COLUMNS = ("sigma_used_255", "seed", "checkpoint_sha256", "git_commit")


def read_per_image_csv(path: str | Path) -> list[ImageRecord]:
    """The records of a ``per_image.csv`` that :func:`per_image_csv` wrote, in file order."""
    records = []
    with open(path, newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            values: dict[str, Any] = {}
            for column in PER_IMAGE_COLUMNS:
                text = row[column]
                if text == "" and column in _OPTIONAL_COLUMNS:
                    values[column] = None
                else:
                    values[column] = _COLUMN_TYPES.get(column, str)(text)
            records.append(ImageRecord(**values))
    return records


def read_results(out_dir: str | Path, stem: str = "results") -> ResultsTable:
    """The table an evaluation wrote into ``out_dir`` (``<stem>.json``), with its per-image
    records (``per_image.csv``, when present) in :attr:`ResultsTable.records`; no cache needed."""
    out_dir = Path(out_dir)
    table = ResultsTable.from_dict(json.loads((out_dir / f"{stem}.json").read_text("utf-8")))
    if (out_dir / "per_image.csv").is_file():
        table.records = read_per_image_csv(out_dir / "per_image.csv")
    return table


__all__ += ["read_per_image_csv", "read_results"]
