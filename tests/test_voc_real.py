"""The devkit readers against the real VOC2007 files in ../shared (not data vocproj wrote)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vocproj.data.voc import CLASSES, read_labels, read_split_ids
from vocproj.errors import DatasetError

SPLITS = ("train", "val", "trainval")


def devkit_column(voc: Path, name: str, split: str, ids: list[str]) -> np.ndarray:
    """A class's column straight from the official file, in the devkit's own values."""
    flags = dict(line.split() for line in (voc / "ImageSets/Main" / f"{name}_{split}.txt").open())
    return np.array([int(flags[i]) for i in ids])


@pytest.mark.parametrize("split", SPLITS)
def test_every_label_of_the_xml_matches_the_official_class_files(real_voc: Path, split: str):
    ids, labels = read_labels(real_voc, split)  # also verifies the class files itself
    assert len(ids) == {"train": 1000, "val": 1000, "trainval": 2000}[split]
    for c, name in enumerate(CLASSES):
        devkit = devkit_column(real_voc, name, split, ids)
        # the devkit writes 1 present, -1 absent, 0 difficult only; vocproj 1 / 0 / -1
        np.testing.assert_array_equal(labels[:, c] == 1, devkit == 1, err_msg=name)
        np.testing.assert_array_equal(labels[:, c] == 0, devkit == -1, err_msg=name)
        np.testing.assert_array_equal(labels[:, c] == -1, devkit == 0, err_msg=name)


def test_real_labels_have_the_counts_the_readme_gives(real_voc: Path):
    _, labels = read_labels(real_voc, "trainval")
    positives = dict(zip(CLASSES, (labels == 1).sum(0).tolist(), strict=True))
    assert (labels.shape, positives["person"], positives["sheep"]) == ((2000, 20), 800, 44)
    assert min(positives.values()) == 44 and (labels == -1).any()


def test_image_000018_is_a_dog_and_no_aeroplane(real_voc: Path):
    ids, labels = read_labels(real_voc, "train" if "000018" in read_split_ids(real_voc, "train")
                              else "val")  # fmt: skip
    row = labels[ids.index("000018")]
    assert [CLASSES[c] for c in np.flatnonzero(row == 1)] == ["dog"]


def test_a_wrong_class_file_beside_real_xml_gives_the_clear_error(real_voc: Path, tmp_path: Path):
    voc = tmp_path / "VOC2007"
    shutil.copytree(real_voc / "Annotations", voc / "Annotations")
    (voc / "JPEGImages").mkdir()
    shutil.copytree(real_voc / "ImageSets", voc / "ImageSets")
    cat_file = voc / "ImageSets/Main/cat_val.txt"
    lines = cat_file.read_text().splitlines()
    first_cat = next(i for i, line in enumerate(lines) if line.split()[1] == "1")
    image_id = lines[first_cat].split()[0]
    lines[first_cat] = f"{image_id} -1"  # the devkit's "absent" for an image with a cat
    cat_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as caught:
        read_labels(voc, "val")
    message = str(caught.value)
    assert f"image {image_id}, class cat: -1 (absent) in the class file, 1 (present)" in message
    assert "cat_val.txt" in message and f"{image_id}.xml" in message
