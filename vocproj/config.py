"""Profiles: one YAML file per profile under `params/`, validated into one typed `Profile`.

A profile file has two top-level keys, so that `papermill -f params/<profile>.yaml` can pass it
to every notebook as two parameters:

    profile: sample          # the profile's name (its file is params/<name>.yaml)
    settings:                # every value a run depends on; see the models below
      seed: 0
      data: {...}
      ...

Unknown keys and wrong types are errors that name the file and the key, never silent defaults.
Relative paths in a profile are relative to the project folder (the one holding `params/`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vocproj.errors import ConfigError
from vocproj.images import TTA, TTA_MODES

PROJECT_DIR = Path(__file__).resolve().parents[1]
PARAMS_DIR = PROJECT_DIR / "params"

DifficultMode = Literal["ignore", "positive", "negative"]
DIFFICULT_MODES: tuple[str, ...] = ("ignore", "positive", "negative")
"""How difficult-only labels (-1) enter the loss.

- ``ignore`` (default): masked out of the loss, as the devkit leaves them out of scoring;
- ``positive``: counted as present;
- ``negative``: counted as absent.
"""

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Preset = Literal["resize_crop", "rotate", "jitter_flip"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


DataSource = Literal["sample", "voc2012", "voc2007", "voc2007-real", "local", "export"]
Layout = Literal["auto", "devkit", "flat", "roboflow"]


class DataSettings(_Section):
    """Where the images come from and how difficult-only labels enter the loss.

    `source`: `sample` (generated), `voc2012` / `voc2007` (downloaded: VOC2012 trainval, VOC2007
    trainval + test), `voc2007-real` (2,000 VOC2007 test photos in a fixed train/val split; the id
    lists travel with vocproj, the photos are fetched) or `local` (a devkit tree already on disk,
    never fetched), or `export`: a dataset exported by an annotation tool (CVAT, labelImg,
    Roboflow) in `export_dir`, read in place and never written (see vocproj/data/layouts.py). The
    tree is `<root>/VOCdevkit/VOC<year>`, or that of the first folder in `prefer_roots` that
    holds one, which is then read in place; `root` also holds the image cache and, for an
    export without a train/val split, the split lists vocproj draws (`<root>/splits/`).

    `classes`: `voc` (the 20 VOC classes), `dataset` (CVAT's labelmap.txt, else every `<name>`
    in the annotations, sorted) or the list itself, in the order of the model's outputs.
    """

    source: DataSource
    root: str = Field(description="folder that holds VOCdevkit/VOC<year> (and the image cache)")
    year: int = Field(default=2012, ge=2005, le=2100, description="the devkit's VOC<year> folder")
    prefer_roots: list[str] = Field(
        default_factory=list,
        description="folders tried before root: the first holding VOCdevkit/VOC<year> is used",
    )
    export_dir: str | None = Field(
        default=None, description="the annotation tool's export (source: export)"
    )
    layout: Layout = "auto"
    classes: Literal["voc", "dataset"] | list[str] = "voc"
    train_split: str = "train"
    val_split: str = "val"
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.2, description="share of val in a split vocproj draws (no split in the export)"
    )
    images_without_xml: Literal["skip", "negative"] = Field(
        default="skip",
        description="images of an export without an annotation: left out (and listed), or "
        "counted as negatives for every class",
    )
    difficult: Literal[DIFFICULT_MODES] = "ignore"  # type: ignore[valid-type]
    sample_train_images: PositiveInt = 300
    sample_val_images: PositiveInt = 200
    num_workers: int | Literal["auto"] = "auto"
    cache: bool = Field(
        default=True,
        description="decode and resize each image once into <root>/cache (vocproj/data/cache.py)",
    )

    @model_validator(mode="after")
    def _export_has_a_folder(self) -> DataSettings:
        if (self.source == "export") != (self.export_dir is not None):
            raise ValueError("data.export_dir is set for source: export, and only for it")
        if isinstance(self.classes, list):
            if len(self.classes) < 2:
                raise ValueError(f"data.classes needs at least 2 classes, got {self.classes}")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"data.classes lists a class twice: {self.classes}")
        return self


class ModelSettings(_Section):
    """The backbone and where its starting weights come from (imagenet, none, or a file path)."""

    backbone: str = "resnet18"
    weights: str = "imagenet"


class OptimSettings(_Section):
    """SGD as in the study (lr 0.02), with momentum, weight decay and an optional schedule.

    `lr` is the head's rate (and every layer's unless `backbone_lr` is set); `backbone_lr` the
    rate of the pretrained layers; `freeze_bn` keeps every BatchNorm layer's running statistics
    as the weights brought them (BatchNorm in eval mode while training; its scale and shift still
    learn).
    """

    lr: Annotated[float, Field(gt=0)] = 0.02
    backbone_lr: Annotated[float, Field(gt=0)] | None = None
    freeze_bn: bool = False
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 0.0001
    nesterov: bool = False
    schedule: Literal["none", "cosine", "step"] = "none"
    step_epochs: PositiveInt = 5
    step_gamma: Annotated[float, Field(gt=0, le=1)] = 0.1


class LossSettings(_Section):
    """The training loss over the sigmoid outputs; the study's binary cross-entropy by default.

    `kind`: `bce`, or `asymmetric`, the asymmetric loss of Ridnik et al. (ICCV 2021): each
    absent class's probability is shifted down by `clip` (an easy negative, p ≤ clip, adds
    nothing) and its term weighted by p^`gamma_neg`, each present class's by (1 - p)^`gamma_pos`
    (the weights as constants, as the authors train). `pos_weight`: `none`, or `frequency`: BCE
    weighs each class's present labels by its absent / present count in the train split (bottle,
    in 5 % of VOC photos, ≈ 19; person ≈ 1.5). Either way the loss is the mean over the labels
    that count (difficult-only ones masked out), on the train split and on val alike.
    """

    kind: Literal["bce", "asymmetric"] = "bce"
    pos_weight: Literal["none", "frequency"] = "none"
    gamma_neg: NonNegativeFloat = 4.0
    gamma_pos: NonNegativeFloat = 0.0
    clip: Annotated[float, Field(ge=0, lt=1)] = 0.05

    @model_validator(mode="after")
    def _pos_weight_is_for_bce(self) -> LossSettings:
        if self.pos_weight != "none" and self.kind != "bce":
            raise ValueError("loss.pos_weight is for kind: bce (the asymmetric loss has its own)")
        return self


class AugmentSettings(_Section):
    """Augmentation strengths for the phase presets (the study's values by default)."""

    rotation_degrees: NonNegativeFloat = 10.0
    saturation: NonNegativeFloat = 0.05
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.05
    hflip: bool = True
    phase3_keeps_rotation: bool = False


class PhaseSettings(_Section):
    """One training phase: its augmentation preset, its number of epochs, and what it trains.

    `train: head` trains the new head alone on the frozen pretrained layers (linear probing);
    with a preset without randomness, their features are computed once and the head trained on
    them, which makes such an epoch nearly free. `train: probe` makes the head the linear
    probe's fit on those features instead of training it by SGD (one logistic regression per
    class, C chosen by cross-validation on the train split: vocproj/training/logistic.py): one
    step, so `epochs: 1`, on the `resize_crop` preset.
    """

    preset: Preset
    epochs: PositiveInt
    train: Literal["all", "head", "probe"] = "all"

    @model_validator(mode="after")
    def _probe_is_one_fit_on_plain_images(self) -> PhaseSettings:
        if self.train == "probe" and (self.epochs != 1 or self.preset != "resize_crop"):
            raise ValueError(
                "a phase with train: probe is one fit on features of plain images: give it "
                "preset: resize_crop and epochs: 1"
            )
        return self


class TrainSettings(_Section):
    """Image size, batches, phases and the hardware knobs of training.

    `batch_size` is the global batch: under torchrun each of N processes takes 1/N of it.
    """

    image_size: PositiveInt = 224
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 64
    phases: list[PhaseSettings]
    best_checkpoint: Literal["val_loss", "last"] = Field(
        default="val_loss",
        description="the epoch best.pt keeps, which evaluation, the browser, predict and export "
        "use: the lowest validation loss over all phases so far, or the last epoch trained",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    compile: bool = Field(default=False, description="torch.compile the model (pays off on CUDA)")
    progress: bool = True
    sync_batchnorm: bool = Field(
        default=True,
        description="under torchrun: BatchNorm statistics of the global batch, so that N "
        "processes compute what one does (off: each process's own slice)",
    )
    timeout_s: PositiveInt = Field(
        default=600,
        description="under torchrun: seconds a process waits for the others before it stops",
    )


class EvaluateSettings(_Section):
    """Test-time augmentation: the one the evaluation uses, and those notebook 04 compares.

    `tta`: none | hflip | five_crop | five_crop_flip (vocproj/images.py `model_views`; the mean of
    the views' probabilities). The evaluation's scores, and so its thresholds, top 50 and
    mistakes, come from it, and `predict` and `export` (in the ONNX model's metadata) follow it.
    `tta_compare`: the augmentations notebook 04 scores side by side, with their time.
    """

    tta: TTA = "none"
    tta_compare: list[TTA] = Field(default_factory=lambda: list(TTA_MODES), min_length=1)


class Settings(_Section):
    """Every value a run depends on."""

    seed: int = 0
    data: DataSettings
    model: ModelSettings = ModelSettings()
    optim: OptimSettings = OptimSettings()
    loss: LossSettings = LossSettings()
    augment: AugmentSettings = AugmentSettings()
    train: TrainSettings
    evaluate: EvaluateSettings = EvaluateSettings()
    runs_dir: str = "runs"
    reports_dir: str = "reports"


class Profile(_Section):
    """A named profile: its settings plus the folder its relative paths are resolved against."""

    profile: str
    settings: Settings
    project_dir: str = Field(default=str(PROJECT_DIR), exclude=True)

    @model_validator(mode="after")
    def _name_is_a_plain_word(self) -> Profile:
        if not self.profile or "/" in self.profile or self.profile.startswith("."):
            raise ValueError(f"profile name must be a plain word, got {self.profile!r}")
        return self

    def resolve(self, path: str) -> Path:
        """Resolve a profile path relative to the project folder."""
        candidate = Path(os.path.expanduser(path))
        return candidate if candidate.is_absolute() else Path(self.project_dir) / candidate

    @property
    def data_root(self) -> Path:
        """The profile's own data folder: downloads, generated trees and the image cache."""
        return self.resolve(self.settings.data.root)

    @property
    def devkit_subdir(self) -> Path:
        return Path("VOCdevkit") / f"VOC{self.settings.data.year}"

    @property
    def voc_root(self) -> Path:
        """The VOC<year> tree: the first of `prefer_roots` that holds one, else under root."""
        for folder in self.settings.data.prefer_roots:
            candidate = self.resolve(folder) / self.devkit_subdir
            if (candidate / "ImageSets" / "Main").is_dir():
                return candidate
        return self.data_root / self.devkit_subdir

    @property
    def export_dir(self) -> Path | None:
        """The annotation tool's export (source: export), read in place."""
        folder = self.settings.data.export_dir
        return None if folder is None else self.resolve(folder)

    @property
    def splits_dir(self) -> Path:
        """`<data root>/splits`: the train/val lists vocproj draws for an export without them."""
        return self.data_root / "splits"

    @property
    def cache_dir(self) -> Path:
        """`<data root>/cache`: each split's decoded, resized images (vocproj/data/cache.py)."""
        return self.data_root / "cache"

    @property
    def run_dir(self) -> Path:
        """`runs/<profile>`: checkpoints, history and scores of this profile."""
        return self.resolve(self.settings.runs_dir) / self.profile

    @property
    def report_dir(self) -> Path:
        """`reports/<profile>`: figures, executed notebooks, metrics and REPORT.md."""
        return self.resolve(self.settings.reports_dir) / self.profile

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data (what a checkpoint records and papermill passes)."""
        return self.model_dump(mode="json")


def profile_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Map a profile name (`sample`) or a YAML path to the YAML file."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        return Path(text)
    return PARAMS_DIR / f"{text}.yaml"


def load_profile(name_or_path: str | os.PathLike[str]) -> Profile:
    """Read and validate a profile by name (`params/<name>.yaml`) or path."""
    path = profile_path(name_or_path)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PARAMS_DIR.glob("*.yaml")))
        raise ConfigError(f"profile file {path} not found; known profiles: {known}.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    project_dir = path.resolve().parent.parent
    return profile_from_mapping(raw, source=str(path), project_dir=project_dir)


def profile_from_mapping(
    raw: Any, *, source: str = "<profile>", project_dir: Path = PROJECT_DIR
) -> Profile:
    """Validate plain data (a parsed YAML file or papermill's parameters) into a Profile."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a mapping with keys 'profile' and 'settings'.")
    try:
        return Profile.model_validate({**raw, "project_dir": str(project_dir)})
    except ValidationError as err:
        raise ConfigError(f"{source} is not a valid profile:\n{_describe(err)}") from None


def profile_from_parameters(profile: str, settings: dict[str, Any] | None = None) -> Profile:
    """What a notebook calls: papermill's injected settings if given, else params/<profile>.yaml."""
    if settings is None:
        return load_profile(profile)
    return profile_from_mapping(
        {"profile": profile, "settings": settings}, source=f"parameters of profile {profile!r}"
    )


def _describe(err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against vocproj/config.py)"
        elif "input" in problem and problem["type"] != "missing":
            message += f" (got {problem['input']!r})"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
