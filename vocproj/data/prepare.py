"""Getting a profile's dataset onto disk, recording what it is, and opening its splits.

`prepare_data` fetches or generates the data where needed, settles the run's class list and
writes the run's record (`vocproj/artifacts.py`); every later stage opens its splits with
`read_split` / `open_split`, which read the dataset's own layout: a devkit tree (VOC, or a CVAT
export) or another export (`vocproj/data/layouts.py`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from vocproj.data import layouts
from vocproj.artifacts import RunFiles, RunRecord, write_record
from vocproj.data.cache import CachedVOCClassification
from vocproj.config import Profile
from vocproj.images import Normalisation, input_normalisation
from vocproj.data.transforms import PresetName, build_transform
from vocproj.data.voc import CLASSES, LabelledSplit, VOCClassification, check_voc_root, read_devkit_split


def prepare_data(profile: Profile, *, progress: bool = True) -> RunRecord:
    """Generate, find or fetch the profile's data if needed; record and return what it is."""
    if profile.settings.data.source == "export":  # read in place: scanned once, here
        export = scan_export(profile)
        data_dir = export.folder
    else:
        export, data_dir = None, fetch_data(profile, progress=progress)
    if export is not None and export.unreadable:
        path, reason = export.unreadable[0]
        more = f" (and {len(export.unreadable) - 1} more)" if len(export.unreadable) > 1 else ""
        warnings.warn(
            f"{profile.profile}: annotation {path} {reason}: left out with its image{more}; "
            "`python -m vocproj init-profile` lists them all",
            UserWarning, stacklevel=2,
        )  # fmt: skip
    classes = run_classes(profile, export)
    splits = [read_split(profile, name, classes, export) for name in split_names(profile)]
    for warning in layouts.class_warnings(splits):
        warnings.warn(f"{profile.profile}: {warning}", UserWarning, stacklevel=2)
    settings = profile.settings
    record = RunRecord(
        profile=profile.profile,
        classes=classes,
        backbone=settings.model.backbone,
        normalisation=input_normalisation(settings.model.backbone),
        image_size=settings.train.image_size,
        source=settings.data.source,
        layout="devkit" if export is None else export.layout,
        data_dir=str(data_dir),
        splits={split.name: len(split.ids) for split in splits},
        split_lists=str(profile.splits_dir) if profile.splits_dir.is_dir() else None,
    )
    write_record(RunFiles.of(profile), record)
    return record


def fetch_data(profile: Profile, *, progress: bool = True) -> Path:
    """Generate, find or fetch a VOC source's data if needed; return its devkit tree."""
    data = profile.settings.data
    if data.source == "sample":
        from vocproj.data.sample import write_sample_dataset

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
    from vocproj.data.download import fetch_voc, fetch_voc2007_subset, subset_ids

    if data.source == "voc2007-real":
        return fetch_voc2007_subset(profile.data_root, subset_ids(data.source), progress=progress)
    return fetch_voc(profile.data_root, data.year, progress=progress)


def scan_export(profile: Profile) -> layouts.Export:
    """What the profile's export holds (source: export), read in place."""
    return layouts.scan_export(profile.export_dir, profile.settings.data.layout)


def split_names(profile: Profile) -> tuple[str, str]:
    data = profile.settings.data
    return data.train_split, data.val_split


def run_classes(profile: Profile, export: layouts.Export | None = None) -> tuple[str, ...]:
    """The run's class list: the profile's, the dataset's, or the 20 VOC classes."""
    data = profile.settings.data
    if data.source == "export":
        return layouts.resolve_classes(data.classes, export or scan_export(profile))
    if data.classes == "dataset":
        return layouts.dataset_classes(layouts.scan_export(profile.voc_root, "devkit"))
    return CLASSES if data.classes == "voc" else tuple(data.classes)


def read_split(
    profile: Profile,
    split: str,
    classes: Sequence[str],
    export: layouts.Export | None = None,
) -> LabelledSplit:
    """The split's ids, image paths and labels over `classes`, from the dataset's layout.

    An export without the profile's two splits gets them drawn (and written to
    `profile.splits_dir`) the same way every time.
    """
    data = profile.settings.data
    if data.source != "export":
        return read_devkit_split(check_voc_root(profile.voc_root), split, classes)
    splits = layouts.train_val_splits(
        export or scan_export(profile),
        data.train_split,
        data.val_split,
        data.val_fraction,
        profile.settings.seed,
        profile.splits_dir,
        classes,
        images_without_xml=data.images_without_xml,
    )
    return layouts.labelled_split(split, splits[split], classes)


def open_split(
    profile: Profile,
    split: str,
    preset: PresetName,
    *,
    classes: Sequence[str] | None = None,
    normalisation: Normalisation | None = None,
    cache: bool | None = None,
    progress: bool = True,
) -> VOCClassification:
    """The split's Dataset over `classes` (the run's) with the preset's transform.

    Images are normalised as the profile's backbone expects unless `normalisation` is given
    (a checkpoint's record of it). With the image cache (the profile's `data.cache` unless
    `cache` says otherwise) the images are read from `profile.cache_dir`, which is first built
    or brought up to date with a progress bar; items are the same either way.
    """
    settings = profile.settings
    labelled = read_split(profile, split, run_classes(profile) if classes is None else classes)
    size, difficult = settings.train.image_size, settings.data.difficult
    normalisation = normalisation or input_normalisation(settings.model.backbone)
    if settings.data.cache if cache is None else cache:
        return CachedVOCClassification(
            labelled, preset, size, profile.cache_dir, augment=settings.augment,
            difficult=difficult, normalisation=normalisation, progress=progress,
        )  # fmt: skip
    transform = build_transform(preset, size, settings.augment, normalisation)
    return VOCClassification(labelled, transform, difficult=difficult)
