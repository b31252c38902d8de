"""The prediction browser: the study's two tabs as an ipywidgets app, a third of mistakes, Grad-CAM.

"Predict Image" classifies an uploaded image at the chosen threshold (a live slider, or the
per-class thresholds of metrics.json) and charts all 20 probabilities; "View Top50 Result" walks
each class's 50 highest-scored validation images with their ground truth; a third tab,
"Mistakes", walks each class's most confident false positives and most missed images. Every tab
can overlay a Grad-CAM heatmap (pytorch-grad-cam on the backbone's last convolutional block).

It reads what earlier stages wrote: the best checkpoint (`runs/<profile>/phase3/best.pt`),
`reports/<profile>/metrics.json`, `top50.json` and `mistakes.json`, and the validation images and
labels.

An upload is decoded and preprocessed as `python -m vocproj predict` does it (vocproj/images.py),
and labelled by the same threshold rules (vocproj/serving/predict.py). The plain-Python core
(predicting, top-50 option labels, the heatmap overlay, the probability chart) is kept apart
from the widget wiring in `BrowserApp`. The app never raises into the notebook: every problem
becomes one line of text in the tab where it happened, and the app stays usable.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

import ipywidgets as widgets
import numpy as np
import torch
from PIL import Image, ImageEnhance
from pydantic import BaseModel, TypeAdapter, ValidationError
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

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
from vocproj.files import MAX_IMAGE_BYTES, read_regular_file
from vocproj.images import Normalisation, decode_image, model_input
from vocproj.metrics.thresholds import NOT_IDENTIFIED, labels_at_threshold, threshold_vector
from vocproj.model.network import checkpoint_normalisation, load_checkpoint, model_from_checkpoint
from vocproj.reporting.plots import probability_chart_png

CHECKPOINT_NOTEBOOK = "notebooks/03_phase3_colour_flip.ipynb"
DEFAULT_THRESHOLD = 0.5  # used only until notebook 04 has chosen one
DISPLAY_SIZE = 384  # longest side of a shown image, in pixels
TOP_PREDICTION = "top prediction"
COMPACT = {"description_width": "initial"}  # a dropdown's label as wide as its text
CHIP_STYLE = 'style="font-size:14px;background:#e3ecfa;border-radius:10px;padding:2px 9px"'
NOTICE_COLOUR, ERROR_COLOUR = "#555555", "#b00020"
HEATMAP_CAPTION = "Grad-CAM heatmap of <b>{name}</b> on the centre crop the model sees"
GROUND_TRUTH_MARKS = {
    1: ("✓ correct", "is in this image", "#1b7f3b"),
    0: ("✗ wrong", "is not in this image", "#b00020"),
    -1: ("◐ difficult", "appears only as a difficult object", "#8a6d00"),
}


class MistakeKind(NamedTuple):
    """How the Mistakes tab words one list of mistakes.json."""

    label: str  # in the kind menu
    why: str  # why a listed image is a mistake
    empty: str  # why the list can be empty


MISTAKE_KINDS = {
    "false_positives": MistakeKind(
        "false positives",
        "✗ false positive: {name} is not in this image",
        "every validation image has {name}, at least as a difficult object",
    ),
    "missed": MistakeKind(
        "missed",
        "✗ missed: {name} is in this image",
        "no validation image has {name} other than as a difficult object",
    ),
}

T = TypeVar("T")
W = TypeVar("W", bound=widgets.DOMWidget)


# ------------------------------------------------------------------------------ what it reads


@dataclass(frozen=True)
class Classifier:
    """The best checkpoint's network in eval mode on the CPU, with its eval preprocessing."""

    model: nn.Module
    image_size: int
    checkpoint: Path
    normalisation: Normalisation
    classes: tuple[str, ...]

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One image as the 1×3×S×S batch the network was evaluated on."""
        pixels = model_input(image, self.image_size, self.normalisation)
        return torch.from_numpy(pixels).unsqueeze(0)


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


def load_classifier(profile: Profile) -> Classifier:
    """The best checkpoint over all phases, trained for the run's classes (run.json)."""
    files = RunFiles.of(profile)
    path = files.final_best
    if not path.is_file():
        raise CheckpointError(
            f"No trained model yet: {path} not found. Run {CHECKPOINT_NOTEBOOK} first "
            f"(or `python -m vocproj train --profile {profile.profile} --phase all`)."
        )
    classes = read_record(files).classes
    checkpoint = load_checkpoint(path)
    try:
        model = model_from_checkpoint(checkpoint, classes, path).eval()
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} does not fit model.backbone={profile.settings.model.backbone!r} of the "
            f"profile ({str(err)[:200]}); retrain with {CHECKPOINT_NOTEBOOK}."
        ) from None
    image_size = int(checkpoint.get("image_size", profile.settings.train.image_size))
    return Classifier(model, image_size, path, checkpoint_normalisation(checkpoint), classes)


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


