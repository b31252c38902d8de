"""Training in several processes with PyTorch DDP, launched by `torchrun`; one process otherwise.

    torchrun --nproc_per_node 2 -m vocproj train --profile sample
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        --rdzv-id voc2012 -m vocproj train --profile voc2012     # the same on each machine

`torchrun` starts the processes and tells each its place (RANK, WORLD_SIZE, LOCAL_RANK);
`process_group` joins them (nccl on CUDA, gloo on the CPU). What N processes compute is what
one computes, to rounding: the profile's batch size stays the global batch, every epoch's order
is one permutation drawn from (seed, phase, epoch) that `EpochBatches` cuts into global batches
and each rank takes its slice of each; each image's random augmentation is drawn from its own
seed (`image_seed`), so it does not depend on which process draws it; BatchNorm statistics are
those of the global batch (`synced_batchnorm`); the loss is normalised over the global batch
(vocproj/training/phases.py). Evaluation is sharded into contiguous slices and gathered in order.

A process that dies ends the run: torchrun stops the others, and a process whose peer vanished
mid-collective gets an error (or, if a peer hangs, the profile's `train.timeout_s`) that
`process_group` turns into `RankFailure`'s message. Checkpoints are written by rank 0 after each
epoch, so the same command resumes from the last finished epoch, with any number of processes.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vocproj.errors import ConfigError, VocprojError
from vocproj.training.runtime import derived_seed


class RankFailure(VocprojError):
    """Another process of a distributed run died or stopped answering."""


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, history and figures."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.size}"


SINGLE_PROCESS = World()


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (or another launcher setting WORLD_SIZE) started."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def current_world() -> World:
    """The world of the joined process group, or a single process when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE_PROCESS
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def backend_for(device_type: str) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device_type == "cuda" else "gloo"


PEER_LOST_WORDS = ("gloo", "nccl", "connection", "timed out", "timeout", "peer")


@contextlib.contextmanager
def process_group(device_type: str, timeout_s: float) -> Iterator[World]:
    """Join torchrun's processes for the block (nothing to join in a single process).

    `device_type` is where the run computes; on CUDA each process takes the GPU of its LOCAL_RANK.
    A collective that fails because another process died or hung, and torchrun's SIGTERM to the
    survivors, end the block with `RankFailure`.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        yield SINGLE_PROCESS
        return
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device_type == "cuda":
        check_one_gpu_each(local_rank)
        torch.cuda.set_device(local_rank)
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend_for(device_type), timeout=timeout)
    world = current_world()
    previous = signal.signal(signal.SIGTERM, partial(stopped_by_launcher, world))
    try:
        yield world
    except RuntimeError as err:
        if not lost_a_peer(err):
            raise
        raise RankFailure(peer_lost_message(world, err, timeout_s)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    dist.destroy_process_group()  # after a failure the exiting process leaves it to the OS


def check_one_gpu_each(local_rank: int) -> None:
    """nccl needs a GPU of its own for each process of a machine."""
    gpus = torch.cuda.device_count()
    if local_rank >= gpus:
        raise ConfigError(
            f"process {local_rank} of this machine has no GPU of its own: it has {gpus}; start "
            f"torchrun with --nproc_per_node {gpus} (or NPROC={gpus}), or train on the CPU "
            f"(train.device: cpu)."
        )


def lost_a_peer(err: RuntimeError) -> bool:
    """True for the errors a collective raises when another process died or stopped answering."""
    text = str(err).lower()
    return isinstance(err, dist.DistError) or any(word in text for word in PEER_LOST_WORDS)


def peer_lost_message(world: World, err: BaseException, timeout_s: float) -> str:
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    first_line = first_line.split(". This is typically")[0]  # gloo's advice, not ours
    return (
        f"{world}: another process of this run died or did not answer for train.timeout_s = "
        f"{timeout_s:g} s ({first_line[:300]}). {RESUME_HINT}"
    )


RESUME_HINT = (
    "Every finished epoch is saved in the run's last.pt: run the same command again to resume, "
    "with any number of processes."
)


def stopped_by_launcher(world: World, signum: int, frame: FrameType | None) -> None:
    """SIGTERM: torchrun stops the survivors when one process of the run failed."""
    raise RankFailure(f"{world}: stopped by torchrun, as another process of the run ended. "
                      f"{RESUME_HINT}")  # fmt: skip


def barrier(world: World) -> None:
    if world.is_distributed:
        dist.barrier()


@contextlib.contextmanager
def main_process_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (downloads, caches, files), the others after it is done."""
    if not world.is_main:
        barrier(world)
    yield
    if world.is_main:
        barrier(world)


