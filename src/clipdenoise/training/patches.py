"""Clean training patches indexed by their position in the run: reproducible and resumable.

Every patch a run ever draws has a global index ``g`` (0, 1, 2, ... in training order, ranks
interleaved: ``g = local_index × world_size + rank``). Which image it comes from, where it is
cropped and how it is flipped/rotated depend only on ``(seed, g)``:

* images are visited epoch by epoch in a seeded random order (each clean image once per epoch,
  as the reference's shuffled sampler does; the ranks of a DDP job split each epoch between
  them, like a ``DistributedSampler``);
* the crop position and one of the 8 flip/rotation modes (the reference's
  ``random_augmentation``) come from a generator seeded with ``(seed, g)``.

So the batches are the same whatever the number of dataloader workers, and a run resumed at
iteration ``k`` continues with exactly the patches the uninterrupted run would have drawn: the
"dataloader position" is the iteration itself. Noise is added later, on the training device
(or here, in the workers, for CPU-only kinds).

Paired data (``data.pairs_dir``: noisy/clean folders as ``clipdenoise synth srgb`` writes them,
or any layout :func:`~clipdenoise.data.find_image_pairs` knows) is served by
:class:`PairedImageStore`, whose items stack the noisy and clean images along the channels, so
padding, the crop window and the flip/rotation are the same for both, as the reference's
``paired_random_crop`` / ``random_augmentation`` do.

:func:`build_train_store` and :func:`build_validation_set` build the data an
:class:`~clipdenoise.training.recipe.ExperimentConfig` names, failing before training starts on
missing or empty folders and unreadable images.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from clipdenoise.ct import MayoCTDataset
from clipdenoise.data import (
    ImageFolderDataset,
    PairedImageDataset,
    augment_geometry,
    compact_image,
    convert_channels,
    expand_image,
    pad_to_size,
    require_image_files,
)
from clipdenoise.errors import ConfigError, ImageReadError
from clipdenoise.isp import CameraNoiseConfig, simulate_camera_noise
from clipdenoise.noise import NoiseMixture, NoiseSpec, add_reference_noise, parse_noise_spec

if TYPE_CHECKING:
    from clipdenoise.training.recipe import ExperimentConfig

ImageLoader = Callable[[Path], np.ndarray]


class ImageStore:
    """Clean training images read by any ``loader``, cached in memory or read on demand.

    Image files are served by :class:`~clipdenoise.data.ImageFolderDataset` (see
    :func:`build_train_store`). This store exists for files that dataset cannot take: it checks
    headers with PIL and decodes with ``read_image``, whereas Mayo CT slices (``.npy``/DICOM)
    need :meth:`~clipdenoise.ct.MayoCTDataset.read_model_units`, which yields model units, not
    image intensities. Storage and channel conversion are the dataset module's
    (:func:`~clipdenoise.data.compact_image`, :func:`~clipdenoise.data.convert_channels`).

    Args:
        paths: Files ``loader`` understands.
        loader: Reads one file as ``(H, W, C)`` float in [0, 1].
        channels: Channels of every returned image (1 or 3), converted by
            :func:`~clipdenoise.data.convert_channels`.
        cache: Decode every image now and keep it in memory (8-bit images as uint8, others as
            float32). Decoding up front also reports unreadable files before training starts.

    Raises:
        ImageReadError: no paths, or (when caching) an unreadable file.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        loader: ImageLoader,
        *,
        channels: int = 3,
        cache: bool = True,
    ) -> None:
        if not paths:
            raise ImageReadError("no training images given")
        self.paths = [Path(p) for p in paths]
        self.loader = loader
        self.channels = channels
        self._cache: list[np.ndarray] | None = None
        if cache:
            self._cache = [compact_image(self._read(path)) for path in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, path: Path) -> np.ndarray:
        return convert_channels(self.loader(path), self.channels)

    def __getitem__(self, index: int) -> np.ndarray:
        """Image ``index`` as ``(H, W, C)`` float32 in [0, 1]."""
        if self._cache is not None:
            return expand_image(self._cache[index])
        return self._read(self.paths[index])

    def verify(self) -> None:
        """Decode every image once (no-op when cached); raises on the first unreadable file."""
        if self._cache is None:
            for path in self.paths:
                self._read(path)


