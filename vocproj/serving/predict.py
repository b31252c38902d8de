"""Labelling image files with a trained model: which files, in batches, at which thresholds.

`python -m vocproj predict PATH...` runs `predict_paths` with either engine: the PyTorch network
of a run (vocproj/serving/export.py) or an exported ONNX model under ONNX Runtime
(vocproj/serving/onnx_runtime.py). All this module needs of a model is an `Engine`, a function
from an N×3×S×S float32 batch to N×C probabilities, and its `ModelCard`: the class list, the
input size and normalisation, and the thresholds the run chose. Nothing here imports torch.

Output files (`write_predictions`, by suffix):

- `.json`: {"model", "classes", "thresholds": {class: t}, "threshold_rule", "tta",
  "predictions": [{"file", "labels": [class, ...], "probabilities": {class: p}}],
  "failures": [{"file", "error"}]};
- `.csv`: one row per file: file, labels (";"-separated), error (empty when predicted), then one
  column of probabilities per class, in the model's class order.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vocproj.errors import VocprojError
from vocproj.images import TTA_MODES, ImageDecodeError, Normalisation, model_views, read_image
from vocproj.io import atomic_write_text
from vocproj.metrics.thresholds import NOT_IDENTIFIED, labels_at_threshold, threshold_vector

Engine = Callable[[np.ndarray], np.ndarray]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
OUTPUT_SUFFIXES = (".json", ".csv")
GLOB_CHARACTERS = frozenset("*?[")
METADATA_FORMAT = "1"  # the version of the metadata layout below


class PredictError(VocprojError):
    """A prediction cannot start: no model card, no thresholds, or an unusable output path."""


@dataclass(frozen=True)
class ModelCard:
    """What a model needs besides its weights to label a photo, and where it came from."""

    classes: tuple[str, ...]
    image_size: int
    normalisation: Normalisation
    threshold: float | None  # the run's F1-best global threshold (metrics.json)
    per_class_thresholds: Mapping[str, float | None] = field(default_factory=dict)
    source: str = ""
    tta: str = "none"  # the test-time augmentation the run's thresholds were chosen with

    def to_metadata(self) -> dict[str, str]:
        """String key/value pairs for an ONNX model's metadata (values JSON-encoded)."""
        return {
            "vocproj.format": METADATA_FORMAT,
            "classes": json.dumps(list(self.classes)),
            "image_size": json.dumps(self.image_size),
            "normalisation": json.dumps(self.normalisation._asdict()),
            "threshold": json.dumps(self.threshold),
            "per_class_thresholds": json.dumps(dict(self.per_class_thresholds)),
            "preprocessing": (
                f"RGB; resize the shorter side to {self.image_size} px (bilinear, antialiased), "
                f"centre-crop {self.image_size}x{self.image_size}, scale to [0, 1], subtract "
                f"normalisation.mean and divide by normalisation.std per channel; NCHW float32"
            ),
            "output": "probabilities: the sigmoid of each class's logit, in the order of classes",
            "tta": self.tta,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str) -> ModelCard:
        """The card `to_metadata` wrote; a PredictError when the model has none."""
        if metadata.get("vocproj.format") != METADATA_FORMAT:
            raise PredictError(
                f"{source} has no vocproj metadata (format {METADATA_FORMAT}): export it with "
                f"`python -m vocproj export --profile P --format onnx`."
            )
        try:
            normalisation = json.loads(metadata["normalisation"])
            return cls(
                classes=tuple(json.loads(metadata["classes"])),
                image_size=int(json.loads(metadata["image_size"])),
                normalisation=Normalisation(
                    tuple(normalisation["mean"]), tuple(normalisation["std"])
                ),
                threshold=json.loads(metadata["threshold"]),
                per_class_thresholds=json.loads(metadata["per_class_thresholds"]),
                source=source,
                tta=_known_tta(metadata.get("tta", "none")),  # exported before TTA: none
            )
        except (KeyError, TypeError, ValueError) as err:
            raise PredictError(
                f"{source}'s vocproj metadata is incomplete or malformed ({err!r}); export the "
                f"model again with `python -m vocproj export`."
            ) from None


