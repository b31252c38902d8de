"""One writer per folder: a run owns `runs/<profile>/` while it writes there, data preparation
its data folder.

`owning(folder, what)` holds an operating-system lock on `<folder>/.lock` (filelock's `FileLock`,
an `flock` on Unix) for as long as the block runs. The kernel drops the lock when its process
ends, however it ends, so a lock left by a killed run never blocks the next one; the empty
`.lock` file stays. Beside it, while it is held, `<folder>/.lock.holder` says who holds it
(process id, command, start time), for the one-line message a second run stops with. A second
run stops at once, unless asked to wait: the CLI's `--wait`, or VOCPROJ_WAIT=1 in the
environment (`VOCPROJ_WAIT=1 make report`, or a notebook's kernel started with it). The lock is
re-entrant within a process, so a function that owns a folder may call another that does.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from vocproj.errors import FolderInUse
from vocproj.io import atomic_write_json

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.holder"
WAIT_VARIABLE = "VOCPROJ_WAIT"
Function = TypeVar("Function", bound=Callable[..., Any])


def waiting_requested() -> bool:
    """Whether a run should wait for a folder's holder rather than stop (VOCPROJ_WAIT=1)."""
    return os.environ.get(WAIT_VARIABLE) == "1"


@contextmanager
def owning(folder: Path, what: str) -> Iterator[None]:
    """Hold `folder`'s lock while the block writes there; `what` names the work in messages."""
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()  # one lock object per folder in this process, however it is named
    lock = FileLock(folder / LOCK_FILE, is_singleton=True)
    first = not lock.is_locked
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not waiting_requested():
            raise FolderInUse(
                f"{folder} is in use by {holder_text(folder)}: wait for it to finish, or "
                f"run again with --wait (VOCPROJ_WAIT=1 for make and notebooks) to start "
                f"{what} when it has."
            ) from None
        print(f"waiting for {holder_text(folder)} to finish with {folder} ...", file=sys.stderr)
        lock.acquire()
    try:
        if first:
            atomic_write_json(folder / HOLDER_FILE, this_process())
        yield
    finally:
        if first:  # while still holding it, so that no next holder's file is removed
            (folder / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()


def owning_run_folder(profile: Any, what: str) -> AbstractContextManager[None]:
    """`owning` the profile's run folder, `what` (the work) said of the profile."""
    return owning(profile.run_dir, f"{what} of {profile.profile}")


def owns_run_folder(what: str) -> Callable[[Function], Function]:
    """Make a function of a profile (its first argument) own the profile's run folder."""
    return owning_first_argument(lambda profile: owning_run_folder(profile, what))


def owns_folder_argument(what: str) -> Callable[[Function], Function]:
    """Make a function whose first argument is a folder own that folder while it writes there."""
    return owning_first_argument(lambda folder: owning(Path(folder), what))


def owning_first_argument(
    lock_of: Callable[[Any], AbstractContextManager[None]],
) -> Callable[[Function], Function]:
    """Run the decorated function inside `lock_of(its first argument)`."""

    def decorate(function: Function) -> Function:
        @functools.wraps(function)
        def owned(first: Any, *args: Any, **kwargs: Any) -> Any:
            with lock_of(first):
                return function(first, *args, **kwargs)

        return owned  # type: ignore[return-value]

    return decorate


def this_process() -> dict[str, object]:
    return {"pid": os.getpid(), "command": command_line(), "started": time.strftime("%F %T")}


def command_line() -> str:
    """This process's command as a user would recognise it (a notebook's kernel says so)."""
    if "ipykernel" in sys.argv[0]:
        return "a notebook's Jupyter kernel"
    if Path(sys.argv[0]).name == "__main__.py":
        return " ".join(["python -m vocproj", *sys.argv[1:]])
    return " ".join([Path(sys.executable).name, *sys.argv])


def holder_text(folder: Path) -> str:
    """`process 1234 (python -m vocproj train --profile tiny), since 2026-12-04 18:53:02`."""
    try:
        holder = json.loads((folder / HOLDER_FILE).read_text())
        return f"process {holder['pid']} ({holder['command']}), since {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
