"""The linear-probe yardstick: frozen pretrained features, one logistic regression per class.

What fine-tuning must beat: the backbone's starting weights, frozen, give each image of a split
the features its head would receive (global average pool, eval preprocessing); one L2-regularised
logistic regression per class is fitted on the train split's features and scored on val with
VOC AP, difficult-only labels left out of both. The regularisation C (one for all classes) is
chosen by cross-validation on the train split alone, and the regressions refitted on all of it
with that C (vocproj/training/logistic.py, the fit a `train: probe` phase makes its head). The
features are phase 1's when a head-only first phase computed them
(vocproj/training/features.py), else computed here and kept for the next time. Written to
`reports/<profile>/probe.json`.
"""

from __future__ import annotations

import time

import numpy as np
from torch import nn

from vocproj.artifacts import RunFiles
from vocproj.config import Profile
from vocproj.data.prepare import open_split, prepared
from vocproj.io import atomic_write_json
from vocproj.locks import owns_run_folder
from vocproj.metrics.multilabel import mean_average_precision
from vocproj.training.features import FeatureItems, starting_features
from vocproj.training.logistic import CV_FOLDS, best_c, cross_validated_map, fit_logistic_head
from vocproj.training.phases import on_runtime, starting_model
from vocproj.training.runtime import Runtime, runtime_for


def split_features(
    profile: Profile, split: str, classes: tuple[str, ...], runtime: Runtime, progress: bool
) -> FeatureItems:
    """The starting weights' features of every image of a split (read back when current)."""
    dataset = open_split(profile, split, "eval", classes=classes, progress=progress)

    def starting_network() -> nn.Module:
        return on_runtime(starting_model(profile, classes), runtime)

    return starting_features(profile, dataset, runtime, starting_network, progress)


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
    targets, masks = train.split.targets, train.split.masks
    cv = None
    if c is None:
        cv = cross_validated_map(train_x, targets, masks, settings.seed)
        c = best_c(cv)
    scores = fit_logistic_head(train_x, targets, masks, c).probabilities(val_x)
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