def all_reduced(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of `tensor` summed element-wise over the processes of the group."""
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def sum_over_ranks(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The element-wise sum of `tensor` over the processes (a copy; the tensor itself in one)."""
    return all_reduced(tensor) if world.is_distributed else tensor


def check_batch_size(batch_size: int, world: World) -> int:
    """Each process's share of the global batch, which must divide evenly."""
    if batch_size % world.size:
        raise ConfigError(
            f"train.batch_size {batch_size} (the global batch) cannot be shared evenly by "
            f"{world.size} processes; use a multiple of {world.size} or a --nproc_per_node that "
            f"divides it."
        )
    return batch_size // world.size


def shard(count: int, world: World) -> range:
    """The contiguous slice of `count` items this process evaluates (sizes differ by at most 1)."""
    base, extra = divmod(count, world.size)
    start = world.rank * base + min(world.rank, extra)
    return range(start, start + base + (world.rank < extra))


def gather_in_order(part: torch.Tensor, count: int, world: World) -> torch.Tensor:
    """Every process's `shard` of a result put back together in order, on every process."""
    if not world.is_distributed:
        return part
    sizes = [len(shard(count, World(rank, world.size))) for rank in range(world.size)]
    device = collective_device(part.device)
    padded = part.new_zeros((max(sizes), *part.shape[1:]), device=device)
    padded[: len(part)] = part
    pieces = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(pieces, padded)
    gathered = [piece[:size] for piece, size in zip(pieces, sizes, strict=True)]
    return torch.cat(gathered).to(part.device)


def collective_device(device: torch.device) -> torch.device:
    """Where a tensor must be for the group's collectives: nccl takes GPU tensors only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def image_seed(epoch_seed: int, index: int) -> int:
    """The seed of one image's random augmentation in one epoch, whichever process draws it."""
    return derived_seed(epoch_seed, "image", index)


class EpochBatches(torch.utils.data.Sampler[list[int]]):
    """One epoch's batches of this process: its slice of each global batch.

    The epoch's order is a permutation of the split drawn from `seed`; it is cut into global
    batches of `batch_size` (a last ragged batch dropped, unless the split is smaller than one
    batch), and rank r takes the r-th `batch_size / world.size` images of each.
    """

    def __init__(self, count: int, batch_size: int, seed: int, world: World) -> None:
        self.count, self.seed, self.world = count, seed, world
        self.global_size = min(batch_size, count)  # one batch of all when the split is smaller
        if self.global_size < world.size:
            raise ConfigError(
                f"a split of {count} images in batches of {batch_size} cannot give each of "
                f"{world.size} processes an image; use fewer processes."
            )

    def global_batches(self) -> list[list[int]]:
        """The epoch's global batches, the same in every process."""
        order = torch.randperm(self.count, generator=torch.Generator().manual_seed(self.seed))
        size = self.global_size
        return [order[k * size : (k + 1) * size].tolist() for k in range(len(self))]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            part = shard(len(batch), self.world)
            yield batch[part.start : part.stop]

    def __len__(self) -> int:
        return self.count // self.global_size


class SeededItems(torch.utils.data.Dataset):
    """A dataset whose item i is drawn with torch's generator seeded by `image_seed(seed, i)`.

    The random transforms of torchvision draw from torch's global generator; seeding it per
    image (and restoring it after) makes each image's augmentation independent of the order,
    the process and the loader worker that draws it.
    """

    def __init__(self, items: torch.utils.data.Dataset, epoch_seed: int) -> None:
        self.items, self.epoch_seed = items, epoch_seed

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(image_seed(self.epoch_seed, index))
            return self.items[index]


def image_seeds(epoch_seed: int, indices: Sequence[int]) -> list[int]:
    return [image_seed(epoch_seed, index) for index in indices]


class SumOverRanks(torch.autograd.Function):
    """An all-reduce sum that gradients flow back through (each process gets the summed grads)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        return all_reduced(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return all_reduced(grad)


class GlobalBatchStatistics:
    """A BatchNorm2d mixin: in training, the statistics of the global batch, on any device.

    Per-channel sums of x and x² (in float64) and the count are summed over the processes, with
    gradients flowing back through the sum, and the running statistics
    move as BatchNorm2d's do. timm's BatchNormAct2d then applies its dropout and activation.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)  # type: ignore[misc]
        channels = x.shape[1]
        local = torch.cat([
            x.sum((0, 2, 3), dtype=torch.float64),
            x.square().sum((0, 2, 3), dtype=torch.float64),
            x.new_full((1,), x.numel() // channels, dtype=torch.float64),
        ])  # fmt: skip
        total = SumOverRanks.apply(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:-1] / count - mean.square()).clamp(min=0)
        self.update_running_statistics(mean.detach(), var.detach(), count)
        scale = (var + self.eps).rsqrt()
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale + (0 if self.bias is None else self.bias)
        x = x * scale.to(x.dtype).view(1, -1, 1, 1) + shift.to(x.dtype).view(1, -1, 1, 1)
        for after in ("drop", "act"):  # timm's BatchNormAct2d
            if hasattr(self, after):
                x = getattr(self, after)(x)
        return x

    @torch.no_grad()
    def update_running_statistics(
        self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor
    ) -> None:
        """As BatchNorm2d: an exponential (or, momentum None, cumulative) average, unbiased var."""
        if not self.track_running_stats or self.running_mean is None:
            return
        self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:
            momentum = 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


