"""`winopt submit FILE`: validate a job file here, then drop it into the daemon's spool.

The same validator as the daemon's runs first, so a typo is reported at the prompt, not
found later in `rejected/`. A relative draws path is taken from the job file's
directory and written out absolute. The file goes into the spool as `ID.json` by one
atomic rename (a temp name the spool ignores, then the final name), and the daemon takes
ID from the file name: the id printed here is the job's id.

The temp name does not show the id, so nobody watching the spool learns it before the
file is in place (the daemon gives an id to the first file that claims it), and the file
is 0640: in the sticky spool nobody else can replace, rename or rewrite it.

`winopt submit --example` prints the job format, every key commented: the file ships
inside the package (`winopt/job.example.toml`, package data), so an installed host has
it without a source checkout.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from winopt.contracts.access import denied
from winopt.contracts.publish import dump_json, publish_bytes
from winopt.contracts.errors import UserError
from winopt.handlers.jobs.draws import DEFAULT_MAX_DRAWS_BYTES, read_draws
from winopt.handlers.jobs.jobfile import check_name, parse_job_bytes, validate_job
from winopt.handlers.jobs.ids import id_name, new_job_id

#: the daemon (group winopt) reads it; nobody else may change it (the daemon refuses a
from winopt.contracts.state_dir import SPOOL_DIR
#: job file the group can write)
SUBMIT_MODE = 0o640
#: the commented example job, package data of `winopt`
EXAMPLE_NAME = "job.example.toml"


class DaemonSettings(NamedTuple):
    """What `winopt submit`, `cancel` and `sync` need of the daemon's config."""

    state_dir: Path
    draws_dirs: list[Path]
    rigs: list[str]
    max_draws_bytes: int = DEFAULT_MAX_DRAWS_BYTES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, nargs="?",
                        help="job file (.toml or .json; `winopt submit --example` prints the format, commented)")
    parser.add_argument("--example", action="store_true",
                        help="print a commented example job (every key, with what it means) and exit; "
                             "start from it: winopt submit --example > job.toml")
    parser.add_argument("--name", help="job name (overrides the file's `name`)")
    add_daemon_arguments(parser)


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    """--state-dir and --config, shared with `winopt cancel`."""
    parser.add_argument("--state-dir", help="the daemon's state directory (default: the daemon "
                        "config's state_dir, else /var/lib/winopt)")
    parser.add_argument("--config", help="the daemon's config file, for its state_dir, allowed "
                        "draws directories and rigs (default /etc/winopt/daemon.toml when present)")


def daemon_settings(args: argparse.Namespace) -> DaemonSettings:
    """(state dir, allowed draws dirs, rig names, draws size limit) as the daemon will
    see them, from its config file and --state-dir: the checks here are the daemon's own."""
    from winopt.daemon.config import resolve_config

    config = resolve_config(args.config, state_dir=args.state_dir)
    return DaemonSettings(Path(config.state_dir), list(config.draws_dirs()), list(config.rigs),
                          config.jobs.max_draws_bytes)


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


def prepare(path: Path, name: str | None, allowed: list[Path] | None, rigs: list[str] | None,
            max_draws_bytes: int = DEFAULT_MAX_DRAWS_BYTES) -> dict[str, Any]:
    """The job as it goes into the spool: validated, draws absolute, name applied."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    raw = parse_job_bytes(data, str(path), path.suffix)
    if name is not None:
        raw["name"] = check_name(name, "--name", "command line")
    spec = validate_job(raw, source=str(path), allowed_draws_dirs=allowed,
                        base_dir=path.absolute().parent, known_rigs=rigs,
                        read=lambda draws: read_draws(draws, limit=max_draws_bytes))
    raw["draws"] = spec.draws
    return raw


def example_job() -> str:
    """The commented example job shipped with winopt."""
    return resources.files("winopt").joinpath(EXAMPLE_NAME).read_text(encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    if args.example:
        sys.stdout.write(example_job())
        return 0
    if args.file is None:
        raise UserError("give the job file to submit (winopt submit --example prints the format)")
    settings = daemon_settings(args)
    job = prepare(args.file, args.name, settings.draws_dirs, settings.rigs, settings.max_draws_bytes)
    spool = spool_dir(settings.state_dir)
    job_id = new_job_id(job.get("name") or id_name(args.file.stem))
    drop_new(spool, f"{job_id}.json", dump_json(job))
    print(job_id)
    return 0


def drop_new(spool: Path, name: str, data: bytes) -> None:
    """Put `data` into the spool as `name`: written and fsynced under a temp name that
    does not show `name`, then renamed into place (in the sticky spool the rename fails
    rather than replace someone else's file of that name)."""
    try:
        publish_bytes(spool / name, data, SUBMIT_MODE, temp_for="submit")
    except OSError as exc:
        raise UserError(f"{spool / name}: cannot drop the job into the spool: {exc.strerror or exc}") from None
