"""Hardware choices shared by training and evaluation: device, precision, loader workers, seeds.

`precision: auto` trains in bfloat16 autocast where the hardware runs it natively (CUDA with
bf16 support, else float16; CPUs with AVX512-BF16 or AMX) and in float32 elsewhere. Batches from
the image cache get their random transforms on an accelerator, batched; on the CPU, PIL's uint8
kernels per image cost less than float tensor kernels (vocproj/data/cache.py). Loader workers: with
the cache, the CPU loads in the main process and keeps its cores for compute, while CUDA gets a
few workers to fill pinned batches in the background.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

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
    compile: bool = False
    augment_on_device: bool = False  # cached batches: random transforms batched on the device

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

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        """A batch on the device: images (B×C×H×W) in the runtime's memory format."""
        layout = self.memory_format if images.dim() == 4 else torch.preserve_format
        return images.to(self.device, non_blocking=self.pin_memory, memory_format=layout)


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


CPUINFO = Path("/proc/cpuinfo")
# CPU features with native bfloat16 arithmetic (Linux /proc/cpuinfo names).
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def read_cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags Linux reports in /proc/cpuinfo; empty where it cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def detect_cpu_flags() -> frozenset[str]:
    """/proc/cpuinfo's flags, or torch's own CPU probes where there is no /proc (macOS, Windows)."""
    return read_cpu_flags() or torch_cpu_flags()


def torch_cpu_flags() -> frozenset[str]:
    """The bfloat16 flags that torch's CPU probes find (private functions: looked up with care)."""
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    found = set()
    for flag, name in probes.items():
        probe = getattr(torch.cpu, name, None)
        if probe is not None and probe():
            found.add(flag)
    return frozenset(found)


def cpu_runs_bf16_natively(flags: Collection[str], mkldnn: bool | None = None) -> bool:
    """True when the CPU has bfloat16 instructions and torch has oneDNN kernels that use them."""
    mkldnn = torch.backends.mkldnn.is_available() if mkldnn is None else mkldnn
    return mkldnn and not NATIVE_BF16_CPU_FLAGS.isdisjoint(flags)


def select_autocast_dtype(
    precision: str, device: torch.device, cpu_flags: Collection[str] | None = None
) -> torch.dtype | None:
    """None means float32; `auto` picks bfloat16 where the device runs it natively.

    `cpu_flags` (the CPU's feature flags) are detected when not given.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        flags = detect_cpu_flags() if cpu_flags is None else cpu_flags
        return torch.bfloat16 if cpu_runs_bf16_natively(flags) else None
    return None


def select_num_workers(
    setting: int | str, device: torch.device, cached: bool, cores: int | None = None
) -> int:
    """DataLoader workers for `auto`: none to copy cached images on the CPU, a few elsewhere.

    Without the cache every item is a JPEG decode: with few CPU cores, decoding in the main
    process keeps the compute threads fed; on CUDA the decoding hides behind the GPU.
    """
    if isinstance(setting, int):
        return setting
    cores = cores or os.cpu_count() or 1
    if device.type == "cpu":
        return 0 if cached or cores <= 4 else min(4, cores // 4)
    return min(2 if cached else 8, max(1, cores - 1))


def runtime_for(profile: Profile, local_rank: int | None = None) -> Runtime:
    """The profile's runtime; on CUDA, cuDNN also picks its fastest kernels for the fixed shapes.

    `local_rank`: under torchrun, the process's place on its machine, which picks its GPU.
    """
    train, data = profile.settings.train, profile.settings.data
    device = select_device(train.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if local_rank is not None:
            device = torch.device("cuda", local_rank)
    return Runtime(
        device=device,
        autocast_dtype=select_autocast_dtype(train.precision, device),
        channels_last=train.channels_last,
        num_workers=select_num_workers(data.num_workers, device, cached=data.cache),
        compile=train.compile,
        augment_on_device=device.type != "cpu",
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
