"""The image cache: the same tensors as decoding, rebuilt when stale, never used half-built;
the preset augmentations run batched on uint8 batches with the presets' ranges."""

from __future__ import annotations

import colorsys
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from vocproj.config import PARAMS_DIR, AugmentSettings, Profile, profile_from_mapping
from vocproj.data.cache import (
    BatchAugment,
    CachedVOCClassification,
    adjust_saturation_batch,
    cache_files,
    decoded_images,
    rotate_batch,
    shift_hue_batch,
)
from vocproj.data.prepare import open_split
from vocproj.data.transforms import augmentations, build_transform, denormalise
from vocproj.data.voc import CLASSES, VOCClassification, open_devkit_split, read_devkit_split
from vocproj.errors import DatasetError
from vocproj.model.network import build_model
from vocproj.training.batches import loader
from vocproj.training.phases import state_for_model, train_one_epoch
from vocproj.training.runtime import Runtime

SIZE = 32
PRESETS = ("eval", "resize_crop", "rotate", "jitter_flip")
CPU = Runtime(torch.device("cpu"), None, channels_last=True, num_workers=0)
CPU_AS_ACCELERATOR = Runtime(torch.device("cpu"), None, True, 0, augment_on_device=True)


@pytest.fixture
def voc(tmp_path: Path, small_sample: Path) -> Path:
    """A private copy of the small sample tree, free to be changed by the test."""
    return Path(shutil.copytree(small_sample, tmp_path / "VOCdevkit" / "VOC2012"))


def cached(voc: Path, split: str = "val", preset: str = "eval", size: int = SIZE):
    labelled = read_devkit_split(voc, split)
    return CachedVOCClassification(labelled, preset, size, voc.parents[1] / "cache", progress=False)


def decoded(voc: Path, split: str = "val", preset: str = "eval", size: int = SIZE):
    return open_devkit_split(voc, split, build_transform(preset, size))


def seeded_item(dataset: VOCClassification, index: int) -> tuple:
    torch.manual_seed(index)
    return dataset[index]


def assert_same_items(a: VOCClassification, b: VOCClassification) -> None:
    """Item by item equal, each read with the same random state."""
    assert a.ids == b.ids and len(a) == len(b)
    for index in range(len(a)):
        image_a, target_a, mask_a, id_a = seeded_item(a, index)
        image_b, target_b, mask_b, id_b = seeded_item(b, index)
        assert torch.equal(image_a, image_b), f"image {id_a} differs"
        assert torch.equal(target_a, target_b) and torch.equal(mask_a, mask_b) and id_a == id_b


def epoch_batches(dataset: VOCClassification, runtime: Runtime, seed: int | None) -> list:
    torch.manual_seed(0)
    return list(loader(dataset, 16, runtime, seed))


def sample_profile(voc: Path) -> Profile:
    raw = yaml.safe_load((PARAMS_DIR / "sample.yaml").read_text())
    raw["settings"]["data"]["root"] = str(voc.parents[1])
    raw["settings"]["train"]["image_size"] = SIZE
    return profile_from_mapping(raw)


def stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns


def rewrite_image(voc: Path, image_id: str) -> None:
    """Give an image new content: its colours inverted."""
    path = voc / "JPEGImages" / f"{image_id}.jpg"
    with Image.open(path) as image:
        inverted = Image.eval(image.convert("RGB"), lambda value: 255 - value)
    inverted.save(path, quality=95)


# --- the same tensors as the decoding path -------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_cached_items_are_bit_identical_to_decoded_ones(voc: Path, preset: str):
    assert_same_items(cached(voc, "train", preset), decoded(voc, "train", preset))


@pytest.mark.parametrize("preset", PRESETS)
def test_cached_training_batches_on_the_cpu_are_bit_identical_to_decoded_ones(
    voc: Path, preset: str
):
    expected = epoch_batches(decoded(voc, "train", preset), CPU, seed=7)
    found = epoch_batches(cached(voc, "train", preset), CPU, seed=7)
    assert len(found) == len(expected) == 64 // 16
    for (x, target, mask, ids), (x_ref, target_ref, mask_ref, ids_ref) in zip(
        found, expected, strict=True
    ):
        assert x.dtype == torch.float32 and torch.equal(x, x_ref)
        assert torch.equal(target, target_ref) and torch.equal(mask, mask_ref) and ids == ids_ref


