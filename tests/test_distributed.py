"""Training in several processes (DDP with gloo on the CPU), against training in one.

The processes are real: torchrun (`python -m torch.distributed.run`) starting `python -m
vocproj train`, as a user runs it, or torch.multiprocessing for the building blocks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from test_train import DETERMINISTIC_COLUMNS, tiny_profile
from torch import nn

from vocproj.artifacts import BEST, LAST, RunFiles, read_history
from vocproj.config import load_profile
from vocproj.data.prepare import open_split
from vocproj.errors import ConfigError, TrainingFailed
from vocproj.model.network import build_model, load_checkpoint
from vocproj.training.batches import loader
from vocproj.training.distributed import (
    EpochBatches,
    SeededItems,
    World,
    check_batch_size,
    gather_in_order,
    image_seed,
    shard,
    synced_batchnorm,
)
from vocproj.training.phases import train_phase
from vocproj.training.runtime import Runtime

from conftest import free_port

CHECKOUT = Path(__file__).resolve().parents[1]
CPU = Runtime(torch.device("cpu"), None, channels_last=True, num_workers=0)
# One epoch of fp32 training, in 2 processes against 1 from the same weights (fp32 whatever the
# CPU: bfloat16 rounding is about 1e-2 of a step, far above what this compares): the difference
# of the whole state (every float tensor of the state dict) relative to its size, and each
# entry's. Without BatchNorm over the global batch the first is about 2e-2 (measured).
STATE_RTOL = 1e-3
ENTRY_ATOL = 1e-2
# What the surviving rank says: its collective failed, or torchrun stopped it first.
SURVIVOR_MESSAGES = ("another process of this run died", "stopped by torchrun")
# Losses (about 0.5 here) to within the state's 1e-3: measured 5e-6 apart on an AVX2 CPU, 1.1e-4
# on an AVX512 one (phase 3's states 1.1e-7 and 3.4e-4 apart). The val mAP of 40 images moves in
# steps: one positive swapping places with a negative in one class moves it by about 0.008
# (measured 0.0074 on the AVX512 CPU, 5e-5 on the AVX2 one).
HISTORY_ATOL = {"train_loss": 5e-4, "val_loss": 5e-4, "val_map": 0.02}


# ------------------------------------------------------------------------ building blocks


@pytest.mark.parametrize("count, batch_size", [(64, 16), (70, 16), (10, 16), (33, 8)])
def test_each_rank_takes_its_slice_of_the_same_global_batches(count: int, batch_size: int):
    single = list(EpochBatches(count, batch_size, seed=7, world=World()))
    assert len(single) == max(1, count // batch_size)
    assert all(len(batch) == min(batch_size, count) for batch in single)
    assert len({i for batch in single for i in batch}) == sum(map(len, single))
    for size in (2, 4):
        ranks = [list(EpochBatches(count, batch_size, 7, World(r, size))) for r in range(size)]
        assert all(len(batches) == len(single) for batches in ranks)
        for k, batch in enumerate(single):
            assert [i for batches in ranks for i in batches[k]] == batch
    assert list(EpochBatches(count, batch_size, seed=8, world=World())) != single


def test_a_global_batch_that_processes_cannot_share_is_a_clear_error():
    assert check_batch_size(32, World(1, 4)) == 8
    with pytest.raises(ConfigError, match=r"train.batch_size 30 .* 4 processes"):
        check_batch_size(30, World(0, 4))
    with pytest.raises(ConfigError, match=r"3 images .* 4 processes"):
        EpochBatches(3, 16, seed=0, world=World(0, 4))


def test_shards_cover_the_split_in_order():
    for count in (0, 1, 7, 40):
        for size in (1, 2, 3):
            parts = [shard(count, World(rank, size)) for rank in range(size)]
            assert [i for part in parts for i in part] == list(range(count))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_an_image_draws_its_augmentation_from_its_own_seed_in_any_order():
    class Draw(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, index: int) -> float:
            return torch.rand(1).item()

    items = SeededItems(Draw(), epoch_seed=11)
    forwards = [items[i] for i in range(6)]
    torch.manual_seed(0)
    backwards = [items[i] for i in reversed(range(6))][::-1]
    assert forwards == backwards and len(set(forwards)) == 6
    state = torch.get_rng_state()
    items[0]
    assert torch.equal(torch.get_rng_state(), state), "the global generator is left as it was"
    assert image_seed(11, 0) != image_seed(12, 0) != image_seed(11, 1)


@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("preset", ["rotate", "jitter_flip"])
def test_every_image_is_augmented_alike_in_one_process_or_two(
    tmp_path: Path, small_sample: Path, preset: str, on_device: bool
):
    """The cached split's batches, per image, whether 1 process loads them or 2 share them
    (per-item PIL transforms on the CPU, or batched on the device)."""
    profile = load_profile(tiny_profile(tmp_path, small_sample.parents[1]))
    dataset = open_split(profile, "train", preset, progress=False)
    runtime = Runtime(torch.device("cpu"), None, True, 0, augment_on_device=on_device)

    def images(world: World) -> dict[str, torch.Tensor]:
        batches = loader(dataset, 16, runtime, seed=5, world=world)
        return {i: image for xs, _, _, ids in batches for image, i in zip(xs, ids, strict=True)}

    one = images(World())
    two = {**images(World(0, 2)), **images(World(1, 2))}
    assert one.keys() == two.keys() and len(one) == 64
    assert all(torch.equal(one[i], two[i]) for i in one)
    other_epoch = {
        i: x
        for xs, _, _, ids in loader(dataset, 16, runtime, 6)
        for x, i in zip(xs, ids, strict=True)
    }
    assert sum(not torch.equal(one[i], other_epoch[i]) for i in one) > 48


def batchnorm_layers() -> nn.Module:
    """A BatchNorm2d and timm's BatchNormAct2d (EfficientNet-Lite's) with ReLU6, in a row."""
    from timm.layers import BatchNormAct2d

    torch.manual_seed(3)
    layers = nn.Sequential(
        nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), BatchNormAct2d(4, act_layer=nn.ReLU6)
    )
    for module in layers.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    return layers


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(4)
    return torch.randn(8, 4, 5, 5, generator=generator) * 3 + 1, torch.randn(
        8, 4, 5, 5, generator=generator
    )


def batchnorm_worker(rank: int, port: int, out: str) -> None:
    """One of 2 processes: half of the global batch through the synced layers, then a gather."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        layers = synced_batchnorm(batchnorm_layers())
        x, weights = global_batch()
        half = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_()
        (layers(half) * weights[rank * 4 : (rank + 1) * 4]).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in layers.parameters()])
        dist.all_reduce(grads)
        world = World(rank, 2)
        gathered = gather_in_order(half.grad[: len(shard(7, world))].flatten(1), 7, world)
        torch.save((half.grad, grads, layers.state_dict(), gathered), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_batchnorm_over_the_global_batch_equals_one_process_on_the_whole_batch(tmp_path: Path):
    layers = batchnorm_layers()
    x, weights = global_batch()
    x.requires_grad_()
    (layers(x) * weights).sum().backward()
    expected_grads = torch.cat([p.grad.flatten() for p in layers.parameters()])
    context = mp.get_context("spawn")
    port = free_port()
    workers = [
        context.Process(target=batchnorm_worker, args=(r, port, str(tmp_path))) for r in (0, 1)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    (grad0, grads, state, gathered), (grad1, *_) = (
        torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)
    )
    assert torch.allclose(torch.cat([grad0, grad1]), x.grad, atol=1e-5)
    assert torch.allclose(grads, expected_grads, rtol=1e-5, atol=1e-5)
    for key, value in layers.state_dict().items():  # running statistics, batches tracked
        assert torch.allclose(state[key].float(), value.float(), atol=1e-5), key
    # shards of 7 rows: 4 on rank 0, 3 on rank 1, put back in order
    assert torch.equal(gathered, torch.cat([grad0[:4], grad1[:3]]).flatten(1))


def test_synced_batchnorm_keeps_parameters_and_state_dict_keys():
    model = build_model("resnet18", "none", 20)
    parameters = list(model.parameters())
    keys = list(model.state_dict())
    synced_batchnorm(model)
    assert list(model.parameters()) == parameters and list(model.state_dict()) == keys
    kinds = {type(m).__name__ for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert kinds == {"GlobalBatchNorm2d"}
    model.eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 20)  # eval mode: no process group needed


# ------------------------------------------------------------------------ torchrun end to end


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(CHECKOUT)}


