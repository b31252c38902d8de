"""The per-phase preprocessing and augmentation presets (torchvision transforms v2).

- `resize_crop` (phase 1): resize the short side to `size`, center-crop `size`×`size`;
- `rotate` (phase 2): phase 1 plus a random rotation in [-degrees, degrees];
- `jitter_flip` (phase 3): colour jitter (saturation, hue) and a random horizontal flip, with
  the rotation kept only if the profile says so (the study reads as: it is not);
- `eval`: resize + center-crop only.
Every preset ends with the backbone's input normalisation (ImageNet's mean and std for
torchvision's weights, [-1, 1] for EfficientNet-Lite's). They accept PIL images and uint8 tensors.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchvision.transforms import v2

from vocproj.config import AugmentSettings
from vocproj.images import IMAGENET, Normalisation

PRESETS: tuple[str, ...] = ("resize_crop", "rotate", "jitter_flip", "eval")
PresetName = Literal["resize_crop", "rotate", "jitter_flip", "eval"]


def geometry(size: int) -> list[v2.Transform]:
    """Resize the short side to `size` and center-crop a square, as the study's phase 1."""
    return [v2.Resize(size, antialias=True), v2.CenterCrop(size)]


def to_normalised_tensor(normalisation: Normalisation = IMAGENET) -> list[v2.Transform]:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(normalisation.mean, normalisation.std),
    ]


def augmentations(preset: PresetName, augment: AugmentSettings) -> list[v2.Transform]:
    """The random part of a preset (empty for `resize_crop` and `eval`)."""
    rotation = v2.RandomRotation(augment.rotation_degrees)
    if preset == "rotate":
        return [rotation]
    if preset == "jitter_flip":
        steps: list[v2.Transform] = [rotation] if augment.phase3_keeps_rotation else []
        steps.append(v2.ColorJitter(saturation=augment.saturation, hue=augment.hue))
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip())
        return steps
    if preset in ("resize_crop", "eval"):
        return []
    raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")


def build_transform(
    preset: PresetName,
    size: int,
    augment: AugmentSettings | None = None,
    normalisation: Normalisation = IMAGENET,
) -> v2.Compose:
    """The full transform of a preset: geometry, augmentation, then a normalised float tensor."""
    randomness = augmentations(preset, augment or AugmentSettings())
    return v2.Compose([*geometry(size), *randomness, *to_normalised_tensor(normalisation)])


def denormalise(images: torch.Tensor, normalisation: Normalisation = IMAGENET) -> torch.Tensor:
    """Undo the normalisation for display: float images in [0, 1]."""
    mean = torch.tensor(normalisation.mean).view(-1, 1, 1)
    std = torch.tensor(normalisation.std).view(-1, 1, 1)
    return (images * std + mean).clamp(0, 1)
