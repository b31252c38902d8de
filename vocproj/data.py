"""Getting a profile's dataset onto disk and opening its splits with the right preset."""

from __future__ import annotations

from pathlib import Path

from vocproj.cache import CachedVOCClassification
from vocproj.config import Profile
from vocproj.transforms import PresetName, build_transform
from vocproj.voc import VOCClassification, check_voc_root


def prepare_data(profile: Profile, *, progress: bool = True) -> Path:
    """Generate (sample) or fetch (voc2012) the profile's data if needed; return the VOC2012 dir."""
    data = profile.settings.data
    if data.source == "sample":
        from vocproj.sample import write_sample_dataset

        return write_sample_dataset(
            profile.data_root,
            seed=profile.settings.seed,
            n_train=data.sample_train_images,
            n_val=data.sample_val_images,
            progress=progress,
        )
    from vocproj.download import fetch_voc2012

    return fetch_voc2012(profile.data_root, progress=progress)


def open_split(
    profile: Profile,
    split: str,
    preset: PresetName,
    *,
    cache: bool | None = None,
    progress: bool = True,
) -> VOCClassification:
    """The split's Dataset with the preset's transform at the profile's image size.

    With the image cache (the profile's `data.cache` unless `cache` says otherwise) the images
    are read from `profile.cache_dir`, which is first built or brought up to date with a
    progress bar; items are the same either way.
    """
    settings = profile.settings
    root = check_voc_root(profile.voc_root)
    size, difficult = settings.train.image_size, settings.data.difficult
    if settings.data.cache if cache is None else cache:
        return CachedVOCClassification(
            root, split, preset, size, profile.cache_dir,
            augment=settings.augment, difficult=difficult, progress=progress,
        )  # fmt: skip
    transform = build_transform(preset, size, settings.augment)
    return VOCClassification(root, split, transform, difficult=difficult)