def torchrun(profile: Path, *launch: str, phase: str = "all") -> subprocess.Popen:
    """`torchrun LAUNCH -m vocproj train --profile PROFILE` in the background, output captured."""
    command = [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "vocproj", "train"]
    command += ["--profile", str(profile), "--phase", phase, "--no-progress"]
    return subprocess.Popen(
        command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finished(process: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def single_process(profile: Path) -> None:
    command = [sys.executable, "-m", "vocproj", "train", "--profile", str(profile), "--no-progress"]
    subprocess.run(command, env=environment(), check=True, timeout=300)


def float_state(path: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)["model"]
    return {k: v for k, v in state.items() if v.is_floating_point()}


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """‖a − b‖ / ‖a‖ over every float tensor of two state dicts."""
    flat_a = torch.cat([a[k].flatten() for k in a])
    flat_b = torch.cat([b[k].flatten() for k in a])
    return ((flat_a - flat_b).norm() / flat_a.norm()).item()


def project(root: Path, data_root: Path, epochs: tuple[int, ...], precision: str = "auto") -> Path:
    """The tiny profile with these epochs per phase, in the machine's own precision unless told.

    Runs that must equal each other bit for bit (resumed against uninterrupted, two nodes
    against one) hold in any precision; 2 processes against 1 only to fp32 rounding.
    """
    path = tiny_profile(root, data_root, **{"train.precision": precision})
    raw = yaml.safe_load(path.read_text())
    presets = ("resize_crop", "rotate", "jitter_flip")
    raw["settings"]["train"]["phases"] = [
        {"preset": p, "epochs": e} for p, e in zip(presets, epochs, strict=False)
    ]
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_two_processes_train_each_phase_as_one_does(tmp_path: Path, small_sample: Path):
    """ResNet18, 32 px, global batch 16 (8 per process), lr 0.02, fp32: one epoch (4 steps)
    of each phase in 2 gloo processes, from the weights the single process started it with."""
    data_root = small_sample.parents[1]
    one = project(tmp_path / "one", data_root, (1, 1, 1), precision="fp32")
    two = project(tmp_path / "two", data_root, (1, 1, 1), precision="fp32")
    single_process(one)
    one_files, two_files = RunFiles.of(load_profile(one)), RunFiles.of(load_profile(two))
    for phase in (1, 2, 3):
        if phase > 1:  # start from the single process's previous phase
            shutil.rmtree(two_files.phase_dir(phase - 1))
            shutil.copytree(one_files.phase_dir(phase - 1), two_files.phase_dir(phase - 1))
            shutil.copyfile(one_files.history, two_files.history)
        if phase == 1:  # as notebook 01 does it for `make report NPROC=2`
            history = train_phase(load_profile(two), 1, processes=2)
            assert [row["epoch"] for row in history] == [1]
        else:
            finished(torchrun(two, "--standalone", "--nproc_per_node", "2", phase=str(phase)))
        expected, got = float_state(one_files.last(phase)), float_state(two_files.last(phase))
        assert relative_difference(expected, got) < STATE_RTOL, f"phase {phase}"
        for key in expected:
            assert torch.allclose(got[key], expected[key], rtol=0, atol=ENTRY_ATOL), key
        assert load_checkpoint(two_files.last(phase))["processes"] == 2
    one_history, two_history = read_history(one_files.history), read_history(two_files.history)
    assert len(one_history) == len(two_history) == 3
    for a, b in zip(one_history, two_history, strict=True):
        assert all(a[k] == b[k] for k in ("phase", "epoch", "global_epoch", "preset", "lr"))
        for column, atol in HISTORY_ATOL.items():
            assert abs(a[column] - b[column]) <= atol, (column, a, b)


def test_training_in_processes_reads_the_profile_file_and_reports_a_failure(
    tmp_path: Path, small_sample: Path
):
    path = tiny_profile(tmp_path, small_sample.parents[1], **{"train.batch_size": 15})
    profile = load_profile(path)
    changed = profile.model_copy(update={"profile": "other"})
    with pytest.raises(ConfigError, match=r"other\.yaml, which does not hold these settings"):
        train_phase(changed, 1, processes=2)
    with pytest.raises(TrainingFailed, match=r"torchrun with 2 processes .* exit code 1"):
        train_phase(profile, 1, processes=2)  # a global batch of 15 cannot be shared by 2


def worker_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """{rank: pid} of the training processes torchrun started (its children, by RANK)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    ranks = {}
    for pid in map(int, children):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for entry in environ:
            if entry.startswith(b"RANK="):
                ranks[int(entry[5:])] = pid
    return ranks


def kill_rank_after_rows(launcher: subprocess.Popen, history: Path, rows: int, rank: int) -> str:
    """kill -9 one rank once `rows` epochs are saved; torchrun must stop the run soon after."""
    deadline = time.monotonic() + 300
    while not (history.is_file() and len(history.read_text().splitlines()) > rows):
        assert launcher.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, f"{history} did not reach {rows} rows"
        time.sleep(0.005)
    os.kill(worker_pids(launcher)[rank], signal.SIGKILL)
    killed = time.monotonic()
    output, _ = launcher.communicate(timeout=120)
    assert time.monotonic() - killed < 60, "the surviving process did not stop in time"
    assert launcher.returncode != 0
    assert re.search(rf"rank\s*: {rank} \(local_rank: {rank}\)\s+exitcode\s*: -9", output), output
    return output


@pytest.mark.slow
def test_two_nodes_and_a_run_killed_in_either_rank_end_alike(tmp_path: Path, small_sample: Path):
    """Two torchrun "nodes" on 127.0.0.1 (c10d rendezvous) against one node of 2 processes that
    loses rank 0 to kill -9 after epoch 1 and rank 1 after epoch 2, resumed each time."""
    data_root = small_sample.parents[1]
    nodes = project(tmp_path / "nodes", data_root, (3,))
    endpoint = f"127.0.0.1:{free_port()}"
    launch = ("--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d")
    launch += ("--rdzv-endpoint", endpoint, "--rdzv-id", "vocproj-test")
    node_runs = [torchrun(nodes, *launch) for _ in range(2)]
    outputs = [finished(run) for run in node_runs]
    assert any("trained tiny phase(s) all" in output for output in outputs)

    killed = project(tmp_path / "killed", data_root, (3,))
    history = RunFiles.of(load_profile(killed)).history
    single_node = ("--standalone", "--nproc_per_node", "2")
    output = kill_rank_after_rows(torchrun(killed, *single_node), history, 1, rank=0)
    assert any(f"rank 1 of 2: {words}" in output for words in SURVIVOR_MESSAGES), output
    assert "run the same command again to resume" in output
    output = kill_rank_after_rows(torchrun(killed, *single_node), history, 2, rank=1)
    assert any(f"rank 0 of 2: {words}" in output for words in SURVIVOR_MESSAGES), output
    assert len(read_history(history)) < 3
    finished(torchrun(killed, *single_node))

    expected_files, resumed_files = (
        RunFiles.of(load_profile(nodes)),
        RunFiles.of(load_profile(killed)),
    )
    expected, resumed = read_history(expected_files.history), read_history(resumed_files.history)
    assert [[r[c] for c in DETERMINISTIC_COLUMNS] for r in resumed] == [
        [r[c] for c in DETERMINISTIC_COLUMNS] for r in expected
    ]
    for name in (LAST, BEST):
        a = load_checkpoint(expected_files.phase_dir(1) / name)["model"]
        b = load_checkpoint(resumed_files.phase_dir(1) / name)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), name
