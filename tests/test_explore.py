"""Data exploration helpers: split statistics, dataset.json, example and augmentation figures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vocproj.artifacts import DATASET_FILE
from vocproj.config import PARAMS_DIR, Profile, profile_from_mapping
from vocproj.data.voc import CLASSES, read_devkit_split, read_labels
from vocproj.errors import DatasetError
from vocproj.reporting import explore


@pytest.fixture(scope="module")
def splits(small_sample: Path) -> list[explore.SplitSummary]:
    return [
        explore.summarise_split(read_devkit_split(small_sample, split))
        for split in ("train", "val")
    ]


@pytest.fixture
def profile(tmp_path: Path, small_sample: Path) -> Profile:
    """The tiny profile on the shared sample data, writing its reports into tmp_path."""
    raw = yaml.safe_load((PARAMS_DIR / "tiny.yaml").read_text())
    raw["settings"]["data"]["root"] = str(small_sample.parents[1])
    raw["settings"]["reports_dir"] = str(tmp_path / "reports")
    return profile_from_mapping(raw)


def test_split_summary_agrees_with_the_devkit_labels(small_sample, splits):
    train = splits[0]
    ids, labels = read_labels(small_sample, "train")
    assert train.ids == ids and np.array_equal(train.labels, labels)
    assert np.all(train.objects >= (labels != 0).sum(axis=1))
    assert np.all(train.difficult_objects <= train.objects)
    with Image.open(small_sample / "JPEGImages" / f"{ids[5]}.jpg") as image:
        assert tuple(train.sizes[5]) == image.size


def test_dataset_json_counts_images_and_classes(profile, splits):
    summary = explore.write_dataset_summary(profile, splits)
    written = json.loads((profile.report_dir / DATASET_FILE).read_text())
    assert written == summary
    train = summary["train"]
    assert train["images"] == len(splits[0].ids) == 64 and summary["val"]["images"] == 40
    assert sum(train["images_per_class"].values()) == int((splits[0].labels == 1).sum())
    assert list(train["images_per_class"]) == list(CLASSES)
    assert train["width"][0] <= train["width"][1]


def table_rows(table: str) -> list[list[str]]:
    """The cells of each line of a markdown table, the header and alignment rows included."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in table.splitlines()]  # fmt: skip


def test_tables_list_every_split_and_class(splits):
    sizes = table_rows(explore.split_table(splits))
    assert [row[:2] for row in sizes[2:]] == [["train", "64"], ["val", "40"]]
    classes = table_rows(explore.class_table(splits))
    assert classes[0] == ["class", "train images", "val images"]
    assert [row[0] for row in classes[2:]] == list(CLASSES)


def test_label_text_marks_difficult_only_classes():
    row = np.zeros(len(CLASSES), dtype=np.int8)
    assert explore.label_text(row, CLASSES) == "(no object)"
    row[CLASSES.index("person")], row[CLASSES.index("dog")] = 1, -1
    assert explore.label_text(row, CLASSES) == "person, dog?"


def test_unreadable_image_names_the_file(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"broken\.jpg"):
        explore.image_size(broken)


@pytest.mark.parametrize("name", ["objects", "sizes", "examples"])
def test_data_figures_are_stable_files_with_titles(tmp_path, small_sample, splits, name):
    draw = {
        "objects": lambda path: explore.plot_objects_per_image(splits, path),
        "sizes": lambda path: explore.plot_image_sizes(splits, path),
        "examples": lambda path: explore.plot_examples(splits[0], path=path).figure,
    }[name]
    fig = draw(tmp_path / "first")
    draw(tmp_path / "second")
    assert (tmp_path / "first").read_bytes() == (tmp_path / "second").read_bytes()
    assert fig.axes[0].get_title() or fig.get_suptitle()


def test_a_grid_of_photos_is_a_jpeg_of_thumbnails_that_notebooks_show(tmp_path, splits):
    grid = explore.plot_examples(splits[0], path=tmp_path / "examples.jpg")
    written = (tmp_path / "examples.jpg").read_bytes()
    assert grid._repr_jpeg_() == grid.jpeg == written
    assert Image.open(io.BytesIO(written)).format == "JPEG"
    big = tmp_path / "big.jpg"
    Image.new("RGB", (640, 480), "red").save(big)
    assert explore.thumbnail(big).size == (explore.THUMBNAIL_PX, explore.THUMBNAIL_PX * 3 // 4)


def test_examples_show_ids_and_labels(small_sample, splits):
    fig = explore.plot_examples(splits[0], count=3).figure
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        f"{image_id}\n{explore.label_text(labels, CLASSES)}"
        for image_id, labels in zip(splits[0].ids[:3], splits[0].labels[:3], strict=False)
    ]


def test_augmentation_preview_is_seeded_and_leaves_the_global_rng_alone(tmp_path, profile):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    explore.plot_augmentation_preview(profile, 3, tmp_path / "first.png")
    assert torch.equal(torch.get_rng_state(), before)
    explore.plot_augmentation_preview(profile, 3, tmp_path / "second.png")
    assert (tmp_path / "first.png").read_bytes() == (tmp_path / "second.png").read_bytes()


def test_augmentation_preview_draws_only_where_the_phase_is_random(profile):
    size = profile.settings.train.image_size
    phase1 = explore.plot_augmentation_preview(profile, 1, count=2, draws=3).figure
    phase2 = explore.plot_augmentation_preview(profile, 2, count=2, draws=3).figure
    assert len(phase1.axes) == 2 * 2 and len(phase2.axes) == 2 * 4
    shown = phase2.axes[1].get_images()[0].get_array()
    assert shown.shape == (size, size, 3)
    assert phase2.axes[1].get_title() == "rotate #1"


def test_history_table_filters_one_phase():
    row = {"preset": "rotate", "train_loss": 0.5, "val_loss": 0.25, "val_map": 0.125,
           "seconds": 3.0, "train_images_per_second": 10.0}  # fmt: skip
    history = [{"phase": 1, "epoch": 1, **row}, {"phase": 2, "epoch": 1, **row}]
    rows = table_rows(explore.history_table(history, phase=2))
    assert rows[2:] == [["2", "1", "rotate", "0.5000", "0.2500", "0.1250", "3.0", "10.0"]]
    assert len(explore.history_table(history).splitlines()) == 4
