"""Frozen starting features: computed once by a head-only first phase, reused by the linear probe,
computed again when what they depend on changes; the probe's C chosen by cross-validation; a
first phase that makes the head the probe's fit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_finetune import profile_with

from vocproj.artifacts import RunFiles
from vocproj.config import Profile
from vocproj.data.prepare import open_split
from vocproj.data.voc import CLASSES
from vocproj.errors import ConfigError
from vocproj.evaluation.probe import linear_probe
from vocproj.model.network import load_checkpoint
from vocproj.training.features import frozen_features
from vocproj.training.logistic import C_GRID, fit_logistic_head
from vocproj.training.phases import on_runtime, starting_model, train_phases
from vocproj.training.runtime import runtime_for


@pytest.fixture
def head_phase(tmp_path: Path, small_sample: Path) -> Profile:
    phases = [{"preset": "resize_crop", "epochs": 2, "train": "head"}]
    return profile_with(tmp_path / "p", small_sample.parents[1], phases)


def stored(profile: Profile, split: str) -> np.ndarray:
    with np.load(RunFiles.of(profile).features(split)) as archive:
        return archive["features"]


def test_phase_one_keeps_the_starting_features_the_probe_would_compute(head_phase: Profile):
    train_phases(head_phase)
    runtime = runtime_for(head_phase)
    network = on_runtime(starting_model(head_phase, CLASSES), runtime)
    split = open_split(head_phase, "train", "eval", progress=False)
    expected = frozen_features(network, split, 16, runtime, False).features.numpy()
    assert stored(head_phase, "train").shape == (64, 512)
    np.testing.assert_array_equal(stored(head_phase, "train"), expected)


def test_the_probe_reuses_phase_ones_features_and_cross_validates_its_c(head_phase: Profile):
    train_phases(head_phase)
    files = RunFiles.of(head_phase)
    written = files.features("val").stat().st_mtime_ns
    probe = linear_probe(head_phase, progress=False)
    assert probe["features_reused"] and files.features("val").stat().st_mtime_ns == written
    tried = probe["cross_validation"]["map_by_C"]
    assert list(tried) == [f"{c:g}" for c in C_GRID]
    assert f"{probe['C']:g}" == max(tried, key=tried.get)
    assert json.loads(files.probe.read_text()) == probe
    fixed = linear_probe(head_phase, c=0.1, progress=False)
    assert fixed["C"] == 0.1 and fixed["cross_validation"] is None


def test_features_are_computed_again_when_an_image_changes(head_phase: Profile):
    train_phases(head_phase)
    before = stored(head_phase, "train")
    image = open_split(head_phase, "train", "eval", progress=False).labelled.image_paths[0]
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    try:
        probe = linear_probe(head_phase, progress=False)
    finally:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not probe["features_reused"]
    np.testing.assert_array_equal(stored(head_phase, "train"), before)  # same pixels, same features


def test_a_stale_features_file_is_not_read(head_phase: Profile):
    train_phases(head_phase)
    path = RunFiles.of(head_phase).features("val")
    with np.load(path) as archive:
        key = json.loads(str(archive["key"]))
    key["image_size"] += 1
    np.savez(path.with_suffix(".tmp.npz"), features=np.zeros((40, 512), np.float32),
             key=json.dumps(key))  # fmt: skip
    os.replace(path.with_suffix(".tmp.npz"), path)
    probe = linear_probe(head_phase, progress=False)
    assert not probe["features_reused"]
    assert torch.from_numpy(stored(head_phase, "val")).abs().sum() > 0


@pytest.fixture
def probe_then_all(tmp_path: Path, small_sample: Path) -> Profile:
    phases = [
        {"preset": "resize_crop", "epochs": 1, "train": "probe"},
        {"preset": "rotate", "epochs": 1},
    ]
    return profile_with(tmp_path / "p", small_sample.parents[1], phases)


def test_a_probe_phase_makes_the_head_the_yardsticks_fit(probe_then_all: Profile):
    history = train_phases(probe_then_all, [1])
    probe = linear_probe(probe_then_all, progress=False)
    assert probe["features_reused"]
    split = open_split(probe_then_all, "train", "eval", progress=False)
    fitted = fit_logistic_head(stored(probe_then_all, "train"), split.targets, split.masks,
                               probe["C"])  # fmt: skip
    head = load_checkpoint(RunFiles.of(probe_then_all).last(1))["model"]
    np.testing.assert_allclose(head["fc.weight"].numpy(), fitted.weights, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(head["fc.bias"].numpy(), fitted.biases, rtol=1e-5, atol=1e-7)
    assert history[0]["val_map"] == pytest.approx(probe["map"], abs=1e-3)
    assert np.isnan(history[0]["lr"])  # no learning rate: one fit


def test_fine_tuning_starts_from_the_probes_head(probe_then_all: Profile):
    train_phases(probe_then_all)
    files = RunFiles.of(probe_then_all)
    after_probe, after_all = (load_checkpoint(files.last(p))["model"] for p in (1, 2))
    assert not torch.equal(after_probe["fc.weight"], after_all["fc.weight"])
    assert not torch.equal(after_probe["conv1.weight"], after_all["conv1.weight"])


@pytest.mark.parametrize(
    ("phase", "problem"),
    [({"preset": "resize_crop", "epochs": 3, "train": "probe"}, "epochs: 1"),
     ({"preset": "rotate", "epochs": 1, "train": "probe"}, "preset: resize_crop")],
)  # fmt: skip
def test_a_probe_phase_is_one_fit_on_plain_images(
    tmp_path: Path, small_sample: Path, phase: dict, problem: str
):
    with pytest.raises(ConfigError, match=problem):
        profile_with(tmp_path / "p", small_sample.parents[1], [phase])
