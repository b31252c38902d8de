"""REPORT.md and `make report`: the report's tables and text, then the pipeline end to end.

The end-to-end tests read the one `make report PROFILE=tiny` of the session (conftest's
`tiny_report`), run in a temporary copy of the checkout (the files git tracks or would track,
without reports/) whose .venv is a link to this checkout's, with `make -o .venv/.installed` so
that make never reinstalls the shared venv from the copy. They build on it in file order: what
it wrote, a rerun that does nothing, what make plans after an interrupted stage (`make -n`), a
partial rerun, what make plans without the runs folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from vocproj.artifacts import (
    COOCCURRENCE_FIGURE,
    ENVIRONMENT_FILE,
    EXAMPLES_FIGURE,
    IMAGE_SIZES_FIGURE,
    LABEL_FREQUENCY_FIGURE,
    LOSS_FIGURE,
    METRIC_FIGURES,
    MISTAKES_FIGURE,
    OBJECTS_PER_IMAGE_FIGURE,
    RELIABILITY_FIGURE,
    RELIABILITY_PER_CLASS_FIGURE,
    RunRecord,
    augmentation_figure,
    loss_figure,
)
from vocproj.config import PROJECT_DIR, Profile, load_profile, profile_from_mapping
from vocproj.data.voc import CLASSES
from vocproj.errors import VocprojError
from vocproj.images import IMAGENET
from vocproj.metrics.multilabel import Scores, compute_metrics
from vocproj.reporting import report
from vocproj.reporting.explore import MISTAKE_KINDS

from conftest import make

BOAT = CLASSES.index("boat")


@pytest.fixture(scope="module")
def metrics() -> dict:
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 20)) < 0.3).astype(np.int8)
    labels[rng.random((60, 20)) < 0.05] = -1
    labels[:, BOAT] = 0  # a class without positives: its AP is undefined
    probs = np.clip(0.3 * labels + 0.7 * rng.random((60, 20)), 0.0, 1.0)
    return compute_metrics(Scores([f"img{i:03d}" for i in range(60)], probs, labels, CLASSES))


def row_cells(text: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row that starts with `first_cell`."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starts with {first_cell!r}")


def assert_shows(shown: str, value: float | None, digits: int = 4) -> None:
    """`shown` is `value` rounded to `digits` decimals, or n/a where the value is undefined."""
    if value is None:
        assert shown == report.NOT_AVAILABLE
    else:
        assert shown.strip("*") == f"{value:.{digits}f}"


def assert_per_class_table(text: str, metrics: dict) -> None:
    """Every per-class row and the mean row show exactly the numbers of metrics.json."""
    at = metrics["at_threshold"]
    for name in CLASSES:
        cells = row_cells(text, name)
        assert cells[1] == str(metrics["n_positive"][name])
        assert_shows(cells[2], metrics["ap"][name])
        assert_shows(cells[3], metrics["precision_at_k"]["per_class"][name])
        assert_shows(cells[4], metrics["per_class_thresholds"][name], 2)
        for cell, key in zip(cells[5:], ("precision", "recall", "f1"), strict=True):
            assert_shows(cell, at["per_class"][name][key])
    mean = row_cells(text, "**mean**")
    assert_shows(mean[2], metrics["map"])
    assert_shows(mean[5], at["macro_precision_zero"])
    assert_shows(mean[7], at["macro_f1"])


# ---------------------------------------------------------------- formatting and tables


def test_numbers_have_fixed_decimals_and_undefined_ones_say_so():
    assert report.fmt(0.123456) == "0.1235"
    assert report.fmt(0.4, 2) == "0.40"
    assert report.fmt(None) == report.fmt(float("nan")) == "n/a"


def test_durations_read_naturally():
    assert report.format_seconds(12.34) == "12.3 s"
    assert report.format_seconds(125) == "2 min 05 s"
    assert report.format_seconds(7500) == "2 h 05 min"
    assert report.plural(1, "epoch") == "1 epoch" and report.plural(4, "epoch") == "4 epochs"


def test_markdown_table_aligns_numbers_right():
    assert report.markdown_table(["a", "b"], [["x", 1]]).splitlines() == [
        "| a   |   b |",
        "|:----|----:|",
        "| x   |   1 |",
    ]


def test_markdown_table_shows_cells_as_formatted():
    table = report.markdown_table(["a", "b"], [["1e3", "0.5000"], ["x", ""]], align="lr")
    assert row_cells(table, "1e3") == ["1e3", "0.5000"] and row_cells(table, "x") == ["x", ""]


def test_per_class_table_shows_the_metrics(metrics):
    table = report.per_class_table(metrics)
    assert_per_class_table(table, metrics)
    assert row_cells(table, "boat")[2] == "n/a"
    assert len(table.splitlines()) == 2 + len(CLASSES) + 1


def test_study_comparison_reads_the_sweep_at_the_study_threshold(metrics):
    index = metrics["thresholds"].index(0.4)
    table = report.study_comparison_table(metrics)
    cells = row_cells(table, "this run at the study's 0.40")
    assert_shows(cells[2], metrics["sweep"]["precision_zero"][index])
    assert_shows(cells[3], metrics["sweep"]["precision_skip"][index])
    assert row_cells(table, "the study (VOC 2012 val)")[2] == "0.8565"
    best = metrics["best_threshold_precision"]
    cells = row_cells(table, "this run, most precise threshold (zero convention)")
    assert cells[1] == f"{best['threshold']:.2f}"
    assert_shows(cells[2], best["precision"])
    assert report.sweep_at(metrics, 0.42) is None


def test_threshold_summary_states_the_choice_and_the_honest_estimate(metrics):
    text = report.threshold_summary(metrics)
    chosen = metrics["at_threshold"]
    assert f"Chosen threshold: {chosen['threshold']:.2f}" in text
    assert f"macro F1 {chosen['macro_f1']:.4f}" in text
    assert f"{metrics['cross_fitted']['global']['cross_fitted']:.4f}" in text
    assert "no class has a positive image" in report.threshold_summary({"at_threshold": None})


def test_phase_description_names_each_phase_augmentation():
    settings = load_profile("sample").settings
    first, second, third = (report.phase_description(settings, phase) for phase in (1, 2, 3))
    assert f"{settings.train.phases[0].epochs} epochs" in first and "rotate by" not in first
    assert "±10°" in second and "112 px" in second
    assert "saturation by ±0.05" in third and "flip horizontally" in third


def test_differences_from_the_study_come_from_the_settings():
    assert report.differences_from_study(load_profile("voc2012").settings) == []
    settings = load_profile("sample").settings
    epochs = "/".join(str(phase.epochs) for phase in settings.train.phases)
    sample = report.differences_from_study(settings)
    assert len(sample) == 4 and f"{epochs} epochs per phase instead of 15/15/15" in sample


# ---------------------------------------------------------------- run files


def tmp_profile(tmp_path: Path) -> Profile:
    raw = load_profile("tiny").to_dict()
    raw["settings"].update(runs_dir=str(tmp_path / "runs"), reports_dir=str(tmp_path / "reports"))
    return profile_from_mapping(raw)


def executed_notebook(path: Path, heading: str, papermill: dict | None) -> None:
    metadata = {"papermill": papermill} if papermill else {}
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [f"# {heading}\n", "text"]}]
    path.write_text(json.dumps({"cells": cells, "metadata": metadata}))


def test_stage_timings_read_papermill_metadata(tmp_path):
    recorded = {"start_time": "2026-01-02T03:04:05.678+00:00", "duration": 61.5}
    executed_notebook(tmp_path / "01_b.ipynb", "01 · B", {**recorded, "duration": 2.0})
    executed_notebook(tmp_path / "00_a.ipynb", "00 · A", recorded)
    executed_notebook(tmp_path / "02_c.ipynb", "02 · C", None)  # not run by papermill
    assert report.stage_timings(tmp_path) == [
        report.StageTiming("00_a.ipynb", "00 · A", "2026-01-02 03:04:05", 61.5),
        report.StageTiming("01_b.ipynb", "01 · B", "2026-01-02 03:04:05", 2.0),
    ]


def test_environment_keeps_every_stage(tmp_path):
    profile = tmp_profile(tmp_path)
    first = report.record_environment(profile, "phase 1")
    report.record_environment(profile, "evaluation")
    recorded = json.loads((profile.report_dir / ENVIRONMENT_FILE).read_text())
    assert recorded == {"phase 1": first, "evaluation": first}
    assert first["device"] == "cpu" and first["precision"] == "float32" and first["cpu_cores"]
    assert first["precision_setting"] == "fp32" and isinstance(first["cpu_native_bf16"], bool)


def test_a_missing_run_file_is_named_with_the_step_that_writes_it(tmp_path):
    profile = tmp_profile(tmp_path)
    with pytest.raises(VocprojError, match=r"runs/tiny/history\.csv not found: run the training"):
        report.write_report(profile)
    (profile.run_dir).mkdir(parents=True)
    (profile.run_dir / "history.csv").write_text("phase\n")
    with pytest.raises(VocprojError, match=r"metrics\.json not found: run notebook 04 first"):
        report.write_report(profile)


def report_inputs(metrics: dict, **changes) -> report.ReportInputs:
    row = {"preset": "resize_crop", "train_loss": 0.5, "val_loss": 0.4, "val_map": 0.3,
           "seconds": 30.0, "train_images_per_second": 12.5}  # fmt: skip
    inputs = {
        "profile": "unit",
        "settings": load_profile("sample").settings,
        "metrics": metrics,
        "history": [{"phase": 1, "epoch": epoch, **row} for epoch in (1, 2)],
        "best": {"phase": 1, "epoch": 2, "best_val_loss": 0.4, "version": "9.9"},
        "dataset": {
            split: {
                "images": images,
                "images_per_class": dict.fromkeys(CLASSES, images // 20),
                "difficult_only_per_class": dict.fromkeys(CLASSES, 1),
            }
            for split, images in (("train", 400), ("val", 200))
        },
        "environment": None,
        "timings": [report.StageTiming("00_a.ipynb", "00 · A", "2026-01-02 03:04:05", 75.0)],
        "figures": frozenset({LOSS_FIGURE}),
        "record": RunRecord(
            profile="unit", classes=CLASSES, backbone="resnet18", normalisation=IMAGENET,
            image_size=112, source="sample", layout="devkit", data_dir="data/unit/VOC2012",
            splits={"train": 400, "val": 200},
        ),
    }  # fmt: skip
    return report.ReportInputs(**{**inputs, **changes})


def test_report_text_comes_from_its_inputs_only(metrics):
    text = report.render_report(report_inputs(metrics))
    assert text == report.render_report(report_inputs(metrics))
    assert f"**mAP: {metrics['map']:.4f}**" in text
    assert_per_class_table(text.split("## 5. Per-class results")[1], metrics)
    assert "(train: 400 images, val: 200 images)" in text
    assert row_cells(text, "bottle") == ["bottle", "20 (1)", "10 (1)"]
    assert row_cells(text, "1") == ["1", "resize_crop", "2", "0.5000", "0.4000", "0.3000",
                                    "1 min 00 s", "12.5"]  # fmt: skip
    assert "phase 1, epoch 2, validation loss 0.4000" in text
    assert row_cells(text, "00_a.ipynb")[3] == "1 min 15 s"
    assert "![training and validation loss](figures/loss.png)" in text
    assert f"*(figure {METRIC_FIGURES[0]} was not written by this run)*" in text
    assert "Hardware not recorded" in text and "vocproj 9.9 trained this run" in text


def test_report_without_optional_files_says_what_writes_them(metrics):
    text = report.render_report(report_inputs(metrics, dataset=None, timings=[]))
    assert "split sizes not recorded: notebook 00 writes them" in text
    assert "Stage wall times not recorded" in text


# ---------------------------------------------------------------- make report, end to end


def make_report(project: Path) -> subprocess.CompletedProcess[str]:
    result = make(project, "report")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.ipynb")}


def planned_stages(project: Path) -> set[str]:
    """The notebooks `make -n report` would execute (its plan, nothing run)."""
    planned = make(project, "-n", "report")
    assert planned.returncode == 0, planned.stderr
    return set(re.findall(r"notebooks/(\S+)\.ipynb runs/tiny/notebooks/\1\.ipynb", planned.stdout))


def planned_without(project: Path, path: Path) -> set[str]:
    """The notebooks `make -n report` would execute were `path` gone (it is put back after)."""
    saved = path.with_name("saved")
    shutil.copy2(path, saved)
    path.unlink()
    try:
        return planned_stages(project)
    finally:
        saved.replace(path)


@pytest.fixture
def project(report_checkout: Path) -> Path:
    return report_checkout


@pytest.fixture
def first_run(tiny_report: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    return tiny_report


@pytest.fixture
def reports(project: Path) -> Path:
    return project / "reports" / "tiny"


@pytest.mark.slow
def test_first_run_writes_every_artifact(project, first_run, reports):
    assert re.search(r"make report PROFILE=tiny: done in \d+ s", first_run.stdout)
    assert "pip install" not in first_run.stdout
    for notebook in sorted((project / "notebooks").glob("*.ipynb")):
        executed = json.loads((reports / "notebooks" / notebook.name).read_text())
        assert executed["metadata"]["papermill"]["exception"] is None, notebook.name
    assert list((project / "runs" / "tiny" / "notebooks").iterdir()) == []
    for name in ("REPORT.md", "metrics.json", "top50.json", "mistakes.json", "tta.json",
                 "calibration.json", "dataset.json", "environment.json"):  # fmt: skip
        assert (reports / name).is_file(), name
    figures = {
        LABEL_FREQUENCY_FIGURE, COOCCURRENCE_FIGURE, OBJECTS_PER_IMAGE_FIGURE,
        IMAGE_SIZES_FIGURE, EXAMPLES_FIGURE, LOSS_FIGURE, *METRIC_FIGURES, RELIABILITY_FIGURE,
        RELIABILITY_PER_CLASS_FIGURE, *(MISTAKES_FIGURE.format(kind=k) for k in MISTAKE_KINDS),
        *(name(phase) for phase in (1, 2, 3) for name in (augmentation_figure, loss_figure)),
    }  # fmt: skip
    assert figures <= {path.name for path in (reports / "figures").iterdir()}
    runs = project / "runs" / "tiny"
    for name in ("history.csv", "scores_val.npz", "phase1/last.pt", "phase3/best.pt"):
        assert (runs / name).is_file(), name


@pytest.mark.slow
def test_report_numbers_equal_the_run_files(first_run, reports):
    text = (reports / "REPORT.md").read_text()
    metrics = json.loads((reports / "metrics.json").read_text())
    assert_per_class_table(text.split("## 5. Per-class results")[1], metrics)
    headline = re.search(r"\*\*mAP \(VOC2010\+ AP, (\d+) validation images\): ([\d.]+)\*\*", text)
    assert headline and int(headline[1]) == metrics["n_images"] == 40
    assert_shows(headline[2], metrics["map"])
    chosen = re.search(r"Chosen threshold: ([\d.]+)\*\* .*?: macro F1 ([\d.]+)", text)
    assert chosen, text
    assert_shows(chosen[1], metrics["at_threshold"]["threshold"], 2)
    assert_shows(chosen[2], metrics["at_threshold"]["macro_f1"])
    index = metrics["thresholds"].index(0.4)
    at_study = row_cells(text, "this run at the study's 0.40")
    assert_shows(at_study[2], metrics["sweep"]["precision_zero"][index])
    assert_shows(at_study[3], metrics["sweep"]["precision_skip"][index])
    tta = json.loads((reports / "tta.json").read_text())
    for mode, row in tta["modes"].items():
        cells = row_cells(text, f"**{mode}**" if mode == "none" else mode)
        assert cells[1] == str(row["views"]) and cells[2] == report.fmt(row["map"])
    mistakes = json.loads((reports / "mistakes.json").read_text())["classes"]
    worst = mistakes["dog"]["false_positives"][0]
    section = text.split("## 7. The most confident mistakes")[1]
    assert f"{worst['id']} ({worst['score']:.2f})" in row_cells(section, "dog")[1]
    calibration = json.loads((reports / "calibration.json").read_text())
    ece = calibration["pooled"]["held_out"]["ece"]
    assert row_cells(text, "pooled ECE")[1:] == [report.fmt(ece[k]) for k in
                                                 ("before", "single", "per_class")]  # fmt: skip
    for link in re.findall(r"\]\((figures/[^)]+)\)", text):
        assert (reports / link).is_file(), link
    timings = report.stage_timings(reports / "notebooks")
    assert len(timings) == len(list((reports / "notebooks").glob("*.ipynb"))) >= 5
    assert row_cells(text, "02_phase2_rotation.ipynb")[3] == report.format_seconds(
        timings[2].seconds
    )


def headings(markdown: str) -> list[str]:
    """The report's section titles (`## 6. Test-time augmentation` → `Test-time augmentation`)."""
    return re.findall(r"^## (?:\d+\. )?(.+)$", markdown, flags=re.MULTILINE)


