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
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

from vocproj.artifacts import (
    METRIC_FIGURES,
    PER_CLASS_AP_FIGURE,
    PR_CURVES_FIGURE,
    RELIABILITY_FIGURE,
    RELIABILITY_PER_CLASS_FIGURE,
    THRESHOLD_SWEEP_FIGURE,
)
from vocproj.errors import VocprojError
from vocproj.io import atomic_write_bytes
from vocproj.metrics.multilabel import (
    Scores,
    precision_envelope,
    precision_recall_points,
    voc_ap,
)

PHASE_BOUNDARY_GID = "phase-boundary"
DPI = 150  # figure files
SHOWN_DPI = 90  # figures as notebooks show them (an executed notebook stays well under 1 MB)
JPEG_QUALITY = 75
WIDTH_IN = 8.0
HISTORY_KEYS = ("phase", "epoch", "train_loss", "val_loss")

PathLike = str | os.PathLike[str]

# Class-indexed figures were laid out for the 20 VOC classes; a dataset may have 2 to 100.
# Up to 20 classes their fonts keep the 20-class size; beyond, fonts shrink linearly to 60 %
# of it at 100 classes (never under 5 pt), and every class row is 1.5 label sizes tall.
LAYOUT_CLASSES = 20
CROWDED_CLASSES = 100
CROWDED_FONT_SCALE = 0.6
MIN_FONT_PT = 5.0
ROW_PITCH = 1.5
POINTS_PER_INCH = 72
TICK_PT = 10.0  # matplotlib's default tick label size
SMALL_PT = 8.33  # matplotlib's "small" at its default 10 pt
CELL_COUNT_PT = 6.5
MAX_COUNTED_CLASSES = 30  # above this the co-occurrence cells are too small for numbers
MIN_GRID_COLUMNS, MAX_GRID_COLUMNS = 3, 10
PR_PANEL_IN, PR_ROW_IN = 1.6, 1.7  # PR panel width and row height with 5 columns of 8 in
MIN_PR_PANEL_IN = 1.25
TITLE_LINE_SPACING = 1.2  # matplotlib's default line spacing
PROBABILITY_CHART_SIZE_IN = (3.9, 4.6)
PROBABILITY_CHART_DPI = 100
PROBABILITY_TICK_PT = 8.0
THRESHOLD_MARK_AREA = 120


def class_fontsize(n_classes: int, base_pt: float) -> float:
    """`base_pt` up to 20 classes, shrinking linearly to 60 % of it at 100; never under 5 pt."""
    crowding = (n_classes - LAYOUT_CLASSES) / (CROWDED_CLASSES - LAYOUT_CLASSES)
    scale = 1 - (1 - CROWDED_FONT_SCALE) * min(1.0, max(0.0, crowding))
    return max(MIN_FONT_PT, base_pt * scale)


def rows_height(n_rows: int, base_height_in: float, base_pt: float) -> float:
    """Figure height (inches) for `n_rows` class rows labelled at `class_fontsize(n_rows, base_pt)`.

    It is `base_height_in` at 20 rows; each row more (or fewer) adds (or removes) its pitch of
    1.5 label sizes, so the rows never get closer than their labels are tall.
    """
    extra = n_rows * _row_pitch_in(n_rows, base_pt)
    return base_height_in + (extra - LAYOUT_CLASSES * _row_pitch_in(LAYOUT_CLASSES, base_pt))


def _row_pitch_in(n_rows: int, base_pt: float) -> float:
    return ROW_PITCH * class_fontsize(n_rows, base_pt) / POINTS_PER_INCH


def png_bytes(fig: Figure, dpi: float = DPI) -> bytes:
    """Render `fig` to PNG in memory (no metadata that varies)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def jpeg_bytes(fig: Figure, dpi: float = SHOWN_DPI, quality: int = JPEG_QUALITY) -> bytes:
    """Render `fig` to JPEG in memory: grids of photos (PNG stores them at several MB), written
    as notebooks show them."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=dpi, pil_kwargs={"quality": quality, "optimize": True})
    return buffer.getvalue()


def save_figure(fig: Figure, path: PathLike) -> None:
    """Render `fig` to PNG in memory, then write it atomically."""
    atomic_write_bytes(path, png_bytes(fig))


