"""The linear-probe yardstick: frozen pretrained features, one logistic regression per class.

What fine-tuning must beat: the backbone's starting weights, frozen, give each image of a split
the features its head would receive (global average pool, eval preprocessing); one L2-regularised
logistic regression per class is fitted on the train split's features and scored on val with
VOC AP, difficult-only labels left out of both. The regularisation C (one for all classes) is
chosen by cross-validation on the train split alone: each C of `C_GRID` scores every train image
with the regressions fitted on the other folds (multi-label stratified folds), and the C whose
out-of-fold scores give the best mAP is refitted on the whole train split. The features are
phase 1's when a head-only first phase computed them (vocproj/training/features.py), else
computed here and kept for the next time. Written to `reports/<profile>/probe.json`.
"""

from __future__ import annotations

import time

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.linear_model import LogisticRegression
from torch import nn

from vocproj.artifacts import RunFiles
from vocproj.config import Profile
from vocproj.data.prepare import open_split, prepared
from vocproj.data.voc import PRESENT
from vocproj.io import atomic_write_json
from vocproj.locks import owns_run_folder
from vocproj.metrics.multilabel import mean_average_precision
from vocproj.training.features import FeatureItems, starting_features
from vocproj.training.phases import on_runtime, starting_model
from vocproj.training.runtime import Runtime, runtime_for

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # inverse L2 strengths tried, scikit-learn's 1 among them
CV_FOLDS = 5


def split_features(
    profile: Profile, split: str, classes: tuple[str, ...], runtime: Runtime, progress: bool
) -> FeatureItems:
    """The starting weights' features of every image of a split (read back when current)."""
    dataset = open_split(profile, split, "eval", classes=classes, progress=progress)

    def starting_network() -> nn.Module:
        return on_runtime(starting_model(profile, classes), runtime)

    return starting_features(profile, dataset, runtime, starting_network, progress)


def fit_and_score(
    train_x: np.ndarray, train_labels: np.ndarray, val_x: np.ndarray, c: float
) -> np.ndarray:
    """Val probabilities N×C of one logistic regression per class fitted on the train features."""
    scores = np.zeros((len(val_x), train_labels.shape[1]))
    for k in range(train_labels.shape[1]):
        known = train_labels[:, k] != -1  # difficult-only: left out of the fit
        target = train_labels[known, k] == PRESENT
        if target.all() or not target.any():
            scores[:, k] = float(target.mean()) if target.size else 0.0
            continue
        regression = LogisticRegression(C=c, max_iter=2000)
        scores[:, k] = regression.fit(train_x[known], target).predict_proba(val_x)[:, 1]
    return scores


def cross_validated_map(
    x: np.ndarray, labels: np.ndarray, grid: tuple[float, ...], folds: int, seed: int
) -> dict[float, float]:
    """Each C's mAP over the split from out-of-fold scores (multi-label stratified folds)."""
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    parts = list(splitter.split(x, labels == PRESENT))
    result = {}
    for c in grid:
        out_of_fold = np.zeros(labels.shape)
        for fit, held_out in parts:
            out_of_fold[held_out] = fit_and_score(x[fit], labels[fit], x[held_out], c)
        result[c] = float(mean_average_precision(out_of_fold, labels)[0])
    return result


@owns_run_folder("the linear probe")
def linear_probe(profile: Profile, *, c: float | None = None, progress: bool = True) -> dict:
    """Fit the probe on the train split (C cross-validated unless given), score val, write
    probe.json; return its contents."""
    started = time.perf_counter()
    classes = prepared(profile, progress=progress).classes
    settings = profile.settings
    runtime = runtime_for(profile)
    train, val = (
        split_features(profile, split, classes, runtime, progress)
        for split in (settings.data.train_split, settings.data.val_split)
    )
    train_x, val_x = train.features.numpy(), val.features.numpy()
    train_labels = train.split.labels
    cv = None
    if c is None:
        cv = cross_validated_map(train_x, train_labels, C_GRID, CV_FOLDS, settings.seed)
        c = max(cv, key=cv.get)
    scores = fit_and_score(train_x, train_labels, val_x, c)
    mean_ap, per_class = mean_average_precision(scores, val.split.labels)
    result = {
        "map": float(mean_ap),
        "ap": {name: _number(ap) for name, ap in zip(classes, per_class, strict=True)},
        "C": c,
        "cross_validation": None
        if cv is None
        else {"folds": CV_FOLDS, "map_by_C": {f"{k:g}": v for k, v in cv.items()}},
        "backbone": settings.model.backbone,
        "weights": settings.model.weights,
        "image_size": settings.train.image_size,
        "features": int(train_x.shape[1]),
        "features_reused": train.from_file and val.from_file,
        "n_train": len(train_x),
        "n_val": len(val_x),
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(RunFiles.of(profile).probe, result)
    return result


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
