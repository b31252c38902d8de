"""The image cache: each image decoded and resized once, then read as uint8 at every epoch.

Every preset starts with the same deterministic geometry, resize the short side to `size` and
center-crop `size`×`size` (vocproj/data/transforms.py), and only then its random part. The cache
holds that geometry's result for one split as a uint8 array N×S×S×3 (the layout of a decoded
image), a NumPy `.npy` file memory-mapped when read, in the profile's cache folder
(`<data.root>/cache`):

    <split>-<size>px.npy    the images, in the order of the split
    <split>-<size>px.json   the manifest: format, split, size, ids, and each JPEG's
                            [bytes, mtime_ns] stamp

A cache whose manifest differs from the split's current ids, size or file stamps is rebuilt.
A rebuild first removes the manifest, writes the array to a temporary file that one rename
moves into place, and writes the manifest last: an interrupted build is never used, and its
leftovers are removed by the next build (one build of a given cache at a time).

Items read from the cache go through the same transforms as decoded ones, on the same PIL image,
so they are bit-identical for every preset (with the same random state). Training and
evaluation load uint8 batches instead (`CachedVOCClassification.batches`) and finish them on
the device: on the CPU, each image gets the preset's random part from PIL's uint8 kernels (the
cheapest there, and the same as decoding) and the batch is normalised at once; on a GPU, the
uint8 batch is moved there and `BatchAugment` runs the random part batched, with per-image
parameters, so that the CPU only copies bytes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from vocproj.config import AugmentSettings, DifficultMode
from vocproj.data.transforms import (
    IMAGENET,
    Normalisation,
    PresetName,
    augmentations,
    geometry,
    to_normalised_tensor,
)
from vocproj.data.voc import LabelledSplit, VOCClassification, open_rgb
from vocproj.errors import DatasetError
from vocproj.io import atomic_path, atomic_write_json, remove_temporaries

CACHE_FORMAT = 1  # bump when what the array holds changes: older caches are then rebuilt
MAX_BUILD_PROCESSES = 8

# ---------------------------------------------------------------------------------------------
# The cache files
# ---------------------------------------------------------------------------------------------


def cache_files(directory: Path, split: str, size: int) -> tuple[Path, Path]:
    """The (array, manifest) paths of a split's cache at one image size."""
    stem = f"{split}-{size}px"
    return directory / f"{stem}.npy", directory / f"{stem}.json"


def file_stamps(paths: Iterable[Path]) -> list[list[int]]:
    """[bytes, mtime_ns] of each file: rewriting or replacing an image changes its stamp."""
    stamps = []
    for path in paths:
        info = path.stat()
        stamps.append([info.st_size, info.st_mtime_ns])
    return stamps


def cache_manifest(dataset: VOCClassification, size: int) -> dict[str, Any]:
    """What a current cache of the dataset's split at `size` records."""
    return {
        "format": CACHE_FORMAT,
        "split": dataset.split,
        "size": size,
        "ids": list(dataset.ids),
        "stamps": file_stamps(dataset.image_path(image_id) for image_id in dataset.ids),
    }


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at `path`, or None when it is missing or unreadable (the cache is rebuilt)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def cache_is_current(array_path: Path, manifest_path: Path, manifest: dict[str, Any]) -> bool:
    """True when the manifest matches and the array has the shape it promises."""
    if read_manifest(manifest_path) != manifest:
        return False
    try:
        array = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    size = manifest["size"]
    return array.dtype == np.uint8 and array.shape == (len(manifest["ids"]), size, size, 3)


def ensure_cache(
    dataset: VOCClassification, size: int, directory: Path, *, progress: bool = True
) -> Path:
    """The split's cache array at `size` under `directory`, built first if missing or stale."""
    array_path, manifest_path = cache_files(directory, dataset.split, size)
    manifest = cache_manifest(dataset, size)
    if cache_is_current(array_path, manifest_path, manifest):
        return array_path
    try:
        build_cache(dataset, size, array_path, manifest_path, manifest, progress=progress)
    except OSError as err:
        raise DatasetError(
            f"could not write the image cache {array_path} ({err}); free some disk space or "
            f"make {directory} writable, or set data.cache: false in the profile."
        ) from None
    return array_path


