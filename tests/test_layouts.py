"""Dataset layouts: exports as CVAT, labelImg and Roboflow write them, class lists, splits."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from vocproj.data.layouts import (
    SPLIT_RECORD,
    Export,
    class_warnings,
    dataset_classes,
    describe_export,
    detect_layout,
    labelled_split,
    resolve_classes,
    scan_export,
    train_val_splits,
)
from vocproj.errors import DatasetError

from exports import (
    CLASSES,
    ENTITY_BOMB,
    LABELMAP_ORDER,
    RELABEL,
    Faults,
    Truth,
    write_cvat_export,
    write_labelimg_export,
    write_relabelled_real_export,
    write_roboflow_export,
)

WRITERS = [write_cvat_export, write_labelimg_export, write_roboflow_export]


def assert_read_as_written(export: Export, truth: Truth) -> None:
    """Ids, image and XML paths, objects and labels per split equal the writer's plan."""
    assert set(export.splits) == set(truth.splits)
    for name, planned in truth.splits.items():
        found = {image.id: image for image in export.splits[name]}
        assert sorted(found) == sorted(planned)
        for image_id, plan in planned.items():
            assert found[image_id].image_path == plan.image
            assert found[image_id].xml_path == plan.xml
            assert found[image_id].objects == plan.objects
        labelled = labelled_split(name, export.images(name), truth.classes)
        expected = truth.labels(name, truth.classes)
        assert {
            i: tuple(row) for i, row in zip(labelled.ids, labelled.labels.tolist(), strict=True)
        } == expected
    assert export.images_without_xml == truth.images_without_xml
    assert export.xml_without_image == sorted(truth.xml_without_image)


def draw(
    export: Export, splits_dir: Path | None, classes=CLASSES, *, train_split="train",
    val_split="val", seed=0, negatives=False,
) -> dict:  # fmt: skip
    """The run's splits as a profile's defaults ask for them (val_fraction 0.2)."""
    return train_val_splits(
        export, train_split, val_split, 0.2, seed, splits_dir, classes,
        images_without_xml="negative" if negatives else "skip",
    )  # fmt: skip


def positives(images, classes=CLASSES) -> np.ndarray:
    return (labelled_split("x", images, classes).labels == 1).sum(axis=0)


# --- the three layouts ------------------------------------------------------------------------


def test_cvat_export_is_read_as_a_devkit_tree_with_its_labelmap(tmp_path: Path) -> None:
    truth = write_cvat_export(tmp_path / "cvat", 40, faults=Faults(difficult=3))
    assert detect_layout(tmp_path / "cvat") == "devkit"
    export = scan_export(tmp_path / "cvat")
    assert export.layout == "devkit" and list(export.splits) == ["default"]  # no class files
    assert_read_as_written(export, truth)
    suffixes = Counter(image.image_path.suffix for image in export.splits["default"])
    assert set(suffixes) == {".jpg", ".png", ".jpeg"}
    assert export.labelmap == LABELMAP_ORDER  # background left out, CVAT's order kept
    assert dataset_classes(export) == LABELMAP_ORDER
    assert export.difficult_objects == 3


def test_cvat_train_and_val_subsets_are_the_run_splits(tmp_path: Path) -> None:
    truth = write_cvat_export(tmp_path / "cvat", 40, subsets=("train", "val"))
    export = scan_export(tmp_path / "cvat")
    assert_read_as_written(export, truth)
    splits = draw(export, tmp_path / "splits", LABELMAP_ORDER)
    assert {name: [i.id for i in images] for name, images in splits.items()} == {
        name: sorted(planned) for name, planned in truth.splits.items()
    }
    assert not (tmp_path / "splits").exists()  # nothing drawn, nothing written


def test_devkit_tree_nested_in_vocdevkit_is_found(tmp_path: Path) -> None:
    truth = write_cvat_export(tmp_path / "VOCdevkit" / "VOC2012", 20)
    export = scan_export(tmp_path)
    assert export.root == tmp_path / "VOCdevkit" / "VOC2012" and export.folder == tmp_path
    assert_read_as_written(export, truth)


def test_devkit_tree_without_split_lists_is_one_pool(tmp_path: Path) -> None:
    truth = write_cvat_export(tmp_path / "cvat", 20, faults=Faults(images_without_xml=2))
    shutil.rmtree(tmp_path / "cvat" / "ImageSets")
    export = scan_export(tmp_path / "cvat")
    assert list(export.splits) == ["all"]
    assert sorted(i.id for i in export.splits["all"]) == sorted(truth.splits["default"])
    assert [i.id for i in export.unannotated["all"]] == ["unlabelled_00", "unlabelled_01"]


