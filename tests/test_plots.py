"""Report figures: valid PNGs, stable bytes, labelled axes, phase boundaries, no NaN crash."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from vocproj.artifacts import METRIC_FIGURES
from vocproj.data.voc import CLASSES
from vocproj.errors import VocprojError
from vocproj.metrics.multilabel import Scores, compute_metrics
from vocproj.reporting import plots

BOAT = CLASSES.index("boat")


@pytest.fixture(scope="module")
def scores() -> Scores:
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 20)) < 0.3).astype(np.int8)
    labels[rng.random((60, 20)) < 0.05] = -1
    labels[:, BOAT] = 0  # a class without positives
    probs = np.clip(0.3 * labels + 0.7 * rng.random((60, 20)), 0.0, 1.0)
    return Scores([f"img{i:03d}" for i in range(60)], probs, labels, list(CLASSES))


@pytest.fixture(scope="module")
def metrics(scores):
    return compute_metrics(scores)


def history(phases=(1, 2, 3), epochs=4):
    return [
        {"phase": phase, "epoch": epoch, "train_loss": 1 / (epoch + index), "val_loss": 0.5}
        for index, phase in enumerate(phases)
        for epoch in range(1, epochs + 1)
    ]


def figure_cases(scores, metrics):
    return {
        "loss": lambda path: plots.plot_loss_history(history(), path),
        "sweep": lambda path: plots.plot_threshold_sweep(metrics, path),
        "ap": lambda path: plots.plot_per_class_ap(metrics, path),
        "pr": lambda path: plots.plot_pr_curves(scores, path),
        "frequency": lambda path: plots.plot_label_frequency(scores.labels, CLASSES, path),
        "cooccurrence": lambda path: plots.plot_cooccurrence(scores.labels, CLASSES, path),
    }


@pytest.mark.parametrize("name", ["loss", "sweep", "ap", "pr", "frequency", "cooccurrence"])
def test_figure_is_a_stable_png(tmp_path, scores, metrics, name):
    draw = figure_cases(scores, metrics)[name]
    fig = draw(tmp_path / "first.png")
    draw(tmp_path / "second.png")
    assert isinstance(fig, Figure)
    with Image.open(tmp_path / "first.png") as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width == plots.WIDTH_IN * plots.DPI and 500 <= height <= 1500
    assert (tmp_path / "first.png").read_bytes() == (tmp_path / "second.png").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["first.png", "second.png"]


@pytest.mark.parametrize("name", ["loss", "sweep", "ap", "frequency", "cooccurrence"])
def test_single_axes_figures_have_title_and_axis_labels(scores, metrics, name):
    ax = figure_cases(scores, metrics)[name](None).axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_axis_labels_carry_units(scores, metrics):
    loss = plots.plot_loss_history(history()).axes[0]
    assert (loss.get_xlabel(), loss.get_ylabel()) == ("epoch", "loss (BCE)")
    sweep = plots.plot_threshold_sweep(metrics).axes[0]
    assert sweep.get_xlabel() == "threshold (probability)"
    assert sweep.get_ylabel() == "precision / recall / F1 (fraction)"


def test_pr_grid_titles_axes_and_class_without_positives(scores, metrics):
    fig = plots.plot_pr_curves(scores)
    axes = fig.axes
    assert len(axes) == 20 and fig.get_suptitle()
    titles = [ax.get_title() for ax in axes]
    assert titles[BOAT] == "boat: no positives"
    ap = metrics["ap"]["aeroplane"]
    assert titles[0] == f"aeroplane  AP {ap:.3f}"
    assert all(ax.get_xlabel() == "recall" for ax in axes[15:])
    assert all(axes[row * 5].get_ylabel() == "precision" for row in range(4))


def test_per_class_ap_marks_the_map_and_the_class_without_positives(metrics):
    ax = plots.plot_per_class_ap(metrics).axes[0]
    assert [line.get_xdata()[0] for line in ax.get_lines()] == [metrics["map"]]
    assert "no positives" in [text.get_text() for text in ax.texts]


def test_threshold_sweep_marks_best_threshold_and_study_point(metrics):
    ax = plots.plot_threshold_sweep(metrics).axes[0]
    points = {line.get_label(): line for line in ax.get_lines()}
    study = next(line for label, line in points.items() if label.startswith("study"))
    assert (study.get_xdata()[0], study.get_ydata()[0]) == (0.4, 0.8565135759676487)
    best = next(line for label, line in points.items() if label.startswith("best macro F1"))
    assert best.get_xdata()[0] == metrics["best_threshold_f1"]["threshold"]


def test_loss_plot_marks_phase_boundaries_and_names(tmp_path):
    fig = plots.plot_loss_history(history(epochs=5))
    ax = fig.axes[0]
    boundaries = [line for line in ax.get_lines() if line.get_gid() == plots.PHASE_BOUNDARY_GID]
    assert [line.get_xdata()[0] for line in boundaries] == [5.5, 10.5]
    fig.canvas.draw()
    top = ax.child_axes[0]
    assert [label.get_text() for label in top.get_xticklabels()] == [
        "phase 1",
        "phase 2",
        "phase 3",
    ]


def test_loss_plot_reads_history_csv_rows(tmp_path):
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=plots.HISTORY_KEYS)
        writer.writeheader()
        writer.writerows(history(phases=("resize_crop", "rotate"), epochs=2))
        writer.writerow({"phase": "rotate", "epoch": 3, "train_loss": 0.2, "val_loss": ""})
    with open(path, newline="") as handle:
        ax = plots.plot_loss_history(csv.DictReader(handle)).axes[0]
    boundaries = [line for line in ax.get_lines() if line.get_gid() == plots.PHASE_BOUNDARY_GID]
    assert len(boundaries) == 1
    validation = next(line for line in ax.get_lines() if line.get_label() == "validation")
    assert np.isnan(validation.get_ydata()[-1])


def test_loss_plot_single_phase_has_no_boundary():
    ax = plots.plot_loss_history(history(phases=(1,))).axes[0]
    assert not [line for line in ax.get_lines() if line.get_gid() == plots.PHASE_BOUNDARY_GID]


@pytest.mark.parametrize(
    ("rows", "message"),
    [([], "empty"), ([{"phase": 1, "epoch": 1, "train_loss": 0.3}], "lacks val_loss")],
)
def test_loss_plot_rejects_bad_history(rows, message):
    with pytest.raises(VocprojError, match=message):
        plots.plot_loss_history(rows)


def test_label_frequency_stacks_difficult_on_present(scores):
    ax = plots.plot_label_frequency(scores.labels, CLASSES).axes[0]
    present, difficult = ax.containers
    assert [bar.get_width() for bar in present] == (scores.labels == 1).sum(axis=0).tolist()
    assert [bar.get_width() for bar in difficult] == (scores.labels == -1).sum(axis=0).tolist()
    assert [bar.get_x() for bar in difficult] == [bar.get_width() for bar in present]


def test_cooccurrence_counts_images_with_both_classes():
    labels = np.array([[1, 1, 0], [1, 1, -1], [1, 0, 1]], dtype=np.int8)
    ax = plots.plot_cooccurrence(labels, ["a", "b", "c"]).axes[0]
    cells = [text.get_text() for text in ax.texts]
    assert cells == ["3", "2", "1", "2", "2", "0", "1", "0", "1"]


def test_write_metric_figures_writes_the_named_files(tmp_path, scores, metrics):
    paths = plots.write_metric_figures(scores, metrics, tmp_path / "figures")
    assert [path.name for path in paths] == list(METRIC_FIGURES)
    assert all(path.is_file() for path in paths)


def test_importing_plots_leaves_pyplot_alone():
    code = "import sys, vocproj.reporting.plots; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
