"""Atomic writes: the old file survives a failure mid-write, and no temp file is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vocproj.io import atomic_link, atomic_write, atomic_write_json, atomic_write_text


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


def test_a_link_shares_the_bytes_until_either_name_is_written_again(tmp_path: Path):
    best, last = tmp_path / "best.pt", tmp_path / "last.pt"
    atomic_write_text(best, "epoch 1")
    atomic_write_text(last, "epoch 0")
    atomic_link(best, last)
    assert last.samefile(best) and last.read_text() == "epoch 1"
    atomic_write_text(last, "epoch 2")
    assert best.read_text() == "epoch 1" and not last.samefile(best)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_a_filesystem_without_hard_links_gets_a_copy(tmp_path: Path, monkeypatch):
    def refuse(source, target):
        raise PermissionError(1, "Operation not permitted", str(target))

    monkeypatch.setattr(os, "link", refuse)
    source, target = tmp_path / "best.pt", tmp_path / "last.pt"
    atomic_write_text(source, "weights")
    atomic_link(source, target)
    assert target.read_text() == "weights" and not target.samefile(source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
