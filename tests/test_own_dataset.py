"""Your own dataset, end to end: an annotation tool's export → `init-profile` → `make report`
→ the browser, with the export's own classes everywhere.

Each generated export (CVAT's PASCAL VOC 1.1, a labelImg folder, Roboflow's Pascal VOC) has five
made-up classes drawn as coloured shapes; a fourth export is real VOC photos of ../shared
relabelled to three classes, trained from ImageNet weights and shown by `make browse` in
Chromium. Everything runs in a temporary copy of the checkout (tests/test_report.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, expect
from test_browser_ui import (
    LOAD_TIMEOUT_MS,
    free_port,
    opened_page,
    wait_for_image,
)
from test_browser_ui import browser as browser  # fixture: one headless Chromium per module
from test_lab import serving
from test_report import MAKE_ENVIRONMENT, copy_checkout

from vocproj.config import load_profile
from vocproj.reporting.browser import build_browser

from conftest import needs_chromium
from exports import (
    RELABEL,
    Faults,
    Truth,
    write_cvat_export,
    write_labelimg_export,
    write_relabelled_real_export,
    write_roboflow_export,
)

pytestmark = pytest.mark.slow
FAST = ["--epochs", "1", "--image-size", "64", "--backbone", "resnet18", "--weights", "none"]
WRITERS = {
    "cvat": (write_cvat_export, "devkit"),
    "labelimg": (write_labelimg_export, "flat"),
    "roboflow": (write_roboflow_export, "roboflow"),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own-checkout")
    copy_checkout(root)
    return root


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in MAKE_ENVIRONMENT}


def run(project: Path, *command: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, cwd=project, env={**environment(), "PYTHONPATH": str(project)},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def init_profile(project: Path, export: Path, name: str, *options: str) -> str:
    command = [sys.executable, "-m", "vocproj", "init-profile", str(export), "--name", name]
    return run(project, *command, *options).stdout


def make_report(project: Path, name: str) -> str:
    make = ["make", "--no-print-directory", "-o", ".venv/.installed", "report", f"PROFILE={name}"]
    return run(project, *make, timeout=900).stdout


def counts_in(truth: Truth, ids: list[str], classes: tuple[str, ...]) -> dict[str, int]:
    """Images with each class present among `ids`, from the generator's own plan."""
    planned = {i: p for split in truth.splits.values() for i, p in split.items()}
    return {
        name: sum(1 for i in ids if i in planned and (name, False) in planned[i].objects)
        for name in classes
    }


def report_counts(report: str, split: str) -> dict[str, int]:
    """The class-count table of REPORT.md section 1: {class: images in `split`}."""
    table = report.split("| class |")[1].split("\n\n")[0]
    header = [cell.strip() for cell in ("| class |" + table).splitlines()[0].strip("|").split("|")]
    column = header.index(f"{split} images (difficult only)")
    counts = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        counts[cells[0]] = int(cells[column].split()[0])
    return counts


@pytest.fixture(scope="module", params=sorted(WRITERS))
def studied(request, project: Path, tmp_path_factory: pytest.TempPathFactory):
    """An export of one layout, its profile written by init-profile, `make report` run on it."""
    tool = request.param
    write, layout = WRITERS[tool]
    export = tmp_path_factory.mktemp(f"export-{tool}")
    faults = Faults(images_without_xml=2, difficult=3)
    truth = write(export, 60, faults=faults)
    name = f"own-{tool}"
    printed = init_profile(project, export, name, *FAST)
    return tool, layout, truth, name, printed, make_report(project, name)


def test_init_profile_prints_what_it_found(studied):
    _, layout, truth, name, printed, _ = studied
    assert f"layout: {layout}" in printed
    assert f"classes ({len(truth.classes)}): " in printed
    assert "images without XML, left out (2):" in printed
    assert "difficult objects: 3" in printed
    for image in truth.images_without_xml:
        assert image.name in printed
    assert f"make report PROFILE={name}" in printed


def test_the_run_uses_the_exports_classes_everywhere(project: Path, studied):
    tool, layout, truth, name, _, made = studied
    assert f"make report PROFILE={name}: done in" in made
    profile = load_profile(project / "params" / f"{name}.yaml")
    classes = tuple(profile.settings.data.classes)
    expected = truth.classes if tool == "cvat" else tuple(sorted(truth.classes))
    assert classes == expected  # CVAT: labelmap.txt's order; otherwise sorted names
    record = json.loads((profile.run_dir / "run.json").read_text())
    assert tuple(record["classes"]) == classes and record["layout"] == layout
    metrics = json.loads((profile.report_dir / "metrics.json").read_text())
    assert tuple(metrics["classes"]) == classes and metrics["map"] is not None
    top50 = json.loads((profile.report_dir / "top50.json").read_text())
    assert sorted(top50) == sorted(classes)  # JSON keys are written sorted
    report = (profile.report_dir / "REPORT.md").read_text()
    assert f"Multi-label classification of {len(classes)} classes" in report
    assert f"**Classes:** {len(classes)}, the run's own classes" in report
    assert f"(lists in `{profile.splits_dir}`): {', '.join(classes)}." in report or (
        tool == "roboflow" and f"the run's own classes: {', '.join(classes)}." in report
    )
    assert f"means over the {len(classes)} classes" in report
    assert f"by a {len(classes)}-way layer" in report
    for split in (profile.settings.data.train_split, profile.settings.data.val_split):
        ids = _split_ids(profile, split, truth)
        assert report_counts(report, split) == counts_in(truth, ids, classes)


