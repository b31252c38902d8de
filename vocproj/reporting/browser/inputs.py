"""What the browser reads: the reports of notebook 04, the validation split, and the model.

`Inputs` holds them all for the tabs to share. A part that cannot be read is None, with the
one-line reason why, so that the rest of the app still loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
from PIL import Image
from pydantic import BaseModel, TypeAdapter, ValidationError

from vocproj.artifacts import (
    EVALUATION_NOTEBOOK,
    RunFiles,
    invalid_report,
    read_chosen_thresholds,
    read_record,
    read_report_json,
)
from vocproj.config import Profile
from vocproj.data.prepare import read_split
from vocproj.data.voc import describe_classes, open_rgb
from vocproj.errors import CheckpointError, ScoresError, VocprojError
from vocproj.reporting.browser.classifier import CHECKPOINT_NOTEBOOK, Classifier, load_classifier
from vocproj.reporting.browser.pictures import heatmap_overlay

DEFAULT_THRESHOLD = 0.5  # used only until notebook 04 has chosen one

T = TypeVar("T")


class RankedImage(BaseModel):
    """One listed image of a report: its place in the list, its id and the class's probability."""

    rank: int
    id: str
    score: float


class TopEntry(RankedImage):
    """One ranked image of top50.json."""

    label: Literal[1, 0, -1]


_TOP50 = TypeAdapter(dict[str, list[TopEntry]])


class MistakeEntry(RankedImage):
    """One image of mistakes.json: its present and difficult-only classes, and those predicted."""

    labels: list[str]
    difficult: list[str]
    predicted: list[str]


class ClassMistakes(BaseModel):
    """A class's most confident false positives and its most missed images, in rank order."""

    false_positives: list[MistakeEntry]
    missed: list[MistakeEntry]


class Mistakes(BaseModel):
    """mistakes.json (layout in vocproj/metrics/multilabel.py)."""

    k: int
    thresholds: dict[str, float]
    classes: dict[str, ClassMistakes]


@dataclass(frozen=True)
class Evaluation:
    """The thresholds chosen by notebook 04 and each class's 50 highest-scored images."""

    classes: tuple[str, ...]
    threshold: float
    per_class_thresholds: dict[str, float | None]
    top50: dict[str, list[TopEntry]]


@dataclass(frozen=True)
class GroundTruth:
    """The validation split: each image's labels (1 / 0 / -1 per class) and file, by id."""

    classes: tuple[str, ...]
    labels: dict[str, np.ndarray]
    image_paths: dict[str, Path]


def load_evaluation(profile: Profile) -> Evaluation:
    """metrics.json's chosen thresholds and top50.json; a missing file names notebook 04."""
    files = RunFiles.of(profile)
    chosen = read_chosen_thresholds(files.metrics, profile.profile)
    top50 = read_report_json(files.top_k, profile.profile)
    try:
        ranked = _TOP50.validate_python(top50)
    except ValidationError as err:
        raise invalid_report(files.top_k, err) from None
    _check_run_classes(files, files.metrics, chosen.classes)
    return Evaluation(
        classes=tuple(chosen.classes),
        threshold=chosen.threshold if chosen.threshold is not None else DEFAULT_THRESHOLD,
        per_class_thresholds=chosen.per_class_thresholds,
        top50={
            name: sorted(ranked[name], key=lambda e: e.rank)
            for name in chosen.classes
            if name in ranked
        },
    )


def load_mistakes(profile: Profile) -> Mistakes:
    """mistakes.json; a missing or malformed file names notebook 04."""
    files = RunFiles.of(profile)
    raw = read_report_json(files.mistakes, profile.profile)
    try:
        mistakes = Mistakes.model_validate(raw)
    except ValidationError as err:
        raise invalid_report(files.mistakes, err) from None
    _check_run_classes(files, files.mistakes, list(mistakes.classes))
    return mistakes


def _check_run_classes(files: RunFiles, path: Path, classes: Sequence[str]) -> None:
    """A ScoresError when a report is for other classes than the run's (run.json, if written)."""
    if not files.record.is_file():
        return
    run_classes = read_record(files).classes
    if tuple(classes) != run_classes:
        raise ScoresError(
            f"{path} is for {describe_classes(classes)}, but the run has "
            f"{describe_classes(run_classes)} (run.json): rerun {EVALUATION_NOTEBOOK}."
        )


def load_ground_truth(profile: Profile, classes: tuple[str, ...]) -> GroundTruth:
    """The validation split over the run's classes."""
    val = read_split(profile, profile.settings.data.val_split, classes)
    return GroundTruth(
        classes,
        dict(zip(val.ids, val.labels, strict=True)),
        dict(zip(val.ids, val.image_paths, strict=True)),
    )


def one_line(text: str) -> str:
    """The text with its line breaks and runs of spaces made single spaces."""
    return " ".join(str(text).split())


def _attempt(load: Callable[[Profile], T], profile: Profile) -> tuple[T | None, str]:
    """Run a loader; on failure return None and the one-line reason instead of raising."""
    try:
        return load(profile), ""
    except VocprojError as err:
        return None, one_line(str(err))
    except Exception as err:  # a broken file must not stop the rest of the app from loading
        return None, one_line(f"{type(err).__name__}: {err}")


@dataclass(frozen=True)
class Inputs:
    """Everything the tabs read, each part None with the one-line reason it could not be read."""

    classifier: Classifier | None
    classifier_problem: str
    evaluation: Evaluation | None
    evaluation_problem: str
    mistakes: Mistakes | None
    mistakes_problem: str
    ground_truth: GroundTruth | None
    truth_problem: str

    @classmethod
    def read(cls, profile: Profile) -> Inputs:
        """Read each part; the validation split only once metrics.json names the classes."""
        classifier, classifier_problem = _attempt(load_classifier, profile)
        evaluation, evaluation_problem = _attempt(load_evaluation, profile)
        mistakes, mistakes_problem = _attempt(load_mistakes, profile)
        ground_truth, truth_problem = (
            _attempt(partial(load_ground_truth, classes=evaluation.classes), profile)
            if evaluation
            else (None, "")
        )
        return cls(
            classifier=classifier,
            classifier_problem=classifier_problem,
            evaluation=evaluation,
            evaluation_problem=evaluation_problem,
            mistakes=mistakes,
            mistakes_problem=mistakes_problem,
            ground_truth=ground_truth,
            truth_problem=truth_problem,
        )

    @property
    def classes(self) -> tuple[str, ...]:
        """The run's classes, as the model, the evaluation or the labels know them."""
        for source in (self.classifier, self.evaluation, self.ground_truth):
            if source is not None:
                return source.classes
        return ()

    def image_path(self, image_id: str) -> Path:
        """Where a validation image is (from the split's own layout)."""
        if self.ground_truth is None:
            raise ScoresError(f"cannot find image {image_id}: {self.truth_problem}")
        return self.ground_truth.image_paths[image_id]

    def validation_image(self, image_id: str) -> Image.Image:
        """A validation image, decoded to RGB."""
        return open_rgb(self.image_path(image_id))

    def heatmap(self, image: Image.Image, class_index: int) -> Image.Image:
        """The image fit for display with a class's Grad-CAM over it (needs the model)."""
        if self.classifier is None:
            raise CheckpointError(f"No model for a heatmap: run {CHECKPOINT_NOTEBOOK} first.")
        return heatmap_overlay(self.classifier, image, class_index)
