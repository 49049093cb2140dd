"""`winopt submit FILE`: validate a job file here, then drop it into the daemon's spool.

The same validator as the daemon's runs first, so a typo is reported at the prompt, not
found later in `spool/rejected/`. A relative draws path is taken from the job file's
directory and written out absolute. The file goes into the spool as `ID.json` by one
atomic rename (a temp name the spool ignores, then the final name), and the daemon takes
ID from the file name: the id printed here is the job's id.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

from winopt.access import denied
from winopt.contracts import publish_json
from winopt.errors import UserError
from winopt.handlers.jobfile import check_name, parse_job_bytes, validate_job
from winopt.handlers.spool import SPOOL_DIR, id_name, new_job_id

SUBMIT_MODE = 0o664  # the daemon (group winopt) reads and moves it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="job file (.toml or .json; see etc/job.example.toml)")
    parser.add_argument("--name", help="job name (overrides the file's `name`)")
    add_daemon_arguments(parser)


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    """--state-dir and --config, shared with `winopt cancel`."""
    parser.add_argument("--state-dir", help="the daemon's state directory (default: the daemon "
                        "config's state_dir, else /var/lib/winopt)")
    parser.add_argument("--config", help="the daemon's config file, for its state_dir, allowed "
                        "draws directories and rigs (default /etc/winopt/daemon.toml when present)")


def daemon_settings(args: argparse.Namespace) -> tuple[Path, list[Path], list[str]]:
    """(state dir, allowed draws dirs, rig names) as the daemon will see them, from its
    config file and --state-dir: the checks here are the daemon's own."""
    from winopt.daemon.config import resolve_config

    config = resolve_config(args.config, state_dir=args.state_dir)
    return Path(config.state_dir), list(config.draws_dirs()), list(config.rigs)


def spool_dir(state_dir: Path) -> Path:
    spool = state_dir / SPOOL_DIR
    try:
        is_dir = stat.S_ISDIR(os.stat(spool).st_mode)
    except PermissionError:  # /var/lib/winopt lets only group winopt in
        raise UserError(f"{spool}: {denied(spool, os.W_OK)}") from None
    except OSError:
        is_dir = False
    if not is_dir:
        raise UserError(f"{spool}: no spool directory (is the daemon installed, or --state-dir wrong?)")
    if not os.access(spool, os.W_OK | os.X_OK):
        raise UserError(f"{spool}: {denied(spool, os.W_OK)}")
    return spool


def prepare(path: Path, name: str | None, allowed: list[Path] | None, rigs: list[str] | None) -> dict[str, Any]:
    """The job as it goes into the spool: validated, draws absolute, name applied."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    raw = parse_job_bytes(data, str(path), path.suffix)
    if name is not None:
        raw["name"] = check_name(name, "--name", "command line")
    spec = validate_job(raw, source=str(path), allowed_draws_dirs=allowed,
                        base_dir=path.absolute().parent, known_rigs=rigs)
    raw["draws"] = spec.draws
    return raw


def run(args: argparse.Namespace) -> int:
    state_dir, allowed, rigs = daemon_settings(args)
    job = prepare(args.file, args.name, allowed, rigs)
    spool = spool_dir(state_dir)
    job_id = new_job_id(job.get("name") or id_name(args.file.stem))
    publish_json(spool / f"{job_id}.json", job, mode=SUBMIT_MODE)
    print(job_id)
    return 0
