"""Accepted jobs: `jobs/ID/` and its state.json, the job's state machine (SPEC §5).

    jobs/ID/       an accepted job: job.toml|json (the bytes accepted), draws.json (the
                   draws file's bytes, checked), state.json, and the optimizer's output
                   (it is the run's --out directory)
    jobs/.ID.tmp/  a job directory being built (renamed to jobs/ID/ when whole)

A job is queued, then running (again after each resume), then complete, failed or
cancelled; `TRANSITIONS` is the whole machine, and state.json (published atomically)
is the only record of where a job stands.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from winopt.handlers.jobs.ids import is_job_id, printable
from winopt.contracts.clock import now_iso
from winopt.contracts import lock_for, publish_bytes, publish_json
from winopt.contracts.publish import dump_json, fsync_dir
from winopt.contracts.beneath import Owner
from winopt.handlers.jobs.draws import DRAWS_COPY
from winopt.contracts.job import JobSpec
from winopt.contracts.state_dir import STATE_FILE

log = logging.getLogger("winopt.jobs")

CANCEL_REQUESTED = "cancel requested"
#: a job directory and the daemon's files in it: nobody else writes what a job runs on
JOB_DIR_MODE, JOB_FILE_MODE = 0o755, 0o644
STATE_SCHEMA_VERSION = 1
JOB_STATES = ("queued", "running", "complete", "failed", "cancelled")
TERMINAL = frozenset({"complete", "failed", "cancelled"})
#: state -> states it may move to ("running" -> "running" is a resume)
TRANSITIONS = {
    "queued": frozenset({"running", "cancelled"}),
    "running": frozenset({"running", "complete", "failed", "cancelled"}),
}
HISTORY_LIMIT = 50



@dataclass(frozen=True)
class JobRecord:
    """What `jobs/ID/state.json` holds: the job's state and the spec it runs."""

    id: str
    state: str
    spec: JobSpec
    source: str
    job_file: str
    accepted_at: str
    accepted_ns: int
    updated_at: str
    attempts: int = 0
    interrupts: int = 0
    #: retries after a failure on a full disk (jobrunner: at most max_fault_retries in a row)
    fault_retries: int = 0
    cancel_requested: bool = False
    exit_code: int | None = None
    error: str | None = None
    history: tuple[dict[str, Any], ...] = ()
    #: whose job it is: the job file's st_uid when the daemon read it (a later rename or
    #: copy cannot change it); None for jobs accepted before owners were recorded
    owner: str | None = None
    owner_uid: int | None = None
    #: the copy of the draws file in the job directory that the optimizer reads (None for
    #: jobs accepted before copies were made: they read `spec.draws`)
    draws_file: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def priority(self) -> int:
        return self.spec.priority

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": STATE_SCHEMA_VERSION,
            "id": self.id, "state": self.state, "source": self.source, "job_file": self.job_file,
            "accepted_at": self.accepted_at, "accepted_ns": self.accepted_ns,
            "updated_at": self.updated_at, "attempts": self.attempts, "interrupts": self.interrupts,
            "fault_retries": self.fault_retries, "cancel_requested": self.cancel_requested, "exit_code": self.exit_code,
            "error": self.error, "spec": self.spec.to_dict(), "history": list(self.history),
            "owner": self.owner, "owner_uid": self.owner_uid, "draws_file": self.draws_file,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        values = {k: v for k, v in data.items() if k != "schema_version"}
        values["spec"] = JobSpec.from_dict(values["spec"])
        values["history"] = tuple(values.get("history", ()))
        return cls(**values)


