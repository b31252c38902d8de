"""Scoring a split with the best checkpoint (with test-time augmentation if the profile says),
the metrics and rankings from the scores, and the mAP and cost of each test-time augmentation.

Without augmentation the split comes from the uint8 image cache; with one, each image's views
(vocproj/images.py `model_views`: the same pixels `predict` makes) are decoded from the file,
run as one batch and their probabilities averaged.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from vocproj.artifacts import RunFiles
from vocproj.config import Profile
from vocproj.data.prepare import open_split, prepared, read_split
from vocproj.data.voc import VOCClassification
from vocproj.images import TTA_VIEWS, Normalisation, model_views
from vocproj.io import atomic_write_json
from vocproj.locks import owns_run_folder
from vocproj.metrics.calibration import write_calibration
from vocproj.metrics.multilabel import mean_average_precision, save_scores, write_metrics
from vocproj.model.network import checkpoint_normalisation, load_checkpoint, model_from_checkpoint
from vocproj.training.batches import loader, predict_logits
from vocproj.training.phases import on_runtime
from vocproj.training.runtime import Runtime, runtime_for, select_num_workers


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


def views_tensor(image: Image.Image, size: int, normalisation: Normalisation, tta: str) -> Any:
    """One image's V×3×S×S views as a tensor (a Dataset transform)."""
    return torch.from_numpy(model_views(image, size, normalisation, tta))


def views_split(
    profile: Profile, split: str, classes: tuple[str, ...], checkpoint: dict[str, Any], tta: str
) -> VOCClassification:
    """The split whose items are each image's views under `tta`, decoded from the files."""
    transform = partial(
        views_tensor,
        size=int(checkpoint["image_size"]),
        normalisation=checkpoint_normalisation(checkpoint),
        tta=tta,
    )
    return VOCClassification(
        read_split(profile, split, classes), transform, profile.settings.data.difficult
    )


def views_runtime(profile: Profile) -> Runtime:
    """The profile's runtime with the loader workers of a split decoded from its files."""
    runtime = runtime_for(profile)
    workers = select_num_workers(profile.settings.data.num_workers, runtime.device, cached=False)
    return dataclasses.replace(runtime, num_workers=workers)


@torch.no_grad()
def predict_views(
    model: nn.Module, dataset: Any, runtime: Runtime, batch_size: int, progress: bool = False
) -> tuple[list[str], np.ndarray]:
    """Ids and N×C probabilities, each the mean over the image's views."""
    model.eval()
    ids: list[str] = []
    probabilities = []
    batches = loader(dataset, batch_size, runtime, seed=None)
    for views, _, _, batch_ids in tqdm(
        batches, desc="predict views", leave=False, disable=not progress, unit="batch"
    ):
        count, per_image = views.shape[:2]
        with runtime.autocast():
            logits = model(runtime.to_device(views.flatten(0, 1))).float()
        probabilities.append(torch.sigmoid(logits).view(count, per_image, -1).mean(1).cpu())
        ids.extend(batch_ids)
    return ids, torch.cat(probabilities).numpy()


def score_split(
    profile: Profile, split: str | None = None, progress: bool = True, tta: str | None = None
) -> Path:
    """Write runs/<profile>/scores_<split>.npz from the best checkpoint (with `evaluate.tta`)."""
    split = split or profile.settings.data.val_split
    tta = tta or profile.settings.evaluate.tta
    classes = prepared(profile, progress=progress).classes
    runtime = runtime_for(profile) if tta == "none" else views_runtime(profile)
    model, checkpoint = load_best_model(profile, runtime, classes)
    batch_size = profile.settings.train.eval_batch_size
    if tta == "none":
        normalisation = checkpoint_normalisation(checkpoint)
        dataset = open_split(
            profile, split, "eval", classes=classes, normalisation=normalisation, progress=progress
        )
        ids, scores = predict(model, dataset, runtime, batch_size, progress)
    else:
        dataset = views_split(profile, split, classes, checkpoint, tta)
        images_per_batch = max(1, batch_size // TTA_VIEWS[tta])
        ids, scores = predict_views(model, dataset, runtime, images_per_batch, progress)
    path = RunFiles.of(profile).scores(split)
    save_scores(path, ids, scores, dataset.labels, classes)
    return path


@owns_run_folder("the evaluation")
def evaluate(profile: Profile, split: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Score the split, then write metrics.json, top50.json, mistakes.json and
    calibration.json; return the metrics."""
    path = score_split(profile, split, progress)
    metrics = write_metrics(path, profile.report_dir)
    write_calibration(path, profile.report_dir, seed=profile.settings.seed)
    return metrics


@owns_run_folder("test-time augmentation")
def compare_tta(
    profile: Profile, modes: list[str] | None = None, split: str | None = None
) -> dict[str, Any]:
    """Score the split under each test-time augmentation; write and return tta.json.

    Every mode, `none` included, decodes the files and runs its views the same way, so the
    seconds compare like with like (the cached evaluation without augmentation is faster).
    tta.json: {"split", "images", "chosen", "modes": {mode: {"views", "map", "map_voc07",
    "seconds", "images_per_second"}}}.
    """
    split = split or profile.settings.data.val_split
    modes = modes or profile.settings.evaluate.tta_compare
    classes = prepared(profile, progress=False).classes
    runtime = views_runtime(profile)
    model, checkpoint = load_best_model(profile, runtime, classes)
    results = {}
    for mode in modes:
        dataset = views_split(profile, split, classes, checkpoint, mode)
        images_per_batch = max(1, profile.settings.train.eval_batch_size // TTA_VIEWS[mode])
        started = time.perf_counter()
        _, scores = predict_views(model, dataset, runtime, images_per_batch)
        seconds = time.perf_counter() - started
        map_, _ = mean_average_precision(scores, dataset.labels)
        map07, _ = mean_average_precision(scores, dataset.labels, eleven_point=True)
        results[mode] = {
            "views": TTA_VIEWS[mode],
            "map": float(map_),
            "map_voc07": float(map07),
            "seconds": round(seconds, 2),
            "images_per_second": round(len(dataset) / seconds, 2),
        }
    summary = {
        "split": split,
        "images": len(dataset),
        "chosen": profile.settings.evaluate.tta,
        "modes": results,
    }
    atomic_write_json(RunFiles.of(profile).tta, summary)
    return summary
