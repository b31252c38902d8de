"""Atomic writes: the old file survives a failure mid-write, and no temp file is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from vocproj.io import atomic_write, atomic_write_json, atomic_write_text


def test_replaces_content_and_leaves_no_temp_file(tmp_path: Path):
    target = tmp_path / "deep" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_failure_mid_write_keeps_the_previous_file(tmp_path: Path):
    target = tmp_path / "file.bin"
    atomic_write_text(target, "finished work")

    def half_then_crash(handle):
        handle.write(b"half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "finished work"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_json_is_stable_and_refuses_nan(tmp_path: Path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"b": 1, "a": [0.5]})
    assert target.read_text() == '{\n  "a": [\n    0.5\n  ],\n  "b": 1\n}\n'
    with pytest.raises(ValueError):
        atomic_write_json(target, {"x": float("nan")})
    assert '"a"' in target.read_text()
