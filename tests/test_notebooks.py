"""The notebooks: committed without outputs, an intro and one parameters cell each, run in order.

The last test runs every notebook in order under nbval (`pytest --nbval-lax`) on the tiny
profile. nbval cannot inject papermill parameters, so the notebooks are first written to a
temporary folder by `papermill --prepare-only` with the tiny profile's settings (paths moved
into that folder), exactly the parameters cell `make report` injects, then nbval executes them.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
import yaml

from vocproj.config import PARAMS_DIR, PROJECT_DIR

NOTEBOOK_DIR = PROJECT_DIR / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PIPELINE = (
    "00_data_exploration",
    "01_phase1_train",
    "02_phase2_rotation",
    "03_phase3_colour_flip",
    "04_evaluation",
)
PARAMETER_DEFAULTS = {"profile": "sample", "settings": None}
EXECUTION_METADATA = ("papermill", "widgets", "execution")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def parameters_cells(cells: list[nbformat.NotebookNode]) -> list[int]:
    """Indices of the cells tagged `parameters` (where papermill injects after)."""
    return [i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", [])]


def leftovers_of_execution(notebook: nbformat.NotebookNode) -> list[str]:
    """What an executed notebook carries and a committed one must not."""
    found = [f"notebook metadata '{key}'" for key in EXECUTION_METADATA if key in notebook.metadata]
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {index} has outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index} has an execution count")
        found += [
            f"cell {index} metadata '{key}'" for key in EXECUTION_METADATA if key in cell.metadata
        ]
    return found


def parameter_defaults(cell: nbformat.NotebookNode) -> dict[str, Any]:
    """The names a parameters cell assigns, with their literal values."""
    return {
        target.id: ast.literal_eval(node.value)
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def test_the_pipeline_notebooks_are_there():
    assert set(PIPELINE) <= {path.stem for path in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_committed_notebook_carries_no_outputs(path):
    assert leftovers_of_execution(read(path)) == []


def test_outputs_and_execution_counts_are_caught(tmp_path):
    notebook = read(NOTEBOOK_DIR / f"{PIPELINE[0]}.ipynb")
    code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    code.execution_count = 3
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    notebook.metadata["papermill"] = {"duration": 1.0}
    assert leftovers_of_execution(notebook) == [
        "notebook metadata 'papermill'",
        "cell 1 has outputs",
        "cell 1 has an execution count",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_opens_with_an_intro_then_one_parameters_cell(path):
    cells = read(path).cells
    intro, parameters = cells[0], cells[1]
    assert intro.cell_type == "markdown" and intro.source.startswith(f"# {path.name[:2]} · ")
    assert "**Reads:**" in intro.source and "**Writes:**" in intro.source
    assert parameters.cell_type == "code" and parameters_cells(cells) == [1]
    defaults = parameter_defaults(parameters)
    assert {key: defaults.get(key) for key in PARAMETER_DEFAULTS} == PARAMETER_DEFAULTS
    assert "profile_from_parameters(profile, settings)" in "".join(c.source for c in cells)


def test_a_second_parameters_cell_is_caught():
    cells = read(NOTEBOOK_DIR / f"{PIPELINE[1]}.ipynb").cells
    cells.append(nbformat.v4.new_code_cell("retrain = True", metadata={"tags": ["parameters"]}))
    assert parameters_cells(cells) == [1, len(cells) - 1]


def tiny_settings(root: Path) -> dict[str, Any]:
    """params/tiny.yaml's settings with every path moved under `root`."""
    settings = yaml.safe_load((PARAMS_DIR / "tiny.yaml").read_text())["settings"]
    settings["data"]["root"] = str(root / "data")
    settings["runs_dir"] = str(root / "runs")
    settings["reports_dir"] = str(root / "reports")
    return settings


@pytest.mark.slow
def test_notebooks_run_in_order_under_nbval(tmp_path):
    prepared = tmp_path / "notebooks"
    prepared.mkdir()
    parameters = {"profile": "tiny", "settings": tiny_settings(tmp_path)}
    for path in NOTEBOOKS:
        papermill.execute_notebook(
            path, prepared / path.name, parameters=parameters, prepare_only=True, progress_bar=False
        )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
         "-p", "no:cacheprovider", "-q", str(prepared)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    cells = sum(
        cell.cell_type == "code" for path in prepared.glob("*.ipynb") for cell in read(path).cells
    )
    assert f"{cells} passed" in result.stdout  # every code cell of every notebook ran
    reports = tmp_path / "reports" / "tiny"
    for name in ("dataset.json", "environment.json", "metrics.json", "top50.json"):
        assert (reports / name).is_file(), name
    assert (tmp_path / "runs" / "tiny" / "phase3" / "best.pt").is_file()
