"""What every tab has: its lines of text, its image, its error handling; and the two list tabs'
walk through validation images.

Each widget that the browser tests select gets the CSS class `vocproj-<tag>`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import ipywidgets as widgets

from vocproj.errors import VocprojError
from vocproj.reporting.browser.inputs import Inputs, RankedImage, one_line
from vocproj.reporting.browser.pictures import fit_for_display, jpeg_bytes

COMPACT = {"description_width": "initial"}  # a dropdown's label as wide as its text
ROW = {"align_items": "center", "grid_gap": "16px"}  # the layout of a row of controls
NOTICE_COLOUR, ERROR_COLOUR = "#555555", "#b00020"
HEATMAP_CAPTION = "Grad-CAM heatmap of <b>{name}</b> on the centre crop the model sees"

W = TypeVar("W", bound=widgets.DOMWidget)
E = TypeVar("E", bound=RankedImage)


def tagged(widget: W, tag: str) -> W:
    """Give a widget the CSS class `vocproj-<tag>`, which the browser tests select it by."""
    widget.add_class(f"vocproj-{tag}")
    return widget


def picture(fmt: str) -> widgets.Image:
    """An Image widget for `fmt` ("jpeg" or "png"), hidden until it has bytes."""
    return widgets.Image(format=fmt, layout=widgets.Layout(display="none"))


def show_picture(picture: widgets.Image, data: bytes) -> None:
    """Set an Image widget's bytes; an empty one is hidden, not drawn as a broken image."""
    picture.value = data
    picture.layout.display = None if data else "none"


def text_line(text: str, colour: str) -> str:
    """One line of escaped text in a colour; nothing for an empty text."""
    return f'<span style="color:{colour}">{html.escape(one_line(text))}</span>' if text else ""


def confidence_line(name: str, score: float, place: str) -> str:
    """A listed image's probability for the class, and its place in the list."""
    return (
        f'<p style="font-size:15px;margin:4px 0">Confidence for <b>{name}</b>: '
        f"<b>{score:.3f}</b> &nbsp;({place})</p>"
    )


def ground_truth_line(present: Sequence[str], difficult: Sequence[str]) -> str:
    """An image's classes, and those it has only as difficult objects."""
    truth = ", ".join(present) or "none"
    if difficult:
        truth += f" (difficult only: {', '.join(difficult)})"
    return f'<p style="margin:4px 0">Ground truth: {truth}</p>'


def verdict_line(text: str, colour: str) -> str:
    """The result's last line: whether the image is right or wrong, in bold and in colour."""
    return f'<p style="margin:4px 0;color:{colour};font-weight:bold">{text}</p>'


def top50_options(entries: Sequence[RankedImage]) -> list[tuple[str, str]]:
    """Dropdown options `rank. id (score)` → id, in rank order (of a top-50 or mistakes list)."""
    return [
        (f"{e.rank}. {e.id} ({e.score:.3f})", e.id) for e in sorted(entries, key=lambda e: e.rank)
    ]


class BrowserTab(widgets.VBox):
    """One tab of the app, over the inputs all tabs share.

    It has a `notice` line (what is missing, in grey, for as long as it is missing), a `message`
    line (the last action's problem, in red), a heatmap toggle, and an image with its caption and
    its `result` text. The subclass lays them out with its own controls.
    """

    def __init__(self, inputs: Inputs, tag: str, image_tag: str) -> None:
        super().__init__()
        self.inputs = inputs
        self.notice = widgets.HTML()
        self.message = tagged(widgets.HTML(), f"{tag}-message")
        self.heatmap = tagged(widgets.ToggleButton(
            description="show heatmap", icon="fire", tooltip="overlay a Grad-CAM heatmap"
        ), f"{tag}-heatmap")  # fmt: skip
        self.image = tagged(picture("jpeg"), image_tag)
        self.caption = widgets.HTML()
        self.result = tagged(widgets.HTML(), f"{tag}-result")

    def _on_change(self, control: widgets.ValueWidget, action: Callable[[], None]) -> None:
        """Run `action` each time the control's value changes."""
        control.observe(lambda _: self._reporting_errors(action), "value")

    def _reporting_errors(self, action: Callable[[], None]) -> None:
        """Run a widget action; an error becomes one line in the tab, never a traceback."""
        try:
            action()
        except VocprojError as err:
            self._say(str(err))
        except Exception as err:  # whatever a file or a library does, the app stays usable
            self._say(f"Unexpected error ({type(err).__name__}: {err}).")

    def _say(self, text: str) -> None:
        """Show a problem in the message line (an empty text clears it)."""
        self.message.value = text_line(f"⚠ {text}" if text else "", ERROR_COLOUR)

    def _show_notice(self, text: str) -> None:
        """Say what the tab is missing (an empty text clears it)."""
        self.notice.value = text_line(text, NOTICE_COLOUR)