@dataclass(frozen=True)
class GroundTruth:
    """The validation split: each image's labels (1 / 0 / -1 per class) and file, by id."""

    classes: tuple[str, ...]
    labels: dict[str, np.ndarray]
    image_paths: dict[str, Path]


def load_ground_truth(profile: Profile, classes: tuple[str, ...]) -> GroundTruth:
    """The validation split over the run's classes."""
    val = read_split(profile, profile.settings.data.val_split, classes)
    return GroundTruth(
        classes,
        dict(zip(val.ids, val.labels, strict=True)),
        dict(zip(val.ids, val.image_paths, strict=True)),
    )


# ------------------------------------------------------------------------------ the core


@torch.no_grad()
def predict_probabilities(classifier: Classifier, image: Image.Image) -> np.ndarray:
    """The 20 class probabilities (sigmoid of the logits) of one RGB image."""
    logits = classifier.model(classifier.preprocess(image))
    return torch.sigmoid(logits)[0].numpy()


def top50_options(entries: Sequence[RankedImage]) -> list[tuple[str, str]]:
    """Dropdown options `rank. id (score)` → id, in rank order (of a top-50 or mistakes list)."""
    return [
        (f"{e.rank}. {e.id} ({e.score:.3f})", e.id) for e in sorted(entries, key=lambda e: e.rank)
    ]


def gradcam_target_layer(model: nn.Module) -> nn.Module:
    """The backbone's last feature map: `layer4[-1]` of a ResNet, `features[-1]` of torchvision's
    other CNNs, the activated head convolution (`bn2`) of timm's EfficientNets."""
    for blocks in ("layer4", "features"):
        if hasattr(model, blocks):
            return getattr(model, blocks)[-1]
    if hasattr(model, "conv_head") and hasattr(model, "bn2"):
        return model.bn2
    raise CheckpointError(
        f"heatmaps need a ResNet-like (layer4), a features-based or an EfficientNet (conv_head) "
        f"backbone; {type(model).__name__} has none of them."
    )


def gradcam_map(classifier: Classifier, image: Image.Image, class_index: int) -> np.ndarray:
    """Grad-CAM of one class over the model's S×S input, scaled to [0, 1]."""
    layer = gradcam_target_layer(classifier.model)
    with GradCAM(model=classifier.model, target_layers=[layer]) as cam:
        maps = cam(
            input_tensor=classifier.preprocess(image),
            targets=[ClassifierOutputTarget(class_index)],
        )
    return maps[0]


