"""Evaluation of the multi-label classifier: VOC average precision, threshold sweeps, top-k.

Inputs are an N×C array of probabilities and an int8 N×C label array in the VOC devkit's
classification convention: 1 = present, 0 = absent, -1 = present only as "difficult" objects.
Difficult entries (-1) are left out of every metric for their class, as in the devkit.

Conventions (each one is tested in tests/test_metrics.py):

- Ranking: images are ranked by descending score with a stable sort, so tied scores keep the
  input order (the row order of the scores file). The devkit does the same: VOCevalcls.m ranks
  with MATLAB's stable ``sort(-confidence)`` over the image-set order. Tie order can change AP;
  scikit-learn instead scores a group of tied images as one threshold.
- A class with no positive (label 1) image has no AP, recall or F1: they are NaN and are left
  out of every macro average (mAP, macro recall, macro F1, CR). An all-NaN average is NaN.
- A prediction is positive when ``score >= threshold``.
- Precision of a class with no predicted positive is undefined. "zero" counts it as 0 (how the
  study's 0.8565 came out, and CP in the ML-GCN table); "skip" leaves it out of the average.
- Best threshold: the highest value on the grid; ties go to the lower threshold.
- Top-k ranks every image, difficult ones included; precision@k counts a hit when label == 1,
  so a difficult-only image in the top k counts as a miss.
- Mistakes: a class's false positives are its label-0 images, highest score first; its missed
  images are its label-1 images, lowest score first; both keep tied scores in input order.
  Difficult-only images (-1) are neither.

metrics.json schema (version 1); every float may be null where it is undefined (never NaN):

- ``schema_version``: 1; ``n_images``: int; ``classes``: [str]
- ``n_positive``, ``n_difficult``: {class: int} images with label 1 / label -1
- ``map``, ``ap``: VOC2010+ AP, mean and {class: AP}; ``map_voc07``, ``ap_voc07``: 11-point
- ``thresholds``: the 20 grid values 0.00 … 0.95
- ``sweep``: {"precision_zero", "precision_skip", "recall", "f1"}: macro values per threshold
- ``best_threshold_f1``: {"threshold", "macro_f1"} or null
- ``best_threshold_precision``: {"threshold", "precision"} — the study's criterion (argmax of
  macro precision, "zero" convention), for comparison only
- ``per_class_thresholds``: {class: threshold or null} — argmax of each class's F1
- ``at_threshold``: at ``best_threshold_f1``: {"threshold", "CP", "CR", "CF1", "OP", "OR",
  "OF1", "macro_precision_zero", "macro_precision_skip", "macro_recall", "macro_f1",
  "per_class": {class: {"precision", "recall", "f1"}}} or null
- ``cross_fitted``: {"seed", "global": {"val_on_val", "cross_fitted", "fold_thresholds",
  "fold_macro_f1"}, "per_class": {"val_on_val", "cross_fitted", "fold_macro_f1"}}: macro F1
  with thresholds picked on one half of the images and scored on the other, both ways round
- ``precision_at_k``: {"k", "per_class": {class: value}, "mean"}
- ``study``: {"best_precision": 0.8565…, "threshold": 0.4} — the original study's report

mistakes.json (``mistakes``; write_metrics lists k = 20 images per class and kind):

- ``k``: int, the most images listed per class and kind (fewer when there are fewer candidates)
- ``thresholds``: {class: threshold} that ``predicted`` is cut at; by default every class has
  ``best_threshold_f1``'s threshold, or 0.5 when that is null
- ``classes``: {class: {"false_positives": [entry], "missed": [entry]}}, in class order: the k
  highest-scored label-0 images, highest first, and the k lowest-scored label-1 images, lowest
  first
- entry: {"rank": 1, 2, …, "id", "score": the class's probability, "labels": the image's label-1
  classes, "difficult": its label -1 classes (both in class order), "predicted": the classes with
  probability >= their threshold, highest probability first (ties in class order)}
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vocproj.artifacts import METRICS_FILE, MISTAKES_FILE, TOP_K_FILE
from vocproj.errors import ScoresError, VocprojError
from vocproj.io import atomic_write, atomic_write_json
from vocproj.metrics.thresholds import labels_at_threshold

SCHEMA_VERSION = 1
THRESHOLDS = np.round(np.arange(20) * 0.05, 2)
STUDY_BEST_PRECISION = 0.8565135759676487
STUDY_THRESHOLD = 0.4
MISTAKES_K = 20
FALLBACK_THRESHOLD = 0.5  # labels mistakes.json's images when no threshold has a macro F1
DIFFICULT = -1
SCORE_ARRAYS = ("ids", "scores", "labels", "classes")
_FIX = (
    "rewrite it with vocproj.metrics.multilabel.save_scores "
    "(notebook 04 / the evaluate step does this)"
)


@dataclass(frozen=True, eq=False)
class Scores:
    """Model probabilities and ground truth for one image set."""

    ids: list[str]
    scores: np.ndarray
    labels: np.ndarray
    classes: list[str]


# ---------------------------------------------------------------- scores file


def save_scores(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    scores: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
) -> None:
    """Validate and write a scores `.npz` atomically (scores float32, labels int8)."""
    arrays = {
        "ids": np.asarray(ids, dtype=str),
        "scores": np.asarray(scores),
        "labels": np.asarray(labels),
        "classes": np.asarray(classes, dtype=str),
    }
    _validated(arrays, Path(path))
    arrays["scores"] = arrays["scores"].astype(np.float32)
    arrays["labels"] = arrays["labels"].astype(np.int8)
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def load_scores(path: str | os.PathLike[str]) -> Scores:
    """Read and validate a scores `.npz` (from save_scores or any tool writing the same arrays)."""
    source = Path(path)
    if not source.is_file():
        raise ScoresError(f"{source}: scores file not found; run the evaluate step to write it.")
    return _validated(_read_npz(source), source)


def _read_npz(source: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(source, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ScoresError(f"{source}: not a readable .npz archive ({exc}); {_FIX}.") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ScoresError(f"{source}: holds a single array, not an .npz archive; {_FIX}.")
    with archive:
        missing = [name for name in SCORE_ARRAYS if name not in archive.files]
        if missing:
            raise ScoresError(f"{source}: missing array(s) {', '.join(missing)}; {_FIX}.")
        return {name: _read_array(archive, name, source) for name in SCORE_ARRAYS}


def _read_array(archive: np.lib.npyio.NpzFile, name: str, source: Path) -> np.ndarray:
    try:
        return archive[name]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ScoresError(
            f"{source}: array '{name}' cannot be read ({exc}); store strings as "
            f"np.array(values, dtype=str), never as pickled objects, or {_FIX}."
        ) from exc


def _validated(arrays: dict[str, np.ndarray], source: Path) -> Scores:
    """Check shapes, dtypes and value ranges; return canonical Scores or raise ScoresError."""

    def fail(problem: str) -> ScoresError:
        return ScoresError(f"{source}: {problem}; {_FIX}.")

    ids = _strings(arrays["ids"], "ids", fail)
    classes = _strings(arrays["classes"], "classes", fail)
    scores, labels = arrays["scores"], arrays["labels"]
    expected = (len(ids), len(classes))
    if not ids:
        raise fail("'ids' is empty: there are no images to evaluate")
    if len(set(ids)) != len(ids):
        raise fail("'ids' holds duplicate image ids")
    for name, array in (("scores", scores), ("labels", labels)):
        if array.shape != expected:
            raise fail(
                f"'{name}' has shape {array.shape}, expected {expected} "
                "(one row per id, one column per class)"
            )
    if scores.dtype.kind != "f":
        raise fail(f"'scores' has dtype {scores.dtype}, expected floating point probabilities")
    if not np.all((scores >= 0.0) & (scores <= 1.0)):
        raise fail("'scores' holds values outside [0, 1] or NaN (expected sigmoid probabilities)")
    if labels.dtype.kind not in "iu" or not np.all(np.isin(labels, (-1, 0, 1))):
        raise fail("'labels' must be integers in {-1, 0, 1} (difficult-only, absent, present)")
    return Scores(ids, scores.astype(np.float64), labels.astype(np.int8), classes)


def _strings(array: np.ndarray, name: str, fail: Callable[[str], ScoresError]) -> list[str]:
    if array.ndim != 1 or array.dtype.kind not in "US":
        raise fail(f"'{name}' must be a 1-D string array, got {array.dtype} of shape {array.shape}")
    if array.dtype.kind == "S":
        return [value.decode("utf-8") for value in array.tolist()]
    return [str(value) for value in array.tolist()]


# ---------------------------------------------------------------- average precision


def descending_order(scores_1d: np.ndarray) -> np.ndarray:
    """Indices by descending score; a stable sort, so tied scores keep their input order."""
    return np.argsort(-np.asarray(scores_1d, dtype=np.float64), kind="stable")


def ascending_order(scores_1d: np.ndarray) -> np.ndarray:
    """Indices by ascending score; a stable sort, so tied scores keep their input order."""
    return np.argsort(np.asarray(scores_1d, dtype=np.float64), kind="stable")


def _cumulative_hits(
    scores_1d: np.ndarray, labels_1d: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """True positives and precision after each ranked image (difficult removed), and positives."""
    scores_1d, labels_1d = np.asarray(scores_1d), np.asarray(labels_1d)
    kept = labels_1d != DIFFICULT
    hits = labels_1d[kept][descending_order(scores_1d[kept])] == 1
    true_pos = np.cumsum(hits)
    return true_pos, true_pos / np.arange(1, hits.size + 1), int(hits.sum())


def precision_recall_points(
    scores_1d: np.ndarray, labels_1d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each ranked image, difficult removed; recall 0 if no positive."""
    true_pos, precision, n_positive = _cumulative_hits(scores_1d, labels_1d)
    return true_pos / max(n_positive, 1), precision


