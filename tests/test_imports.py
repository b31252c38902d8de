"""The arrows between the wings run one way: import-linter's layers contract in pyproject.toml
holds for vocproj, and breaks when a lower wing imports a higher one (metrics → reporting); its
forbidden contract keeps torch and pydantic off the ONNX prediction path (broken when images.py
imports torch or serving/predict.py imports pydantic). Each wing's __init__ names its modules."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from vocproj.config import PROJECT_DIR

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the package in `project`, with the project's own contract."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(project / "pyproject.toml"), "--no-cache"],
        cwd=project, env={**os.environ, "PYTHONPATH": str(project)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_package_keeps_its_layers():
    result = lint_imports(PROJECT_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def copy_with_import(tmp_path: Path, module: str, statement: str) -> Path:
    """A copy of the package and its contracts in which `module` also runs `statement`."""
    shutil.copytree(PROJECT_DIR / "vocproj", tmp_path / "vocproj")
    shutil.copy(PROJECT_DIR / "pyproject.toml", tmp_path)
    path = tmp_path / "vocproj" / f"{module.replace('.', '/')}.py"
    path.write_text(path.read_text() + f"\n{statement}  # noqa: E402\n")
    return tmp_path


def test_numbers_importing_pictures_breaks_the_contract(tmp_path: Path):
    statement = "from vocproj.reporting import plots"
    result = lint_imports(copy_with_import(tmp_path, "metrics.multilabel", statement))
    assert result.returncode != 0
    assert "1 kept, 1 broken" in result.stdout
    assert "vocproj.metrics.multilabel -> vocproj.reporting.plots" in result.stdout


def test_training_importing_evaluation_breaks_the_contract(tmp_path: Path):
    statement = "from vocproj.evaluation import scoring"
    result = lint_imports(copy_with_import(tmp_path, "training.phases", statement))
    assert result.returncode != 0
    assert "vocproj.training.phases -> vocproj.evaluation.scoring" in result.stdout


def test_torch_on_the_onnx_path_breaks_the_contract(tmp_path: Path):
    result = lint_imports(copy_with_import(tmp_path, "images", "import torch"))
    assert result.returncode != 0
    assert "1 kept, 1 broken" in result.stdout
    assert "vocproj.images -> torch" in result.stdout


def test_pydantic_on_the_onnx_path_breaks_the_contract(tmp_path: Path):
    result = lint_imports(copy_with_import(tmp_path, "serving.predict", "import pydantic"))
    assert result.returncode != 0
    assert "vocproj.serving.predict -> pydantic" in result.stdout


def test_every_module_has_its_layer():
    """A new ground module or wing must be placed in the contract, or its imports go unchecked."""
    contract = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = contract["contracts"][0]["layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    package = PROJECT_DIR / "vocproj"
    modules = {f"vocproj.{path.stem}" for path in package.glob("*.py")} - {"vocproj.__init__"}
    wings = {f"vocproj.{path.parent.name}" for path in package.glob("*/__init__.py")}
    assert placed == modules | wings


def test_each_wing_opens_with_the_modules_it_owns():
    for init in (PROJECT_DIR / "vocproj").glob("*/__init__.py"):
        owned = ast.get_docstring(ast.parse(init.read_text())) or ""
        modules = {path.stem for path in init.parent.glob("*.py")} - {"__init__"}
        missing = {name for name in modules if f"`{name}`" not in owned}
        assert not missing, f"{init} does not say what {sorted(missing)} own"
