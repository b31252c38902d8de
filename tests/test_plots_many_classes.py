"""Class-indexed figures stay legible for 2 to 100 classes: no overlapping labels, fonts >= 5 pt."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from functools import cache
from itertools import combinations

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image

from vocproj.metrics.multilabel import Scores, compute_metrics
from vocproj.reporting import plots

CLASS_COUNTS = (2, 5, 20, 100)
LONG_NAME = "north_american_porcupine_adult"
WORDS = ("ox", "cat", "bicycle", "traffic light", "pottedplant", "fire hydrant", "tv")
MIN_PT = 5.0


def class_names(n: int) -> list[str]:
    """`n` distinct names of varied length, the 30-character LONG_NAME among them."""
    names = [WORDS[i] if i < len(WORDS) else f"{WORDS[i % len(WORDS)]} {i}" for i in range(n)]
    names[n // 2] = LONG_NAME
    return names


@cache
def made_up_scores(n: int) -> Scores:
    """Seeded labels (some difficult, class 0 without positives) and scores that follow them."""
    rng = np.random.default_rng(n)
    labels = (rng.random((80, n)) < 0.3).astype(np.int8)
    labels[rng.random((80, n)) < 0.05] = -1
    labels[:, 0] = 0
    probs = np.clip(0.3 * labels + 0.7 * rng.random((80, n)), 0.0, 1.0)
    return Scores([f"img{i:03d}" for i in range(80)], probs, labels, class_names(n))


def probabilities_and_thresholds(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    return rng.random(n), rng.uniform(0.2, 0.7, n)


def overlap(a: Bbox, b: Bbox) -> bool:
    """Whether two boxes share area (touching edges do not count)."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0


def assert_legible(fig: Figure, texts: Iterable[Text]) -> None:
    """The drawn `texts` lie inside the figure, at 5 pt or more, and none overlaps another."""
    fig.canvas.draw()
    shown = [text for text in texts if text.get_visible() and text.get_text()]
    assert shown
    boxes = [text.get_window_extent() for text in shown]
    width, height = fig.canvas.get_width_height()
    for text, box in zip(shown, boxes, strict=True):
        assert text.get_fontsize() >= MIN_PT, text.get_text()
        assert box.x0 >= -0.5 and box.y0 >= -0.5, text.get_text()
        assert box.x1 <= width + 0.5 and box.y1 <= height + 0.5, text.get_text()
    for (a, box_a), (b, box_b) in combinations(zip(shown, boxes, strict=True), 2):
        assert not overlap(box_a, box_b), (a.get_text(), b.get_text())


def titles_and_axis_labels(fig: Figure) -> list[Text]:
    """The figure's (sup)title and each axes' title and axis labels."""
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
    return texts


def class_labels(fig: Figure) -> list[Text]:
    """The class names along the y axis, with the titles and axis labels."""
    return [*fig.axes[0].get_yticklabels(), *titles_and_axis_labels(fig)]


def pr_texts(fig: Figure) -> list[Text]:
    """Every panel title and axis label, the suptitle and the visible tick labels of the grid."""
    texts = titles_and_axis_labels(fig)
    for ax in fig.axes:
        texts += [*ax.get_xticklabels(), *ax.get_yticklabels()]
    return texts


def cooccurrence_texts(fig: Figure) -> list[Text]:
    """The class names along both axes, with the titles and axis labels."""
    return [*fig.axes[0].get_xticklabels(), *class_labels(fig)]


@cache
def made_up_metrics(n: int) -> dict:
    return compute_metrics(made_up_scores(n))


FIGURES: dict[str, tuple[Callable[[Scores], Figure], Callable[[Figure], list[Text]]]] = {
    "ap": (lambda s: plots.plot_per_class_ap(made_up_metrics(len(s.classes))), class_labels),
    "pr": (plots.plot_pr_curves, pr_texts),
    "frequency": (lambda s: plots.plot_label_frequency(s.labels, s.classes), class_labels),
    "cooccurrence": (lambda s: plots.plot_cooccurrence(s.labels, s.classes), cooccurrence_texts),
    "probabilities": (
        lambda s: plots.plot_probabilities(
            *probabilities_and_thresholds(len(s.classes)), s.classes
        ),
        class_labels,
    ),
}


