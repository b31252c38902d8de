"""Faults injected into real processes and survived: SIGKILL in the middle of the sample data's
generation and of the image cache's build, and writes that fail for want of space (the process's
file size limit, `ulimit -f`). The next run finds every finished file intact, redoes only what
was unfinished, and ends where an uninterrupted run does.

SIGKILL during a checkpoint write is in test_train.py (beside its uninterrupted run), during
`export` and `predict --out` in test_deploy.py (beside its trained run).
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vocproj.artifacts import RunFiles, read_history
from vocproj.config import load_profile
from vocproj.data.cache import cache_files, decode_for_cache
from vocproj.data.sample import write_sample_dataset
from vocproj.data.voc import read_devkit_split

from conftest import copy_of_run, tiny_profile

pytestmark = pytest.mark.slow
TRAIN, VAL = 900, 100  # images: enough that generating and caching them take seconds


def vocproj(*args: str, file_size_limit: int | None = None) -> subprocess.Popen[str]:
    """`python -m vocproj ARGS` in a process of its own, optionally under `ulimit -f`."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.Popen(
        [sys.executable, "-m", "vocproj", *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, preexec_fn=limit if file_size_limit else None,
    )  # fmt: skip


def kill_when(ready: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 300):
    """SIGKILL `process` as soon as `ready()` holds (polled every 2 ms)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"it ended before the fault: {process.communicate()[0]}"
        assert time.monotonic() < deadline, "the moment to kill it never came"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()


def finished(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return output


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample data of TRAIN + VAL images, generated in one go (the comparison)."""
    return write_sample_dataset(tmp_path_factory.mktemp("whole"), n_train=TRAIN, n_val=VAL)


def big_profile(project: Path, data_root: Path) -> Path:
    sizes = {"data.sample_train_images": TRAIN, "data.sample_val_images": VAL}
    return tiny_profile(project, data_root, **sizes)


def test_sigkill_during_data_generation_then_the_next_run_writes_the_same_tree(
    tmp_path: Path, uninterrupted_sample: Path
):
    path = big_profile(tmp_path / "project", tmp_path / "data")
    devkit = tmp_path / "data" / "VOCdevkit"

    def halfway() -> bool:
        partial = next(devkit.glob(".VOC2012.partial-*"), None) if devkit.is_dir() else None
        return partial is not None and len(list(partial.rglob("*.jpg"))) >= 100

    kill_when(halfway, vocproj("data", "--profile", str(path)))
    assert not (devkit / "VOC2012").exists()  # nothing half-made stands where the tree goes
    said = finished(vocproj("data", "--profile", str(path)))
    assert f"train {TRAIN} images, val {VAL} images" in said
    assert sorted(p.name for p in devkit.iterdir()) == ["VOC2012"]  # the partial one is gone
    assert tree_bytes(devkit / "VOC2012") == tree_bytes(uninterrupted_sample)


def test_sigkill_during_the_cache_build_then_the_next_run_builds_what_decoding_gives(
    tmp_path: Path, uninterrupted_sample: Path
):
    path = big_profile(tmp_path / "project", uninterrupted_sample.parents[1])
    profile = load_profile(path)
    array, manifest = cache_files(profile.cache_dir, "train", profile.settings.train.image_size)
    if array.exists():  # another test built it: start from none
        array.unlink()
        manifest.unlink()

    def building() -> bool:
        return any(profile.cache_dir.glob(f".{array.name}.*.tmp"))

    kill_when(building, vocproj("train", "--profile", str(path), "--phase", "1", "--no-progress"))
    assert not array.exists() and not manifest.exists()
    finished(vocproj("train", "--profile", str(path), "--phase", "1", "--no-progress"))
    assert not list(profile.cache_dir.glob(".*.tmp"))
    cached = np.load(array, mmap_mode="r")
    train = read_devkit_split(uninterrupted_sample, "train")
    size = profile.settings.train.image_size
    assert cached.shape == (TRAIN, size, size, 3)
    for index in (0, 1, TRAIN // 2, TRAIN - 1):
        np.testing.assert_array_equal(
            cached[index], decode_for_cache(train.image_paths[index], size)
        )


def test_a_checkpoint_that_does_not_fit_keeps_the_last_finished_one_and_says_what_filled_up(
    tmp_path: Path, small_sample: Path
):
    path = tiny_profile(tmp_path / "project", small_sample.parents[1])
    files = RunFiles.of(load_profile(path))
    finished(vocproj("train", "--profile", str(path), "--phase", "1", "--no-progress"))
    before = {p: p.read_bytes() for p in (files.last(1), files.best(1), files.history)}

    full = vocproj("train", "--profile", str(path), "--phase", "2", "--no-progress",
                   file_size_limit=1_000_000)  # fmt: skip
    said, _ = full.communicate(timeout=600)
    assert full.returncode == 2, said
    last_line = said.strip().splitlines()[-1]
    assert last_line.startswith(f"error: could not write {files.phase_dir(2)}/"), last_line
    assert "the file size limit of this process (ulimit -f) was reached" in last_line
    assert "every finished file is kept. Free some space (or raise the limit)" in last_line
    assert {p: p.read_bytes() for p in before} == before
    assert not list(files.phase_dir(2).glob(".*.tmp"))

    finished(vocproj("train", "--profile", str(path), "--phase", "2", "--no-progress"))
    assert [row["phase"] for row in read_history(files.history)] == [1, 1, 2]


def test_report_files_that_do_not_fit_stay_as_they_were(tmp_path: Path, tiny_yaml: Path):
    path = copy_of_run(tiny_yaml, tmp_path / "project")  # trained
    profile = load_profile(path)
    finished(vocproj("evaluate", "--profile", str(path), "--no-progress"))  # and its figures
    reports = {p: p.read_bytes() for p in profile.report_dir.rglob("*") if p.is_file()}
    scores = RunFiles.of(profile).scores("val")
    scores_before = scores.read_bytes()

    full = vocproj("evaluate", "--profile", str(path), "--no-progress", file_size_limit=4096)
    said, _ = full.communicate(timeout=600)
    assert full.returncode == 2, said
    assert "the file size limit of this process (ulimit -f) was reached" in said
    assert {p: p.read_bytes() for p in reports} == reports
    assert scores.read_bytes() == scores_before
    assert not [p for p in profile.report_dir.rglob(".*.tmp")]
