"""A short study on real photos: data → train → evaluate → probe → browser, end to end.

A few hundred of ../shared's VOC2007 photos (their original XML and official per-class lines) in
a devkit tree of their own, EfficientNet-Lite0 from ImageNet at 96 px, one epoch per phase.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from test_browser import text, upload

from vocproj.config import PARAMS_DIR, Profile, load_profile
from vocproj.data.prepare import prepare_data
from vocproj.data.voc import CLASSES, read_split_ids
from vocproj.evaluation.probe import linear_probe
from vocproj.evaluation.scoring import evaluate
from vocproj.reporting.browser import build_browser
from vocproj.training.logistic import C_GRID
from vocproj.training.phases import train_phases

pytestmark = pytest.mark.slow
SPLIT_SIZES = {"train": 240, "val": 120}


def small_real_tree(real_voc: Path, root: Path) -> Path:
    """A VOC2007 tree of the first photos of each split: linked files, filtered devkit lists."""
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    main = real_voc / "ImageSets" / "Main"
    for split, count in SPLIT_SIZES.items():
        ids = read_split_ids(real_voc, split)[:count]
        for image_id in ids:
            for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "xml")):
                os.symlink(real_voc / sub / f"{image_id}.{ext}", voc / sub / f"{image_id}.{ext}")
        (voc / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        keep = set(ids)
        for name in CLASSES:
            lines = (main / f"{name}_{split}.txt").read_text().splitlines(keepends=True)
            chosen = [line for line in lines if line.split()[0] in keep]
            (voc / "ImageSets/Main" / f"{name}_{split}.txt").write_text("".join(chosen))
    return voc


@pytest.fixture(scope="module")
def real_profile(real_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> Profile:
    project = tmp_path_factory.mktemp("real-project")
    small_real_tree(real_voc, project / "data")
    raw = yaml.safe_load((PARAMS_DIR / "voc2007-real.yaml").read_text())
    raw["profile"] = "real-small"
    settings = raw["settings"]
    settings["data"].update(source="local", root=str(project / "data"), prefer_roots=[])
    settings["train"].update(image_size=96, progress=False, precision="fp32")
    for phase in settings["train"]["phases"][1:]:
        phase["epochs"] = 1  # the profile's phases, each fine-tuning phase one epoch long
    settings.update(runs_dir=str(project / "runs"), reports_dir=str(project / "reports"))
    path = project / "params" / "real-small.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw))
    return load_profile(path)


@pytest.fixture(scope="module")
def trained(real_profile: Profile) -> dict:
    train_phases(real_profile)
    return evaluate(real_profile, progress=False)


def test_local_tree_is_read_in_place(real_profile: Profile):
    record = prepare_data(real_profile, progress=False)
    assert record.data_dir == str(real_profile.voc_root)
    assert record.classes == CLASSES and record.splits == SPLIT_SIZES
    assert real_profile.voc_root.name == "VOC2007"


def test_imagenet_features_learn_real_photos_in_one_short_run(trained: dict):
    assert trained["n_images"] == SPLIT_SIZES["val"]
    assert trained["map"] > 0.5, trained["map"]  # chance is ≈ 0.1 on these classes


def test_the_project_computes_its_own_linear_probe(real_profile: Profile, trained: dict):
    probe = linear_probe(real_profile, progress=False)
    assert probe["n_train"] == 240 and probe["features"] == 1280
    assert probe["features_reused"]  # phase 1 trained the head on the same features
    assert probe["C"] in C_GRID and len(probe["cross_validation"]["map_by_C"]) == len(C_GRID)
    assert 0.4 < probe["map"] < 1.0
    assert json.loads((real_profile.report_dir / "probe.json").read_text()) == probe


def test_the_browser_labels_an_uploaded_real_photo(real_profile: Profile, trained: dict,
                                                   real_voc: Path):  # fmt: skip
    app = build_browser(real_profile)
    photo = real_voc / "JPEGImages" / "000002.jpg"  # a train; a val photo, never trained on
    upload(app, "000002.jpg", photo.read_bytes())
    probabilities = dict(zip(CLASSES, app.predict_tab.prediction.probabilities, strict=True))
    assert max(probabilities, key=probabilities.get) == "train"
    assert "train" in text(app.predict_tab.result.value)
