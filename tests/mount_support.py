"""A real small filesystem for the tests of full-disk faults: a tmpfs of a few MB mounted
(as root) over a test's directory, and a filler file that takes every free byte.

Mounting needs root (CAP_SYS_ADMIN); without it the tests that need one are skipped, with
the reason. The mount is lazily detached at the end, whatever the test left open in it."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(path: Path, size: str = "8m") -> Iterator[Path]:
    """`path` (created) as a tmpfs of `size` for the duration of the block."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path, name: str = "filler") -> Path:
    """A file in `directory` that takes all the space left on its filesystem (written
    until ENOSPC); delete it to give the space back."""
    path = directory / name
    block = b"\0" * (1 << 16)
    with open(path, "wb", buffering=0) as fh:
        while True:
            try:
                fh.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        for size in (4096, 512, 1):  # the last pages and bytes too
            try:
                while fh.write(b"\0" * size):
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return path


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize
