"""Probability calibration: reliability bins, expected calibration error, temperature scaling.

Inputs follow vocproj/metrics/multilabel.py: an N×C array of sigmoid probabilities and an int8
N×C label array, 1 = present, 0 = absent, -1 = difficult only. Difficult entries (-1) are left
out of every number for their class: of the bins, the ECE, the mean BCE and the temperature
fits.

Conventions (each one is tested in tests/test_calibration.py):

- Bins: B equal-width bins over [0, 1]; bin i holds i/B <= p < (i+1)/B, and p = 1.0 goes in the
  last bin. ECE = Σ_b (count_b / N) · |frequency_b − mean_probability_b|; empty bins add 0.
- Per class: over that class's non-difficult entries; pooled: over every non-difficult entry of
  every class together; macro: the mean of the per-class values, NaN ones left out.
- NLL: the mean binary cross-entropy, probabilities clipped to [1e-7, 1 − 1e-7].
- Temperature scaling: z = logit(clip(p, 1e-7, 1 − 1e-7)), p' = sigmoid(z / T). T minimises the
  mean BCE of the non-difficult entries (bounded Brent search over log T, T in [0.05, 20]);
  "single" fits one T for all classes, "per_class" one per class. A fit with no positive or
  no negative entry keeps T = 1.
- Cross-fitting, as metrics.cross_fit does for thresholds: `metrics.split_halves(N, seed)`
  splits the rows; fold 1 fits on the first half and scores the second, fold 2 the other way
  round. Held-out numbers are the mean of the two folds (NaN folds left out); "before" is the
  raw probabilities of the held-out rows.

calibration.json schema (version 1); every float may be null where it is undefined (never NaN):

- ``schema_version``: 1; ``bins``: B; ``seed``: the split seed; ``n_images``: N;
  ``classes``: [str]
- ``pooled``: {"n": non-difficult entries, "ece", "nll", "macro_ece", "bins": [bin],
  "held_out": {"ece", "nll", "macro_ece": {"before", "single", "per_class"}}} — the raw
  probabilities of all val rows, and the cross-fitted held-out values before and after
- ``per_class``: {class: {"n", "n_positive", "ece", "nll", "bins": [bin],
  "held_out": {"ece", "nll": {"before", "single", "per_class"}}}}
- ``temperature``: {"single": {"all_val": T, "folds": [T1, T2]},
  "per_class": {"all_val": {class: T}, "folds": [{class: T}, {class: T}]}} — "all_val" is
  fitted on every val row: the temperatures one would deploy
- ``after_temperature``: the all-val temperatures applied to all val rows (in-sample, for the
  figures): {"pooled": {"single", "per_class": {"ece", "nll", "macro_ece", "bins": [bin]}},
  "per_class": {class: {"ece", "nll", "bins": [bin]}}} (each class after its own temperature)
- a bin is {"lower", "upper", "count", "mean_probability", "frequency"}; the last two are null
  in an empty bin
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from vocproj.artifacts import CALIBRATION_FILE
from vocproj.errors import ScoresError, VocprojError
from vocproj.io import atomic_write_json
from vocproj.metrics.multilabel import (
    DIFFICULT,
    Scores,
    json_float,
    load_scores,
    nanmean,
    split_halves,
)

SCHEMA_VERSION = 1
DEFAULT_BINS = 15
EPSILON = 1e-7
NEUTRAL_TEMPERATURE = 1.0
LOG_TEMPERATURE_BOUNDS = (math.log(0.05), math.log(20.0))
VARIANTS = ("before", "single", "per_class")


# ---------------------------------------------------------------- reliability and ECE


@dataclass(frozen=True, eq=False)
class Reliability:
    """Equal-width bins over [0, 1]: edges (B+1,); count, mean probability, frequency (B,)."""

    edges: np.ndarray
    count: np.ndarray
    mean_probability: np.ndarray  # NaN in an empty bin
    frequency: np.ndarray  # fraction of positives; NaN in an empty bin

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """Σ count_b/N · |frequency_b − mean_probability_b|; NaN without entries."""
        if self.n == 0:
            return float("nan")
        gaps = np.where(self.count > 0, np.abs(self.frequency - self.mean_probability), 0.0)
        return float(np.sum(self.count * gaps) / self.n)


def reliability_bins(
    probabilities_1d: np.ndarray, outcomes_1d: np.ndarray, bins: int = DEFAULT_BINS
) -> Reliability:
    """Count, mean probability and frequency of positives (outcomes 0/1) in each of `bins` bins."""
    p, y = _checked_pair(probabilities_1d, outcomes_1d)
    if bins < 1:
        raise VocprojError(f"reliability bins need bins >= 1, got {bins}; pass a positive number.")
    edges = np.arange(bins + 1) / bins
    index = np.minimum(np.searchsorted(edges, p, side="right") - 1, bins - 1)
    count = np.bincount(index, minlength=bins)
    return Reliability(
        edges=edges,
        count=count,
        mean_probability=_bin_means(index, p, count),
        frequency=_bin_means(index, y, count),
    )


def expected_calibration_error(
    probabilities_1d: np.ndarray, outcomes_1d: np.ndarray, bins: int = DEFAULT_BINS
) -> float:
    """ECE of one set of probabilities with outcomes 0/1; NaN without entries."""
    return reliability_bins(probabilities_1d, outcomes_1d, bins).ece


def binary_cross_entropy(probabilities_1d: np.ndarray, outcomes_1d: np.ndarray) -> float:
    """Mean BCE (NLL) of outcomes 0/1, probabilities clipped to [1e-7, 1 − 1e-7]; NaN if empty."""
    p, y = _checked_pair(probabilities_1d, outcomes_1d)
    return _mean_bce(logit(p), y) if p.size else float("nan")


def _checked_pair(probabilities_1d: np.ndarray, outcomes_1d: np.ndarray) -> tuple[np.ndarray, ...]:
    p = np.asarray(probabilities_1d, dtype=np.float64).ravel()
    y = np.asarray(outcomes_1d).ravel()
    if p.shape != y.shape:
        raise VocprojError(f"{p.size} probabilities but {y.size} outcomes; pass one per entry.")
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise VocprojError("probabilities must lie in [0, 1] (sigmoid outputs), without NaN.")
    if not np.all((y == 0) | (y == 1)):
        raise VocprojError("outcomes must be 0 or 1; leave difficult (-1) entries out first.")
    return p, y.astype(np.float64)


def _bin_means(index: np.ndarray, values: np.ndarray, count: np.ndarray) -> np.ndarray:
    sums = np.bincount(index, weights=values, minlength=count.size)
    return np.divide(sums, count, out=np.full(count.size, np.nan), where=count > 0)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Reliability and mean BCE of each class and of all classes pooled, difficult left out."""

    per_class: tuple[Reliability, ...]
    pooled: Reliability
    class_nll: np.ndarray
    pooled_nll: float

    @property
    def class_ece(self) -> np.ndarray:
        return np.array([reliability.ece for reliability in self.per_class])

    @property
    def macro_ece(self) -> float:
        """Mean of the per-class ECEs, classes without entries left out (NaN if all are)."""
        return float(nanmean(self.class_ece))


