"""Batches of a split for this process, and a model run over them.

`loader` gives a split's batches: in a seeded order for training (this process's share of each
global batch under torchrun, vocproj/training/distributed.py), in order for evaluation. A split
read from the image cache arrives as uint8 and is finished on the device (vocproj/data/cache.py).
`predict_logits` runs a model over batches in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from vocproj.data.cache import BatchAugment, CachedVOCClassification, collate_channels_last
from vocproj.training.distributed import (
    SINGLE_PROCESS,
    EpochBatches,
    SeededItems,
    World,
    image_seeds,
    shard,
)
from vocproj.training.runtime import Runtime


class Batches:
    """A DataLoader's batches; uint8 images are moved to the device and finished there.

    The DataLoader's iterator starts with the first batch asked for, not at `iter()`: tqdm.auto
    calls `iter()` once more than it iterates, and each DataLoader iterator starts its own
    worker processes. A seeded epoch's batches are finished with each image's own seed.
    """

    def __init__(
        self,
        data_loader: torch.utils.data.DataLoader,
        runtime: Runtime,
        finish: BatchAugment | None = None,
        epoch_seed: int | None = None,
    ) -> None:
        self.data_loader, self.runtime, self.finish = data_loader, runtime, finish
        self.epoch_seed = epoch_seed

    def __len__(self) -> int:
        return len(self.data_loader)

    def __iter__(self) -> Iterator[Any]:
        device, non_blocking = self.runtime.device, self.runtime.pin_memory
        seeded = self.epoch_seed is not None
        indices = iter(self.data_loader.batch_sampler) if seeded else None
        for images, target, mask, ids in self.data_loader:
            if self.finish is not None:
                seeds = image_seeds(self.epoch_seed, next(indices)) if indices else None
                images = self.finish(images.to(device, non_blocking=non_blocking), seeds)
            yield images, target, mask, ids


def loader(
    dataset: Any, batch_size: int, runtime: Runtime, seed: int | None, world: World = SINGLE_PROCESS
) -> Batches:
    """Batches of the dataset for this process.

    With a seed: its share of the epoch's global batches of `batch_size`, in the seeded order,
    each image augmented from its own seed. Without: its shard of the split, in order.
    A cached split is loaded as uint8 images, finished (augmented, normalised) on the device.
    """
    cached = isinstance(dataset, CachedVOCClassification)
    items, finish = dataset.batches(runtime.augment_on_device) if cached else (dataset, None)
    options = {
        "num_workers": runtime.num_workers,
        "pin_memory": runtime.pin_memory,
        "collate_fn": collate_channels_last if cached else None,
    }
    if seed is None:
        part = shard(len(items), world)
        in_order = torch.utils.data.Subset(items, part) if world.is_distributed else items
        data_loader = torch.utils.data.DataLoader(in_order, batch_size=batch_size, **options)
    else:
        batches = EpochBatches(len(items), batch_size, seed, world)
        data_loader = torch.utils.data.DataLoader(
            SeededItems(items, seed), batch_sampler=batches, **options
        )
    return Batches(data_loader, runtime, finish, seed)


@torch.no_grad()
def predict_logits(
    model: nn.Module, batches: Iterable[Any], runtime: Runtime, progress: bool = False
) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the model over batches in eval mode: (ids, logits, targets, masks) on the CPU."""
    model.eval()
    ids: list[str] = []
    logits, targets, masks = [], [], []
    for x, target, mask, batch_ids in tqdm(
        batches, desc="predict", leave=False, disable=not progress, unit="batch"
    ):
        with runtime.autocast():
            logits.append(model(runtime.to_device(x)).float())
        targets.append(target)
        masks.append(mask)
        ids.extend(batch_ids)
    return ids, torch.cat(logits).cpu(), torch.cat(targets), torch.cat(masks)
