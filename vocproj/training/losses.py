"""The training loss over a batch's logits: the study's binary cross-entropy, or a variant for
class imbalance (vocproj/config.py `LossSettings`).

Each loss is a sum of one term per (image, class) label; difficult-only labels are masked out and
the sum is divided by the number of labels that count, so that every kind is a mean per label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from vocproj.config import LossSettings


@dataclass
class MultiLabelLoss:
    """A profile's loss: `loss(logits, target, mask)` is its mean over the kept labels.

    `kept`: the number of kept labels to divide by (the whole global batch's, under DDP).
    """

    settings: LossSettings = field(default_factory=LossSettings)
    pos_weight: torch.Tensor | None = None  # per class, for `pos_weight: frequency`

    def __call__(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        kept: torch.Tensor | None = None,
    ) -> torch.Tensor:
        terms = self.terms(logits.float(), target)
        return (terms * mask).sum() / (mask.sum() if kept is None else kept).clamp(min=1)

    def terms(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of each label, B×C."""
        settings = self.settings
        if settings.kind == "asymmetric":
            return asymmetric_terms(
                logits, target, settings.gamma_neg, settings.gamma_pos, settings.clip
            )
        weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)
        return F.binary_cross_entropy_with_logits(
            logits, target, reduction="none", pos_weight=weight
        )


def asymmetric_terms(
    logits: torch.Tensor, target: torch.Tensor, gamma_neg: float, gamma_pos: float, clip: float
) -> torch.Tensor:
    """Ridnik et al.'s asymmetric loss per label (ICCV 2021, eq. 4 with the shifted probability).

    An absent label's probability p is shifted to max(p - clip, 0) and its log-loss weighted by
    that to the power `gamma_neg`; a present label's log-loss by (1 - p) to the power
    `gamma_pos`. The weights are constants to the gradient, as in the authors' training.
    """
    probability = torch.sigmoid(logits)
    shifted = (probability - clip).clamp(min=0) if clip > 0 else probability
    log_present = F.logsigmoid(logits)
    log_absent = torch.log1p(-shifted) if clip > 0 else F.logsigmoid(-logits)
    with torch.no_grad():
        weight_present = (1 - probability).pow(gamma_pos)
        weight_absent = shifted.pow(gamma_neg)
    return -(target * weight_present * log_present + (1 - target) * weight_absent * log_absent)


def frequency_pos_weight(targets: np.ndarray, masks: np.ndarray) -> torch.Tensor:
    """Each class's absent / present count among the labels that count (1 where none is present)."""
    present = (targets * masks).sum(axis=0)
    absent = ((1 - targets) * masks).sum(axis=0)
    ratio = np.where(present > 0, absent / np.maximum(present, 1), 1.0)
    return torch.as_tensor(ratio, dtype=torch.float32)


def loss_for(settings: LossSettings, targets: np.ndarray, masks: np.ndarray) -> MultiLabelLoss:
    """The profile's loss; `pos_weight: frequency` from the train split's targets and masks."""
    if settings.pos_weight == "frequency":
        return MultiLabelLoss(settings, frequency_pos_weight(targets, masks))
    return MultiLabelLoss(settings)
