"""Hardware choices shared by training and evaluation: device, precision, loader workers, seeds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from vocproj.config import Profile
from vocproj.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed for one run."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    num_workers: int

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    @property
    def needs_grad_scaler(self) -> bool:
        return self.device.type == "cuda" and self.autocast_dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Mixed-precision context for forward passes (a no-op in float32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return images.to(self.device, non_blocking=self.pin_memory, memory_format=memory_format)


def select_device(choice: str) -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; a forced device must exist."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if choice == "auto":
        return torch.device(next(name for name, ok in available.items() if ok))
    if not available.get(choice, False):
        raise ConfigError(
            f"train.device is {choice!r} but no such device is available here; "
            f"set train.device to auto or cpu in the profile."
        )
    return torch.device(choice)


def select_autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None means float32; `auto` uses bfloat16 (or float16) autocast on CUDA only."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def select_num_workers(setting: int | str, device: torch.device) -> int:
    """DataLoader workers: with few CPU cores, decoding in the main process keeps compute fed."""
    if isinstance(setting, int):
        return setting
    cores = os.cpu_count() or 1
    if device.type == "cpu":
        return 0 if cores <= 4 else min(4, cores // 4)
    return min(8, max(1, cores - 1))


def runtime_for(profile: Profile) -> Runtime:
    train = profile.settings.train
    device = select_device(train.device)
    return Runtime(
        device=device,
        autocast_dtype=select_autocast_dtype(train.precision, device),
        channels_last=train.channels_last,
        num_workers=select_num_workers(profile.settings.data.num_workers, device),
    )


def derived_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from the profile seed and a position (phase, epoch, ...)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
