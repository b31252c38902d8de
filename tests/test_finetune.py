"""Fine-tuning options: linear probing on frozen features, a slower backbone, frozen BatchNorm."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from test_train import tiny_profile

import vocproj.training.phases as phases_module
from vocproj.artifacts import RunFiles
from vocproj.config import Profile, load_profile
from vocproj.data.prepare import open_split
from vocproj.data.voc import CLASSES
from vocproj.model.network import build_model, load_checkpoint
from vocproj.training.batches import loader
from vocproj.training.features import frozen_features
from vocproj.training.phases import (
    parameter_groups,
    state_for_model,
    train_one_epoch,
    train_phases,
)
from vocproj.training.runtime import derived_seed, runtime_for, seed_everything


def profile_with(project: Path, data_root: Path, phases: list[dict], **optim) -> Profile:
    path = tiny_profile(project, data_root, **{f"optim.{k}": v for k, v in optim.items()})
    raw = yaml.safe_load(path.read_text())
    raw["settings"]["train"]["phases"] = phases
    raw["settings"]["train"].update(precision="fp32", channels_last=False)
    path.write_text(yaml.safe_dump(raw))
    return load_profile(path)


@pytest.fixture
def head_then_all(tmp_path: Path, small_sample: Path) -> Profile:
    phases = [
        {"preset": "resize_crop", "epochs": 2, "train": "head"},
        {"preset": "rotate", "epochs": 1},
    ]
    return profile_with(tmp_path / "p", small_sample.parents[1], phases, backbone_lr=0.002)


def initial_weights(profile: Profile) -> dict[str, torch.Tensor]:
    """The weights phase 1 starts from (drawn as vocproj.training.phases draws them)."""
    seed_everything(derived_seed(profile.settings.seed, "init"))
    return build_model("resnet18", "none", len(CLASSES)).state_dict()


def weights_of(profile: Profile, phase: int) -> dict[str, torch.Tensor]:
    return load_checkpoint(RunFiles.of(profile).last(phase))["model"]


def test_a_head_phase_moves_the_head_only_then_everything_learns(head_then_all: Profile):
    start = initial_weights(head_then_all)
    train_phases(head_then_all)
    after_head, after_all = weights_of(head_then_all, 1), weights_of(head_then_all, 2)
    for key, tensor in start.items():
        moved = not torch.equal(after_head[key], tensor)
        assert moved == key.startswith("fc."), key  # BatchNorm statistics included
    assert not torch.equal(after_all["conv1.weight"], after_head["conv1.weight"])


def test_the_head_on_features_learns_what_it_learns_through_the_frozen_network(
    head_then_all: Profile,
):
    """One epoch of the head on precomputed features equals one through the whole network."""
    runtime = runtime_for(head_then_all)
    split = open_split(head_then_all, "train", "resize_crop", progress=False)
    heads = []
    for on_features in (True, False):
        torch.manual_seed(0)
        model = build_model("resnet18", "none", len(CLASSES))
        state = state_for_model(head_then_all, 1, runtime, model, CLASSES)
        items = frozen_features(state.model, split, 16, runtime, False) if on_features else split
        network = state.head if on_features else state.model
        train_one_epoch(state, network, loader(items, 16, runtime, seed=5), runtime, "t", False)
        heads.append(state.head.state_dict())
    features, images = heads
    for key in features:
        torch.testing.assert_close(features[key], images[key], rtol=1e-5, atol=1e-6)
    assert not torch.equal(features["weight"], torch.zeros_like(features["weight"]))


def test_pretrained_layers_get_their_own_rate_or_none_in_a_head_phase():
    model = build_model("resnet18", "none", len(CLASSES))
    head, backbone = parameter_groups(model, 0.02, 0.004, head_only=False)
    assert (head["lr"], backbone["lr"]) == (0.02, 0.004)
    assert len(head["params"]) == 2 and len(backbone["params"]) == len(list(model.parameters())) - 2
    (only,) = parameter_groups(model, 0.02, 0.004, head_only=True)
    assert only["params"] == [model.fc.weight, model.fc.bias]
    assert not model.conv1.weight.requires_grad and model.fc.weight.requires_grad


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_frozen_batchnorm_keeps_its_statistics(tmp_path: Path, small_sample: Path, freeze_bn):
    phases = [{"preset": "resize_crop", "epochs": 1}]
    profile = profile_with(tmp_path / "p", small_sample.parents[1], phases, freeze_bn=freeze_bn)
    start = initial_weights(profile)
    train_phases(profile)
    after = weights_of(profile, 1)
    assert torch.equal(after["bn1.running_mean"], start["bn1.running_mean"]) == freeze_bn
    assert not torch.equal(after["bn1.weight"], start["bn1.weight"])  # scale still learns


def test_checkpoints_record_the_backbones_input_normalisation(head_then_all: Profile):
    train_phases(head_then_all, [1])
    recorded = load_checkpoint(RunFiles.of(head_then_all).last(1))["normalisation"]
    assert recorded == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@pytest.mark.parametrize(("rule", "kept"), [("val_loss", 2), ("last", 4)])
def test_best_checkpoint_keeps_the_lowest_val_loss_or_the_last_epoch(
    tmp_path: Path, small_sample: Path, monkeypatch: pytest.MonkeyPatch, rule: str, kept: int
):
    """Validation losses 0.5, 0.3, 0.4, 0.6 over two phases: best.pt ends as epoch 2 (the
    lowest) or 4 (the last), and the evaluation's checkpoint is that epoch's weights."""
    phases = [{"preset": "resize_crop", "epochs": 2}, {"preset": "rotate", "epochs": 2}]
    profile = profile_with(tmp_path / "p", small_sample.parents[1], phases)
    raw = profile.to_dict()
    raw["settings"]["train"]["best_checkpoint"] = rule
    path = tmp_path / "p" / "params" / "tiny.yaml"
    path.write_text(yaml.safe_dump({"profile": raw["profile"], "settings": raw["settings"]}))
    losses = iter([0.5, 0.3, 0.4, 0.6])
    monkeypatch.setattr(phases_module, "validate", lambda *args: (next(losses), 0.5))
    train_phases(load_profile(path))
    files = RunFiles.of(load_profile(path))
    best = load_checkpoint(files.final_best)
    assert best["history"][-1]["global_epoch"] == kept
    assert best["best_val_loss"] == [0.5, 0.3, 0.4, 0.6][kept - 1]
    weights = load_checkpoint(files.last(kept // 2))["model"]  # each kept epoch ends its phase
    assert all(torch.equal(best["model"][key], tensor) for key, tensor in weights.items())