def fit_for_display(image: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    """Scale the image (up or down) so that its longest side is `size` pixels."""
    scale = size / max(image.size)
    shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(shape, Image.Resampling.LANCZOS)


def centre_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The centred square box that the eval transform's resize + centre crop keeps."""
    width, height = size
    side = min(width, height)
    left, top = round((width - side) / 2), round((height - side) / 2)
    return left, top, left + side, top + side


def heatmap_overlay(classifier: Classifier, image: Image.Image, class_index: int) -> Image.Image:
    """The shown image with a class's Grad-CAM blended over the centre square the model sees.

    The rest of the image, which the centre crop drops, is dimmed.
    """
    shown = fit_for_display(image)
    box = centre_square(shown.size)
    side = box[2] - box[0]
    cam = Image.fromarray(gradcam_map(classifier, image, class_index).astype(np.float32), "F")
    mask = np.clip(np.asarray(cam.resize((side, side), Image.Resampling.BILINEAR)), 0, 1)
    crop = np.asarray(shown.crop(box), dtype=np.float32) / 255
    blended = Image.fromarray(show_cam_on_image(crop, mask, use_rgb=True, image_weight=0.55))
    result = ImageEnhance.Brightness(shown).enhance(0.4)
    result.paste(blended, box[:2])
    return result


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# ------------------------------------------------------------------------------ the widgets


@dataclass
class Prediction:
    """The image shown in the Predict Image tab and its probabilities."""

    name: str
    image: Image.Image
    probabilities: np.ndarray


def _attempt(load: Callable[[Profile], T], profile: Profile) -> tuple[T | None, str]:
    """Run a loader; on failure return None and the one-line reason instead of raising."""
    try:
        return load(profile), ""
    except VocprojError as err:
        return None, one_line(str(err))
    except Exception as err:  # a broken file must not stop the rest of the app from loading
        return None, one_line(f"{type(err).__name__}: {err}")


def _tagged(widget: W, name: str) -> W:
    """Give a widget the CSS class `vocproj-<name>`, which the browser tests select it by."""
    widget.add_class(f"vocproj-{name}")
    return widget


def _picture(fmt: str) -> widgets.Image:
    return widgets.Image(format=fmt, layout=widgets.Layout(display="none"))


def _show_picture(picture: widgets.Image, data: bytes) -> None:
    """Set an Image widget's bytes; an empty one is hidden, not drawn as a broken image."""
    picture.value = data
    picture.layout.display = None if data else "none"


def _text_line(text: str, colour: str) -> str:
    return f'<span style="color:{colour}">{html.escape(one_line(text))}</span>' if text else ""


def _confidence_line(name: str, score: float, place: str) -> str:
    """A listed image's probability for the class, and its place in the list."""
    return (
        f'<p style="font-size:15px;margin:4px 0">Confidence for <b>{name}</b>: '
        f"<b>{score:.3f}</b> &nbsp;({place})</p>"
    )


def _ground_truth_line(present: Sequence[str], difficult: Sequence[str]) -> str:
    truth = ", ".join(present) or "none"
    if difficult:
        truth += f" (difficult only: {', '.join(difficult)})"
    return f'<p style="margin:4px 0">Ground truth: {truth}</p>'


def _verdict_line(text: str, colour: str) -> str:
    return f'<p style="margin:4px 0;color:{colour};font-weight:bold">{text}</p>'


class BrowserApp:
    """The three tabs as widgets; each part is an attribute, so tests drive it without a browser.

    `widget` is what a notebook displays. Each tab has a `notice` line (what is missing, in
    grey, for as long as it is missing) and a `message` line (the last action's problem, in red).
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.classifier, classifier_problem = _attempt(load_classifier, profile)
        self.evaluation, evaluation_problem = _attempt(load_evaluation, profile)
        self.mistakes, mistakes_problem = _attempt(load_mistakes, profile)
        self.ground_truth, self.truth_problem = (
            _attempt(partial(load_ground_truth, classes=self.evaluation.classes), profile)
            if self.evaluation
            else (None, "")
        )
        self.classes = self._classes()
        self.prediction: Prediction | None = None
        self._filling_images = False
        self.predict_tab = self._build_predict_tab()
        self.top50_tab = self._build_top50_tab()
        self.mistakes_tab = self._build_mistakes_tab()
        self.widget = widgets.Tab(
            children=[self.predict_tab, self.top50_tab, self.mistakes_tab],
            titles=("Predict Image", "View Top50 Result", "Mistakes"),
        )
        self._start_predict_tab(classifier_problem, evaluation_problem)
        self._start_top50_tab(classifier_problem, evaluation_problem)
        self._start_mistakes_tab(classifier_problem, mistakes_problem)

    def _classes(self) -> tuple[str, ...]:
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

    # ---------------------------------------------------------------- Predict Image

    def _build_predict_tab(self) -> widgets.VBox:
        self.upload = _tagged(widgets.FileUpload(
            accept="image/*", multiple=False, description="Choose image", icon="upload",
            button_style="primary",
        ), "upload")  # fmt: skip
        self.threshold = _tagged(widgets.FloatSlider(
            value=self.evaluation.threshold if self.evaluation else DEFAULT_THRESHOLD,
            min=0.0, max=1.0, step=0.01, description="Threshold", readout_format=".2f",
            layout=widgets.Layout(width="320px"),
        ), "threshold")  # fmt: skip
        self.per_class = widgets.Checkbox(
            value=False, description="per-class thresholds (metrics.json)", indent=False,
            disabled=self.evaluation is None, layout=widgets.Layout(width="auto"),
        )  # fmt: skip
        self.predict_heatmap = _tagged(widgets.ToggleButton(
            description="show heatmap", icon="fire", tooltip="overlay a Grad-CAM heatmap"
        ), "predict-heatmap")  # fmt: skip
        self.heatmap_class = widgets.Dropdown(
            options=[TOP_PREDICTION, *self.classes], description="heatmap of",
            layout=widgets.Layout(width="250px"),
        )  # fmt: skip
        self.predict_notice = widgets.HTML()
        self.predict_message = _tagged(widgets.HTML(), "predict-message")
        self.predict_image = _tagged(_picture("jpeg"), "predict-image")
        self.predict_caption = widgets.HTML()
        self.predict_result = _tagged(widgets.HTML(), "predict-result")
        self.chart = _tagged(_picture("png"), "chart")
        self.upload.observe(lambda _: self._in_predict_tab(self._on_upload), "value")
        self.threshold.observe(lambda _: self._in_predict_tab(self._show_labels), "value")
        self.per_class.observe(lambda _: self._in_predict_tab(self._on_threshold_mode), "value")
        for control in (self.predict_heatmap, self.heatmap_class):
            control.observe(lambda _: self._in_predict_tab(self._show_predict_image), "value")
        row = widgets.Layout(align_items="center", grid_gap="16px")
        return widgets.VBox([
            widgets.HBox([self.upload, self.threshold, self.per_class], layout=row),
            widgets.HBox([self.predict_heatmap, self.heatmap_class], layout=row),
            self.predict_notice, self.predict_message,
            widgets.HBox([
                widgets.VBox(
                    [self.predict_image, self.predict_caption, self.predict_result],
                    layout=widgets.Layout(align_items="flex-start", max_width=f"{DISPLAY_SIZE}px"),
                ),
                self.chart,
            ], layout=widgets.Layout(align_items="flex-start", grid_gap="32px")),
        ])  # fmt: skip

    def _start_predict_tab(self, classifier_problem: str, evaluation_problem: str) -> None:
        if self.classifier is None:
            self.upload.disabled = self.predict_heatmap.disabled = True
            self.predict_notice.value = _text_line(classifier_problem, NOTICE_COLOUR)
            return
        if self.evaluation is None:
            self.predict_notice.value = _text_line(
                f"The threshold starts at {DEFAULT_THRESHOLD:.2f}. {evaluation_problem}",
                NOTICE_COLOUR,
            )
        self._in_predict_tab(self._show_example)

    def _show_example(self) -> None:
        """Start with the top-1 validation image of the first class, as if it were uploaded."""
        if self.evaluation is None or not self.evaluation.top50:
            return
        name, entries = next(iter(self.evaluation.top50.items()))
        path = self.image_path(entries[0].id)
        self._predict_bytes(path.name, read_regular_file(path, MAX_IMAGE_BYTES))
        self.predict_caption.value = (
            f"<i>Example: {html.escape(path.name)}, the top-1 validation image for {name}. "
            f"Upload your own with <b>Choose image</b>.</i>"
        )

    def _on_upload(self) -> None:
        if self.upload.value:
            upload = self.upload.value[0]
            self._predict_bytes(upload["name"], bytes(upload["content"]))

    def _predict_bytes(self, name: str, content: bytes) -> None:
        """Decode, predict and show an image file's bytes (what an upload does)."""
        if self.classifier is None:
            raise CheckpointError(f"No model to predict with: run {CHECKPOINT_NOTEBOOK} first.")
        self.prediction = None
        for part in (self.predict_image, self.chart):
            _show_picture(part, b"")
        self.predict_caption.value = self.predict_result.value = ""
        self._say(self.predict_message, "")
        image = decode_image(content, name)
        self.prediction = Prediction(name, image, predict_probabilities(self.classifier, image))
        self._show_predict_image()
        self._show_labels()

    def _on_threshold_mode(self) -> None:
        self.threshold.disabled = self.per_class.value
        self._show_labels()

    def thresholds(self) -> np.ndarray:
        """The thresholds in force: the slider's value, or metrics.json's per-class values."""
        per_class = self.evaluation.per_class_thresholds if self.evaluation else None
        chosen = per_class if self.per_class.value else None
        return threshold_vector(self.classes, self.threshold.value, chosen)

    def found_labels(self) -> list[tuple[str, float]]:
        """The shown image's classes at the thresholds in force, highest probability first."""
        if self.prediction is None:
            return []
        return labels_at_threshold(self.classes, self.prediction.probabilities, self.thresholds())

    def _show_labels(self) -> None:
        if self.prediction is None:
            return
        found = self.found_labels()
        chips = "".join(f"<span {CHIP_STYLE}><b>{name}</b> {p:.3f}</span>" for name, p in found)
        self.predict_result.value = (
            f'<div style="display:flex;flex-wrap:wrap;gap:6px;margin:6px 0">{chips}</div>'
            if found
            else f'<p style="font-size:15px;margin:6px 0"><b>{NOT_IDENTIFIED}</b></p>'
        )
        probabilities = self.prediction.probabilities
        chart = probability_chart_png(probabilities, self.thresholds(), self.classes)
        _show_picture(self.chart, chart)

    def heatmap_class_index(self, probabilities: np.ndarray) -> int:
        """The class of the Predict tab's heatmap: the chosen one, or the top prediction."""
        if self.heatmap_class.value == TOP_PREDICTION:
            return int(np.argmax(probabilities))
        return self.classes.index(self.heatmap_class.value)

    def _show_predict_image(self) -> None:
        if self.prediction is None:
            return
        caption = f"<i>{html.escape(self.prediction.name)}</i>"
        if self.predict_heatmap.value:
            index = self.heatmap_class_index(self.prediction.probabilities)
            image = self._heatmap(self.prediction.image, index)
            caption += f"<br>{HEATMAP_CAPTION.format(name=self.classes[index])}"
        else:
            image = fit_for_display(self.prediction.image)
        _show_picture(self.predict_image, jpeg_bytes(image))
        self.predict_caption.value = caption

    def _heatmap(self, image: Image.Image, class_index: int) -> Image.Image:
        if self.classifier is None:
            raise CheckpointError(f"No model for a heatmap: run {CHECKPOINT_NOTEBOOK} first.")
        return heatmap_overlay(self.classifier, image, class_index)

    def summary(self) -> str:
        """What the Predict Image tab shows, as one line of text."""
        if self.prediction is None:
            return "no image predicted"
        found = self.found_labels()
        labels = ", ".join(f"{n} {p:.3f}" for n, p in found) if found else NOT_IDENTIFIED
        return f"{self.prediction.name}: {labels}"

    # ---------------------------------------------------------------- View Top50 Result

    def _build_top50_tab(self) -> widgets.VBox:
        self.class_dropdown = _tagged(widgets.Dropdown(
            options=list(self.evaluation.top50) if self.evaluation else [],
            description="Class", layout=widgets.Layout(width="230px"),
        ), "class")  # fmt: skip
        self.image_dropdown = _tagged(widgets.Dropdown(
            options=[], description="Image (Top50)", layout=widgets.Layout(width="380px"),
            style={"description_width": "initial"},
        ), "image")  # fmt: skip
        self.top50_heatmap = _tagged(widgets.ToggleButton(
            description="show heatmap", icon="fire", tooltip="overlay a Grad-CAM heatmap"
        ), "top50-heatmap")  # fmt: skip
        self.top50_notice = widgets.HTML()
        self.top50_message = _tagged(widgets.HTML(), "top50-message")
        self.top50_image = _tagged(_picture("jpeg"), "top50-image")
        self.top50_caption = widgets.HTML()
        self.top50_result = _tagged(widgets.HTML(), "top50-result")
        self.class_dropdown.observe(lambda _: self._in_top50_tab(self._on_class), "value")
        on_image = partial(self._on_image, self._show_top50_image)
        self.image_dropdown.observe(lambda _: self._in_top50_tab(on_image), "value")
        self.top50_heatmap.observe(lambda _: self._in_top50_tab(self._show_top50_image), "value")
        controls = [self.class_dropdown, self.image_dropdown, self.top50_heatmap]
        row = widgets.Layout(align_items="center", grid_gap="16px")
        return widgets.VBox([
            widgets.HBox(controls, layout=row),
            self.top50_notice, self.top50_message,
            self.top50_image, self.top50_caption, self.top50_result,
        ], layout=widgets.Layout(align_items="flex-start"))  # fmt: skip

    def _start_top50_tab(self, classifier_problem: str, evaluation_problem: str) -> None:
        missing = None if self.evaluation is not None else evaluation_problem
        controls = (self.class_dropdown, self.image_dropdown)
        notice, heatmap = self.top50_notice, self.top50_heatmap
        if self._can_browse(notice, controls, heatmap, missing, classifier_problem):
            self._in_top50_tab(self._on_class)

    def _can_browse(
        self,
        notice: widgets.HTML,
        controls: Sequence[widgets.ValueWidget],
        heatmap: widgets.ToggleButton,
        missing: str | None,
        classifier_problem: str,
    ) -> bool:
        """Whether a browsing tab can show images; if not (`missing`: why), disable it and say so.

        Without a model only its heatmap toggle is disabled, with a notice.
        """
        if missing is not None:
            for control in (*controls, heatmap):
                control.disabled = True
            notice.value = _text_line(missing, NOTICE_COLOUR)
            return False
        if self.classifier is None:
            heatmap.disabled = True
            notice.value = _text_line(
                f"Heatmaps need the model. {classifier_problem}", NOTICE_COLOUR
            )
        return True

    def _on_class(self) -> None:
        """List the chosen class's top 50 and show its first image."""
        assert self.evaluation is not None
        entries = self.evaluation.top50[self.class_dropdown.value]
        self._fill_images(self.image_dropdown, top50_options(entries))
        self._show_top50_image()

    def _fill_images(self, dropdown: widgets.Dropdown, options: list[tuple[str, str]]) -> None:
        """Replace an image menu's options and select the first, without showing it twice."""
        self._filling_images = True
        try:
            dropdown.options = options
            dropdown.index = 0 if options else None
        finally:
            self._filling_images = False

    def _on_image(self, show: Callable[[], None]) -> None:
        if not self._filling_images:
            show()

    def selected_entry(self) -> TopEntry | None:
        """The top50.json entry of the image chosen in the Top50 tab."""
        if self.evaluation is None or self.class_dropdown.value is None:
            return None
        entries = self.evaluation.top50[self.class_dropdown.value]
        return next((e for e in entries if e.id == self.image_dropdown.value), None)

    def _show_top50_image(self) -> None:
        entry, name = self.selected_entry(), self.class_dropdown.value
        if entry is None:
            return
        self.top50_result.value = self._top50_text(entry, name)
        self._say(self.top50_message, "")
        heatmap = self.top50_heatmap.value
        self._show_validation_image(self.top50_image, self.top50_caption, entry.id, name, heatmap)

    def _show_validation_image(
        self, picture: widgets.Image, caption: widgets.HTML, image_id: str, name: str, heatmap: bool
    ) -> None:
        """Show a validation image, with class `name`'s Grad-CAM over it when `heatmap` is on."""
        _show_picture(picture, b"")
        caption.value = ""
        image = open_rgb(self.image_path(image_id))
        if heatmap:
            image = self._heatmap(image, self.classes.index(name))
            caption.value = HEATMAP_CAPTION.format(name=name)
        _show_picture(picture, jpeg_bytes(fit_for_display(image)))

    def _top50_text(self, entry: TopEntry, name: str) -> str:
        """Confidence, rank and ground truth of a top-50 image, marked correct or not."""
        count = len(self.evaluation.top50[name]) if self.evaluation else 0
        lines = [_confidence_line(name, entry.score, f"rank {entry.rank} of {count}")]
        labels = self.ground_truth.labels.get(entry.id) if self.ground_truth else None
        if labels is None:
            reason = self.truth_problem or f"{entry.id} is not in the validation labels"
            lines.append(f"<p>Ground truth unavailable: {html.escape(reason)}</p>")
            return "".join(lines)
        present = [c for c, flag in zip(self.classes, labels, strict=True) if flag == 1]
        difficult = [c for c, flag in zip(self.classes, labels, strict=True) if flag == -1]
        mark, meaning, colour = GROUND_TRUTH_MARKS[int(labels[self.classes.index(name)])]
        lines.append(_ground_truth_line(present, difficult))
        lines.append(_verdict_line(f"{mark}: {name} {meaning}", colour))
        return "".join(lines)

    # ---------------------------------------------------------------- Mistakes

    def _build_mistakes_tab(self) -> widgets.VBox:
        self.mistakes_class = _tagged(widgets.Dropdown(
            options=list(self.mistakes.classes) if self.mistakes is not None else [],
            description="Class", layout=widgets.Layout(width="190px"), style=COMPACT,
        ), "mistakes-class")  # fmt: skip
        self.mistakes_kind = _tagged(widgets.Dropdown(
            options=[(words.label, kind) for kind, words in MISTAKE_KINDS.items()],
            description="Kind", layout=widgets.Layout(width="170px"), style=COMPACT,
        ), "mistakes-kind")  # fmt: skip
        self.mistakes_image = _tagged(widgets.Dropdown(
            options=[], description="Image", layout=widgets.Layout(width="330px"), style=COMPACT,
        ), "mistakes-image")  # fmt: skip
        self.mistakes_heatmap = _tagged(widgets.ToggleButton(
            description="show heatmap", icon="fire", tooltip="overlay a Grad-CAM heatmap"
        ), "mistakes-heatmap")  # fmt: skip
        self.mistakes_notice = widgets.HTML()
        self.mistakes_message = _tagged(widgets.HTML(), "mistakes-message")
        self.mistakes_image_view = _tagged(_picture("jpeg"), "mistakes-image-view")
        self.mistakes_caption = widgets.HTML()
        self.mistakes_result = _tagged(widgets.HTML(), "mistakes-result")
        for menu in (self.mistakes_class, self.mistakes_kind):
            menu.observe(lambda _: self._in_mistakes_tab(self._on_mistakes_list), "value")
        on_image = partial(self._on_image, self._show_mistake)
        self.mistakes_image.observe(lambda _: self._in_mistakes_tab(on_image), "value")
        self.mistakes_heatmap.observe(lambda _: self._in_mistakes_tab(self._show_mistake), "value")
        controls = [self.mistakes_class, self.mistakes_kind, self.mistakes_image]
        row = widgets.Layout(align_items="center", grid_gap="16px")
        return widgets.VBox([
            widgets.HBox([*controls, self.mistakes_heatmap], layout=row),
            self.mistakes_notice, self.mistakes_message,
            self.mistakes_image_view, self.mistakes_caption, self.mistakes_result,
        ], layout=widgets.Layout(align_items="flex-start"))  # fmt: skip

    def _start_mistakes_tab(self, classifier_problem: str, mistakes_problem: str) -> None:
        missing = None if self.mistakes is not None else mistakes_problem
        controls = (self.mistakes_class, self.mistakes_kind, self.mistakes_image)
        notice, heatmap = self.mistakes_notice, self.mistakes_heatmap
        if self._can_browse(notice, controls, heatmap, missing, classifier_problem):
            self._in_mistakes_tab(self._on_mistakes_list)

    def mistake_entries(self) -> list[MistakeEntry]:
        """The mistakes.json list of the class and kind chosen in the Mistakes tab."""
        if self.mistakes is None or self.mistakes_class.value is None:
            return []
        lists = self.mistakes.classes[self.mistakes_class.value]
        return getattr(lists, self.mistakes_kind.value)

    def selected_mistake(self) -> MistakeEntry | None:
        """The mistakes.json entry of the image chosen in the Mistakes tab."""
        entries = self.mistake_entries()
        return next((e for e in entries if e.id == self.mistakes_image.value), None)

    def _on_mistakes_list(self) -> None:
        """List the chosen class's mistakes of the chosen kind and show the first."""
        self._fill_images(self.mistakes_image, top50_options(self.mistake_entries()))
        self._show_mistake()

    def _show_mistake(self) -> None:
        entry, name = self.selected_mistake(), self.mistakes_class.value
        self._say(self.mistakes_message, "")
        if entry is None:
            _show_picture(self.mistakes_image_view, b"")
            self.mistakes_caption.value = ""
            words = MISTAKE_KINDS[self.mistakes_kind.value]
            self.mistakes_result.value = (
                f"<p>No {words.label}: {words.empty.format(name=name)}.</p>"
            )
            return
        self.mistakes_result.value = self._mistake_text(entry, name)
        heatmap = self.mistakes_heatmap.value
        view, caption = self.mistakes_image_view, self.mistakes_caption
        self._show_validation_image(view, caption, entry.id, name, heatmap)

    def _mistake_text(self, entry: MistakeEntry, name: str) -> str:
        """Confidence, ground truth and predicted labels of a mistake, and why it is one."""
        words = MISTAKE_KINDS[self.mistakes_kind.value]
        place = f"rank {entry.rank} of {len(self.mistake_entries())} {words.label}"
        predicted = ", ".join(entry.predicted) or NOT_IDENTIFIED
        why = f"{words.why.format(name=name)} but scored {entry.score:.3f}"
        return "".join([
            _confidence_line(name, entry.score, place),
            _ground_truth_line(entry.labels, entry.difficult),
            f'<p style="margin:4px 0">Predicted: {predicted}</p>',
            _verdict_line(why, ERROR_COLOUR),
        ])  # fmt: skip

    # ---------------------------------------------------------------- errors

    def _in_predict_tab(self, action: Callable[[], None]) -> None:
        self._reporting_errors(self.predict_message, action)

    def _in_top50_tab(self, action: Callable[[], None]) -> None:
        self._reporting_errors(self.top50_message, action)

    def _in_mistakes_tab(self, action: Callable[[], None]) -> None:
        self._reporting_errors(self.mistakes_message, action)

    def _reporting_errors(self, message: widgets.HTML, action: Callable[[], None]) -> None:
        """Run a widget action; an error becomes one line in the tab, never a traceback."""
        try:
            action()
        except VocprojError as err:
            self._say(message, str(err))
        except Exception as err:  # whatever a file or a library does, the app stays usable
            self._say(message, f"Unexpected error ({type(err).__name__}: {err}).")

    @staticmethod
    def _say(message: widgets.HTML, text: str) -> None:
        """Show a problem in a tab's message line (an empty text clears it)."""
        message.value = _text_line(f"⚠ {text}" if text else "", ERROR_COLOUR)


def build_browser(profile: Profile) -> BrowserApp:
    """The app for a profile (what notebook 05 displays); problems show up inside it."""
    return BrowserApp(profile)
