"""Evaluation results: records, the resumable cache, tables and their file forms."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from clipdenoise.evaluation import (
    PER_IMAGE_COLUMNS,
    RESULTS_SCHEMA,
    EvalProtocol,
    ImageRecord,
    ResultCache,
    ResultsTable,
    RowKey,
)
from clipdenoise.evaluation.results import per_image_csv, protocol_fingerprint

ROW = RowKey("Kodak24", "gaussian", "25")


def _record(method: str, image: str, psnr: float, ssim: float, row: RowKey = ROW) -> ImageRecord:
    return ImageRecord(
        method=method, dataset=row.dataset, noise=row.noise, level=row.level, image=image,
        height=8, width=8, channels=3, psnr=psnr, ssim=ssim, seconds=0.1,
    )  # fmt: skip


def test_table_averages_records_and_marks_the_best_per_row():
    other = RowKey("CC", "real", "")
    records = [
        _record("a", "x", 30.0, 0.80), _record("a", "y", 32.0, 0.90),
        _record("b", "x", 31.5, 0.70), _record("b", "y", 31.5, 0.72),
        _record("b", "z", 20.0, 0.5, row=other),
    ]  # fmt: skip
    table = ResultsTable.from_records(records)
    assert table.methods == ["a", "b"] and table.rows == [ROW, other]
    assert (ROW.label, other.label) == ("gaussian:25", "real")
    cell = table.cells[(ROW, "a")]
    assert (cell.psnr, cell.ssim, cell.num_images) == (31.0, pytest.approx(0.85), 2)
    assert table.best(ROW) == "b" and table.best(ROW, "ssim") == "a"
    assert table.best(other) == "b"
    line = table.to_markdown().splitlines()[2]
    assert line == "| Kodak24 | gaussian | 25 | 31.00/**0.8500** | **31.50**/0.7100 |"
    assert "| CC | real |  | – | **20.00**/**0.5000** |" in table.to_markdown()


def test_table_documents_round_trip(tmp_path):
    protocol = EvalProtocol.synthetic().to_dict()
    table = ResultsTable.from_records(
        [_record("a", "x", 30.0, 0.8)], protocol=protocol, metadata={"device": "cpu"}
    )
    document = json.loads(table.to_json())
    assert document["schema"] == RESULTS_SCHEMA and document["metadata"]["device"] == "cpu"
    assert ResultsTable.from_dict(document).to_markdown() == table.to_markdown()
    written = table.write(tmp_path)
    assert sorted(path.name for path in written.values()) == [
        "results.csv", "results.json", "results.md",
    ]  # fmt: skip
    assert protocol_fingerprint(protocol) == EvalProtocol.synthetic().fingerprint()


def test_combine_keeps_rows_and_refuses_mixed_protocols():
    first = ResultsTable.from_records([_record("a", "x", 30.0, 0.8)], protocol={"seed": 0})
    second = ResultsTable.from_records(
        [_record("b", "x", 28.0, 0.7, row=RowKey("CBSD68", "gaussian", "25"))], protocol={"seed": 0}
    )
    combined = ResultsTable.combine([first, second])
    assert combined.methods == ["a", "b"] and len(combined.rows) == 2
    with pytest.raises(ValueError, match="different protocols"):
        ResultsTable.combine([first, ResultsTable(methods=[], rows=[], protocol={"seed": 1})])
    with pytest.raises(ValueError, match="nothing"):
        ResultsTable.combine([])


def test_cache_appends_per_rank_and_skips_a_torn_line(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    entry = cache.entry("ours: v2", ROW, "abc")
    assert entry == tmp_path / "cache" / "ours_v2" / "Kodak24" / "gaussian_25" / "abc"
    assert cache.load(entry) == {}
    cache.append(entry, [_record("ours: v2", "x", 30.0, 0.8)], rank=0)
    cache.append(entry, [_record("ours: v2", "y", 31.0, 0.9)], rank=1)
    with (entry / "records.rank0.jsonl").open("a") as stream:
        stream.write('{"method": "ours: v2", "ima')  # killed mid-write
    assert sorted(cache.load(entry)) == ["x", "y"]
    cache.append(entry, [_record("ours: v2", "z", 29.0, 0.7)], rank=0)  # starts a fresh line
    assert sorted(cache.load(entry)) == ["x", "y", "z"]
    cache.ensure_meta(entry, {"first": 1})
    cache.ensure_meta(entry, {"second": 2})  # the first writer wins
    assert json.loads((entry / "meta.json").read_text()) == {"first": 1}


def test_per_image_csv_has_every_column_and_the_protocol_fingerprint():
    protocol = EvalProtocol.synthetic(crop_border=2).to_dict()
    text = per_image_csv([_record("a", "x", math.inf, 1.0)], protocol)
    reader = csv.DictReader(io.StringIO(text))
    (row,) = list(reader)
    assert tuple(reader.fieldnames) == (*PER_IMAGE_COLUMNS, "protocol")
    assert row["protocol"] == EvalProtocol.synthetic(crop_border=2).fingerprint()
    assert row["image"] == "x" and float(row["psnr"]) == math.inf
