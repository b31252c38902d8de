"""The run's files, by name, and the run's record of itself: the one room every stage reads.

    runs/<profile>/
        run.json                 the record: class list, normalisation, data (`RunRecord`)
        splits/<split>.csv       each split as the data stage resolved it: id, files, labels
        phase<N>/last.pt, best.pt
        history.csv              every epoch of every phase so far
        features/<split>.npz     frozen starting features (vocproj/training/features.py)
        scores_<split>.npz       the best checkpoint's probabilities (vocproj/metrics/multilabel.py)
        model.onnx               `python -m vocproj export`'s model (vocproj/serving/export.py)
    reports/<profile>/
        metrics.json, top50.json, mistakes.json, calibration.json, tta.json, probe.json,
        dataset.json, environment.json, REPORT.md
        figures/*.png, *.jpg     the names below (grids of photos are JPEG)
        notebooks/*.ipynb        the executed notebooks

The data stage (`vocproj.data.prepare.prepare_data`) writes `run.json` and the split lists;
training, evaluation, the browser and the report read the class list, normalisation and splits
from them rather than work them out again.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from vocproj.config import Profile
from vocproj.errors import ScoresError, VocprojError
from vocproj.images import Normalisation
from vocproj.io import atomic_write_json

RECORD_FILE = "run.json"
SPLIT_LISTS_DIR = "splits"  # <split>.csv: each split as the data stage resolved it
FEATURES_DIR = "features"  # <split>.npz: the starting weights' frozen features
LAST, BEST, HISTORY = "last.pt", "best.pt", "history.csv"
HISTORY_FIELDS = (
    "phase", "epoch", "global_epoch", "preset", "train_loss", "val_loss", "val_map", "lr",
    "seconds", "train_images_per_second",
)  # fmt: skip
METRICS_FILE = "metrics.json"
TOP_K_FILE = "top50.json"
PROBE_FILE = "probe.json"
DATASET_FILE = "dataset.json"
ENVIRONMENT_FILE = "environment.json"
REPORT_FILE = "REPORT.md"
ONNX_FILE = "model.onnx"
MISTAKES_FILE = "mistakes.json"  # each class's most confident false positives and most missed
CALIBRATION_FILE = "calibration.json"  # reliability, ECE and the fitted temperatures
TTA_FILE = "tta.json"  # the mAP and time of each test-time augmentation
EVALUATION_NOTEBOOK = "notebooks/04_evaluation.ipynb"
FIGURES_DIR = "figures"
EXECUTED_NOTEBOOKS_DIR = "notebooks"

LOSS_FIGURE = "loss.png"
THRESHOLD_SWEEP_FIGURE = "threshold_sweep.png"
PER_CLASS_AP_FIGURE = "per_class_ap.png"
PR_CURVES_FIGURE = "pr_curves.png"
METRIC_FIGURES = (THRESHOLD_SWEEP_FIGURE, PER_CLASS_AP_FIGURE, PR_CURVES_FIGURE)
LABEL_FREQUENCY_FIGURE = "label_frequency.png"
COOCCURRENCE_FIGURE = "cooccurrence.png"
OBJECTS_PER_IMAGE_FIGURE = "objects_per_image.png"
IMAGE_SIZES_FIGURE = "image_sizes.png"
EXAMPLES_FIGURE = "examples.jpg"  # grids of photos are JPEG (explore.PhotoGrid)
MISTAKES_FIGURE = "mistakes_{kind}.jpg"  # kind: false_positives | missed (figure(...format()))
RELIABILITY_FIGURE = "reliability.png"  # pooled, before and after temperature scaling
RELIABILITY_PER_CLASS_FIGURE = "reliability_per_class.png"


def augmentation_figure(phase: int) -> str:
    """File name of phase `phase`'s augmentation preview (notebooks 01-03, REPORT.md)."""
    return f"augment_phase{phase}.jpg"


def loss_figure(phase: int) -> str:
    """File name of the loss curve drawn after phase `phase` (notebooks 01-03)."""
    return f"loss_phase{phase}.png"


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """Read history.csv back with numbers as numbers."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    integers = {"phase", "epoch", "global_epoch"}
    return [
        {k: (int(v) if k in integers else v if k == "preset" else float(v)) for k, v in row.items()}
        for row in rows
    ]


class RunRecordError(VocprojError):
    """The run's record is missing or unreadable."""


