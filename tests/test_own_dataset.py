"""Your own dataset: an annotation tool's export → `init-profile` → the study → the browser, with
the export's own classes everywhere.

One export goes the whole way a user takes it, on the command line: real VOC photos of ../shared
relabelled to three classes (a labelImg folder), `python -m vocproj init-profile`, `make report`
in a temporary copy of the checkout (conftest's `copy_checkout`), trained from ImageNet weights,
then `make browse` in Chromium.

The three generated exports (CVAT's PASCAL VOC 1.1, a labelImg folder, Roboflow's Pascal VOC),
each of five made-up classes drawn as coloured shapes, take the same stages in this process:
`init_profile`, then what the notebooks of `make report` call (`prepare_data`, the split
summary, `train_phases`, `evaluate`), `write_report` as `vocproj report` does, and the browser.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
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

from vocproj.__main__ import main
from vocproj.config import Profile, load_profile
from vocproj.data.init_profile import ProfileChoices, init_profile
from vocproj.data.prepare import prepare_data
from vocproj.errors import ConfigError
from vocproj.evaluation.scoring import evaluate
from vocproj.reporting.browser import build_browser
from vocproj.reporting.explore import summarise_splits, write_dataset_summary
from vocproj.reporting.report import write_report
from vocproj.training.phases import train_phases

from conftest import copy_checkout, make, needs_chromium, without_make_environment
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
WRITERS = {
    "cvat": (write_cvat_export, "devkit"),
    "labelimg": (write_labelimg_export, "flat"),
    "roboflow": (write_roboflow_export, "roboflow"),
}
FAULTS = Faults(images_without_xml=2, difficult=3)


def counts_in(truth: Truth, ids: list[str], classes: tuple[str, ...]) -> dict[str, int]:
    """Images with each class present among `ids`, from the generator's own plan."""
    planned = {i: p for split in truth.splits.values() for i, p in split.items()}
    return {
        name: sum(1 for i in ids if i in planned and (name, False) in planned[i].objects)
        for name in classes
    }


def report_counts(report: str, split: str) -> dict[str, int]:
    """The class-count table of REPORT.md section 1: {class: images in `split`}."""
    for block in report.split("\n\n"):
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
                for line in block.strip().splitlines() if line.startswith("|")]  # fmt: skip
        if rows and rows[0][0] == "class":
            column = rows[0].index(f"{split} images (difficult only)")
            return {cells[0]: int(cells[column].split()[0]) for cells in rows[2:]}
    raise AssertionError("REPORT.md has no table of images per class")


def split_ids(profile: Profile, split: str, truth: Truth) -> list[str]:
    """A split's ids: the export's own list, or the one vocproj drew and wrote."""
    drawn = profile.splits_dir / f"{split}.txt"
    if drawn.is_file():
        return drawn.read_text().split()
    return sorted(truth.splits[split])


def assert_the_run_uses_its_classes(profile: Profile, truth: Truth, layout: str) -> None:
    """The profile's classes are those of the run's record, metrics.json, top50.json and every
    place of REPORT.md that names or counts them."""
    classes = tuple(profile.settings.data.classes)
    record = json.loads((profile.run_dir / "run.json").read_text())
    assert tuple(record["classes"]) == classes and record["layout"] == layout
    metrics = json.loads((profile.report_dir / "metrics.json").read_text())
    assert tuple(metrics["classes"]) == classes and metrics["map"] is not None
    top50 = json.loads((profile.report_dir / "top50.json").read_text())
    assert sorted(top50) == sorted(classes)  # JSON keys are written sorted
    report = (profile.report_dir / "REPORT.md").read_text()
    assert f"Multi-label classification of {len(classes)} classes" in report
    assert f"**Classes:** {len(classes)}, the run's own classes" in report
    if profile.splits_dir.is_dir():  # vocproj drew the split and says where its lists are
        assert f"(lists in `{profile.splits_dir}`): {', '.join(classes)}." in report
    else:
        assert f"the run's own classes: {', '.join(classes)}." in report
    assert f"means over the {len(classes)} classes" in report
    assert f"by a {len(classes)}-way layer" in report
    for split in (profile.settings.data.train_split, profile.settings.data.val_split):
        ids = split_ids(profile, split, truth)
        assert report_counts(report, split) == counts_in(truth, ids, classes)


# ---------------------------------------------------------------- each layout, in this process


@dataclass(frozen=True)
class Study:
    tool: str
    layout: str
    truth: Truth
    params: Path  # the profile init_profile wrote
    profile: Profile
    found: str  # what init_profile found, as `init-profile` prints it


def run_study(profile: Profile) -> None:
    """The stages `make report` runs, called as its notebooks and `vocproj report` call them:
    00's data and split summary, 01-03's training, 04's evaluation, then REPORT.md."""
    record = prepare_data(profile, progress=False)
    write_dataset_summary(profile, summarise_splits(profile, record))
    train_phases(profile, progress=False)
    evaluate(profile, progress=False)
    write_report(profile)


@pytest.fixture(scope="module", params=sorted(WRITERS))
def studied(request, tmp_path_factory: pytest.TempPathFactory) -> Study:
    """An export of one layout, its profile written by init_profile (1 epoch per phase, 64 px,
    ResNet18 from scratch) into a project folder of its own, and the study run on it."""
    tool = request.param
    write, layout = WRITERS[tool]
    folder = tmp_path_factory.mktemp(f"own-{tool}")
    truth = write(folder / "export", 60, faults=FAULTS)
    choices = ProfileChoices(
        name=f"own-{tool}", epochs=1, image_size=64, backbone="resnet18", weights="none"
    )
    path, found = init_profile(folder / "export", choices, params_dir=folder / "params")
    profile = load_profile(path)
    run_study(profile)
    return Study(tool, layout, truth, path, profile, found)