def test_labelimg_folder_follows_filename_and_takes_every_image_suffix(tmp_path: Path) -> None:
    truth = write_labelimg_export(tmp_path / "imgs", 48)
    assert detect_layout(tmp_path / "imgs") == "flat"
    export = scan_export(tmp_path / "imgs")
    assert_read_as_written(export, truth)
    found = {image.id: image for image in export.splits["all"]}
    assert found["img_000"].xml_path.name == "ann_000.xml"  # <filename> followed
    assert found["img_000"].image_path.name == "img_000.jpg"
    assert found["img_003"].image_path.name == "img_003.JPG"  # stale <filename>: the stem
    assert found["more/img_047"].image_path == tmp_path / "imgs" / "more" / "img_047.JPG"
    assert {i.image_path.suffix for i in found.values()} == {".jpg", ".jpeg", ".png", ".JPG"}
    assert export.labelmap is None
    assert dataset_classes(export) == CLASSES  # every <name>, sorted


def test_roboflow_export_has_its_split_folders(tmp_path: Path) -> None:
    truth = write_roboflow_export(tmp_path / "rf", 50)
    assert detect_layout(tmp_path / "rf") == "roboflow"
    export = scan_export(tmp_path / "rf")
    assert list(export.splits) == ["train", "valid", "test"]
    assert_read_as_written(export, truth)
    first = export.images("train")[0].id
    assert first.startswith("train/IMG_0000_jpg.rf.") and len(first.split(".rf.")[1]) == 32


def test_explicit_layout_that_does_not_fit_says_what_it_expected(tmp_path: Path) -> None:
    write_labelimg_export(tmp_path / "imgs", 12)
    with pytest.raises(DatasetError, match=r"Annotations.*is missing"):
        scan_export(tmp_path / "imgs", layout="devkit")
    with pytest.raises(DatasetError, match="train/, valid/, test/"):
        scan_export(tmp_path / "imgs", layout="roboflow")


# --- class lists -----------------------------------------------------------------------------


def test_class_settings(tmp_path: Path) -> None:
    write_labelimg_export(tmp_path / "imgs", 24)
    export = scan_export(tmp_path / "imgs")
    assert resolve_classes("dataset", export) == CLASSES
    listed = ["elderberry", "apple", "banana", "cherry", "date", "fig"]
    assert resolve_classes(listed, export) == tuple(listed)
    with pytest.raises(DatasetError, match=r"names the class 'apple'.*data\.classes"):
        resolve_classes("voc", export)


def test_a_listed_class_list_rejects_an_outside_name_naming_the_file(tmp_path: Path) -> None:
    truth = write_cvat_export(tmp_path / "cvat", 20, faults=Faults(unknown_class="fig"))
    export = scan_export(tmp_path / "cvat")
    (xml,) = truth.bad["unknown_class"]
    with pytest.raises(DatasetError, match=rf"{xml}.*'fig'.*apple, banana"):
        resolve_classes(list(CLASSES), export)
    with pytest.raises(DatasetError, match=rf"{xml}.*'fig'"):
        resolve_classes("dataset", export)  # labelmap.txt does not list fig either


# --- drawn splits ----------------------------------------------------------------------------


def test_drawn_split_is_stratified_deterministic_and_written(tmp_path: Path) -> None:
    write_labelimg_export(tmp_path / "imgs", 60, rare={"fig": 2})
    export = scan_export(tmp_path / "imgs")
    classes = (*CLASSES, "fig")
    splits = draw(export, tmp_path / "a", classes)
    train, val = splits["train"], splits["val"]
    assert sorted(i.id for i in train + val) == sorted(i.id for i in export.splits["all"])
    assert abs(len(val) / 60 - 0.2) <= 0.05
    assert (positives(train, classes) >= 1).all() and (positives(val, classes) >= 1).all()
    for name, images in splits.items():
        assert (tmp_path / "a" / f"{name}.txt").read_text().split() == [i.id for i in images]
    record = json.loads((tmp_path / "a" / SPLIT_RECORD).read_text())
    assert record["seed"] == 0 and record["val_fraction"] == 0.2
    assert record["images"] == {"train": len(train), "val": len(val)}
    assert record["positives"]["fig"] == {"train": 1, "val": 1}

    again = draw(scan_export(tmp_path / "imgs"), tmp_path / "b", classes)
    assert again == splits
    for name in ("train.txt", "val.txt", SPLIT_RECORD):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()}
    draw(export, tmp_path / "a", classes)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()} == stamps

    other = draw(export, tmp_path / "a", classes, seed=1)
    assert [i.id for i in other["val"]] != [i.id for i in val]
    assert (tmp_path / "a" / "val.txt").read_text().split() == [i.id for i in other["val"]]


