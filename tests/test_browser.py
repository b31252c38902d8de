"""The browser app driven through its widgets: predictions, top 50, mistakes, heatmaps, bad input.

The app reads the suite's shared tiny run (conftest's `tiny_yaml`: a real tiny model trained 1 epoch
per phase at 32 px on the small sample, and evaluated), so a real checkpoint, metrics.json,
top50.json, mistakes.json and scores file.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.feature_extraction import create_feature_extractor

from vocproj.artifacts import RunFiles
from vocproj.config import PROJECT_DIR, Profile, load_profile
from vocproj.data.prepare import prepare_data
from vocproj.data.voc import CLASSES, read_labels
from vocproj.images import IMAGENET
from vocproj.metrics.multilabel import load_scores
from vocproj.metrics.thresholds import NOT_IDENTIFIED, labels_at_threshold, threshold_vector
from vocproj.model.network import build_model
from vocproj.reporting.browser import (
    BrowserApp,
    Classifier,
    TopEntry,
    build_browser,
    gradcam_map,
    predict_probabilities,
    top50_options,
)

from conftest import copy_of_run

CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

NOTEBOOK = PROJECT_DIR / "notebooks" / "05_browser.ipynb"


@pytest.fixture
def tiny(tiny_yaml: Path) -> Profile:
    return load_profile(tiny_yaml)


@pytest.fixture
def app(tiny: Profile) -> BrowserApp:
    return build_browser(tiny)


def with_dirs(profile: Profile, **dirs: Path) -> Profile:
    """The profile with runs_dir / reports_dir moved elsewhere."""
    settings = profile.settings.model_copy(update={k: str(v) for k, v in dirs.items()})
    return profile.model_copy(update={"settings": settings})


def text(markup: str) -> str:
    """What a person reads in an HTML widget."""
    inline_removed = re.sub(r"</?(b|i)>", "", markup)
    return " ".join(re.sub(r"<[^>]+>", " ", inline_removed).replace("&nbsp;", " ").split())


def upload(app: BrowserApp, name: str, content: bytes) -> None:
    """Set the FileUpload's value the way ipywidgets 8 does after a file is chosen."""
    app.predict_tab.upload.value = (
        {
            "name": name,
            "type": "image/jpeg",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime(2024, 5, 1, tzinfo=UTC),
        },
    )


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def shown(widget_value: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(widget_value))
    image.load()
    return image


