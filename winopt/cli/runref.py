"""`JOB|DIR` for `winopt show`, `report` and `dashboard` (issue 16): one run, wherever it
lives, with what the daemon knows of it.

A directory names a run directory (`winopt optimize --out DIR`, a watched run, a job's
directory); anything else is a job id, whole or in the short form `winopt status` shows,
looked up in the daemon's state dir. The daemon's status.json adds what only it knows
(the rate and ETA it keeps, the latest decision, the NPZ and each rig's copy) when it can
be read; a run directory is shown without it otherwise.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from winopt.contracts.errors import UserError
from winopt.contracts.schemas import CONFIG_NAME


@dataclass
class RunRef:
    run_dir: Path
    name: str  # the run's name in status.json (a job's id, a watched run's name)
    job_id: str | None = None
    status: dict[str, Any] | None = None  # the whole status.json, when it could be read
    entry: dict[str, Any] = field(default_factory=dict)  # status.json's runs[name]
    job: dict[str, Any] = field(default_factory=dict)  # status.json's jobs[job_id]
    #: a `workers = "rigs"` job's storage when no --storage is given (None for other runs)
    shared_storage: str | None = None

    def rigs(self) -> dict[str, dict[str, Any]]:
        """Each rig's state of this run's NPZ, from status.json: name -> entry."""
        rigs = (self.status or {}).get("rigs") or {}
        found = {}
        for rig, entry in sorted(rigs.items()):
            state = ((entry or {}).get("runs") or {}).get(self.name)
            if state:
                found[rig] = {"target": entry.get("target"), **state}
        return found


def add_run_arguments(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    from winopt.cli.submit import add_daemon_arguments

    parser.add_argument("run", nargs="?" if optional else None, metavar="JOB|DIR",
                        help="a run directory (winopt optimize --out DIR), or a spool job's id "
                             "(or the short form winopt status shows)")
    parser.add_argument("--storage", metavar="URL",
                        help="the run's Optuna storage (default: the run directory's optuna.db)")
    parser.add_argument("--study", metavar="NAME",
                        help="the study's name (default: the snapshot's study_name)")
    add_daemon_arguments(parser)


def resolve_run(args: argparse.Namespace) -> RunRef:
    """The run `args.run` names, with its status.json entries when there are any."""
    text = args.run
    if os.path.isdir(text):
        run_dir = Path(text).resolve()
        status = _read_status(args, quiet=True)
        name, entry = _entry_for_dir(status, run_dir)
        if entry is None and not is_run_dir(run_dir):
            raise UserError(f"{text}: not a run (no {CONFIG_NAME}, no optuna.db, no job state, and no daemon "
                            "tracks it); give a run directory (winopt optimize --out DIR) or a job id")
        job_id = entry.get("job_id") if entry else None
        job = ((status or {}).get("jobs") or {}).get(job_id) or {} if job_id else {}
        return RunRef(run_dir, name or run_dir.name, job_id, status, entry or {}, job, _shared_storage(args, run_dir))
    if os.sep in text or (os.altsep and os.altsep in text):  # a path, never a job id
        problem = "not a directory" if os.path.exists(text) else "no such directory"
        raise UserError(f"{text}: {problem}; give a run directory (winopt optimize --out DIR) or a job id")
    from winopt.cli.submit import daemon_settings
    from winopt.handlers.jobs.refs import resolve_job_id
    from winopt.handlers.jobs.spooldirs import JOBS_DIR

    state_dir = daemon_settings(args).state_dir
    job_id = resolve_job_id(text, state_dir / JOBS_DIR)
    run_dir = state_dir / JOBS_DIR / job_id
    if not run_dir.is_dir():
        raise UserError(f"job {job_id} has no directory yet (still in the spool?): {run_dir}")
    status = _read_status(args, quiet=True)
    entry = ((status or {}).get("runs") or {}).get(job_id) or {}
    job = ((status or {}).get("jobs") or {}).get(job_id) or {}
    return RunRef(run_dir, job_id, job_id, status, entry, job, _shared_storage(args, run_dir))


def _shared_storage(args: argparse.Namespace, run_dir: Path) -> str | None:
    """Where a `workers = "rigs"` job's study is: $WINOPT_STORAGE (set in this shell, or by
    the daemon for the children it runs), else the daemon config's [optuna] storage; None
    for a run with its own optuna.db."""
    from winopt.handlers.report.trials import rigs_job

    if args.storage or not rigs_job(run_dir):
        return None
    if os.environ.get("WINOPT_STORAGE"):
        return os.environ["WINOPT_STORAGE"]
    try:
        from winopt.daemon.config import resolve_config

        return resolve_config(args.config, state_dir=args.state_dir).optuna.storage or None
    except (OSError, ValueError, UserError):  # no readable config: the error asks for --storage
        return None


def is_run_dir(path: Path) -> bool:
    """Whether `path` holds a run: a snapshot, a study, or a spool job's state (a queued
    job, or a `workers = "rigs"` job, whose study is in the shared storage)."""
    from winopt.contracts.state_dir import STATE_FILE

    return any((path / name).is_file() for name in (CONFIG_NAME, "optuna.db", STATE_FILE))


def _read_status(args: argparse.Namespace, *, quiet: bool) -> dict[str, Any] | None:
    """status.json of the daemon `args` point at; None when there is none to read."""
    from winopt.daemon.status import STATUS_NAME

    try:
        from winopt.cli.submit import daemon_settings

        path = daemon_settings(args).state_dir / STATUS_NAME
        doc = orjson.loads(path.read_bytes())
    except (OSError, ValueError, UserError):
        if quiet:
            return None
        raise
    return doc if isinstance(doc, dict) else None


def _entry_for_dir(status: dict[str, Any] | None, run_dir: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The status.json run whose path is `run_dir`."""
    for name, entry in ((status or {}).get("runs") or {}).items():
        path = (entry or {}).get("path")
        if isinstance(path, str) and _same(path, run_dir):
            return name, entry
    return None, None


def _same(path: str, run_dir: Path) -> bool:
    try:
        return Path(path).resolve() == run_dir
    except (OSError, RuntimeError):
        return False