@dataclass(frozen=True)
class RunFiles:
    """Where each of a profile's files lives."""

    profile: str
    run_dir: Path
    report_dir: Path
    phases: int

    @classmethod
    def of(cls, profile: Profile) -> RunFiles:
        phases = len(profile.settings.train.phases)
        return cls(profile.profile, profile.run_dir, profile.report_dir, phases)

    @property
    def record(self) -> Path:
        return self.run_dir / RECORD_FILE

    def split_list(self, split: str) -> Path:
        """runs/<profile>/splits/<split>.csv: ids, files and labels the data stage resolved."""
        return self.run_dir / SPLIT_LISTS_DIR / f"{split}.csv"

    def phase_dir(self, phase: int) -> Path:
        return self.run_dir / f"phase{phase}"

    def last(self, phase: int) -> Path:
        return self.phase_dir(phase) / LAST

    def best(self, phase: int) -> Path:
        return self.phase_dir(phase) / BEST

    @property
    def final_best(self) -> Path:
        """The best checkpoint over all phases: the last phase's best.pt (each carries it on)."""
        return self.best(self.phases)

    @property
    def history(self) -> Path:
        return self.run_dir / HISTORY

    def scores(self, split: str) -> Path:
        return self.run_dir / f"scores_{split}.npz"

    def features(self, split: str) -> Path:
        """The starting weights' frozen features of a split (vocproj/training/features.py)."""
        return self.run_dir / FEATURES_DIR / f"{split}.npz"

    @property
    def onnx(self) -> Path:
        return self.run_dir / ONNX_FILE

    @property
    def mistakes(self) -> Path:
        return self.report_dir / MISTAKES_FILE

    @property
    def calibration(self) -> Path:
        return self.report_dir / CALIBRATION_FILE

    @property
    def tta(self) -> Path:
        return self.report_dir / TTA_FILE

    @property
    def metrics(self) -> Path:
        return self.report_dir / METRICS_FILE

    @property
    def top_k(self) -> Path:
        return self.report_dir / TOP_K_FILE

    @property
    def probe(self) -> Path:
        return self.report_dir / PROBE_FILE

    @property
    def dataset_summary(self) -> Path:
        return self.report_dir / DATASET_FILE

    @property
    def environment(self) -> Path:
        return self.report_dir / ENVIRONMENT_FILE

    @property
    def report(self) -> Path:
        return self.report_dir / REPORT_FILE

    @property
    def figures(self) -> Path:
        return self.report_dir / FIGURES_DIR

    def figure(self, name: str) -> Path:
        return self.figures / name

    @property
    def executed_notebooks(self) -> Path:
        return self.report_dir / EXECUTED_NOTEBOOKS_DIR


@dataclass(frozen=True)
class RunRecord:
    """What a run is, as the data stage found it: its classes, inputs and data."""

    profile: str
    classes: tuple[str, ...]
    backbone: str
    normalisation: Normalisation
    image_size: int
    source: str
    layout: str
    data_dir: str
    splits: dict[str, int]  # split name → images
    split_lists: str | None = None  # where the train/val lists vocproj drew are, if it drew them
    prepared_with: dict[str, Any] | None = None  # the settings the data stage ran with

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "normalisation": self.normalisation._asdict()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        normalisation = Normalisation(**{k: tuple(v) for k, v in data["normalisation"].items()})
        return cls(**{**data, "classes": tuple(data["classes"]), "normalisation": normalisation})


def write_record(files: RunFiles, record: RunRecord) -> None:
    atomic_write_json(files.record, record.to_json())


def read_record(files: RunFiles) -> RunRecord:
    """The run's record; a RunRecordError that says which command writes it when missing."""
    path = files.record
    fix = f"run `python -m vocproj data --profile {files.profile}` (or notebook 00) to write it"
    try:
        return RunRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise RunRecordError(f"the run's record {path} is missing; {fix}.") from None
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise RunRecordError(f"the run's record {path} is unreadable ({err}); {fix}.") from None


class _BestThreshold(BaseModel):
    threshold: float


class ChosenThresholds(BaseModel):
    """The part of metrics.json that labels images: its classes and the thresholds chosen."""

    classes: list[str]
    best_threshold_f1: _BestThreshold | None
    per_class_thresholds: dict[str, float | None]

    @property
    def threshold(self) -> float | None:
        """The F1-best global threshold (None when no threshold gave a positive F1)."""
        return None if self.best_threshold_f1 is None else self.best_threshold_f1.threshold


def read_report_json(path: Path, profile: str) -> Any:
    """metrics.json or top50.json; missing or unreadable, a ScoresError that names notebook 04."""
    if not path.is_file():
        raise ScoresError(
            f"No evaluation results yet: {path} not found. Run {EVALUATION_NOTEBOOK} first "
            f"(or `python -m vocproj evaluate --profile {profile}`)."
        )
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ScoresError(f"{path} cannot be read ({err}); rerun {EVALUATION_NOTEBOOK}.") from None


def invalid_report(path: Path, err: ValidationError) -> ScoresError:
    """A ScoresError saying where `path` differs from what notebook 04 writes."""
    problem = err.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    return ScoresError(
        f"{path} is not what {EVALUATION_NOTEBOOK} writes "
        f"({where}: {problem['msg']}); rerun {EVALUATION_NOTEBOOK}."
    )


def read_chosen_thresholds(path: Path, profile: str) -> ChosenThresholds:
    """The class list and thresholds of a metrics.json."""
    try:
        return ChosenThresholds.model_validate(read_report_json(path, profile))
    except ValidationError as err:
        raise invalid_report(path, err) from None