def _known_tta(name: str) -> str:
    if name not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {name!r}, not one of {TTA_MODES}")
    return name


# ------------------------------------------------------------------------------ thresholds


@dataclass(frozen=True)
class Thresholds:
    """The threshold of each class for this prediction, and the rule that gave them."""

    values: np.ndarray
    rule: str


def choose_thresholds(card: ModelCard, threshold: float | None, per_class: bool) -> Thresholds:
    """`--threshold X` for every class, else the run's chosen one (each class's: --per-class)."""
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise PredictError(f"--threshold {threshold} is not a probability in [0, 1].")
        return Thresholds(threshold_vector(card.classes, threshold), f"{threshold:g} (--threshold)")
    if card.threshold is None:
        raise PredictError(
            f"{card.source} comes without a chosen threshold (no metrics.json, or no threshold "
            f"gave a positive F1); pass --threshold X, or evaluate the run first."
        )
    if per_class:
        values = threshold_vector(card.classes, card.threshold, card.per_class_thresholds)
        return Thresholds(values, "each class's F1-best threshold of the run (--per-class)")
    return Thresholds(
        threshold_vector(card.classes, card.threshold),
        f"{card.threshold:g}, the run's F1-best threshold",
    )


# ------------------------------------------------------------------------------ which files


@dataclass(frozen=True)
class Inputs:
    """The files to predict, the arguments that named nothing, the non-images left out."""

    files: list[Path]
    unmatched: list[str]
    left_out: list[Path]


def find_images(arguments: Sequence[str]) -> Inputs:
    """Files as given, folders searched recursively for images (by suffix), globs expanded."""
    files: list[Path] = []
    unmatched: list[str] = []
    left_out: list[Path] = []
    for argument in arguments:
        found = _expand(argument)
        if not found:
            unmatched.append(argument)
        for path in found:
            if path.is_dir():
                images, others = _images_in(path)
                files += images
                left_out += others
            else:
                files.append(path)
    return Inputs(_unique(files), unmatched, _unique(left_out))


def _expand(argument: str) -> list[Path]:
    if GLOB_CHARACTERS & set(argument):
        return [Path(name) for name in sorted(glob.glob(argument, recursive=True))]
    path = Path(argument)
    return [path] if path.exists() else []


