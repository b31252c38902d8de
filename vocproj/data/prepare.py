"""The data stage: a profile's data prepared once, and every later stage reading what it wrote.

`prepare_data` fetches, generates or finds the data, settles the run's class list, resolves
each split through the dataset's own layout (a devkit tree, VOC's or a CVAT export's, or
another export: `vocproj/data/layouts.py`), writes it to `runs/<profile>/splits/<split>.csv`,
builds the image cache, and writes the run's record (`vocproj/artifacts.py`) with the settings
it ran with. `make report` runs it in notebook 00, and `python -m vocproj data` alone.

Training, evaluation, the browser and export then open the splits with `read_split` /
`open_split`, which read those files (and the cache) without scanning the dataset again;
`prepared` runs the stage first when it has not run for the profile's current settings.
After changing the photos or annotations themselves, run the data stage again.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from vocproj.artifacts import RunFiles, RunRecord, RunRecordError, read_record, write_record
from vocproj.config import Profile
from vocproj.data import layouts
from vocproj.data.cache import CachedVOCClassification, ensure_cache
from vocproj.data.transforms import PresetName, build_transform
from vocproj.data.voc import (
    CLASSES,
    LabelledSplit,
    VOCClassification,
    check_voc_root,
    read_devkit_split,
)
from vocproj.errors import DatasetError
from vocproj.images import Normalisation, input_normalisation
from vocproj.io import atomic_write_text
from vocproj.locks import owning

SPLIT_LIST_COLUMNS = ("id", "image", "annotation")  # then one column per class: 1, 0 or -1


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def prepare_data(profile: Profile, *, progress: bool = True) -> RunRecord:
    """Generate, find or fetch the profile's data; write its splits, cache and record.

    The data folder is this stage's alone meanwhile: a second data stage on it stops at once
    (or waits, with VOCPROJ_WAIT=1) rather than build the same cache beside it.
    """
    with owning_data_folder(profile):
        return prepare_data_here(profile, progress)


def owning_data_folder(profile: Profile) -> AbstractContextManager[None]:
    """The data folder's lock where the stage writes there (the sample, a download, the cache)."""
    data = profile.settings.data
    if data.cache or data.source not in ("local", "export"):
        return owning(profile.data_root, "the data stage")
    return nullcontext()  # a tree read in place, without a cache: nothing is written there


def prepare_data_here(profile: Profile, progress: bool) -> RunRecord:
    export, data_dir = find_data(profile, progress)
    classes = run_classes(profile, export)
    splits = [resolve_split(profile, name, classes, export) for name in split_names(profile)]
    for warning in layouts.class_warnings(splits):
        warnings.warn(f"{profile.profile}: {warning}", UserWarning, stacklevel=2)
    files = RunFiles.of(profile)
    for split in splits:
        write_split_list(files.split_list(split.name), split)
    if profile.settings.data.cache:
        for split in splits:
            cache_split(profile, split, progress)
    record = new_record(profile, classes, export, data_dir, splits)
    write_record(files, record)
    return record


def prepared(profile: Profile, *, progress: bool = True) -> RunRecord:
    """The run's record as the data stage wrote it, running the stage first if it has not run
    with the profile's current settings (or its data or split lists are gone)."""
    files = RunFiles.of(profile)
    try:
        record = read_record(files)
    except RunRecordError:
        return prepare_data(profile, progress=progress)
    lists = [files.split_list(name) for name in split_names(profile)]
    current = record.prepared_with == preparation_settings(profile)
    if not current or not Path(record.data_dir).is_dir() or not all(p.is_file() for p in lists):
        return prepare_data(profile, progress=progress)
    return record


def preparation_settings(profile: Profile) -> dict[str, Any]:
    """What the data stage's output depends on: the data section and where it points, the seed,
    the backbone and the input size."""
    settings = profile.settings
    export = settings.data.source == "export"
    return {
        "data": settings.data.model_dump(mode="json"),
        "folder": str(profile.export_dir if export else profile.voc_root),
        "seed": settings.seed,
        "backbone": settings.model.backbone,
        "image_size": settings.train.image_size,
    }


def find_data(profile: Profile, progress: bool) -> tuple[layouts.Export | None, Path]:
    """(the export, scanned once, or None for a devkit tree; the data's folder)."""
    if profile.settings.data.source != "export":
        return None, fetch_data(profile, progress=progress)
    export = scan_export(profile)
    if export.unreadable:
        path, reason = export.unreadable[0]
        more = f" (and {len(export.unreadable) - 1} more)" if len(export.unreadable) > 1 else ""
        warnings.warn(
            f"{profile.profile}: annotation {path} {reason}: left out with its image{more}; "
            "`python -m vocproj init-profile` lists them all",
            UserWarning, stacklevel=3,
        )  # fmt: skip
    return export, export.folder


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


