"""Every report figure, as PNG files with the same bytes for the same inputs.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, never through pyplot, so
importing this module does not touch the notebook's backend or pyplot's figure list. Each
function returns its Figure (a notebook can display it) and writes it atomically when given a
path. PNG metadata holds no software version or time stamp.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vocproj.errors import VocprojError
from vocproj.io import atomic_write_bytes
from vocproj.metrics import (
    Scores,
    precision_envelope,
    precision_recall_points,
    voc_ap,
)

THRESHOLD_SWEEP_FIGURE = "threshold_sweep.png"
PER_CLASS_AP_FIGURE = "per_class_ap.png"
PR_CURVES_FIGURE = "pr_curves.png"
METRIC_FIGURES = (THRESHOLD_SWEEP_FIGURE, PER_CLASS_AP_FIGURE, PR_CURVES_FIGURE)
PHASE_BOUNDARY_GID = "phase-boundary"
DPI = 150
WIDTH_IN = 8.0
HISTORY_KEYS = ("phase", "epoch", "train_loss", "val_loss")
GRID_COLUMNS = 5

PathLike = str | os.PathLike[str]


def save_figure(fig: Figure, path: PathLike) -> None:
    """Render `fig` to PNG in memory, then write it atomically (no metadata that varies)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


def new_figure(height_in: float, width_in: float = WIDTH_IN, **subplots: Any) -> tuple[Figure, Any]:
    """A pyplot-free Figure on an Agg canvas with its subplots (the house size and dpi)."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**subplots)


def finish_figure(fig: Figure, path: PathLike | None) -> Figure:
    """Save `fig` to `path` when one is given; return it for display."""
    if path is not None:
        save_figure(fig, path)
    return fig


def _number(value: Any) -> float:
    """A float from a number, a numeric string, or None / '' (NaN: not recorded)."""
    return float("nan") if value is None or value == "" else float(value)


# ---------------------------------------------------------------- training


def plot_loss_history(history: Iterable[Mapping[str, Any]], path: PathLike | None = None) -> Figure:
    """Training and validation loss over all epochs of all phases, phases marked.

    `history` holds one mapping per epoch in training order with keys phase, epoch,
    train_loss and val_loss (e.g. rows of history.csv from csv.DictReader); the x axis
    numbers the epochs 1, 2, … across phases.
    """
    records = _checked_history(history)
    phases = [str(record["phase"]) for record in records]
    epochs = np.arange(1, len(records) + 1)
    fig, ax = new_figure(4.5)
    ax.plot(epochs, [_number(r["train_loss"]) for r in records], marker="o", label="training")
    ax.plot(epochs, [_number(r["val_loss"]) for r in records], marker="s", label="validation")
    spans = _phase_spans(phases)
    for _, _, last in spans[:-1]:
        ax.axvline(last + 0.5, color="0.4", linestyle="--", linewidth=1, gid=PHASE_BOUNDARY_GID)
    top = ax.secondary_xaxis("top")
    top.set_xticks([(first + last) / 2 for _, first, last in spans])
    top.set_xticklabels([_phase_label(name) for name, _, _ in spans])
    top.tick_params(length=0)
    ax.set_xlim(0.5, len(records) + 0.5)
    ax.set(title="Training and validation loss", xlabel="epoch", ylabel="loss (BCE)")
    ax.grid(alpha=0.3)
    ax.legend()
    return finish_figure(fig, path)


def _checked_history(history: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    records = list(history)
    if not records:
        raise VocprojError("The loss history is empty; train at least one epoch before plotting.")
    for index, record in enumerate(records):
        missing = [key for key in HISTORY_KEYS if key not in record]
        if missing:
            raise VocprojError(
                f"Loss history row {index} lacks {', '.join(missing)}; each row needs "
                f"{', '.join(HISTORY_KEYS)} (the columns of history.csv)."
            )
    return records


def _phase_spans(phases: Sequence[str]) -> list[tuple[str, int, int]]:
    """(phase, first epoch, last epoch) for each run of equal consecutive phases, 1-based."""
    spans: list[tuple[str, int, int]] = []
    for epoch, phase in enumerate(phases, start=1):
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], epoch)
        else:
            spans.append((phase, epoch, epoch))
    return spans


def _phase_label(phase: str) -> str:
    return f"phase {phase}" if phase.isdigit() else phase


# ---------------------------------------------------------------- metrics


def plot_threshold_sweep(metrics: Mapping[str, Any], path: PathLike | None = None) -> Figure:
    """Macro precision (both conventions), recall and F1 against the decision threshold."""
    thresholds = metrics["thresholds"]
    sweep = {key: [_number(v) for v in values] for key, values in metrics["sweep"].items()}
    fig, ax = new_figure(5.0)
    ax.plot(thresholds, sweep["precision_zero"], marker="o", label="precision (no prediction = 0)")
    ax.plot(
        thresholds,
        sweep["precision_skip"],
        marker="o",
        linestyle="--",
        label="precision (no prediction = left out)",
    )
    ax.plot(thresholds, sweep["recall"], marker="s", label="recall")
    ax.plot(thresholds, sweep["f1"], marker="^", linewidth=2.5, label="F1")
    best = metrics["best_threshold_f1"]
    if best is not None:
        ax.axvline(
            best["threshold"],
            color="0.3",
            linestyle=":",
            label=f"best macro F1 {best['macro_f1']:.3f} at {best['threshold']:.2f}",
        )
    study = metrics["study"]
    ax.plot(
        study["threshold"],
        study["best_precision"],
        marker="*",
        markersize=16,
        linestyle="none",
        color="black",
        label=f"study: precision {study['best_precision']:.4f} at {study['threshold']:.2f}",
    )
    ax.set(
        title="Macro-averaged metrics against the decision threshold",
        xlabel="threshold (probability)",
        ylabel="precision / recall / F1 (fraction)",
        xlim=(-0.02, 1.0),
        ylim=(0.0, 1.02),
    )
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    return finish_figure(fig, path)


def plot_per_class_ap(metrics: Mapping[str, Any], path: PathLike | None = None) -> Figure:
    """Horizontal AP bar per class, the mAP as a vertical line."""
    classes = metrics["classes"]
    ap = [_number(metrics["ap"][name]) for name in classes]
    fig, ax = new_figure(6.5)
    rows = np.arange(len(classes))
    ax.barh(rows, np.nan_to_num(ap), color="tab:blue")
    for row, value in zip(rows, ap, strict=True):
        text = "no positives" if math.isnan(value) else f"{value:.3f}"
        ax.text(
            np.nan_to_num(value) + 0.01,
            row,
            text,
            va="center",
            fontsize="small",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5},
        )
    if metrics["map"] is not None:
        ax.axvline(metrics["map"], color="tab:red", label=f"mAP {metrics['map']:.3f}")
        fig.legend(loc="outside lower center")
    ax.set_yticks(rows, classes)
    ax.invert_yaxis()
    ax.set(
        title="Average precision per class (VOC2010+ AP, difficult excluded)",
        xlabel="average precision (fraction)",
        ylabel="class",
        xlim=(0.0, 1.1),
    )
    ax.grid(axis="x", alpha=0.3)
    return finish_figure(fig, path)


def plot_pr_curves(scores: Scores, path: PathLike | None = None) -> Figure:
    """Precision–recall curve of every class in one grid, AP area shaded, difficult excluded."""
    n_rows = math.ceil(len(scores.classes) / GRID_COLUMNS)
    fig, axes = new_figure(
        1.7 * n_rows + 0.6,
        nrows=n_rows,
        ncols=GRID_COLUMNS,
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for c, ax in enumerate(axes.flat):
        if c < len(scores.classes):
            _draw_pr_curve(ax, scores.scores[:, c], scores.labels[:, c], scores.classes[c])
        else:
            ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("recall")
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    fig.suptitle("Precision–recall per class (fractions; shaded area = VOC AP)")
    fig.get_layout_engine().set(wspace=0.04)
    return finish_figure(fig, path)


def _draw_pr_curve(ax: Axes, scores_1d: np.ndarray, labels_1d: np.ndarray, name: str) -> None:
    ap = voc_ap(scores_1d, labels_1d)
    ax.set(xlim=(0.0, 1.0), ylim=(0.0, 1.05))
    ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
    ax.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
    ax.grid(alpha=0.3)
    if math.isnan(ap):
        ax.set_title(f"{name}: no positives", fontsize="small")
        return
    recall, precision = precision_recall_points(scores_1d, labels_1d)
    step_recall, step_precision = precision_envelope(recall, precision)
    ax.fill_between(
        np.concatenate([[0.0], step_recall]),
        np.concatenate([step_precision[:1], step_precision]),
        step="pre",
        alpha=0.25,
        color="tab:blue",
    )
    ax.plot(recall, precision, color="tab:blue", linewidth=1)
    ax.set_title(f"{name}  AP {ap:.3f}", fontsize="small")


# ---------------------------------------------------------------- data exploration


def plot_label_frequency(
    labels: np.ndarray, classes: Sequence[str], path: PathLike | None = None
) -> Figure:
    """Images per class: present (label 1) with difficult-only (label -1) stacked after it."""
    present = (labels == 1).sum(axis=0)
    difficult = (labels == -1).sum(axis=0)
    rows = np.arange(len(classes))
    fig, ax = new_figure(6.5)
    ax.barh(rows, present, color="tab:blue", label="present (label 1)")
    ax.barh(rows, difficult, left=present, color="tab:orange", label="difficult only (label -1)")
    for row, total in zip(rows, present + difficult, strict=True):
        ax.text(total, row, f" {total}", va="center", fontsize="small")
    ax.set_yticks(rows, classes)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1, int((present + difficult).max())) * 1.12)
    ax.set(title="Images per class", xlabel="images (count)", ylabel="class")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2)
    return finish_figure(fig, path)


def plot_cooccurrence(
    labels: np.ndarray, classes: Sequence[str], path: PathLike | None = None
) -> Figure:
    """Images holding both classes (label 1); the diagonal, in grey, counts each class alone."""
    present = (labels == 1).astype(np.int64)
    counts = present.T @ present
    diagonal = np.eye(len(classes), dtype=bool)
    fig, ax = new_figure(7.5)
    ax.imshow(diagonal, cmap="Greys", vmin=0, vmax=4)
    image = ax.imshow(np.ma.masked_array(counts, mask=diagonal), cmap="viridis")
    threshold = 0.6 * np.where(diagonal, 0, counts).max()
    for (row, col), count in np.ndenumerate(counts):
        color = "black" if row == col or count > threshold else "white"
        ax.text(col, row, str(count), ha="center", va="center", fontsize=6.5, color=color)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=90)
    ax.set_yticks(ticks, classes)
    ax.set_title(
        "Label co-occurrence: images with both classes present\n"
        "(grey diagonal: images with the class)"
    )
    ax.set(xlabel="class", ylabel="class")
    fig.colorbar(image, ax=ax, shrink=0.8, label="images (count)")
    return finish_figure(fig, path)


# ---------------------------------------------------------------- report


def write_metric_figures(
    scores: Scores, metrics: Mapping[str, Any], figures_dir: PathLike
) -> list[Path]:
    """Write the metric figures (METRIC_FIGURES) into `figures_dir`; return their paths."""
    out = Path(figures_dir)
    plot_threshold_sweep(metrics, out / THRESHOLD_SWEEP_FIGURE)
    plot_per_class_ap(metrics, out / PER_CLASS_AP_FIGURE)
    plot_pr_curves(scores, out / PR_CURVES_FIGURE)
    return [out / name for name in METRIC_FIGURES]
