"""The data stage runs once: it writes each split's list, the cache and the run's record, and
training, evaluation and the browser read those without passing back through the readers,
the sample generator or the downloader. Checked against ../shared's real devkit lists too."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from vocproj.artifacts import RunFiles, read_record
from vocproj.config import PARAMS_DIR, Profile, load_profile
from vocproj.data.prepare import prepare_data, prepared, read_split
from vocproj.data.voc import CLASSES, read_devkit_split
from vocproj.errors import DatasetError
from vocproj.training.phases import train_phase

from conftest import tiny_profile

# The modules that read or make a dataset: after the data stage, no later stage enters them.
READERS = {
    "vocproj.data.layouts",
    "vocproj.data.sample",
    "vocproj.data.download",
    "vocproj.data.init_profile",
}
READING_FUNCTIONS = {"read_devkit_split", "read_annotation", "check_voc_root", "scan_export"}


def calls_made(call: Callable[[], object]) -> list[tuple[str, str]]:
    """(module, function) of every vocproj function `call` runs in this thread, in order."""
    calls: list[tuple[str, str]] = []

    def record(frame, event, arg):
        module = frame.f_globals.get("__name__", "")
        if event == "call" and module.startswith("vocproj"):
            calls.append((module, frame.f_code.co_name))

    sys.setprofile(record)
    try:
        call()
    finally:
        sys.setprofile(None)
    return calls


@pytest.fixture
def tiny(tmp_path: Path, small_sample: Path) -> Profile:
    return load_profile(tiny_profile(tmp_path / "project", small_sample.parents[1], **{
        "train.phases": [{"preset": "resize_crop", "epochs": 1}],
    }))  # fmt: skip


def test_the_data_stage_writes_each_split_and_the_record(tiny: Profile):
    record = prepare_data(tiny, progress=False)
    files = RunFiles.of(tiny)
    for name in ("train", "val"):
        split = read_split(tiny, name)
        assert split.classes == record.classes == CLASSES
        assert len(split.ids) == record.splits[name]
        resolved = read_devkit_split(tiny.voc_root, name, CLASSES)
        assert split.ids == resolved.ids and split.image_paths == resolved.image_paths
        np.testing.assert_array_equal(split.labels, resolved.labels)
        assert files.split_list(name).read_text().startswith("id,image,annotation,aeroplane,")
    assert read_record(files).prepared_with["seed"] == tiny.settings.seed
    assert sorted(p.name for p in tiny.cache_dir.glob("*.*[ny]")) == [
        "train-32px.json", "train-32px.npy", "val-32px.json", "val-32px.npy"
    ]  # fmt: skip


def test_a_training_phase_after_the_data_stage_reads_only_what_it_wrote(tiny: Profile):
    prepare_data(tiny, progress=False)
    calls = calls_made(lambda: train_phase(tiny, 1, progress=False))
    entered = {module for module, _ in calls}
    assert not READERS & entered, f"entered {sorted(READERS & entered)}"
    assert not READING_FUNCTIONS & {function for _, function in calls}
    assert "prepare_data" not in {function for _, function in calls}
    assert [f for _, f in calls].count("read_split_list") == 2  # train and val, once each
    assert (RunFiles.of(tiny).last(1)).is_file()


def test_a_phase_on_a_fresh_profile_runs_the_data_stage_first(tiny: Profile):
    calls = calls_made(lambda: train_phase(tiny, 1, progress=False))
    assert [f for _, f in calls].count("prepare_data") == 1
    assert RunFiles.of(tiny).split_list("val").is_file()


def test_the_stage_runs_again_only_when_its_settings_change(tiny: Profile, tmp_path: Path):
    prepare_data(tiny, progress=False)
    record_file = RunFiles.of(tiny).record
    written = record_file.stat().st_mtime_ns
    prepared(tiny, progress=False)
    assert record_file.stat().st_mtime_ns == written, "same settings: the record is read back"
    backwards = list(reversed(CLASSES))
    data = tiny.settings.data.model_copy(update={"classes": backwards})
    other = tiny.model_copy(update={"settings": tiny.settings.model_copy(update={"data": data})})
    assert prepared(other, progress=False).classes == tuple(backwards)
    assert record_file.stat().st_mtime_ns != written, "another class list: the stage ran again"
    np.testing.assert_array_equal(
        read_split(other, "val").labels, read_split(tiny, "val", backwards).labels
    )


def test_a_broken_split_list_names_itself_and_the_fix(tiny: Profile):
    prepare_data(tiny, progress=False)
    path = RunFiles.of(tiny).split_list("train")
    path.write_text("id,image,annotation,cat\n000001,x.jpg,,maybe\n")
    with pytest.raises(DatasetError, match=rf"split list {path} cannot be read .*vocproj data"):
        read_split(tiny, "train")


def test_a_class_the_split_list_lacks_is_named(tiny: Profile):
    prepare_data(tiny, progress=False)
    with pytest.raises(DatasetError, match="has no labels for unicorn"):
        read_split(tiny, "val", ("cat", "unicorn"))
    assert read_split(tiny, "val", ("dog", "cat")).classes == ("dog", "cat")


def test_split_lists_of_the_real_photos_keep_the_devkit_labels(real_voc: Path, tmp_path: Path):
    """Every label of ../shared's 2,000 photos, difficult-only ones (-1) included, survives the
    list's round trip, as read from the original per-class files."""
    raw = yaml.safe_load((PARAMS_DIR / "voc2007-real.yaml").read_text())
    raw["settings"]["data"].update(source="local", root=str(tmp_path / "data"), cache=False,
                                   prefer_roots=[str(real_voc.parents[1])])  # fmt: skip
    raw["settings"].update(runs_dir=str(tmp_path / "runs"), reports_dir=str(tmp_path / "reports"))
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "real.yaml").write_text(yaml.safe_dump({**raw, "profile": "real"}))
    profile = load_profile(tmp_path / "params" / "real.yaml")
    if os.path.realpath(profile.voc_root) != os.path.realpath(real_voc):
        pytest.fail(f"the profile reads {profile.voc_root}, not {real_voc}")
    prepare_data(profile, progress=False)
    for name, images in (("train", 1000), ("val", 1000)):
        devkit = read_devkit_split(real_voc, name, CLASSES)
        listed = read_split(profile, name)
        assert len(listed.ids) == images and listed.ids == devkit.ids
        np.testing.assert_array_equal(listed.labels, devkit.labels)
        assert (listed.labels == -1).any(), "the real lists have difficult-only labels"
