"""`winopt cancel ID`: ask the daemon to cancel a job, by a request file in the spool.

The request is `spool/ID.cancel`, written under a temp name and renamed into place like
a job file. The daemon cancels a queued job at once and sends a running one SIGTERM (its
snapshot ends `interrupted`, the job `cancelled`). A request for a job that does not
exist, has finished or is someone else's is refused here, so the person typing learns it
now (the daemon refuses it too: only a job's owner, root or the daemon's user may cancel).
"""

from __future__ import annotations

import argparse
import getpass
import os

from winopt.contracts import publish_json
from winopt.contracts.errors import UserError
from winopt.contracts.state_dir import JOB_SUFFIXES
from winopt.handlers.jobs.refs import resolve_job_id
from winopt.handlers.jobs.store import JobStore, may_cancel
from winopt.contracts.clock import now_iso
from winopt.contracts.state_dir import CANCEL_SUFFIX, JOBS_DIR
from winopt.cli.submit import SUBMIT_MODE, add_daemon_arguments, daemon_settings, spool_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="ID", help="the job id `winopt submit` printed, or the short "
                        "form `winopt status` and `winopt jobs` show")
    add_daemon_arguments(parser)


def run(args: argparse.Namespace) -> int:
    state_dir = daemon_settings(args).state_dir
    job_id = resolve_job_id(args.job_id, state_dir / JOBS_DIR)  # the short form `winopt status` shows too
    spool = spool_dir(state_dir)
    store = JobStore(state_dir / JOBS_DIR)
    pending = any((spool / f"{job_id}{s}").exists() for s in JOB_SUFFIXES)
    if not pending:
        try:
            record = store.load(job_id)
        except KeyError:
            raise UserError(f"no job {job_id} in {state_dir}") from None
        except (OSError, ValueError):
            record = None  # not readable by this user: the daemon checks and says why
        if record is not None and record.terminal:
            raise UserError(f"job {job_id} is already {record.state}")
        if record is not None and not may_cancel(os.geteuid(), record):
            raise UserError(f"job {job_id} is {record.owner}'s: only its owner (or root) can cancel it")
    request = {"job_id": job_id, "requested_at": now_iso(), "requested_by": _user()}
    publish_json(spool / f"{job_id}{CANCEL_SUFFIX}", request, mode=SUBMIT_MODE)
    print(f"cancel requested for {job_id}")
    return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
