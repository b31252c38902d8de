"""The suite's own check that the temporary folder's disk can hold its trained runs."""

from __future__ import annotations

from pathlib import Path

from conftest import temp_space_shortage


def test_a_disk_with_room_says_nothing(tmp_path: Path):
    assert temp_space_shortage(tmp_path, needed=1) is None


def test_a_full_disk_is_named_with_its_free_space_and_the_fix(tmp_path: Path):
    message = temp_space_shortage(tmp_path, needed=2**60)
    assert message is not None and message.startswith("only ") and " GB free in " in message
    assert str(tmp_path) in message and "free some space there" in message
    assert "--basetemp" in message and "\n" not in message
