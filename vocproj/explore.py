"""Looking at the data: split statistics, example images, and each phase's augmentation.

Notebook 00 summarises the splits (`summarise_split`, `write_dataset_summary`, which REPORT.md
reads back) and draws the example grid, objects per image and image sizes; notebooks 01-03 show
their phase's augmentation on a few images (`plot_augmentation_preview`). Every figure function
returns its Figure and, given a path, writes it as a PNG with stable bytes (`plots.save_figure`).
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

from vocproj.config import Profile
from vocproj.errors import DatasetError
from vocproj.io import atomic_write_json
from vocproj.model import input_normalisation
from vocproj.plots import PathLike, finish_figure, new_figure
from vocproj.runtime import derived_seed
from vocproj.transforms import augmentations, build_transform, denormalise
from vocproj.voc import (
    CLASSES,
    DIFFICULT_ONLY,
    FIX_DATA_HINT,
    PRESENT,
    jpeg_path,
    labels_from_objects,
    open_rgb,
    parse_annotation,
    read_split_ids,
)

DATASET_FILE = "dataset.json"
LABEL_FREQUENCY_FIGURE = "label_frequency.png"
COOCCURRENCE_FIGURE = "cooccurrence.png"
OBJECTS_PER_IMAGE_FIGURE = "objects_per_image.png"
IMAGE_SIZES_FIGURE = "image_sizes.png"
EXAMPLES_FIGURE = "examples.png"
IMAGE_GRID_WIDTH_IN = 6.0  # image grids are narrower than charts: photos make large PNGs


def augmentation_figure(phase: int) -> str:
    """File name of phase `phase`'s augmentation preview (notebooks 01-03, REPORT.md)."""
    return f"augment_phase{phase}.png"


def loss_figure(phase: int) -> str:
    """File name of the loss curve drawn after phase `phase` (notebooks 01-03)."""
    return f"loss_phase{phase}.png"


# ---------------------------------------------------------------- split statistics


@dataclass(frozen=True, eq=False)
class SplitSummary:
    """Per-image facts of one split, in the order of its ImageSets/Main/<split>.txt."""

    split: str
    ids: list[str]
    labels: np.ndarray  # N×20 int8: 1 present, 0 absent, -1 difficult only
    objects: np.ndarray  # N: annotated objects per image, difficult ones included
    difficult_objects: np.ndarray  # N: of which marked difficult
    sizes: np.ndarray  # N×2: image width and height in pixels


def summarise_split(voc_root: PathLike, split: str) -> SplitSummary:
    """Read a split's annotations and image headers (no image is decoded)."""
    root = Path(voc_root)
    ids = read_split_ids(root, split)
    annotations = [parse_annotation(root / "Annotations" / f"{i}.xml") for i in ids]
    return SplitSummary(
        split=split,
        ids=ids,
        labels=np.stack([labels_from_objects(objects) for objects in annotations]),
        objects=np.array([len(objects) for objects in annotations]),
        difficult_objects=np.array([sum(d for _, d in objects) for objects in annotations]),
        sizes=np.array([image_size(jpeg_path(root, i)) for i in ids]),
    )


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
        "images_per_class": _per_class((summary.labels == PRESENT).sum(axis=0)),
        "difficult_only_per_class": _per_class((summary.labels == DIFFICULT_ONLY).sum(axis=0)),
    }


def _per_class(counts: np.ndarray) -> dict[str, int]:
    return {name: int(count) for name, count in zip(CLASSES, counts, strict=True)}


def write_dataset_summary(profile: Profile, summaries: Sequence[SplitSummary]) -> dict[str, Any]:
    """Write reports/<profile>/dataset.json (read back by REPORT.md); return its content."""
    summary = dataset_summary(summaries)
    atomic_write_json(profile.report_dir / DATASET_FILE, summary)
    return summary


