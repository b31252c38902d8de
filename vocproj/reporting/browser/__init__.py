"""The prediction browser: the study's two tabs as an ipywidgets app, a third of mistakes, Grad-CAM.

"Predict Image" classifies an uploaded image at the chosen threshold (a live slider, or the
per-class thresholds of metrics.json) and charts all 20 probabilities; "View Top50 Result" walks
each class's 50 highest-scored validation images with their ground truth; a third tab,
"Mistakes", walks each class's most confident false positives and most missed images. Every tab
can overlay a Grad-CAM heatmap (pytorch-grad-cam on the backbone's last convolutional block).

It reads what earlier stages wrote: the best checkpoint (`runs/<profile>/phase3/best.pt`),
`reports/<profile>/metrics.json`, `top50.json` and `mistakes.json`, and the validation images and
labels. An upload is decoded and preprocessed as `python -m vocproj predict` does it
(vocproj/images.py), and labelled by the same threshold rule (vocproj/metrics/thresholds.py). The
app never raises into the notebook: every problem becomes one line of text in the tab where it
happened, and the app stays usable.

- `classifier`: the best checkpoint's network and its probabilities for one image
- `pictures`: what an image widget shows: a photo fit for display, its Grad-CAM overlay, JPEG
- `inputs`: the reports, the validation split and the model, read once for all tabs (`Inputs`)
- `tab`: what every tab has (`BrowserTab`) and the walk through a list of images (`ImageListTab`)
- `predict_tab`: Predict Image (`PredictTab`)
- `top50_tab`: View Top50 Result (`Top50Tab`)
- `mistakes_tab`: Mistakes (`MistakesTab`)
- `app`: `BrowserApp`, the tabs in one ipywidgets Tab, and `build_browser`
"""

from vocproj.reporting.browser.app import BrowserApp, build_browser
from vocproj.reporting.browser.classifier import (
    CHECKPOINT_NOTEBOOK,
    Classifier,
    load_classifier,
    predict_probabilities,
)
from vocproj.reporting.browser.inputs import (
    DEFAULT_THRESHOLD,
    ClassMistakes,
    Evaluation,
    GroundTruth,
    Inputs,
    MistakeEntry,
    Mistakes,
    RankedImage,
    TopEntry,
    load_evaluation,
    load_ground_truth,
    load_mistakes,
)
from vocproj.reporting.browser.mistakes_tab import MISTAKE_KINDS, MistakeKind, MistakesTab
from vocproj.reporting.browser.pictures import (
    DISPLAY_SIZE,
    centre_square,
    fit_for_display,
    gradcam_map,
    gradcam_target_layer,
    heatmap_overlay,
    jpeg_bytes,
)
from vocproj.reporting.browser.predict_tab import Prediction, PredictTab
from vocproj.reporting.browser.tab import BrowserTab, ImageListTab, top50_options
from vocproj.reporting.browser.top50_tab import Top50Tab

__all__ = [
    "CHECKPOINT_NOTEBOOK",
    "DEFAULT_THRESHOLD",
    "DISPLAY_SIZE",
    "MISTAKE_KINDS",
    "BrowserApp",
    "BrowserTab",
    "ClassMistakes",
    "Classifier",
    "Evaluation",
    "GroundTruth",
    "ImageListTab",
    "Inputs",
    "MistakeEntry",
    "MistakeKind",
    "Mistakes",
    "MistakesTab",
    "PredictTab",
    "Prediction",
    "RankedImage",
    "Top50Tab",
    "TopEntry",
    "build_browser",
    "centre_square",
    "fit_for_display",
    "gradcam_map",
    "gradcam_target_layer",
    "heatmap_overlay",
    "jpeg_bytes",
    "load_classifier",
    "load_evaluation",
    "load_ground_truth",
    "load_mistakes",
    "predict_probabilities",
    "top50_options",
]
