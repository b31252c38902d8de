"""The app: the three tabs in one ipywidgets Tab, over the inputs they share."""

from __future__ import annotations

from operator import attrgetter

import ipywidgets as widgets

from vocproj.config import Profile
from vocproj.reporting.browser.inputs import Inputs
from vocproj.reporting.browser.mistakes_tab import MistakesTab
from vocproj.reporting.browser.predict_tab import PredictTab
from vocproj.reporting.browser.top50_tab import Top50Tab

TITLES = ("Predict Image", "View Top50 Result", "Mistakes")


def alias(path: str) -> property:
    """A read-only attribute that is the one at `path` (`alias("predict_tab.upload")`)."""
    return property(attrgetter(path), doc=f"`{path}`")


class BrowserApp:
    """The three tabs as widgets; each part is an attribute, so tests drive it without a browser.

    `widget` is what a notebook displays. Each tab owns its widgets and callbacks; the app
    also offers them under the flat names below (`app.upload` is `app.predict_tab.upload`).
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.inputs = Inputs.read(profile)
        self.predict_tab = PredictTab(self.inputs)
        self.top50_tab = Top50Tab(self.inputs)
        self.mistakes_tab = MistakesTab(self.inputs)
        self.widget = widgets.Tab(
            children=[self.predict_tab, self.top50_tab, self.mistakes_tab], titles=TITLES
        )

    classifier = alias("inputs.classifier")
    classes = alias("inputs.classes")

    upload = alias("predict_tab.upload")
    threshold = alias("predict_tab.threshold")
    per_class = alias("predict_tab.per_class")
    predict_heatmap = alias("predict_tab.heatmap")
    heatmap_class = alias("predict_tab.heatmap_class")
    predict_notice = alias("predict_tab.notice")
    predict_message = alias("predict_tab.message")
    predict_image = alias("predict_tab.image")
    predict_caption = alias("predict_tab.caption")
    predict_result = alias("predict_tab.result")
    chart = alias("predict_tab.chart")
    prediction = alias("predict_tab.prediction")
    thresholds = alias("predict_tab.thresholds")
    found_labels = alias("predict_tab.found_labels")
    summary = alias("predict_tab.summary")

    class_dropdown = alias("top50_tab.class_dropdown")
    image_dropdown = alias("top50_tab.image_dropdown")
    top50_heatmap = alias("top50_tab.heatmap")
    top50_notice = alias("top50_tab.notice")
    top50_message = alias("top50_tab.message")
    top50_image = alias("top50_tab.image")
    top50_caption = alias("top50_tab.caption")
    top50_result = alias("top50_tab.result")

    mistakes_class = alias("mistakes_tab.class_dropdown")
    mistakes_kind = alias("mistakes_tab.kind_dropdown")
    mistakes_image = alias("mistakes_tab.image_dropdown")
    mistakes_heatmap = alias("mistakes_tab.heatmap")
    mistakes_notice = alias("mistakes_tab.notice")
    mistakes_message = alias("mistakes_tab.message")
    mistakes_image_view = alias("mistakes_tab.image")
    mistakes_caption = alias("mistakes_tab.caption")
    mistakes_result = alias("mistakes_tab.result")


def build_browser(profile: Profile) -> BrowserApp:
    """The app for a profile (what notebook 05 displays); problems show up inside it."""
    return BrowserApp(profile)
