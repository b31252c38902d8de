"""One run per run folder: two real `train` processes of one profile, `--wait`, a killed holder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_distributed import project as tiny_project
from test_train import tiny_profile

from vocproj.artifacts import RunFiles, read_history
from vocproj.config import load_profile
from vocproj.errors import FolderInUse
from vocproj.locks import HOLDER_FILE, WAIT_VARIABLE, owning

HOLD_A_FOLDER = """
import sys, time
from pathlib import Path
from vocproj.locks import owning
with owning(Path(sys.argv[1]), "a test"):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def train(path: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "vocproj", "train", "--profile", str(path), "--phase", "all"]
    return subprocess.Popen(
        [*command, "--no-progress", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def wait_for_holder(folder: Path, process: subprocess.Popen[str], timeout: float = 120) -> int:
    """The process id in the folder's holder file, once `process` has taken the lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = json.loads((folder / HOLDER_FILE).read_text())["pid"]
        except (OSError, ValueError):
            pid = None
        if pid == process.pid:
            return pid
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.01)
    raise AssertionError(f"{process.args} did not take {folder}'s lock")


def contend(start: Callable[..., subprocess.Popen[str]], folder: Path):
    """Start a run and, once it holds `folder`, a second one and one with --wait.

    Returns the first, its process id, what the second said (it stopped at once) and the
    waiting one."""
    first = start()
    holder = wait_for_holder(folder, first)
    second, waiting = start(), start("--wait")
    said, _ = second.communicate(timeout=120)
    assert first.poll() is None, "the first should still be running"
    assert second.returncode == 2
    return first, holder, said, waiting


@pytest.mark.slow
def test_a_second_run_of_a_profile_stops_at_once_and_a_waiting_one_follows(
    tmp_path: Path, small_sample: Path
):
    path = tiny_project(tmp_path / "project", small_sample.parents[1], (40, 5, 5))
    run_dir = load_profile(path).run_dir
    first, holder, said, waiting = contend(lambda *extra: train(path, *extra), run_dir)
    assert said.strip().splitlines()[-1] == (
        f"error: {run_dir} is in use by process {holder} (python -m vocproj train --profile "
        f"{path} --phase all --no-progress), since "
        + json.loads((run_dir / HOLDER_FILE).read_text())["started"]
        + ": wait for it to finish, or run again with --wait (VOCPROJ_WAIT=1 for make and "
        "notebooks) to start training of tiny when it has."
    )
    assert first.wait(timeout=600) == 0
    waited, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, waited
    assert f"waiting for process {holder} (" in waited
    assert "phase 3 of tiny is already finished; skipping." in waited
    history = read_history(RunFiles.of(load_profile(path)).history)
    assert [row["phase"] for row in history] == [1] * 40 + [2] * 5 + [3] * 5
    assert [row["global_epoch"] for row in history] == list(range(1, 51))


@pytest.mark.slow
def test_a_lock_left_by_a_killed_run_never_blocks_the_next(tmp_path: Path, small_sample: Path):
    path = tiny_project(tmp_path / "project", small_sample.parents[1], (30, 1, 1))
    profile = load_profile(path)
    killed = train(path)
    wait_for_holder(profile.run_dir, killed)
    while not RunFiles.of(profile).history.is_file():
        assert killed.poll() is None
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert (profile.run_dir / ".lock").exists()  # the file stays; the kernel dropped the lock
    resumed = train(path)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert [row["global_epoch"] for row in read_history(RunFiles.of(profile).history)] == list(
        range(1, 33)
    )


def test_the_lock_is_reentrant_in_a_process_and_names_its_holder_to_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    folder = tmp_path / "runs" / "tiny"
    with owning(folder, "a test"), owning(folder, "the same test, nested"):
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_FOLDER, str(folder), "60"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        monkeypatch.delenv(WAIT_VARIABLE, raising=False)
        in_use = rf"is in use by process {holder.pid} \(python "
        with pytest.raises(FolderInUse, match=in_use), owning(folder, "a second test"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with owning(folder, "a test after the holder was killed"):
        pass


def data_command(path: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "vocproj", "data", "--profile", str(path), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_data_generation_has_one_writer_and_a_waiting_run_finds_it_complete(tmp_path: Path):
    path = tiny_profile(
        tmp_path / "project", tmp_path / "data", **{"data.sample_train_images": 3000}
    )
    data_root = load_profile(path).data_root
    first, holder, said, waiting = contend(lambda *extra: data_command(path, *extra), data_root)
    assert f"error: {data_root} is in use by process {holder} (python -m vocproj data" in said
    assert said.rstrip().endswith("to start the data stage when it has.")
    assert first.wait(timeout=300) == 0
    waited, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and f"waiting for process {holder}" in waited, waited
    assert "data ready at" in waited and "train 3000 images" in waited
    assert sorted(p.name for p in data_root.iterdir()) == [".lock", "VOCdevkit", "cache"]
    assert sorted(p.name for p in (data_root / "cache").iterdir()) == [
        "train-32px.json",
        "train-32px.npy",
        "val-32px.json",
        "val-32px.npy",
    ]  # nothing partial: no temporary file left by two builders
