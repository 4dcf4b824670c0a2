"""One writer per output folder. A second ``reportgen run`` (or render, merge, shard) into a folder another run
is writing stops at once with one line naming that run's process (exit 5), instead of both runs rewriting and
removing each other's files.

The lock is an OS file lock (``filelock``: ``fcntl.flock`` on POSIX, ``msvcrt`` on Windows) on
``OUT/.reportgen.lock``, released by the OS when its process dies, so a killed run never leaves a stale lock.
Who holds it is written beside it in ``OUT/.reportgen.owner`` (the lock file itself is truncated by every
process that opens it)."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import OutputError

LOCK_FILE = ".reportgen.lock"
OWNER_FILE = ".reportgen.owner"


def _holder(folder: Path) -> str:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        return (f"pid {owner['pid']} on {owner['host']}, started {owner['started']}: "
                f"{' '.join(owner.get('command', []))[:120]}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet said who it is"


@contextlib.contextmanager
def output_folder_lock(folder: Path):
    """Hold the folder's lock for the duration (the folder is created if missing, and removed again on the way
    out if this call created it and nothing but the lock files was written into it)."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror}; choose another --out.") from None
    lock = FileLock(str(folder / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputError(f"{folder} is being written by another reportgen run ({_holder(folder)}); wait for it "
                          "to finish or choose another --out.") from None
    except OSError as exc:
        raise OutputError(f"cannot lock {folder}: {exc.strerror or exc}; choose an --out you can write.") from None
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "command": [Path(sys.argv[0]).name] + sys.argv[1:]}
        (folder / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
        yield folder
    finally:
        (folder / OWNER_FILE).unlink(missing_ok=True)
        lock.release()
        if created and {p.name for p in folder.iterdir()} <= {LOCK_FILE}:
            (folder / LOCK_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
