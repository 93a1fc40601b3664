"""Shared test fixtures: tiny random models, generated images, a tiny training recipe and data
root, the parity fixtures of ``tests/fixtures`` and large benchmark data from ``../shared/data``
(skipped cleanly when absent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipdenoise.analysis.images import AnalysisImage
from clipdenoise.checkpoints import save_checkpoint
from clipdenoise.model import CLIPDenoiser, tiny_config
from clipdenoise.training import ExperimentConfig, load_experiment_config

# Tests never reach the network: downloads are refused unless a test starts its own server on
# 127.0.0.1 (``file_server``) and unsets the variable.
os.environ.setdefault("CLIPDENOISE_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("CLIPDENOISE_SHARED", REPO_ROOT.parent / "shared"))
# Parity fixtures made by running the reference code; the repository carries them, and
# CLIPDENOISE_FIXTURES points the suite at another folder of the same layout.
FIXTURES_DIR = Path(os.environ.get("CLIPDENOISE_FIXTURES", REPO_ROOT / "tests" / "fixtures"))


def fixture_files(pattern: str) -> list[Path]:
    """Every fixture file matching ``pattern`` anywhere under the fixture folder, sorted."""
    return sorted(FIXTURES_DIR.rglob(pattern))


def run_pytest_on_fixtures(fixtures: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Run pytest (``arguments``: tests, ``-k`` filters) with ``CLIPDENOISE_FIXTURES=fixtures``."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, "CLIPDENOISE_FIXTURES": str(fixtures)},
        capture_output=True,
        text=True,
        timeout=600,
    )


BENCHMARK_DATA_DIR = SHARED_DIR / "data"
_SKIPPED_FOR_DATA: list[str] = []


@pytest.fixture
def benchmark_data_dir(request) -> Path:
    """Large benchmark data (Kodak24, CC15, the DoRF ``.mat`` files...) kept outside the
    repository in ``../shared/data`` (``$CLIPDENOISE_SHARED``); the test skips when it is absent
    and the run ends with one line naming the tests skipped for that reason."""
    if not BENCHMARK_DATA_DIR.is_dir():
        _SKIPPED_FOR_DATA.append(request.node.nodeid)
        pytest.skip(f"benchmark data not found at {BENCHMARK_DATA_DIR}")
    return BENCHMARK_DATA_DIR


def pytest_terminal_summary(terminalreporter) -> None:
    if _SKIPPED_FOR_DATA:
        names = ", ".join(sorted({n.split("::")[-1].split("[")[0] for n in _SKIPPED_FOR_DATA}))
        terminalreporter.write_line(
            f"skipped {len(_SKIPPED_FOR_DATA)} test(s) needing benchmark data absent at "
            f"{BENCHMARK_DATA_DIR}: {names}"
        )


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The parity-fixture folder; never skipped: a missing folder is a failure."""
    assert FIXTURES_DIR.is_dir(), f"parity fixture folder not found: {FIXTURES_DIR}"
    return FIXTURES_DIR


class FileServer:
    """A local HTTP server for download tests: ``files`` maps a URL path to its bytes.

    Honours ``Range: bytes=N-`` (206); ``cut_after[path] = n`` sends the full Content-Length
    but closes the connection after ``n`` bytes, once (an interrupted transfer).
    ``requests`` records ``(path, range header)`` of every request.
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0]
                server.requests.append((path, self.headers.get("Range")))
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes="):
                    start = int(ranged[6:].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut_after.pop(path, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def file_server(monkeypatch):
    """A :class:`FileServer` on 127.0.0.1; downloads are allowed for the test's duration."""
    monkeypatch.delenv("CLIPDENOISE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def tiny_model() -> CLIPDenoiser:
    """A tiny RGB CLIPDenoiser (width 8, one block per stage, random weights), in eval mode."""
    return CLIPDenoiser(tiny_config()).eval()


@pytest.fixture
def tiny_gray_model() -> CLIPDenoiser:
    """A tiny single-channel CLIPDenoiser (the CT variant), in eval mode."""
    return CLIPDenoiser(tiny_config(in_channels=1)).eval()


def randomise_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every float tensor of ``model``'s state (weights and BatchNorm statistics) with
    seeded values in [0.9, 1.1], so that a loader that drops or mixes up tensors shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.2 + 0.9)
    return model


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny RGB and grey checkpoints (``"rgb"``, ``"grey"``) whose output keeps the input's
    scale, so that 8/16-bit outputs written from them are not all zero."""
    folder = tmp_path_factory.mktemp("weights")
    rgb = CLIPDenoiser(tiny_config()).eval()
    grey = CLIPDenoiser(tiny_config(in_channels=1)).eval()
    for model in (rgb, grey):
        with torch.no_grad():
            model.decoder.head.weight.mul_(20.0)
    return {
        "rgb": save_checkpoint(rgb, folder / "rgb.safetensors"),
        "grey": save_checkpoint(grey, folder / "grey.safetensors"),
    }


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A deterministic smooth test image ``(H, W, C)`` float32 in [0, 1] (gradients + blobs)."""
    generator = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = []
    for _ in range(channels):
        fx, fy, phase = (
            generator.uniform(0.5, 3.0),
            generator.uniform(0.5, 3.0),
            generator.uniform(0, 6),
        )
        plane = 0.5 + 0.35 * np.sin(2 * np.pi * fx * xx / width + phase) * np.cos(
            2 * np.pi * fy * yy / height
        )
        planes.append(plane)
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0).astype(np.float32)


