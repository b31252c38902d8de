"""Looking at the data: split statistics, example images, and each phase's augmentation.

Notebook 00 summarises the splits (`summarise_split`, `write_dataset_summary`, which REPORT.md
reads back) and draws the example grid, objects per image and image sizes; notebooks 01-03 show
their phase's augmentation on a few images (`plot_augmentation_preview`); notebook 04 shows each
class's most confident mistakes (`plot_mistakes`, from mistakes.json). Every chart function
returns its Figure and, given a path, writes it as a PNG with stable bytes (`plots.save_figure`);
the grids of photos are drawn from thumbnails and kept as JPEG (`PhotoGrid`), which is what a
notebook shows of them too, so that neither the figures nor the executed notebooks grow to MBs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from vocproj.artifacts import RunFiles, RunRecord
from vocproj.config import Profile
from vocproj.data import layouts
from vocproj.data.prepare import prepared, read_split, split_names
from vocproj.data.transforms import augmentations, build_transform, denormalise
from vocproj.data.voc import (
    DIFFICULT_ONLY,
    FIX_DATA_HINT,
    PRESENT,
    LabelledSplit,
    open_rgb,
    read_annotation,
)
from vocproj.errors import DatasetError
from vocproj.io import atomic_write_bytes, atomic_write_json
from vocproj.reporting.plots import PathLike, finish_figure, jpeg_bytes, new_figure
from vocproj.reporting.report import markdown_table
from vocproj.training.runtime import derived_seed

IMAGE_GRID_WIDTH_IN = 6.0  # image grids are narrower than charts
THUMBNAIL_PX = 200  # a photo in a grid cell (about 140 px wide as saved) needs no more
MISTAKE_ROWS = 6  # classes shown in a mistakes grid (those whose worst mistake is worst)
MISTAKE_KINDS = {"false_positives": "most confident false positives", "missed": "most missed"}


# ---------------------------------------------------------------- grids of photos


@dataclass(frozen=True, eq=False, repr=False)
class PhotoGrid:
    """A figure of photos with its JPEG rendering, which notebooks display (`_repr_jpeg_`)."""

    figure: Figure
    jpeg: bytes

    def _repr_jpeg_(self) -> bytes:
        return self.jpeg

    def __repr__(self) -> str:
        return f"<PhotoGrid: {self.figure.get_suptitle()!r}, JPEG of {len(self.jpeg):,} bytes>"


def finish_photo_grid(fig: Figure, path: PathLike | None) -> PhotoGrid:
    """Render `fig` as JPEG, written atomically to `path` when one is given."""
    grid = PhotoGrid(fig, jpeg_bytes(fig))
    if path is not None:
        atomic_write_bytes(path, grid.jpeg)
    return grid


def thumbnail(path: PathLike) -> Image.Image:
    """The photo at `path` (RGB), shrunk to fit THUMBNAIL_PX for a grid cell."""
    return shrunk(open_rgb(path))


def shrunk(image: Image.Image) -> Image.Image:
    """A copy of `image` that fits THUMBNAIL_PX (the image itself is left as it is)."""
    small = image.copy()
    small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    return small


# ---------------------------------------------------------------- split statistics


@dataclass(frozen=True, eq=False)
class SplitSummary:
    """Per-image facts of one split, in the split's order."""

    labelled: LabelledSplit  # ids, image files, N×C int8 labels (1 present, 0, -1 difficult)
    objects: np.ndarray  # N: annotated objects per image, difficult ones included
    difficult_objects: np.ndarray  # N: of which marked difficult
    sizes: np.ndarray  # N×2: image width and height in pixels

    @property
    def split(self) -> str:
        return self.labelled.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.labelled.classes

    @property
    def ids(self) -> list[str]:
        return self.labelled.ids

    @property
    def labels(self) -> np.ndarray:
        return self.labelled.labels


def summarise_split(labelled: LabelledSplit) -> SplitSummary:
    """Read a split's annotations and image headers (no image is decoded)."""
    annotations = [
        [] if path is None else read_annotation(path).objects for path in labelled.annotation_paths
    ]
    return SplitSummary(
        labelled=labelled,
        objects=np.array([len(objects) for objects in annotations], dtype=np.int64),
        difficult_objects=np.array([sum(d for _, d in objects) for objects in annotations]),
        sizes=np.array([image_size(path) for path in labelled.image_paths]).reshape(-1, 2),
    )


def summarise_splits(profile: Profile, record: RunRecord) -> list[SplitSummary]:
    """The train and val splits' summaries over the run's classes."""
    return [
        summarise_split(read_split(profile, name, record.classes)) for name in split_names(profile)
    ]


def class_warnings(summaries: Sequence[SplitSummary]) -> list[str]:
    """A warning for each class without a positive image in a split (data.layouts' words)."""
    return layouts.class_warnings([summary.labelled for summary in summaries])


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image file's header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as err:
        raise DatasetError(f"image {path} cannot be read ({err}); {FIX_DATA_HINT}.") from None


