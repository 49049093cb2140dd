"""`winopt jobs`: every job on record, and `--rejected`: the refused files (issue 12, item 7).

`winopt status` tracks active jobs and the newest finished ones; this lists every job
directory (STATE/jobs/ID/state.json, which the group reads), whatever `finished_kept`
says, so a person can find an old job and clean it (`winopt clean`). Columns: ID (short
form; --wide: whole), NAME, STATE (as `winopt status` shows it while the daemon runs),
AGE (since it was accepted), OWNER. `--rejected` lists refused spool files with why:
a member's own by default (the group may read them all: `--all`), everyone's for root
and the daemon's user. Tables fit the terminal (`winopt.cli.table`), every name in them
escaped (`winopt.contracts.safe_text`: a refused file may be named anything); `--json` for scripts.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from winopt.contracts.clock import iso_from_timestamp
from winopt.contracts.access import denied
from winopt.contracts.errors import UserError
from winopt.handlers.jobs.cleanup import Rights, ended_at, refused_at, refused_names, state_owner
from winopt.handlers.jobs.refs import short_id
from winopt.handlers.jobs.store import JobRecord, JobStore
from winopt.handlers.jobs.spool import Spool
from winopt.contracts.state_dir import JOBS_DIR, REJECTED_DIR
from winopt.contracts.safe_text import safe_text
from winopt.cli.table import ago, fit_table, terminal_width, wrap_all

JOB_COLUMNS = ("ID", "NAME", "STATE", "AGE", "OWNER")
REJECTED_COLUMNS = ("FILE", "AGE", "OWNER", "REASON")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from winopt.cli.submit import add_daemon_arguments

    parser.add_argument("--rejected", action="store_true",
                        help="list refused spool files and why they were refused (yours; root and the "
                             "daemon's user: everyone's)")
    parser.add_argument("--all", action="store_true", help="with --rejected: everyone's refused files")
    parser.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    parser.add_argument("--wide", action="store_true",
                        help="whole ids and cells whatever the terminal's width (default: fit $COLUMNS or "
                             "the terminal, 80 when piped)")
    add_daemon_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from winopt.cli.submit import daemon_settings

    state_dir = daemon_settings(args).state_dir
    width = None if args.wide else terminal_width()
    if args.rejected:
        entries = rejected_entries(state_dir, everyone=args.all)
        _print(entries, args.json, lambda: rejected_table(entries, width))
    else:
        entries = job_entries(state_dir)
        _print(entries, args.json, lambda: jobs_table(entries, width))
    return 0


def _print(entries: list[dict[str, Any]], as_json: bool, table: Any) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print("\n".join(table()))


# ---------------------------------------------------------------- jobs
def job_entries(state_dir: Path) -> list[dict[str, Any]]:
    """Every job on record, oldest first, its state as the running daemon shows it."""
    jobs_dir = state_dir / JOBS_DIR
    if not os.access(jobs_dir, os.R_OK | os.X_OK) and os.path.exists(state_dir):
        raise UserError(f"{jobs_dir}: {denied(jobs_dir)}")
    live = _status_jobs(state_dir)
    return [_job_entry(record, live.get(record.id) or {}, jobs_dir) for record in JobStore(jobs_dir).jobs()]


def _status_jobs(state_dir: Path) -> dict[str, Any]:
    """status.json's jobs (the daemon's view: interrupted, cancelling), when readable."""
    try:
        doc = orjson.loads((state_dir / "status.json").read_bytes())
        return doc.get("jobs") or {} if isinstance(doc, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _job_entry(record: JobRecord, live: dict[str, Any], jobs_dir: Path) -> dict[str, Any]:
    state = str(live.get("state") or record.state)
    if record.cancel_requested and state == "running":
        state = "cancelling"
    ended = ended_at(record) if record.terminal else None
    return {"id": record.id, "name": record.spec.name, "state": state, "owner": record.owner,
            "owner_uid": record.owner_uid, "accepted_at": record.accepted_at,
            "ended_at": iso_from_timestamp(ended) if ended is not None else None, "dir": str(jobs_dir / record.id)}


def jobs_table(entries: list[dict[str, Any]], width: int | None) -> list[str]:
    if not entries:
        return ["no jobs on record"]
    now = datetime.now(timezone.utc)
    rows = [tuple(map(safe_text, ((short_id(e["id"]) if width else e["id"]), e["name"] or "-", e["state"],
                                  _age(e["accepted_at"], now), e["owner"] or "-"))) for e in entries]
    return fit_table(JOB_COLUMNS, rows, width, flexible=("NAME", "OWNER"))


# ---------------------------------------------------------------- refused files
def rejected_entries(state_dir: Path, *, everyone: bool = False) -> list[dict[str, Any]]:
    """Refused files, oldest first: this user's (everyone's for root, the daemon's user
    or `everyone`), each with its owner and the reason from its `.error`."""
    rejected_dir = state_dir / REJECTED_DIR
    if not os.access(rejected_dir, os.R_OK | os.X_OK) and os.path.exists(state_dir):
        raise UserError(f"{rejected_dir}: {denied(rejected_dir)}")
    rights = Rights(os.geteuid(), state_owner(state_dir))
    spool = Spool(state_dir, allowed_draws_dirs=())
    entries = []
    for name in refused_names(rejected_dir):
        try:
            uid = os.lstat(rejected_dir / name).st_uid
        except FileNotFoundError:
            continue
        if everyone or rights.privileged or uid == rights.uid:
            entry = spool.rejected_entry(name)
            entries.append({"name": name, "owner": entry["owner"], "owner_uid": uid,
                            "at": iso_from_timestamp(refused_at(rejected_dir, name)), "reason": entry["reason"]})
    return sorted(entries, key=lambda e: (e["at"], e["name"]))


def rejected_table(entries: list[dict[str, Any]], width: int | None) -> list[str]:
    if not entries:
        return ["no refused files"]
    now = datetime.now(timezone.utc)
    rows = [tuple(map(safe_text, (e["name"], _age(e["at"], now), e["owner"] or "-", _reason(e)))) for e in entries]
    if width is None:
        return fit_table(REJECTED_COLUMNS, rows, None)
    table = fit_table(REJECTED_COLUMNS, rows, width, flexible=("REASON", "FILE"))
    notes = [f"{name}: {reason}" for (name, *_, reason), line in zip(rows, table[1:]) if not line.endswith(reason)]
    return table + (["", *wrap_all(notes, width)] if notes else [])


def _reason(entry: dict[str, Any]) -> str:
    """The reason without the `spool/NAME: ` it starts with (the FILE column has it)."""
    reason = " ".join(str(entry.get("reason") or "?").split())
    return reason.split(": ", 1)[-1] if reason.startswith("spool/") else reason


def _age(iso: str | None, now: datetime) -> str:
    """The age of an ISO time, '-' without one."""
    try:
        return ago((now - datetime.fromisoformat(iso)).total_seconds()) if iso else "-"
    except (TypeError, ValueError):
        return "?"
