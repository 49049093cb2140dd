"""Check the import contract ([tool.importlinter] in pyproject.toml) on the installed layout.

import-linter finds a package's modules by walking its folder, but winopt's subpackages live
at the repository root (`daemon/` installs as `winopt.daemon`, see `package-dir`). This stages
the sources as they install, by the same `package-dir` table, and runs `lint-imports` there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "build" / "import-check"


def stage() -> None:
    """Copy each package's own .py files to where it installs (subpackages follow)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shutil.rmtree(STAGE, ignore_errors=True)
    for package, folder in pyproject["tool"]["setuptools"]["package-dir"].items():
        target = STAGE.joinpath(*package.split("."))
        for source in (ROOT / folder).rglob("*.py"):
            dest = target / source.relative_to(ROOT / folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)


def main() -> int:
    stage()
    env = {**os.environ, "PYTHONPATH": str(STAGE)}
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.call([str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=STAGE, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
