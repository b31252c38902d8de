"""Mistakes: each class's most confident false positives and most missed validation images."""

from __future__ import annotations

from typing import NamedTuple

import ipywidgets as widgets

from vocproj.metrics.thresholds import NOT_IDENTIFIED
from vocproj.reporting.browser.inputs import Inputs, MistakeEntry
from vocproj.reporting.browser.tab import (
    COMPACT,
    ERROR_COLOUR,
    ImageListTab,
    confidence_line,
    ground_truth_line,
    tagged,
    verdict_line,
)


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


class MistakesTab(ImageListTab[MistakeEntry]):
    """A class and a kind of mistake, then one image of that list of mistakes.json: its score,
    ground truth, predicted labels and why it is a mistake."""

    def __init__(self, inputs: Inputs) -> None:
        super().__init__(inputs, "mistakes", "mistakes-image-view", tagged(widgets.Dropdown(
            options=[], description="Image", layout=widgets.Layout(width="330px"), style=COMPACT,
        ), "mistakes-image"))  # fmt: skip
        mistakes = inputs.mistakes
        self.class_dropdown = tagged(widgets.Dropdown(
            options=list(mistakes.classes) if mistakes is not None else [],
            description="Class", layout=widgets.Layout(width="190px"), style=COMPACT,
        ), "mistakes-class")  # fmt: skip
        self.kind_dropdown = tagged(widgets.Dropdown(
            options=[(words.label, kind) for kind, words in MISTAKE_KINDS.items()],
            description="Kind", layout=widgets.Layout(width="170px"), style=COMPACT,
        ), "mistakes-kind")  # fmt: skip
        missing = None if mistakes is not None else inputs.mistakes_problem
        self._assemble([self.class_dropdown, self.kind_dropdown], missing)

    def entries(self) -> list[MistakeEntry]:
        """The mistakes.json list of the chosen class and kind, in rank order."""
        if self.inputs.mistakes is None or self.class_dropdown.value is None:
            return []
        lists = self.inputs.mistakes.classes[self.class_dropdown.value]
        return getattr(lists, self.kind_dropdown.value)

    def _show_selected(self) -> None:
        entry, name = self.selected(), self.class_dropdown.value
        self._say("")
        if entry is None:
            self._show_no_image()
            words = self._chosen_kind()
            self.result.value = f"<p>No {words.label}: {words.empty.format(name=name)}.</p>"
            return
        self.result.value = self._describe(entry, name)
        self._show_validation_image(entry.id, name)

    def _chosen_kind(self) -> MistakeKind:
        return MISTAKE_KINDS[self.kind_dropdown.value]

    def _describe(self, entry: MistakeEntry, name: str) -> str:
        """Confidence, ground truth and predicted labels of a mistake, and why it is one."""
        words = self._chosen_kind()
        place = f"rank {entry.rank} of {len(self.entries())} {words.label}"
        predicted = ", ".join(entry.predicted) or NOT_IDENTIFIED
        why = f"{words.why.format(name=name)} but scored {entry.score:.3f}"
        return "".join([
            confidence_line(name, entry.score, place),
            ground_truth_line(entry.labels, entry.difficult),
            f'<p style="margin:4px 0">Predicted: {predicted}</p>',
            verdict_line(why, ERROR_COLOUR),
        ])  # fmt: skip