def test_drawn_split_does_not_depend_on_file_order(tmp_path: Path) -> None:
    write_labelimg_export(tmp_path / "imgs", 40)
    export = scan_export(tmp_path / "imgs")
    shuffled = Export(
        export.folder, export.layout, export.root, {"all": export.splits["all"][::-1]},
        export.unannotated, export.xml_without_image,
    )  # fmt: skip
    assert draw(shuffled, tmp_path / "b") == draw(export, tmp_path / "a")


def test_roboflow_with_only_train_is_divided(tmp_path: Path) -> None:
    write_roboflow_export(tmp_path / "rf", 30, splits=("train",))
    splits = draw(scan_export(tmp_path / "rf"), tmp_path / "splits", val_split="valid")
    assert len(splits["train"]) + len(splits["valid"]) == 30
    assert (tmp_path / "splits" / "valid.txt").is_file()


def test_several_splits_but_not_the_named_two_is_an_error(tmp_path: Path) -> None:
    write_roboflow_export(tmp_path / "rf", 30)
    export = scan_export(tmp_path / "rf")
    with pytest.raises(DatasetError, match=r"train, valid, test.*data\.val_split \('val'\)"):
        draw(export, tmp_path / "splits")
    splits = draw(export, tmp_path / "splits", val_split="valid")
    assert [i.id for i in splits["valid"]] == [i.id for i in export.images("valid")]


def test_overlapping_named_splits_are_an_error(tmp_path: Path) -> None:
    write_cvat_export(tmp_path / "cvat", 20, subsets=("train", "val"))
    main = tmp_path / "cvat" / "ImageSets" / "Main"
    both = (main / "train.txt").read_text() + (main / "val.txt").read_text()
    (main / "trainval.txt").write_text(both)
    export = scan_export(tmp_path / "cvat")
    with pytest.raises(DatasetError, match="share 4 images"):
        draw(export, tmp_path / "splits", LABELMAP_ORDER, train_split="trainval")


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_images_without_xml_are_listed_and_optionally_negatives(tmp_path: Path, writer) -> None:
    truth = writer(tmp_path / "export", 30, faults=Faults(images_without_xml=3))
    export = scan_export(tmp_path / "export")
    assert export.images_without_xml == truth.images_without_xml
    (pool,) = truth.without_xml
    skipped = export.images(pool)
    assert not {i.image_path for i in skipped} & set(truth.images_without_xml)
    with_negatives = export.images(pool, negatives=True)
    assert len(with_negatives) == len(skipped) + 3
    labelled = labelled_split(pool, with_negatives, truth.classes)
    rows = dict(zip(labelled.ids, labelled.labels.tolist(), strict=True))
    for image_id in truth.without_xml[pool]:
        assert rows[image_id] == [0] * len(truth.classes)


def test_negatives_join_the_pool_before_the_split_is_drawn(tmp_path: Path) -> None:
    truth = write_labelimg_export(tmp_path / "imgs", 40, faults=Faults(images_without_xml=6))
    export = scan_export(tmp_path / "imgs")
    splits = draw(export, tmp_path / "splits", negatives=True)
    drawn = {i.id for images in splits.values() for i in images}
    assert drawn == set(truth.splits["all"]) | set(truth.without_xml["all"])
    val_negatives = {i.id for i in splits["val"]} & set(truth.without_xml["all"])
    assert 1 <= len(val_negatives) <= 2  # spread like any other image
    assert json.loads((tmp_path / "splits" / SPLIT_RECORD).read_text())["images_without_xml"] == (
        "negative"
    )


