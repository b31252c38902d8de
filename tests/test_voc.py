"""The VOC data layer: labels exactly as the devkit defines them, the Dataset, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vocproj.data.voc import (
    CLASSES,
    loss_targets,
    open_devkit_split,
    parse_annotation,
    read_labels,
)
from vocproj.errors import DatasetError

from conftest import annotation_xml

CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# A real VOC2012 annotation (2008_000008-like) with parts, actions, decimal coordinates.
REAL_XML = """<annotation>
	<filename>2011_003276.jpg</filename>
	<folder>VOC2012</folder>
	<object>
		<name>person</name>
		<actions>
			<jumping>0</jumping><phoning>1</phoning><playinginstrument>0</playinginstrument>
			<reading>0</reading><ridingbike>0</ridingbike><ridinghorse>0</ridinghorse>
			<running>0</running><takingphoto>0</takingphoto><usingcomputer>0</usingcomputer>
			<walking>0</walking><other>0</other>
		</actions>
		<bndbox><xmax>303.5</xmax><xmin>131.2</xmin><ymax>375</ymax><ymin>48.7</ymin></bndbox>
		<difficult>0</difficult>
		<occluded>1</occluded>
		<part><name>head</name><bndbox><xmax>220</xmax><xmin>169</xmin><ymax>112</ymax>
		<ymin>52</ymin></bndbox></part>
		<part><name>hand</name><bndbox><xmax>264</xmax><xmin>238</xmin><ymax>146</ymax>
		<ymin>112</ymin></bndbox></part>
		<pose>Frontal</pose>
		<truncated>1</truncated>
	</object>
	<object>
		<name>chair</name>
		<bndbox><xmax>80</xmax><xmin>1</xmin><ymax>375</ymax><ymin>200</ymin></bndbox>
		<difficult>1</difficult>
		<occluded>1</occluded>
		<pose>Unspecified</pose>
		<truncated>1</truncated>
	</object>
	<object>
		<name>bottle</name>
		<bndbox><xmax>30</xmax><xmin>10</xmin><ymax>60</ymax><ymin>20</ymin></bndbox>
		<difficult>1</difficult>
	</object>
	<object>
		<name>bottle</name>
		<bndbox><xmax>60</xmax><xmin>40</xmin><ymax>60</ymax><ymin>20</ymin></bndbox>
		<difficult>0</difficult>
	</object>
	<segmented>0</segmented>
	<size><depth>3</depth><height>375</height><width>500</width></size>
	<source><annotation>PASCAL VOC2011</annotation><database>The VOC2011 Database</database>
	<image>flickr</image></source>
