"""Metrics against hand-worked values, scikit-learn, and a loop transcription of the devkit."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support

from vocproj.artifacts import METRICS_FILE, MISTAKES_FILE, TOP_K_FILE
from vocproj.data.voc import CLASSES
from vocproj.errors import VocprojError
from vocproj.metrics.multilabel import (
    THRESHOLDS,
    Scores,
    ScoresError,
    best_threshold,
    compute_metrics,
    count_outcomes,
    cross_fit,
    load_scores,
    mean_average_precision,
    multilabel_summary,
    per_class_thresholds,
    precision_at_k,
    save_scores,
    split_halves,
    threshold_sweep,
    top_k,
    voc_ap,
    write_metrics,
)

# ---------------------------------------------------------------- a reference implementation


def devkit_ap(scores, labels, *, eleven_point=False):
    """VOCevalcls.m + VOCap.m transcribed loop by loop.

    Unlike vocproj, difficult images stay in the ranking with the devkit's gt = 0 (neither TP nor
    FP), precision 0/0 is NaN and MATLAB's max ignores NaN — the devkit's own route to the result.
    """
    gt = [{1: 1, 0: -1, -1: 0}[int(label)] for label in labels]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # MATLAB's sort is stable
    n_positive = sum(g > 0 for g in gt)
    if n_positive == 0:
        return math.nan
    tp = fp = 0
    tps, rec, prec = [], [], []
    for i in order:
        tp += gt[i] > 0
        fp += gt[i] < 0
        tps.append(tp)
        rec.append(tp / n_positive)
        prec.append(tp / (tp + fp) if tp + fp else math.nan)
    if eleven_point:
        total = 0.0
        for k in range(11):
            reached = [
                p
                for t, p in zip(tps, prec, strict=True)
                if Fraction(t, n_positive) >= Fraction(k, 10) and not math.isnan(p)
            ]
            total += max(reached) if reached else 0.0
        return total / 11
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = float(np.fmax(mpre[i], mpre[i + 1]))
    return sum(
        (mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]
    )


def random_problem(rng, n=120, c=4, *, difficult=0.0, positive=0.3, decimals=None):
    """Scores in [0, 1] that carry some signal, labels in {1, 0} (and -1 at rate `difficult`)."""
    labels = (rng.random((n, c)) < positive).astype(np.int8)
    scores = np.clip(0.3 * labels + rng.random((n, c)) * 0.7, 0.0, 1.0)
    if decimals is not None:
        scores = np.round(scores, decimals)
    labels[rng.random((n, c)) < difficult] = -1
    return scores, labels


# ---------------------------------------------------------------- voc_ap

# Ranked (scores already descending) labels + - + + - - +, 4 positives:
#   rank  1    2    3    4    5    6    7
#   prec  1   1/2  2/3  3/4  3/5  1/2  4/7
#   rec  1/4  1/4  1/2  3/4  3/4  3/4   1
# Envelope at the recall steps 1/4, 1/2, 3/4, 1: 1, 3/4, 3/4, 4/7.
# VOC2010+ AP = 1/4 · (1 + 3/4 + 3/4 + 4/7) = 43/56.
# 11-point: t = 0, .1, .2 → 1; t = .3 … .7 (5 points) → 3/4; t = .8, .9, 1 → 4/7;
#   AP = (3 + 15/4 + 12/7) / 11 = 237/308.
HAND_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
HAND_LABELS = np.array([1, 0, 1, 1, 0, 0, 1])


def test_voc_ap_hand_worked():
    assert voc_ap(HAND_SCORES, HAND_LABELS) == pytest.approx(43 / 56)
    # scikit-learn's non-interpolated AP uses 2/3 at recall 1/2, not the envelope's 3/4
    sklearn_ap = average_precision_score(HAND_LABELS, HAND_SCORES)
    assert sklearn_ap == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)
    assert voc_ap(HAND_SCORES, HAND_LABELS) > sklearn_ap


def test_voc_ap_eleven_point_hand_worked():
    assert voc_ap(HAND_SCORES, HAND_LABELS, eleven_point=True) == pytest.approx(237 / 308)


def test_eleven_point_counts_recall_exactly_at_the_threshold():
    # 10 positives; the first three ranks reach recall exactly 3/10 with precision 1, so the
    # point t = 0.3 takes precision 1 (a float 3·0.1 = 0.30000000000000004 would skip it).
    # Then 3 negatives and 7 positives: precision at rank k >= 7 is (k-3)/k, best 10/13 at k=13.
    labels = np.array([1] * 3 + [0] * 3 + [1] * 7)
    scores = np.linspace(1.0, 0.0, labels.size)
    # t = 0 … 0.3 → 1 (4 points); t = 0.4 … 1 → 10/13 (7 points)
    expected = (4 * 1 + 7 * 10 / 13) / 11
    assert voc_ap(scores, labels, eleven_point=True) == pytest.approx(expected)


def test_voc_ap_all_positives_first_is_one():
    assert voc_ap([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0


def test_voc_ap_agrees_with_sklearn_when_precision_is_monotone():
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 25:
        labels = (rng.random(12) < 0.5).astype(int)
        scores = rng.permutation(12) / 12  # distinct scores
        hits = labels[np.argsort(-scores)]
        positive_ranks = np.flatnonzero(hits) + 1
        precision_at_hits = np.arange(1, positive_ranks.size + 1) / positive_ranks
        if positive_ranks.size == 0 or np.any(np.diff(precision_at_hits) > 0):
            continue  # the envelope changes something: sklearn is not expected to agree
        assert voc_ap(scores, labels) == pytest.approx(average_precision_score(labels, scores))
        checked += 1


@pytest.mark.parametrize("eleven_point", [False, True])
def test_voc_ap_matches_devkit_transcription_with_ties_and_difficult(eleven_point):
    rng = np.random.default_rng(1)
    for _ in range(40):
        scores, labels = random_problem(rng, n=30, c=1, difficult=0.15, decimals=1)
        if not np.any(labels == 1):
            continue
        expected = devkit_ap(scores[:, 0], labels[:, 0], eleven_point=eleven_point)
        got = voc_ap(scores[:, 0], labels[:, 0], eleven_point=eleven_point)
        assert got == pytest.approx(expected, abs=1e-12)


def test_tied_scores_keep_input_order():
    # Scores 0.9, 0.5, 0.5. Input order + - + ranks + - +: prec 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    # → AP = 1/2·1 + 1/2·2/3 = 5/6. Swapping the tied rows ranks + + -: AP = 1.
    assert voc_ap([0.9, 0.5, 0.5], [1, 0, 1]) == pytest.approx(5 / 6)
    assert voc_ap([0.9, 0.5, 0.5], [1, 1, 0]) == 1.0
    # scikit-learn treats the tie as one threshold, whatever the order
    assert average_precision_score([1, 0, 1], [0.9, 0.5, 0.5]) == pytest.approx(5 / 6)
    assert average_precision_score([1, 1, 0], [0.9, 0.5, 0.5]) == pytest.approx(5 / 6)


def test_voc_ap_does_not_depend_on_the_order_of_distinct_scores():
    order = np.random.default_rng(2).permutation(HAND_SCORES.size)
    assert voc_ap(HAND_SCORES[order], HAND_LABELS[order]) == voc_ap(HAND_SCORES, HAND_LABELS)


def test_class_without_positives_has_nan_ap_and_is_skipped_in_map():
    assert math.isnan(voc_ap([0.9, 0.1], [0, 0]))
    assert math.isnan(voc_ap([0.9, 0.1], [-1, 0]))  # difficult-only is not a positive
    scores = np.column_stack([HAND_SCORES, HAND_SCORES])
    labels = np.column_stack([HAND_LABELS, np.zeros_like(HAND_LABELS)])
    mean_ap, per_class = mean_average_precision(scores, labels)
    assert math.isnan(per_class[1])
    assert mean_ap == pytest.approx(43 / 56)


def test_map_is_nan_when_no_class_has_positives():
    mean_ap, _ = mean_average_precision(np.array([[0.5, 0.2]]), np.array([[0, -1]]))
    assert math.isnan(mean_ap)


def test_difficult_images_are_left_out_of_the_ranking():
    scores = np.append(HAND_SCORES, 0.85)
    labels = np.append(HAND_LABELS, -1)
    base = voc_ap(HAND_SCORES, HAND_LABELS)
    for difficult_score in (0.0, 0.55, 0.85, 1.0):
        scores[-1] = difficult_score
        assert voc_ap(scores, labels) == base
        assert voc_ap(scores, labels, eleven_point=True) == pytest.approx(237 / 308)


def test_mean_average_precision_forwards_eleven_point():
    scores = HAND_SCORES[:, None]
    labels = HAND_LABELS[:, None]
    assert mean_average_precision(scores, labels, eleven_point=True)[0] == pytest.approx(237 / 308)


# ---------------------------------------------------------------- threshold sweep

# Two classes, four images. At threshold t an image is predicted when score >= t.
#   image   A score  A label   B score  B label
#     0       0.9       1        0.30      1
#     1       0.6       0        0.20      0
#     2       0.3       1        0.10      1
#     3       0.1       0        0.05      0
# A precision: t<=.1: 2/4; .1<t<=.3: 2/3; .3<t<=.6: 1/2; .6<t<=.9: 1; t=.95: nothing predicted.
# B precision: t<=.05: 2/4; t=.1: 2/3; .15,.2: 1/2; .25,.3: 1; t>=.35: nothing predicted.
# Zero convention: best (2/3 + 1)/2 = 5/6 at t=.25 (tie with .3 → the lower).
# Skip convention: A alone counts for t >= .35, precision 1 at t=.65 … .9 → best 1.0 at .65.
SWEEP_SCORES = np.array([[0.9, 0.30], [0.6, 0.20], [0.3, 0.10], [0.1, 0.05]])
SWEEP_LABELS = np.array([[1, 1], [0, 0], [1, 1], [0, 0]], dtype=np.int8)
NAN = math.nan
PRECISION_A = [1 / 2] * 3 + [2 / 3] * 4 + [1 / 2] * 6 + [1.0] * 6 + [NAN]
PRECISION_B = [1 / 2] * 2 + [2 / 3] + [1 / 2] * 2 + [1.0] * 2 + [NAN] * 13
RECALL_A = [1.0] * 7 + [0.5] * 12 + [0.0]
RECALL_B = [1.0] * 3 + [0.5] * 4 + [0.0] * 13
# F1 = 2PR/(P+R): A: 2/3 (t<=.1), 4/5 (.15-.3), 1/2 (.35-.6), 2/3 (.65-.9), 0 (.95)
F1_A = [2 / 3] * 3 + [4 / 5] * 4 + [1 / 2] * 6 + [2 / 3] * 6 + [0.0]
# B: 2/3 (t<=.05), 4/5 (.1), 1/2 (.15,.2), 2/3 (.25,.3), 0 (t>=.35)
F1_B = [2 / 3] * 2 + [4 / 5] + [1 / 2] * 2 + [2 / 3] * 2 + [0.0] * 13


def test_thresholds_grid():
    assert THRESHOLDS.tolist() == [round(0.05 * i, 2) for i in range(20)]


def test_sweep_per_class_rates_hand_worked():
    counts = threshold_sweep(SWEEP_SCORES, SWEEP_LABELS).counts
    np.testing.assert_allclose(counts.precision, np.column_stack([PRECISION_A, PRECISION_B]))
    np.testing.assert_allclose(counts.recall, np.column_stack([RECALL_A, RECALL_B]))
    np.testing.assert_allclose(counts.f1, np.column_stack([F1_A, F1_B]))


def test_sweep_macro_precision_conventions_move_the_best_threshold():
    counts = threshold_sweep(SWEEP_SCORES, SWEEP_LABELS).counts
    per_class = np.column_stack([PRECISION_A, PRECISION_B])
    np.testing.assert_allclose(counts.macro_precision_zero, np.nan_to_num(per_class).mean(axis=1))
    np.testing.assert_allclose(counts.macro_precision_skip[:19], np.nanmean(per_class[:19], axis=1))
    assert math.isnan(counts.macro_precision_skip[19])  # nothing predicted in any class
    zero = best_threshold(counts.macro_precision_zero, THRESHOLDS)
    skip = best_threshold(counts.macro_precision_skip, THRESHOLDS)
    assert zero == pytest.approx((0.25, 5 / 6))
    assert skip == pytest.approx((0.65, 1.0))


def test_best_f1_threshold_ties_go_to_the_lower_threshold():
    # Macro F1 (2/3 + 4/5)/2 = 11/15 is reached at t = .1, .25 and .3.
    sweep = threshold_sweep(SWEEP_SCORES, SWEEP_LABELS)
    assert best_threshold(sweep.counts.macro_f1, THRESHOLDS) == pytest.approx((0.1, 11 / 15))
    np.testing.assert_allclose(per_class_thresholds(sweep), [0.15, 0.1])


def test_prediction_includes_a_score_equal_to_the_threshold():
    counts = count_outcomes(np.array([[0.3]]), np.array([[1]]), np.array([0.3]))
    assert counts.tp.tolist() == [1]


def test_best_threshold_of_all_nan_is_none():
    assert best_threshold(np.full(3, np.nan), THRESHOLDS[:3]) is None


def test_class_without_positives_is_left_out_of_macro_recall_and_f1():
    scores = np.column_stack([SWEEP_SCORES[:, 0], [0.9, 0.8, 0.1, 0.1]])
    labels = np.column_stack([SWEEP_LABELS[:, 0], [0, -1, 0, 0]])
    counts = threshold_sweep(scores, labels).counts
    assert np.isnan(counts.recall[:, 1]).all() and np.isnan(counts.f1[:, 1]).all()
    np.testing.assert_allclose(counts.macro_recall, RECALL_A)
    np.testing.assert_allclose(counts.macro_f1, F1_A)
    assert np.isnan(per_class_thresholds(threshold_sweep(scores, labels))[1])


# ---------------------------------------------------------------- CP, CR, CF1, OP, OR, OF1

# Threshold 0.5, three classes, five images (difficult entries marked d are excluded):
#   A scores .9 .8 .3 .6d .1, labels 1 0 1 -1 0 → TP 1, FP 1, FN 1: P 1/2, R 1/2, F1 1/2
#   B scores .7 .2 .55 .4 .95, labels 1 1 1 0 1 → TP 3, FP 0, FN 1: P 1, R 3/4, F1 6/7
#   C scores .1 .2 .3 .4d .45, labels 0 1 0 -1 0 → nothing predicted, FN 1: P 0 ("zero"), R 0, F1 0
# CP = (1/2 + 1 + 0)/3 = 1/2; CR = (1/2 + 3/4 + 0)/3 = 5/12; CF1 = 2·CP·CR/(CP+CR) = 5/11
# OP = 4/(4+1) = 4/5; OR = 4/(4+3) = 4/7; OF1 = 2·4/(2·4+1+3) = 2/3
# macro precision skip = (1/2 + 1)/2 = 3/4; macro F1 = (1/2 + 6/7 + 0)/3 = 19/42
SUMMARY_SCORES = np.array(
    [[0.9, 0.7, 0.1], [0.8, 0.2, 0.2], [0.3, 0.55, 0.3], [0.6, 0.4, 0.4], [0.1, 0.95, 0.45]]
)
SUMMARY_LABELS = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 0], [-1, 0, -1], [0, 1, 0]], dtype=np.int8)


def test_multilabel_summary_hand_worked():
    counts = count_outcomes(SUMMARY_SCORES, SUMMARY_LABELS, np.full(3, 0.5))
    summary = multilabel_summary(counts)
    expected = {"CP": 1 / 2, "CR": 5 / 12, "CF1": 5 / 11, "OP": 4 / 5, "OR": 4 / 7, "OF1": 2 / 3}
    assert summary == pytest.approx(expected)
    assert counts.macro_precision_zero == pytest.approx(1 / 2)
    assert counts.macro_precision_skip == pytest.approx(3 / 4)
    assert counts.macro_f1 == pytest.approx(19 / 42)


def test_summary_matches_sklearn_without_difficult():
    scores, labels = random_problem(np.random.default_rng(3), n=80, c=6, positive=0.2)
    labels[:, 5] = 0  # a class without positives
    predicted = scores >= 0.6
    counts = count_outcomes(scores, labels, np.full(6, 0.6))
    micro = precision_recall_fscore_support(labels, predicted, average="micro", zero_division=0)
    summary = multilabel_summary(counts)
    assert (summary["OP"], summary["OR"], summary["OF1"]) == pytest.approx(micro[:3])
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, average=None, zero_division=0
    )
    np.testing.assert_allclose(np.nan_to_num(counts.precision), precision)
    np.testing.assert_allclose(counts.recall[:5], recall[:5])
    np.testing.assert_allclose(counts.f1[:5], f1[:5])
    assert summary["CP"] == pytest.approx(precision.mean())
    assert summary["CR"] == pytest.approx(recall[:5].mean())


def test_summary_without_any_prediction():
    counts = count_outcomes(SUMMARY_SCORES, SUMMARY_LABELS, np.full(3, 0.99))
    summary = multilabel_summary(counts)
    assert summary["OP"] == 0.0 and summary["OR"] == 0.0 and summary["OF1"] == 0.0
    assert summary["CP"] == 0.0 and summary["CF1"] == 0.0


# ---------------------------------------------------------------- cross-fitting


def first_argmax(values):
    values = np.asarray(values)
    return int(np.flatnonzero(values >= values.max() - 1e-12)[0])


def sklearn_fold(scores, labels, fit, held):
    """Held-out macro F1 for the global and the per-class thresholds chosen on `fit`."""
    fit_f1 = np.array(
        [f1_score(labels[fit], scores[fit] >= t, average=None, zero_division=0) for t in THRESHOLDS]
    )
    global_t = THRESHOLDS[first_argmax(fit_f1.mean(axis=1))]
    per_class = np.array([THRESHOLDS[first_argmax(fit_f1[:, c])] for c in range(scores.shape[1])])
    held_global = f1_score(labels[held], scores[held] >= global_t, average="macro")
    held_per_class = f1_score(labels[held], scores[held] >= per_class, average="macro")
    return global_t, held_global, held_per_class


def test_cross_fit_matches_sklearn_and_is_deterministic():
    scores, labels = random_problem(np.random.default_rng(4), n=120, c=4)
    first, second = split_halves(len(scores), seed=7)
    assert sorted([*first, *second]) == list(range(120)) and len(first) == 60
    for half in (first, second):
        assert (labels[half] == 1).any(axis=0).all()  # sklearn's F1 then matches ours
    fitted = cross_fit(scores, labels, seed=7)
    assert fitted == cross_fit(scores, labels, seed=7)
    for fold, (fit, held) in enumerate(((first, second), (second, first))):
        global_t, held_global, held_per_class = sklearn_fold(scores, labels, fit, held)
        assert fitted.fold_thresholds[fold] == pytest.approx(global_t)
        assert fitted.fold_macro_f1_global[fold] == pytest.approx(held_global)
        assert fitted.fold_macro_f1_per_class[fold] == pytest.approx(held_per_class)
    assert fitted.macro_f1_global == pytest.approx(np.mean(fitted.fold_macro_f1_global))


def test_split_halves_depends_on_the_seed_only():
    assert [len(half) for half in split_halves(5, 0)] == [2, 3]
    assert np.array_equal(split_halves(50, 0)[0], split_halves(50, 0)[0])
    assert not np.array_equal(split_halves(50, 0)[0], split_halves(50, 1)[0])


# ---------------------------------------------------------------- rankings

RANK_IDS = ["a", "b", "c", "d", "e"]
RANK_SCORES = np.array([[0.5], [0.9], [0.5], [0.1], [0.9]])
RANK_LABELS = np.array([[1], [-1], [0], [1], [1]], dtype=np.int8)


def test_top_k_order_ranks_and_ties():
    ranking = top_k(RANK_IDS, RANK_SCORES, RANK_LABELS, ["cat"], k=3)
    assert ranking == {
        "cat": [
            {"rank": 1, "id": "b", "score": 0.9, "label": -1},
            {"rank": 2, "id": "e", "score": 0.9, "label": 1},
            {"rank": 3, "id": "a", "score": 0.5, "label": 1},
        ]
    }
    assert precision_at_k(ranking) == {"cat": pytest.approx(2 / 3)}  # difficult is a miss


def test_top_k_with_k_beyond_the_images_lists_them_all():
    ranking = top_k(RANK_IDS, RANK_SCORES, RANK_LABELS, ["cat"], k=50)
    assert [entry["id"] for entry in ranking["cat"]] == ["b", "e", "a", "c", "d"]
    assert precision_at_k(ranking) == {"cat": pytest.approx(3 / 5)}


def test_top_k_rejects_k_below_one():
    with pytest.raises(VocprojError, match="k >= 1"):
        top_k(RANK_IDS, RANK_SCORES, RANK_LABELS, ["cat"], k=0)


# ---------------------------------------------------------------- scores file


def example_arrays(n=30, seed=5):
    scores, labels = random_problem(np.random.default_rng(seed), n=n, c=20, difficult=0.05)
    labels[:, 3] = 0  # boat: no positives
    ids = [f"2008_{i:06d}" for i in range(n)]
    return ids, scores, labels


def test_scores_round_trip(tmp_path):
    ids, scores, labels = example_arrays()
    path = tmp_path / "scores.bin"  # np.savez would have appended .npz to a path
    save_scores(path, ids, scores, labels, CLASSES)
    assert [p.name for p in tmp_path.iterdir()] == ["scores.bin"]
    loaded = load_scores(path)
    assert loaded.ids == ids
    assert loaded.classes == list(CLASSES)
    np.testing.assert_array_equal(loaded.scores, scores.astype(np.float32))
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.labels.dtype == np.int8
    with np.load(path) as raw:
        assert raw["scores"].dtype == np.float32 and raw["labels"].dtype == np.int8


def test_file_from_another_tool_loads(tmp_path):
    ids, scores, labels = example_arrays()
    path = tmp_path / "foreign.npz"
    np.savez(
        path,
        ids=np.array(ids, dtype="S"),
        scores=scores.astype(np.float64),
        labels=labels.astype(np.int64),
        classes=np.array(CLASSES),
        extra=np.arange(3),
    )
    loaded = load_scores(path)
    assert loaded.ids == ids
    np.testing.assert_array_equal(loaded.scores, scores)
    np.testing.assert_array_equal(loaded.labels, labels)


def write_npz(path, **changes):
    ids, scores, labels = example_arrays()
    arrays = {
        "ids": np.array(ids),
        "scores": scores,
        "labels": labels,
        "classes": np.array(CLASSES),
    }
    arrays.update(changes)
    np.savez(path, **{name: value for name, value in arrays.items() if value is not None})


def single_npy_array(path):
    with open(path, "wb") as handle:  # np.save(path) would append .npy to the name
        np.save(handle, np.zeros(3))


def truncated_npz(path):
    write_npz(path)
    path.write_bytes(path.read_bytes()[:400])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: write_npz(p, classes=None), "missing array.*classes"),
        (
            lambda p: write_npz(p, labels=np.zeros((30, 19), np.int8)),
            r"'labels' has shape \(30, 19\)",
        ),
        (lambda p: write_npz(p, scores=np.zeros(30)), r"'scores' has shape \(30,\)"),
        (lambda p: write_npz(p, labels=np.full((30, 20), 2)), r"\{-1, 0, 1\}"),
        (lambda p: write_npz(p, labels=np.zeros((30, 20))), r"\{-1, 0, 1\}"),
        (lambda p: write_npz(p, scores=np.full((30, 20), 3.0)), r"outside \[0, 1\]"),
        (lambda p: write_npz(p, scores=np.full((30, 20), np.nan)), r"outside \[0, 1\]"),
        (lambda p: write_npz(p, classes=np.array(CLASSES[:19])), r"expected \(30, 19\)"),
        (lambda p: write_npz(p, ids=np.array(["x"] * 30)), "duplicate"),
        (lambda p: write_npz(p, ids=np.array([1, 2], dtype=object)), "pickle"),
        (lambda p: p.write_text("not an archive"), "not a readable .npz"),
        (truncated_npz, "not a readable .npz"),
        (single_npy_array, "single array"),
        (lambda p: None, "not found"),
    ],
)
def test_bad_scores_files_give_clear_errors(tmp_path, make, message):
    path = tmp_path / "bad_scores.npz"
    make(path)
    with pytest.raises(ScoresError, match=message) as error:
        load_scores(path)
    assert "bad_scores.npz" in str(error.value)


def test_save_scores_refuses_bad_input_and_writes_nothing(tmp_path):
    ids, scores, labels = example_arrays()
    with pytest.raises(ScoresError, match=r"outside \[0, 1\]"):
        save_scores(tmp_path / "s.npz", ids, scores * 10 - 5, labels, CLASSES)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- metrics.json

SCHEMA_KEYS = {
    "schema_version", "n_images", "classes", "n_positive", "n_difficult", "map", "ap",
    "map_voc07", "ap_voc07", "thresholds", "sweep", "best_threshold_f1",
    "best_threshold_precision", "per_class_thresholds", "at_threshold", "cross_fitted",
    "precision_at_k", "study",
}  # fmt: skip


def example_scores():
    ids, scores, labels = example_arrays(n=60)
    return Scores(ids, scores, labels, list(CLASSES))


def test_compute_metrics_schema_and_no_nan():
    result = compute_metrics(example_scores())
    assert set(result) == SCHEMA_KEYS
    json.dumps(result, allow_nan=False)  # raises on NaN or infinity
    assert result["ap"]["boat"] is None and result["per_class_thresholds"]["boat"] is None
    assert result["at_threshold"]["per_class"]["boat"]["recall"] is None
    assert set(result["sweep"]) == {"precision_zero", "precision_skip", "recall", "f1"}
    assert all(len(values) == 20 for values in result["sweep"].values())
    assert result["study"] == {"best_precision": 0.8565135759676487, "threshold": 0.4}


def test_compute_metrics_values_agree_with_the_functions():
    scores = example_scores()
    result = compute_metrics(scores)
    sweep = threshold_sweep(scores.scores, scores.labels)
    best_t, best_f1 = best_threshold(sweep.counts.macro_f1, THRESHOLDS)
    assert result["best_threshold_f1"] == {"threshold": best_t, "macro_f1": best_f1}
    assert result["at_threshold"]["threshold"] == best_t
    assert result["at_threshold"]["macro_f1"] == pytest.approx(best_f1)
    assert result["cross_fitted"]["global"]["val_on_val"] == pytest.approx(best_f1)
    assert result["map"] == pytest.approx(mean_average_precision(scores.scores, scores.labels)[0])
    study_t, study_p = best_threshold(sweep.counts.macro_precision_zero, THRESHOLDS)
    assert result["best_threshold_precision"] == {"threshold": study_t, "precision": study_p}
    assert result["precision_at_k"]["k"] == 50


def test_write_metrics_writes_metrics_top50_and_mistakes_only(tmp_path):
    ids, scores, labels = example_arrays(n=60)
    save_scores(tmp_path / "scores_val.npz", ids, scores, labels, CLASSES)
    out = tmp_path / "report"
    result = write_metrics(tmp_path / "scores_val.npz", out, k=10)
    assert json.loads((out / METRICS_FILE).read_text()) == result
    top = json.loads((out / TOP_K_FILE).read_text())
    assert list(top) == list(CLASSES) and all(len(entries) == 10 for entries in top.values())
    assert sorted(path.name for path in out.iterdir()) == [METRICS_FILE, MISTAKES_FILE, TOP_K_FILE]
