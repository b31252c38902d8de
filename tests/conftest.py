"""Shared fixtures: hand-written VOC trees and small generated sample datasets."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vocproj.voc import CLASSES

Objects = Sequence[tuple[str, bool]]


def object_xml(name: str, difficult: bool, extra: str = "") -> str:
    """One <object> element as real VOC2012 writes it, with box, pose and flags."""
    return f"""
    <object>
        <name>{name}</name>
        <pose>Unspecified</pose>
        <truncated>0</truncated>
        <occluded>0</occluded>
        <bndbox><xmin>10</xmin><ymin>12</ymin><xmax>40</xmax><ymax>44</ymax></bndbox>
        <difficult>{int(difficult)}</difficult>{extra}
    </object>"""


def annotation_xml(image_id: str, objects: Objects) -> str:
    body = "".join(object_xml(name, difficult) for name, difficult in objects)
    return f"""<annotation>
    <folder>VOC2012</folder>
    <filename>{image_id}.jpg</filename>
    <source><database>The VOC2008 Database</database><annotation>PASCAL VOC2008</annotation>
    <image>flickr</image></source>
    <size><width>64</width><height>48</height><depth>3</depth></size>
    <segmented>0</segmented>{body}
</annotation>
"""


def devkit_flag(objects: Objects, name: str) -> int:
    """The devkit's per-class file value: 1 present, -1 absent, 0 only difficult objects."""
    flags = [difficult for cls, difficult in objects if cls == name]
    if not flags:
        return -1
    return 0 if all(flags) else 1


def write_voc_tree(
    root: Path,
    splits: Mapping[str, Mapping[str, Objects]],
    *,
    class_files: bool = True,
) -> Path:
    """Write a small VOC2012 tree: XML, 64×48 JPEGs, split files and per-class files."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, images in splits.items():
        for image_id, objects in images.items():
            (voc / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(image_id, objects))
            pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(voc / "JPEGImages" / f"{image_id}.jpg")
        ids = sorted(images)
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        if class_files:
            for name in CLASSES:
                lines = "".join(f"{i} {devkit_flag(images[i], name):2d}\n" for i in ids)
                (voc / "ImageSets" / "Main" / f"{name}_{split}.txt").write_text(lines)
    return voc


@pytest.fixture
def voc_tree(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write_voc_tree into this test's tmp_path."""
    return lambda splits, **kw: write_voc_tree(tmp_path / "data", splits, **kw)


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated sample dataset (VOC2012 dir), shared by the whole session."""
    from vocproj.sample import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("sample"), seed=0, n_train=64, n_val=40)


REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "voc2007-real"
REAL_VOC = REAL_DATA / "VOCdevkit" / "VOC2007"


@pytest.fixture(scope="session")
def real_voc() -> Path:
    """../shared's 2,000 real VOC2007 photos (devkit layout); the tests need them."""
    if not (REAL_VOC / "ImageSets" / "Main" / "train.txt").is_file():
        pytest.fail(f"the real VOC photos are missing: expected {REAL_VOC} beside the checkout")
    return REAL_VOC


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for servers and rendezvous in tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