</annotation>
"""

BASIC = {
    "train": {
        "2008_000001": [("dog", False), ("person", False)],
        "2008_000002": [("cat", True)],  # only object is difficult
        "2008_000003": [("car", True), ("car", False), ("bus", True)],
    },
    "val": {"2008_000004": [("aeroplane", False)], "2008_000005": [("tvmonitor", True)]},
}


def row(**flags: int) -> np.ndarray:
    values = np.zeros(len(CLASSES), dtype=np.int8)
    for name, flag in flags.items():
        values[CLASS_INDEX[name]] = flag
    return values


def test_classes_are_the_official_twenty_in_order():
    assert len(CLASSES) == 20
    assert CLASSES[0] == "aeroplane" and CLASSES[14] == "person" and CLASSES[-1] == "tvmonitor"
    assert list(CLASSES) == sorted(CLASSES)


def test_real_voc_xml_with_parts_actions_and_decimal_boxes(tmp_path: Path):
    path = tmp_path / "2011_003276.xml"
    path.write_text(REAL_XML)
    objects = parse_annotation(path)
    assert objects == [("person", False), ("chair", True), ("bottle", True), ("bottle", False)]


def test_labels_are_one_difficult_only_minus_one_absent_zero(voc_tree):
    voc = voc_tree(BASIC)
    ids, labels = read_labels(voc, "train")
    assert ids == ["2008_000001", "2008_000002", "2008_000003"]
    assert labels.dtype == np.int8 and labels.shape == (3, 20)
    np.testing.assert_array_equal(labels[0], row(dog=1, person=1))
    np.testing.assert_array_equal(labels[1], row(cat=-1))
    np.testing.assert_array_equal(labels[2], row(car=1, bus=-1))


def test_works_with_only_the_split_file(voc_tree):
    voc = voc_tree(BASIC, class_files=False)
    assert sorted(p.name for p in (voc / "ImageSets" / "Main").iterdir()) == [
        "train.txt",
        "val.txt",
    ]
    ids, labels = read_labels(voc, "val")
    assert ids == ["2008_000004", "2008_000005"]
    np.testing.assert_array_equal(labels[1], row(tvmonitor=-1))


def test_disagreeing_class_file_reports_the_first_disagreement(voc_tree):
    voc = voc_tree(BASIC)
    cat_file = voc / "ImageSets" / "Main" / "cat_train.txt"
    cat_file.write_text(cat_file.read_text().replace("2008_000002  0", "2008_000002  1"))
    with pytest.raises(
        DatasetError,
        match=r"cat_train\.txt.*2008_000002.*1 \(present\) in the class file, 0 \(difficult only\)",
    ):
        read_labels(voc, "train")


def test_missing_root_and_split_name_the_path(tmp_path: Path, voc_tree):
    with pytest.raises(DatasetError, match=r"nowhere.*does not exist.*vocproj"):
        read_labels(tmp_path / "nowhere", "train")
    voc = voc_tree(BASIC)
    with pytest.raises(DatasetError, match=r"test\.txt is missing"):
        read_labels(voc, "test")


def test_id_without_xml(voc_tree):
    voc = voc_tree(BASIC)
    (voc / "Annotations" / "2008_000002.xml").unlink()
    with pytest.raises(DatasetError, match=r"2008_000002\.xml is missing.*remove its id"):
        read_labels(voc, "train")


def test_id_without_jpeg(voc_tree):
    voc = voc_tree(BASIC)
    (voc / "JPEGImages" / "2008_000003.jpg").unlink()
    with pytest.raises(DatasetError, match=r"2008_000003\.jpg is missing"):
        open_devkit_split(voc, "train")


def test_malformed_xml(voc_tree):
    voc = voc_tree(BASIC)
    (voc / "Annotations" / "2008_000001.xml").write_text("<annotation><object><name>dog")
    with pytest.raises(DatasetError, match=r"2008_000001\.xml is not well-formed XML"):
        read_labels(voc, "train")


def test_unknown_class_name(voc_tree):
    voc = voc_tree(BASIC)
    xml = annotation_xml("2008_000001", [("unicorn", False)])
    (voc / "Annotations" / "2008_000001.xml").write_text(xml)
    message = r"2008_000001\.xml names the class 'unicorn', which is not in the run's class list"
    with pytest.raises(DatasetError, match=message):
        read_labels(voc, "train", check_class_files=False)


def test_unreadable_image_names_the_file(voc_tree):
    voc = voc_tree(BASIC)
    (voc / "JPEGImages" / "2008_000001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dataset = open_devkit_split(voc, "train")
    with pytest.raises(DatasetError, match=r"2008_000001\.jpg cannot be read"):
        dataset[0]


def test_truncated_jpeg_is_unreadable(voc_tree):
    voc = voc_tree(BASIC)
    path = voc / "JPEGImages" / "2008_000001.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match="cannot be read"):
        open_devkit_split(voc, "train")[0]


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA"])
def test_dataset_opens_grayscale_cmyk_palette_as_rgb(voc_tree, mode: str):
    voc = voc_tree(BASIC)
    path = voc / "JPEGImages" / "2008_000001.jpg"
    image = Image.new("RGB", (64, 48), (200, 30, 30)).convert(mode)
    if mode in ("P", "RGBA"):
        image.save(path, format="PNG")  # a mislabelled PNG still opens by content
    else:
        image.save(path, format="JPEG")
    picture, target, mask, image_id = open_devkit_split(voc, "train")[0]
    assert picture.mode == "RGB" and picture.size == (64, 48)
    assert image_id == "2008_000001"
    assert target.dtype == torch.float32 and mask.shape == (20,)


def test_dataset_items_and_transform(voc_tree):
    voc = voc_tree(BASIC)
    dataset = open_devkit_split(voc, "train", transform=lambda im: torch.zeros(3, 8, 8))
    assert len(dataset) == 3
    image, target, mask, image_id = dataset[1]
    assert image.shape == (3, 8, 8) and image_id == "2008_000002"
    assert target[CLASS_INDEX["cat"]] == 0 and mask[CLASS_INDEX["cat"]] == 0
    assert mask.sum() == 19


def test_difficult_modes():
    labels = np.array([[1, -1, 0]], dtype=np.int8)
    target, mask = loss_targets(labels, "ignore")
    assert target.tolist() == [[1, 0, 0]] and mask.tolist() == [[1, 0, 1]]
    target, mask = loss_targets(labels, "positive")
    assert target.tolist() == [[1, 1, 0]] and mask.tolist() == [[1, 1, 1]]
    target, mask = loss_targets(labels, "negative")
    assert target.tolist() == [[1, 0, 0]] and mask.tolist() == [[1, 1, 1]]
    with pytest.raises(ValueError, match="difficult must be one of"):
        loss_targets(labels, "maybe")  # type: ignore[arg-type]


def test_dataset_difficult_option(voc_tree):
    voc = voc_tree(BASIC)
    dataset = open_devkit_split(voc, "train", difficult="positive")
    _, target, mask, _ = dataset[1]
    assert target[CLASS_INDEX["cat"]] == 1 and mask.sum() == 20
