"""systemd units as `systemd-analyze security` rates them, offline (no booted systemd)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest


def exposure(text: str) -> float:
    """The overall exposure level in `systemd-analyze security` output."""
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", text)
    assert found, f"no exposure level in:\n{text}"
    return float(found.group(1))


def offline_exposure(unit_file: Path) -> tuple[float, str]:
    """(exposure, the report) of a unit file; skips the test where this host cannot say
    (no systemd-analyze, or one older than 250, which has no --offline)."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("no systemd-analyze (Debian package systemd)")
    version = subprocess.run([analyze, "--version"], capture_output=True, text=True).stdout
    if int(re.search(r"systemd (\d+)", version).group(1)) < 250:  # type: ignore[union-attr]
        pytest.skip(f"security --offline needs systemd >= 250: {version.splitlines()[0]}")
    proc = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(unit_file)],
                          capture_output=True, text=True)
    return exposure(proc.stdout + proc.stderr), proc.stdout
