"""The browser in a real browser: Voilà serves notebook 05 for the suite's shared tiny trained run
(prepared with papermill the way `make browse` does), and Debian's Chromium, driven by
Playwright, picks a class and an image, uploads files, moves the threshold and toggles the
heatmaps.

The page is loaded once for the module (each load starts a kernel that imports torch and loads
the model): each test works in a tab of its own, and nothing one test does in its tab changes
what another's shows.
Screenshots of each tab go to the test's tmp folder and to /tmp/browser_shots/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from test_browser import NOTEBOOK

from vocproj.config import Profile, load_profile
from vocproj.data.voc import CLASSES, read_labels
from vocproj.images import decode_image
from vocproj.metrics.thresholds import NOT_IDENTIFIED, labels_at_threshold
from vocproj.reporting.browser import load_classifier, predict_probabilities

from conftest import CHROMIUM, free_port, needs_chromium

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
SHOTS = Path("/tmp/browser_shots")
LOAD_TIMEOUT_MS = 180_000  # a fresh kernel imports torch and loads the model: slow on a small CPU
ACTION_TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.slow, needs_chromium]


@pytest.fixture(scope="module")
def tiny(tiny_yaml: Path) -> Profile:
    return load_profile(tiny_yaml)


def wait_until_serving(
    url: str, server: subprocess.Popen, log: Path, seconds: float, name: str = "Voilà"
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"{name} exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "api", timeout=5):
                return
        except urllib.error.HTTPError:  # any HTTP answer means the server is up
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{name} did not answer at {url} within {seconds} s:\n{log.read_text()}")


def prepare_notebook(params: Path, folder: Path) -> Path:
    """A copy of notebook 05 in `folder` with the profile's parameters, as `make browse` writes."""
    prepared = folder / NOTEBOOK.name
    subprocess.run(
        [sys.executable, "-m", "papermill", "--prepare-only", "-f", str(params),
         str(NOTEBOOK), str(prepared)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return prepared


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory: pytest.TempPathFactory, tiny_yaml: Path) -> Iterator[str]:
    """Serve a papermill-prepared copy of notebook 05 (parameters of the tiny profile)."""
    folder = tmp_path_factory.mktemp("voila")
    served = prepare_notebook(tiny_yaml, folder)
    port, log = free_port(), folder / "voila.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "voila", str(served), "--no-browser", f"--port={port}",
             "--Voila.port_retries=0", "--Voila.ip=127.0.0.1", "--token=",
             "--show_tracebacks=True"],
            stdout=output, stderr=subprocess.STDOUT, cwd=folder,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, server, log, seconds=60)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@contextmanager
def opened_page(browser: Browser, url: str, width: int, height: int) -> Iterator[Page]:
    """A new page at `url` with the tests' timeouts, in a context of its own closed afterwards."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    page.goto(url, timeout=LOAD_TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def loaded_page(browser: Browser, voila_url: str) -> Iterator[Page]:
    """The app, loaded once for the module and showing its example prediction."""
    with opened_page(browser, voila_url, 1100, 1000) as page:
        page.wait_for_selector(".vocproj-predict-result span, .vocproj-predict-result p",
                               timeout=LOAD_TIMEOUT_MS)  # fmt: skip
        wait_for_image(page.locator(".vocproj-chart"))
        yield page


@pytest.fixture
def page(loaded_page: Page) -> Iterator[Page]:
    """The module's page for one test, which must leave no traceback on it."""
    yield loaded_page
    assert "Traceback" not in loaded_page.content()


def wait_for_image(image: Locator, other_than: str | None = None) -> str:
    """Wait until an Image widget shows a decoded picture (a new one if `other_than`); its src."""
    image.page.wait_for_function(
        "([element, old]) => element.complete && element.naturalWidth > 0 && element.src !== old",
        arg=[image.element_handle(), other_than],
    )
    return image.get_attribute("src") or ""


def tab_on_show(page: Page) -> Locator:
    """The contents of the tab on show (the hidden tabs keep showing what they last showed)."""
    return page.locator(".widget-tab-contents > *").filter(visible=True)


def screenshot(page: Page, folder: Path, name: str) -> None:
    path = folder / name
    page.locator(".widget-tab").first.screenshot(path=path)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / name)


def choose_file(page: Page, path: Path) -> None:
    """Click "Choose image" and pick a file in the browser's file chooser."""
    with page.expect_file_chooser() as chooser:
        page.locator(".vocproj-upload").click()
    chooser.value.set_files(path)


