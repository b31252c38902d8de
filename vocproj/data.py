"""Getting a profile's dataset onto disk and opening its splits with the right preset."""

from __future__ import annotations

from pathlib import Path

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


def open_split(profile: Profile, split: str, preset: PresetName) -> VOCClassification:
    """The split's Dataset with the preset's transform at the profile's image size."""
    settings = profile.settings
    transform = build_transform(preset, settings.train.image_size, settings.augment)
    return VOCClassification(
        check_voc_root(profile.voc_root), split, transform, difficult=settings.data.difficult
    )
