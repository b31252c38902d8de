"""Frozen features: what the head receives from the pretrained layers, for each image of a split.

A head-only phase whose preset has no randomness (linear probing) trains the head on them, and
the linear-probe yardstick (vocproj/evaluation/probe.py) fits its regressions on them. The
starting weights' features of a split are computed once: the first of the two to need them writes
`runs/<profile>/features/<split>.npz`, the other reads it. The file holds

    features   N×D float32, in the split's order
    key        JSON: what they were computed from (backbone and its weights, or the seed of
               their random initialisation; input size, precision, device type, the split's
               ids and each image file's [bytes, mtime_ns] stamp)

and is computed again whenever its key is not the current one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vocproj.artifacts import RunFiles
from vocproj.config import Profile
from vocproj.data.cache import file_stamps
from vocproj.io import atomic_write, remove_temporaries
from vocproj.model.network import head_name
from vocproj.training.batches import loader, predict_logits
from vocproj.training.distributed import SINGLE_PROCESS, World, gather_in_order
from vocproj.training.runtime import Runtime


class FeatureItems(torch.utils.data.Dataset):
    """A split as the head sees it: (features, target, mask, id) items.

    `from_file`: the features were read from their file rather than computed.
    """

    def __init__(self, features: torch.Tensor, split: Any, from_file: bool = False) -> None:
        self.features, self.split, self.from_file = features, split, from_file

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
        target = torch.from_numpy(self.split.targets[index])
        mask = torch.from_numpy(self.split.masks[index])
        return self.features[index], target, mask, self.split.ids[index]


def frozen_features(
    model: nn.Module,
    split: Any,
    batch_size: int,
    runtime: Runtime,
    progress: bool,
    world: World = SINGLE_PROCESS,
) -> FeatureItems:
    """What the head receives from the frozen layers for each image of the split (eval mode).

    Under DDP each process computes its shard's features and every process gets them all.
    """
    captured: list[torch.Tensor] = []
    head = model.get_submodule(head_name(model))
    hook = head.register_forward_hook(lambda _, inputs, __: captured.append(inputs[0].float()))
    try:
        batches = loader(split, batch_size, runtime, seed=None, world=world)
        predict_logits(model, batches, runtime, progress)
    finally:
        hook.remove()
    features = gather_in_order(torch.cat(captured).cpu(), len(split), world)
    return FeatureItems(features, split)


def features_key(profile: Profile, split: Any, runtime: Runtime) -> dict[str, Any]:
    """What a split's starting features depend on: the network's input and arithmetic, the files."""
    settings = profile.settings
    return {
        "backbone": settings.model.backbone,
        "weights": settings.model.weights,
        "weights_stamp": weights_stamp(profile),
        "seed": settings.seed if settings.model.weights == "none" else None,  # a random init's
        "image_size": settings.train.image_size,
        "precision": str(runtime.autocast_dtype),
        "device": runtime.device.type,
        "ids": list(split.ids),
        "stamps": file_stamps(split.image_path(image_id) for image_id in split.ids),
    }


def weights_stamp(profile: Profile) -> list[int] | None:
    """The [bytes, mtime_ns] of a weights file the profile names, None for imagenet or none."""
    weights = profile.settings.model.weights
    if weights in ("imagenet", "none"):
        return None
    return file_stamps([profile.resolve(weights)])[0]


def read_features(path: Path, key: dict[str, Any]) -> torch.Tensor | None:
    """The features stored at `path` if they were computed for `key`, else None."""
    try:
        with np.load(path) as stored:
            if json.loads(str(stored["key"])) != key:
                return None
            return torch.from_numpy(stored["features"])
    except (OSError, ValueError, KeyError):
        return None


def write_features(path: Path, features: torch.Tensor, key: dict[str, Any]) -> None:
    """Write the features and their key atomically (a killed write's leftover removed first)."""
    remove_temporaries(path.parent, path.name)
    atomic_write(
        path, lambda handle: np.savez(handle, features=features.numpy(), key=json.dumps(key))
    )


def starting_features(
    profile: Profile,
    split: Any,
    runtime: Runtime,
    starting_network: Callable[[], nn.Module],
    progress: bool,
    world: World = SINGLE_PROCESS,
) -> FeatureItems:
    """The starting weights' features of the split: read from its file if current, else computed
    with `starting_network()` (on the runtime, the profile's starting weights) and written."""
    path = RunFiles.of(profile).features(split.split)
    key = features_key(profile, split, runtime)
    stored = read_features(path, key)
    if stored is not None:
        return FeatureItems(stored, split, from_file=True)
    batch_size = profile.settings.train.eval_batch_size
    items = frozen_features(starting_network(), split, batch_size, runtime, progress, world)
    if world.is_main:
        write_features(path, items.features, key)
    return items