def new_figure(
    height_in: float, width_in: float = WIDTH_IN, dpi: float = SHOWN_DPI, **subplots: Any
) -> tuple[Figure, Any]:
    """A pyplot-free Figure on an Agg canvas with its subplots (the house size; shown at `dpi`,
    written at DPI by `save_figure`)."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
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
    fig, ax = new_figure(rows_height(len(classes), 6.5, TICK_PT))
    rows = np.arange(len(classes))
    ax.barh(rows, np.nan_to_num(ap), color="tab:blue")
    for row, value in zip(rows, ap, strict=True):
        text = "no positives" if math.isnan(value) else f"{value:.3f}"
        ax.text(
            np.nan_to_num(value) + 0.01,
            row,
            text,
            va="center",
            fontsize=class_fontsize(len(classes), SMALL_PT),
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5},
        )
    if metrics["map"] is not None:
        ax.axvline(metrics["map"], color="tab:red", label=f"mAP {metrics['map']:.3f}")
        fig.legend(loc="outside lower center")
    ax.set_yticks(rows, classes, fontsize=class_fontsize(len(classes), TICK_PT))
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
    """Precision–recall curve of every class in one grid, AP area shaded, difficult excluded.

    About √n columns (3 to 10) of panels at least 1.25 in wide; long class names wrap in the
    panel titles, and the figure grows by a row height per row and a line per title line.
    """
    n_classes = len(scores.classes)
    n_columns = grid_columns(n_classes)
    n_rows = math.ceil(n_classes / n_columns)
    width_in = max(WIDTH_IN, n_columns * MIN_PR_PANEL_IN)
    panel_in = width_in / n_columns
    title_pt = class_fontsize(n_classes, SMALL_PT)
    aps = [voc_ap(scores.scores[:, c], scores.labels[:, c]) for c in range(n_classes)]
    titles = [
        _pr_title(name, ap, 0.9 * panel_in * POINTS_PER_INCH, title_pt)
        for name, ap in zip(scores.classes, aps, strict=True)
    ]
    fig, axes = _panel_grid(n_rows, n_columns, width_in, titles, title_pt, margin_in=0.6)
    for c, ax in enumerate(axes.flat):
        if c < n_classes:
            _draw_pr_curve(ax, scores.scores[:, c], scores.labels[:, c], aps[c])
            ax.set_title(titles[c], fontsize=title_pt)
            ax.tick_params(labelsize=class_fontsize(n_classes, TICK_PT))
        else:
            ax.set_axis_off()
    for ax in _lowest_panels(axes, n_classes):
        ax.set_xlabel("recall")
        ax.tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    fig.suptitle("Precision–recall per class (fractions; shaded area = VOC AP)")
    fig.get_layout_engine().set(wspace=0.04)
    return finish_figure(fig, path)


def _panel_grid(
    n_rows: int,
    n_columns: int,
    width_in: float,
    titles: Sequence[str],
    title_pt: float,
    margin_in: float,
) -> tuple[Figure, np.ndarray]:
    """A grid of square unit panels sharing both axes, rows as tall as their titles need."""
    panel_in = width_in / n_columns
    fig, axes = new_figure(
        n_rows * _pr_row_height_in(panel_in, titles, title_pt) + margin_in,
        width_in,
        nrows=n_rows,
        ncols=n_columns,
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    _set_pr_scales(axes[0, 0])
    return fig, axes


def grid_columns(n_panels: int) -> int:
    """Columns of a grid of `n_panels` panels: about √n, at least 3 and at most 10."""
    return min(MAX_GRID_COLUMNS, max(MIN_GRID_COLUMNS, math.ceil(math.sqrt(n_panels))))


def _lowest_panels(axes: np.ndarray, n_panels: int) -> list[Axes]:
    """The lowest used panel of each column of a grid filled row by row with `n_panels`."""
    n_columns = axes.shape[1]
    used_columns = range(min(n_columns, n_panels))
    return [axes[(n_panels - 1 - column) // n_columns, column] for column in used_columns]


def _pr_row_height_in(panel_in: float, titles: Sequence[str], title_pt: float) -> float:
    """1.7 in per row of 1.6 in wide panels, scaled with the width, plus any wrapped title lines."""
    extra_lines = max(title.count("\n") for title in titles)
    wrapped_in = extra_lines * TITLE_LINE_SPACING * title_pt / POINTS_PER_INCH
    return PR_ROW_IN * (panel_in / PR_PANEL_IN) + wrapped_in


def _pr_title(name: str, ap: float, budget_pt: float, fontsize: float) -> str:
    """'name  AP 0.123' (or 'name: no positives') on one line when it fits `budget_pt`.

    Otherwise the name is wrapped over as few lines of even length as fit, above the AP.
    """
    separator, detail = (": ", "no positives") if math.isnan(ap) else ("  ", f"AP {ap:.3f}")
    return _panel_title(name, separator, detail, budget_pt, fontsize)


def _text_width_pt(text: str, fontsize: float) -> float:
    prop = FontProperties(size=fontsize)
    return text_to_path.get_text_width_height_descent(text, prop, ismath=False)[0]


def _set_pr_scales(ax: Axes) -> None:
    """Limits and ticks of one panel, which every panel of the grid shares."""
    ax.set(xlim=(0.0, 1.0), ylim=(0.0, 1.05))
    ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
    ax.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])


def _draw_pr_curve(ax: Axes, scores_1d: np.ndarray, labels_1d: np.ndarray, ap: float) -> None:
    ax.grid(alpha=0.3)
    if math.isnan(ap):
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


# ---------------------------------------------------------------- data exploration


def plot_label_frequency(
    labels: np.ndarray, classes: Sequence[str], path: PathLike | None = None
) -> Figure:
    """Images per class: present (label 1) with difficult-only (label -1) stacked after it."""
    present = (labels == 1).sum(axis=0)
    difficult = (labels == -1).sum(axis=0)
    rows = np.arange(len(classes))
    fig, ax = new_figure(rows_height(len(classes), 6.5, TICK_PT))
    ax.barh(rows, present, color="tab:blue", label="present (label 1)")
    ax.barh(rows, difficult, left=present, color="tab:orange", label="difficult only (label -1)")
    value_pt = class_fontsize(len(classes), SMALL_PT)
    for row, total in zip(rows, present + difficult, strict=True):
        ax.text(total, row, f" {total}", va="center", fontsize=value_pt)
    ax.set_yticks(rows, classes, fontsize=class_fontsize(len(classes), TICK_PT))
    ax.invert_yaxis()
    ax.set_xlim(0, max(1, int((present + difficult).max())) * 1.12)
    ax.set(title="Images per class", xlabel="images (count)", ylabel="class")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2)
    return finish_figure(fig, path)


def plot_cooccurrence(
    labels: np.ndarray, classes: Sequence[str], path: PathLike | None = None
) -> Figure:
    """Images holding both classes (label 1); the diagonal, in grey, counts each class alone.

    The cells hold their counts up to 30 classes; with more, only the colour tells them.
    """
    n_classes = len(classes)
    present = (labels == 1).astype(np.int64)
    counts = present.T @ present
    diagonal = np.eye(n_classes, dtype=bool)
    grow_in = max(0.0, rows_height(n_classes, 7.5, TICK_PT) - 7.5)
    fig, ax = new_figure(7.5 + grow_in, WIDTH_IN + grow_in)
    fig.set_layout_engine("compressed")  # constrained layout misplaces fixed-aspect axes
    ax.imshow(diagonal, cmap="Greys", vmin=0, vmax=4)
    image = ax.imshow(np.ma.masked_array(counts, mask=diagonal), cmap="viridis")
    title = "Label co-occurrence: images with both classes present\n"
    if n_classes <= MAX_COUNTED_CLASSES:
        _write_cell_counts(ax, counts, class_fontsize(n_classes, CELL_COUNT_PT))
        title += "(grey diagonal: images with the class)"
    else:
        title += (
            f"(grey diagonal: images with the class; no counts written for {n_classes} classes)"
        )
    ticks = np.arange(n_classes)
    tick_pt = class_fontsize(n_classes, TICK_PT)
    ax.set_xticks(ticks, classes, rotation=90, fontsize=tick_pt)
    ax.set_yticks(ticks, classes, fontsize=tick_pt)
    ax.set_title(title)
    ax.set(xlabel="class", ylabel="class")
    fig.colorbar(image, ax=ax, shrink=0.8, label="images (count)")
    return finish_figure(fig, path)


def _write_cell_counts(ax: Axes, counts: np.ndarray, fontsize: float) -> None:
    """Each cell's count, black on the grey diagonal and the bright cells, else white."""
    diagonal = np.eye(len(counts), dtype=bool)
    threshold = 0.6 * np.where(diagonal, 0, counts).max()
    for (row, col), count in np.ndenumerate(counts):
        color = "black" if row == col or count > threshold else "white"
        ax.text(col, row, str(count), ha="center", va="center", fontsize=fontsize, color=color)


