"""`winopt logs [JOB]`: the daemon's story, for members of group winopt (issue 12, item 3).

Members cannot read the system journal, so this reads what the daemon also writes for
them in the state dir (`daemon/logfile.py`: STATE/daemon.jsonl and its rotated copies).
Without JOB: the daemon's latest lines. With JOB (its id, or the short form `winopt
status` shows): the daemon's lines about that job (accepted and by whom, started,
decisions, transfers, cancelled and by whom, removed), then the end of the job's own
`optimizer.log`, the optimizer's output. `--follow` keeps printing new lines, as
`journalctl -f` does. Root and the adm group can still read the journal, which holds the
same lines with the same fields (`journalctl -u winopt-daemon JOB_ID=ID`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from winopt.contracts.access import denied
from winopt.daemon.logfile import log_files
from winopt.contracts.state_dir import LOG_NAME
from winopt.contracts.errors import UserError
from winopt.contracts.safe_text import safe_text

DEFAULT_LINES = 40
#: seconds between looks at the log with --follow
FOLLOW_INTERVAL = 0.5
#: bytes read at a time from the end of an optimizer.log
TAIL_BLOCK = 8192


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from winopt.cli.submit import add_daemon_arguments

    parser.add_argument("job", nargs="?", metavar="JOB",
                        help="a job id (or the short form winopt status shows): its lines and its optimizer's "
                             "output (default: the daemon's latest lines)")
    parser.add_argument("-n", "--lines", type=int, default=DEFAULT_LINES, metavar="N",
                        help=f"show the last N lines (of each log, with JOB; default {DEFAULT_LINES}; 0: all)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing the daemon's new lines (Ctrl-C ends)")
    add_daemon_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from winopt.handlers.jobs.refs import resolve_job_id
    from winopt.contracts.state_dir import LOG_FILE
    from winopt.contracts.state_dir import JOBS_DIR
    from winopt.cli.submit import daemon_settings

    if args.lines < 0:
        raise UserError(f"--lines must be 0 or more, got {args.lines}")
    state_dir = daemon_settings(args).state_dir
    job = resolve_job_id(args.job, state_dir / JOBS_DIR) if args.job else None
    records = [r for r in read_log(state_dir) if about(r, job)]
    for record in last(records, args.lines):
        print(render(record))
    if job is not None:
        _print_job_output(state_dir / JOBS_DIR / job / LOG_FILE, args.lines)
    if args.follow:
        follow(state_dir, job)
    return 0


def read_log(state_dir: Path) -> list[dict[str, Any]]:
    """Every record of the log and its rotated copies, oldest first; a one-line error
    when there is none or this user may not read it."""
    files = log_files(state_dir)
    if not files:
        if not os.access(state_dir, os.X_OK) and state_dir.exists():
            raise UserError(f"{state_dir}: {denied(state_dir)}")
        raise UserError(f"{state_dir / LOG_NAME}: no daemon log yet (is the daemon running, and is "
                        "--state-dir right?)")
    records: list[dict[str, Any]] = []
    for path in files:
        try:
            data = path.read_bytes()
        except PermissionError:
            raise UserError(f"{path}: {denied(path)}") from None
        except FileNotFoundError:  # rotated away while we read the others
            continue
        records += parse(data)
    return records


def parse(data: bytes) -> list[dict[str, Any]]:
    """The records in `data` (a line cut short by a full disk or a rotation is skipped)."""
    records = []
    for line in data.splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def about(record: dict[str, Any], job: str | None) -> bool:
    """Whether a record belongs in the output: every record, or those about `job`."""
    return job is None or job in (record.get("JOB_ID"), record.get("RUN"))


def last(items: list[Any], n: int) -> list[Any]:
    return items[-n:] if n else items


def render(record: dict[str, Any]) -> str:
    """`2026-01-31 12:00:00 info    job ...: accepted ..., submitted by alice`."""
    at = str(record.get("at", "?"))[:19].replace("T", " ")
    lines = [f"{at} {str(record.get('level', '?')):<7} {safe_text(str(record.get('message', '')))}"]
    if record.get("traceback"):
        lines += ["    " + safe_text(line) for line in str(record["traceback"]).splitlines()]
    return "\n".join(lines)


def _print_job_output(path: Path, lines: int) -> None:
    """The end of the job's optimizer.log, under a line naming it."""
    try:
        text = tail(path, lines)
    except FileNotFoundError:
        print(f"-- {path}: none yet (the job has not started)")
        return
    except PermissionError:
        raise UserError(f"{path}: {denied(path)}") from None
    print(f"-- {path}" + (f" (last {lines} lines)" if lines else ""))
    for line in text.splitlines():
        print(safe_text(line))


def tail(path: Path, n: int) -> str:
    """The last `n` lines of a file (all when n is 0), read from its end: an optimizer's
    log of a long job may be large."""
    with open(path, "rb") as fh:
        if not n:
            return fh.read().decode(errors="replace")
        end = fh.seek(0, os.SEEK_END)
        data, pos = b"", end
        while pos > 0 and data.count(b"\n") <= n:
            pos = max(0, pos - TAIL_BLOCK)
            fh.seek(pos)
            data = fh.read(end - pos)
        return b"\n".join(data.splitlines()[-n:]).decode(errors="replace")


def follow(state_dir: Path, job: str | None) -> None:
    """Print the log's new records as they come, across rotations, until Ctrl-C."""
    for record in new_records(state_dir / LOG_NAME):
        if about(record, job):
            print(render(record), flush=True)


def new_records(path: Path) -> Iterator[dict[str, Any]]:
    """Records appended to `path` from now on; a rotation (a new file under the name) is
    read from its start."""
    fh = open(path, "rb")
    fh.seek(0, os.SEEK_END)
    pending = b""
    try:
        while True:
            chunk = fh.read()
            if chunk:
                pending += chunk
                *whole, pending = pending.split(b"\n")
                yield from parse(b"\n".join(whole))
                continue
            try:
                rotated = os.stat(path).st_ino != os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                rotated = False
            if rotated:
                fh.close()
                fh, pending = open(path, "rb"), b""
                continue
            sys.stdout.flush()
            time.sleep(FOLLOW_INTERVAL)
    finally:
        fh.close()