@pytest.mark.parametrize("runtime", [CPU, CPU_AS_ACCELERATOR], ids=["cpu", "on-device"])
def test_cached_eval_batches_are_bit_identical_on_both_paths(voc: Path, runtime: Runtime):
    reference = decoded(voc)
    batches = epoch_batches(cached(voc), runtime, seed=None)
    images = torch.cat([x for x, *_ in batches])
    assert torch.equal(images, torch.stack([reference[i][0] for i in range(len(reference))]))
    assert [i for *_, ids in batches for i in ids] == reference.ids


def test_on_device_augmentation_is_seeded_per_epoch(voc: Path):
    dataset = cached(voc, "train", "jitter_flip")
    first, again, other = (
        torch.cat([x for x, *_ in epoch_batches(dataset, CPU_AS_ACCELERATOR, seed)])
        for seed in (3, 3, 4)
    )
    assert first.shape == (64, 3, SIZE, SIZE) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("preset", ["rotate", "jitter_flip"])
def test_an_epoch_trained_from_the_cache_equals_one_trained_from_jpegs(voc: Path, preset: str):
    profile = sample_profile(voc)
    results = []
    for dataset in (cached(voc, "train", preset), decoded(voc, "train", preset)):
        torch.manual_seed(0)
        state = state_for_model(
            profile, 1, CPU, build_model("resnet18", "none", len(CLASSES)), CLASSES
        )
        torch.manual_seed(1)
        batches = loader(dataset, 16, CPU, seed=1)
        loss, _ = train_one_epoch(state, state.model, batches, CPU, "test", True)
        results.append((loss, state.model.state_dict()))
    (loss, weights), (expected_loss, expected_weights) = results
    assert loss == expected_loss
    assert all(torch.equal(weights[key], expected_weights[key]) for key in weights)


def test_the_epoch_order_does_not_depend_on_the_progress_bar(voc: Path):
    dataset = decoded(voc, "train", "resize_crop")
    plain = [ids for *_, ids in loader(dataset, 16, CPU, seed=1)]
    with_bar = [ids for *_, ids in tqdm(loader(dataset, 16, CPU, seed=1), disable=True)]
    assert with_bar == plain


def test_open_split_uses_the_profile_cache_setting(voc: Path):
    profile = sample_profile(voc)
    dataset = open_split(profile, "val", "eval", progress=False)
    assert isinstance(dataset, CachedVOCClassification)
    assert dataset.cache_file == cache_files(profile.cache_dir, "val", SIZE)[0]
    plain = open_split(profile, "val", "eval", cache=False)
    assert type(plain) is VOCClassification
    assert_same_items(dataset, plain)


# --- reuse and invalidation --------------------------------------------------------------------


def test_a_current_cache_is_reused(voc: Path):
    array, manifest = cached(voc).cache_file, cache_files(voc.parents[1] / "cache", "val", SIZE)[1]
    before = stamp(array), stamp(manifest)
    cached(voc)
    assert (stamp(array), stamp(manifest)) == before


def test_a_changed_image_rebuilds_the_cache(voc: Path):
    first = cached(voc)
    old = first[3][0]
    rewrite_image(voc, first.ids[3])
    again = cached(voc)
    assert not torch.equal(again[3][0], old)
    assert_same_items(again, decoded(voc))


def test_a_changed_id_list_rebuilds_the_cache(voc: Path):
    first = cached(voc)
    kept = first.ids[::3]
    (voc / "ImageSets" / "Main" / "val.txt").write_text("".join(f"{i}\n" for i in kept))
    again = cached(voc)
    assert again.ids == kept and again.images.shape == (len(kept), SIZE, SIZE, 3)
    assert_same_items(again, decoded(voc))


def test_each_size_and_split_has_its_own_cache(voc: Path):
    small, large, train = cached(voc, size=SIZE), cached(voc, size=48), cached(voc, "train")
    assert len({small.cache_file, large.cache_file, train.cache_file}) == 3
    assert small.images.shape[1:] == (SIZE, SIZE, 3) and large.images.shape[1:] == (48, 48, 3)
    assert_same_items(large, decoded(voc, size=48))
    assert_same_items(train, decoded(voc, "train"))


