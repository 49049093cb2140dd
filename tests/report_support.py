"""Shared by the issue-16 tests: a report rendered by headless Chromium, its plots read
back from the DOM, and a dashboard process found by the URL it prints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from optimize_support import REPO

#: the sections `winopt report` writes, each one plot
SECTIONS = ("history", "chance", "importances", "slice", "parallel", "skips", "rates")


def chromium() -> str:
    """The headless browser `make test` installs (Debian package chromium)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: make deps (or apt-get install chromium) installs it"
    return found


def rendered_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium with every host name
    unresolvable: a plot that needed the network would not be drawn."""
    argv = [chromium(), "--headless", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=20000",
            "--dump-dom", page.resolve().as_uri()]
    if os.geteuid() == 0:
        argv.insert(1, "--no-sandbox")  # Chromium refuses to run as root inside its sandbox
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def section(dom: str, anchor: str) -> str:
    """The HTML of one `<section id=anchor>` of the rendered report."""
    found = re.search(rf'<section id="{anchor}">(.*?)</section>', dom, re.S)
    assert found, f"no section {anchor} in the report"
    return found.group(1)


def plot_counts(html: str) -> dict[str, int]:
    """What plotly drew in one section: its SVG roots, traces, markers and bars."""
    return {
        "svg": html.count('class="main-svg"'),
        "traces": len(re.findall(r'<g class="trace[ "]', html)),
        "points": len(re.findall(r'<path class="point"', html)),
        "bars": len(re.findall(r'<g class="point"><path', html)),
        "missing": html.count('class="missing"'),
    }


def winopt(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winopt", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO, env={**os.environ, **(env or {})})


def without_module(tmp: Path, module: str) -> dict[str, str]:
    """An environment in which `import module` fails, as on a host without the extra."""
    stub = tmp / f"no-{module}"
    (stub / module).mkdir(parents=True, exist_ok=True)
    (stub / module / "__init__.py").write_text(f"raise ImportError({f'No module named {module!r}'!r})\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(stub), os.environ.get("PYTHONPATH")]))}


def get_json(url: str) -> Any:
    """The JSON a URL answers with; None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return orjson.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def dashboard_url(log: Path) -> str | None:
    """The URL `winopt dashboard` printed on its first line, once it has."""
    try:
        found = re.search(r"on (http://\S+/) ", log.read_text())
    except FileNotFoundError:
        return None
    return found.group(1) if found else None


def study_names(url: str) -> list[str]:
    """The studies optuna-dashboard's API lists."""
    answer = get_json(url + "api/studies") or {}
    return [s.get("study_name") for s in answer.get("study_summaries") or []]
