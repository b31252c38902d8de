"""Shared fixtures: hand-written VOC trees, small generated sample datasets, and the two things
only some machines have: the real VOC photos and Debian's Chromium.

Tests that need either find it where it is and are skipped with a one-line reason where it is
not, so that a fresh clone anywhere passes `make test`; `VOCPROJ_REQUIRE_ALL=1` (set by .ci/run)
turns each such skip into a failure, so that CI proves them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from PIL import Image

from vocproj.config import load_profile
from vocproj.data.voc import CLASSES

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
    from vocproj.data.sample import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("sample"), seed=0, n_train=64, n_val=40)


REQUIRE_ALL = os.environ.get("VOCPROJ_REQUIRE_ALL") == "1"
CHROMIUM = Path("/usr/bin/chromium")


def unavailable(reason: str) -> NoReturn:
    """Skip a test for want of `reason`, or fail it where VOCPROJ_REQUIRE_ALL=1 (CI)."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (VOCPROJ_REQUIRE_ALL=1 requires it here)", pytrace=False)
    pytest.skip(reason)


def find_real_voc() -> Path | None:
    """The voc2007-real profile's tree: ../shared's beside the checkout, else the fetched one."""
    voc = load_profile("voc2007-real").voc_root
    return voc if (voc / "ImageSets" / "Main" / "train.txt").is_file() else None


@pytest.fixture(scope="session")
def real_voc() -> Path:
    """The 2,000 real VOC2007 photos of the voc2007-real profile (devkit layout)."""
    voc = find_real_voc()
    if voc is None:
        unavailable(
            "no real VOC photos: they are read from ../shared/data/voc2007-real beside the "
            "checkout, or from data/voc2007-real after `.venv/bin/python -m vocproj data "
            "--profile voc2007-real` on a connected machine"
        )
    return voc


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, for the tests that drive a real browser."""
    if not CHROMIUM.is_file():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    return CHROMIUM


needs_chromium = pytest.mark.usefixtures("chromium")  # checked before a module's other fixtures


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for servers and rendezvous in tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
