"""The synthetic sample dataset: VOC2012 layout, labels that match the XML, VOC-like content."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vocproj.data.sample import (
    DEFAULT_N_TRAIN,
    DEFAULT_N_VAL,
    MANIFEST_NAME,
    PlannedObject,
    _compose,
    sample_manifest,
    write_sample_dataset,
)
from vocproj.data.voc import CLASSES
from vocproj.errors import ConfigError, DatasetError

SPLITS = ("train", "val", "trainval")
ID_PATTERN = re.compile(r"20(0[7-9]|1[0-2])_\d{6}")
CLASS_LINE = re.compile(r"(20\d\d_\d{6}) (-1| 0| 1)")


@dataclass(frozen=True)
class Obj:
    name: str
    difficult: bool
    truncated: bool
    box: tuple[float, float, float, float]
    element: ET.Element


@dataclass(frozen=True)
class Annotation:
    width: int
    height: int
    depth: int
    objects: tuple[Obj, ...]


def parse_annotation(path: Path) -> Annotation:
    root = ET.parse(path).getroot()
    objects = []
    for element in root.findall("object"):
        box = element.find("bndbox")
        assert box is not None
        coords = tuple(float(box.findtext(tag, "")) for tag in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(
            Obj(
                element.findtext("name", ""),
                element.findtext("difficult") == "1",
                element.findtext("truncated") == "1",
                coords,  # type: ignore[arg-type]
                element,
            )
        )
    return Annotation(
        int(root.findtext("size/width", "")),
        int(root.findtext("size/height", "")),
        int(root.findtext("size/depth", "")),
        tuple(objects),
    )


def split_ids(voc: Path, split: str) -> list[str]:
    return (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


def parse_split(voc: Path, split: str) -> dict[str, Annotation]:
    return {i: parse_annotation(voc / "Annotations" / f"{i}.xml") for i in split_ids(voc, split)}


def flags_from_xml(annotation: Annotation) -> dict[str, int]:
    """The devkit's per-class file values: 1 present, -1 absent, 0 only difficult objects."""
    flags = dict.fromkeys(CLASSES, -1)
    for obj in annotation.objects:
        if not obj.difficult:
            flags[obj.name] = 1
        elif flags[obj.name] == -1:
            flags[obj.name] = 0
    return flags


