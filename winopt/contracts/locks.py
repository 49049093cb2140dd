"""Locks beside the files they guard (SPEC §3).

`NAME.lock` guards the multi-step publish of `NAME` (an NPZ and its meta, say). Lock files
are never deleted — deleting one races with a process that just opened it — and are
group-writable so the daemon and the users of group `winopt` can share them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from filelock import FileLock

LOCK_MODE = 0o664


def lock_path(target: str | os.PathLike[str]) -> Path:
    """`NAME.lock` beside `NAME`."""
    target = Path(target)
    return target.with_name(target.name + ".lock")


def lock_for(target: str | os.PathLike[str], timeout: float = -1, **options: Any) -> FileLock:
    """The inter-process lock guarding `target`; use as a context manager.

    `timeout=-1` waits for ever; a positive timeout raises `filelock.Timeout`. `options`
    go to `FileLock` as they are (the job runner passes `on_acquired` to hand the locked
    descriptor to the child it starts, and `thread_local=False`)."""
    return FileLock(lock_path(target), timeout=timeout, mode=LOCK_MODE, **options)
