"""Scoring a split with the best checkpoint, then the metrics and rankings from the scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vocproj.artifacts import RunFiles
from vocproj.config import Profile
from vocproj.data import open_split, prepare_data
from vocproj.metrics import save_scores, write_metrics
from vocproj.model import checkpoint_normalisation, load_checkpoint, model_from_checkpoint
from vocproj.runtime import Runtime, runtime_for
from vocproj.train import loader, on_runtime, predict_logits


def load_best_model(
    profile: Profile, runtime: Runtime, classes: tuple[str, ...]
) -> tuple[nn.Module, dict[str, Any]]:
    """The best checkpoint over all phases, on the runtime's device in eval mode."""
    path = RunFiles.of(profile).final_best
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, classes, path)
    return on_runtime(model, runtime).eval(), checkpoint


def predict(
    model: nn.Module, dataset: Any, runtime: Runtime, batch_size: int = 64, progress: bool = False
) -> tuple[list[str], Any]:
    """Ids and an N×C array of probabilities (the sigmoid of the model's logits)."""
    batches = loader(dataset, batch_size, runtime, seed=None)
    ids, logits, _, _ = predict_logits(model, batches, runtime, progress)
    return ids, torch.sigmoid(logits).numpy()


def score_split(profile: Profile, split: str | None = None, progress: bool = True) -> Path:
    """Write runs/<profile>/scores_<split>.npz from the best checkpoint."""
    split = split or profile.settings.data.val_split
    classes = prepare_data(profile, progress=progress).classes
    runtime = runtime_for(profile)
    model, checkpoint = load_best_model(profile, runtime, classes)
    normalisation = checkpoint_normalisation(checkpoint)
    dataset = open_split(
        profile, split, "eval", classes=classes, normalisation=normalisation, progress=progress
    )
    ids, scores = predict(model, dataset, runtime, profile.settings.train.eval_batch_size, progress)
    path = RunFiles.of(profile).scores(split)
    save_scores(path, ids, scores, dataset.labels, classes)
    return path


def evaluate(profile: Profile, split: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Score the split, then write metrics.json and top50.json; return the metrics."""
    path = score_split(profile, split, progress)
    return write_metrics(path, profile.report_dir)
