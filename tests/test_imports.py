"""The arrows between modules run one way: import-linter's layers contract in pyproject.toml
holds for vocproj, and breaks when a lower room imports a higher one (metrics → plots); its
forbidden contract keeps torch off the ONNX prediction path (broken when images.py imports it)."""

from __future__ import annotations

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
    path = tmp_path / "vocproj" / f"{module}.py"
    path.write_text(path.read_text() + f"\n{statement}  # noqa: E402\n")
    return tmp_path


def test_numbers_importing_pictures_breaks_the_contract(tmp_path: Path):
    result = lint_imports(copy_with_import(tmp_path, "metrics", "from vocproj import plots"))
    assert result.returncode != 0
    assert "1 kept, 1 broken" in result.stdout
    assert "vocproj.metrics -> vocproj.plots" in result.stdout


def test_torch_on_the_onnx_path_breaks_the_contract(tmp_path: Path):
    result = lint_imports(copy_with_import(tmp_path, "images", "import torch"))
    assert result.returncode != 0
    assert "1 kept, 1 broken" in result.stdout
    assert "vocproj.images -> torch" in result.stdout


def test_every_module_has_its_layer():
    """A new module must be placed in the contract, or its imports go unchecked."""
    contract = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = contract["contracts"][0]["layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    modules = {f"vocproj.{path.stem}" for path in (PROJECT_DIR / "vocproj").glob("*.py")}
    assert placed == modules - {"vocproj.__init__"}