class ImageListTab(BrowserTab, Generic[E]):
    """A tab that walks a ranked list of validation images, one at a time.

    The subclass's menus choose the list (`entries`), `image_dropdown` the image in it, and
    `_show_selected` shows that image with its text.
    """

    def __init__(
        self, inputs: Inputs, tag: str, image_tag: str, image_dropdown: widgets.Dropdown
    ) -> None:
        super().__init__(inputs, tag, image_tag)
        self.image_dropdown = image_dropdown
        self._filling_images = False

    def entries(self) -> Sequence[E]:
        """The list the menus choose."""
        raise NotImplementedError

    def _show_selected(self) -> None:
        """Show the chosen image with its text, as the tab words it."""
        raise NotImplementedError

    def selected(self) -> E | None:
        """The list's entry of the image chosen in `image_dropdown`."""
        return next((e for e in self.entries() if e.id == self.image_dropdown.value), None)

    def _assemble(self, menus: Sequence[widgets.Dropdown], missing: str | None) -> None:
        """Lay the tab out under a row of its menus, wire them, and show the first image.

        `missing` says why the tab's report could not be read, if it could not.
        """
        self._lay_out(menus)
        self._wire(menus)
        if self._can_browse([*menus, self.image_dropdown], missing):
            self._reporting_errors(self._on_list)

    def _lay_out(self, menus: Sequence[widgets.Dropdown]) -> None:
        """The menus, the image menu and the heatmap toggle in a row; the lines and image below."""
        controls = [*menus, self.image_dropdown, self.heatmap]
        self.children = [
            widgets.HBox(controls, layout=widgets.Layout(**ROW)),
            self.notice, self.message, self.image, self.caption, self.result,
        ]  # fmt: skip
        self.layout = widgets.Layout(align_items="flex-start")

    def _wire(self, menus: Sequence[widgets.Dropdown]) -> None:
        for menu in menus:
            self._on_change(menu, self._on_list)
        self._on_change(self.image_dropdown, self._on_image)
        self._on_change(self.heatmap, self._show_selected)

    def _can_browse(self, controls: Sequence[widgets.ValueWidget], missing: str | None) -> bool:
        """Whether the tab can show images; if not (`missing`: why), disable it and say so.

        Without a model only its heatmap toggle is disabled, with a notice.
        """
        if missing is not None:
            for control in (*controls, self.heatmap):
                control.disabled = True
            self._show_notice(missing)
            return False
        if self.inputs.classifier is None:
            self.heatmap.disabled = True
            self._show_notice(f"Heatmaps need the model. {self.inputs.classifier_problem}")
        return True

    def _on_list(self) -> None:
        """List the images the menus choose and show the first."""
        self._fill_images(top50_options(self.entries()))
        self._show_selected()

    def _fill_images(self, options: list[tuple[str, str]]) -> None:
        """Replace the image menu's options and select the first, without showing it twice."""
        self._filling_images = True
        try:
            self.image_dropdown.options = options
            self.image_dropdown.index = 0 if options else None
        finally:
            self._filling_images = False

    def _on_image(self) -> None:
        """Show the chosen image, unless the menu is being refilled (that shows it once)."""
        if not self._filling_images:
            self._show_selected()

    def _show_validation_image(self, image_id: str, name: str) -> None:
        """Show a validation image, with class `name`'s Grad-CAM over it when the toggle is on."""
        self._show_no_image()
        image = self.inputs.validation_image(image_id)
        if self.heatmap.value:
            image = self.inputs.heatmap(image, self.inputs.classes.index(name))
            self.caption.value = HEATMAP_CAPTION.format(name=name)
        show_picture(self.image, jpeg_bytes(fit_for_display(image)))

    def _show_no_image(self) -> None:
        show_picture(self.image, b"")
        self.caption.value = ""
