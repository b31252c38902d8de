"""Shared fixtures: hand-written VOC trees, small generated sample datasets, the tiny profile and
the one tiny run trained from it, the one `make report PROFILE=tiny` in a copy of the checkout,
and the two things only some machines have: the real VOC photos and Debian's Chromium.

Tests that need either find it where it is and are skipped with a one-line reason where it is
not, so that a fresh clone anywhere passes `make test`; `VOCPROJ_REQUIRE_ALL=1` (set by .ci/run)
turns each such skip into a failure, so that CI proves them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import yaml
from PIL import Image

from vocproj.config import PARAMS_DIR, PROJECT_DIR, load_profile
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


# ---------------------------------------------------------------- the tiny profile and its run

TINY_PRESETS = ("resize_crop", "rotate", "jitter_flip")
TINY_EPOCHS = (2, 1, 1)


def tiny_profile(
    project: Path, data_root: Path, epochs: Sequence[int] = TINY_EPOCHS, **overrides
) -> Path:
    """Write params/tiny.yaml into a project folder: the sample profile at 32 px on the small
    sample's 64 + 40 images, few epochs. `overrides` are "section.key" (or top-level "key")."""
    raw = yaml.safe_load((PARAMS_DIR / "sample.yaml").read_text())
    raw["profile"] = "tiny"
    settings = raw["settings"]
    settings["data"].update(root=str(data_root), sample_train_images=64, sample_val_images=40)
    settings["train"].update(image_size=32, batch_size=16, eval_batch_size=40, progress=False)
    settings["train"]["phases"] = [
        {"preset": preset, "epochs": count}
        for preset, count in zip(TINY_PRESETS, epochs, strict=True)
    ]
    for dotted, value in overrides.items():
        *section, key = dotted.split(".")
        (settings[section[0]] if section else settings)[key] = value
    (project / "params").mkdir(parents=True, exist_ok=True)
    path = project / "params" / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def files_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="session")
def tiny_yaml(tmp_path_factory: pytest.TempPathFactory, small_sample: Path) -> Iterator[Path]:
    """The one tiny run of the session, trained (1 epoch per phase, fp32: the evaluation's scores
    are the browser's and predict's, to 1e-4) and evaluated on the small sample: its params YAML.

    Every path in the profile is absolute, so papermill can pass its settings to a notebook.
    Tests only read it; one that changes a run's files works on `copy_of_run(tiny_yaml, ...)`.
    At the end of the session every file of the run must be as training and evaluation left it.
    """
    from vocproj.evaluation.scoring import evaluate
    from vocproj.training.phases import train_phases

    project = tmp_path_factory.mktemp("tiny-run")
    path = tiny_profile(
        project, small_sample.parents[1], epochs=(1, 1, 1), runs_dir=str(project / "runs"),
        reports_dir=str(project / "reports"), **{"train.precision": "fp32"},
    )  # fmt: skip
    profile = load_profile(path)
    train_phases(profile, progress=False)
    evaluate(profile, progress=False)
    trained = files_state(project)
    yield path
    assert files_state(project) == trained, (
        f"a test changed the shared tiny run in {project}: change a copy_of_run() instead"
    )


def copy_of_run(params: Path, target: Path) -> Path:
    """A copy of a trained run's project folder (params, runs, reports) at `target`, its profile
    pointing at the copy's runs/ and reports/ (the data stays shared): its params YAML."""
    shutil.copytree(params.parents[1], target, symlinks=True)
    path = target / "params" / params.name
    raw = yaml.safe_load(path.read_text())
    raw["settings"].update(runs_dir=str(target / "runs"), reports_dir=str(target / "reports"))
    path.write_text(yaml.safe_dump(raw))
    return path


# ---------------------------------------------------------------- `make` in a copy of the checkout

# What an outer `make test` passes down, which would leak into the checkout copy's make.
MAKE_ENVIRONMENT = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")


def without_make_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in MAKE_ENVIRONMENT}


def copy_checkout(target: Path) -> None:
    """Copy what a clone would hold plus uncommitted work (not reports/), link the venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_DIR, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in listed:
        source = PROJECT_DIR / name
        if name and not name.startswith("reports/") and source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(PROJECT_DIR / ".venv")


def make(project: Path, *args: str, profile: str = "tiny") -> subprocess.CompletedProcess[str]:
    """`make ARGS PROFILE=profile` in a checkout copy, with `-o .venv/.installed` so that make
    never reinstalls the shared venv from the copy."""
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", *args, f"PROFILE={profile}"],
        cwd=project, env=without_make_environment(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="session")
def report_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout (tests/test_report.py), where `tiny_report` runs `make report`."""
    root = tmp_path_factory.mktemp("checkout")
    copy_checkout(root)
    return root


@pytest.fixture(scope="session")
def tiny_report(report_checkout: Path) -> subprocess.CompletedProcess[str]:
    """`make report PROFILE=tiny` run once in `report_checkout`: every notebook executed by
    papermill in order, then REPORT.md. The report tests read what it wrote."""
    result = make(report_checkout, "report")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result


# A whole run's temporary folders peak at about 2.3 GB (trained runs, image caches, a checkout).
TEMP_SPACE_NEEDED = 3 * 2**30


def temp_space_shortage(folder: Path, needed: int = TEMP_SPACE_NEEDED) -> str | None:
    """What to say when `folder` has less free space than the tests need, else None."""
    free = shutil.disk_usage(folder).free
    if free >= needed:
        return None
    return (
        f"only {free / 2**30:.1f} GB free in {folder}, where the tests write their trained runs "
        f"(about {needed / 2**30:.0f} GB at most): free some space there (a failed run's "
        f"folders stay in {tempfile.gettempdir()}/pytest-of-*) or give pytest --basetemp on a "
        f"larger disk"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, in one line, where the temporary folder's disk cannot hold the tests."""
    basetemp = session.config.option.basetemp
    folder = Path(basetemp).resolve().parent if basetemp else Path(tempfile.gettempdir())
    shortage = temp_space_shortage(folder)
    if shortage is not None:
        pytest.exit(shortage, returncode=1)


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