@pytest.mark.parametrize("writer", WRITERS)
def test_xml_without_image_is_listed_and_left_out(tmp_path: Path, writer) -> None:
    truth = writer(tmp_path / "export", 20, faults=Faults(xml_without_image=2))
    export = scan_export(tmp_path / "export")
    assert export.xml_without_image == sorted(truth.xml_without_image)
    assert not {i.xml_path for i in export.annotated} & set(truth.xml_without_image)


@pytest.mark.parametrize("writer", [write_labelimg_export, write_roboflow_export])
def test_two_images_with_one_id_are_an_error_naming_both(tmp_path: Path, writer) -> None:
    truth = writer(tmp_path / "export", 30, faults=Faults(duplicate_id=True))
    first, second = truth.bad["duplicate_id"]
    with pytest.raises(DatasetError, match="the id") as error:
        scan_export(tmp_path / "export")
    assert str(first) in str(error.value) and str(second) in str(error.value)


def test_an_id_twice_in_a_split_list_is_an_error_naming_the_list(tmp_path: Path) -> None:
    truth = write_cvat_export(tmp_path / "cvat", 20, faults=Faults(duplicate_id=True))
    (split_list,) = truth.bad["duplicate_id"]
    with pytest.raises(DatasetError, match=rf"{split_list} lists the id 'photo_0000' twice"):
        scan_export(tmp_path / "cvat")


def test_two_xml_naming_one_image_are_an_error_naming_both(tmp_path: Path) -> None:
    write_labelimg_export(tmp_path / "imgs", 12)
    first = tmp_path / "imgs" / "img_005.xml"
    second = tmp_path / "imgs" / "copy_of_img_005.xml"
    shutil.copyfile(first, second)
    with pytest.raises(DatasetError, match="both annotate") as error:
        scan_export(tmp_path / "imgs")
    assert str(first) in str(error.value) and str(second) in str(error.value)


def test_a_malformed_xml_that_a_split_list_names_stops_the_scan_naming_it(tmp_path: Path):
    truth = write_cvat_export(tmp_path / "export", 12, faults=Faults(malformed_xml=True))
    (xml,) = truth.bad["malformed_xml"]
    relative = xml.relative_to(tmp_path / "export").as_posix()
    with pytest.raises(DatasetError, match=rf"\n  {relative}: is not well-formed XML \(") as error:
        scan_export(tmp_path / "export")
    assert "remove their ids from the lists in ImageSets/Main" in str(error.value)


HOSTILE_XML = {
    "an entity bomb": (ENTITY_BOMB, "declares a DOCTYPE or entities"),
    "a DOCTYPE": (b"<!DOCTYPE annotation><annotation/>", "declares a DOCTYPE or entities"),
    "Latin-1 bytes": ("<annotation><filename>é.jpg</filename></annotation>".encode("latin-1"),
                      "is not UTF-8 (byte 0xe9 at offset 22) and declares no other encoding"),
    "not XML": (b"%PDF-1.4 not an annotation", "is not well-formed XML (not well-formed"),
    "nothing": (b"", "is empty"),
    "a file outside": (b"<annotation><filename>../../../etc/passwd</filename></annotation>",
                       "names <filename> '../../../etc/passwd', outside the export"),
}  # fmt: skip


@pytest.mark.parametrize("content, reason", HOSTILE_XML.values(), ids=HOSTILE_XML)
@pytest.mark.parametrize("writer", [write_labelimg_export, write_roboflow_export])
def test_a_hostile_xml_is_left_out_by_name_with_its_image_and_the_rest_is_read(
    tmp_path: Path, writer, content: bytes, reason: str
) -> None:
    truth = writer(tmp_path / "export", 12)
    planned = sorted((p for split in truth.splits.values() for p in split.values()), key=str)[4]
    planned.xml.write_bytes(content)
    export = scan_export(tmp_path / "export")
    ((xml, said),) = export.unreadable
    assert xml == planned.xml and said.startswith(reason), said
    read = [image.image_path for split in export.splits.values() for image in split]
    assert len(read) == 11 and planned.image not in read
    assert planned.image not in {i.image_path for s in export.unannotated.values() for i in s}