def test_init_profile_says_what_it_found(studied: Study):
    assert f"layout: {studied.layout}" in studied.found
    assert f"classes ({len(studied.truth.classes)}): " in studied.found
    assert "images without XML, left out (2):" in studied.found
    assert "difficult objects: 3" in studied.found
    for image in studied.truth.images_without_xml:
        assert image.name in studied.found


def test_the_run_uses_the_exports_classes_everywhere(studied: Study):
    truth = studied.truth
    expected = truth.classes if studied.tool == "cvat" else tuple(sorted(truth.classes))
    assert tuple(studied.profile.settings.data.classes) == expected  # CVAT: labelmap.txt's order
    assert_the_run_uses_its_classes(studied.profile, truth, studied.layout)


def test_the_browser_offers_the_exports_classes(studied: Study):
    classes = list(studied.profile.settings.data.classes)
    app = build_browser(studied.profile)
    assert list(app.inputs.classes) == classes
    assert list(app.predict_tab.heatmap_class.options)[1:] == classes
    assert list(app.top50_tab.class_dropdown.options) == classes
    assert app.predict_tab.prediction is not None  # the example: the first class's top-1 val image
    assert app.predict_tab.chart.value  # the probability chart of all the classes


def test_a_checkpoint_of_other_classes_is_refused_naming_both(studied: Study, capsys):
    profile = studied.profile
    raw = yaml.safe_load(studied.params.read_text())
    classes = raw["settings"]["data"]["classes"]
    raw["profile"] = f"{profile.profile}-renamed"
    raw["settings"]["data"]["classes"] = [*classes[1:], classes[0]]
    renamed = studied.params.with_name(f"{raw['profile']}.yaml")
    renamed.write_text(yaml.safe_dump(raw))
    profile.run_dir.with_name(raw["profile"]).symlink_to(profile.run_dir, target_is_directory=True)
    assert main(["evaluate", "--profile", str(renamed), "--no-progress"]) == 2
    stderr = capsys.readouterr().err
    assert f"was trained for 5 classes [{', '.join(classes)}]" in stderr
    assert f"the run's data has 5 classes [{', '.join([*classes[1:], classes[0]])}]" in stderr


def test_init_profile_keeps_an_existing_profile(tmp_path: Path):
    export = tmp_path / "export"
    write_labelimg_export(export, 12)
    target = tmp_path / "params" / "own-kept.yaml"
    target.parent.mkdir()
    target.write_text("# mine\n")
    with pytest.raises(ConfigError, match=r"own-kept\.yaml already exists.*--force"):
        init_profile(export, ProfileChoices(name="own-kept"), params_dir=target.parent)
    assert target.read_text() == "# mine\n"


# ---------------------------------------------------------------- real photos, end to end


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own-checkout")
    copy_checkout(root)
    return root


def environment(project: Path) -> dict[str, str]:
    """The checkout copy's vocproj (and its params/) for `python -m vocproj` and make."""
    return {**without_make_environment(), "PYTHONPATH": str(project)}


@pytest.fixture(scope="module")
def real_study(project: Path, real_voc: Path, tmp_path_factory: pytest.TempPathFactory):
    """200 real photos relabelled pet / person / vehicle: `init-profile` on the command line,
    then `make report`, from ImageNet weights (EfficientNet-Lite0, 2 epochs per phase, 96 px)."""
    export = tmp_path_factory.mktemp("export-real")
    truth = write_relabelled_real_export(export, real_voc, RELABEL, n=200)
    command = [sys.executable, "-m", "vocproj", "init-profile", str(export), "--name", "own-real",
               "--epochs", "2", "--image-size", "96"]  # fmt: skip
    printed = subprocess.run(
        command, cwd=project, env=environment(project), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stdout[-4000:] + printed.stderr[-4000:]
    made = make(project, "report", profile="own-real")
    assert made.returncode == 0, made.stdout[-4000:] + made.stderr[-4000:]
    return truth, printed.stdout, made.stdout


def test_real_photos_relabelled_learn_their_classes(project: Path, real_study):
    _, printed, made = real_study
    assert "layout: flat" in printed and "classes (3): person, pet, vehicle" in printed
    assert "make report PROFILE=own-real" in printed  # the next step, as the command says it
    assert "make report PROFILE=own-real: done in" in made
    profile = load_profile(project / "params" / "own-real.yaml")
    metrics = json.loads((profile.report_dir / "metrics.json").read_text())
    print("own-real metrics:", {k: metrics[k] for k in ("map", "ap", "n_positive")})
    assert metrics["classes"] == ["person", "pet", "vehicle"]
    assert metrics["map"] > 0.75, metrics["ap"]  # ImageNet features tell these apart


def test_make_report_uses_the_real_exports_classes_everywhere(project: Path, real_study):
    truth, _, _ = real_study
    profile = load_profile(project / "params" / "own-real.yaml")
    assert tuple(profile.settings.data.classes) == tuple(sorted(truth.classes))
    assert_the_run_uses_its_classes(profile, truth, "flat")


@needs_chromium
def test_make_browse_shows_the_relabelled_classes(
    project: Path,
    real_study,
    browser: Browser,
    tmp_path: Path,
):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    make_browse = ["make", "--no-print-directory", "-o", ".venv/.installed", "browse",
                   "PROFILE=own-real", f"BROWSE_PORT={port}"]  # fmt: skip
    with (
        serving(make_browse, url, tmp_path / "browse.log", "make browse", cwd=project,
                env=environment(project)),
        opened_page(browser, url, 1100, 1000) as page,
    ):  # fmt: skip
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