def calibration_errors(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS
) -> Calibration:
    """Per-class and pooled reliability, ECE and NLL of N×C probabilities and labels."""
    columns = [kept_entries(probabilities[:, c], labels[:, c]) for c in range(labels.shape[1])]
    pooled = kept_entries(probabilities, labels)
    return Calibration(
        per_class=tuple(reliability_bins(p, y, bins) for p, y in columns),
        pooled=reliability_bins(*pooled, bins),
        class_nll=np.array([binary_cross_entropy(p, y) for p, y in columns]),
        pooled_nll=binary_cross_entropy(*pooled),
    )


def kept_entries(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-difficult entries (any shape) as flat probabilities and 0/1 outcomes."""
    kept = np.asarray(labels) != DIFFICULT
    return np.asarray(probabilities, dtype=np.float64)[kept], np.asarray(labels)[kept]


# ---------------------------------------------------------------- temperature scaling


def logit(probabilities: np.ndarray) -> np.ndarray:
    """log(p / (1 − p)) of p clipped to [1e-7, 1 − 1e-7]."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    return np.log(p) - np.log1p(-p)


def apply_temperature(probabilities: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """sigmoid(logit(p) / T); a vector T holds one temperature per class (the last axis)."""
    return expit(logit(probabilities) / np.asarray(temperature, dtype=np.float64))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """One T for every class, minimising the mean BCE of all non-difficult entries."""
    return _fit_temperature(*kept_entries(probabilities, labels))


def fit_class_temperatures(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One T per class (C,) from an N×C array; 1 for a class lacking a positive or a negative."""
    return np.array(
        [
            _fit_temperature(*kept_entries(probabilities[:, c], labels[:, c]))
            for c in range(labels.shape[1])
        ]
    )


def _fit_temperature(probabilities_1d: np.ndarray, outcomes_1d: np.ndarray) -> float:
    if not (np.any(outcomes_1d == 1) and np.any(outcomes_1d == 0)):
        return NEUTRAL_TEMPERATURE
    logits, outcomes = logit(probabilities_1d), outcomes_1d.astype(np.float64)
    result = minimize_scalar(
        lambda log_t: _mean_bce(logits * math.exp(-log_t), outcomes),
        bounds=LOG_TEMPERATURE_BOUNDS,
        method="bounded",
        options={"xatol": 1e-6},
    )
    return math.exp(float(result.x))


def _mean_bce(logits: np.ndarray, outcomes: np.ndarray) -> float:
    """Mean of −y·log σ(z) − (1 − y)·log(1 − σ(z)), computed as softplus(z) − y·z."""
    return float(np.mean(np.logaddexp(0.0, logits) - outcomes * logits))


# ---------------------------------------------------------------- cross-fitting


@dataclass(frozen=True, eq=False)
class HeldOutFold:
    """Temperatures fitted on one half of the rows, and the other half before and after them."""

    single: float
    per_class: np.ndarray
    before: Calibration
    after_single: Calibration
    after_per_class: Calibration

    def variants(self) -> dict[str, Calibration]:
        """The held-out calibration keyed by VARIANTS."""
        return {
            "before": self.before,
            "single": self.after_single,
            "per_class": self.after_per_class,
        }


def cross_fit_temperatures(
    probabilities: np.ndarray, labels: np.ndarray, *, bins: int = DEFAULT_BINS, seed: int = 0
) -> tuple[HeldOutFold, HeldOutFold]:
    """2-fold cross-fitted temperatures on the rows of `split_halves(N, seed)`, both ways round."""
    first, second = split_halves(len(labels), seed)
    fold_1, fold_2 = (
        _held_out_fold(probabilities, labels, fit, held, bins)
        for fit, held in ((first, second), (second, first))
    )
    return fold_1, fold_2


def _held_out_fold(
    probabilities: np.ndarray, labels: np.ndarray, fit: np.ndarray, held: np.ndarray, bins: int
) -> HeldOutFold:
    single = fit_temperature(probabilities[fit], labels[fit])
    per_class = fit_class_temperatures(probabilities[fit], labels[fit])
    held_probabilities, held_labels = probabilities[held], labels[held]
    return HeldOutFold(
        single=single,
        per_class=per_class,
        before=calibration_errors(held_probabilities, held_labels, bins),
        after_single=calibration_errors(
            apply_temperature(held_probabilities, single), held_labels, bins
        ),
        after_per_class=calibration_errors(
            apply_temperature(held_probabilities, per_class), held_labels, bins
        ),
    )


# ---------------------------------------------------------------- calibration.json


def calibration_report(
    scores: Scores, *, bins: int = DEFAULT_BINS, seed: int = 0
) -> dict[str, Any]:
    """Every number of the module as one JSON-serialisable dict (schema in the module docstring)."""
    probabilities, labels, classes = scores.scores, scores.labels, list(scores.classes)
    if not np.any(labels != DIFFICULT):
        raise ScoresError(
            "every label is difficult (-1): there is no entry to calibrate; "
            "check the labels written by the evaluate step."
        )
    before = calibration_errors(probabilities, labels, bins)
    single = fit_temperature(probabilities, labels)
    per_class = fit_class_temperatures(probabilities, labels)
    after_single = calibration_errors(apply_temperature(probabilities, single), labels, bins)
    after_per_class = calibration_errors(apply_temperature(probabilities, per_class), labels, bins)
    folds = cross_fit_temperatures(probabilities, labels, bins=bins, seed=seed)
    return {
        "schema_version": SCHEMA_VERSION,
        "bins": bins,
        "seed": seed,
        "n_images": len(labels),
        "classes": classes,
        "pooled": {**_pooled_json(before), "held_out": _pooled_held_out_json(folds)},
        "per_class": {
            name: {
                "n": before.per_class[c].n,
                "n_positive": int((labels[:, c] == 1).sum()),
                **_class_json(before, c),
                "held_out": _class_held_out_json(folds, c),
            }
            for c, name in enumerate(classes)
        },
        "temperature": {
            "single": {"all_val": single, "folds": [fold.single for fold in folds]},
            "per_class": {
                "all_val": _per_class(classes, per_class),
                "folds": [_per_class(classes, fold.per_class) for fold in folds],
            },
        },
        "after_temperature": {
            "pooled": {
                "single": _pooled_json(after_single),
                "per_class": _pooled_json(after_per_class),
            },
            "per_class": {name: _class_json(after_per_class, c) for c, name in enumerate(classes)},
        },
    }


def write_calibration(
    scores_npz: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    bins: int = DEFAULT_BINS,
    seed: int = 0,
) -> dict[str, Any]:
    """Write calibration.json for a scores file into `out_dir`; return its content."""
    scores = load_scores(scores_npz)
    try:
        report = calibration_report(scores, bins=bins, seed=seed)
    except ScoresError as err:
        raise ScoresError(f"{scores_npz}: {err}") from None
    atomic_write_json(Path(out_dir) / CALIBRATION_FILE, report)
    return report


def _pooled_json(calibration: Calibration) -> dict[str, Any]:
    return {
        "n": calibration.pooled.n,
        "ece": json_float(calibration.pooled.ece),
        "nll": json_float(calibration.pooled_nll),
        "macro_ece": json_float(calibration.macro_ece),
        "bins": bins_json(calibration.pooled),
    }


def _class_json(calibration: Calibration, c: int) -> dict[str, Any]:
    return {
        "ece": json_float(calibration.per_class[c].ece),
        "nll": json_float(calibration.class_nll[c]),
        "bins": bins_json(calibration.per_class[c]),
    }


def bins_json(reliability: Reliability) -> list[dict[str, Any]]:
    """The bins as calibration.json lists them: lower, upper, count, mean_probability, frequency."""
    return [
        {
            "lower": float(reliability.edges[b]),
            "upper": float(reliability.edges[b + 1]),
            "count": int(reliability.count[b]),
            "mean_probability": json_float(reliability.mean_probability[b]),
            "frequency": json_float(reliability.frequency[b]),
        }
        for b in range(reliability.count.size)
    ]


Measure = Callable[[Calibration], float]


def _pooled_held_out_json(folds: Sequence[HeldOutFold]) -> dict[str, dict[str, float | None]]:
    return _held_out_json(
        folds,
        {
            "ece": lambda calibration: calibration.pooled.ece,
            "nll": lambda calibration: calibration.pooled_nll,
            "macro_ece": lambda calibration: calibration.macro_ece,
        },
    )


def _class_held_out_json(folds: Sequence[HeldOutFold], c: int) -> dict[str, dict[str, Any]]:
    return _held_out_json(
        folds,
        {
            "ece": lambda calibration: calibration.per_class[c].ece,
            "nll": lambda calibration: calibration.class_nll[c],
        },
    )


def _held_out_json(
    folds: Sequence[HeldOutFold], measures: Mapping[str, Measure]
) -> dict[str, dict[str, float | None]]:
    """{measure: {variant: mean over the folds}}, NaN folds left out."""
    return {
        key: {
            variant: json_float(nanmean([measure(fold.variants()[variant]) for fold in folds]))
            for variant in VARIANTS
        }
        for key, measure in measures.items()
    }


def _per_class(classes: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {name: float(value) for name, value in zip(classes, values, strict=True)}