def test_a_fifo_or_device_named_xml_is_refused_without_blocking(tmp_path: Path) -> None:
    truth = write_labelimg_export(tmp_path / "export", 12)
    first, second = sorted((p for split in truth.splits.values() for p in split.values()), key=str)[
        4:6
    ]
    first.xml.unlink()
    os.mkfifo(first.xml)
    second.xml.unlink()
    second.xml.symlink_to("/dev/zero")
    export = scan_export(tmp_path / "export")
    assert dict(export.unreadable) == {
        first.xml: f"cannot be read: {first.xml} is a named pipe (FIFO), not a regular file: "
        "vocproj reads only files (a link to one is fine); leave it out or replace it with the "
        "file itself.",
        second.xml: f"cannot be read: {second.xml} is a character device, not a regular file: "
        "vocproj reads only files (a link to one is fine); leave it out or replace it with the "
        "file itself.",
    }


def test_missing_empty_and_unrecognised_folders_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_export(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        detect_layout(tmp_path / "empty")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"no Pascal VOC XML.*expected a devkit tree"):
        scan_export(tmp_path / "photos")


def test_devkit_without_jpegimages_says_to_export_the_images(tmp_path: Path) -> None:
    write_cvat_export(tmp_path / "cvat", 8)
    shutil.rmtree(tmp_path / "cvat" / "JPEGImages")
    with pytest.raises(DatasetError, match=r"no JPEGImages.*Save images"):
        scan_export(tmp_path / "cvat")


# --- what init-profile prints ---------------------------------------------------------------


def test_describe_export_counts_and_warns(tmp_path: Path) -> None:
    truth = write_roboflow_export(
        tmp_path / "rf", 40, faults=Faults(images_without_xml=12, xml_without_image=1, difficult=2)
    )
    export = scan_export(tmp_path / "rf")
    classes = (*CLASSES, "grape")  # listed, never annotated
    splits = draw(export, tmp_path / "splits", classes, val_split="valid")
    text = describe_export(export, classes, splits)
    assert "layout: roboflow" in text and str(tmp_path / "rf") in text
    assert f"classes (6): {', '.join(classes)}" in text
    assert "train 28 (+12 without XML), valid 8, test 4" in text
    labelled = [labelled_split(name, images, classes) for name, images in splits.items()]
    table = text.split("\n\n")[1].splitlines()  # between the heading and the lists
    rows = {line.split()[0]: line.split()[1:] for line in table}
    assert rows["class"] == ["train", "train", "difficult-only", "valid", "valid", "difficult-only"]
    for c, name in enumerate(classes):
        counts = [int((s.labels[:, c] == v).sum()) for s in labelled for v in (1, -1)]
        assert rows[name] == [str(count) for count in counts]
    assert "difficult objects: 2" in text
    assert "images without XML, left out (12):" in text
    assert "... and 2 more" in text
    assert truth.xml_without_image[0].relative_to(tmp_path / "rf").as_posix() in text
    assert "class 'grape' has no positive image in valid" in text
    assert "class 'grape' has no positive image in train" in text
    warnings = text.split("warnings:\n")[1].splitlines()
    assert class_warnings(labelled) == [line.strip() for line in warnings]


# --- real photos -----------------------------------------------------------------------------


def test_real_photos_relabelled_count_as_their_original_xml_says(
    tmp_path: Path, real_voc: Path
) -> None:
    truth = write_relabelled_real_export(tmp_path / "real", real_voc, RELABEL, n=300)
    export = scan_export(tmp_path / "real")
    assert export.layout == "flat"
    classes = resolve_classes("dataset", export)
    assert classes == ("person", "pet", "vehicle")
    labelled = labelled_split("all", export.images("all"), classes)
    assert len(labelled.ids) == 300 and set(labelled.ids) == set(truth.splits["all"])

    present, difficult_only = Counter(), Counter()
    for image_id in labelled.ids:
        root = ElementTree.parse(real_voc / "Annotations" / f"{image_id}.xml").getroot()
        flags: dict[str, list[bool]] = {}
        for obj in root.findall("object"):
            name = obj.findtext("name").strip()
            if name in RELABEL:
                flags.setdefault(RELABEL[name], []).append(obj.findtext("difficult") == "1")
        present.update(cls for cls, fl in flags.items() if not all(fl))
        difficult_only.update(cls for cls, fl in flags.items() if all(fl))
    for c, name in enumerate(classes):
        assert int((labelled.labels[:, c] == 1).sum()) == present[name]
        assert int((labelled.labels[:, c] == -1).sum()) == difficult_only[name]
    assert present["person"] > 50 and present["pet"] > 10 and present["vehicle"] > 10

    splits = draw(export, tmp_path / "splits", classes)
    for images in splits.values():
        assert (positives(images, classes) >= 1).all()