def dataset_summary(summaries: Sequence[SplitSummary]) -> dict[str, Any]:
    """The splits' statistics as plain data (what dataset.json holds)."""
    return {summary.split: _split_json(summary) for summary in summaries}


def _split_json(summary: SplitSummary) -> dict[str, Any]:
    widths, heights = summary.sizes[:, 0], summary.sizes[:, 1]
    return {
        "images": len(summary.ids),
        "objects": int(summary.objects.sum()),
        "difficult_objects": int(summary.difficult_objects.sum()),
        "labels_per_image": float((summary.labels == PRESENT).sum(axis=1).mean()),
        "width": [int(widths.min()), int(widths.max())],
        "height": [int(heights.min()), int(heights.max())],
        "images_per_class": _per_class(summary, summary.labels == PRESENT),
        "difficult_only_per_class": _per_class(summary, summary.labels == DIFFICULT_ONLY),
    }


def _per_class(summary: SplitSummary, flags: np.ndarray) -> dict[str, int]:
    counts = flags.sum(axis=0)
    return {name: int(count) for name, count in zip(summary.classes, counts, strict=True)}


def write_dataset_summary(profile: Profile, summaries: Sequence[SplitSummary]) -> dict[str, Any]:
    """Write reports/<profile>/dataset.json (read back by REPORT.md); return its content."""
    summary = dataset_summary(summaries)
    atomic_write_json(RunFiles.of(profile).dataset_summary, summary)
    return summary


def split_table(summaries: Sequence[SplitSummary]) -> str:
    """A markdown table of split sizes, objects and image sizes."""
    headers = ["split", "images", "objects", "difficult objects", "labels per image",
               "width (px)", "height (px)"]  # fmt: skip
    rows = [
        [split, row["images"], row["objects"], row["difficult_objects"],
         f"{row['labels_per_image']:.2f}", f"{row['width'][0]}–{row['width'][1]}",
         f"{row['height'][0]}–{row['height'][1]}"]
        for split, row in dataset_summary(summaries).items()
    ]  # fmt: skip
    return markdown_table(headers, rows, align="lrrrrll")


def class_table(summaries: Sequence[SplitSummary]) -> str:
    """A markdown table of images per class and split (difficult-only images in brackets)."""
    stats = dataset_summary(summaries)
    rows = [
        [name, *(f"{row['images_per_class'][name]} ({row['difficult_only_per_class'][name]})"
                 for row in stats.values())]
        for name in summaries[0].classes
    ]  # fmt: skip
    return markdown_table(["class", *(f"{split} images" for split in stats)], rows)


# ---------------------------------------------------------------- figures