@pytest.fixture
def make_image():
    """Factory fixture: ``make_image(h, w, c=3, seed=0)`` -> smooth float32 HWC image in [0, 1]."""
    return smooth_image


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A folder ``mini`` of two smooth 30×40 RGB PNGs, ``a.png`` and ``b.png`` (an evaluation set)."""
    folder = tmp_path / "mini"
    folder.mkdir()
    for name, seed in (("a", 1), ("b", 2)):
        pixels = np.round(smooth_image(30, 40, 3, seed=seed) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{name}.png")
    return folder


def save_8bit_image(path: Path, image: np.ndarray, **options) -> Path:
    """Write a float image in [0, 1] as an 8-bit file with Pillow (``options``: e.g. quality)."""
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels.squeeze()).save(path, **options)
    return path


@pytest.fixture
def clean_dir(tmp_path) -> Path:
    """A folder of clean images: ``a.png`` 24x32 RGB, ``b.jpg`` 20x20 RGB, ``grey.png`` 16x18."""
    folder = tmp_path / "clean_in"
    folder.mkdir()
    save_8bit_image(folder / "a.png", smooth_image(24, 32, seed=1))
    save_8bit_image(folder / "b.jpg", smooth_image(20, 20, seed=2), quality=95)
    save_8bit_image(folder / "grey.png", smooth_image(16, 18, channels=1, seed=3))
    return folder


@pytest.fixture
def analysis_images() -> list[AnalysisImage]:
    """Three smooth 64×64 RGB images for the feature analysis, named ``img0``..``img2``."""
    return [AnalysisImage(f"img{i}", smooth_image(64, 64, seed=i)) for i in range(3)]


@pytest.fixture(scope="module")
def client():
    """A FastAPI test client of the web demo (tiny demo network and baselines, 2 MB uploads,
    2 megapixels), one per test module; the test is skipped without the ``serve`` extra."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from _web_helpers import make_app

    with TestClient(make_app(max_upload_bytes=2_000_000, max_pixels=2_000_000)) as test_client:
        yield test_client


# ------------------------------------------------------------------ training runs
#: Overrides making ``tiny-cpu`` tinier and faster for the tests (8-px-wide encoder, 32-px
#: patches, every iteration logged); the folders are those of the ``data_root`` fixture.
FAST_TRAINING = [
    "data.train_dir=train",
    "eval.val_dir=val",
    "data.patch_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.width=8",
    "train.lr=2e-3",
    "train.log_every=1",
    "train.checkpoint_every=4",
    "train.progress=false",
    "train.cpu_threads=1",
    "train.amp=none",
    "eval.every=1000",
    "eval.max_images=2",
]


def fast_config(*extra: str) -> ExperimentConfig:
    """The ``tiny-cpu`` recipe with :data:`FAST_TRAINING` and then ``extra`` applied."""
    return load_experiment_config("tiny-cpu", [*FAST_TRAINING, *extra])


def fast_cli_args(run: Path, data_root: Path, *extra: str) -> list[str]:
    """``clipdenoise train`` arguments for :func:`fast_config` with ``extra``, into ``run``."""
    args = ["-c", "tiny-cpu", "-o", str(run), "--data-root", str(data_root)]
    for item in (*FAST_TRAINING, *extra):
        args += ["--set", item]
    return args


def read_run_log(run_dir: Path) -> list[dict]:
    """The records of a run folder's ``log.jsonl``."""
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A training data root: six 80×96 images in ``train/`` and two 64×64 in ``val/`` (smooth,
    8-bit PNG)."""
    root = tmp_path_factory.mktemp("data")
    for folder, count, size, offset in (("train", 6, (80, 96), 0), ("val", 2, (64, 64), 50)):
        (root / folder).mkdir()
        for index in range(count):
            pixels = smooth_image(*size, 3, seed=index + offset) * 255
            Image.fromarray(pixels.round().astype(np.uint8)).save(root / folder / f"{index}.png")
    return root


torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def run_denoise(*args: str | Path) -> int:
    """``clipdenoise denoise ARGS`` on the CPU in float32; returns the exit status."""
    from clipdenoise.cli import main

    return main(["denoise", *[str(a) for a in args], "--device", "cpu", "--dtype", "float32"])


def save_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8/uint16 array as a PNG, making the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def random_rgb8(rng: np.random.Generator, h: int = 40, w: int = 48) -> np.ndarray:
    """A random ``(h, w, 3)`` uint8 image."""
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