def tree_bytes(voc: Path) -> dict[str, bytes]:
    return {str(p.relative_to(voc)): p.read_bytes() for p in sorted(voc.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def default_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset at its default size (what `make report` uses), generated once."""
    return write_sample_dataset(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def annotations(default_voc: Path) -> dict[str, dict[str, Annotation]]:
    """split -> image id -> parsed XML, for train and val."""
    return {split: parse_split(default_voc, split) for split in ("train", "val")}


def presence(annotations: dict[str, Annotation]) -> dict[str, set[str]]:
    """class -> ids of images with at least one non-difficult object of it."""
    present: dict[str, set[str]] = {name: set() for name in CLASSES}
    for image_id, annotation in annotations.items():
        for name, flag in flags_from_xml(annotation).items():
            if flag == 1:
                present[name].add(image_id)
    return present


# --- layout ---------------------------------------------------------------------------------


def test_layout_matches_the_voc2012_devkit(default_voc: Path) -> None:
    assert default_voc.parts[-2:] == ("VOCdevkit", "VOC2012")
    train, val = split_ids(default_voc, "train"), split_ids(default_voc, "val")
    assert len(train) == DEFAULT_N_TRAIN and len(val) == DEFAULT_N_VAL
    assert not set(train) & set(val)
    assert split_ids(default_voc, "trainval") == sorted(train + val)
    jpegs = {p.stem for p in (default_voc / "JPEGImages").iterdir()}
    xmls = {p.stem for p in (default_voc / "Annotations").iterdir()}
    assert jpegs == xmls == set(train + val)
    assert all(ID_PATTERN.fullmatch(image_id) for image_id in train + val)
    main = default_voc / "ImageSets" / "Main"
    for split in SPLITS:
        text = (main / f"{split}.txt").read_text()
        assert text.endswith("\n") and text.split() == sorted(text.split())
        for name in CLASSES:
            lines = (main / f"{name}_{split}.txt").read_text()
            assert lines.endswith("\n")
            matches = [CLASS_LINE.fullmatch(line) for line in lines.splitlines()]
            assert all(matches), f"{name}_{split}.txt has a line not in VOC's format"
            assert [m.group(1) for m in matches if m] == text.split()
    assert sample_manifest(default_voc) == {
        "generator": "vocproj.data.sample",
        "version": 2,
        "seed": 0,
        "n_train": DEFAULT_N_TRAIN,
        "n_val": DEFAULT_N_VAL,
    }


def test_annotations_use_voc_elements(default_voc: Path, annotations) -> None:
    image_id = split_ids(default_voc, "train")[0]
    root = ET.parse(default_voc / "Annotations" / f"{image_id}.xml").getroot()
    assert root.findtext("folder") == "VOC2012"
    assert root.findtext("filename") == f"{image_id}.jpg"
    assert root.findtext("source/database") == f"The VOC{image_id[:4]} Database"
    assert root.findtext("segmented") == "0"
    for obj in root.findall("object"):
        assert obj.findtext("pose") in {"Unspecified", "Left", "Right", "Frontal"}
        for tag in ("truncated", "occluded", "difficult"):
            assert obj.findtext(tag) in {"0", "1"}
    objects = [obj for split in annotations.values() for a in split.values() for obj in a.objects]
    parts = [p for obj in objects for p in obj.element.findall("part")]
    assert {p.findtext("name") for p in parts} == {"head", "hand", "foot"}
    assert all(obj.name == "person" for obj in objects if obj.element.find("part") is not None)
    actions = [obj.element.find("actions") for obj in objects]
    chosen = [sum(int(a.text or 0) for a in acts) for acts in actions if acts is not None]
    assert chosen and set(chosen) == {1}
    decimals = [obj for obj in objects if any(v != int(v) for v in obj.box)]
    assert decimals, "no file exercises decimal coordinates"
    assert {obj.element.findtext("pose") for obj in objects} >= {"Left", "Right"}
    assert any(obj.element.findtext("occluded") == "1" for obj in objects)


def test_class_files_agree_with_the_xml(default_voc: Path, annotations) -> None:
    everything = {**annotations["train"], **annotations["val"]}
    main = default_voc / "ImageSets" / "Main"
    for split in SPLITS:
        for name in CLASSES:
            for line in (main / f"{name}_{split}.txt").read_text().splitlines():
                image_id, flag = line.split()
                assert int(flag) == flags_from_xml(everything[image_id])[name], (name, image_id)


def test_difficult_only_objects_give_devkit_zeros(default_voc: Path, annotations) -> None:
    objects = [obj for split in annotations.values() for a in split.values() for obj in a.objects]
    assert 0.04 <= sum(obj.difficult for obj in objects) / len(objects) <= 0.12
    lines = [
        line
        for name in CLASSES
        for line in (default_voc / "ImageSets/Main" / f"{name}_trainval.txt")
        .read_text()
        .splitlines()
    ]
    assert sum(line.split()[1] == "0" for line in lines) >= 5
    for split in annotations.values():
        assert any(all(obj.difficult for obj in a.objects) for a in split.values())


# --- images ---------------------------------------------------------------------------------


def test_images_are_voc_sized_jpegs_some_grayscale(default_voc: Path, annotations) -> None:
    modes: Counter[str] = Counter()
    orientations = set()
    for split in annotations.values():
        for image_id, annotation in split.items():
            with Image.open(default_voc / "JPEGImages" / f"{image_id}.jpg") as image:
                assert image.format == "JPEG"
                assert image.size == (annotation.width, annotation.height)
                modes[image.mode] += 1
            assert annotation.depth == 3
            assert 150 <= max(image.size) <= 200 and min(image.size) >= 80
            orientations.add(image.width > image.height)
    assert orientations == {True, False}
    assert set(modes) == {"RGB", "L"}
    assert 0.01 <= modes["L"] / sum(modes.values()) <= 0.06


def test_boxes_lie_inside_their_images(annotations) -> None:
    for split in annotations.values():
        for annotation in split.values():
            for obj in annotation.objects:
                xmin, ymin, xmax, ymax = obj.box
                assert 1 <= xmin < xmax <= annotation.width
                assert 1 <= ymin < ymax <= annotation.height
                if obj.truncated:
                    at_border = 1 in (xmin, ymin)
                    assert at_border or xmax == annotation.width or ymax == annotation.height


def test_most_objects_are_a_quarter_to_two_thirds_of_the_image(annotations) -> None:
    sizes = [
        max(o.box[2] - o.box[0], o.box[3] - o.box[1]) / max(a.width, a.height)
        for split in annotations.values()
        for a in split.values()
        for o in a.objects
        if not o.difficult
    ]
    assert np.mean([0.22 <= s <= 0.7 for s in sizes]) >= 0.85


def drawn_opacity(obj: PlannedObject, seed: int) -> tuple[np.ndarray, list]:
    """Paint one object on black and on white with the same randomness; recover its opacity."""
    painted = []
    for level in (0.0, 255.0):
        canvas = np.full((150, 200, 3), level, dtype=np.float32)
        annotations = _compose(canvas, [obj], np.random.default_rng(seed))
        painted.append((canvas, annotations))
    (on_black, annotations), (on_white, same) = painted
    assert annotations == same
    return 1.0 - (on_white - on_black).max(axis=2) / 255.0, annotations


def check_box_frames_opaque_pixels(obj: PlannedObject, seed: int) -> tuple[bool, bool]:
    """Assert the annotated box is exactly the drawn object's extent; return whether the object
    is marked truncated and whether its pixels touch the image border."""
    opacity, (annotation,) = drawn_opacity(obj, seed)
    opaque = opacity >= 0.5
    rows, cols = np.flatnonzero(opaque.any(axis=1)), np.flatnonzero(opaque.any(axis=0))
    assert annotation.box == (cols[0] + 1, rows[0] + 1, cols[-1] + 1, rows[-1] + 1)
    at_border = rows[0] == 0 or cols[0] == 0 or rows[-1] == 149 or cols[-1] == 199
    return annotation.truncated, at_border


@pytest.mark.parametrize("name", CLASSES)
def test_boxes_frame_the_drawn_pixels(name: str) -> None:
    for seed in range(4):
        role = "main" if seed % 2 else "companion"
        check_box_frames_opaque_pixels(PlannedObject(name, role), seed)


def test_truncated_objects_are_cut_by_the_border() -> None:
    outcomes = [
        check_box_frames_opaque_pixels(PlannedObject(name, "companion"), seed)
        for name in CLASSES
        for seed in range(10)
    ]
    truncated = [at_border for is_truncated, at_border in outcomes if is_truncated]
    assert len(truncated) >= 5 and all(truncated)


# --- class statistics -------------------------------------------------------------------------


def test_every_class_is_in_both_splits(annotations) -> None:
    for split, images in annotations.items():
        counts = {name: len(ids) for name, ids in presence(images).items()}
        assert min(counts.values()) >= 8, (split, counts)


def test_person_is_by_far_the_most_common_class(annotations) -> None:
    for images in annotations.values():
        counts = {name: len(ids) for name, ids in presence(images).items()}
        runner_up = max(count for name, count in counts.items() if name != "person")
        assert counts["person"] >= 2 * runner_up
        assert 0.3 <= counts["person"] / len(images) <= 0.5


def test_chairs_go_with_dining_tables(annotations) -> None:
    images = {**annotations["train"], **annotations["val"]}
    present = presence(images)
    n = len(images)
    together = len(present["chair"] & present["diningtable"]) / n
    independent = len(present["chair"]) / n * len(present["diningtable"]) / n
    assert together > 2 * independent
    riders = present["person"] & (present["horse"] | present["bicycle"] | present["motorbike"])
    vehicles = present["horse"] | present["bicycle"] | present["motorbike"]
    assert len(riders) / len(vehicles) > len(present["person"]) / n


# --- determinism and reuse --------------------------------------------------------------------


def test_same_arguments_give_byte_identical_trees(tmp_path: Path) -> None:
    first = write_sample_dataset(tmp_path / "a", seed=3, n_train=24, n_val=16)
    second = write_sample_dataset(tmp_path / "b", seed=3, n_train=24, n_val=16)
    other = write_sample_dataset(tmp_path / "c", seed=4, n_train=24, n_val=16)
    assert tree_bytes(first) == tree_bytes(second)
    assert tree_bytes(first).keys() != tree_bytes(other).keys()


def test_second_call_reuses_the_tree_without_rewriting(tmp_path: Path) -> None:
    started = time.perf_counter()
    voc = write_sample_dataset(tmp_path, n_train=40, n_val=20)
    first_call = time.perf_counter() - started
    stamps = {p: p.stat().st_mtime_ns for p in voc.rglob("*")}
    started = time.perf_counter()
    assert write_sample_dataset(tmp_path, n_train=40, n_val=20) == voc
    assert time.perf_counter() - started < first_call / 3
    assert {p: p.stat().st_mtime_ns for p in voc.rglob("*")} == stamps


def test_other_arguments_replace_the_tree(tmp_path: Path) -> None:
    write_sample_dataset(tmp_path, seed=0, n_train=20, n_val=20)
    voc = write_sample_dataset(tmp_path, seed=1, n_train=30, n_val=20)
    manifest = sample_manifest(voc)
    assert manifest is not None and (manifest["seed"], manifest["n_train"]) == (1, 30)
    assert len(list((voc / "JPEGImages").iterdir())) == 50
    assert tree_bytes(voc) == tree_bytes(
        write_sample_dataset(tmp_path / "fresh", seed=1, n_train=30, n_val=20)
    )
    assert [p.name for p in voc.parent.iterdir()] == ["VOC2012"]


def test_an_interrupted_tree_is_replaced(tmp_path: Path) -> None:
    voc = write_sample_dataset(tmp_path, n_train=20, n_val=20)
    expected = tree_bytes(voc)
    (voc / MANIFEST_NAME).unlink()
    for jpeg in sorted((voc / "JPEGImages").iterdir())[::2]:
        jpeg.unlink()
    leftover = voc.parent / ".VOC2012.partial-1234-abcd"
    (leftover / "JPEGImages").mkdir(parents=True)
    assert write_sample_dataset(tmp_path, n_train=20, n_val=20) == voc
    assert tree_bytes(voc) == expected
    assert not leftover.exists()


def test_a_tree_with_missing_files_is_regenerated(tmp_path: Path) -> None:
    voc = write_sample_dataset(tmp_path, n_train=20, n_val=20)
    expected = tree_bytes(voc)
    next((voc / "Annotations").iterdir()).unlink()
    write_sample_dataset(tmp_path, n_train=20, n_val=20)
    assert tree_bytes(voc) == expected


def test_a_folder_it_did_not_write_is_left_alone(tmp_path: Path) -> None:
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    (voc / "Annotations").mkdir(parents=True)
    precious = voc / "Annotations" / "2008_000008.xml"
    precious.write_text("<annotation/>")
    with pytest.raises(DatasetError, match="not generated by vocproj") as error:
        write_sample_dataset(tmp_path, n_train=5, n_val=5)
    assert str(voc) in str(error.value)
    assert precious.read_text() == "<annotation/>"


def test_an_unwritable_destination_is_a_dataset_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DatasetError, match="could not write the sample dataset"):
        write_sample_dataset(blocker, n_train=5, n_val=5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_train": 0}, "n_train must be at least 1"),
        ({"n_val": -3}, "n_val must be at least 1"),
        ({"seed": "7"}, "seed must be an integer"),
        ({"n_train": True}, "n_train must be an integer"),
        ({"n_val": 10**6}, "n_val must be at most"),
    ],
)
def test_bad_arguments_are_config_errors(tmp_path: Path, arguments: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        write_sample_dataset(tmp_path, **arguments)
    assert not (tmp_path / "VOCdevkit").exists()


def test_sample_manifest_reads_absent_and_corrupt_files(tmp_path: Path) -> None:
    assert sample_manifest(tmp_path) is None
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(DatasetError, match=MANIFEST_NAME):
        sample_manifest(tmp_path)


def test_small_datasets_keep_every_kind_of_label(tmp_path: Path) -> None:
    voc = write_sample_dataset(tmp_path, n_train=40, n_val=40)
    for split in ("train", "val"):
        images = parse_split(voc, split)
        assert any(all(o.difficult for o in a.objects) for a in images.values())
        assert sum(bool(ids) for ids in presence(images).values()) == len(CLASSES)
        modes = {Image.open(voc / "JPEGImages" / f"{i}.jpg").mode for i in images}
        assert modes == {"RGB", "L"}