def resolve_split(
    profile: Profile,
    split: str,
    classes: Sequence[str],
    export: layouts.Export | None = None,
) -> LabelledSplit:
    """The split's ids, image paths and labels over `classes`, read from the dataset's layout.

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


def cache_split(profile: Profile, split: LabelledSplit, progress: bool) -> None:
    """Decode and resize the split's images into the cache, unless it is current already."""
    size = profile.settings.train.image_size
    ensure_cache(VOCClassification(split), size, profile.cache_dir, progress=progress)


def new_record(
    profile: Profile,
    classes: tuple[str, ...],
    export: layouts.Export | None,
    data_dir: Path,
    splits: Sequence[LabelledSplit],
) -> RunRecord:
    settings = profile.settings
    return RunRecord(
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
        prepared_with=preparation_settings(profile),
    )


# ---------------------------------------------------------------------------------------------
# The split lists
# ---------------------------------------------------------------------------------------------


def write_split_list(path: Path, split: LabelledSplit) -> None:
    """The split as CSV: id, image, annotation (empty for none), then a label per class."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([*SPLIT_LIST_COLUMNS, *split.classes])
    for image_id, image, annotation, labels in zip(
        split.ids, split.image_paths, split.annotation_paths, split.labels, strict=True
    ):
        writer.writerow([image_id, image, annotation or "", *labels.tolist()])
    atomic_write_text(path, text.getvalue())


def read_split_list(path: Path, name: str, profile: str) -> LabelledSplit:
    """A split list written by `write_split_list`; a DatasetError naming the file if it is not."""
    fix = f"run `python -m vocproj data --profile {profile}` (or notebook 00) to write it again"
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        header, body = rows[0], rows[1:]
        if tuple(header[: len(SPLIT_LIST_COLUMNS)]) != SPLIT_LIST_COLUMNS:
            raise ValueError(f"its header starts {header[:3]}, not {list(SPLIT_LIST_COLUMNS)}")
        labels = np.array([row[len(SPLIT_LIST_COLUMNS) :] for row in body], dtype=np.int8)
        return LabelledSplit(
            name=name,
            classes=tuple(header[len(SPLIT_LIST_COLUMNS) :]),
            ids=[row[0] for row in body],
            image_paths=[Path(row[1]) for row in body],
            annotation_paths=[Path(row[2]) if row[2] else None for row in body],
            labels=labels.reshape(len(body), len(header) - len(SPLIT_LIST_COLUMNS)),
        )
    except (OSError, UnicodeDecodeError, IndexError, ValueError) as err:
        raise DatasetError(f"the split list {path} cannot be read ({err}); {fix}.") from None


def over_classes(split: LabelledSplit, classes: Sequence[str], path: Path) -> LabelledSplit:
    """The split's labels for `classes`, in that order (each must be one of the split's)."""
    if tuple(classes) == split.classes:
        return split
    missing = [name for name in classes if name not in split.classes]
    if missing:
        raise DatasetError(
            f"the split list {path} has no labels for {', '.join(missing)}: the data stage ran "
            f"with other classes; run `python -m vocproj data` for this profile again."
        )
    columns = [split.classes.index(name) for name in classes]
    return LabelledSplit(
        split.name, tuple(classes), split.ids, split.image_paths, split.annotation_paths,
        split.labels[:, columns],
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# What later stages open
# ---------------------------------------------------------------------------------------------


def read_split(profile: Profile, split: str, classes: Sequence[str] | None = None) -> LabelledSplit:
    """The split as the data stage last wrote it, over `classes` (the run's by default).

    The stage runs first only where it has not written the list (a run older than split lists).
    A split other than the profile's train and val (`evaluate --split test`, say) is read from
    the dataset's layout when asked.
    """
    if split not in split_names(profile):
        record = prepared(profile, progress=False)
        return resolve_split(profile, split, record.classes if classes is None else classes)
    path = RunFiles.of(profile).split_list(split)
    if not path.is_file():
        prepared(profile, progress=False)
    labelled = read_split_list(path, split, profile.profile)
    return labelled if classes is None else over_classes(labelled, classes, path)


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
    `cache` says otherwise) the images are read from `profile.cache_dir`, which the data stage
    built (and which is brought up to date if an image changed since); items are the same
    either way.
    """
    settings = profile.settings
    labelled = read_split(profile, split, classes)
    size, difficult = settings.train.image_size, settings.data.difficult
    normalisation = normalisation or input_normalisation(settings.model.backbone)
    if settings.data.cache if cache is None else cache:
        return CachedVOCClassification(
            labelled, preset, size, profile.cache_dir, augment=settings.augment,
            difficult=difficult, normalisation=normalisation, progress=progress,
        )  # fmt: skip
    transform = build_transform(preset, size, settings.augment, normalisation)
    return VOCClassification(labelled, transform, difficult=difficult)
