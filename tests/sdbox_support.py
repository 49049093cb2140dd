"""A booted systemd for tests: the `box` fixture over ../shared/tools/sdbox.sh.

sdbox boots an isolated systemd (never the host's own) in a few seconds; the checkout and
its .venv are bound read-only at their own path, because the box's /tmp is a fresh tmpfs
and a clone under /tmp would otherwise be invisible inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon_support import REPO

SDBOX = REPO.parent / "shared" / "tools" / "sdbox.sh"


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`box(script)` runs bash inside a throw-away booted systemd and returns its stdout."""
    if os.geteuid() != 0 or shutil.which("systemd-run") is None:
        pytest.skip("a booted systemd in a box needs root and systemd")
    assert SDBOX.is_file(), f"{SDBOX} is missing: the shared tools belong beside this checkout"
    state = tmp_path / "box"
    up = subprocess.run([str(SDBOX), "up", str(state), "--bind-ro", str(REPO)],
                        capture_output=True, text=True, timeout=150)
    assert up.returncode == 0, f"sdbox could not boot: {up.stderr.strip()[-600:]}"

    def run(script: str, timeout: float = 60) -> str:
        out = subprocess.run([str(SDBOX), "exec", str(state), "--", "bash", "-c", script],
                             capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"{script}\n{out.stdout}\n{out.stderr}"
        return out.stdout

    try:
        yield run
    finally:
        subprocess.run([str(SDBOX), "down", str(state), "--timeout", "20"], capture_output=True, timeout=60)


def until(condition: str, seconds: int = 20) -> str:
    """A bash poll with a deadline, run inside the box."""
    return f"timeout {seconds} bash -c 'until {condition}; do sleep 0.1; done'"
