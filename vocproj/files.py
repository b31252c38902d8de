"""Reading a file someone handed vocproj, trusting nothing about it but what `stat` says.

Every photo and annotation vocproj reads (predict, the browser, the data readers, init-profile)
comes through `read_regular_file`: only a regular file is read (a link to one is followed), a
device, pipe, socket or folder is refused by name without being opened for long (a pipe is
opened non-blocking, so that no open waits for a writer), and at most a bounded number of bytes
is read, so that a link to /dev/zero or a huge file cannot take the machine's memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vocproj.errors import RefusedFile

MAX_IMAGE_BYTES = 200 * 1024 * 1024  # a photo; VOC's are about 100 KB, a 50-megapixel JPEG 30 MB
MAX_TEXT_BYTES = 16 * 1024 * 1024  # an annotation or a list; VOC's XML are about 1 KB
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
KINDS = (
    (stat.S_ISDIR, "folder"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "named pipe (FIFO)"),
    (stat.S_ISSOCK, "socket"),
)


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file at `path` (a link to one is fine), at most `limit` of them.

    A missing file raises FileNotFoundError as `open` would; anything else that is not a
    regular file, or a file over `limit` bytes, raises RefusedFile naming it.
    """
    path = Path(path)
    found = os.stat(path)
    check_regular(path, found.st_mode, limit, found.st_size)
    descriptor = os.open(path, OPEN_FLAGS)
    with os.fdopen(descriptor, "rb") as handle:
        opened = os.fstat(handle.fileno())  # what was opened, should the path have changed
        check_regular(path, opened.st_mode, limit, opened.st_size)
        content = handle.read(limit + 1)
    if len(content) > limit:
        raise RefusedFile(too_large(path, len(content), limit, at_least=True))
    return content


def check_regular(path: Path, mode: int, limit: int, size: int) -> None:
    """Refuse, by name, anything but a regular file of at most `limit` bytes."""
    for test, kind in KINDS:
        if test(mode):
            raise RefusedFile(
                f"{path} is a {kind}, not a regular file: vocproj reads only files (a link to "
                f"one is fine); leave it out or replace it with the file itself."
            )
    if not stat.S_ISREG(mode):
        raise RefusedFile(f"{path} is not a regular file; leave it out.")
    if size > limit:
        raise RefusedFile(too_large(path, size, limit))


def too_large(path: Path, size: int, limit: int, *, at_least: bool = False) -> str:
    """`size` is the file's size, or with `at_least` what was read before the limit stopped it."""
    size_text = f"over {limit / 2**20:,.0f} MB" if at_least else f"{size / 2**20:,.0f} MB"
    return (
        f"{path} is {size_text}, more than the {limit / 2**20:,.0f} MB vocproj reads of one "
        f"file; scale it down or leave it out."
    )


def read_text(path: str | os.PathLike[str], limit: int = MAX_TEXT_BYTES) -> str:
    """`read_regular_file` of a UTF-8 text file (a list, a label map), decoded."""
    content = read_regular_file(path, limit)
    problem = first_non_utf8(content)
    if problem:
        raise RefusedFile(f"{path} is not UTF-8 text ({problem}); save it as UTF-8.")
    return content.decode("utf-8")


def first_non_utf8(content: bytes) -> str | None:
    """Where `content` stops being UTF-8 (`byte 0xe9 at offset 22`), or None if it is."""
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"byte {content[err.start]:#04x} at offset {err.start}"
    return None