class JobStore:
    """The job directories under `jobs/`: create, read, and move through the states.

    Every write of a state file is an atomic publish under the state file's lock, so the
    spool scanner (cancel requests) and the runner (transitions) never lose each other's
    update, in one process or two."""

    def __init__(self, jobs_dir: str | os.PathLike[str]) -> None:
        self.root = Path(jobs_dir)

    def dir(self, job_id: str) -> Path:
        return self.root / job_id

    def exists(self, job_id: str) -> bool:
        return (self.dir(job_id) / STATE_FILE).is_file()

    def load(self, job_id: str) -> JobRecord:
        """The job's record; `KeyError` when there is no such job."""
        try:
            data = orjson.loads((self.dir(job_id) / STATE_FILE).read_bytes())
        except FileNotFoundError:
            raise KeyError(job_id) from None
        return JobRecord.from_dict(data)

    def jobs(self) -> list[JobRecord]:
        """Every job, oldest accepted first. An unreadable state file is logged and skipped
        (it cannot happen through this module: every write is atomic)."""
        records = []
        for entry in sorted(self.root.iterdir()) if self.root.is_dir() else ():
            if entry.name.startswith(".") or not is_job_id(entry.name):
                continue
            try:
                records.append(self.load(entry.name))
            except (KeyError, OSError, ValueError, TypeError) as exc:
                log.warning("job %s: unreadable %s (%s); skipped", entry.name, STATE_FILE, exc)
        return sorted(records, key=lambda r: (r.accepted_ns, r.id))

    def create(
        self, job_id: str, data: bytes, suffix: str, spec: JobSpec, source: str, *,
        owner: Owner | None = None, draws: bytes | None = None,
    ) -> JobRecord:
        """Build `jobs/ID/` (the accepted bytes, the draws file's checked bytes, a queued
        state) under a temp name and rename it into place, so a job directory is either
        whole or absent: a failure on the way removes the temp directory and raises.

        The directory and its files are the daemon's alone (0755/0644 whatever the umask
        lets the group do elsewhere): nobody else may change what a job runs on."""
        at = now_iso()
        record = JobRecord(
            id=job_id, state="queued", spec=spec, source=printable(source), job_file=f"job{suffix}",
            accepted_at=at, accepted_ns=time.time_ns(), updated_at=at,
            history=({"state": "queued", "at": at, "reason": f"accepted from {printable(source)}"},),
            owner=owner.name if owner else None, owner_uid=owner.uid if owner else None,
            draws_file=DRAWS_COPY if draws is not None else None,
        )
        state = dump_json(record.to_dict())  # what cannot be written fails before any file is
        tmp = self.root / f".{job_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(mode=JOB_DIR_MODE)
            publish_bytes(tmp / record.job_file, data, mode=JOB_FILE_MODE)
            if draws is not None:
                publish_bytes(tmp / DRAWS_COPY, draws, mode=JOB_FILE_MODE)
            publish_bytes(tmp / STATE_FILE, state, mode=JOB_FILE_MODE)
            os.rename(tmp, self.dir(job_id))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.root)
        return record

    def update(self, job_id: str, change: Callable[[JobRecord], JobRecord]) -> JobRecord:
        """Read, change and atomically rewrite one job's state, under its lock."""
        path = self.dir(job_id) / STATE_FILE
        with lock_for(path):
            record = change(self.load(job_id))
            publish_json(path, record.to_dict(), mode=JOB_FILE_MODE)
        return record

    def transition(self, job_id: str, state: str, reason: str, **changes: Any) -> JobRecord:
        """Move a job to `state` (checked against TRANSITIONS), with a history line."""

        def change(record: JobRecord) -> JobRecord:
            if state not in TRANSITIONS.get(record.state, ()):
                raise ValueError(f"job {job_id}: no transition {record.state} -> {state}")
            return _with_history(replace(record, state=state, **changes), state, reason)

        return self.update(job_id, change)

    def request_cancel(self, job_id: str, by: str | None = None) -> JobRecord:
        """Record a cancel request (the runner acts on it) and who made it (`by`, in the
        history: `cancel_requester`); a no-op on a finished job."""

        def change(record: JobRecord) -> JobRecord:
            if record.terminal or record.cancel_requested:
                return record
            reason = f"{CANCEL_REQUESTED} by {by}" if by else CANCEL_REQUESTED
            return _with_history(replace(record, cancel_requested=True), record.state, reason)

        return self.update(job_id, change)

    def remove_temp_dirs(self) -> None:
        """Delete job directories a crash left half built (`jobs/.ID.tmp`)."""
        for entry in self.root.glob(".*.tmp"):
            log.info("removing half-built job directory %s", entry.name)
            shutil.rmtree(entry, ignore_errors=True)


def cancel_requester(record: JobRecord) -> str | None:
    """Who asked to cancel the job (the owner of the cancel request), from its history."""
    for entry in reversed(record.history):
        reason = str(entry.get("reason") or "")
        if reason.startswith(f"{CANCEL_REQUESTED} by "):
            return reason.removeprefix(f"{CANCEL_REQUESTED} by ")
    return None


def _with_history(record: JobRecord, state: str, reason: str) -> JobRecord:
    at = now_iso()
    entry = {"state": state, "at": at, "reason": reason}
    return replace(record, updated_at=at, history=(*record.history, entry)[-HISTORY_LIMIT:])



def may_cancel(uid: int, record: JobRecord) -> bool:
    """Whether the user `uid` may cancel job `record`: its owner, root or the daemon's own
    user (and anyone for a job accepted before owners were recorded)."""
    return record.owner_uid is None or uid in (record.owner_uid, 0, os.geteuid())