def plot_objects_per_image(
    summaries: Sequence[SplitSummary], path: PathLike | None = None
) -> Figure:
    """Share of each split's images by number of annotated objects."""
    fig, ax = new_figure(3.8)
    most = max(int(summary.objects.max()) for summary in summaries)
    counts = np.arange(0, most + 1)
    width = 0.8 / len(summaries)
    for index, summary in enumerate(summaries):
        share = np.bincount(summary.objects, minlength=most + 1) / len(summary.ids)
        offset = (index - (len(summaries) - 1) / 2) * width
        ax.bar(counts + offset, share, width=width, label=summary.split)
    ax.set_xticks(counts)
    ax.set(
        title="Objects per image (difficult ones included)",
        xlabel="annotated objects in the image (count)",
        ylabel="images (fraction of the split)",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return finish_figure(fig, path)


def plot_image_sizes(summaries: Sequence[SplitSummary], path: PathLike | None = None) -> Figure:
    """Width against height of every image, one colour per split."""
    fig, ax = new_figure(4.5)
    for summary in summaries:
        ax.scatter(summary.sizes[:, 0], summary.sizes[:, 1], s=8, alpha=0.5, label=summary.split)
    ax.set(title="Image sizes", xlabel="width (px)", ylabel="height (px)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.legend()
    return finish_figure(fig, path)


def label_text(labels_row: np.ndarray, classes: Sequence[str]) -> str:
    """The classes of one label row, difficult-only ones marked with '?'."""
    flags = dict(zip(classes, labels_row, strict=True))
    names = [name for name, flag in flags.items() if flag == PRESENT]
    names += [f"{name}?" for name, flag in flags.items() if flag == DIFFICULT_ONLY]
    return ", ".join(names) or "(no object)"


def plot_examples(
    summary: SplitSummary,
    count: int = 8,
    path: PathLike | None = None,
    columns: int = 4,
) -> PhotoGrid:
    """The split's first `count` images with their labels ('?': difficult only)."""
    shown = min(count, len(summary.ids))
    rows = math.ceil(shown / columns)
    fig, axes = new_figure(
        1.8 * rows + 0.4, IMAGE_GRID_WIDTH_IN, nrows=rows, ncols=columns, squeeze=False
    )
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < shown:
            ax.imshow(thumbnail(summary.labelled.image_paths[index]))
            labels = label_text(summary.labels[index], summary.classes)
            ax.set_title(f"{summary.ids[index]}\n{labels}", fontsize="small")
    fig.suptitle(f"Example images of the {summary.split} split with their labels")
    return finish_photo_grid(fig, path)


def plot_augmentation_preview(
    profile: Profile,
    phase: int,
    path: PathLike | None = None,
    count: int = 2,
    draws: int = 3,
) -> PhotoGrid:
    """A few training images as the model sees them in phase `phase`.

    Each row is one image: the original, then `draws` random draws of the phase's transform
    (one when the phase has no randomness). The draws are seeded from the profile's seed.
    """
    settings = profile.settings
    preset = settings.train.phases[phase - 1].preset
    record = prepared(profile, progress=False)
    normalisation = record.normalisation
    transform = build_transform(preset, settings.train.image_size, settings.augment, normalisation)
    draws = draws if augmentations(preset, settings.augment) else 1
    train = read_split(profile, settings.data.train_split, record.classes)
    ids, paths = train.ids[:count], train.image_paths[:count]
    fig, axes = new_figure(
        1.6 * len(ids) + 0.4, IMAGE_GRID_WIDTH_IN, nrows=len(ids), ncols=draws + 1, squeeze=False
    )
    with torch.random.fork_rng():
        torch.manual_seed(derived_seed(settings.seed, "preview", phase))
        for row, image_id, image_path in zip(axes, ids, paths, strict=True):
            image = open_rgb(image_path)
            _show(row[0], np.asarray(shrunk(image)), f"{image_id} (original)")
            for draw, ax in enumerate(row[1:], start=1):
                tensor = denormalise(transform(image), normalisation)
                _show(ax, tensor.permute(1, 2, 0).numpy(), f"{preset} #{draw}")
    size = settings.train.image_size
    fig.suptitle(f"Phase {phase}: what the model sees ({preset}, {size}×{size} px)")
    return finish_photo_grid(fig, path)


def _show(ax: Any, pixels: np.ndarray, title: str) -> None:
    ax.imshow(pixels)
    ax.set_title(title, fontsize="small")
    ax.set_axis_off()


def history_table(history: Sequence[Mapping[str, Any]], phase: int | None = None) -> str:
    """A markdown table of the epochs in a training history (one phase, or all)."""
    headers = ["phase", "epoch", "preset", "train loss", "val loss", "val mAP", "seconds",
               "images/s"]  # fmt: skip
    rows = [
        [row["phase"], row["epoch"], row["preset"], f"{float(row['train_loss']):.4f}",
         f"{float(row['val_loss']):.4f}", f"{float(row['val_map']):.4f}",
         f"{float(row['seconds']):.1f}", f"{float(row['train_images_per_second']):.1f}"]
        for row in history
        if phase is None or int(row["phase"]) == phase
    ]  # fmt: skip
    return markdown_table(headers, rows, align="rrlrrrrr")


# ---------------------------------------------------------------- the model's mistakes


def worst_classes(mistakes: Mapping[str, Any], kind: str, count: int) -> list[str]:
    """The `count` classes whose first entry of `kind` is the worst mistake, in class order."""
    lists = mistakes["classes"]
    with_entries = [name for name in lists if lists[name][kind]]

    def badness(name: str) -> float:
        score = lists[name][kind][0]["score"]
        return score if kind == "false_positives" else 1.0 - score

    chosen = set(sorted(with_entries, key=badness, reverse=True)[:count])
    return [name for name in with_entries if name in chosen]


def mistake_title(entry: Mapping[str, Any], name: str, kind: str) -> str:
    """`id  name 0.93` then what the image holds (false positive) or what was predicted."""
    if kind == "false_positives":
        detail = "holds: " + (", ".join(entry["labels"]) or "no class")
    else:
        detail = "predicted: " + (", ".join(entry["predicted"]) or "nothing")
    return f"{entry['id']}  {name} {entry['score']:.2f}\n{detail}"


def plot_mistakes(
    mistakes: Mapping[str, Any],
    image_paths: Mapping[str, Path],
    kind: str,
    path: PathLike | None = None,
    per_class: int = 4,
) -> PhotoGrid:
    """One row per class: its `per_class` most confident false positives or most missed images."""
    names = worst_classes(mistakes, kind, MISTAKE_ROWS)
    rows = max(1, len(names))
    fig, axes = new_figure(
        1.55 * rows + 0.5, IMAGE_GRID_WIDTH_IN, nrows=rows, ncols=per_class, squeeze=False
    )
    for ax in axes.flat:
        ax.set_axis_off()
    for row, name in enumerate(names):
        for column, entry in enumerate(mistakes["classes"][name][kind][:per_class]):
            ax = axes[row, column]
            ax.imshow(thumbnail(image_paths[entry["id"]]))
            ax.set_title(mistake_title(entry, name, kind), fontsize=6)
    shown = "" if len(names) == len(mistakes["classes"]) else f" ({len(names)} worst classes)"
    fig.suptitle(f"Each class's {MISTAKE_KINDS[kind]}{shown}")
    return finish_photo_grid(fig, path)
