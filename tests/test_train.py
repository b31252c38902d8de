"""Three-phase training on a tiny profile: checkpoints, history, resume after SIGKILL, NaN."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vocproj.training.phases as train_module
from vocproj.artifacts import BEST, HISTORY_FIELDS, LAST, RunFiles, read_history
from vocproj.config import Profile, load_profile
from vocproj.errors import CheckpointError, TrainingDiverged
from vocproj.model.network import load_checkpoint, save_checkpoint
from vocproj.training.losses import MultiLabelLoss
from vocproj.training.phases import train_phase, train_phases

from conftest import TINY_EPOCHS, tiny_profile

EPOCHS = TINY_EPOCHS
DETERMINISTIC_COLUMNS = [
    f for f in HISTORY_FIELDS if f not in ("seconds", "train_images_per_second")
]


@pytest.fixture
def tiny(tmp_path: Path, small_sample: Path) -> Profile:
    return load_profile(tiny_profile(tmp_path / "project", small_sample.parents[1]))


def test_three_phases_write_checkpoints_and_history(tiny: Profile):
    history = train_phases(tiny)
    assert [(r["phase"], r["epoch"], r["global_epoch"]) for r in history] == [
        (1, 1, 1), (1, 2, 2), (2, 1, 3), (3, 1, 4)
    ]  # fmt: skip
    assert read_history(RunFiles.of(tiny).history) == history
    assert list(history[0]) == list(HISTORY_FIELDS)
    for row in history:
        assert row["train_loss"] > 0 and row["val_loss"] > 0 and 0 <= row["val_map"] <= 1
        assert row["lr"] == 0.02 and row["train_images_per_second"] > 0
    for phase in (1, 2, 3):
        last = load_checkpoint(RunFiles.of(tiny).last(phase))
        assert last["phase"] == phase and last["epoch"] == EPOCHS[phase - 1]
        assert (
            len(last["classes"]) == 20 and last["version"] and last["profile"]["profile"] == "tiny"
        )
        assert {"optimizer", "scheduler", "rng", "model"} <= set(last)
    best = load_checkpoint(RunFiles.of(tiny).best(3))
    assert best["best_val_loss"] == min(r["val_loss"] for r in history)
    for phase in (1, 2, 3):  # equal checkpoints take the disk once
        files, last_epoch = RunFiles.of(tiny), (phase, EPOCHS[phase - 1])
        kept = load_checkpoint(files.best(phase))
        assert files.best(phase).samefile(files.last(phase)) == (
            (kept["phase"], kept["epoch"]) == last_epoch
        )
    best_row = min(history, key=lambda r: r["val_loss"])
    assert (best["phase"], best["epoch"]) == (best_row["phase"], best_row["epoch"])


def test_each_phase_starts_from_the_previous_phase_weights(tiny: Profile):
    train_phase(tiny, 1)
    phase1 = load_checkpoint(RunFiles.of(tiny).last(1))["model"]
    tiny_one_step = tiny.model_copy(deep=True)
    train_phase(tiny_one_step, 2)
    phase2 = load_checkpoint(RunFiles.of(tiny).last(2))["model"]
    moved = [k for k in phase1 if k.endswith("weight") and not torch.equal(phase1[k], phase2[k])]
    assert moved, "phase 2 should have trained"
    delta = max((phase1[k] - phase2[k]).abs().max().item() for k in moved)
    assert delta < 1.0, "phase 2 started from phase 1's weights, not from scratch"


def test_finished_phase_is_not_retrained_unless_asked(tiny: Profile):
    train_phase(tiny, 1)
    last = RunFiles.of(tiny).last(1)
    stamp = last.stat().st_mtime_ns
    train_phase(tiny, 1)
    assert last.stat().st_mtime_ns == stamp
    train_phase(tiny, 1, retrain=True)
    assert last.stat().st_mtime_ns != stamp


def test_phase_two_before_phase_one_is_a_clear_error(tiny: Profile):
    with pytest.raises(
        CheckpointError, match=r"phase1/last\.pt not found: phase 1 must be trained"
    ):
        train_phase(tiny, 2)


def test_changed_settings_start_the_phase_over(tmp_path: Path, small_sample: Path):
    project = tmp_path / "project"
    data_root = small_sample.parents[1]
    first = load_profile(tiny_profile(project, data_root))
    train_phase(first, 1)
    changed = load_profile(tiny_profile(project, data_root, **{"optim.lr": 0.01}))
    history = train_phase(changed, 1)
    assert [r["lr"] for r in history] == [0.01, 0.01]
    assert (
        load_checkpoint(RunFiles.of(changed).last(1))["profile"]["settings"]["optim"]["lr"] == 0.01
    )


def older_versions_fingerprint(profile: Profile, phase: int, missing: tuple[str, ...]) -> dict:
    """The fingerprint an earlier vocproj wrote: every setting of its time, defaults included
    (runtime-only ones left out), lacking the `missing` options ("section.key"), which it did
    not have yet."""
    settings = profile.to_dict()["settings"]
    settings["train"]["phases"] = settings["train"]["phases"][:phase]
    for section, keys in train_module.RUNTIME_ONLY_SETTINGS.items():
        for key in keys:
            (settings[section] if section else settings).pop(key, None)
    for dotted in missing:
        section, key = dotted.split(".")
        del settings[section][key]
    return settings


NEWER_OPTIONS = ("optim.freeze_bn", "data.images_without_xml", "augment.phase3_keeps_rotation")


def test_a_checkpoint_from_before_an_option_existed_is_kept(tiny: Profile):
    train_phase(tiny, 1)
    last = RunFiles.of(tiny).last(1)
    checkpoint = load_checkpoint(last)
    checkpoint["fingerprint"] = older_versions_fingerprint(tiny, 1, NEWER_OPTIONS)
    save_checkpoint(last, checkpoint)
    stamp, history = last.stat().st_mtime_ns, read_history(RunFiles.of(tiny).history)
    assert train_phase(tiny, 1) == history
    assert last.stat().st_mtime_ns == stamp  # finished, so neither retrained nor rewritten


def test_an_old_checkpoint_is_another_runs_when_a_new_option_is_set(
    tmp_path: Path, small_sample: Path
):
    project, data_root = tmp_path / "project", small_sample.parents[1]
    old = load_profile(tiny_profile(project, data_root))
    train_phase(old, 1)
    last = RunFiles.of(old).last(1)
    checkpoint = load_checkpoint(last)
    checkpoint["fingerprint"] = older_versions_fingerprint(old, 1, NEWER_OPTIONS)
    save_checkpoint(last, checkpoint)
    frozen = load_profile(tiny_profile(project, data_root, **{"optim.freeze_bn": True}))
    assert not train_module.same_settings(checkpoint, frozen, 1)
    checkpoint["fingerprint"]["optim"]["a_removed_option"] = 1
    assert not train_module.same_settings(checkpoint, old, 1)


def test_only_settings_that_differ_from_their_defaults_are_fingerprinted(tiny: Profile):
    fingerprint = train_module.training_fingerprint(tiny, 1)
    assert "optim" not in fingerprint  # the sample profile keeps SGD's defaults
    assert fingerprint["model"] == {"weights": "none"}
    assert fingerprint["train"]["phases"] == [{"preset": "resize_crop", "epochs": 2}]
    assert "root" not in fingerprint["data"] and "device" not in fingerprint["train"]


def test_diverging_run_stops_clearly_and_keeps_the_last_good_checkpoint(
    tiny: Profile, monkeypatch: pytest.MonkeyPatch
):
    calls = {"n": 0}
    real_loss = MultiLabelLoss.__call__

    def loss_that_turns_nan_in_epoch_two(self, *args, **kwargs):
        calls["n"] += 1  # epoch 1 is 4 training batches and 1 validation call
        loss = real_loss(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(MultiLabelLoss, "__call__", loss_that_turns_nan_in_epoch_two)
    with pytest.raises(TrainingDiverged, match=r"became nan at phase 1 epoch 2, batch 2.*kept"):
        train_phase(tiny, 1)
    assert load_checkpoint(RunFiles.of(tiny).last(1))["epoch"] == 1
    assert len(read_history(RunFiles.of(tiny).history)) == 1


def test_an_exploding_learning_rate_is_caught(tmp_path: Path, small_sample: Path):
    path = tiny_profile(tmp_path / "project", small_sample.parents[1], **{"optim.lr": 1e12})
    profile = load_profile(path)
    with pytest.raises(TrainingDiverged, match=r"became (nan|inf) at phase 1 epoch 1"):
        train_phase(profile, 1)
    assert not (RunFiles.of(profile).last(1)).exists()


def run_cli(profile_path: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "vocproj", "train", "--profile", str(profile_path)]
    return subprocess.Popen([*command, "--phase", "all", "--no-progress"], env=env)


def wait_for_rows(history: Path, rows: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if history.is_file() and len(history.read_text().splitlines()) > rows:
            return
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.005)
    raise AssertionError(f"{history} did not reach {rows} rows")


@pytest.mark.slow
def test_sigkill_mid_epoch_and_mid_checkpoint_write_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, small_sample: Path
):
    data_root = small_sample.parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    straight = load_profile(tiny_profile(tmp_path / "straight", data_root))
    assert run_cli(tiny_profile(tmp_path / "straight", data_root), env).wait(timeout=600) == 0

    killed_path = tiny_profile(tmp_path / "killed", data_root)
    killed = load_profile(killed_path)
    process = run_cli(killed_path, env)
    # epoch 1 done: epoch 2 running
    wait_for_rows(RunFiles.of(killed).history, 1, process, timeout=300)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert len(read_history(RunFiles.of(killed).history)) < sum(EPOCHS)

    # then killed again in the middle of writing a checkpoint (its temporary file exists)
    files = RunFiles.of(killed)
    finished_before = sorted(files.run_dir.rglob("*.pt"))
    process = run_cli(killed_path, env)
    writing = [files.phase_dir(phase) for phase in (1, 2, 3)]
    while not any(next(folder.glob(".*.pt.*.tmp"), None) for folder in writing if folder.is_dir()):
        assert process.poll() is None, "training ended before a checkpoint write was caught"
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()
    for path in finished_before:  # each replaced whole or left as it was: none half-written
        assert load_checkpoint(path)["epoch"] >= 1
    assert run_cli(killed_path, env).wait(timeout=600) == 0
    assert not list(files.run_dir.rglob(".*.tmp")), "the next run removes what the kill left"

    expected = read_history(RunFiles.of(straight).history)
    resumed = read_history(RunFiles.of(killed).history)
    assert [[r[c] for c in DETERMINISTIC_COLUMNS] for r in resumed] == [
        [r[c] for c in DETERMINISTIC_COLUMNS] for r in expected
    ]
    for phase in (1, 2, 3):
        for name in (LAST, BEST):
            a = load_checkpoint(RunFiles.of(straight).phase_dir(phase) / name)["model"]
            b = load_checkpoint(RunFiles.of(killed).phase_dir(phase) / name)["model"]
            assert all(torch.equal(a[k], b[k]) for k in a), f"phase {phase} {name} differs"
