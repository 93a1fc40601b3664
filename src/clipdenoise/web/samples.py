"""The demo's bundled sample images, generated procedurally (no third-party photos, so no licence
question): a colourful geometric scene, a resolution chart (zone plate, Siemens star, colour bars)
and the Shepp–Logan head phantom (Shepp & Logan 1974, with Toft's higher-contrast intensities) as
a 16-bit greyscale PNG, CT-like.

The PNG files under ``web/samples/`` are the output of :func:`write_samples`, and the quickstart's
noisy ``resources/sample.png`` that of :func:`quickstart_png`; tests check that they are
reproduced exactly. Regenerate them with ``python -m clipdenoise.web.samples``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from clipdenoise.atomic import atomic_write_bytes
from clipdenoise.noise import add_reference_noise

SUPERSAMPLE = 4  # anti-aliasing: render at 4× and average 4×4 blocks


@dataclass(frozen=True)
class Sample:
    """One bundled sample: key (also the file stem), label, description and size."""

    key: str
    label: str
    description: str
    width: int
    height: int
    bit_depth: int

    @property
    def filename(self) -> str:
        return f"{self.key}.png"

    def data(self) -> bytes:
        """The PNG file's bytes (read from the package once)."""
        return _read_sample(self.filename)

    def public(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "description": self.description,
            "width": self.width,
            "height": self.height,
            "bit_depth": self.bit_depth,
            "url": f"/api/samples/{self.key}",
        }


SAMPLES: dict[str, Sample] = {
    sample.key: sample
    for sample in (
        Sample(
            "scene", "Geometric scene", "sky, sun, hills, house, stripes (RGB, 8-bit)", 384, 256, 8
        ),
        Sample(
            "chart",
            "Resolution chart",
            "zone plate, Siemens star, colour bars (RGB, 8-bit)",
            384,
            256,
            8,
        ),
        Sample(
            "phantom", "Shepp–Logan phantom", "CT-like head phantom (grey, 16-bit)", 256, 256, 16
        ),
    )
}