def voc_ap(scores_1d: np.ndarray, labels_1d: np.ndarray, *, eleven_point: bool = False) -> float:
    """Average precision of one class as the VOC devkit computes it; NaN without positives.

    The default is VOC2010+ (VOCap.m: area under the monotone precision envelope);
    `eleven_point=True` is VOC2007's mean of the best precision at recall >= 0, 0.1, …, 1.
    """
    true_pos, precision, n_positive = _cumulative_hits(scores_1d, labels_1d)
    if n_positive == 0:
        return float("nan")
    if eleven_point:
        return _eleven_point_ap(true_pos, precision, n_positive)
    return _envelope_ap(true_pos / n_positive, precision)


def precision_envelope(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VOCap.m's interpolation: the recall values where recall grows, and the envelope there.

    The envelope is the best precision at that recall or beyond; AP is the area under its
    step curve, precision p[i] holding on (r[i-1], r[i]] with r[-1] = 0.
    """
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return mrec[steps], mpre[steps]


def _envelope_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    step_recall, step_precision = precision_envelope(recall, precision)
    return float(np.sum(np.diff(step_recall, prepend=0.0) * step_precision))


def _eleven_point_ap(true_pos: np.ndarray, precision: np.ndarray, n_positive: int) -> float:
    """Recall >= k/10 is tested exactly, as 10·TP >= k·npos.

    The devkit's float thresholds (0:0.1:1) can miss a recall of exactly 0.3 (3·0.1 > 0.3).
    """
    total = 0.0
    for k in range(11):
        reached = 10 * true_pos >= k * n_positive
        total += float(precision[reached].max()) if reached.any() else 0.0
    return total / 11


def mean_average_precision(
    scores: np.ndarray, labels: np.ndarray, **kwargs: Any
) -> tuple[float, np.ndarray]:
    """mAP over classes with at least one positive, and the per-class AP (NaN without positives)."""
    per_class = np.array(
        [voc_ap(scores[:, c], labels[:, c], **kwargs) for c in range(scores.shape[1])]
    )
    return nanmean(per_class), per_class


# ---------------------------------------------------------------- thresholds


@dataclass(frozen=True, eq=False)
class Counts:
    """True/false positives and false negatives per class (last axis), difficult excluded."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @property
    def precision(self) -> np.ndarray:
        """TP/(TP+FP); NaN where nothing was predicted positive."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> np.ndarray:
        """TP/(TP+FN); NaN where the class has no positive."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> np.ndarray:
        """2TP/(2TP+FP+FN); NaN where the class has no positive (like recall)."""
        f1 = _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)
        return np.where(self.tp + self.fn > 0, f1, np.nan)

    @property
    def macro_precision_zero(self) -> np.ndarray:
        return np.nan_to_num(self.precision, nan=0.0).mean(axis=-1)

    @property
    def macro_precision_skip(self) -> np.ndarray:
        return nanmean(self.precision, axis=-1)

    @property
    def macro_recall(self) -> np.ndarray:
        return nanmean(self.recall, axis=-1)

    @property
    def macro_f1(self) -> np.ndarray:
        return nanmean(self.f1, axis=-1)