def build_cache(
    dataset: VOCClassification,
    size: int,
    array_path: Path,
    manifest_path: Path,
    manifest: dict[str, Any],
    *,
    progress: bool = True,
) -> None:
    """Decode every image of the dataset into a new array, then write the manifest."""
    array_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)  # the array is about to change
    remove_temporaries(array_path.parent, array_path.name)  # left by an interrupted build
    paths = [dataset.image_path(image_id) for image_id in dataset.ids]
    with atomic_path(array_path) as tmp:
        array = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3)
        )
        images = decoded_images(paths, size, build_processes(len(paths)))
        desc = f"caching {dataset.split} at {size} px"
        bar = tqdm(images, desc=desc, total=len(paths), disable=not progress, unit="image")
        with bar:
            for index, image in enumerate(bar):
                array[index] = image
        array.flush()
        del array
    atomic_write_json(manifest_path, manifest)


def decode_for_cache(path: Path, size: int) -> np.ndarray:
    """The geometry every preset starts with, applied to the decoded image: S×S×3 uint8."""
    return np.asarray(v2.Compose(geometry(size))(open_rgb(path)))


def build_processes(count: int) -> int:
    """Processes that decode for a build: every core for a large split, none for a small one."""
    return min(MAX_BUILD_PROCESSES, os.cpu_count() or 1) if count >= 256 else 1


def decoded_images(paths: Sequence[Path], size: int, processes: int) -> Iterator[np.ndarray]:
    """Decode the images for the cache, in order, in `processes` parallel processes."""
    decode = partial(decode_for_cache, size=size)
    if processes == 1:
        yield from map(decode, paths)
        return
    with multiprocessing.get_context().Pool(processes) as pool:
        yield from pool.imap(decode, paths, chunksize=16)


# ---------------------------------------------------------------------------------------------
# The Dataset read from the cache
# ---------------------------------------------------------------------------------------------


class CachedVOCClassification(VOCClassification):
    """A split whose images come from its cache: the same items as VOCClassification gives.

    `batches(on_device)` gives the uint8 items a DataLoader batches and the step that
    finishes each batch on the device.
    """

    def __init__(
        self,
        labelled: LabelledSplit,
        preset: PresetName,
        size: int,
        cache_dir: Path,
        *,
        augment: AugmentSettings | None = None,
        difficult: DifficultMode = "ignore",
        normalisation: Normalisation = IMAGENET,
        progress: bool = True,
    ) -> None:
        randomness = augmentations(preset, augment or AugmentSettings())
        transform = v2.Compose([*randomness, *to_normalised_tensor(normalisation)])
        super().__init__(labelled, transform, difficult=difficult)
        self.randomness = v2.Compose(randomness) if randomness else None
        self.normalisation = normalisation
        self.batch_augment = BatchAugment(randomness, normalisation)
        self.cache_file = ensure_cache(self, size, cache_dir, progress=progress)
        self._images: np.ndarray | None = None

    @property
    def images(self) -> np.ndarray:
        """The cached N×S×S×3 uint8 images, memory-mapped on first use in each process."""
        if self._images is None:
            self._images = np.load(self.cache_file, mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        """Loader workers pickle the dataset: each maps the file itself rather than copy it."""
        return {**self.__dict__, "_images": None}

    def stored_image(self, index: int) -> Image.Image:
        """The cached image: the decoded image after the geometry every preset starts with."""
        return Image.fromarray(self.images[index])

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor, torch.Tensor, str]:
        target = torch.from_numpy(self.targets[index])
        mask = torch.from_numpy(self.masks[index])
        return self.transform(self.stored_image(index)), target, mask, self.ids[index]

    def uint8_image(self, index: int, augmented: bool) -> torch.Tensor:
        """The cached image as S×S×3 uint8 (the cache's and PIL's layout), after the preset's
        random part if `augmented`."""
        if augmented and self.randomness is not None:
            return torch.from_numpy(np.array(self.randomness(self.stored_image(index))))
        return torch.from_numpy(np.array(self.images[index]))

    def batches(self, on_device: bool) -> tuple[UInt8Items, BatchAugment]:
        """The uint8 items to batch and the step that finishes a batch on the device.

        `on_device`: the random part runs batched on the device (for a GPU), given each image's
        seed; otherwise each item gets it on the CPU and the device only normalises.
        """
        items = UInt8Items(self, augmented=not on_device)
        return items, self.batch_augment if on_device else BatchAugment([], self.normalisation)


class UInt8Items(torch.utils.data.Dataset):
    """A cached split's items with the image as S×S×3 uint8, augmented per item or not; a
    DataLoader batches them with `collate_channels_last`."""

    def __init__(self, split: CachedVOCClassification, augmented: bool) -> None:
        self.split, self.augmented = split, augmented

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
        split = self.split
        target = torch.from_numpy(split.targets[index])
        mask = torch.from_numpy(split.masks[index])
        return split.uint8_image(index, self.augmented), target, mask, split.ids[index]