@cache
def _read_sample(filename: str) -> bytes:
    return resources.files("clipdenoise.web").joinpath("samples", filename).read_bytes()


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled pixel-centre coordinates, x in [0, width), y in [0, height)."""
    steps_y = (np.arange(height * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    steps_x = (np.arange(width * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    return np.meshgrid(steps_y, steps_x, indexing="ij")


def _downsample(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[0] // SUPERSAMPLE, image.shape[1] // SUPERSAMPLE
    blocks = image.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE, *image.shape[2:])
    return blocks.mean(axis=(1, 3))


def _paint(canvas: np.ndarray, mask: np.ndarray, colour) -> None:
    canvas[mask] = np.asarray(colour, dtype=np.float64)


def render_scene(height: int = 256, width: int = 384) -> np.ndarray:
    """A geometric scene ``(H, W, 3)`` float64 in [0, 1]: flat areas, edges, gradients, textures."""
    y, x = _grid(height, width)
    sky_top, sky_bottom = np.array([0.20, 0.42, 0.78]), np.array([0.78, 0.88, 0.97])
    t = (y / height)[..., None]
    canvas = sky_top * (1 - t) + sky_bottom * t
    _paint(
        canvas,
        (x - 0.78 * width) ** 2 + (y - 0.22 * height) ** 2 < (0.09 * height) ** 2,
        (0.99, 0.83, 0.25),
    )
    far_hill = y > 0.55 * height + 0.08 * height * np.sin(x / width * 2 * np.pi * 1.3 + 0.4)
    _paint(canvas, far_hill, (0.36, 0.58, 0.33))
    near_hill = y > 0.70 * height + 0.05 * height * np.sin(x / width * 2 * np.pi * 2.1 + 2.0)
    ground = 0.38 + 0.10 * ((np.floor(x / 12) + np.floor(y / 12)) % 2)
    canvas[near_hill] = np.stack([ground * 0.55, ground, ground * 0.35], axis=-1)[near_hill]
    left, right, top, bottom = 0.12 * width, 0.36 * width, 0.50 * height, 0.80 * height
    house = (x > left) & (x < right) & (y > top) & (y < bottom)
    _paint(canvas, house, (0.86, 0.80, 0.70))
    roof = (
        (y < top)
        & (y > top - 0.16 * height)
        & (np.abs(x - (left + right) / 2) < (y - (top - 0.16 * height)) * 1.2)
    )
    _paint(canvas, roof, (0.62, 0.18, 0.14))
    for offset in (0.05, 0.15):
        window = (x > left + offset * width) & (x < left + (offset + 0.05) * width)
        _paint(
            canvas,
            window & (y > top + 0.06 * height) & (y < top + 0.14 * height),
            (0.25, 0.35, 0.55),
        )
    door = (
        (x > left + 0.095 * width)
        & (x < left + 0.145 * width)
        & (y > bottom - 0.16 * height)
        & house
    )
    _paint(canvas, door, (0.35, 0.22, 0.12))
    pole = (np.abs(x - 0.60 * width) < 1.5) & (y > 0.25 * height) & (y < 0.75 * height)
    _paint(canvas, pole, (0.30, 0.30, 0.30))
    flag = (x > 0.60 * width) & (x < 0.74 * width) & (y > 0.25 * height) & (y < 0.35 * height)
    stripes = (np.floor((y - 0.25 * height) / 3) % 2 == 0)[..., None]
    flag_colour = np.where(stripes, [0.85, 0.15, 0.20], [0.97, 0.97, 0.95])
    canvas[flag] = flag_colour[flag]
    return np.clip(_downsample(canvas), 0.0, 1.0)


def render_chart(height: int = 256, width: int = 384) -> np.ndarray:
    """A resolution chart ``(H, W, 3)`` float64 in [0, 1]: zone plate, Siemens star, colour
    bars and a grey ramp; fine detail where denoisers tend to smear."""
    y, x = _grid(height, width)
    canvas = np.full((*y.shape, 3), 0.5)
    radius = 0.36 * height
    cx, cy = 0.27 * width, 0.40 * height
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    zone = 0.5 + 0.5 * np.cos(np.pi * r2 / (2.4 * radius))
    inside = r2 < radius**2
    canvas[inside] = zone[inside][:, None]
    sx, sy = 0.70 * width, 0.40 * height
    angle = np.arctan2(y - sy, x - sx)
    star = (np.floor(angle / (2 * np.pi) * 36) % 2 == 0).astype(np.float64)
    in_star = (x - sx) ** 2 + (y - sy) ** 2 < radius**2
    canvas[in_star] = (0.1 + 0.8 * star[in_star])[:, None]
    bars = [
        (1, 1, 1),
        (1, 1, 0),
        (0, 1, 1),
        (0, 1, 0),
        (1, 0, 1),
        (1, 0, 0),
        (0, 0, 1),
        (0.1, 0.1, 0.1),
    ]
    bar_row = (y > 0.80 * height) & (y < 0.92 * height)
    index = np.clip((x / width * len(bars)).astype(int), 0, len(bars) - 1)
    colours = 0.1 + 0.8 * np.asarray(bars, dtype=np.float64)[index]
    canvas[bar_row] = colours[bar_row]
    ramp_row = y >= 0.92 * height
    canvas[ramp_row] = (x / width)[ramp_row][:, None]
    return np.clip(_downsample(canvas), 0.0, 1.0)


# (intensity, semi-axis a, semi-axis b, centre x, centre y, angle in degrees): Toft's
# "modified Shepp-Logan" head phantom on [-1, 1]^2.
SHEPP_LOGAN_ELLIPSES = (
    (1.00, 0.6900, 0.9200, 0.00, 0.0000, 0),
    (-0.80, 0.6624, 0.8740, 0.00, -0.0184, 0),
    (-0.20, 0.1100, 0.3100, 0.22, 0.0000, -18),
    (-0.20, 0.1600, 0.4100, -0.22, 0.0000, 18),
    (0.10, 0.2100, 0.2500, 0.00, 0.3500, 0),
    (0.10, 0.0460, 0.0460, 0.00, 0.1000, 0),
    (0.10, 0.0460, 0.0460, 0.00, -0.1000, 0),
    (0.10, 0.0460, 0.0230, -0.08, -0.6050, 0),
    (0.10, 0.0230, 0.0230, 0.00, -0.6060, 0),
    (0.10, 0.0230, 0.0460, 0.06, -0.6050, 0),
)


def render_phantom(size: int = 256) -> np.ndarray:
    """The modified Shepp–Logan phantom ``(size, size, 1)`` float64 in [0, 1]."""
    y, x = _grid(size, size)
    u = 2 * x / size - 1
    v = 1 - 2 * y / size  # the phantom's y axis points up
    image = np.zeros_like(u)
    for intensity, a, b, x0, y0, degrees in SHEPP_LOGAN_ELLIPSES:
        theta = np.deg2rad(degrees)
        du, dv = u - x0, v - y0
        along = du * np.cos(theta) + dv * np.sin(theta)
        across = -du * np.sin(theta) + dv * np.cos(theta)
        image += intensity * ((along / a) ** 2 + (across / b) ** 2 <= 1)
    return np.clip(_downsample(image), 0.0, 1.0)[..., None]


def sample_png(key: str) -> bytes:
    """Render sample ``key`` and encode it as PNG (8-bit RGB or 16-bit grey)."""
    from PIL import Image

    sample = SAMPLES[key]
    buffer = io.BytesIO()
    if key == "phantom":
        pixels = np.round(render_phantom(sample.width)[..., 0] * 65535).astype(np.uint16)
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=9)
    else:
        render = render_scene if key == "scene" else render_chart
        pixels = np.round(render(sample.height, sample.width) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


QUICKSTART_NOISE = "gaussian:25"
QUICKSTART_SIZE = (192, 256)  # height, width


def quickstart_clean() -> np.ndarray:
    """The clean scene behind ``resources/sample.png``: ``(192, 256, 3)`` uint8."""
    return np.round(render_scene(*QUICKSTART_SIZE) * 255).astype(np.uint8)


def quickstart_png() -> bytes:
    """``resources/sample.png``: the clean scene with Gaussian noise σ = 25 (numpy seed 0, the
    reference test protocol), clipped and rounded to 8 bits."""
    from PIL import Image

    noisy = add_reference_noise(quickstart_clean() / 255.0, QUICKSTART_NOISE, seed=0)
    pixels = np.round(np.clip(noisy, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def write_samples(folder: str | Path) -> list[Path]:
    """Write every sample PNG into ``folder`` (atomically); returns the paths."""
    folder = Path(folder)
    return [
        atomic_write_bytes(folder / sample.filename, sample_png(key))
        for key, sample in SAMPLES.items()
    ]


if __name__ == "__main__":
    for path in write_samples(Path(__file__).with_name("samples")):
        print(path)
    quickstart = Path(__file__).parents[1] / "resources" / "sample.png"
    print(atomic_write_bytes(quickstart, quickstart_png()))
