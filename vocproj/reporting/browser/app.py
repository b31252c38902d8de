"""The app: the three tabs in one ipywidgets Tab, over the inputs they share."""

from __future__ import annotations

import ipywidgets as widgets

from vocproj.config import Profile
from vocproj.reporting.browser.inputs import Inputs
from vocproj.reporting.browser.mistakes_tab import MistakesTab
from vocproj.reporting.browser.predict_tab import PredictTab
from vocproj.reporting.browser.top50_tab import Top50Tab

TITLES = ("Predict Image", "View Top50 Result", "Mistakes")


class BrowserApp:
    """The three tabs as widgets; each part is an attribute, so tests drive it without a browser.

    `widget` is what a notebook displays. Each tab owns its widgets and callbacks
    (`app.predict_tab.upload`, `app.top50_tab.class_dropdown`, ...); `inputs` is what they share.
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


def build_browser(profile: Profile) -> BrowserApp:
    """The app for a profile (what notebook 05 displays); problems show up inside it."""
    return BrowserApp(profile)