def collate_channels_last(
    items: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """UInt8Items' items as one batch: the images B×3×S×S uint8 in channels-last layout.

    The images are stacked as they are stored (S×S×3 each) and the batch is a view of them in
    B×3×S×S order: what a channels-last network takes, with no copy that transposes the pixels
    (nor a second one back, as stacking 3×S×S images then converting them to channels-last did).
    """
    images, targets, masks, ids = zip(*items, strict=True)
    batch = torch.stack(images).permute(0, 3, 1, 2)
    return batch, torch.stack(targets), torch.stack(masks), ids


# ---------------------------------------------------------------------------------------------
# A preset's random transforms on a whole batch
# ---------------------------------------------------------------------------------------------


class BatchAugment:
    """A preset's random transforms on a uint8 batch B×3×S×S, with per-image random parameters.

    Returns the batch as normalised float32, as the preset's per-item transform does (the same
    kernels: without random transforms the result is bit-identical). RandomRotation (nearest,
    fill 0), ColorJitter's saturation and hue, and RandomHorizontalFlip run batched on the
    batch's device; any other transform runs image by image. Image i's parameters come from a
    CPU generator seeded with `seeds[i]` (vocproj/training/distributed.py `image_seed`), drawn
    in the order torchvision draws them for one image, so they equal what the per-item transform
    draws with torch's generator seeded alike; without seeds, the seeds come from torch's
    generator. Nothing waits for a GPU: parameters reach it in asynchronous copies from pinned
    memory.
    """

    def __init__(
        self, transforms: Sequence[v2.Transform], normalisation: Normalisation = IMAGENET
    ) -> None:
        self.steps = [batched(transform) for transform in transforms]
        self.normalisation = normalisation
        self.mean_std: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        batch = F.to_dtype(images, torch.float32, scale=True)  # new, in the images' layout
        if self.steps:
            draws = Draws(len(batch) if seeds is None else seeds)
            for step in self.steps:
                batch = step(batch, draws)
        return self.normalise(batch)

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """F.normalize's arithmetic in place on a float batch of the caller's own, with the mean
        and std kept on the batch's device."""
        if batch.device not in self.mean_std:
            mean, std = self.normalisation
            self.mean_std[batch.device] = (
                on_device(torch.tensor(mean).view(-1, 1, 1), batch.device),
                on_device(torch.tensor(std).view(-1, 1, 1), batch.device),
            )
        mean, std = self.mean_std[batch.device]
        return batch.sub_(mean).div_(std)


class Draws:
    """Random parameters for each image of a batch, each image from its own seeded generator.

    `seeds`: one per image, or a count of images whose seeds are drawn from torch's generator.
    """

    def __init__(self, seeds: Sequence[int] | int) -> None:
        if isinstance(seeds, int):
            seeds = torch.randint(2**62, (seeds,)).tolist()
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def uniform(self, low: float, high: float) -> torch.Tensor:
        """One draw from U[low, high] per image, as torchvision's `torch.empty(1).uniform_`."""
        return torch.cat([torch.empty(1).uniform_(low, high, generator=g) for g in self.generators])

    def rand(self) -> torch.Tensor:
        """One draw from U[0, 1) per image, as torchvision's `torch.rand(1)`."""
        return torch.cat([torch.rand(1, generator=g) for g in self.generators])

    def permutations(self, n: int) -> torch.Tensor:
        """One random permutation of range(n) per image (B×n), as `torch.randperm(n)`."""
        return torch.stack([torch.randperm(n, generator=g) for g in self.generators])


BatchStep = Callable[[torch.Tensor, Draws], torch.Tensor]


def batched(transform: v2.Transform) -> BatchStep:
    """The batched equivalent of one of a preset's transforms (image by image if none)."""
    if isinstance(transform, v2.RandomRotation) and is_plain_rotation(transform):
        return partial(random_rotation, degrees=transform.degrees)
    if (
        isinstance(transform, v2.ColorJitter)
        and transform.brightness is None
        and transform.contrast is None
    ):
        return partial(random_jitter, saturation=transform.saturation, hue=transform.hue)
    if isinstance(transform, v2.RandomHorizontalFlip):
        return partial(random_flip, p=transform.p)
    return partial(image_by_image, transform)


def is_plain_rotation(rotation: v2.RandomRotation) -> bool:
    """A rotation about the centre, nearest-neighbour, same size, black corners."""
    nearest = rotation.interpolation in ("nearest", InterpolationMode.NEAREST)
    black = rotation.fill in (0, None)
    return nearest and black and not rotation.expand and rotation.center is None


def on_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """CPU values copied to the device without waiting for it (via pinned memory on CUDA)."""
    if device.type == "cuda":
        values = values.pin_memory()
    return values.to(device, non_blocking=True)


def per_image(values: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Per-image values shaped to broadcast over a B×C×H×W batch, on its device."""
    return on_device(values, batch.device).view(-1, 1, 1, 1)


def random_rotation(batch: torch.Tensor, draws: Draws, degrees: Sequence[float]) -> torch.Tensor:
    """RandomRotation: each image turned by its own angle from U[degrees]."""
    return rotate_batch(batch, draws.uniform(degrees[0], degrees[1]))


def rotate_batch(batch: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise by its angle in degrees, as F.rotate does."""
    radians = torch.deg2rad(angles)
    cos, sin, zero = radians.cos(), radians.sin(), torch.zeros(len(batch))
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    theta = on_device(theta, batch.device)
    grid = nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    return nn.functional.grid_sample(
        batch, grid, mode="nearest", padding_mode="zeros", align_corners=False
    )


SATURATION, HUE = 2, 3  # ColorJitter's indices of its four adjustments (brightness 0, contrast 1)


def random_jitter(
    batch: torch.Tensor,
    draws: Draws,
    saturation: Sequence[float] | None,
    hue: Sequence[float] | None,
) -> torch.Tensor:
    """ColorJitter's saturation and hue, each image with its own factors and its own order.

    Draws as ColorJitter does for one image: the order of its four adjustments, then the
    saturation factor, then the hue shift.
    """
    order = draws.permutations(4)
    factors = None if saturation is None else draws.uniform(*saturation)
    shifts = None if hue is None else draws.uniform(*hue)
    if factors is None and shifts is None:
        return batch
    steps = []
    if factors is not None:
        steps.append(partial(adjust_saturation_batch, factors=per_image(factors, batch)))
    if shifts is not None:
        steps.append(partial(shift_hue_batch, shifts=per_image(shifts, batch).squeeze(1)))
    if len(steps) == 1:
        return steps[0](batch)
    position = order.argsort(1)
    saturation_first = per_image(position[:, SATURATION] < position[:, HUE], batch)
    saturation_hue, hue_saturation = steps[1](steps[0](batch)), steps[0](steps[1](batch))
    return torch.where(saturation_first, saturation_hue, hue_saturation)


def adjust_saturation_batch(batch: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend each image with its grey version, as F.adjust_saturation does for one factor."""
    grey = F.rgb_to_grayscale(batch)
    return (batch * factors + grey * (1 - factors)).clamp_(0, 1)


def shift_hue_batch(batch: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Turn each image's hue by its own fraction of the colour circle, as F.adjust_hue does."""
    hue, saturation, value = rgb_to_hsv(batch)
    return hsv_to_rgb((hue + shifts) % 1.0, saturation, value)


def rgb_to_hsv(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue in [0, 1), saturation and value of float RGB images in [0, 1], each B×H×W."""
    red, green, blue = batch.unbind(-3)
    value, strongest = batch.max(-3)
    spread = value - batch.amin(-3)
    divisor = torch.where(spread > 0, spread, torch.ones_like(spread))
    sector = torch.where(
        strongest == 0,
        (green - blue) / divisor,
        torch.where(strongest == 1, (blue - red) / divisor + 2, (red - green) / divisor + 4),
    )
    hue = torch.where(spread > 0, sector / 6 % 1.0, torch.zeros_like(sector))
    saturation = spread / torch.where(value > 0, value, torch.ones_like(value))
    return hue, saturation, value


def hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Float RGB images B×3×H×W from hue, saturation and value maps B×H×W."""
    channels = []
    for offset in (5.0, 3.0, 1.0):  # red, green, blue
        k = (hue * 6 + offset) % 6
        ramp = torch.minimum(k, 4 - k).clamp_(0, 1)
        channels.append((value * (1 - saturation * ramp)).clamp_(0, 1))
    return torch.stack(channels, 1)


def random_flip(batch: torch.Tensor, draws: Draws, p: float) -> torch.Tensor:
    """RandomHorizontalFlip: each image mirrored left-right with probability p."""
    flip = per_image(draws.rand() < p, batch)
    return torch.where(flip, batch.flip(-1), batch)


def image_by_image(transform: v2.Transform, batch: torch.Tensor, draws: Draws) -> torch.Tensor:
    """Any other transform: applied to each float image in turn, drawing from its generator."""
    images = []
    for image, generator in zip(batch, draws.generators, strict=True):
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(generator.get_state())
            images.append(transform(image))
            generator.set_state(torch.get_rng_state())
    return torch.stack(images)