def _images_in(folder: Path) -> tuple[list[Path], list[Path]]:
    """A folder's image files and its other files, recursively, sorted; hidden ones ignored."""
    images: list[Path] = []
    others: list[Path] = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                path = Path(root) / name
                (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return images, others


def _unique(paths: list[Path]) -> list[Path]:
    """The paths in order, each file once (a file named twice, or by a folder and a glob)."""
    seen: set[str] = set()
    kept = []
    for path in paths:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            kept.append(path)
    return kept


# ------------------------------------------------------------------------------ predicting


@dataclass(frozen=True)
class Prediction:
    """One file's probabilities and the labels at the thresholds."""

    file: str
    probabilities: np.ndarray
    labels: list[tuple[str, float]]


@dataclass(frozen=True)
class Failure:
    """A file that could not be predicted, and why."""

    file: str
    error: str


def _decode(path: Path, card: ModelCard) -> np.ndarray | Failure:
    """The file's V×3×S×S views under the card's test-time augmentation, or why not."""
    try:
        return model_views(read_image(path), card.image_size, card.normalisation, card.tta)
    except ImageDecodeError as err:
        return Failure(str(path), str(err))


def predict_files(
    files: Sequence[Path],
    engine: Engine,
    card: ModelCard,
    thresholds: Thresholds,
    batch_size: int = 32,
    progress: bool = False,
) -> Iterator[Prediction | Failure]:
    """Each file's Prediction or Failure, in order; images decoded in threads, run in batches."""
    if batch_size < 1:
        raise PredictError(f"--batch-size {batch_size} must be at least 1.")
    bar = progress_bar(len(files), progress)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            decoded = list(pool.map(lambda path: _decode(path, card), chunk))
            yield from _run_batch(chunk, decoded, engine, card, thresholds)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()


def _run_batch(
    chunk: Sequence[Path],
    decoded: list[np.ndarray | Failure],
    engine: Engine,
    card: ModelCard,
    thresholds: Thresholds,
) -> Iterator[Prediction | Failure]:
    inputs = [item for item in decoded if isinstance(item, np.ndarray)]
    probabilities = iter(mean_over_views(engine, inputs) if inputs else [])
    for path, item in zip(chunk, decoded, strict=True):
        if isinstance(item, Failure):
            yield item
        else:
            scores = np.asarray(next(probabilities), dtype=float)
            labels = labels_at_threshold(card.classes, scores, thresholds.values)
            yield Prediction(str(path), scores, labels)


def mean_over_views(engine: Engine, views: list[np.ndarray]) -> np.ndarray:
    """Each image's probabilities, the mean over its views (one engine call for all)."""
    per_image = len(views[0])
    probabilities = engine(np.concatenate(views))
    return probabilities.reshape(len(views), per_image, -1).mean(axis=1)


def progress_bar(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr when asked for and tqdm is installed (a service may lack it)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="image", desc="predict")


# ------------------------------------------------------------------------------ output


def check_output_path(path: str | os.PathLike[str] | None) -> None:
    """Refuse an --out that predictions could not be written to, before any work is done."""
    if path is None:
        return
    target = Path(path)
    if target.suffix.lower() not in OUTPUT_SUFFIXES:
        raise PredictError(f"--out {target} must end in .json or .csv.")
    if target.is_dir():
        raise PredictError(f"--out {target} is a folder; name a .json or .csv file.")


def format_labels(prediction: Prediction, classes: Sequence[str]) -> str:
    """`cat 0.97, sofa 0.62`, or `Not Identified (top: dog 0.31)` when nothing passes."""
    if prediction.labels:
        return ", ".join(f"{name} {p:.2f}" for name, p in prediction.labels)
    top = int(np.argmax(prediction.probabilities))
    return f"{NOT_IDENTIFIED} (top: {classes[top]} {prediction.probabilities[top]:.2f})"


def table_line(result: Prediction | Failure, classes: Sequence[str], width: int) -> str:
    """One terminal row: the file, then its labels or why it failed."""
    if isinstance(result, Failure):
        return f"{result.file:<{width}}  FAILED: {result.error}"
    return f"{result.file:<{width}}  {format_labels(result, classes)}"


def write_predictions(
    path: str | os.PathLike[str],
    results: Sequence[Prediction | Failure],
    card: ModelCard,
    thresholds: Thresholds,
) -> None:
    """Every result to a .json or .csv file (atomically), as the module docstring describes."""
    target = Path(path)
    if target.suffix.lower() == ".csv":
        atomic_write_text(target, _csv_text(results, card.classes))
    else:
        atomic_write_text(target, json.dumps(_json_document(results, card, thresholds), indent=2))


def _json_document(
    results: Sequence[Prediction | Failure], card: ModelCard, thresholds: Thresholds
) -> dict[str, Any]:
    return {
        "model": card.source,
        "classes": list(card.classes),
        "thresholds": dict(zip(card.classes, map(float, thresholds.values), strict=True)),
        "threshold_rule": thresholds.rule,
        "tta": card.tta,
        "predictions": [
            {
                "file": r.file,
                "labels": [name for name, _ in r.labels],
                "probabilities": dict(zip(card.classes, map(float, r.probabilities), strict=True)),
            }
            for r in results
            if isinstance(r, Prediction)
        ],
        "failures": [{"file": r.file, "error": r.error} for r in results if isinstance(r, Failure)],
    }


def _csv_text(results: Sequence[Prediction | Failure], classes: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "labels", "error", *classes])
    for r in results:
        if isinstance(r, Failure):
            writer.writerow([r.file, "", r.error, *[""] * len(classes)])
        else:
            labels = ";".join(name for name, _ in r.labels)
            writer.writerow([r.file, labels, "", *(f"{p:.8g}" for p in r.probabilities)])
    return buffer.getvalue()


