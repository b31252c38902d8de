"""Getting a profile's dataset onto disk and opening its splits with the right preset."""

from __future__ import annotations

from pathlib import Path

from vocproj.cache import CachedVOCClassification
from vocproj.config import Profile
from vocproj.model import input_normalisation
from vocproj.transforms import Normalisation, PresetName, build_transform
from vocproj.voc import VOCClassification, check_voc_root


def prepare_data(profile: Profile, *, progress: bool = True) -> Path:
    """Generate, find or fetch the profile's data if needed; return its VOC<year> tree."""
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
    in_place = profile.voc_root != profile.data_root / profile.devkit_subdir  # a preferred tree
    if data.source == "local" or in_place:
        return check_voc_root(profile.voc_root)
    from vocproj.download import fetch_voc, fetch_voc2007_subset, subset_ids

    if data.source == "voc2007-real":
        return fetch_voc2007_subset(profile.data_root, subset_ids(data.source), progress=progress)
    return fetch_voc(profile.data_root, data.year, progress=progress)


def open_split(
    profile: Profile,
    split: str,
    preset: PresetName,
    *,
    normalisation: Normalisation | None = None,
    cache: bool | None = None,
    progress: bool = True,
) -> VOCClassification:
    """The split's Dataset with the preset's transform at the profile's image size.

    Images are normalised as the profile's backbone expects unless `normalisation` is given
    (a checkpoint's record of it). With the image cache (the profile's `data.cache` unless
    `cache` says otherwise) the images are read from `profile.cache_dir`, which is first built
    or brought up to date with a progress bar; items are the same either way.
    """
    settings = profile.settings
    root = check_voc_root(profile.voc_root)
    size, difficult = settings.train.image_size, settings.data.difficult
    normalisation = normalisation or input_normalisation(settings.model.backbone)
    if settings.data.cache if cache is None else cache:
        return CachedVOCClassification(
            root, split, preset, size, profile.cache_dir, augment=settings.augment,
            difficult=difficult, normalisation=normalisation, progress=progress,
        )  # fmt: skip
    transform = build_transform(preset, size, settings.augment, normalisation)
    return VOCClassification(root, split, transform, difficult=difficult)
