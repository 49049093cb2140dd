"""`winopt clean`: remove finished jobs, refused files and rotated decision logs (issue 12,
item 7).

    winopt clean --older-than 30d      your finished jobs and refused files older than 30 days
    winopt clean ID ...                these finished jobs of yours, whatever their age
    winopt clean ... --dry-run         only list what would go

What may go is decided by `handlers.cleanup` (a member: her own; root and the daemon's
user: anyone's, and rotated decision logs too; a running job: never). Members cannot
write the state dir, so the command drops a request into the spool (`spool/clean-
TOKEN.clean`), waits for the daemon to take it, and reports what is gone; the daemon
checks every item again against the request file's owner (`daemon/adapters/clean.py`). Root
(or the daemon's user) with no daemon running acts directly, holding the daemon's
instance lock so none starts meanwhile.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

import filelock

from winopt.contracts.locks import lock_for
from winopt.contracts.errors import UserError
from winopt.handlers.jobs.cleanup import (
    Plan,
    Rights,
    describe,
    ended_at,
    job_problem,
    plan_older_than,
    refused_at,
    remove_decision_log,
    remove_job_dir,
    remove_refused,
    state_owner,
)
from winopt.handlers.jobs.store import JobStore
from winopt.contracts.clock import now_iso
from winopt.contracts.state_dir import JOBS_DIR, REJECTED_DIR
from winopt.contracts.safe_text import safe_text
from winopt.cli.table import ago

#: seconds to wait for the daemon to take a request
TAKE_TIMEOUT = 30.0
POLL_INTERVAL = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from winopt.cli.submit import add_daemon_arguments

    parser.add_argument("job_ids", nargs="*", metavar="ID",
                        help="finished jobs to remove, whatever their age (ids, or the short forms winopt jobs shows)")
    parser.add_argument("--older-than", metavar="DURATION",
                        help="remove your finished jobs and refused files older than this (30d, 12h, 90m, seconds); "
                             "root and the daemon's user: everyone's, and rotated decision logs")
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    parser.add_argument("--timeout", type=float, default=TAKE_TIMEOUT, metavar="S",
                        help=f"seconds to wait for the daemon to take the request (default {TAKE_TIMEOUT:g})")
    add_daemon_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from winopt.contracts.strict import parse_duration
    from winopt.cli.submit import daemon_settings

    state_dir = daemon_settings(args).state_dir
    older_than = parse_duration(args.older_than) if args.older_than else None
    if not args.job_ids and older_than is None:
        raise UserError("say what to clean: job ids, or --older-than DURATION (e.g. winopt clean --older-than 30d)")
    rights = Rights(os.geteuid(), _state_owner(state_dir))
    plan = _named_jobs(state_dir, args.job_ids, rights, older_than) if args.job_ids else \
        plan_older_than(state_dir, rights, older_than or 0.0)
    if not plan:
        print(f"nothing to clean{_older(older_than)}")
        return 0
    if args.dry_run:
        for line in _describe_items(state_dir, plan):
            print(safe_text(f"would remove {line}"))
        print(f"{describe(plan)} would be removed")
        return 0
    if rights.privileged:
        done = _directly(state_dir, plan)
        if done is not None:
            return _report(state_dir, plan, done)
    return _through_daemon(state_dir, plan, older_than, args.timeout)


def _state_owner(state_dir: Path) -> int:
    try:
        return state_owner(state_dir)
    except FileNotFoundError:
        raise UserError(f"{state_dir}: no state dir (is the daemon installed, or --state-dir wrong?)") from None


def _named_jobs(state_dir: Path, texts: list[str], rights: Rights, older_than: float | None) -> Plan:
    """The jobs named on the command line, each checked now (one line for the first
    that may not go)."""
    from winopt.handlers.jobs.refs import resolve_job_id

    store = JobStore(state_dir / JOBS_DIR)
    ids = list(dict.fromkeys(resolve_job_id(text, store.root) for text in texts))
    now = time.time()
    for job_id in ids:
        try:
            record = store.load(job_id)
        except KeyError:
            raise UserError(f"no job {job_id} in {state_dir}") from None
        problem = job_problem(record, rights, older_than, now)
        if problem:
            raise UserError(problem)
    return Plan(jobs=tuple(ids))


# ---------------------------------------------------------------- doing it
def _directly(state_dir: Path, plan: Plan) -> Plan | None:
    """Remove `plan` here when no daemon runs (its instance lock is free, and held
    meanwhile); None when one runs (it must do it: it is the one writer)."""
    lock = lock_for(state_dir / "daemon", timeout=0)  # the daemon's own instance lock
    try:
        lock.acquire()
    except (filelock.Timeout, OSError):
        return None
    try:
        store = JobStore(state_dir / JOBS_DIR)
        for job_id in plan.jobs:
            remove_job_dir(store, job_id)
        for name in plan.rejected:
            remove_refused(state_dir / REJECTED_DIR, name)
        for name in plan.decision_logs:
            remove_decision_log(state_dir, name)
    finally:
        lock.release()
    return plan


def _through_daemon(state_dir: Path, plan: Plan, older_than: float | None, timeout: float) -> int:
    """Drop a request, wait for the daemon to take it, then report what is gone."""
    from winopt.contracts import publish_json
    from winopt.daemon.adapters.clean import request_name
    from winopt.cli.submit import SUBMIT_MODE, spool_dir

    spool = spool_dir(state_dir)
    request = spool / request_name(secrets.token_hex(4))
    publish_json(request, {**plan.to_dict(), "older_than_s": older_than, "requested_at": now_iso(),
                           "requested_by": Rights(os.geteuid(), os.geteuid()).name}, mode=SUBMIT_MODE)
    deadline = time.monotonic() + timeout
    while os.path.lexists(request):
        if time.monotonic() >= deadline:
            print(f"winopt: the daemon did not take the clean request within {timeout:g} s (is it running?); "
                  f"{request} stays for its next start", file=sys.stderr)
            return 1
        time.sleep(POLL_INTERVAL)
    return _report(state_dir, plan, _gone(state_dir, plan))


def _gone(state_dir: Path, plan: Plan) -> Plan:
    """What of `plan` is no longer there."""
    return Plan(tuple(j for j in plan.jobs if not os.path.lexists(state_dir / JOBS_DIR / j)),
                tuple(n for n in plan.rejected if not os.path.lexists(state_dir / REJECTED_DIR / n)),
                tuple(n for n in plan.decision_logs if not os.path.lexists(state_dir / n)))


def _report(state_dir: Path, plan: Plan, gone: Plan) -> int:
    """A line per item removed, one per item kept; exit 1 when something stayed."""
    for line in _describe_items(state_dir, gone, done=True):
        print(safe_text(f"removed {line}"))
    stayed = Plan(*(tuple(x for x in getattr(plan, k) if x not in getattr(gone, k)) for k in
                    ("jobs", "rejected", "decision_logs")))
    for line in _describe_items(state_dir, stayed):
        print(safe_text(f"kept {line} (the daemon says why: winopt logs)"))
    print(f"removed {describe(gone)}" + (f"; kept {describe(stayed)}" if stayed else ""))
    return 1 if stayed else 0


def _describe_items(state_dir: Path, plan: Plan, done: bool = False) -> list[str]:
    """`job 0131-1a2b3c (name, complete, ended 40d ago)`, `refused file x.toml (...)`."""
    from winopt.handlers.jobs.refs import short_id

    now = time.time()
    store = JobStore(state_dir / JOBS_DIR)
    lines = []
    for job_id in plan.jobs:
        detail = ""
        if not done:
            try:
                record = store.load(job_id)
                ended = ended_at(record)
                detail = f" ({record.spec.name or '-'}, {record.state}" + \
                    (f", ended {ago(now - ended)} ago)" if ended else ")")
            except (KeyError, OSError, ValueError, TypeError):
                pass
        lines.append(f"job {short_id(job_id)}{detail}")
    for name in plan.rejected:
        when = "" if done else f" (refused {ago(now - refused_at(state_dir / REJECTED_DIR, name))} ago)"
        lines.append(f"refused file {name}{when}")
    lines += [f"decision log {name}" for name in plan.decision_logs]
    return lines


def _older(older_than: float | None) -> str:
    from winopt.handlers.jobs.cleanup import duration_text

    return f" older than {duration_text(older_than)}" if older_than is not None else ""