@pytest.mark.slow
def test_the_committed_sample_report_has_every_section_the_code_writes(reports):
    """reports/sample/ is the repository's face: regenerate it when report.py gains a section."""
    written = headings((reports / "REPORT.md").read_text())
    committed = headings((PROJECT_DIR / "reports" / "sample" / "REPORT.md").read_text())
    assert len(written) >= 10 and committed == written, (
        "reports/sample/REPORT.md is not what today's report.py writes: run `make report` and "
        "commit reports/sample/"
    )
    figures = set(re.findall(r"\(figures/([^)]+)\)", (reports / "REPORT.md").read_text()))
    assert figures <= {
        path.name for path in (PROJECT_DIR / "reports" / "sample" / "figures").iterdir()
    }


def test_no_tracked_report_file_is_over_1_mb():
    """Executed notebooks and photo grids stay small enough to keep in git."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "reports"], cwd=PROJECT_DIR, capture_output=True, text=True,
        check=True,
    ).stdout.split("\0")  # fmt: skip
    sizes = {name: (PROJECT_DIR / name).stat().st_size for name in listed if name}
    assert sizes and max(sizes.values()) <= 1_000_000, max(sizes.items(), key=lambda item: item[1])


@pytest.mark.slow
def test_a_second_run_redoes_nothing(project, first_run, reports):
    before = mtimes(reports) | {"REPORT.md": (reports / "REPORT.md").stat().st_mtime_ns}
    started = time.monotonic()
    second = make_report(project)
    assert time.monotonic() - started < 10
    assert "papermill" not in second.stdout and "vocproj report" not in second.stdout
    assert mtimes(reports) | {"REPORT.md": (reports / "REPORT.md").stat().st_mtime_ns} == before
    assert make(project, "-q", "reports/tiny/REPORT.md").returncode == 0


def rerun_stages(project: Path, reports: Path, change) -> set[str]:
    """Apply `change`, run make report again, return the notebooks it executed again."""
    before = mtimes(reports / "notebooks")
    report_written = (reports / "REPORT.md").stat().st_mtime_ns
    change()
    make_report(project)
    assert (reports / "REPORT.md").stat().st_mtime_ns > report_written
    after = mtimes(reports / "notebooks")
    return {Path(name).stem for name in after if after[name] != before.get(name)}


@pytest.mark.slow
def test_an_interrupted_stage_is_redone_with_the_later_ones_only(project, first_run, reports):
    # An interrupted stage 02 leaves no executed notebook in reports/ (papermill writes to runs/).
    # What make would redo is its plan: `make -n` decides as `make` does, and runs nothing.
    redone = planned_without(project, reports / "notebooks" / "02_phase2_rotation.ipynb")
    later = {p.stem for p in (project / "notebooks").glob("*.ipynb") if p.stem > "02"}
    assert redone == {"02_phase2_rotation"} | later
    assert planned_stages(project) == set(), "with it back, the run is complete again"


@pytest.mark.slow
def test_an_edited_notebook_redoes_only_its_stage(project, first_run, reports):
    notebook = project / "notebooks" / "00_data_exploration.ipynb"
    redone = rerun_stages(project, reports, lambda: os.utime(notebook))
    assert redone == {"00_data_exploration"}


@pytest.mark.slow
def test_without_the_runs_folder_every_stage_runs_again(project, first_run):
    # After a fresh clone or `make clean` the committed executed notebooks must not count as done.
    planned = planned_without(project, project / "runs" / "tiny" / "data.ready")
    assert planned == {notebook.stem for notebook in (project / "notebooks").glob("*.ipynb")}
