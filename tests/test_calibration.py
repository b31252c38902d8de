"""Calibration against hand-worked bins and ECEs, temperatures recovered from generated data."""

from __future__ import annotations

import io
import json
import math
from itertools import combinations

import numpy as np
import pytest
from PIL import Image
from scipy.special import expit

from vocproj.artifacts import CALIBRATION_FILE, RELIABILITY_FIGURE, RELIABILITY_PER_CLASS_FIGURE
from vocproj.errors import ScoresError, VocprojError
from vocproj.metrics.calibration import (
    NEUTRAL_TEMPERATURE,
    apply_temperature,
    binary_cross_entropy,
    calibration_errors,
    calibration_report,
    expected_calibration_error,
    fit_class_temperatures,
    fit_temperature,
    reliability_bins,
    write_calibration,
)
from vocproj.metrics.multilabel import Scores, save_scores, split_halves
from vocproj.reporting import plots

# The fitted T of 20 000 generated entries varied by about 1.5 % (one SD) over 20 seeds.
TEMPERATURE_TOLERANCE = 0.06  # relative

# ---------------------------------------------------------------- hand-worked bins and ECE

# Three bins: [0, 1/3), [1/3, 2/3), [2/3, 1] (1.0 goes in the last one).
#   bin 0: p 0.1, 0.2 with outcomes 0, 1  → mean 0.15, frequency 1/2, gap 0.35, weight 2/6
#   bin 1: p 0.5 with outcome 0           → mean 0.5,  frequency 0,   gap 0.5,  weight 1/6
#   bin 2: p 0.7, 0.9, 1.0, outcomes 1,1,0 → mean 2.6/3, frequency 2/3, gap 0.2, weight 3/6
#   ECE = (2·0.35 + 1·0.5 + 3·0.2) / 6 = 1.8 / 6 = 0.3
# The seventh entry, p 0.95, is difficult (-1): counted as a positive the ECE would be
# (0.7 + 0.5 + 4·|3/4 − 3.55/4|) / 7 = 0.25, as a negative (0.7 + 0.5 + 4·|2/4 − 3.55/4|) / 7
# = 0.3929.
HAND_P = np.array([0.1, 0.2, 0.5, 0.7, 0.9, 1.0, 0.95])
HAND_LABELS = np.array([0, 1, 0, 1, 1, 0, -1], dtype=np.int8)


def test_reliability_bins_of_the_hand_example():
    reliability = reliability_bins(HAND_P[:6], HAND_LABELS[:6], bins=3)
    assert reliability.count.tolist() == [2, 1, 3]
    assert reliability.mean_probability == pytest.approx([0.15, 0.5, 2.6 / 3])
    assert reliability.frequency == pytest.approx([0.5, 0.0, 2 / 3])
    assert reliability.edges == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert reliability.ece == pytest.approx(0.3)
    assert expected_calibration_error(HAND_P[:6], HAND_LABELS[:6], bins=3) == pytest.approx(0.3)


def test_bin_edges_belong_to_the_upper_bin_and_one_to_the_last():
    reliability = reliability_bins(np.array([0.0, 1 / 3, 2 / 3, 1.0]), np.zeros(4), bins=3)
    assert reliability.count.tolist() == [1, 1, 2]
    tenths = reliability_bins(np.array([0.3, 0.7, 0.9999]), np.zeros(3), bins=10)
    assert np.flatnonzero(tenths.count).tolist() == [3, 7, 9]


def test_empty_bins_add_nothing_and_have_no_mean():
    reliability = reliability_bins(np.array([0.05, 0.15]), np.array([0, 1]), bins=5)
    assert reliability.count.tolist() == [2, 0, 0, 0, 0]
    assert np.isnan(reliability.mean_probability[1:]).all()
    # one bin: mean 0.1, frequency 0.5
    assert reliability.ece == pytest.approx(0.4)


def test_difficult_entries_are_left_out_of_ece_and_nll():
    calibration = calibration_errors(HAND_P[:, None], HAND_LABELS[:, None], bins=3)
    assert calibration.per_class[0].n == 6
    assert calibration.class_ece[0] == pytest.approx(0.3)
    assert calibration.pooled.ece == pytest.approx(0.3)
    # p 1.0 with outcome 0 is clipped to 1 − 1e-7: its BCE is −log(1e-7)
    expected_nll = -(math.log(0.9) + math.log(0.2) + math.log(0.5) + math.log(0.7) + math.log(0.9))
    expected_nll = (expected_nll - math.log(1e-7)) / 6
    assert calibration.class_nll[0] == pytest.approx(expected_nll, rel=1e-6)


