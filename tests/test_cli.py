"""The command line: real subprocesses, clean errors (exit 2, one line, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from vocproj.data.voc import CLASSES
from vocproj.metrics.multilabel import save_scores


def vocproj(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vocproj", *args], capture_output=True, text=True, cwd=cwd
    )


def test_sample_command_writes_a_voc_tree(tmp_path: Path):
    result = vocproj("sample", "--out", str(tmp_path), "--train", "20", "--val", "20")
    assert result.returncode == 0, result.stderr
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    assert len((voc / "ImageSets" / "Main" / "train.txt").read_text().split()) == 20
    assert f"sample dataset ready at {voc}" in result.stdout


def test_metrics_command_recomputes_everything_from_a_scores_file(tmp_path: Path):
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(60, 20), p=[0.05, 0.75, 0.2])
    scores = np.clip(labels * 0.4 + rng.random((60, 20)) * 0.6, 0, 1)
    path = tmp_path / "other_tool_scores.npz"
    save_scores(path, [f"img{i:03d}" for i in range(60)], scores, labels, CLASSES)
    result = vocproj("metrics", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "metrics.json").is_file()
    assert (tmp_path / "out" / "top50.json").is_file()
    assert sorted(p.name for p in (tmp_path / "out" / "figures").iterdir())
    assert result.stdout.startswith("mAP ")


def test_errors_are_one_clear_line_with_exit_code_two(tmp_path: Path):
    result = vocproj("metrics", str(tmp_path / "missing.npz"), "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "missing.npz" in result.stderr
    assert "Traceback" not in result.stderr

    result = vocproj("train", "--profile", "no_such_profile")
    assert result.returncode == 2 and "no_such_profile.yaml not found" in result.stderr

    result = vocproj("download", "--root", str(tmp_path), "--archive", str(tmp_path / "x.tar"))
    assert result.returncode == 2 and "x.tar" in result.stderr and "Traceback" not in result.stderr