# --- interrupted builds --------------------------------------------------------------------------


def test_a_build_that_fails_midway_leaves_no_usable_cache(voc: Path):
    first = cached(voc)
    manifest = cache_files(voc.parents[1] / "cache", "val", SIZE)[1]
    broken = voc / "JPEGImages" / f"{first.ids[20]}.jpg"
    good_bytes = broken.read_bytes()
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=rf"image {broken} cannot be read"):
        cached(voc)
    assert not manifest.exists(), "the old manifest must not vouch for a changed array"
    assert not list(manifest.parent.glob(".*.tmp")), "the temporary array must be removed"
    broken.write_bytes(good_bytes)
    assert_same_items(cached(voc), decoded(voc))


def test_parallel_decoding_gives_the_same_images_and_clear_errors(voc: Path):
    paths = sorted((voc / "JPEGImages").glob("*.jpg"))[:40]
    alone = list(decoded_images(paths, SIZE, processes=1))
    together = list(decoded_images(paths, SIZE, processes=2))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    paths[30].write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=rf"image {paths[30]} cannot be read"):
        list(decoded_images(paths, SIZE, processes=2))


STALL_MIDWAY = """
import sys, time
from pathlib import Path
import vocproj.data.cache as cache
from vocproj.data.voc import read_devkit_split

decode, calls = cache.decode_for_cache, []

def decode_then_stall(path, size):
    calls.append(path)
    if len(calls) == 10:
        print("midway", flush=True)
        time.sleep(600)
    return decode(path, size)

cache.decode_for_cache = decode_then_stall
cache.CachedVOCClassification(read_devkit_split(Path(sys.argv[1]), "val"), "eval", int(sys.argv[2]),
                              Path(sys.argv[3]), progress=False)
"""


def test_a_build_killed_midway_is_rebuilt_on_next_use(voc: Path):
    cache_dir = voc.parents[1] / "cache"
    first = cached(voc)
    rewrite_image(voc, first.ids[0])
    command = [sys.executable, "-c", STALL_MIDWAY, str(voc), str(SIZE), str(cache_dir)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as builder:
        assert builder.stdout is not None and builder.stdout.readline() == "midway\n"
        builder.send_signal(signal.SIGKILL)
    assert builder.wait() == -signal.SIGKILL
    array, manifest = cache_files(cache_dir, "val", SIZE)
    assert not manifest.exists()
    assert list(cache_dir.glob(f".{array.name}.*.tmp")), "the killed build left its temp file"
    assert_same_items(cached(voc), decoded(voc))
    assert not list(cache_dir.glob(".*.tmp")), "the next build removes the leftover"


# --- batched augmentation ------------------------------------------------------------------------


def bar_images(count: int, size: int = 64) -> torch.Tensor:
    """uint8 images of a white horizontal bar through the centre of a black square."""
    images = torch.zeros(count, 3, size, size, dtype=torch.uint8)
    images[:, :, size // 2 - 2 : size // 2 + 2, 8 : size - 8] = 255
    return images


def bar_angle(image: torch.Tensor) -> float:
    """Angle in degrees of the bright bar of a normalised image, from its principal axis."""
    ys, xs = torch.nonzero(denormalise(image).mean(0) > 0.5, as_tuple=True)
    coords = torch.stack([xs.float() - xs.float().mean(), ys.float() - ys.float().mean()])
    x, y = torch.linalg.eigh(coords @ coords.T)[1][:, -1].tolist()
    return (math.degrees(math.atan2(y, x)) + 90) % 180 - 90


def random_images(count: int = 6, size: int = 40) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, 3, size, size), generator=generator, dtype=torch.uint8)


def test_batched_rotation_equals_torchvision_rotate_for_each_angle():
    images = random_images().float() / 255
    angles = torch.tensor([-10.0, -7.3, -0.5, 0.0, 4.2, 10.0])
    rotated = rotate_batch(images, angles)
    for image, angle, result in zip(images, angles.tolist(), rotated, strict=True):
        assert torch.equal(result, F.rotate(image, angle))