# ---------------------------------------------------------------- image browser


def plot_probabilities(
    probabilities: np.ndarray, thresholds: np.ndarray, classes: Sequence[str]
) -> Figure:
    """One image's probability per class as bars, blue where they pass their threshold.

    One shared threshold is a dashed line; per-class thresholds are a mark on each row.
    """
    n_classes = len(classes)
    tick_pt = class_fontsize(n_classes, PROBABILITY_TICK_PT)
    width_in, height_in = PROBABILITY_CHART_SIZE_IN
    fig, ax = new_figure(
        rows_height(n_classes, height_in, PROBABILITY_TICK_PT), width_in, PROBABILITY_CHART_DPI
    )
    rows = np.arange(n_classes)
    passed = probabilities >= thresholds
    ax.barh(rows, probabilities, color=np.where(passed, "#1f77b4", "#c5cbd3"), height=0.7)
    if np.all(thresholds == thresholds[0]):
        ax.axvline(thresholds[0], color="#d62728", linestyle="--", linewidth=1.2)
        title = f"threshold {thresholds[0]:.2f}"
    else:
        mark_area = THRESHOLD_MARK_AREA * (tick_pt / PROBABILITY_TICK_PT) ** 2
        ax.scatter(thresholds, rows, marker="|", s=mark_area, color="#d62728", linewidths=1.6)
        title = "per-class thresholds"
    ax.set_yticks(rows, classes, fontsize=tick_pt)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"All {n_classes} classes ({title})", fontsize=9, color="#d62728")
    ax.grid(axis="x", alpha=0.3)
    return fig


