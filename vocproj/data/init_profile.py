"""`python -m vocproj init-profile DATA_DIR --name NAME`: a profile for a user's own export.

It looks at the folder (its layout, classes, splits, and what is wrong with it), prints what it
found, and writes `params/NAME.yaml`: the export read in place, its class list, the train/val
split it has or one vocproj draws, EfficientNet-Lite0 from ImageNet as in the real-photo
profile, 224 px, and the study's three phases. `make report PROFILE=NAME` then runs the study.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vocproj.config import PARAMS_DIR, PROJECT_DIR, profile_from_mapping
from vocproj.data import layouts
from vocproj.errors import ConfigError
from vocproj.io import atomic_write_text

STUDY_PHASES = ("resize_crop", "rotate", "jitter_flip")
STUDY_EPOCHS = 15
VAL_NAMES = ("val", "valid", "validation")


@dataclass(frozen=True)
class ProfileChoices:
    """What the user may choose on the command line; the rest comes from the folder."""

    name: str
    epochs: int = STUDY_EPOCHS
    image_size: int = 224
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    val_fraction: float = 0.2
    images_without_xml: str = "skip"
    seed: int = 0


def split_choice(export: layouts.Export) -> tuple[str, str]:
    """(train split, val split): the export's own when it has both, else names for a drawn one."""
    names = set(export.splits)
    val = next((name for name in VAL_NAMES if name in names), None)
    if "train" in names and val is not None:
        return "train", val
    return "train", "val"


def profile_mapping(folder: Path, export: layouts.Export, choices: ProfileChoices) -> dict:
    """The profile's content: the export read in place, its classes, the study's recipe."""
    train_split, val_split = split_choice(export)
    phases = [{"preset": preset, "epochs": choices.epochs} for preset in STUDY_PHASES]
    return {
        "profile": choices.name,
        "settings": {
            "seed": choices.seed,
            "data": {
                "source": "export",
                "export_dir": _portable(folder),
                "layout": export.layout,
                "root": f"data/{choices.name}",
                "classes": list(layouts.dataset_classes(export)),
                "train_split": train_split,
                "val_split": val_split,
                "val_fraction": choices.val_fraction,
                "images_without_xml": choices.images_without_xml,
                "difficult": "ignore",
            },
            "model": {"backbone": choices.backbone, "weights": choices.weights},
            "optim": {
                "lr": 0.02,
                "backbone_lr": 0.008,
                "freeze_bn": True,
                "schedule": "cosine",
            },
            "train": {"image_size": choices.image_size, "batch_size": 32, "phases": phases},
        },
    }


def _portable(folder: Path) -> str:
    """The folder relative to the project when it lies inside it, else absolute."""
    folder = folder.resolve()
    try:
        return str(folder.relative_to(PROJECT_DIR))
    except ValueError:
        return str(folder)


def profile_yaml(mapping: dict[str, Any], summary: str) -> str:
    """The YAML file: how it was made and what was found, as comments, then the profile."""
    export_dir = mapping["settings"]["data"]["export_dir"]
    header = [
        f"# Written by `python -m vocproj init-profile` for {export_dir}",
        "# (edit freely; every key is documented in vocproj/config.py). What it found:",
        *(f"#   {line}".rstrip() for line in summary.splitlines()),
    ]
    body = yaml.safe_dump(mapping, sort_keys=False, default_flow_style=None, width=96)
    return "\n".join(header) + "\n" + body


def init_profile(
    folder: str | os.PathLike[str],
    choices: ProfileChoices,
    *,
    params_dir: Path = PARAMS_DIR,
    force: bool = False,
) -> tuple[Path, str]:
    """Inspect the export, write params/<name>.yaml; return its path and what was found."""
    target = params_dir / f"{choices.name}.yaml"
    if target.exists() and not force:
        raise ConfigError(
            f"{target} already exists; choose another --name, or pass --force to replace it."
        )
    export = layouts.scan_export(Path(folder))
    mapping = profile_mapping(Path(folder), export, choices)
    data = mapping["settings"]["data"]
    classes = tuple(data["classes"])
    splits = layouts.train_val_splits(
        export, data["train_split"], data["val_split"], choices.val_fraction, choices.seed,
        None, classes, images_without_xml=choices.images_without_xml,
    )  # fmt: skip
    summary = layouts.describe_export(export, classes, splits)
    profile_from_mapping(mapping, source=str(target), project_dir=params_dir.parent)  # validate
    atomic_write_text(target, profile_yaml(mapping, summary))
    return target, summary