@pytest.mark.parametrize("preset", ["rotate", "jitter_flip"])
def test_batched_augmentation_draws_what_each_image_draws_from_its_seed(preset: str):
    """Image i with seed s_i: the batch gets the parameters torchvision draws for one image
    with torch's generator seeded with s_i (the rotation, the jitter's order and factors, the
    flip), so the batched and the per-item paths agree image by image."""
    settings = AugmentSettings(phase3_keeps_rotation=True, hue=0.3, saturation=0.6)
    randomness = augmentations(preset, settings)
    images = random_images(12, size=24)
    seeds = [1000 + 7 * index for index in range(len(images))]
    batched = BatchAugment(randomness)(images, seeds)
    expected = []
    for image, seed in zip(images, seeds, strict=True):
        torch.manual_seed(seed)
        expected.append(v2.Compose(randomness)(image.float() / 255))
    normalise = BatchAugment([]).normalise
    assert torch.allclose(batched, normalise(torch.stack(expected)), atol=1e-4)
    order = [1, 0, *range(2, len(images))]  # the same images and seeds in another order
    again = BatchAugment(randomness)(images[order], [seeds[i] for i in order])
    assert torch.equal(again, batched[order])


def test_batched_saturation_and_hue_equal_torchvision_for_each_factor():
    images = random_images().float() / 255
    factors = torch.tensor([0.0, 0.5, 0.95, 1.0, 1.05, 2.0])
    shifts = torch.tensor([-0.5, -0.05, 0.0, 0.01, 0.05, 0.3])
    saturated = adjust_saturation_batch(images, factors.view(-1, 1, 1, 1))
    turned = shift_hue_batch(images, shifts.view(-1, 1, 1))
    for index, image in enumerate(images):
        expected = F.adjust_saturation(image, factors[index].item())
        assert torch.allclose(saturated[index], expected, atol=1e-6)
        assert torch.allclose(turned[index], F.adjust_hue(image, shifts[index].item()), atol=1e-5)


def test_the_rotate_preset_turns_each_image_within_ten_degrees():
    augment = BatchAugment(augmentations("rotate", AugmentSettings()))
    torch.manual_seed(0)
    angles = [bar_angle(image) for image in augment(bar_images(60))]
    assert max(abs(a) for a in angles) <= 10.5
    assert max(angles) > 6 and min(angles) < -6
    assert len({round(a, 1) for a in angles}) > 30, "each image gets its own angle"


def hue(rgb: torch.Tensor) -> float:
    return colorsys.rgb_to_hsv(*(rgb / 255).tolist())[0]


def test_the_jitter_flip_preset_shifts_hue_at_most_005_and_flips_about_half():
    images = torch.zeros(40, 3, 64, 64, dtype=torch.uint8)
    images[:, :, :, :32] = torch.tensor([200, 80, 40], dtype=torch.uint8).view(3, 1, 1)
    reference = hue(images[0, :, 32, 16])
    augment = BatchAugment(augmentations("jitter_flip", AugmentSettings()))
    torch.manual_seed(0)
    out = (denormalise(augment(images)) * 255).round()
    flipped = out[:, :, :, 48].sum((1, 2)) > out[:, :, :, 16].sum((1, 2))
    shifts = []
    for image, flip in zip(out, flipped, strict=True):
        shift = abs(hue(image[:, 32, 48 if flip else 16]) - reference)
        shifts.append(min(shift, 1 - shift))
    assert 10 <= int(flipped.sum()) <= 30
    assert max(shifts) <= 0.05 + 0.01 and max(shifts) > 0.02
    assert len({round(s, 3) for s in shifts}) > 10, "each image gets its own jitter"


def test_a_transform_without_a_batched_form_runs_image_by_image():
    images = random_images()
    out = BatchAugment([v2.RandomVerticalFlip(p=1.0)])(images)
    plain = BatchAugment([])(images)
    assert torch.equal(out, plain.flip(-2))


def test_batched_augmentation_repeats_with_the_seed():
    augment = BatchAugment(
        augmentations("jitter_flip", AugmentSettings(phase3_keeps_rotation=True))
    )
    images = random_images(8)
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(augment(images))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
