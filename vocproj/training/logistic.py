"""The linear probe's fit: one L2-regularised logistic regression per class on frozen features,
its C chosen by cross-validation on the training images alone.

A first phase with `train: probe` makes the new head this fit (its weights and biases are the
regressions'), so that fine-tuning starts from the best linear head the frozen features allow;
the linear-probe yardstick (vocproj/evaluation/probe.py) is the same fit, scored on val.
Cross-validation: each C of `C_GRID` scores every training image with the regressions fitted on
the other folds (multi-label stratified folds), and the C whose out-of-fold scores give the best
mAP wins (the smaller C on a tie). The fits run single-threaded: beside PyTorch's threads, a
multi-threaded BLAS on these small matrices measured 26x slower on 2 cores (45 s against 1.7 s
for two C's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from vocproj.metrics.multilabel import mean_average_precision

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # inverse L2 strengths tried, scikit-learn's 1 among them
CV_FOLDS = 5
MAX_ITERATIONS = 2000
RATE_LIMIT = 1e-4  # a class present in all or none of the images: its rate, kept off 0 and 1


@dataclass(frozen=True)
class LinearHead:
    """K regressions over D features: weights K×D, biases K (a Linear layer's parameters)."""

    weights: np.ndarray
    biases: np.ndarray

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return np.exp(-np.logaddexp(0.0, -(x @ self.weights.T + self.biases)))  # the sigmoid


def fit_logistic_head(
    x: np.ndarray, targets: np.ndarray, masks: np.ndarray, c: float
) -> LinearHead:
    """One regression per class on the labels its mask keeps (difficult-only ones left out)."""
    with threadpool_limits(limits=1, user_api="blas"):
        fits = [fit_class(x, targets[:, k], masks[:, k], c) for k in range(targets.shape[1])]
    return LinearHead(np.stack([w for w, _ in fits]), np.array([b for _, b in fits]))


def fit_class(
    x: np.ndarray, target: np.ndarray, mask: np.ndarray, c: float
) -> tuple[np.ndarray, float]:
    """One class's regression: its weights (D) and bias."""
    kept = mask > 0
    present = target[kept] > 0.5
    if present.all() or not present.any():  # nothing to tell apart: the class's rate
        rate = np.clip(present.mean() if present.size else 0.0, RATE_LIMIT, 1 - RATE_LIMIT)
        return np.zeros(x.shape[1]), float(np.log(rate / (1 - rate)))
    regression = LogisticRegression(C=c, max_iter=MAX_ITERATIONS).fit(x[kept], present)
    return regression.coef_[0], float(regression.intercept_[0])


def cross_validated_map(
    x: np.ndarray,
    targets: np.ndarray,
    masks: np.ndarray,
    seed: int,
    grid: tuple[float, ...] = C_GRID,
    folds: int = CV_FOLDS,
) -> dict[float, float]:
    """Each C's mAP over the images from out-of-fold scores (multi-label stratified folds)."""
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    parts = list(splitter.split(x, (targets * masks) > 0.5))
    labels = np.where(masks > 0, targets, -1)  # mean_average_precision's labels: -1 left out
    result = {}
    for c in grid:
        out_of_fold = np.zeros(targets.shape)
        for fit, held_out in parts:
            head = fit_logistic_head(x[fit], targets[fit], masks[fit], c)
            out_of_fold[held_out] = head.probabilities(x[held_out])
        result[c] = float(mean_average_precision(out_of_fold, labels)[0])
    return result


def best_c(map_by_c: dict[float, float]) -> float:
    """The C with the best cross-validated mAP (the first, so the smaller, on a tie)."""
    return max(map_by_c, key=map_by_c.get)
