"""View Top50 Result: each class's 50 highest-scored validation images, with their ground truth."""

from __future__ import annotations

import html

import ipywidgets as widgets

from vocproj.reporting.browser.inputs import Inputs, TopEntry
from vocproj.reporting.browser.tab import (
    COMPACT,
    ImageListTab,
    confidence_line,
    ground_truth_line,
    tagged,
    verdict_line,
)

GROUND_TRUTH_MARKS = {
    1: ("✓ correct", "is in this image", "#1b7f3b"),
    0: ("✗ wrong", "is not in this image", "#b00020"),
    -1: ("◐ difficult", "appears only as a difficult object", "#8a6d00"),
}


class Top50Tab(ImageListTab[TopEntry]):
    """A class, then one of its top 50 from top50.json: its confidence and marked ground truth."""

    def __init__(self, inputs: Inputs) -> None:
        super().__init__(inputs, "top50", "top50-image", tagged(widgets.Dropdown(
            options=[], description="Image (Top50)", layout=widgets.Layout(width="380px"),
            style=COMPACT,
        ), "image"))  # fmt: skip
        evaluation = inputs.evaluation
        self.class_dropdown = tagged(widgets.Dropdown(
            options=list(evaluation.top50) if evaluation else [],
            description="Class", layout=widgets.Layout(width="230px"),
        ), "class")  # fmt: skip
        self._assemble([self.class_dropdown], None if evaluation else inputs.evaluation_problem)

    def entries(self) -> list[TopEntry]:
        """The chosen class's top 50, in rank order."""
        if self.inputs.evaluation is None or self.class_dropdown.value is None:
            return []
        return self.inputs.evaluation.top50[self.class_dropdown.value]

    def _show_selected(self) -> None:
        entry, name = self.selected(), self.class_dropdown.value
        if entry is None:
            return
        self.result.value = self._describe(entry, name)
        self._say("")
        self._show_validation_image(entry.id, name)

    def _describe(self, entry: TopEntry, name: str) -> str:
        """Confidence, rank and ground truth of a top-50 image, marked correct or not."""
        lines = [confidence_line(name, entry.score, f"rank {entry.rank} of {len(self.entries())}")]
        truth = self.inputs.ground_truth
        labels = truth.labels.get(entry.id) if truth else None
        if labels is None:
            reason = self.inputs.truth_problem or f"{entry.id} is not in the validation labels"
            lines.append(f"<p>Ground truth unavailable: {html.escape(reason)}</p>")
            return "".join(lines)
        classes = self.inputs.classes
        present = [c for c, flag in zip(classes, labels, strict=True) if flag == 1]
        difficult = [c for c, flag in zip(classes, labels, strict=True) if flag == -1]
        mark, meaning, colour = GROUND_TRUTH_MARKS[int(labels[classes.index(name)])]
        lines.append(ground_truth_line(present, difficult))
        lines.append(verdict_line(f"{mark}: {name} {meaning}", colour))
        return "".join(lines)