# ------------------------------------------------------------------------------ the command


def predict_paths(
    arguments: Sequence[str],
    engine: Engine,
    engine_name: str,
    card: ModelCard,
    thresholds: Thresholds,
    *,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> int:
    """Predict the images the arguments name, print the table, write `out`; the exit code.

    The exit code is 1 when any file could not be predicted or an argument named nothing (the
    other files are predicted), else 0. `engine_name` names the engine in the summary line.
    """
    inputs = images_to_predict(arguments)
    started = time.perf_counter()
    results = predict_keeping_what_finished(
        inputs.files, engine, card, thresholds, out, batch_size, progress
    )
    seconds = time.perf_counter() - started
    print_predictions(results, card, inputs, thresholds.rule, f"{engine_name}, {seconds:.1f} s")
    if out is not None:
        write_predictions(out, results, card, thresholds)
        print(f"wrote {out}")
    return prediction_exit_code(results, inputs)


def images_to_predict(arguments: Sequence[str]) -> Inputs:
    """`find_images`, or a PredictError when the arguments name no image file at all."""
    inputs = find_images(arguments)
    if not inputs.files:
        raise PredictError(
            f"nothing to predict: no image file in {', '.join(arguments)} "
            f"(folders are searched for {', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    return inputs


def predict_keeping_what_finished(
    files: Sequence[Path],
    engine: Engine,
    card: ModelCard,
    thresholds: Thresholds,
    out: str | os.PathLike[str] | None,
    batch_size: int,
    progress: bool,
) -> list[Prediction | Failure]:
    """Every file's result; on Ctrl-C the files done so far are written to `out` first."""
    results: list[Prediction | Failure] = []
    try:
        for result in predict_files(files, engine, card, thresholds, batch_size, progress):
            results.append(result)
    except KeyboardInterrupt:
        if out is not None and results:
            write_predictions(out, results, card, thresholds)
            print(f"the {len(results)} files done so far are in {out}", file=sys.stderr)
        raise
    return results


def print_predictions(
    results: Sequence[Prediction | Failure], card: ModelCard, inputs: Inputs, rule: str, how: str
) -> None:
    """The table of files and labels, what was skipped, and a summary line."""
    width = min(60, max(len(r.file) for r in results))
    for result in results:
        print(table_line(result, card.classes, width))
    for argument in inputs.unmatched:
        print(f"{argument:<{width}}  FAILED: no such file or folder, and no file matches it")
    if inputs.left_out:
        names = ", ".join(str(path) for path in inputs.left_out[:5])
        more = f" and {len(inputs.left_out) - 5} more" if len(inputs.left_out) > 5 else ""
        print(f"left out {len(inputs.left_out)} file(s) that are not images by name: {names}{more}")
    failed = sum(isinstance(r, Failure) for r in results)
    predicted = len(results) - failed
    print(
        f"predicted {predicted} of {len(results)} image file(s) ({how}, {card.source}"
        f"{'' if card.tta == 'none' else ', test-time augmentation ' + card.tta}); "
        f"{failed + len(inputs.unmatched)} failed; labels at threshold {rule}"
    )


def prediction_exit_code(results: Sequence[Prediction | Failure], inputs: Inputs) -> int:
    """1 when a file failed or an argument matched nothing, else 0."""
    failed = any(isinstance(result, Failure) for result in results)
    return 1 if failed or inputs.unmatched else 0
