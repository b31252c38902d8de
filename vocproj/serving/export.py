"""A trained run's model for deployment: its card, a PyTorch engine, and the ONNX export.

The card (vocproj/serving/predict.py's `ModelCard`) comes from the run: the best checkpoint's
classes, input size and normalisation, and the thresholds notebook 04 chose (metrics.json). The
export puts the sigmoid inside the graph (the model outputs probabilities, not logits), gives
the input a dynamic batch axis, writes the card into the model's metadata, and then checks the
exported model against PyTorch on the run's own validation photos before it is kept.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import vocproj
from vocproj.artifacts import ChosenThresholds, RunFiles, read_chosen_thresholds, read_record
from vocproj.config import Profile
from vocproj.data.prepare import read_split
from vocproj.data.voc import describe_classes
from vocproj.errors import CheckpointError, ScoresError
from vocproj.images import model_input, read_image
from vocproj.io import atomic_path, remove_temporaries
from vocproj.locks import owns_run_folder
from vocproj.model.network import checkpoint_normalisation, load_checkpoint, model_from_checkpoint
from vocproj.serving.onnx_runtime import load_onnx_model
from vocproj.serving.predict import Engine, ModelCard

ONNX_INPUT, ONNX_OUTPUT = "images", "probabilities"
PARITY_TOLERANCE = 1e-4  # largest probability difference allowed between ONNX and PyTorch (fp32)
PARITY_IMAGES = 16  # validation photos the export is checked on


class ExportError(CheckpointError):
    """The exported model does not give the probabilities the PyTorch network gives."""


# ------------------------------------------------------------------------------ the model


def run_model(profile: Profile) -> tuple[nn.Module, ModelCard]:
    """The run's best checkpoint in eval mode, and its card with the thresholds the run chose."""
    files = RunFiles.of(profile)
    classes = read_record(files).classes
    path = files.final_best
    if not path.is_file():
        raise CheckpointError(
            f"No trained model yet: {path} not found. Train the profile first "
            f"(`python -m vocproj train --profile {profile.profile} --phase all` or make report)."
        )
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, classes, path).eval()
    chosen = read_chosen_thresholds(files.metrics, profile.profile)
    if tuple(chosen.classes) != classes:
        raise ScoresError(
            f"{files.metrics} is for {describe_classes(chosen.classes)}, but the run has "
            f"{describe_classes(classes)} (run.json): evaluate the run again."
        )
    card = model_card(checkpoint, classes, chosen, str(path))
    return model, dataclasses.replace(card, tta=profile.settings.evaluate.tta)


def checkpoint_model(
    path: str | os.PathLike[str], metrics: str | os.PathLike[str] | None = None
) -> tuple[nn.Module, ModelCard]:
    """A checkpoint file's network and card; thresholds from a metrics.json when given."""
    checkpoint = load_checkpoint(path)
    if "classes" not in checkpoint:
        raise CheckpointError(
            f"{path} does not record its classes (a plain state dict, or a checkpoint older "
            f"than this vocproj); predict with --profile, or retrain."
        )
    classes = tuple(checkpoint["classes"])
    model = model_from_checkpoint(checkpoint, classes, path).eval()
    chosen = None if metrics is None else read_chosen_thresholds(Path(metrics), "<profile>")
    if chosen is not None and tuple(chosen.classes) != classes:
        raise ScoresError(
            f"{metrics} is for {describe_classes(chosen.classes)}, but {path} was trained for "
            f"{describe_classes(classes)}: pass the metrics.json of the checkpoint's run."
        )
    return model, model_card(checkpoint, classes, chosen, str(path))


def model_card(
    checkpoint: dict[str, Any],
    classes: tuple[str, ...],
    chosen: ChosenThresholds | None,
    source: str,
) -> ModelCard:
    return ModelCard(
        classes=classes,
        image_size=int(checkpoint["image_size"]),
        normalisation=checkpoint_normalisation(checkpoint),
        threshold=None if chosen is None else chosen.threshold,
        per_class_thresholds={} if chosen is None else chosen.per_class_thresholds,
        source=source,
    )


def torch_engine(model: nn.Module) -> Engine:
    """The network as an Engine on the CPU: float32 batches in, sigmoid probabilities out.

    Channels-last, as vocproj trains: eager depthwise convolutions run about twice as fast so
    on a CPU (EfficientNet-Lite0; `make bench` shows both layouts). The model is converted in place.
    """
    model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def run(batch: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(model(images)).numpy()

    return run


# ------------------------------------------------------------------------------ ONNX


class WithSigmoid(nn.Module):
    """The network followed by the sigmoid: probabilities out, as the exported graph gives."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.network(images))


def export_onnx(
    model: nn.Module, card: ModelCard, out: str | os.PathLike[str], extra: dict[str, str]
) -> Path:
    """Write `model` with the sigmoid inside and `card` (and `extra`) in its metadata to `out`."""
    example = torch.zeros(2, 3, card.image_size, card.image_size)  # 2: keep the batch axis free
    program = torch.onnx.export(
        WithSigmoid(model).eval(),
        (example,),
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
        dynamic_shapes={ONNX_INPUT: {0: torch.export.Dim("batch")}},
        dynamo=True,
        verbose=False,
    )
    program.model.metadata_props.update({**card.to_metadata(), **extra})
    program.model.producer_name = "vocproj"
    program.model.producer_version = vocproj.__version__
    program.save(out, external_data=False)  # one file: the weights inside
    return Path(out)


def largest_difference(engine_a: Engine, engine_b: Engine, batch: np.ndarray) -> float:
    """The largest absolute difference between two engines' probabilities on one batch."""
    return float(np.abs(engine_a(batch) - engine_b(batch)).max())


@dataclass(frozen=True)
class Export:
    """An exported model file and the parity check it passed."""

    path: Path
    card: ModelCard
    largest_difference: float
    images: int


@owns_run_folder("the export")
def export_run(profile: Profile, out: str | os.PathLike[str] | None = None) -> Export:
    """Export the run's best model to ONNX, then check it on up to 16 of the run's val photos."""
    model, card = run_model(profile)
    target = Path(out) if out is not None else RunFiles.of(profile).onnx
    extra = {
        "profile": profile.profile,
        "backbone": profile.settings.model.backbone,
        "checkpoint": card.source,
    }
    val = read_split(profile, profile.settings.data.val_split, card.classes)
    batch = parity_batch(val.image_paths[:PARITY_IMAGES], card)
    remove_temporaries(target.parent, target.name)  # an export killed midway left its own
    with atomic_path(target) as tmp:  # replaces `target` only once the check has passed
        export_onnx(model, card, tmp, extra)
        onnx_engine, _ = load_onnx_model(tmp)
        difference = largest_difference(torch_engine(model), onnx_engine, batch)
        if difference > PARITY_TOLERANCE:
            raise ExportError(
                f"the exported model's probabilities differ from PyTorch's by up to "
                f"{difference:.2e} on {len(batch)} val photos (allowed {PARITY_TOLERANCE:g}), so "
                f"{target} was not written. Report this with the backbone "
                f"({profile.settings.model.backbone}) and the torch and onnxruntime versions."
            )
    return Export(target, card, difference, len(batch))


def parity_batch(paths: Sequence[Path], card: ModelCard) -> np.ndarray:
    """The model inputs of some photos, as the predict command makes them."""
    return np.stack(
        [model_input(read_image(p), card.image_size, card.normalisation) for p in paths]
    )