def test_binary_cross_entropy_by_hand():
    # (−log 0.5 − log(1 − 0.8)) / 2 = (log 2 + log 5) / 2 = log(10) / 2
    assert binary_cross_entropy(np.array([0.5, 0.8]), np.array([1, 0])) == pytest.approx(
        math.log(10) / 2
    )
    assert binary_cross_entropy(np.array([1.0]), np.array([0])) == pytest.approx(
        -math.log(1e-7), rel=1e-6
    )
    assert math.isnan(binary_cross_entropy(np.array([]), np.array([])))


def test_pooled_and_per_class_ece_of_two_classes_by_hand():
    # Two bins, [0, 0.5) and [0.5, 1].
    #   class A: p 0.2 (outcome 0), 0.8 (1): gaps 0.2 and 0.2 → ECE 0.2
    #   class B: p 0.4 (outcome 1), 0.6 (0): gaps 0.6 and 0.6 → ECE 0.6
    #   pooled: bin 0 holds 0.2, 0.4 (mean 0.3, frequency 1/2), bin 1 holds 0.8, 0.6 (mean 0.7,
    #   frequency 1/2): gaps 0.2 and 0.2 → ECE 0.2; the macro mean is (0.2 + 0.6) / 2 = 0.4
    probabilities = np.array([[0.2, 0.4], [0.8, 0.6]])
    labels = np.array([[0, 1], [1, 0]], dtype=np.int8)
    calibration = calibration_errors(probabilities, labels, bins=2)
    assert calibration.class_ece == pytest.approx([0.2, 0.6])
    assert calibration.pooled.ece == pytest.approx(0.2)
    assert calibration.pooled.n == 4
    assert calibration.macro_ece == pytest.approx(0.4)


def test_macro_ece_leaves_out_a_class_without_entries():
    probabilities = np.array([[0.2, 0.4], [0.8, 0.6]])
    labels = np.array([[0, -1], [1, -1]], dtype=np.int8)
    calibration = calibration_errors(probabilities, labels, bins=2)
    assert np.isnan(calibration.class_ece[1])
    assert calibration.macro_ece == pytest.approx(0.2)


def test_outcomes_must_be_binary_and_bins_positive():
    with pytest.raises(VocprojError, match="outcomes must be 0 or 1"):
        reliability_bins(HAND_P, HAND_LABELS)
    with pytest.raises(VocprojError, match="bins >= 1"):
        reliability_bins(HAND_P[:6], HAND_LABELS[:6], bins=0)
    with pytest.raises(VocprojError, match=r"\[0, 1\]"):
        reliability_bins(np.array([1.2]), np.array([1]))


# ---------------------------------------------------------------- temperature scaling