class PairedImageStore:
    """Noisy/clean training pairs; item ``i`` is ``(H, W, 2C)``: noisy channels, then clean.

    Args:
        pairs: The pairs (:class:`~clipdenoise.data.PairedImageDataset`; noisy and clean of a
            pair must have the same size).
        cache: Decode every pair now and keep it in memory (8-bit pairs as uint8); decoding up
            front also reports unreadable files and size mismatches before training starts.

    Attributes:
        channels: ``C``, the channels of each image of a pair.
        paired: Always true: :class:`TrainPatchDataset` splits the items again.
    """

    paired = True

    def __init__(self, pairs: PairedImageDataset, *, cache: bool = True) -> None:
        self.pairs = pairs
        self.channels = pairs.channels
        self.paths = [pair.clean for pair in pairs.pairs]
        self._cache: list[np.ndarray] | None = None
        if cache:
            self._cache = [compact_image(self._read(index)) for index in range(len(pairs))]

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, index: int) -> np.ndarray:
        _, noisy, clean = self.pairs[index]
        return np.concatenate([noisy, clean], axis=2)

    def __getitem__(self, index: int) -> np.ndarray:
        """Pair ``index`` as one ``(H, W, 2C)`` float32 array in [0, 1]."""
        if self._cache is not None:
            return expand_image(self._cache[index])
        return self._read(index)

    def verify(self) -> None:
        """Decode every pair once (no-op when cached); raises on the first bad one."""
        if self._cache is None:
            for index in range(len(self)):
                self._read(index)


TrainImages = ImageFolderDataset | ImageStore | PairedImageStore
"""What :class:`TrainPatchDataset` crops from: ``len`` and ``(H, W, C)`` float32 items."""


def add_training_noise(
    clean: torch.Tensor,
    spec: NoiseSpec | NoiseMixture,
    generator: torch.Generator,
    camera: CameraNoiseConfig | None = None,
) -> torch.Tensor:
    """Online training noise for ``clean`` ``(C, H, W)`` or ``(B, C, H, W)``.

    Every spec or mixture is applied as it is (``spec.apply``), except ``srgb_camera`` with a
    ``camera`` config: each image then runs through
    :func:`clipdenoise.isp.simulate_camera_noise` with that config (e.g. the reference's exact
    pipeline, :meth:`~clipdenoise.isp.CameraNoiseConfig.reference`) at the spec's levels, its
    generator seeded from ``generator``.
    """
    if camera is None or not isinstance(spec, NoiseSpec) or spec.kind != "srgb_camera":
        return spec.apply(clean, generator)
    if spec.is_random_level:
        raise ConfigError(
            f"noise {spec}: a camera pipeline config takes fixed levels (set sigma ranges on "
            "the CameraNoiseConfig instead)"
        )
    sigma_s, sigma_c = spec.level
    config = dataclasses.replace(camera, sigma_s=float(sigma_s), sigma_c=float(sigma_c))
    batch = clean[None] if clean.dim() == 3 else clean
    seeds = torch.randint(0, 2**62, (batch.shape[0],), generator=generator, device=clean.device)
    noisy = []
    for image, seed in zip(batch.cpu().numpy(), seeds.tolist()):
        rgb = np.clip(image.transpose(1, 2, 0), 0.0, 1.0)
        result = simulate_camera_noise(rgb, np.random.default_rng(seed), config)
        noisy.append(result.noisy.transpose(2, 0, 1))
    stacked = torch.from_numpy(np.stack(noisy)).to(device=clean.device, dtype=clean.dtype)
    return stacked[0] if clean.dim() == 3 else stacked


