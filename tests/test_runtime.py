"""Hardware choices: bfloat16 where the CPU runs it natively, loader workers for small machines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vocproj.data.voc import CLASSES
from vocproj.model.network import build_model
from vocproj.training.phases import on_runtime
from vocproj.training.runtime import (
    Runtime,
    cpu_runs_bf16_natively,
    read_cpu_flags,
    select_autocast_dtype,
    select_num_workers,
    torch_cpu_flags,
)

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
ZEN4_FLAGS = {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"}
SAPPHIRE_RAPIDS_FLAGS = {"avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8"}
SKYLAKE_FLAGS = {"fpu", "sse2", "avx2", "avx512f", "avx512bw"}


def test_cpu_flags_are_read_from_cpuinfo_on_x86_and_arm(tmp_path: Path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 sve\nCPU implementer\t: 0x41\n")
    assert read_cpu_flags(x86) == {"fpu", "avx2", "avx512_bf16"}
    assert read_cpu_flags(arm) == {"fp", "asimd", "bf16", "sve"}
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(ZEN4_FLAGS, True), (SAPPHIRE_RAPIDS_FLAGS, True), (SKYLAKE_FLAGS, False), (set(), False)],
)
def test_native_bf16_needs_avx512_bf16_or_amx(flags: set[str], expected: bool):
    assert cpu_runs_bf16_natively(flags, mkldnn=True) is expected
    assert cpu_runs_bf16_natively(flags, mkldnn=False) is False  # no oneDNN kernels to use them


def test_auto_precision_on_the_cpu_follows_its_flags():
    assert select_autocast_dtype("auto", CPU, ZEN4_FLAGS) == torch.bfloat16
    assert select_autocast_dtype("auto", CPU, SAPPHIRE_RAPIDS_FLAGS) == torch.bfloat16
    assert select_autocast_dtype("auto", CPU, SKYLAKE_FLAGS) is None
    assert select_autocast_dtype("auto", MPS, ZEN4_FLAGS) is None


def test_forced_precisions_ignore_the_hardware():
    for flags in (ZEN4_FLAGS, SKYLAKE_FLAGS):
        assert select_autocast_dtype("fp32", CPU, flags) is None
        assert select_autocast_dtype("bf16", CPU, flags) == torch.bfloat16
        assert select_autocast_dtype("fp16", CPU, flags) == torch.float16


def test_auto_precision_detects_this_machine_flags():
    flags = read_cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo here")
    expected = torch.bfloat16 if cpu_runs_bf16_natively(flags) else None
    assert select_autocast_dtype("auto", CPU) == expected


def test_cached_images_load_in_the_main_process_on_the_cpu():
    for cores in (2, 16, 64):
        assert select_num_workers("auto", CPU, cached=True, cores=cores) == 0


def test_decoding_gets_workers_only_on_larger_cpus_and_on_cuda():
    assert select_num_workers("auto", CPU, cached=False, cores=2) == 0
    assert select_num_workers("auto", CPU, cached=False, cores=16) == 4
    assert select_num_workers("auto", CUDA, cached=False, cores=16) == 8
    assert select_num_workers("auto", CUDA, cached=True, cores=16) == 2
    assert select_num_workers("auto", CUDA, cached=True, cores=1) == 1


def test_an_explicit_worker_count_is_kept():
    assert select_num_workers(3, CPU, cached=True, cores=2) == 3
    assert select_num_workers(0, CUDA, cached=False, cores=16) == 0


def test_torch_probe_agrees_with_cpuinfo_on_native_bf16():
    flags = read_cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo here")
    assert cpu_runs_bf16_natively(torch_cpu_flags()) == cpu_runs_bf16_natively(flags)


def test_the_head_computes_exact_logits_under_bf16_autocast_and_keeps_its_keys():
    runtime = Runtime(CPU, torch.bfloat16, channels_last=True, num_workers=0)
    torch.manual_seed(0)
    plain = build_model("resnet18", "none", len(CLASSES)).eval()
    torch.manual_seed(0)
    exact = on_runtime(build_model("resnet18", "none", len(CLASSES)).eval(), runtime)
    assert list(exact.state_dict()) == list(plain.state_dict()), "checkpoints keep their format"
    images = runtime.to_device(torch.randn(16, 3, 64, 64))
    with torch.no_grad(), runtime.autocast():
        rounded, logits = plain(images), exact(images)
    assert rounded.dtype == torch.bfloat16 and logits.dtype == torch.float32
    assert len(torch.unique(logits)) == logits.numel(), "no ties among float32 logits"
    assert len(torch.unique(rounded)) < logits.numel(), "bfloat16 logits tie"
    assert torch.allclose(logits, rounded.float(), atol=0.05)