@dataclass(frozen=True, eq=False)
class Sweep:
    """Counts of shape (T, C) at each global threshold of `thresholds` (T,)."""

    thresholds: np.ndarray
    counts: Counts


def count_outcomes(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> Counts:
    """Counts for `score >= threshold`; thresholds (T, 1) give (T, C) counts, (C,) give (C,)."""
    cut = np.asarray(thresholds, dtype=np.float64)
    predicted = np.asarray(scores) >= cut[..., None, :]
    present, absent = labels == 1, labels == 0
    return Counts(
        tp=(predicted & present).sum(axis=-2),
        fp=(predicted & absent).sum(axis=-2),
        fn=(~predicted & present).sum(axis=-2),
    )


def threshold_sweep(
    scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray = THRESHOLDS
) -> Sweep:
    """Per-class counts at every global threshold of the grid."""
    grid = np.asarray(thresholds, dtype=np.float64)
    return Sweep(grid, count_outcomes(scores, labels, grid[:, None]))


def best_threshold(values: np.ndarray, thresholds: np.ndarray) -> tuple[float, float] | None:
    """(threshold, value) maximising `values`, NaN ignored, ties to the lower; None if all NaN."""
    values = np.asarray(values, dtype=np.float64)
    if np.all(np.isnan(values)):
        return None
    best = int(np.nanargmax(values))
    return float(thresholds[best]), float(values[best])


def per_class_thresholds(sweep: Sweep) -> np.ndarray:
    """Each class's F1-maximising threshold on the grid (ties lower); NaN without positives."""
    f1 = sweep.counts.f1
    picks = [best_threshold(f1[:, c], sweep.thresholds) for c in range(f1.shape[1])]
    return np.array([np.nan if pick is None else pick[0] for pick in picks])


def multilabel_summary(counts: Counts) -> dict[str, float]:
    """CP, CR, CF1 (class averages) and OP, OR, OF1 (pooled counts) from per-class (C,) counts.

    CP counts a class without predictions as precision 0 and OP is 0 when nothing at all is
    predicted ("zero" convention, as ML-GCN); CR skips classes without positives.
    """
    cp = float(counts.macro_precision_zero)
    cr = float(counts.macro_recall)
    tp, fp, fn = (int(array.sum()) for array in (counts.tp, counts.fp, counts.fn))
    op = tp / (tp + fp) if tp + fp else 0.0
    o_r = tp / (tp + fn) if tp + fn else float("nan")
    return {
        "CP": cp,
        "CR": cr,
        "CF1": _harmonic(cp, cr),
        "OP": op,
        "OR": o_r,
        "OF1": _harmonic(op, o_r),
    }


# ---------------------------------------------------------------- cross-fitting


@dataclass(frozen=True)
class CrossFit:
    """Macro F1 with thresholds chosen on one half of the images and scored on the other."""

    seed: int
    fold_thresholds: tuple[float, float]
    fold_macro_f1_global: tuple[float, float]
    fold_macro_f1_per_class: tuple[float, float]

    @property
    def macro_f1_global(self) -> float:
        return float(np.mean(self.fold_macro_f1_global))

    @property
    def macro_f1_per_class(self) -> float:
        return float(np.mean(self.fold_macro_f1_per_class))


def split_halves(n_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, sorted row-index halves from a seeded permutation (first half floor(n/2))."""
    order = np.random.default_rng(seed).permutation(n_images)
    half = n_images // 2
    return np.sort(order[:half]), np.sort(order[half:])


def cross_fit(
    scores: np.ndarray, labels: np.ndarray, *, seed: int = 0, thresholds: np.ndarray = THRESHOLDS
) -> CrossFit:
    """2-fold cross-fitted macro F1 for a global threshold and for per-class thresholds."""
    first, second = split_halves(len(scores), seed)
    folds = [
        _fit_and_score(scores, labels, fit, held, thresholds)
        for fit, held in ((first, second), (second, first))
    ]
    return CrossFit(
        seed=seed,
        fold_thresholds=(folds[0][0], folds[1][0]),
        fold_macro_f1_global=(folds[0][1], folds[1][1]),
        fold_macro_f1_per_class=(folds[0][2], folds[1][2]),
    )


def _fit_and_score(
    scores: np.ndarray,
    labels: np.ndarray,
    fit: np.ndarray,
    held: np.ndarray,
    thresholds: np.ndarray,
) -> tuple[float, float, float]:
    """Pick thresholds on rows `fit`; return (global threshold, held-out F1 global, per class)."""
    sweep = threshold_sweep(scores[fit], labels[fit], thresholds)
    pick = best_threshold(sweep.counts.macro_f1, sweep.thresholds)
    global_t = np.nan if pick is None else pick[0]
    per_class = fill_missing(per_class_thresholds(sweep), global_t)
    held_scores, held_labels = scores[held], labels[held]
    n_classes = scores.shape[1]
    global_f1 = macro_f1_at(held_scores, held_labels, np.full(n_classes, global_t))
    return global_t, global_f1, macro_f1_at(held_scores, held_labels, per_class)


def fill_missing(per_class: np.ndarray, fallback: float) -> np.ndarray:
    """Per-class thresholds with NaN (class without positives) replaced by `fallback`."""
    return np.where(np.isnan(per_class), fallback, per_class)


def macro_f1_at(scores: np.ndarray, labels: np.ndarray, per_class: np.ndarray) -> float:
    """Macro F1 with one threshold per class; NaN if any threshold is NaN."""
    if np.any(np.isnan(per_class)):
        return float("nan")
    return float(count_outcomes(scores, labels, per_class).macro_f1)


# ---------------------------------------------------------------- rankings


def top_k(
    ids: Sequence[str],
    scores: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    k: int = 50,
) -> dict[str, list[dict[str, Any]]]:
    """The k highest-scoring images per class (difficult included), rank 1 first, ties stable."""
    if k < 1:
        raise VocprojError(f"top-k needs k >= 1, got {k}; pass a positive number of images.")
    ranking = {}
    for c, name in enumerate(classes):
        top = descending_order(scores[:, c])[:k]
        ranking[name] = [
            {
                "rank": rank,
                "id": ids[row],
                "score": float(scores[row, c]),
                "label": int(labels[row, c]),
            }
            for rank, row in enumerate(top, start=1)
        ]
    return ranking


def precision_at_k(ranking: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Fraction of each class's listed top images with label 1 (difficult-only counts as a miss)."""
    return {
        name: sum(entry["label"] == 1 for entry in entries) / len(entries)
        for name, entries in ranking.items()
    }


def f1_best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """metrics.json's ``best_threshold_f1`` threshold, or 0.5 when no threshold has a macro F1."""
    sweep = threshold_sweep(scores, labels)
    pick = best_threshold(sweep.counts.macro_f1, sweep.thresholds)
    return FALLBACK_THRESHOLD if pick is None else pick[0]


def mistakes(
    ids: Sequence[str],
    scores: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    k: int = MISTAKES_K,
    thresholds: np.ndarray | Sequence[float] | None = None,
) -> dict[str, Any]:
    """Each class's k most confident false positives and k most missed images (mistakes.json).

    `thresholds` (one per class) decide each entry's ``predicted`` classes; None uses the
    F1-best global threshold for every class (`f1_best_threshold`).
    """
    if k < 1:
        raise VocprojError(f"mistakes needs k >= 1, got {k}; pass a positive number of images.")
    cut = _class_thresholds(scores, labels, len(classes), thresholds)

    def entries(rows: np.ndarray, c: int) -> list[dict[str, Any]]:
        return [
            {
                "rank": rank,
                "id": ids[row],
                "score": float(scores[row, c]),
                **_image_labels(scores[row], labels[row], classes, cut),
            }
            for rank, row in enumerate(rows[:k], start=1)
        ]

    per_class = {}
    for c, name in enumerate(classes):
        negatives = np.flatnonzero(labels[:, c] == 0)
        positives = np.flatnonzero(labels[:, c] == 1)
        per_class[name] = {
            "false_positives": entries(negatives[descending_order(scores[negatives, c])], c),
            "missed": entries(positives[ascending_order(scores[positives, c])], c),
        }
    thresholds_json = {name: float(t) for name, t in zip(classes, cut, strict=True)}
    return {"k": k, "thresholds": thresholds_json, "classes": per_class}


def _class_thresholds(
    scores: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    thresholds: np.ndarray | Sequence[float] | None,
) -> np.ndarray:
    """The given per-class thresholds, checked, or the F1-best global one for every class."""
    if thresholds is None:
        return np.full(n_classes, f1_best_threshold(scores, labels))
    cut = np.asarray(thresholds, dtype=np.float64)
    if cut.shape != (n_classes,) or not np.all(np.isfinite(cut)):
        raise VocprojError(
            f"mistakes needs one finite threshold per class ({n_classes}), got {cut.tolist()}; "
            "fill classes without one with fill_missing."
        )
    return cut


def _image_labels(
    scores_row: np.ndarray, labels_row: np.ndarray, classes: Sequence[str], cut: np.ndarray
) -> dict[str, list[str]]:
    """An image's present and difficult-only classes, and those predicted at `cut`."""
    return {
        "labels": [name for name, flag in zip(classes, labels_row, strict=True) if flag == 1],
        "difficult": [
            name for name, flag in zip(classes, labels_row, strict=True) if flag == DIFFICULT
        ],
        "predicted": [name for name, _ in labels_at_threshold(classes, scores_row, cut)],
    }


# ---------------------------------------------------------------- metrics.json


def compute_metrics(scores: Scores, *, k: int = 50, seed: int = 0) -> dict[str, Any]:
    """Every metric of the module as one JSON-serialisable dict (schema in the module docstring)."""
    probs, labels, classes = scores.scores, scores.labels, scores.classes
    map_, ap = mean_average_precision(probs, labels)
    map07, ap07 = mean_average_precision(probs, labels, eleven_point=True)
    sweep = threshold_sweep(probs, labels)
    best_f1 = best_threshold(sweep.counts.macro_f1, sweep.thresholds)
    best_precision = best_threshold(sweep.counts.macro_precision_zero, sweep.thresholds)
    pak = precision_at_k(top_k(scores.ids, probs, labels, classes, k))
    return {
        "schema_version": SCHEMA_VERSION,
        "n_images": len(scores.ids),
        "classes": list(classes),
        "n_positive": _per_class(classes, (labels == 1).sum(axis=0)),
        "n_difficult": _per_class(classes, (labels == DIFFICULT).sum(axis=0)),
        "map": json_float(map_),
        "ap": _per_class(classes, ap),
        "map_voc07": json_float(map07),
        "ap_voc07": _per_class(classes, ap07),
        "thresholds": [float(t) for t in sweep.thresholds],
        "sweep": _sweep_json(sweep.counts),
        "best_threshold_f1": _pick_json(best_f1, "macro_f1"),
        "best_threshold_precision": _pick_json(best_precision, "precision"),
        "per_class_thresholds": _per_class(classes, per_class_thresholds(sweep)),
        "at_threshold": _at_threshold_json(scores, None if best_f1 is None else best_f1[0]),
        "cross_fitted": _cross_fit_json(scores, sweep, seed),
        "precision_at_k": {"k": k, "per_class": pak, "mean": float(np.mean(list(pak.values())))},
        "study": {"best_precision": STUDY_BEST_PRECISION, "threshold": STUDY_THRESHOLD},
    }


def write_metrics(
    scores_npz: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    k: int = 50,
) -> dict[str, Any]:
    """Write metrics.json, top50.json and mistakes.json for a scores file into `out_dir`.

    Returns the metrics.
    """
    scores = load_scores(scores_npz)
    out = Path(out_dir)
    metrics = compute_metrics(scores, k=k)
    arrays = (scores.ids, scores.scores, scores.labels, scores.classes)
    atomic_write_json(out / METRICS_FILE, metrics)
    atomic_write_json(out / TOP_K_FILE, top_k(*arrays, k))
    atomic_write_json(out / MISTAKES_FILE, mistakes(*arrays))
    return metrics


def _sweep_json(counts: Counts) -> dict[str, list[float | None]]:
    return {
        "precision_zero": _json_list(counts.macro_precision_zero),
        "precision_skip": _json_list(counts.macro_precision_skip),
        "recall": _json_list(counts.macro_recall),
        "f1": _json_list(counts.macro_f1),
    }


def _at_threshold_json(scores: Scores, threshold: float | None) -> dict[str, Any] | None:
    if threshold is None:
        return None
    counts = count_outcomes(scores.scores, scores.labels, np.full(len(scores.classes), threshold))
    per_class = {
        name: {
            "precision": json_float(counts.precision[c]),
            "recall": json_float(counts.recall[c]),
            "f1": json_float(counts.f1[c]),
        }
        for c, name in enumerate(scores.classes)
    }
    summary = {key: json_float(value) for key, value in multilabel_summary(counts).items()}
    return {
        "threshold": threshold,
        **summary,
        "macro_precision_zero": json_float(counts.macro_precision_zero),
        "macro_precision_skip": json_float(counts.macro_precision_skip),
        "macro_recall": json_float(counts.macro_recall),
        "macro_f1": json_float(counts.macro_f1),
        "per_class": per_class,
    }


def _cross_fit_json(scores: Scores, sweep: Sweep, seed: int) -> dict[str, Any]:
    fitted = cross_fit(scores.scores, scores.labels, seed=seed, thresholds=sweep.thresholds)
    best = best_threshold(sweep.counts.macro_f1, sweep.thresholds)
    global_t = np.nan if best is None else best[0]
    own_per_class = fill_missing(per_class_thresholds(sweep), global_t)
    return {
        "seed": seed,
        "global": {
            "val_on_val": None if best is None else best[1],
            "cross_fitted": json_float(fitted.macro_f1_global),
            "fold_thresholds": _json_list(fitted.fold_thresholds),
            "fold_macro_f1": _json_list(fitted.fold_macro_f1_global),
        },
        "per_class": {
            "val_on_val": json_float(macro_f1_at(scores.scores, scores.labels, own_per_class)),
            "cross_fitted": json_float(fitted.macro_f1_per_class),
            "fold_macro_f1": _json_list(fitted.fold_macro_f1_per_class),
        },
    }


def _pick_json(pick: tuple[float, float] | None, value_key: str) -> dict[str, float] | None:
    return None if pick is None else {"threshold": pick[0], value_key: pick[1]}


def _per_class(classes: Sequence[str], values: np.ndarray) -> dict[str, Any]:
    if values.dtype.kind in "iu":
        return {name: int(value) for name, value in zip(classes, values, strict=True)}
    return {name: json_float(value) for name, value in zip(classes, values, strict=True)}


def _json_list(values: Sequence[float] | np.ndarray) -> list[float | None]:
    return [json_float(value) for value in values]


def json_float(value: float) -> float | None:
    """A plain float, or None where it is NaN (JSON has no NaN)."""
    value = float(value)
    return None if np.isnan(value) else value


# ---------------------------------------------------------------- small helpers


def nanmean(values: np.ndarray, axis: int | None = None) -> Any:
    """Mean ignoring NaN; NaN (without a warning) where every value is NaN."""
    values = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(values)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    count = valid.sum(axis=axis)
    return _ratio(total, count)


def _ratio(numerator: Any, denominator: Any) -> Any:
    """numerator / denominator elementwise, NaN where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out if out.ndim else float(out)


def _harmonic(a: float, b: float) -> float:
    """2ab/(a+b); 0 when both are 0, NaN if either is NaN."""
    if np.isnan(a) or np.isnan(b):
        return float("nan")
    return 2 * a * b / (a + b) if a + b else 0.0
