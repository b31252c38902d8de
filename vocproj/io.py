"""Atomic artifact writing: a crash never leaves a half-written file behind.

Each file is written to a temporary `.<name>.<random>.tmp` beside it and moved over it with one
`os.replace`, so a reader sees the old file or the new one, never a part. A write that fails for
want of space (a full disk, a used-up quota, the process's file size limit) leaves the old file
as it was and raises OutOfSpace saying which of the three filled up. A process killed mid-write
leaves its temporary file behind; `remove_temporaries` clears them, which the one process that
owns the files does when it starts (training a phase, exporting: vocproj/locks.py).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from vocproj.errors import OutOfSpace

ARTIFACT_MODE = 0o644  # mkstemp creates 0600; artifacts are meant to be shared and read
WHAT_FILLED_UP = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file size limit of this process (ulimit -f) was reached",
}


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one `os.replace`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        tmp.chmod(ARTIFACT_MODE)
        os.replace(tmp, target)
    except Exception as err:
        full = space_error(err)
        if full is None:
            raise
        raise OutOfSpace(out_of_space_message(target, full)) from err
    finally:
        tmp.unlink(missing_ok=True)


def space_error(err: BaseException | None) -> OSError | None:
    """The OSError for want of space behind `err` (torch wraps it in a RuntimeError), if any."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in WHAT_FILLED_UP:
            return err
        err = err.__cause__ or err.__context__
    return None


def out_of_space_message(target: Path, err: OSError) -> str:
    cause = WHAT_FILLED_UP[err.errno]
    if err.errno == errno.ENOSPC:
        cause += f" ({shutil.disk_usage(target.parent).free / 2**20:,.0f} MB free)"
    kept = f"{target} is as it was" if target.exists() else f"{target} was not written"
    return (
        f"could not write {target}: {cause}; {kept}, and every finished file is kept. Free "
        f"some space (or raise the limit) and run the same command again."
    )


def remove_temporaries(folder: Path, name: str = "*") -> list[Path]:
    """Delete the temporary files that writers of `folder/name` killed mid-write left there.

    Only the one process that owns the folder's files may call it (vocproj/locks.py).
    """
    leftovers = sorted(folder.glob(f".{name}.*.tmp")) if folder.is_dir() else []
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(handle)` on a temporary binary file, then move it over `path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def atomic_link(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Make `target` a second name of `source`'s bytes in one `os.replace`.

    A hard link where the filesystem allows one, so that equal checkpoints take the disk once;
    a copy where it does not. Every writer here replaces files whole, so the names never share
    a later change.
    """
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON (stable bytes for the same content)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
