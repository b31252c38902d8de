"""The training losses: BCE (the study's), BCE with per-class positive weights, asymmetric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vocproj.config import LossSettings, load_profile
from vocproj.data.voc import CLASSES, loss_targets, open_devkit_split
from vocproj.errors import ConfigError
from vocproj.training.losses import MultiLabelLoss, frequency_pos_weight, loss_for

from conftest import tiny_profile


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, 20, generator=generator) * 4
    target = (torch.rand(8, 20, generator=generator) < 0.2).float()
    return logits, target, torch.ones_like(target)


def papers_asymmetric_loss(logits, target, gamma_neg, gamma_pos, clip, eps=1e-8):
    """Ridnik et al.'s loss as their reference code writes it (a sum; here over one batch)."""
    p = torch.sigmoid(logits)
    p_neg = (1 - p + clip).clamp(max=1)
    loss = target * torch.log(p.clamp(min=eps)) + (1 - target) * torch.log(p_neg.clamp(min=eps))
    pt = p * target + p_neg * (1 - target)
    gamma = gamma_pos * target + gamma_neg * (1 - target)
    return -(loss * torch.pow(1 - pt, gamma)).sum()


def test_bce_is_torchs_mean_bce_and_leaves_masked_labels_out():
    logits, target, mask = batch()
    loss = MultiLabelLoss()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(loss(logits, target, mask), expected)
    mask[:, 3] = 0
    target_changed = target.clone()
    target_changed[:, 3] = 1 - target_changed[:, 3]
    assert loss(logits, target, mask) == loss(logits, target_changed, mask)


@pytest.mark.parametrize(
    ("gamma_neg", "gamma_pos", "clip"), [(4, 0, 0.05), (4, 1, 0.05), (2, 1, 0)]
)
def test_the_asymmetric_loss_equals_the_papers_reference_code(gamma_neg, gamma_pos, clip):
    logits, target, mask = batch(1)
    settings = LossSettings(kind="asymmetric", gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)
    ours = MultiLabelLoss(settings)(logits, target, mask) * mask.sum()
    torch.testing.assert_close(
        ours, papers_asymmetric_loss(logits, target, gamma_neg, gamma_pos, clip)
    )


def test_the_asymmetric_loss_without_focusing_or_shift_is_bce():
    logits, target, mask = batch(2)
    plain = LossSettings(kind="asymmetric", gamma_neg=0, gamma_pos=0, clip=0)
    torch.testing.assert_close(
        MultiLabelLoss(plain)(logits, target, mask), MultiLabelLoss()(logits, target, mask)
    )


def test_easy_negatives_add_nothing_to_the_asymmetric_loss_and_its_weights_are_constants():
    settings = LossSettings(kind="asymmetric", gamma_neg=4, gamma_pos=0, clip=0.05)
    logits = torch.tensor([[-4.0, 2.0]], requires_grad=True)  # p = 0.018 (≤ clip), 0.88
    target, mask = torch.tensor([[0.0, 0.0]]), torch.ones(1, 2)
    MultiLabelLoss(settings)(logits, target, mask).backward()
    assert logits.grad[0, 0] == 0
    shifted = torch.sigmoid(torch.tensor(2.0)) - 0.05
    # d/dlogit of -w log(1 - shifted) with w constant: w · p(1 - p) / (1 - shifted), halved (mean)
    p = torch.sigmoid(torch.tensor(2.0))
    expected = shifted**4 * p * (1 - p) / (1 - shifted) / 2
    torch.testing.assert_close(logits.grad[0, 1], expected)


def test_frequency_weights_are_absent_over_present_counts_with_difficult_left_out():
    labels = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0], [1, 0, -1], [0, 0, 0]])
    targets, masks = loss_targets(labels, "ignore")
    weight = frequency_pos_weight(targets, masks)
    assert weight.tolist() == [1.5, 1.0, 3.0]  # 3/2; none present: 1; 3/1 (difficult left out)
    loss = loss_for(LossSettings(pos_weight="frequency"), targets, masks)
    logits, target = torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 1.0]])
    # log 2 per label, the present ones weighted 1.5 and 3: (1.5 + 1 + 3) log 2 / 3
    assert loss(logits, target, torch.ones(1, 3)).item() == pytest.approx(5.5 * np.log(2) / 3)


def test_frequency_weights_of_the_real_train_split(real_voc: Path):
    """On the real devkit labels: bottle is rare, person common, as VOC's statistics say."""
    train = open_devkit_split(real_voc, "train")
    weight = dict(
        zip(CLASSES, frequency_pos_weight(train.targets, train.masks).tolist(), strict=True)
    )
    assert weight["person"] < 2 < 10 < weight["bottle"]
    assert min(weight, key=weight.get) == "person"


def test_a_positive_weight_with_the_asymmetric_loss_is_refused(tmp_path: Path, small_sample: Path):
    path = tiny_profile(tmp_path, small_sample.parents[1])
    raw = yaml.safe_load(path.read_text())
    raw["settings"]["loss"] = {"kind": "asymmetric", "pos_weight": "frequency"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"loss\.pos_weight is for kind: bce"):
        load_profile(path)
