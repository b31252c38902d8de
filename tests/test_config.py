"""Profiles: every shipped profile validates; unknown keys and wrong types are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vocproj.config import PARAMS_DIR, load_profile, profile_from_parameters
from vocproj.errors import ConfigError


def write_profile(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((PARAMS_DIR / "sample.yaml").read_text())
    mutate(raw)
    params = tmp_path / "params"
    params.mkdir(exist_ok=True)
    path = params / "custom.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in PARAMS_DIR.glob("*.yaml")))
def test_every_shipped_profile_loads_and_names_itself(name: str):
    profile = load_profile(name)
    assert profile.profile == name
    assert len(profile.settings.train.phases) == 3


def test_study_profile_has_the_study_values():
    settings = load_profile("voc2012").settings
    assert settings.optim.lr == 0.02
    assert [p.epochs for p in settings.train.phases] == [15, 15, 15]
    assert [p.preset for p in settings.train.phases] == ["resize_crop", "rotate", "jitter_flip"]
    assert settings.train.image_size == 224 and settings.model.weights == "imagenet"
    assert settings.augment.rotation_degrees == 10 and settings.augment.hue == 0.05


def test_sample_profile_runs_offline():
    settings = load_profile("sample").settings
    assert settings.data.source == "sample" and settings.model.weights == "none"


def test_relative_paths_resolve_against_the_project(tmp_path: Path):
    profile = load_profile(write_profile(tmp_path, lambda raw: None))
    assert profile.voc_root == tmp_path / "data" / "sample" / "VOCdevkit" / "VOC2012"
    assert profile.run_dir == tmp_path / "runs" / "sample"


def test_unknown_key_is_an_error_naming_file_and_key(tmp_path: Path):
    path = write_profile(tmp_path, lambda raw: raw["settings"]["train"].update(epochz=3))
    with pytest.raises(ConfigError, match=r"(?s)custom\.yaml.*train\.epochz: unknown key"):
        load_profile(path)


def test_wrong_type_is_an_error_not_a_silent_conversion(tmp_path: Path):
    path = write_profile(tmp_path, lambda raw: raw["settings"]["train"].update(batch_size="32"))
    with pytest.raises(ConfigError, match=r"train\.batch_size: Input should be a valid integer"):
        load_profile(path)


def test_bad_choice_and_missing_section(tmp_path: Path):
    path = write_profile(tmp_path, lambda raw: raw["settings"]["data"].update(difficult="maybe"))
    with pytest.raises(ConfigError, match=r"data\.difficult"):
        load_profile(path)
    path = write_profile(tmp_path, lambda raw: raw["settings"].pop("train"))
    with pytest.raises(ConfigError, match=r"settings\.train: Field required"):
        load_profile(path)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"nope\.yaml not found; known profiles: .*sample"):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        load_profile(bad)


def test_papermill_parameters_are_validated_the_same_way():
    raw = yaml.safe_load((PARAMS_DIR / "sample.yaml").read_text())
    assert profile_from_parameters("sample", raw["settings"]) == load_profile("sample")
    assert profile_from_parameters("sample", None) == load_profile("sample")
    raw["settings"]["seed"] = 1.5
    with pytest.raises(ConfigError, match="seed"):
        profile_from_parameters("sample", raw["settings"])