SYNCABLE = ("BatchNorm2d", "BatchNormAct2d")  # the classes whose forward the mixin reproduces
GLOBAL_CLASSES: dict[type, type] = {}


def global_statistics_class(cls: type) -> type:
    """`cls` with GlobalBatchStatistics mixed in (one class per BatchNorm class)."""
    if cls not in GLOBAL_CLASSES:
        GLOBAL_CLASSES[cls] = type(f"Global{cls.__name__}", (GlobalBatchStatistics, cls), {})
    return GLOBAL_CLASSES[cls]


def synced_batchnorm(model: nn.Module) -> nn.Module:
    """The model with BatchNorm over the global batch under DDP, on the CPU as on GPUs.

    Each BatchNorm2d (and timm's BatchNormAct2d) changes class in place, keeping its parameters
    and buffers, so optimisers and state dicts are unaffected. (torch's SyncBatchNorm runs on GPUs
    only, and drops the activation of timm's BatchNormAct2d.)
    """
    for module in model.modules():
        cls = type(module)
        if cls.__name__ in SYNCABLE and isinstance(module, nn.BatchNorm2d):
            module.__class__ = global_statistics_class(cls)
    return model


def data_parallel(network: nn.Module, world: World, device: torch.device) -> nn.Module:
    """The network wrapped in DistributedDataParallel (as it is in a single process).

    DDP starts every process from rank 0's weights and averages the gradients.
    """
    if not world.is_distributed:
        return network
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(network, device_ids=device_ids)


def unwrapped(network: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the network itself otherwise)."""
    return network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