@cache
def figure(name: str, n: int) -> Figure:
    """The figure `name` for `n` made-up classes, built once (the tests only read it)."""
    return FIGURES[name][0](made_up_scores(n))


@pytest.mark.parametrize("n", CLASS_COUNTS)
@pytest.mark.parametrize("name", list(FIGURES))
def test_labels_do_not_overlap_and_stay_inside(name, n):
    fig = figure(name, n)
    assert_legible(fig, FIGURES[name][1](fig))


@pytest.mark.parametrize("n", CLASS_COUNTS)
@pytest.mark.parametrize("name", ["ap", "frequency"])
def test_value_labels_are_legible(name, n):
    fig = figure(name, n)
    assert_legible(fig, fig.axes[0].texts)


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_grows_with_the_classes_and_stays_bounded(name):
    heights = [figure(name, n).get_figheight() for n in CLASS_COUNTS]
    assert heights == sorted(heights)
    assert heights[CLASS_COUNTS.index(20)] < heights[-1] < 20


def test_pr_grid_columns_follow_the_class_count():
    assert [plots.grid_columns(n) for n in (2, 5, 20, 30, 100, 150)] == [3, 3, 5, 6, 10, 10]
    fig = figure("pr", 100)
    assert len(fig.axes) == 100
    assert fig.axes[0].get_title() == f"{class_names(100)[0]}: no positives"


def test_long_class_name_wraps_in_its_pr_title():
    names = class_names(100)
    title = figure("pr", 100).axes[names.index(LONG_NAME)].get_title()
    assert title.replace("\n", "").startswith(LONG_NAME) and "\n" in title
    assert title.splitlines()[-1].startswith("AP ")


def test_cooccurrence_counts_are_left_out_for_many_classes():
    few, many = figure("cooccurrence", 20).axes[0], figure("cooccurrence", 100).axes[0]
    assert len(few.texts) == 20 * 20 and "no counts" not in few.get_title()
    assert not many.texts and "no counts written for 100 classes" in many.get_title()


@pytest.mark.parametrize(("n", "size"), [(2, 10.0), (20, 10.0), (60, 8.0), (100, 6.0), (150, 6.0)])
def test_class_fontsize_shrinks_gently_to_a_floor(n, size):
    assert plots.class_fontsize(n, 10.0) == pytest.approx(size)
    assert plots.class_fontsize(n, 6.0) >= MIN_PT


def test_rows_height_keeps_the_20_class_size():
    assert plots.rows_height(20, 6.5, 10.0) == 6.5
    assert plots.rows_height(2, 6.5, 10.0) < 6.5 < plots.rows_height(21, 6.5, 10.0)


def png_height(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size[1]


@pytest.mark.parametrize("per_class", [False, True], ids=["one threshold", "per class"])
def test_probability_chart_png_grows_with_the_classes(per_class):
    heights = []
    for n in (3, 20, 100):
        probabilities, thresholds = probabilities_and_thresholds(n)
        if not per_class:
            thresholds = np.full(n, 0.5)
        heights.append(
            png_height(plots.probability_chart_png(probabilities, thresholds, class_names(n)))
        )
    assert heights[0] < heights[1] < heights[2]
    assert heights[1] == round(plots.PROBABILITY_CHART_SIZE_IN[1] * plots.PROBABILITY_CHART_DPI)


def test_probability_chart_names_the_class_count_and_threshold():
    fig = plots.plot_probabilities(np.array([0.2, 0.6, 0.9]), np.full(3, 0.5), ["a", "b", "c"])
    ax = fig.axes[0]
    assert fig.get_suptitle() == "All 3 classes (threshold 0.50)"
    colours = [to_hex(bar.get_facecolor()) for bar in ax.patches]
    assert colours == ["#c5cbd3", "#1f77b4", "#1f77b4"]