class TrainPatchDataset(Dataset):
    """Random clean patches addressed by global sample index (see the module docstring).

    Args:
        store: The clean images (:func:`build_train_store`).
        patch_size: Side of the square patches.
        seed: Run seed.
        geometric_augs: Random flips/rotations (8 modes).

        noise: Add this noise here, in the dataloader workers (for CPU-heavy kinds such as
            ``srgb_camera``; seeded by ``(seed, g)``). ``None``: the loop adds noise on the
            training device.
        camera: The camera pipeline of ``srgb_camera`` noise (:func:`add_training_noise`).

    Items are dicts with ``"clean"`` (and ``"noisy"`` when ``noise`` is set or the store holds
    pairs, :class:`PairedImageStore`): ``(C, patch_size, patch_size)`` float32 tensors in
    [0, 1] (noisy may leave [0, 1]). Images smaller than the patch are reflect-padded first
    (:func:`~clipdenoise.data.pad_to_size`).
    """

    def __init__(
        self,
        store: TrainImages,
        patch_size: int,
        *,
        seed: int,
        geometric_augs: bool = True,
        noise: NoiseSpec | NoiseMixture | None = None,
        camera: CameraNoiseConfig | None = None,
    ) -> None:
        self.store = store
        self.patch_size = patch_size
        self.seed = seed
        self.geometric_augs = geometric_augs
        self.noise = noise
        self.camera = camera
        self.paired = bool(getattr(store, "paired", False))
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return 2**62  # addressed by global index; the sampler bounds what is drawn

    def image_index(self, global_index: int) -> int:
        """Which image the sample ``global_index`` is cropped from (epoch-wise shuffled)."""
        count = len(self.store)
        epoch, position = divmod(global_index, count)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            order = np.random.default_rng([self.seed, 0x5EED, epoch]).permutation(count)
            self._epoch_order = (epoch, order)
        return int(self._epoch_order[1][position])

    def __getitem__(self, global_index: int) -> dict[str, torch.Tensor]:
        patch = self.clean_patch(global_index)
        if self.paired:
            channels = patch.shape[0] // 2
            return {"noisy": patch[:channels], "clean": patch[channels:]}
        if self.noise is None:
            return {"clean": patch}
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed, 0x4015E, global_index]).generate_state(1)[0])
        )
        noisy = add_training_noise(patch, self.noise, generator, self.camera)
        return {"clean": patch, "noisy": noisy}

    def clean_patch(self, global_index: int) -> torch.Tensor:
        """The patch of sample ``global_index``, ``(C, p, p)`` float32 in [0, 1] (for a paired
        store ``(2C, p, p)``: the noisy and clean patches, cut and turned alike)."""
        image = self.store[self.image_index(global_index)]
        rng = np.random.default_rng([self.seed, 0xC509, global_index])
        size = self.patch_size
        image = pad_to_size(image, size)
        top = int(rng.integers(0, image.shape[0] - size + 1))
        left = int(rng.integers(0, image.shape[1] - size + 1))
        patch = image[top : top + size, left : left + size]
        if self.geometric_augs:
            patch = augment_geometry(patch, int(rng.integers(0, 8)))
        return torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1), dtype=np.float32))