def _split_ids(profile, split: str, truth: Truth) -> list[str]:
    """A split's ids: the export's own list, or the one vocproj drew and wrote."""
    drawn = profile.splits_dir / f"{split}.txt"
    if drawn.is_file():
        return drawn.read_text().split()
    return sorted(truth.splits[split])


def test_the_browser_offers_the_exports_classes(project: Path, studied):
    _, _, _, name, _, _ = studied
    profile = load_profile(project / "params" / f"{name}.yaml")
    classes = list(profile.settings.data.classes)
    app = build_browser(profile)
    assert list(app.classes) == classes
    assert list(app.heatmap_class.options)[1:] == classes
    assert list(app.class_dropdown.options) == classes
    assert app.prediction is not None  # the example: the first class's top-1 val image
    assert app.chart.value  # the probability chart of all the classes


def test_a_checkpoint_of_other_classes_is_refused_naming_both(project: Path, studied):
    _, _, _, name, _, _ = studied
    path = project / "params" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    classes = raw["settings"]["data"]["classes"]
    raw["profile"] = f"{name}-renamed"
    raw["settings"]["data"]["classes"] = [*classes[1:], classes[0]]
    renamed = path.with_name(f"{name}-renamed.yaml")
    renamed.write_text(yaml.safe_dump(raw))
    runs = project / "runs"
    (runs / f"{name}-renamed").symlink_to(runs / name, target_is_directory=True)
    result = subprocess.run(
        [sys.executable, "-m", "vocproj", "evaluate", "--profile", str(renamed), "--no-progress"],
        cwd=project, env={**environment(), "PYTHONPATH": str(project)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"was trained for 5 classes [{', '.join(classes)}]" in result.stderr
    assert f"the run's data has 5 classes [{', '.join([*classes[1:], classes[0]])}]" in (
        result.stderr
    )


def test_init_profile_keeps_an_existing_profile(project: Path, tmp_path: Path):
    export = tmp_path / "export"
    write_labelimg_export(export, 12)
    target = project / "params" / "own-kept.yaml"
    target.write_text("# mine\n")
    result = subprocess.run(
        [sys.executable, "-m", "vocproj", "init-profile", str(export), "--name", "own-kept"],
        cwd=project, env={**environment(), "PYTHONPATH": str(project)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        result.returncode == 2 and "already exists" in result.stderr and "--force" in result.stderr
    )
    assert target.read_text() == "# mine\n"


# ---------------------------------------------------------------- real photos, relabelled


@pytest.fixture(scope="module")
def real_study(project: Path, real_voc: Path, tmp_path_factory: pytest.TempPathFactory):
    """200 real photos relabelled pet / person / vehicle, studied from ImageNet weights."""
    export = tmp_path_factory.mktemp("export-real")
    truth = write_relabelled_real_export(export, real_voc, RELABEL, n=200)
    options = ["--epochs", "2", "--image-size", "96"]
    printed = init_profile(project, export, "own-real", *options)
    return truth, printed, make_report(project, "own-real")


def test_real_photos_relabelled_learn_their_classes(project: Path, real_study):
    _, printed, _ = real_study
    assert "layout: flat" in printed and "classes (3): person, pet, vehicle" in printed
    profile = load_profile(project / "params" / "own-real.yaml")
    metrics = json.loads((profile.report_dir / "metrics.json").read_text())
    print("own-real metrics:", {k: metrics[k] for k in ("map", "ap", "n_positive")})
    assert metrics["classes"] == ["person", "pet", "vehicle"]
    assert metrics["map"] > 0.75, metrics["ap"]  # ImageNet features tell these apart


@needs_chromium
def test_make_browse_shows_the_relabelled_classes(
    project: Path,
    real_study,
    browser: Browser,
    tmp_path: Path,
):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    make = ["make", "--no-print-directory", "-o", ".venv/.installed", "browse",
            "PROFILE=own-real", f"BROWSE_PORT={port}"]  # fmt: skip
    env = {**environment(), "PYTHONPATH": str(project)}
    with (
        serving(make, url, tmp_path / "browse.log", "make browse", cwd=project, env=env),
        opened_page(browser, url, 1100, 1000) as page,
    ):
        page.wait_for_selector(".vocproj-predict-result span, .vocproj-predict-result p",
                               timeout=LOAD_TIMEOUT_MS)  # fmt: skip
        wait_for_image(page.locator(".vocproj-chart"))
        page.get_by_role("tab", name="View Top50 Result").click()
        options = page.locator(".vocproj-class select option").all_inner_texts()
        assert options == ["person", "pet", "vehicle"]
        page.locator(".vocproj-class select").select_option("vehicle")
        expect(page.locator(".vocproj-top50-result")).to_contain_text(
            re.compile(r"Confidence for vehicle: \d\.\d{3}")
        )
        wait_for_image(page.locator(".vocproj-top50-image"))
        page.locator(".widget-tab").first.screenshot(path=tmp_path / "own_real_top50.png")
        assert "Traceback" not in page.content()