def probability_chart_png(
    probabilities: np.ndarray, thresholds: np.ndarray, classes: Sequence[str]
) -> bytes:
    """`plot_probabilities` as PNG bytes, for the image browser's prediction tab."""
    return png_bytes(plot_probabilities(probabilities, thresholds, classes), PROBABILITY_CHART_DPI)


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


# ---------------------------------------------------------------- calibration

CURVE_STYLES = {  # calibration.json's variants: raw, after one temperature, after per-class ones
    "before": {"color": "0.35", "marker": "o"},
    "single": {"color": "tab:blue", "marker": "s"},
    "per_class": {"color": "tab:orange", "marker": "^"},
}
DIAGONAL_STYLE = {"color": "0.6", "linestyle": "--", "linewidth": 1}


def plot_reliability(calibration: Mapping[str, Any], path: PathLike | None = None) -> Figure:
    """Pooled reliability diagram of calibration.json, before and after temperature scaling.

    Observed frequency of positives against mean probability per bin, all classes' non-difficult
    entries pooled; below, the entries per bin on a log scale. The "after" curves apply the
    temperatures fitted on all val images to those images (in-sample); the legend gives each
    curve's ECE there and its cross-fitted held-out ECE.
    """
    fig, (ax, counts_ax) = new_figure(
        6.5, nrows=2, sharex=True, gridspec_kw={"height_ratios": (3, 1)}
    )
    ax.plot([0, 1], [0, 1], **DIAGONAL_STYLE, label="perfect calibration")
    single_t = calibration["temperature"]["single"]["all_val"]
    names = {
        "before": "raw probabilities",
        "single": f"single temperature T = {single_t:.2f}",
        "per_class": "per-class temperatures",
    }
    for variant, name in names.items():
        bins = _pooled_bins(calibration, variant)
        held_out = calibration["pooled"]["held_out"]["ece"][variant]
        label = f"{name}: ECE {_ece_text(bins['ece'])} (held-out {_ece_text(held_out)})"
        _draw_bins(ax, bins, variant, label, markersize=4)
        counts = [entry["count"] for entry in bins["bins"]]
        counts_ax.stairs(counts, _bin_edges(bins["bins"]), color=CURVE_STYLES[variant]["color"])
    ax.set(
        title="Reliability, all classes pooled (difficult excluded)\n"
        "after: temperatures fitted on all val images, applied to them (in-sample)",
        ylabel="observed frequency of positives",
        xlim=(0.0, 1.0),
        ylim=(0.0, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    counts_ax.set_yscale("log")
    counts_ax.set(xlabel="mean predicted probability in the bin", ylabel="entries (count)")
    counts_ax.grid(alpha=0.3)
    return finish_figure(fig, path)


def plot_reliability_per_class(
    calibration: Mapping[str, Any], path: PathLike | None = None
) -> Figure:
    """One reliability panel per class of calibration.json: before and after its temperature.

    The "after" curve applies the class's temperature fitted on all val images to those images
    (in-sample); each title gives the ECE before → after. The grid is laid out as in
    `plot_pr_curves`, for 2 to 100 classes.
    """
    classes = calibration["classes"]
    n_classes = len(classes)
    n_columns = grid_columns(n_classes)
    n_rows = math.ceil(n_classes / n_columns)
    width_in = max(WIDTH_IN, n_columns * MIN_PR_PANEL_IN)
    panel_in = width_in / n_columns
    title_pt, tick_pt = class_fontsize(n_classes, SMALL_PT), class_fontsize(n_classes, TICK_PT)
    panels = [
        (calibration["per_class"][name], calibration["after_temperature"]["per_class"][name])
        for name in classes
    ]
    titles = [
        _reliability_title(name, before, after, 0.9 * panel_in * POINTS_PER_INCH, title_pt)
        for name, (before, after) in zip(classes, panels, strict=True)
    ]
    fig, axes = _panel_grid(n_rows, n_columns, width_in, titles, title_pt, margin_in=0.9)
    for c, ax in enumerate(axes.flat):
        if c < n_classes:
            _draw_reliability_panel(ax, *panels[c])
            ax.set_title(titles[c], fontsize=title_pt)
            ax.tick_params(labelsize=tick_pt)
        else:
            ax.set_axis_off()
    for ax in _lowest_panels(axes, n_classes):
        ax.set_xlabel("mean probability", fontsize=tick_pt)
        ax.tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("frequency", fontsize=tick_pt)
    fig.suptitle(
        "Reliability per class (difficult excluded; title: ECE before → after)\n"
        "after: the class's temperature fitted on all val images, applied to them (in-sample)"
    )
    fig.legend(handles=axes[0, 0].lines, loc="outside lower center", ncols=3, fontsize="small")
    fig.get_layout_engine().set(wspace=0.04)
    return finish_figure(fig, path)


def _pooled_bins(calibration: Mapping[str, Any], variant: str) -> Mapping[str, Any]:
    """The pooled {"ece", "bins", …} of a variant: raw ("before") or after a temperature."""
    if variant == "before":
        return calibration["pooled"]
    return calibration["after_temperature"]["pooled"][variant]


def _draw_reliability_panel(ax: Axes, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    ax.grid(alpha=0.3)
    ax.plot([0, 1], [0, 1], **DIAGONAL_STYLE, label="perfect calibration")
    _draw_bins(ax, before, "before", "raw probabilities", markersize=2.5)
    _draw_bins(ax, after, "per_class", "after the class's temperature", markersize=2.5)


def _draw_bins(
    ax: Axes, bins: Mapping[str, Any], variant: str, label: str, markersize: float
) -> None:
    """Frequency against mean probability of the non-empty bins, in the variant's style."""
    filled = [entry for entry in bins["bins"] if entry["count"] > 0]
    ax.plot(
        [entry["mean_probability"] for entry in filled],
        [entry["frequency"] for entry in filled],
        **CURVE_STYLES[variant],
        markersize=markersize,
        linewidth=1.2,
        label=label,
    )


def _bin_edges(bins: Sequence[Mapping[str, Any]]) -> list[float]:
    return [bins[0]["lower"], *(entry["upper"] for entry in bins)]


def _ece_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _reliability_title(
    name: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    budget_pt: float,
    fontsize: float,
) -> str:
    """'name  ECE 0.123 → 0.045' (or 'name: no entries'), the name wrapped when it is too wide."""
    if before["ece"] is None:
        return _panel_title(name, ": ", "no entries", budget_pt, fontsize)
    detail = f"ECE {_ece_text(before['ece'])} → {_ece_text(after['ece'])}"
    return _panel_title(name, "  ", detail, budget_pt, fontsize)


def _panel_title(name: str, separator: str, detail: str, budget_pt: float, fontsize: float) -> str:
    """`name + separator + detail` on one line when it fits `budget_pt`.

    Otherwise the name is wrapped over as few lines of even length as fit, above `detail`.
    """
    one_line = f"{name}{separator}{detail}"
    if _text_width_pt(one_line, fontsize) <= budget_pt:
        return one_line
    n_lines = math.ceil(_text_width_pt(name, fontsize) / budget_pt)
    return "\n".join([*textwrap.wrap(name, math.ceil(len(name) / n_lines)), detail])


def write_calibration_figures(calibration: Mapping[str, Any], folder: PathLike) -> None:
    """The pooled and per-class reliability diagrams of calibration.json into `folder`."""
    plot_reliability(calibration, Path(folder) / RELIABILITY_FIGURE)
    plot_reliability_per_class(calibration, Path(folder) / RELIABILITY_PER_CLASS_FIGURE)