def split_table(summaries: Sequence[SplitSummary]) -> str:
    """A markdown table of split sizes, objects and image sizes."""
    lines = [
        "| split | images | objects | difficult objects | labels per image | width (px) "
        "| height (px) |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for split, row in dataset_summary(summaries).items():
        lines.append(
            f"| {split} | {row['images']} | {row['objects']} | {row['difficult_objects']} "
            f"| {row['labels_per_image']:.2f} | {row['width'][0]}–{row['width'][1]} "
            f"| {row['height'][0]}–{row['height'][1]} |"
        )
    return "\n".join(lines)


def class_table(summaries: Sequence[SplitSummary]) -> str:
    """A markdown table of images per class and split (difficult-only images in brackets)."""
    stats = dataset_summary(summaries)
    header = " | ".join(f"{split} images" for split in stats)
    lines = [f"| class | {header} |", "|---|" + "---:|" * len(stats)]
    for name in CLASSES:
        cells = " | ".join(
            f"{row['images_per_class'][name]} ({row['difficult_only_per_class'][name]})"
            for row in stats.values()
        )
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


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


def label_text(labels_row: np.ndarray) -> str:
    """The classes of one label row, difficult-only ones marked with '?'."""
    flags = dict(zip(CLASSES, labels_row, strict=True))
    names = [name for name, flag in flags.items() if flag == PRESENT]
    names += [f"{name}?" for name, flag in flags.items() if flag == DIFFICULT_ONLY]
    return ", ".join(names) or "(no object)"


def plot_examples(
    voc_root: PathLike,
    summary: SplitSummary,
    count: int = 8,
    path: PathLike | None = None,
    columns: int = 4,
) -> Figure:
    """The split's first `count` images with their labels ('?': difficult only)."""
    shown = min(count, len(summary.ids))
    rows = math.ceil(shown / columns)
    fig, axes = new_figure(
        1.8 * rows + 0.4, IMAGE_GRID_WIDTH_IN, nrows=rows, ncols=columns, squeeze=False
    )
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < shown:
            image_id = summary.ids[index]
            ax.imshow(open_rgb(jpeg_path(voc_root, image_id)))
            ax.set_title(f"{image_id}\n{label_text(summary.labels[index])}", fontsize="small")
    fig.suptitle(f"Example images of the {summary.split} split with their labels")
    return finish_figure(fig, path)


def plot_augmentation_preview(
    profile: Profile,
    phase: int,
    path: PathLike | None = None,
    count: int = 2,
    draws: int = 3,
) -> Figure:
    """A few training images as the model sees them in phase `phase`.

    Each row is one image: the original, then `draws` random draws of the phase's transform
    (one when the phase has no randomness). The draws are seeded from the profile's seed.
    """
    settings = profile.settings
    preset = settings.train.phases[phase - 1].preset
    normalisation = input_normalisation(settings.model.backbone)
    transform = build_transform(preset, settings.train.image_size, settings.augment, normalisation)
    draws = draws if augmentations(preset, settings.augment) else 1
    voc_root = profile.voc_root
    ids = read_split_ids(voc_root, settings.data.train_split)[:count]
    fig, axes = new_figure(
        1.6 * len(ids) + 0.4, IMAGE_GRID_WIDTH_IN, nrows=len(ids), ncols=draws + 1, squeeze=False
    )
    with torch.random.fork_rng():
        torch.manual_seed(derived_seed(settings.seed, "preview", phase))
        for row, image_id in zip(axes, ids, strict=True):
            image = open_rgb(jpeg_path(voc_root, image_id))
            _show(row[0], np.asarray(image), f"{image_id} (original)")
            for draw, ax in enumerate(row[1:], start=1):
                tensor = denormalise(transform(image), normalisation)
                _show(ax, tensor.permute(1, 2, 0).numpy(), f"{preset} #{draw}")
    size = settings.train.image_size
    fig.suptitle(f"Phase {phase}: what the model sees ({preset}, {size}×{size} px)")
    return finish_figure(fig, path)


def _show(ax: Any, pixels: np.ndarray, title: str) -> None:
    ax.imshow(pixels)
    ax.set_title(title, fontsize="small")
    ax.set_axis_off()


def history_table(history: Sequence[Mapping[str, Any]], phase: int | None = None) -> str:
    """A markdown table of the epochs in a training history (one phase, or all)."""
    lines = [
        "| phase | epoch | preset | train loss | val loss | val mAP | seconds | images/s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in history:
        if phase is None or int(row["phase"]) == phase:
            lines.append(
                f"| {row['phase']} | {row['epoch']} | {row['preset']} "
                f"| {float(row['train_loss']):.4f} | {float(row['val_loss']):.4f} "
                f"| {float(row['val_map']):.4f} | {float(row['seconds']):.1f} "
                f"| {float(row['train_images_per_second']):.1f} |"
            )
    return "\n".join(lines)
