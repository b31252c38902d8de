"""The linear-probe yardstick: frozen pretrained features, one logistic regression per class.

What fine-tuning must beat: the backbone's starting weights, frozen, give each image of a split
the features its head would receive (global average pool, eval preprocessing); one L2-regularised
logistic regression per class is fitted on the train split's features and scored on val with
VOC AP, difficult-only labels left out of both. Written to `reports/<profile>/probe.json`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from torch import nn

from vocproj.artifacts import RunFiles
from vocproj.config import Profile
from vocproj.data.prepare import open_split, prepared
from vocproj.data.voc import PRESENT
from vocproj.io import atomic_write_json
from vocproj.locks import owns_run_folder
from vocproj.metrics.multilabel import mean_average_precision
from vocproj.model.network import build_model
from vocproj.training.phases import frozen_features, on_runtime
from vocproj.training.runtime import Runtime, runtime_for

DEFAULT_C = 1.0  # inverse L2 strength, scikit-learn's default


def split_features(
    profile: Profile,
    model: nn.Module,
    runtime: Runtime,
    split: str,
    classes: tuple[str, ...],
    progress: bool,
) -> tuple[np.ndarray, Any]:
    """The frozen network's features of every image of a split, and the split."""
    dataset = open_split(profile, split, "eval", classes=classes, progress=progress)
    batch_size = profile.settings.train.eval_batch_size
    items = frozen_features(model, dataset, batch_size, runtime, progress)
    return items.features.numpy(), dataset


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


@owns_run_folder("the linear probe")
def linear_probe(profile: Profile, *, c: float = DEFAULT_C, progress: bool = True) -> dict:
    """Fit the probe on the train split, score val, write probe.json; return its contents."""
    started = time.perf_counter()
    classes = prepared(profile, progress=progress).classes
    settings = profile.settings
    runtime = runtime_for(profile)
    starting = build_model(settings.model.backbone, settings.model.weights, len(classes))
    model = on_runtime(starting, runtime)
    train_x, train_set = split_features(
        profile, model, runtime, settings.data.train_split, classes, progress
    )
    val_x, val_set = split_features(
        profile, model, runtime, settings.data.val_split, classes, progress
    )
    scores = fit_and_score(train_x, train_set.labels, val_x, c)
    mean_ap, per_class = mean_average_precision(scores, val_set.labels)
    result = {
        "map": float(mean_ap),
        "ap": {name: _number(ap) for name, ap in zip(classes, per_class, strict=True)},
        "C": c,
        "backbone": profile.settings.model.backbone,
        "weights": profile.settings.model.weights,
        "features": int(train_x.shape[1]),
        "n_train": len(train_set),
        "n_val": len(val_set),
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(RunFiles.of(profile).probe, result)
    return result


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