def val_image(profile: Profile, index: int = 0) -> tuple[str, Path]:
    ids, _ = read_labels(profile.voc_root, profile.settings.data.val_split)
    return ids[index], profile.voc_root / "JPEGImages" / f"{ids[index]}.jpg"


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk as the specification defines it (for 16-bit RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- the core


def test_labels_at_threshold_are_highest_first_and_inclusive():
    probabilities = np.zeros(20)
    probabilities[[CLASS_INDEX["dog"], CLASS_INDEX["cat"], CLASS_INDEX["bird"]]] = [0.4, 0.9, 0.39]
    assert labels_at_threshold(CLASSES, probabilities, 0.4) == [("cat", 0.9), ("dog", 0.4)]
    assert labels_at_threshold(CLASSES, probabilities, 0.95) == []
    per_class = threshold_vector(CLASSES, 0.5, {"bird": 0.3, "cat": None})
    assert per_class[CLASS_INDEX["bird"]] == 0.3 and per_class[CLASS_INDEX["cat"]] == 0.5
    assert labels_at_threshold(CLASSES, probabilities, per_class) == [("cat", 0.9), ("bird", 0.39)]


def test_top50_options_are_rank_id_score_in_rank_order():
    entries = [
        TopEntry(rank=2, id="2008_000002", score=0.5, label=0),
        TopEntry(rank=1, id="2008_000533", score=0.97312, label=1),
    ]
    assert top50_options(entries) == [
        ("1. 2008_000533 (0.973)", "2008_000533"),
        ("2. 2008_000002 (0.500)", "2008_000002"),
    ]


def test_gradcam_is_the_class_weighted_last_block_activation():
    """Grad-CAM on a ResNet is ReLU(Σ_k w_ck A_k) over layer4's output, up-sampled."""
    torch.manual_seed(0)
    model = build_model("resnet18", "none").eval()
    unused = Path("unused")
    classifier = Classifier(model, 96, unused, normalisation=IMAGENET, classes=CLASSES)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8))
    features = create_feature_extractor(model, {"layer4": "a"})
    with torch.no_grad():
        activations = features(classifier.preprocess(image))["a"][0]  # 512×3×3
    maps = {}
    for name in ("dog", "car"):
        weights = model.fc.weight[CLASS_INDEX[name]].detach()
        expected = torch.relu(torch.einsum("k,kij->ij", weights, activations))
        expected = torch.nn.functional.interpolate(
            expected[None, None], size=(96, 96), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        expected = (expected - expected.min()) / expected.max()
        maps[name] = gradcam_map(classifier, image, CLASS_INDEX[name])
        assert maps[name].shape == (96, 96) and maps[name].min() >= 0 and maps[name].max() <= 1
        assert np.corrcoef(maps[name].ravel(), expected.ravel())[0, 1] > 0.98
    assert np.abs(maps["dog"] - maps["car"]).mean() > 0.05


# ---------------------------------------------------------------- Predict Image


def test_the_study_two_tabs_then_mistakes(app: BrowserApp):
    assert app.widget.titles == ("Predict Image", "View Top50 Result", "Mistakes")
    assert app.widget.children == (app.predict_tab, app.top50_tab, app.mistakes_tab)
    assert app.predict_tab.upload.accept == "image/*" and app.predict_tab.upload.multiple is False


def test_starts_with_the_first_class_top1_image_scored_as_in_evaluation(
    app: BrowserApp, tiny: Profile
):
    top50 = json.loads((tiny.report_dir / "top50.json").read_text())
    first = next(name for name in CLASSES if top50.get(name))
    best = top50[first][0]
    assert (
        app.predict_tab.prediction is not None
        and app.predict_tab.prediction.name == f"{best['id']}.jpg"
    )
    assert app.predict_tab.prediction.probabilities[CLASS_INDEX[first]] == pytest.approx(
        best["score"], abs=1e-4
    )
    assert app.predict_tab.message.value == ""
    assert shown(app.predict_tab.image.value).format == "JPEG"
    assert app.predict_tab.summary().startswith(f"{best['id']}.jpg: ")


def test_upload_shows_labels_highest_first_as_the_evaluation_scored_them(
    app: BrowserApp, tiny: Profile
):
    metrics = json.loads((tiny.report_dir / "metrics.json").read_text())
    assert app.predict_tab.threshold.value == metrics["best_threshold_f1"]["threshold"]
    image_id, path = val_image(tiny, 5)
    upload(app, "photo.jpg", path.read_bytes())
    scores = load_scores(RunFiles.of(tiny).scores("val"))
    expected = scores.scores[scores.ids.index(image_id)]
    np.testing.assert_allclose(app.predict_tab.prediction.probabilities, expected, atol=1e-4)
    found = labels_at_threshold(
        CLASSES, app.predict_tab.prediction.probabilities, app.predict_tab.threshold.value
    )
    shown_text = text(app.predict_tab.result.value)
    if found:
        assert shown_text == " ".join(f"{name} {p:.3f}" for name, p in found)
        assert [p for _, p in found] == sorted((p for _, p in found), reverse=True)
    else:
        assert shown_text == NOT_IDENTIFIED
    assert "photo.jpg" in app.predict_tab.caption.value
    with Image.open(path) as original:
        assert max(shown(app.predict_tab.image.value).size) == 384
        assert shown(app.predict_tab.image.value).size[0] / shown(app.predict_tab.image.value).size[
            1
        ] == (pytest.approx(original.width / original.height, rel=0.02))


def test_threshold_slider_updates_labels_and_chart_live(app: BrowserApp):
    probabilities = app.predict_tab.prediction.probabilities
    app.predict_tab.threshold.value = 0.0
    assert len(text(app.predict_tab.result.value).split()) == 2 * 20
    chart_all = app.predict_tab.chart.value
    app.predict_tab.threshold.value = round(float(probabilities.max()) + 0.01, 2)
    assert text(app.predict_tab.result.value) == NOT_IDENTIFIED
    assert app.predict_tab.chart.value != chart_all
    chart = shown(app.predict_tab.chart.value)
    assert chart.format == "PNG" and chart.width > 300 and chart.height > 400
    top = int(np.argmax(probabilities))
    app.predict_tab.threshold.value = round(float(probabilities[top]) - 0.001, 3)
    assert text(app.predict_tab.result.value).startswith(f"{CLASSES[top]} ")


def test_per_class_thresholds_come_from_metrics_json(app: BrowserApp, tiny: Profile):
    per_class = json.loads((tiny.report_dir / "metrics.json").read_text())["per_class_thresholds"]
    app.predict_tab.per_class.value = True
    assert app.predict_tab.threshold.disabled
    expected = [
        per_class[n] if per_class[n] is not None else app.predict_tab.threshold.value
        for n in CLASSES
    ]
    np.testing.assert_allclose(app.predict_tab.thresholds(), expected)
    found = labels_at_threshold(CLASSES, app.predict_tab.prediction.probabilities, expected)
    assert app.predict_tab.found_labels() == found
    app.predict_tab.per_class.value = False
    assert not app.predict_tab.threshold.disabled
    np.testing.assert_allclose(app.predict_tab.thresholds(), app.predict_tab.threshold.value)


def test_heatmap_toggle_overlays_the_top_prediction_or_a_chosen_class(app: BrowserApp):
    plain = app.predict_tab.image.value
    app.predict_tab.heatmap.value = True
    top = CLASSES[int(np.argmax(app.predict_tab.prediction.probabilities))]
    overlaid = app.predict_tab.image.value
    assert overlaid != plain and shown(overlaid).size == shown(plain).size
    assert f"heatmap of <b>{top}</b>" in app.predict_tab.caption.value
    other = next(name for name in CLASSES if name != top)
    app.predict_tab.heatmap_class.value = other
    assert f"heatmap of <b>{other}</b>" in app.predict_tab.caption.value
    assert app.predict_tab.message.value == ""
    app.predict_tab.heatmap.value = False
    assert app.predict_tab.image.value == plain
    assert "heatmap" not in app.predict_tab.caption.value


def test_exif_rotated_photo_is_shown_and_predicted_upright(app: BrowserApp, tiny: Profile):
    _, path = val_image(tiny, 1)
    with Image.open(path) as original:
        landscape = original.convert("RGB")
    assert landscape.width > landscape.height
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    content = encoded(landscape, "JPEG", quality=95, exif=exif)
    upload(app, "rotated.jpg", content)
    assert app.predict_tab.message.value == ""
    width, height = shown(app.predict_tab.image.value).size
    assert height > width, "the photo is shown upright"
    upright = Image.open(io.BytesIO(content)).transpose(Image.Transpose.ROTATE_270)
    expected = predict_probabilities(app.inputs.classifier, upright.convert("RGB"))
    np.testing.assert_allclose(app.predict_tab.prediction.probabilities, expected, atol=1e-6)


def picture(profile: Profile) -> Image.Image:
    _, path = val_image(profile, 2)
    with Image.open(path) as image:
        return image.convert("RGB")


def converted_inputs(rgb: Image.Image) -> dict[str, tuple[bytes, Image.Image, float]]:
    """File bytes in awkward modes, each with the RGB image it should become and a tolerance."""
    gray = rgb.convert("L")
    rgba = rgb.convert("RGBA")
    alpha = np.full((rgb.height, rgb.width), 255, np.uint8)
    alpha[:, : rgb.width // 2] = 0  # left half transparent: shown on white
    rgba.putalpha(Image.fromarray(alpha))
    on_white = np.asarray(rgb).copy()
    on_white[:, : rgb.width // 2] = 255
    palette = rgb.quantize(colors=16)
    palette.info["transparency"] = 0
    palette_on_white = np.asarray(palette.convert("RGB")).copy()
    palette_on_white[np.asarray(palette) == 0] = 255
    sixteen = np.asarray(gray).astype(np.uint16) * 257
    rgb16 = (np.asarray(rgb).astype(np.uint16) * 257).astype(">u2")
    rows16 = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    return {
        "grayscale.jpg": (encoded(gray, "JPEG", quality=95), gray.convert("RGB"), 4),
        "cmyk.jpg": (encoded(rgb.convert("CMYK"), "JPEG", quality=95), rgb, 6),
        "rgba.png": (encoded(rgba, "PNG"), Image.fromarray(on_white), 0.5),
        "palette.png": (encoded(palette, "PNG"), Image.fromarray(palette_on_white), 0.5),
        "gray16.png": (encoded(Image.fromarray(sixteen), "PNG"), gray.convert("RGB"), 0.5),
        "rgb16.png": (png_bytes(rgb.width, rgb.height, 16, 2, rows16), rgb, 0.5),
    }


@pytest.mark.parametrize(
    "name", ["grayscale.jpg", "cmyk.jpg", "rgba.png", "palette.png", "gray16.png", "rgb16.png"]
)
def test_other_image_modes_are_converted_to_the_rgb_they_show(
    app: BrowserApp, tiny: Profile, name: str
):
    content, expected, tolerance = converted_inputs(picture(tiny))[name]
    upload(app, name, content)
    assert app.predict_tab.message.value == "", text(app.predict_tab.message.value)
    decoded = np.asarray(app.predict_tab.prediction.image, dtype=float)
    assert decoded.shape == (expected.height, expected.width, 3)
    assert np.abs(decoded - np.asarray(expected, dtype=float)).mean() < tolerance
    if tolerance < 1:  # lossless files: exactly what the expected image predicts
        expected_probabilities = predict_probabilities(app.inputs.classifier, expected)
        np.testing.assert_allclose(
            app.predict_tab.prediction.probabilities, expected_probabilities, atol=1e-6
        )
    assert text(app.predict_tab.result.value)


def bad_input(name: str, valid_jpeg: bytes) -> tuple[bytes, str]:
    """A file the app must refuse with one line, and a phrase of that line."""
    if name == "bomb.png":  # 400 Mpx of zeros in a few kB of PNG: refused before decoding
        return encoded(Image.new("1", (20_000, 20_000)), "PNG"), "too large to open safely"
    return {
        "notes.txt": (b"these are not the pixels you are looking for\n" * 20, "is not an image"),
        "truncated.jpg": (valid_jpeg[: len(valid_jpeg) // 2], "truncated or corrupt"),
        "empty.jpg": (b"", "is empty"),
    }[name]


@pytest.mark.parametrize("name", ["notes.txt", "truncated.jpg", "empty.jpg", "bomb.png"])
def test_bad_upload_gives_one_line_and_the_app_stays_usable(
    app: BrowserApp, tiny: Profile, name: str
):
    _, path = val_image(tiny, 3)
    content, phrase = bad_input(name, path.read_bytes())
    upload(app, name, content)
    message = text(app.predict_tab.message.value)
    assert phrase in message and name in message and "\n" not in app.predict_tab.message.value
    assert app.predict_tab.prediction is None
    assert app.predict_tab.image.value == b"" and app.predict_tab.chart.value == b""
    assert app.predict_tab.result.value == ""
    app.predict_tab.heatmap.value = True  # toggling with nothing shown is harmless
    app.predict_tab.threshold.value = 0.0
    upload(app, "good.jpg", path.read_bytes())
    assert app.predict_tab.message.value == ""
    assert app.predict_tab.prediction is not None and app.predict_tab.prediction.name == "good.jpg"
    assert len(text(app.predict_tab.result.value).split()) == 2 * 20
    assert max(shown(app.predict_tab.image.value).size) == 384


# ---------------------------------------------------------------- View Top50 Result


def test_top50_dropdowns_list_each_class_in_rank_order(app: BrowserApp, tiny: Profile):
    top50 = json.loads((tiny.report_dir / "top50.json").read_text())
    assert list(app.top50_tab.class_dropdown.options) == [name for name in CLASSES if name in top50]
    app.top50_tab.class_dropdown.value = "bird"
    labels = [label for label, _ in app.top50_tab.image_dropdown.options]
    assert labels == [f"{e['rank']}. {e['id']} ({e['score']:.3f})" for e in top50["bird"]]
    assert [e["rank"] for e in top50["bird"]] == list(range(1, len(top50["bird"]) + 1))
    assert app.top50_tab.image_dropdown.value == top50["bird"][0]["id"]


def test_choosing_an_image_shows_it_with_confidence_and_marked_ground_truth(
    app: BrowserApp, tiny: Profile
):
    top50 = json.loads((tiny.report_dir / "top50.json").read_text())
    ids, labels = read_labels(tiny.voc_root, "val")
    app.top50_tab.class_dropdown.value = "person"
    first_image = app.top50_tab.image.value
    marks = set()
    for entry in top50["person"][:6]:
        app.top50_tab.image_dropdown.value = entry["id"]
        result = text(app.top50_tab.result.value)
        assert f"Confidence for person: {entry['score']:.3f} (rank {entry['rank']} of" in result
        row = labels[ids.index(entry["id"])]
        present = [c for c, flag in zip(CLASSES, row, strict=True) if flag == 1]
        assert f"Ground truth: {', '.join(present) or 'none'}" in result
        mark = {1: "✓ correct", 0: "✗ wrong", -1: "◐ difficult"}[int(row[CLASS_INDEX["person"]])]
        assert mark in result and entry["label"] == row[CLASS_INDEX["person"]]
        marks.add(mark)
        with Image.open(tiny.voc_root / "JPEGImages" / f"{entry['id']}.jpg") as original:
            width, height = shown(app.top50_tab.image.value).size
            assert width / height == pytest.approx(original.width / original.height, rel=0.02)
    assert app.top50_tab.image.value != first_image
    assert app.top50_tab.message.value == ""


def test_switching_class_shows_that_class_confidence(app: BrowserApp, tiny: Profile):
    top50 = json.loads((tiny.report_dir / "top50.json").read_text())
    for name in ("cat", "aeroplane", "tvmonitor"):
        app.top50_tab.class_dropdown.value = name
        best = top50[name][0]
        assert app.top50_tab.image_dropdown.value == best["id"]
        assert f"Confidence for {name}: {best['score']:.3f}" in text(app.top50_tab.result.value)


def test_top50_heatmap_toggle_changes_the_image(app: BrowserApp):
    app.top50_tab.class_dropdown.value = "dog"
    plain = app.top50_tab.image.value
    app.top50_tab.heatmap.value = True
    assert app.top50_tab.image.value != plain
    assert "heatmap of <b>dog</b>" in app.top50_tab.caption.value
    app.top50_tab.image_dropdown.index = 1
    assert "heatmap of <b>dog</b>" in app.top50_tab.caption.value
    app.top50_tab.heatmap.value = False
    assert app.top50_tab.caption.value == ""


def test_a_missing_top50_image_is_one_line_and_others_still_show(tmp_path: Path, tiny_yaml: Path):
    """An image gone from the data after the data stage listed it."""
    params = copy_of_run(tiny_yaml, tmp_path / "copy")
    tiny = load_profile(params)
    voc = tmp_path / "data" / "VOCdevkit" / "VOC2012"
    shutil.copytree(tiny.voc_root, voc)
    settings = tiny.settings.model_copy(
        update={"data": tiny.settings.data.model_copy(update={"root": str(tmp_path / "data")})}
    )
    profile = tiny.model_copy(update={"settings": settings})
    prepare_data(profile, progress=False)
    top50 = json.loads((profile.report_dir / "top50.json").read_text())
    missing = top50["horse"][1]["id"]
    (voc / "JPEGImages" / f"{missing}.jpg").unlink()
    app = build_browser(profile)
    app.top50_tab.class_dropdown.value = "horse"
    app.top50_tab.image_dropdown.value = missing
    message = text(app.top50_tab.message.value)
    assert f"{missing}.jpg" in message and "is missing" in message
    assert app.top50_tab.image.value == b""
    app.top50_tab.image_dropdown.index = 2
    assert app.top50_tab.message.value == "" and app.top50_tab.image.value != b""


# ---------------------------------------------------------------- Mistakes


def mistakes_json(profile: Profile) -> dict:
    return json.loads((profile.report_dir / "mistakes.json").read_text())


def expected_mistake_text(profile: Profile, image_id: str) -> tuple[str, str]:
    """The ground truth (from the split's labels) and the predicted labels (from the scores file
    at metrics.json's F1-best threshold) that the Mistakes tab should show for an image."""
    ids, labels = read_labels(profile.voc_root, "val")
    row = labels[ids.index(image_id)]
    present = [c for c, flag in zip(CLASSES, row, strict=True) if flag == 1]
    difficult = [c for c, flag in zip(CLASSES, row, strict=True) if flag == -1]
    truth = ", ".join(present) or "none"
    if difficult:
        truth += f" (difficult only: {', '.join(difficult)})"
    threshold = json.loads((profile.report_dir / "metrics.json").read_text())["best_threshold_f1"]
    scores = load_scores(RunFiles.of(profile).scores("val"))
    probabilities = scores.scores[scores.ids.index(image_id)]
    found = labels_at_threshold(
        CLASSES, probabilities, threshold["threshold"] if threshold else 0.5
    )
    return truth, ", ".join(name for name, _ in found) or NOT_IDENTIFIED


def ranked_from_scores(profile: Profile, name: str, label: int) -> list[str]:
    """The ids of the class's images with `label`, most confident mistake first (ties stable)."""
    scores = load_scores(RunFiles.of(profile).scores("val"))
    column = scores.scores[:, CLASS_INDEX[name]]
    rows = np.flatnonzero(scores.labels[:, CLASS_INDEX[name]] == label)
    order = np.argsort(-column[rows] if label == 0 else column[rows], kind="stable")
    return [scores.ids[row] for row in rows[order][:20]]


def test_mistakes_class_menu_lists_the_run_classes_and_both_kinds(app: BrowserApp):
    assert list(app.mistakes_tab.class_dropdown.options) == list(CLASSES)
    assert [label for label, _ in app.mistakes_tab.kind_dropdown.options] == [
        "false positives",
        "missed",
    ]
    assert app.mistakes_tab.notice.value == "" and app.mistakes_tab.message.value == ""
    assert app.mistakes_tab.image.value != b""


def test_false_positives_are_mistakes_json_with_ground_truth_and_predicted_labels(
    app: BrowserApp, tiny: Profile
):
    false_positives = mistakes_json(tiny)["classes"]["dog"]["false_positives"]
    app.mistakes_tab.class_dropdown.value = "dog"
    labels = [label for label, _ in app.mistakes_tab.image_dropdown.options]
    assert labels == [f"{e['rank']}. {e['id']} ({e['score']:.3f})" for e in false_positives]
    assert [e["id"] for e in false_positives] == ranked_from_scores(tiny, "dog", 0)
    assert app.mistakes_tab.image_dropdown.value == false_positives[0]["id"]
    for entry in false_positives[:5]:
        app.mistakes_tab.image_dropdown.value = entry["id"]
        result = text(app.mistakes_tab.result.value)
        truth, predicted = expected_mistake_text(tiny, entry["id"])
        assert f"Confidence for dog: {entry['score']:.3f} (rank {entry['rank']} of" in result
        assert f"Ground truth: {truth} Predicted: {predicted} " in result
        assert result.endswith(f"✗ false positive: dog is not in this image but scored "
                               f"{entry['score']:.3f}")  # fmt: skip
        assert shown(app.mistakes_tab.image.value).format == "JPEG"
    assert app.mistakes_tab.message.value == ""


def test_switching_kind_to_missed_lists_the_lowest_scored_positives(app: BrowserApp, tiny: Profile):
    missed = mistakes_json(tiny)["classes"]["person"]["missed"]
    app.mistakes_tab.class_dropdown.value = "person"
    first_false_positive = app.mistakes_tab.image.value
    app.mistakes_tab.kind_dropdown.value = "missed"
    assert [value for _, value in app.mistakes_tab.image_dropdown.options] == [
        e["id"] for e in missed
    ]
    assert [e["id"] for e in missed] == ranked_from_scores(tiny, "person", 1)
    assert [e["score"] for e in missed] == sorted(e["score"] for e in missed)
    assert app.mistakes_tab.image_dropdown.value == missed[0]["id"]
    assert app.mistakes_tab.image.value != first_false_positive
    result = text(app.mistakes_tab.result.value)
    truth, predicted = expected_mistake_text(tiny, missed[0]["id"])
    assert f"Ground truth: {truth} Predicted: {predicted} " in result
    assert result.endswith(f"✗ missed: person is in this image but scored {missed[0]['score']:.3f}")
    app.mistakes_tab.kind_dropdown.value = "false_positives"
    assert app.mistakes_tab.image.value == first_false_positive


def test_mistakes_heatmap_toggle_changes_the_image(app: BrowserApp):
    app.mistakes_tab.class_dropdown.value = "cat"
    plain = app.mistakes_tab.image.value
    app.mistakes_tab.heatmap.value = True
    assert app.mistakes_tab.image.value != plain
    assert shown(app.mistakes_tab.image.value).size == shown(plain).size
    assert "heatmap of <b>cat</b>" in app.mistakes_tab.caption.value
    app.mistakes_tab.image_dropdown.index = 1
    assert "heatmap of <b>cat</b>" in app.mistakes_tab.caption.value
    app.mistakes_tab.image_dropdown.index = 0
    app.mistakes_tab.heatmap.value = False
    assert app.mistakes_tab.image.value == plain and app.mistakes_tab.caption.value == ""
    assert app.mistakes_tab.message.value == ""


def test_an_empty_mistakes_list_says_why_and_shows_no_image(tmp_path: Path, tiny: Profile):
    reports = tmp_path / "reports"
    shutil.copytree(tiny.report_dir, reports / tiny.profile)
    path = reports / tiny.profile / "mistakes.json"
    edited = json.loads(path.read_text())
    edited["classes"]["sheep"]["missed"] = []
    path.write_text(json.dumps(edited))
    app = build_browser(with_dirs(tiny, reports_dir=reports))
    app.mistakes_tab.class_dropdown.value = "sheep"
    assert app.mistakes_tab.image.value != b""
    app.mistakes_tab.kind_dropdown.value = "missed"
    assert app.mistakes_tab.image_dropdown.options == () and app.mistakes_tab.image.value == b""
    assert text(app.mistakes_tab.result.value) == (
        "No missed: no validation image has sheep other than as a difficult object."
    )
    assert app.mistakes_tab.message.value == ""


# ---------------------------------------------------------------- missing or broken inputs


def test_missing_mistakes_json_is_the_tab_notice_and_the_other_tabs_work(
    tmp_path: Path, tiny: Profile
):
    reports = tmp_path / "reports"
    shutil.copytree(tiny.report_dir, reports / tiny.profile)
    (reports / tiny.profile / "mistakes.json").unlink()
    app = build_browser(with_dirs(tiny, reports_dir=reports))
    notice = text(app.mistakes_tab.notice.value)
    assert "mistakes.json not found" in notice and "04_evaluation" in notice
    for control in (
        app.mistakes_tab.class_dropdown,
        app.mistakes_tab.kind_dropdown,
        app.mistakes_tab.image_dropdown,
    ):
        assert control.disabled
    assert app.mistakes_tab.heatmap.disabled and app.mistakes_tab.image.value == b""
    assert app.top50_tab.notice.value == "" and not app.top50_tab.class_dropdown.disabled
    _, path = val_image(tiny)
    upload(app, "still-works.jpg", path.read_bytes())
    assert app.predict_tab.message.value == "" and app.predict_tab.prediction is not None


def test_mistakes_json_of_the_wrong_shape_names_the_field(tmp_path: Path, tiny: Profile):
    reports = tmp_path / "reports"
    shutil.copytree(tiny.report_dir, reports / tiny.profile)
    (reports / tiny.profile / "mistakes.json").write_text(
        '{"k": 20, "thresholds": {}, "classes": {"bird": {"false_positives": []}}}'
    )
    app = build_browser(with_dirs(tiny, reports_dir=reports))
    notice = text(app.mistakes_tab.notice.value)
    assert "mistakes.json is not what" in notice and "classes.bird.missed" in notice
    assert "04_evaluation" in notice and app.mistakes_tab.class_dropdown.disabled
    assert app.top50_tab.notice.value == ""


def test_missing_checkpoint_says_to_run_notebook_03(tmp_path: Path, tiny: Profile):
    app = build_browser(with_dirs(tiny, runs_dir=tmp_path / "no-runs"))
    notice = text(app.predict_tab.notice.value)
    assert "03_phase3_colour_flip" in notice and "phase3/best.pt not found" in notice
    assert app.predict_tab.upload.disabled and app.predict_tab.prediction is None
    assert app.top50_tab.heatmap.disabled and "03_phase3_colour_flip" in app.top50_tab.notice.value
    assert (
        app.mistakes_tab.heatmap.disabled
        and "03_phase3_colour_flip" in app.mistakes_tab.notice.value
    )
    assert not app.mistakes_tab.class_dropdown.disabled and app.mistakes_tab.image.value != b""
    app.top50_tab.class_dropdown.value = "bird"  # the top 50 are still browsable
    assert "Confidence for bird" in text(app.top50_tab.result.value)
    assert app.top50_tab.image.value != b""


def test_missing_evaluation_says_to_run_notebook_04(tmp_path: Path, tiny: Profile):
    app = build_browser(with_dirs(tiny, reports_dir=tmp_path / "no-reports"))
    assert (
        "04_evaluation" in app.top50_tab.notice.value and "not found" in app.top50_tab.notice.value
    )
    assert app.top50_tab.class_dropdown.disabled and app.top50_tab.image_dropdown.disabled
    assert (
        "mistakes.json not found" in app.mistakes_tab.notice.value
        and app.mistakes_tab.class_dropdown.disabled
    )
    assert "starts at 0.50" in text(app.predict_tab.notice.value)
    assert "04_evaluation" in app.predict_tab.notice.value
    assert app.predict_tab.threshold.value == 0.5 and app.predict_tab.per_class.disabled
    _, path = val_image(tiny)
    upload(app, "still-works.jpg", path.read_bytes())
    assert app.predict_tab.message.value == "" and app.predict_tab.prediction is not None


def test_corrupt_metrics_json_names_the_file_and_notebook_04(tmp_path: Path, tiny: Profile):
    reports = tmp_path / "reports"
    shutil.copytree(tiny.report_dir, reports / tiny.profile)
    (reports / tiny.profile / "metrics.json").write_text('{"best_threshold_f1": ')
    app = build_browser(with_dirs(tiny, reports_dir=reports))
    notice = text(app.top50_tab.notice.value)
    assert "metrics.json cannot be read" in notice and "04_evaluation" in notice


def test_top50_json_of_the_wrong_shape_names_the_field(tmp_path: Path, tiny: Profile):
    reports = tmp_path / "reports"
    shutil.copytree(tiny.report_dir, reports / tiny.profile)
    (reports / tiny.profile / "top50.json").write_text('{"bird": [{"rank": 1, "id": "x"}]}')
    app = build_browser(with_dirs(tiny, reports_dir=reports))
    notice = text(app.top50_tab.notice.value)
    assert "top50.json is not what" in notice and "bird.0.score" in notice


# ---------------------------------------------------------------- notebook 05


@pytest.mark.slow
def test_notebook_renders_a_prediction_under_papermill(tmp_path: Path, tiny_yaml: Path):
    executed = tmp_path / "05_browser.ipynb"
    subprocess.run(
        [sys.executable, "-m", "papermill", "--no-progress-bar", "-f", str(tiny_yaml),
         str(NOTEBOOK), str(executed)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    cells = json.loads(executed.read_text())["cells"]
    outputs = [output for cell in cells for output in cell.get("outputs", [])]
    widget = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    printed = "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert len(widget) == 1
    labels = rf"({NOT_IDENTIFIED}|([a-z]+ \d\.\d{{3}}(, )?)+)"
    assert re.fullmatch(rf"\d{{4}}_\d{{6}}\.jpg: {labels}\n", printed), printed