def generated(true_temperatures, n_rows=20_000, seed=0):
    """Scores sigmoid(z) whose labels are drawn from sigmoid(z / T*), one T* per column."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (n_rows, len(true_temperatures)))
    truth = expit(logits / np.asarray(true_temperatures))
    labels = (rng.random(logits.shape) < truth).astype(np.int8)
    return expit(logits), labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.0, 3.0])
def test_fit_recovers_the_generating_temperature(true_t):
    probabilities, labels = generated([true_t])
    assert fit_temperature(probabilities, labels) == pytest.approx(
        true_t, rel=TEMPERATURE_TOLERANCE
    )


def test_apply_temperature_scales_the_logits():
    probabilities = expit(np.array([[2.0, 2.0], [-4.0, -4.0]]))
    scaled = apply_temperature(probabilities, np.array([1.0, 2.0]))
    assert scaled[:, 0] == pytest.approx(probabilities[:, 0])
    assert scaled[:, 1] == pytest.approx(expit(np.array([1.0, -2.0])))
    assert apply_temperature(probabilities, 0.5) == pytest.approx(
        expit(np.array([[4.0, 4.0], [-8.0, -8.0]]))
    )


def test_difficult_entries_do_not_move_the_fit():
    probabilities, labels = generated([2.0, 0.7], n_rows=4000)
    extra_p = np.tile([[0.999, 0.001]], (500, 1))  # confidently wrong, were they counted
    padded_p = np.vstack([probabilities, extra_p])
    padded_labels = np.vstack([labels, np.full((500, 2), -1, dtype=np.int8)])
    assert fit_temperature(padded_p, padded_labels) == fit_temperature(probabilities, labels)
    assert np.array_equal(
        fit_class_temperatures(padded_p, padded_labels),
        fit_class_temperatures(probabilities, labels),
    )


def test_class_temperatures_follow_each_class_and_degenerate_classes_keep_one():
    true_t = [0.6, 1.0, 2.5, 1.8, 1.8]
    probabilities, labels = generated(true_t)
    labels[:, 3] = 0  # no positive
    labels[:, 4] = np.where(labels[:, 4] == 1, 1, -1)  # only positives and difficult
    fitted = fit_class_temperatures(probabilities, labels)
    assert fitted[:3] == pytest.approx(true_t[:3], rel=TEMPERATURE_TOLERANCE)
    assert fitted[3] == NEUTRAL_TEMPERATURE and fitted[4] == NEUTRAL_TEMPERATURE
    single = fit_temperature(probabilities[:, :3], labels[:, :3])
    assert all(abs(t / single - 1) > 0.15 for t in (fitted[0], fitted[2]))


def scores_of(probabilities, labels, classes=None):
    classes = classes or [f"class{c}" for c in range(labels.shape[1])]
    return Scores([f"img{i:05d}" for i in range(len(labels))], probabilities, labels, classes)


def test_overconfident_scores_fit_two_and_calibrate_on_held_out_rows():
    probabilities, labels = generated([2.0, 2.0, 2.0, 2.0], n_rows=5000)
    report = calibration_report(scores_of(probabilities, labels))
    single = report["temperature"]["single"]
    assert single["all_val"] == pytest.approx(2.0, rel=TEMPERATURE_TOLERANCE)
    assert single["folds"] == pytest.approx([2.0, 2.0], rel=TEMPERATURE_TOLERANCE)
    held_out = report["pooled"]["held_out"]
    for measure in ("ece", "nll", "macro_ece"):
        before = held_out[measure]["before"]
        assert held_out[measure]["single"] < before and held_out[measure]["per_class"] < before
    assert held_out["ece"]["single"] < 0.3 * held_out["ece"]["before"]
    per_class = report["per_class"]["class0"]["held_out"]["ece"]
    assert per_class["per_class"] < per_class["before"]


def test_calibrated_scores_fit_one_and_gain_nothing():
    probabilities, labels = generated([1.0, 1.0], n_rows=10_000, seed=1)
    report = calibration_report(scores_of(probabilities, labels))
    assert report["temperature"]["single"]["all_val"] == pytest.approx(
        1.0, rel=TEMPERATURE_TOLERANCE
    )
    held_out = report["pooled"]["held_out"]["ece"]
    assert held_out["before"] < 0.03 and held_out["single"] < 0.03


def test_cross_fitting_fits_on_split_halves_both_ways_round():
    probabilities, labels = generated([1.5, 0.8, 2.5], n_rows=600, seed=2)
    report = calibration_report(scores_of(probabilities, labels), bins=10, seed=3)
    first, second = split_halves(600, 3)
    expected = [fit_temperature(probabilities[rows], labels[rows]) for rows in (first, second)]
    temperature = report["temperature"]
    assert temperature["single"]["folds"] == pytest.approx(expected, rel=1e-9)
    assert all(t != temperature["single"]["all_val"] for t in temperature["single"]["folds"])
    fold_classes = [fit_class_temperatures(probabilities[r], labels[r]) for r in (first, second)]
    for fold, fitted in zip(temperature["per_class"]["folds"], fold_classes, strict=True):
        assert list(fold.values()) == pytest.approx(fitted.tolist(), rel=1e-9)
    # "before" is the raw ECE of each held-out half (the second, then the first), averaged
    raw = [expected_calibration_error(probabilities[r], labels[r], 10) for r in (second, first)]
    assert report["pooled"]["held_out"]["ece"]["before"] == pytest.approx(np.mean(raw))
    # "single" is each half after the temperature fitted on the other half
    after = [
        expected_calibration_error(apply_temperature(probabilities[held], t), labels[held], 10)
        for held, t in ((second, expected[0]), (first, expected[1]))
    ]
    assert report["pooled"]["held_out"]["ece"]["single"] == pytest.approx(np.mean(after))
    other_seed = calibration_report(scores_of(probabilities, labels), bins=10, seed=4)
    assert other_seed["temperature"]["single"]["folds"] != temperature["single"]["folds"]


# ---------------------------------------------------------------- calibration.json


def reject_constant(name):
    raise AssertionError(f"calibration.json holds {name}")


def test_calibration_json_is_written_without_nan_and_round_trips(tmp_path):
    probabilities, labels = generated([2.0, 1.0, 1.0], n_rows=300, seed=5)
    labels[:, 2] = -1  # a class without entries: its numbers are null, not NaN
    labels[:5, 0] = -1
    npz = tmp_path / "scores_val.npz"
    save_scores(npz, [f"img{i}" for i in range(300)], probabilities, labels, ["a", "b", "c"])
    report = write_calibration(npz, tmp_path / "out", bins=12, seed=1)
    text = (tmp_path / "out" / CALIBRATION_FILE).read_text()
    assert json.loads(text, parse_constant=reject_constant) == report
    assert report["schema_version"] == 1 and report["bins"] == 12 and report["seed"] == 1
    assert report["classes"] == ["a", "b", "c"] and report["n_images"] == 300
    assert report["per_class"]["c"]["ece"] is None and report["per_class"]["c"]["n"] == 0
    assert report["temperature"]["per_class"]["all_val"]["c"] == NEUTRAL_TEMPERATURE
    assert report["per_class"]["a"]["n"] == 295
    assert report["pooled"]["n"] == 595
    for bins in (report["pooled"]["bins"], report["after_temperature"]["pooled"]["single"]["bins"]):
        assert len(bins) == 12 and sum(entry["count"] for entry in bins) == 595
        assert bins[0]["lower"] == 0.0 and bins[-1]["upper"] == 1.0
    assert report["pooled"]["macro_ece"] == pytest.approx(
        np.mean([report["per_class"][name]["ece"] for name in ("a", "b")])
    )


def test_scores_without_usable_entries_name_the_file(tmp_path):
    npz = tmp_path / "scores_val.npz"
    save_scores(npz, ["x", "y"], np.full((2, 2), 0.5), np.full((2, 2), -1), ["a", "b"])
    with pytest.raises(ScoresError, match=r"scores_val\.npz: every label is difficult"):
        write_calibration(npz, tmp_path)
    assert not (tmp_path / CALIBRATION_FILE).exists()


# ---------------------------------------------------------------- figures


def made_up_report(n_classes):
    """A seeded report for `n_classes` classes, one long name, class 0 all difficult."""
    rng = np.random.default_rng(n_classes)
    probabilities, labels = generated(rng.uniform(0.5, 2.5, n_classes), n_rows=80, seed=n_classes)
    labels[rng.random(labels.shape) < 0.05] = -1
    labels[:, 0] = -1
    classes = [f"class {c}" for c in range(n_classes)]
    classes[n_classes // 2] = "north_american_porcupine_adult"
    return calibration_report(scores_of(probabilities, labels, classes))


def png_size(path):
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def assert_titles_legible(fig):
    """Panel titles at 5 pt or more, inside the figure, and no two overlapping.

    The figure was laid out when it was saved; measuring needs no second (slow) draw.
    """
    renderer = fig.canvas.get_renderer()
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    boxes = [title.get_window_extent(renderer) for title in titles]
    width, height = fig.canvas.get_width_height()
    for title, box in zip(titles, boxes, strict=True):
        assert title.get_fontsize() >= 5.0
        assert box.x0 >= -0.5 and box.x1 <= width + 0.5 and box.y1 <= height + 0.5
    for a, b in combinations(boxes, 2):
        assert min(a.x1, b.x1) <= max(a.x0, b.x0) or min(a.y1, b.y1) <= max(a.y0, b.y0)


@pytest.mark.parametrize("n_classes", [2, 20, 100])
def test_reliability_figures_are_written_for_2_to_100_classes(tmp_path, n_classes):
    report = made_up_report(n_classes)
    pooled = plots.plot_reliability(report, tmp_path / RELIABILITY_FIGURE)
    per_class = plots.plot_reliability_per_class(report, tmp_path / RELIABILITY_PER_CLASS_FIGURE)
    assert png_size(tmp_path / RELIABILITY_FIGURE)[1] > 0
    assert png_size(tmp_path / RELIABILITY_PER_CLASS_FIGURE)[1] > 0
    legend = [text.get_text() for text in pooled.axes[0].get_legend().get_texts()]
    single_ece = report["after_temperature"]["pooled"]["single"]["ece"]
    assert f"ECE {report['pooled']['ece']:.3f}" in legend[1]
    assert f"ECE {single_ece:.3f}" in legend[2]
    panels = [ax for ax in per_class.axes if ax.get_title()]
    assert len(panels) == n_classes
    assert panels[0].get_title() == "class 0: no entries"
    name = report["classes"][1]
    before, after = report["per_class"][name], report["after_temperature"]["per_class"][name]
    assert panels[1].get_title().endswith(f"ECE {before['ece']:.3f} → {after['ece']:.3f}")
    assert_titles_legible(per_class)
