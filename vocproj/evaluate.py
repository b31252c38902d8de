"""Scoring a split with the best checkpoint, then the metrics, rankings and figures from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vocproj.config import Profile
from vocproj.data import open_split, prepare_data
from vocproj.metrics import save_scores, write_metrics
from vocproj.model import checkpoint_normalisation, load_checkpoint
from vocproj.plots import plot_loss_history
from vocproj.runtime import Runtime, runtime_for
from vocproj.train import (
    final_best_checkpoint,
    history_path,
    loader,
    model_from_checkpoint,
    on_runtime,
    predict_logits,
    read_history,
)

LOSS_FIGURE = "loss.png"


def scores_path(profile: Profile, split: str) -> Path:
    return profile.run_dir / f"scores_{split}.npz"


def figures_dir(profile: Profile) -> Path:
    return profile.report_dir / "figures"


def load_best_model(profile: Profile, runtime: Runtime) -> tuple[nn.Module, dict[str, Any]]:
    """The best checkpoint over all phases, on the runtime's device in eval mode."""
    checkpoint = load_checkpoint(final_best_checkpoint(profile))
    model = on_runtime(model_from_checkpoint(profile, checkpoint), runtime).eval()
    return model, checkpoint


def predict(
    model: nn.Module, dataset: Any, runtime: Runtime, batch_size: int = 64, progress: bool = False
) -> tuple[list[str], Any]:
    """Ids and an N×20 array of probabilities (the sigmoid of the model's logits)."""
    batches = loader(dataset, batch_size, runtime, seed=None)
    ids, logits, _, _ = predict_logits(model, batches, runtime, progress)
    return ids, torch.sigmoid(logits).numpy()


def score_split(profile: Profile, split: str | None = None, progress: bool = True) -> Path:
    """Write runs/<profile>/scores_<split>.npz from the best checkpoint."""
    split = split or profile.settings.data.val_split
    prepare_data(profile, progress=progress)
    runtime = runtime_for(profile)
    model, checkpoint = load_best_model(profile, runtime)
    normalisation = checkpoint_normalisation(checkpoint)
    dataset = open_split(profile, split, "eval", normalisation=normalisation, progress=progress)
    ids, scores = predict(model, dataset, runtime, profile.settings.train.eval_batch_size, progress)
    path = scores_path(profile, split)
    save_scores(path, ids, scores, dataset.labels, checkpoint["classes"])
    return path


def evaluate(profile: Profile, split: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Score the split, then write metrics.json, top50.json and every figure of the report."""
    path = score_split(profile, split, progress)
    plot_loss_history(read_history(history_path(profile)), figures_dir(profile) / LOSS_FIGURE)
    return write_metrics(path, profile.report_dir, figures_dir=figures_dir(profile))
