"""The evaluation harness end to end: tables against directly computed metrics, resume, sharding,
file schemas, suites, the reference's conventions, and the crops it restores for figures."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from clipdenoise import metrics
from clipdenoise.errors import ClipDenoiseError, ConfigError, DatasetError, DatasetNotFoundError
from clipdenoise.evaluation import (
    PER_IMAGE_COLUMNS,
    RESULTS_SCHEMA,
    EvalProtocol,
    ResultsTable,
    evaluate,
    list_test_set,
    restore_crops,
)
from clipdenoise.evaluation.harness import _parse_noises
from clipdenoise.inference import pad_to_multiple
from clipdenoise.noise import add_reference_noise, parse_noise_spec

NOISES = ["gaussian:25", "poisson:3"]


def _write_png(path, image01):
    pixels = np.round(np.clip(image01, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(path)


class Shrink(torch.nn.Module):
    """A parameter-free 'denoiser' that pulls values towards 0.5, counting its calls."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail_at = fail_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        return 0.5 + 0.8 * (x - 0.5)


def _direct_scores(folder, method_fn):
    """Reference protocol written out by hand: seed 0 per image, pad ×32, crop, clamp, score."""
    scores = {}
    for noise in NOISES:
        spec = parse_noise_spec(noise)
        values = []
        for name in ("a", "b"):
            clean = np.asarray(Image.open(folder / f"{name}.png"), dtype=np.float32) / 255.0
            noisy = add_reference_noise(clean, spec, seed=0)
            restored = method_fn(noisy, spec).astype(np.float32)
            values.append(
                (
                    metrics.psnr(metrics.to_metric_scale(clean), metrics.to_metric_scale(restored)),
                    metrics.ssim(metrics.to_metric_scale(clean), metrics.to_metric_scale(restored)),
                )
            )
        scores[noise] = values
    return scores


def _nlm_fn(noisy, spec):
    from skimage.restoration import denoise_nl_means, estimate_sigma

    x = noisy.astype(np.float32).astype(np.float64)  # the harness feeds float32 tensors
    if spec.kind == "gaussian":
        sigma = spec.level / 255.0
    else:
        sigma = estimate_sigma(x, channel_axis=-1, average_sigmas=True)
    restored = denoise_nl_means(
        x, h=0.6 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True,
        channel_axis=-1,
    )  # fmt: skip
    return np.clip(restored, 0, 1)


def _model_fn(model):
    def run(noisy, spec):
        x = torch.from_numpy(noisy).permute(2, 0, 1)[None].float()
        padded, (h, w) = pad_to_multiple(x, 32)
        with torch.no_grad():
            out = model(padded)[..., :h, :w].clamp(0, 1)
        return out[0].permute(1, 2, 0).numpy()

    return run


