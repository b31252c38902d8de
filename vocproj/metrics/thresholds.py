"""The decision rule: which classes a probability vector names at its thresholds.

numpy only, so that evaluation, the browser and the torch-free ONNX service share one rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

NOT_IDENTIFIED = "Not Identified"  # the study's words when no class passes the threshold


def threshold_vector(
    classes: Sequence[str], threshold: float, per_class: Mapping[str, float | None] | None = None
) -> np.ndarray:
    """One threshold per class: the per-class value where there is one, else `threshold`."""
    chosen = per_class or {}
    return np.array([
        threshold if chosen.get(name) is None else chosen[name] for name in classes
    ], dtype=float)  # fmt: skip


def labels_at_threshold(
    classes: Sequence[str], probabilities: np.ndarray, thresholds: float | np.ndarray
) -> list[tuple[str, float]]:
    """The classes with probability ≥ their threshold, as (name, probability), highest first."""
    limits = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(classes),))
    found = [
        (name, float(p))
        for name, p, limit in zip(classes, probabilities, limits, strict=True)
        if p >= limit
    ]
    return sorted(found, key=lambda item: -item[1])
