"""Predict Image: an uploaded image's classes at the chosen thresholds, and all probabilities."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from PIL import Image

from vocproj.errors import CheckpointError
from vocproj.files import MAX_IMAGE_BYTES, read_regular_file
from vocproj.images import decode_image
from vocproj.metrics.thresholds import NOT_IDENTIFIED, labels_at_threshold, threshold_vector
from vocproj.reporting.browser.classifier import CHECKPOINT_NOTEBOOK, predict_probabilities
from vocproj.reporting.browser.inputs import DEFAULT_THRESHOLD, Inputs
from vocproj.reporting.browser.pictures import DISPLAY_SIZE, fit_for_display, jpeg_bytes
from vocproj.reporting.browser.tab import (
    HEATMAP_CAPTION,
    ROW,
    BrowserTab,
    picture,
    show_picture,
    tagged,
)
from vocproj.reporting.plots import probability_chart_png

TOP_PREDICTION = "top prediction"
CHIP_STYLE = 'style="font-size:14px;background:#e3ecfa;border-radius:10px;padding:2px 9px"'


@dataclass
class Prediction:
    """The image shown in the Predict Image tab and its probabilities."""

    name: str
    image: Image.Image
    probabilities: np.ndarray


class PredictTab(BrowserTab):
    """Classify an uploaded image at a live threshold (or metrics.json's per-class ones), chart
    every probability, and overlay a heatmap of the top or a chosen class.

    It starts with an example: the top-1 validation image of the first class.
    """

    def __init__(self, inputs: Inputs) -> None:
        super().__init__(inputs, "predict", "predict-image")
        evaluation = inputs.evaluation
        self.prediction: Prediction | None = None
        self.upload = tagged(widgets.FileUpload(
            accept="image/*", multiple=False, description="Choose image", icon="upload",
            button_style="primary",
        ), "upload")  # fmt: skip
        self.threshold = tagged(widgets.FloatSlider(
            value=evaluation.threshold if evaluation else DEFAULT_THRESHOLD,
            min=0.0, max=1.0, step=0.01, description="Threshold", readout_format=".2f",
            layout=widgets.Layout(width="320px"),
        ), "threshold")  # fmt: skip
        self.per_class = widgets.Checkbox(
            value=False, description="per-class thresholds (metrics.json)", indent=False,
            disabled=evaluation is None, layout=widgets.Layout(width="auto"),
        )  # fmt: skip
        self.heatmap_class = widgets.Dropdown(
            options=[TOP_PREDICTION, *inputs.classes], description="heatmap of",
            layout=widgets.Layout(width="250px"),
        )  # fmt: skip
        self.chart = tagged(picture("png"), "chart")
        self._lay_out()
        self._wire()
        self._start()

    def _lay_out(self) -> None:
        """The controls in two rows, the lines, then the image and its text beside the chart."""
        row = widgets.Layout(**ROW)
        self.children = [
            widgets.HBox([self.upload, self.threshold, self.per_class], layout=row),
            widgets.HBox([self.heatmap, self.heatmap_class], layout=row),
            self.notice, self.message,
            widgets.HBox([
                widgets.VBox(
                    [self.image, self.caption, self.result],
                    layout=widgets.Layout(align_items="flex-start", max_width=f"{DISPLAY_SIZE}px"),
                ),
                self.chart,
            ], layout=widgets.Layout(align_items="flex-start", grid_gap="32px")),
        ]  # fmt: skip

    def _wire(self) -> None:
        self._on_change(self.upload, self._on_upload)
        self._on_change(self.threshold, self._show_labels)
        self._on_change(self.per_class, self._on_threshold_mode)
        for control in (self.heatmap, self.heatmap_class):
            self._on_change(control, self._show_image)

    def _start(self) -> None:
        """Say what is missing, then show the example if there is a model to predict it with."""
        if self.inputs.classifier is None:
            self.upload.disabled = self.heatmap.disabled = True
            self._show_notice(self.inputs.classifier_problem)
            return
        if self.inputs.evaluation is None:
            self._show_notice(
                f"The threshold starts at {DEFAULT_THRESHOLD:.2f}. {self.inputs.evaluation_problem}"
            )
        self._reporting_errors(self._show_example)

    def _show_example(self) -> None:
        """Start with the top-1 validation image of the first class, as if it were uploaded."""
        evaluation = self.inputs.evaluation
        if evaluation is None or not evaluation.top50:
            return
        name, entries = next(iter(evaluation.top50.items()))
        path = self.inputs.image_path(entries[0].id)
        self._predict_bytes(path.name, read_regular_file(path, MAX_IMAGE_BYTES))
        self.caption.value = (
            f"<i>Example: {html.escape(path.name)}, the top-1 validation image for {name}. "
            f"Upload your own with <b>Choose image</b>.</i>"
        )

    def _on_upload(self) -> None:
        if self.upload.value:
            upload = self.upload.value[0]
            self._predict_bytes(upload["name"], bytes(upload["content"]))

    def _predict_bytes(self, name: str, content: bytes) -> None:
        """Decode, predict and show an image file's bytes (what an upload does)."""
        classifier = self.inputs.classifier
        if classifier is None:
            raise CheckpointError(f"No model to predict with: run {CHECKPOINT_NOTEBOOK} first.")
        self.prediction = None
        for part in (self.image, self.chart):
            show_picture(part, b"")
        self.caption.value = self.result.value = ""
        self._say("")
        image = decode_image(content, name)
        self.prediction = Prediction(name, image, predict_probabilities(classifier, image))
        self._show_image()
        self._show_labels()

    def _on_threshold_mode(self) -> None:
        self.threshold.disabled = self.per_class.value
        self._show_labels()

    def thresholds(self) -> np.ndarray:
        """The thresholds in force: the slider's value, or metrics.json's per-class values."""
        evaluation = self.inputs.evaluation
        per_class = evaluation.per_class_thresholds if evaluation else None
        chosen = per_class if self.per_class.value else None
        return threshold_vector(self.inputs.classes, self.threshold.value, chosen)

    def found_labels(self) -> list[tuple[str, float]]:
        """The shown image's classes at the thresholds in force, highest probability first."""
        if self.prediction is None:
            return []
        probabilities = self.prediction.probabilities
        return labels_at_threshold(self.inputs.classes, probabilities, self.thresholds())

    def _show_labels(self) -> None:
        """The found classes as chips (or Not Identified), and the chart of all probabilities."""
        if self.prediction is None:
            return
        found = self.found_labels()
        chips = "".join(f"<span {CHIP_STYLE}><b>{name}</b> {p:.3f}</span>" for name, p in found)
        self.result.value = (
            f'<div style="display:flex;flex-wrap:wrap;gap:6px;margin:6px 0">{chips}</div>'
            if found
            else f'<p style="font-size:15px;margin:6px 0"><b>{NOT_IDENTIFIED}</b></p>'
        )
        probabilities = self.prediction.probabilities
        chart = probability_chart_png(probabilities, self.thresholds(), self.inputs.classes)
        show_picture(self.chart, chart)

    def heatmap_class_index(self, probabilities: np.ndarray) -> int:
        """The class of the heatmap: the chosen one, or the top prediction."""
        if self.heatmap_class.value == TOP_PREDICTION:
            return int(np.argmax(probabilities))
        return self.inputs.classes.index(self.heatmap_class.value)

    def _show_image(self) -> None:
        """The predicted image, with the heatmap over it when the toggle is on."""
        if self.prediction is None:
            return
        caption = f"<i>{html.escape(self.prediction.name)}</i>"
        if self.heatmap.value:
            index = self.heatmap_class_index(self.prediction.probabilities)
            image = self.inputs.heatmap(self.prediction.image, index)
            caption += f"<br>{HEATMAP_CAPTION.format(name=self.inputs.classes[index])}"
        else:
            image = fit_for_display(self.prediction.image)
        show_picture(self.image, jpeg_bytes(image))
        self.caption.value = caption

    def summary(self) -> str:
        """What the tab shows, as one line of text."""
        if self.prediction is None:
            return "no image predicted"
        found = self.found_labels()
        labels = ", ".join(f"{n} {p:.3f}" for n, p in found) if found else NOT_IDENTIFIED
        return f"{self.prediction.name}: {labels}"
