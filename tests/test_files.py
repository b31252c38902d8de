"""Reading what a user hands vocproj: only regular files, a bounded number of bytes, no waiting."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from vocproj.data.init_profile import ProfileChoices, init_profile
from vocproj.errors import RefusedFile
from vocproj.files import read_regular_file, read_text

from exports import ENTITY_BOMB, write_labelimg_export

ONLY_FILES = "not a regular file: vocproj reads only files (a link to one is fine)"


def test_a_regular_file_and_a_link_to_one_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"12345")
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    assert read_regular_file(tmp_path / "a.txt", 5) == b"12345"
    assert read_regular_file(tmp_path / "link.txt", 5) == b"12345"
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing.txt", 5)


def test_a_file_over_the_limit_is_refused_by_name(tmp_path: Path) -> None:
    with (tmp_path / "big.jpg").open("wb") as big:
        big.truncate(3 * 2**20)
    said = f"{tmp_path / 'big.jpg'} is 3 MB, more than the 2 MB vocproj reads of one file"
    with pytest.raises(RefusedFile, match=re.escape(said)):
        read_regular_file(tmp_path / "big.jpg", 2 * 2**20)


@pytest.mark.parametrize(
    "make, kind",
    [
        (lambda path: path.symlink_to("/dev/zero"), "a character device"),
        (lambda path: path.mkdir(), "a folder"),
        (os.mkfifo, "a named pipe (FIFO)"),
    ],
    ids=["/dev/zero", "folder", "fifo"],
)
def test_devices_folders_and_pipes_are_refused_at_once(tmp_path: Path, make, kind: str) -> None:
    path = tmp_path / "photo.jpg"
    make(path)
    with pytest.raises(
        RefusedFile, match="^" + re.escape(f"{path} is {kind}, {ONLY_FILES}; leave")
    ):
        read_regular_file(path, 10)  # a FIFO without a writer: refused, not waited on


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        with pytest.raises(RefusedFile, match=re.escape(f"{path} is a socket, {ONLY_FILES}")):
            read_regular_file(path, 10)


def test_text_that_is_not_utf8_is_refused_saying_where(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_bytes("000005\ncafé\n".encode("latin-1"))
    with pytest.raises(RefusedFile, match=r"train\.txt is not UTF-8 text \(byte 0xe9 at offset 10"):
        read_text(tmp_path / "train.txt")


def test_init_profile_names_an_entity_bomb_and_reads_the_rest_of_the_export(tmp_path: Path):
    truth = write_labelimg_export(tmp_path / "export", 12)
    bomb = tmp_path / "export" / "img_004.xml"
    bomb.write_bytes(ENTITY_BOMB)
    params = tmp_path / "project" / "params"
    params.mkdir(parents=True)
    path, summary = init_profile(
        tmp_path / "export", ProfileChoices(name="mine"), params_dir=params
    )
    assert path == params / "mine.yaml" and path.is_file()
    assert (
        "unreadable XML, left out with their images (1):\n  img_004.xml: declares a DOCTYPE or "
        "entities, which a VOC annotation has no use for and vocproj refuses (an entity bomb has "
        "that shape)\n"
    ) in summary
    images = sum(len(split) for split in truth.splits.values())
    assert f"export splits (images): all {images - 1}\n" in summary
