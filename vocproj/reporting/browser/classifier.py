"""The best checkpoint's network, ready to score one image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from vocproj.artifacts import RunFiles, read_record
from vocproj.config import Profile
from vocproj.errors import CheckpointError
from vocproj.images import Normalisation, model_input
from vocproj.model.network import checkpoint_normalisation, load_checkpoint, model_from_checkpoint

CHECKPOINT_NOTEBOOK = "notebooks/03_phase3_colour_flip.ipynb"


@dataclass(frozen=True)
class Classifier:
    """The best checkpoint's network in eval mode on the CPU, with its eval preprocessing."""

    model: nn.Module
    image_size: int
    checkpoint: Path
    normalisation: Normalisation
    classes: tuple[str, ...]

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One image as the 1×3×S×S batch the network was evaluated on."""
        pixels = model_input(image, self.image_size, self.normalisation)
        return torch.from_numpy(pixels).unsqueeze(0)


def load_classifier(profile: Profile) -> Classifier:
    """The best checkpoint over all phases, trained for the run's classes (run.json)."""
    files = RunFiles.of(profile)
    path = files.final_best
    if not path.is_file():
        raise CheckpointError(
            f"No trained model yet: {path} not found. Run {CHECKPOINT_NOTEBOOK} first "
            f"(or `python -m vocproj train --profile {profile.profile} --phase all`)."
        )
    classes = read_record(files).classes
    checkpoint = load_checkpoint(path)
    try:
        model = model_from_checkpoint(checkpoint, classes, path).eval()
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} does not fit model.backbone={profile.settings.model.backbone!r} of the "
            f"profile ({str(err)[:200]}); retrain with {CHECKPOINT_NOTEBOOK}."
        ) from None
    image_size = int(checkpoint.get("image_size", profile.settings.train.image_size))
    return Classifier(model, image_size, path, checkpoint_normalisation(checkpoint), classes)


@torch.no_grad()
def predict_probabilities(classifier: Classifier, image: Image.Image) -> np.ndarray:
    """The 20 class probabilities (sigmoid of the logits) of one RGB image."""
    logits = classifier.model(classifier.preprocess(image))
    return torch.sigmoid(logits)[0].numpy()
