"""environment.yml, pyproject.toml and the Makefile install the same set of packages."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def conda_env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_conda_env_installs_the_package_with_its_dev_extra():
    dependencies = conda_env()["dependencies"]
    pip_lists = [d["pip"] for d in dependencies if isinstance(d, dict)]
    assert pip_lists == [["-e .[dev]"]], "environment.yml must install exactly `-e .[dev]` by pip"
    assert "pip" in dependencies
    assert "dev" in pyproject()["project"]["optional-dependencies"]


def test_conda_python_satisfies_requires_python():
    project_python = SpecifierSet(pyproject()["project"]["requires-python"])
    (python,) = [d for d in conda_env()["dependencies"] if isinstance(d, str) and "python" in d]
    conda_python = SpecifierSet(python.removeprefix("python"))
    for minor in range(8, 16):
        version = Version(f"3.{minor}")
        if version in conda_python:
            assert version in project_python, f"environment.yml allows {version}"
    assert Version("3.11") in conda_python


def test_runtime_dependencies_named_by_the_design_are_declared():
    names = {Requirement(d).name for d in pyproject()["project"]["dependencies"]}
    required = {"torch", "torchvision", "jupyterlab", "ipywidgets", "matplotlib", "papermill"}
    assert required | {"scikit-learn", "filelock"} <= names


def test_test_only_packages_are_in_the_dev_extra_alone():
    project = pyproject()["project"]
    runtime = {Requirement(d).name for d in project["dependencies"]}
    dev = {Requirement(d).name for d in project["optional-dependencies"]["dev"]}
    test_only = {"nbval", "pytest", "pytest-timeout", "playwright", "ruff", "import-linter"}
    assert test_only <= dev and not test_only & runtime


def test_makefile_installs_the_same_extra():
    assert "pip install --quiet -e '.[dev]'" in (ROOT / "Makefile").read_text()