class RunSampler(Sampler[int]):
    """Global sample indices of one rank from ``start`` (in local samples) to ``stop``.

    Local sample ``s`` of rank ``r`` in a job of ``world_size`` ranks is global index
    ``s × world_size + r``.
    """

    def __init__(self, start: int, stop: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.start, self.stop = start, stop
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[int]:
        for local in range(self.start, self.stop):
            yield local * self.world_size + self.rank


def seed_worker(worker_id: int) -> None:
    """Seed Python/NumPy in a dataloader worker from torch's per-worker seed.

    Patches do not depend on it (they are seeded by index), but any user-supplied loader that
    uses the global generators gets distinct, reproducible streams per worker.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


# ---------------------------------------------------------------------------- from a config
def resolve_data_path(value: str, data_root: str | Path | None) -> Path:
    """A config path: absolute as is, else relative to ``data_root`` (or ``$CLIPDENOISE_DATA``,
    or the current folder)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    root = data_root if data_root is not None else os.environ.get("CLIPDENOISE_DATA", ".")
    return Path(root).expanduser() / path


def build_train_store(config: ExperimentConfig, data_root: str | Path | None) -> TrainImages:
    """The clean training images of ``config``, checked before training starts.

    Raises:
        DatasetNotFoundError: the folder does not exist (the message says where to get it).
        DatasetError: it holds no image.
        ImageReadError: an unreadable image (all are decoded when caching or verifying).
    """
    data = config.data
    if data.pairs_dir:
        if data.format != "images":
            raise ConfigError("data.pairs_dir needs data.format = 'images'")
        pairs = PairedImageDataset(
            resolve_data_path(data.pairs_dir, data_root),
            data.pair_layout,
            channels=data.channels,
        )
        if data.max_images:
            pairs = PairedImageDataset.from_pairs(
                pairs.pairs[: data.max_images], channels=data.channels
            )
        store = PairedImageStore(pairs, cache=data.cache_images)
        if data.verify_images:
            store.verify()
        return store
    folder = resolve_data_path(data.train_dir, data_root)
    if data.format == "mayo":
        slices = MayoCTDataset(folder, "train", test_patient=data.test_patient)
        files = _first(list(slices.targets), data.max_images)
        store = ImageStore(
            files, slices.read_model_units, channels=data.channels, cache=data.cache_images
        )
        if data.verify_images:
            store.verify()
        return store
    files = require_image_files(folder, recursive=data.recursive, what="training data")
    # Caching decodes every image up front, which verifies it too.
    return ImageFolderDataset.from_paths(
        _first(files, data.max_images),
        channels=data.channels,
        verify=data.verify_images or data.cache_images,
        cache=data.cache_images,
    )


def _first(files: list[Path], max_images: int) -> list[Path]:
    """The first ``max_images`` files (all of them when it is 0)."""
    return files[:max_images] if max_images else files


@dataclass(frozen=True)
class ValidationSet:
    """Validation pairs, ``(H, W, C)`` float32 arrays (noisy not clipped), with their names."""

    names: tuple[str, ...]
    noisy: tuple[np.ndarray, ...]
    clean: tuple[np.ndarray, ...]
    kind: Literal["images", "paired", "mayo"] = "images"


def build_validation_set(
    config: ExperimentConfig, data_root: str | Path | None
) -> ValidationSet | None:
    """The validation pairs of ``config`` (``None`` when ``eval.val_dir`` is empty)."""
    settings = config.eval
    if not settings.val_dir:
        return None
    folder = resolve_data_path(settings.val_dir, data_root)
    if settings.format == "mayo":
        pairs = MayoCTDataset(folder, "test", test_patient=config.data.test_patient)
        count = min(len(pairs), settings.max_images or len(pairs))
        items = [pairs[index] for index in range(count)]
        return ValidationSet(
            names=tuple(name for name, _, _ in items),
            noisy=tuple(noisy for _, noisy, _ in items),
            clean=tuple(clean for _, _, clean in items),
            kind="mayo",
        )
    if settings.format == "paired":
        pairs = PairedImageDataset(folder, channels=config.data.channels)
        items = [
            pairs[index] for index in range(min(len(pairs), settings.max_images or len(pairs)))
        ]
        return ValidationSet(
            names=tuple(name for name, _, _ in items),
            noisy=tuple(noisy for _, noisy, _ in items),
            clean=tuple(clean for _, _, clean in items),
        )
    files = _first(require_image_files(folder, what="validation data"), settings.max_images)
    images = ImageFolderDataset.from_paths(files, channels=config.data.channels)
    clean = [images[index] for index in range(len(images))]
    spec = parse_noise_spec(settings.noise)
    noisy = [
        add_reference_noise(image, spec, seed=settings.seed).astype(np.float32) for image in clean
    ]
    return ValidationSet(tuple(p.name for p in images.paths), tuple(noisy), tuple(clean))


__all__ = [
    "ImageStore",
    "PairedImageStore",
    "add_training_noise",
    "RunSampler",
    "TrainImages",
    "TrainPatchDataset",
    "ValidationSet",
    "build_train_store",
    "build_validation_set",
    "resolve_data_path",
    "seed_worker",
]