def test_top50_tab_shows_the_chosen_image_confidence_and_heatmap(
    page: Page, tiny: Profile, tmp_path: Path
):
    top50 = json.loads((tiny.report_dir / "top50.json").read_text())
    page.get_by_role("tab", name="View Top50 Result").click()
    image, result = page.locator(".vocproj-top50-image"), page.locator(".vocproj-top50-result")
    page.locator(".vocproj-class select").select_option("bird")
    first, third = top50["bird"][0], top50["bird"][2]
    expect(result).to_contain_text(f"Confidence for bird: {first['score']:.3f}")
    source = wait_for_image(image)
    page.locator(".vocproj-image select").select_option(
        label=f"{third['rank']}. {third['id']} ({third['score']:.3f})"
    )
    expect(result).to_contain_text(f"Confidence for bird: {third['score']:.3f} (rank 3 of")
    expect(result).to_contain_text("Ground truth:")
    mark = {1: "✓ correct", 0: "✗ wrong", -1: "◐ difficult"}[third["label"]]
    expect(result).to_contain_text(f"{mark}: bird")
    source = wait_for_image(image, other_than=source)
    page.locator(".vocproj-top50-heatmap").click()
    expect(tab_on_show(page)).to_contain_text("heatmap of bird")
    wait_for_image(image, other_than=source)
    screenshot(page, tmp_path, "view_top50_result.png")


def test_mistakes_tab_shows_false_positives_and_missed_images_with_their_labels(
    page: Page, tiny: Profile, tmp_path: Path
):
    mistakes = json.loads((tiny.report_dir / "mistakes.json").read_text())["classes"]
    page.get_by_role("tab", name="Mistakes").click()
    image, result = (
        page.locator(".vocproj-mistakes-image-view"), page.locator(".vocproj-mistakes-result")
    )  # fmt: skip
    page.locator(".vocproj-mistakes-class select").select_option("dog")
    worst = mistakes["dog"]["false_positives"][0]
    expect(result).to_contain_text(f"Confidence for dog: {worst['score']:.3f}")
    expect(result).to_contain_text("✗ false positive: dog is not in this image")
    expect(result).to_contain_text("Ground truth: " + (", ".join(worst["labels"]) or "none"))
    source = wait_for_image(image)
    page.locator(".vocproj-mistakes-kind select").select_option(label="missed")
    missed = mistakes["dog"]["missed"][0]
    expect(result).to_contain_text(f"Confidence for dog: {missed['score']:.3f}")
    expect(result).to_contain_text("✗ missed: dog is in this image")
    source = wait_for_image(image, other_than=source)
    page.locator(".vocproj-mistakes-heatmap").click()
    expect(tab_on_show(page)).to_contain_text("heatmap of dog")
    wait_for_image(image, other_than=source)
    screenshot(page, tmp_path, "mistakes.png")


def test_predict_tab_upload_threshold_heatmap_and_bad_file(
    page: Page, tiny: Profile, tmp_path: Path
):
    ids, _ = read_labels(tiny.voc_root, "val")
    photo = tmp_path / "my_photo.jpg"
    shutil.copy(tiny.voc_root / "JPEGImages" / f"{ids[7]}.jpg", photo)
    threshold = json.loads((tiny.report_dir / "metrics.json").read_text())
    probabilities = predict_probabilities(
        load_classifier(tiny), decode_image(photo.read_bytes(), photo.name)
    )
    chosen = threshold["best_threshold_f1"]["threshold"]
    expected = labels_at_threshold(CLASSES, probabilities, chosen)
    page.get_by_role("tab", name="Predict Image").click()
    image, result = page.locator(".vocproj-predict-image"), page.locator(".vocproj-predict-result")
    source = wait_for_image(image)

    choose_file(page, photo)
    expect(tab_on_show(page)).to_contain_text("my_photo.jpg")
    expect(result.locator("span")).to_have_count(len(expected))  # the chips render after the tab
    shown = [" ".join(chip.split()) for chip in result.locator("span").all_inner_texts()]
    assert shown == [f"{name} {p:.3f}" for name, p in expected]
    source = wait_for_image(image, other_than=source)

    page.locator(".vocproj-predict-heatmap").click()
    expect(tab_on_show(page)).to_contain_text("heatmap of")
    source = wait_for_image(image, other_than=source)
    screenshot(page, tmp_path, "predict_image.png")

    readout = page.locator(".vocproj-threshold .widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.99")
    page.keyboard.press("Enter")
    expect(result).to_have_text(NOT_IDENTIFIED)

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    choose_file(page, notes)
    expect(page.locator(".vocproj-predict-message")).to_contain_text(
        "notes.txt is not an image Pillow can read"
    )
    screenshot(page, tmp_path, "predict_image_bad_file.png")
    choose_file(page, photo)
    expect(page.locator(".vocproj-predict-message")).to_be_empty()
    expect(result).to_have_text(NOT_IDENTIFIED)  # the slider still says 0.99
    wait_for_image(image)