def test_end_to_end_table_matches_direct_metrics(image_folder, tmp_path, tiny_model):
    out = tmp_path / "eval"
    table = evaluate(
        {"tiny": tiny_model, "floor": "noisy", "nlm": "nlm"},
        datasets=[image_folder],
        noises=NOISES,
        out_dir=out,
        progress=False,
    )
    assert table.methods == ["tiny", "floor", "nlm"]
    assert [(r.dataset, r.noise, r.level) for r in table.rows] == [
        ("mini", "gaussian", "25"),
        ("mini", "poisson", "3"),
    ]
    expected = {
        "tiny": _direct_scores(image_folder, _model_fn(tiny_model)),
        "floor": _direct_scores(image_folder, lambda noisy, spec: np.clip(noisy, 0, 1)),
        "nlm": _direct_scores(image_folder, _nlm_fn),
    }
    for method, per_noise in expected.items():
        for row, noise in zip(table.rows, NOISES):
            cell = table.cells[(row, method)]
            assert cell.num_images == 2
            assert cell.psnr == pytest.approx(np.mean([p for p, _ in per_noise[noise]]), abs=1e-9)
            assert cell.ssim == pytest.approx(np.mean([s for _, s in per_noise[noise]]), abs=1e-9)
    # NLM denoises: best PSNR on the Gaussian row, marked in the markdown.
    gaussian = table.rows[0]
    assert table.best(gaussian) == "nlm"
    assert table.cells[(gaussian, "nlm")].psnr > table.cells[(gaussian, "floor")].psnr + 3
    line = next(text for text in table.to_markdown().splitlines() if "| gaussian |" in text)
    assert line.count("**") == 4 and "**" in line.split("|")[-2]

    # The files say the same as the table.
    document = json.loads((out / "results.json").read_text())
    assert document["schema"] == RESULTS_SCHEMA
    assert EvalProtocol.from_dict(document["protocol"]) == EvalProtocol.synthetic()
    assert set(document["metadata"]) >= {"package_version", "git_commit", "device", "dtype"}
    assert [m["name"] for m in document["methods"]] == ["tiny", "floor", "nlm"]
    assert document["rows"][0]["results"]["tiny"]["psnr"] == table.cells[(gaussian, "tiny")].psnr
    assert document["rows"][0]["best_psnr"] == "nlm"
    assert ResultsTable.from_dict(document).to_markdown() == table.to_markdown()

    with open(out / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 6 and set(rows[0]) == {
        "dataset", "noise", "level", "method", "psnr", "ssim", "num_images", "best_psnr",
        "best_ssim", "protocol",
    }  # fmt: skip
    with open(out / "per_image.csv", newline="") as stream:
        reader = csv.DictReader(stream)
        per_image = list(reader)
    assert tuple(reader.fieldnames) == (*PER_IMAGE_COLUMNS, "protocol")
    fingerprint = EvalProtocol.synthetic().fingerprint()
    assert {r["protocol"] for r in per_image} == {fingerprint}
    assert {r["protocol"] for r in rows} == {fingerprint}
    protocol_file = json.loads((out / "protocol.json").read_text())
    assert protocol_file.pop("fingerprint") == fingerprint
    assert EvalProtocol.from_dict(protocol_file) == EvalProtocol.synthetic()
    assert len(per_image) == 2 * 2 * 3
    nlm_row = next(r for r in per_image if r["method"] == "nlm" and r["noise"] == "gaussian")
    assert float(nlm_row["sigma_used_255"]) == pytest.approx(25.0)  # told σ for Gaussian noise
    assert nlm_row["seed"] == "0" and float(nlm_row["seconds"]) > 0
    assert "<!-- clipdenoise" in (out / "results.md").read_text()


def test_interrupted_run_resumes_and_only_computes_missing(image_folder, tmp_path):
    out = tmp_path / "eval"
    kwargs = {"datasets": [image_folder], "noises": NOISES, "out_dir": out, "progress": False}
    flaky = Shrink(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        evaluate({"shrink": flaky}, **kwargs)
    resumed = Shrink()
    table = evaluate({"shrink": resumed}, **kwargs)
    assert resumed.calls == 2  # 4 images x noises in total, 2 were cached before the crash
    again = Shrink()
    assert evaluate({"shrink": again}, **kwargs).to_dict()["rows"] == table.to_dict()["rows"]
    assert again.calls == 0
    fresh = evaluate({"shrink": Shrink()}, datasets=[image_folder], noises=NOISES, progress=False)
    assert fresh.to_dict()["rows"] == table.to_dict()["rows"]
    # A different protocol is a different cache entry, never mixed with the old numbers.
    other = Shrink()
    evaluate({"shrink": other}, protocol=EvalProtocol.synthetic(crop_border=2), **kwargs)
    assert other.calls == 4


def test_torn_cache_line_is_recomputed(image_folder, tmp_path):
    out = tmp_path / "eval"
    kwargs = {"datasets": [image_folder], "noises": NOISES[:1], "out_dir": out, "progress": False}
    evaluate({"shrink": Shrink()}, **kwargs)
    records = next(out.glob("cache/shrink/mini/*/*/records.rank0.jsonl"))
    lines = records.read_text().splitlines()
    records.write_text(lines[0] + "\n" + lines[1][:20])  # killed mid-write
    again = Shrink()
    table = evaluate({"shrink": again}, **kwargs)
    assert again.calls == 1 and table.cells[(table.rows[0], "shrink")].num_images == 2


def test_shards_merge_to_the_single_process_result(image_folder, tmp_path, tiny_model):
    kwargs = {"datasets": [image_folder], "noises": NOISES, "progress": False}
    single = evaluate({"tiny": tiny_model}, **kwargs)
    out = tmp_path / "sharded"
    for rank in (1, 0):
        result = evaluate({"tiny": tiny_model}, out_dir=out, shard=(rank, 2), merge=False, **kwargs)
        assert result is None
    assert len(list(out.glob("cache/tiny/mini/*/*/records.rank*.jsonl"))) == 2 * len(NOISES)
    merged = evaluate({"tiny": tiny_model}, out_dir=out, compute=False, **kwargs)
    for row in single.rows:
        assert merged.cells[(row, "tiny")].psnr == pytest.approx(single.cells[(row, "tiny")].psnr)
        assert merged.cells[(row, "tiny")].num_images == 2
    with pytest.raises(ConfigError, match="rank"):
        evaluate({"tiny": tiny_model}, shard=(2, 2), **kwargs)


def test_batching_same_size_images_gives_the_same_scores(image_folder, tiny_model):
    kwargs = {"datasets": [image_folder], "noises": NOISES[:1], "progress": False}
    one = evaluate({"tiny": tiny_model}, batch_size=1, **kwargs)
    two = evaluate({"tiny": tiny_model}, batch_size=2, **kwargs)
    row = one.rows[0]
    assert two.cells[(row, "tiny")].psnr == pytest.approx(one.cells[(row, "tiny")].psnr, abs=1e-4)


def test_bad_images_are_reported_and_skipped(image_folder, tmp_path):
    (image_folder / "c.png").write_bytes(b"not a png")
    table = evaluate(
        ["noisy"],
        datasets=[image_folder],
        noises=NOISES[:1],
        out_dir=tmp_path / "e",
        progress=False,
    )
    assert table.cells[(table.rows[0], "noisy")].num_images == 2
    (failure,) = table.metadata["failures"]
    assert failure["image"] == "c" and "c.png" in failure["error"]


def test_real_srgb_suite_scores_rounded_outputs_against_references(tmp_path, make_image):
    folder = tmp_path / "CC"
    folder.mkdir()
    clean = make_image(32, 40, 3, seed=5)
    noisy = np.clip(clean + 0.05 * np.random.RandomState(0).randn(*clean.shape), 0, 1)
    _write_png(folder / "cam_1_mean.png", clean)
    _write_png(folder / "cam_1_real.png", noisy)
    table = evaluate(["noisy"], suite="real-srgb", datasets=[folder], progress=False)
    row = table.rows[0]
    assert (row.dataset, row.noise, row.level) == ("CC", "real", "")
    clean_u8 = np.asarray(Image.open(folder / "cam_1_mean.png"), dtype=np.float64)
    noisy_u8 = np.asarray(Image.open(folder / "cam_1_real.png"), dtype=np.float64)
    assert table.cells[(row, "noisy")].psnr == pytest.approx(
        metrics.psnr(clean_u8, noisy_u8), abs=1e-9
    )
    assert table.protocol["round_to_uint8"] is True


def test_ldct_suite_uses_hu_metrics_on_the_held_out_patient(tmp_path):
    folder = tmp_path / "ldct"
    folder.mkdir()
    generator = np.random.RandomState(0)
    for patient in ("L506", "L067"):
        target = generator.uniform(0.2, 0.4, (32, 32)).astype(np.float32)
        np.save(folder / f"{patient}_0_target.npy", target)
        np.save(
            folder / f"{patient}_0_input.npy",
            target + 0.01 * generator.randn(32, 32).astype(np.float32),
        )
    table = evaluate(["noisy"], suite="ldct", datasets=[folder], progress=False)
    row = table.rows[0]
    assert table.cells[(row, "noisy")].num_images == 1  # only the held-out patient
    target, noisy = np.load(folder / "L506_0_target.npy"), np.load(folder / "L506_0_input.npy")
    assert table.cells[(row, "noisy")].psnr == pytest.approx(
        metrics.ct_psnr(target, noisy), abs=1e-5
    )
    assert table.cells[(row, "noisy")].ssim == pytest.approx(
        metrics.ct_ssim(target, noisy), abs=1e-6
    )


def test_kodak_from_shared_data_first_image(benchmark_data_dir):
    table = evaluate(
        ["noisy"],
        datasets=["Kodak24"],
        noises=["gaussian:50"],
        data_root=benchmark_data_dir,
        max_images=1,
        progress=False,
    )
    cell = table.cells[(table.rows[0], "noisy")]
    assert cell.num_images == 1 and 14.0 < cell.psnr < 15.5
    assert len(list_test_set("Kodak", data_root=benchmark_data_dir).images) == 24


def test_errors_are_clear(tmp_path, image_folder):
    with pytest.raises(DatasetNotFoundError, match="'NoSuchSet' not found"):
        evaluate(["noisy"], datasets=["NoSuchSet"], data_root=tmp_path, progress=False)
    with pytest.raises(ClipDenoiseError, match="McMaster"):  # a known set, absent: says where
        evaluate(["noisy"], datasets=["McM"], data_root=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="unknown method 'foo'"):
        evaluate(["foo"], datasets=[image_folder], progress=False)
    with pytest.raises(ConfigError, match="unique"):
        evaluate(["noisy", "noisy"], datasets=[image_folder], progress=False)
    with pytest.raises(ConfigError, match="suite"):
        evaluate(["noisy"], suite="nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        evaluate(["noisy"], datasets=[empty], progress=False)


def test_psnr_of_identity_is_infinite_and_table_handles_it(image_folder):
    class Oracle(torch.nn.Module):
        def forward(self, x):
            return x

    table = evaluate(
        {"oracle": Oracle()}, datasets=[image_folder], noises=["gaussian:0"], progress=False
    )
    assert math.isinf(table.cells[(table.rows[0], "oracle")].psnr)


def _torchrun_worker(rank: int, folder: str, out: str, port: int) -> None:
    import os

    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )  # fmt: skip
    torch.set_num_threads(1)
    result = evaluate(["noisy"], datasets=[folder], noises=NOISES[:1], out_dir=out, progress=False)
    assert (result is None) == (rank != 0)


@pytest.mark.slow
def test_torchrun_gloo_ranks_share_images_and_rank0_merges(image_folder, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "ddp"
    mp.spawn(_torchrun_worker, args=(str(image_folder), str(out), port), nprocs=2, join=True)
    document = json.loads((out / "results.json").read_text())
    assert document["rows"][0]["results"]["noisy"]["num_images"] == 2
    assert document["metadata"]["world_size"] == 2
    files = sorted(p.name for p in out.glob("cache/noisy/mini/*/*/records.rank*.jsonl"))
    assert files == ["records.rank0.jsonl", "records.rank1.jsonl"]


def test_images_filter_and_max_images_share_the_cache(image_folder, tmp_path):
    out = tmp_path / "eval"
    kwargs = {"datasets": [image_folder], "noises": NOISES[:1], "out_dir": out, "progress": False}
    only_b = evaluate({"shrink": Shrink()}, images=["b"], **kwargs)
    assert only_b.cells[(only_b.rows[0], "shrink")].num_images == 1
    rest = Shrink()
    full = evaluate({"shrink": rest}, **kwargs)
    assert rest.calls == 1 and full.cells[(full.rows[0], "shrink")].num_images == 2
    first = evaluate({"shrink": Shrink()}, max_images=1, compute=False, **kwargs)
    assert [r.image for r in first.records] == ["a"]


def test_channel_mismatch_is_a_clear_error(tmp_path, make_image, tiny_gray_model):
    folder = tmp_path / "rgb"
    folder.mkdir()
    _write_png(folder / "x.png", make_image(32, 32, 3))
    with pytest.raises(ConfigError, match="takes 1-channel images but rgb has 3-channel"):
        evaluate({"gray": tiny_gray_model}, datasets=[folder], noises=NOISES[:1], progress=False)


def test_bare_kind_expands_to_paper_levels_including_two_parameter_kinds():
    specs = _parse_noises(["gauss", "poisson_gaussian"])
    assert [s.level for s in specs if s.kind == "gaussian"] == [15.0, 25.0, 50.0]
    assert [s.level for s in specs if s.kind == "poisson_gaussian"] == [(0.04, 0.03)]


def test_reading_another_scripts_cache_leaves_its_folder_untouched(image_folder, tmp_path):
    out = tmp_path / "owned"
    kwargs = {"datasets": [image_folder], "noises": ["gaussian:25"], "progress": False}
    computed = evaluate(["noisy"], out_dir=out, **kwargs)
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    read = evaluate(
        ["noisy"], out_dir=out, compute=False, write_tables=False, noises=["gaussian:25", "poisson:2"],
        datasets=[image_folder], progress=False,
    )  # fmt: skip
    after = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert after == before  # no table rewritten, no cache entry made for poisson:2
    row = computed.rows[0]
    assert read.cells[(row, "noisy")] == computed.cells[(row, "noisy")]
    assert all(cell.num_images == 2 for cell in read.cells.values()) and len(read.cells) == 1


# ------------------------------------------------------------------------------ reference conventions


def test_harness_reproduces_the_reference_protocol_end_to_end(fixtures_dir, tmp_path):
    """PNG crops -> harness noise (seed 0 per image) -> noisy floor scored = reference values."""
    folder = fixtures_dir / "protocol"
    expected = json.loads((folder / "official_test_noise.json").read_text())
    arrays = np.load(folder / "official_test_noise.npz")
    images = tmp_path / "crops"
    images.mkdir()
    for index in (0, 1):
        _write_png(images / f"{index}.png", arrays[f"clean_{index}"])
    noises = ["gaussian:50", "spatial_gaussian:40", "poisson:2.5"]
    table = evaluate(
        ["noisy"], datasets=[images], noises=noises, out_dir=tmp_path / "e", progress=False
    )
    names = {"gaussian": "gauss", "spatial_gaussian": "spatial_gauss", "poisson": "poisson"}
    for record in table.records:
        values = expected[f"{record.image}_{names[record.noise]}_{record.level}"]
        assert record.psnr == pytest.approx(values["psnr_clipped_noisy"], abs=1e-6)
        assert record.ssim == pytest.approx(values["ssim_clipped_noisy"], abs=1e-6)
    assert len(table.records) == 6


def test_grey_images_are_scored_by_an_rgb_model_as_three_equal_channels(
    tmp_path, make_image, tiny_model
):
    folder = tmp_path / "grey"
    folder.mkdir()
    grey = np.round(make_image(32, 32, 1, seed=3) * 255).astype(np.uint8)
    Image.fromarray(grey[..., 0]).save(folder / "g.png")
    table = evaluate({"rgb": tiny_model}, datasets=[folder], noises=["gaussian:25"], progress=False)
    record = table.records[0]
    assert record.channels == 3
    # the reference reads the grey file with cv2.imread: three equal channels, noise per channel
    clean = np.repeat(grey.astype(np.float32) / 255.0, 3, axis=2)
    noisy = add_reference_noise(clean, parse_noise_spec("gaussian:25"), seed=0)
    with torch.no_grad():
        batch = torch.from_numpy(noisy.transpose(2, 0, 1)).float()[None]
        restored = tiny_model(batch)[0].permute(1, 2, 0).numpy()
    reference, output = metrics.to_metric_scale(clean), metrics.to_metric_scale(restored)
    assert record.psnr == pytest.approx(metrics.psnr(reference, output), abs=1e-4)


def test_pad_multiple_below_the_models_own_changes_nothing(tmp_path, make_image, tiny_model):
    folder = tmp_path / "odd"
    folder.mkdir()
    pixels = np.round(make_image(30, 45, 3, seed=4) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "o.png")

    def psnr(multiple: int) -> float:
        protocol = EvalProtocol(pad_multiple=multiple)
        table = evaluate(
            {"m": tiny_model},
            datasets=[folder],
            noises=["gaussian:25"],
            protocol=protocol,
            progress=False,
        )
        return table.records[0].psnr

    assert psnr(1) == psnr(32)  # the model pads to 32 itself
    assert psnr(64) != psnr(32)


# ------------------------------------------------------------------------------ figure crops


def test_restore_crops_are_the_harness_restorations_of_the_window(image_folder, tiny_model):
    """Same noisy input as evaluate (seed 0), padded network run, whole-image scores."""
    crop = (2, 3, 16, 20)
    (crops,) = restore_crops(
        ["noisy", "nlm", tiny_model], [image_folder / "a.png"], "gaussian:25", crop=crop
    )
    assert (crops.name, crops.noise) == ("a", "gaussian:25")
    assert list(crops.restored) == ["nlm", "CLIPDenoiser"]  # the noisy input is its own panel
    window = (slice(2, 18), slice(3, 23))
    clean = np.asarray(Image.open(image_folder / "a.png"), dtype=np.float32) / 255.0
    noisy = add_reference_noise(clean, parse_noise_spec("gaussian:25"), seed=0)
    noisy_shown = np.clip(noisy, 0, 1).astype(np.float32)
    assert np.array_equal(crops.clean, clean[window])
    assert np.array_equal(crops.noisy, noisy_shown[window])
    restored = _model_fn(tiny_model)(noisy, None)
    np.testing.assert_allclose(crops.restored["CLIPDenoiser"], restored[window], atol=1e-6)
    expected = metrics.psnr(metrics.to_metric_scale(clean), metrics.to_metric_scale(restored))
    assert crops.restored_scores["CLIPDenoiser"][0] == pytest.approx(expected, abs=1e-4)
    table = evaluate(["noisy"], datasets=[image_folder], noises=["gaussian:25"], progress=False)
    noisy_record = next(record for record in table.records if record.image == "a")
    assert crops.noisy_scores == pytest.approx((noisy_record.psnr, noisy_record.ssim))


def test_restore_crops_default_window_is_central(image_folder):
    (crops,) = restore_crops(["noisy"], [image_folder / "b.png"], "poisson:3")
    assert crops.clean.shape == (30, 40, 3) and crops.restored == {}


def test_cache_dir_keeps_the_cache_apart_and_results_read_back(image_folder, tmp_path):
    from clipdenoise.evaluation.results import read_results

    out, cache = tmp_path / "committed", tmp_path / "cache"
    kwargs = {"datasets": [image_folder], "noises": ["gaussian:25"], "progress": False}
    computed = evaluate(["noisy", "nlm"], out_dir=out, cache_dir=cache, **kwargs)
    assert not (out / "cache").exists() and any(cache.rglob("records.rank0.jsonl"))
    again = evaluate(["noisy", "nlm"], out_dir=out, cache_dir=cache, compute=False, **kwargs)
    assert again.cells == computed.cells
    read = read_results(out)  # from the committed files alone
    assert read.cells == computed.cells and read.protocol == computed.protocol
    assert [r.to_dict() for r in read.records] == [r.to_dict() for r in computed.records]
