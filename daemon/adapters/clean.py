"""The daemon's clean-up (issue 12, item 7): `winopt clean` requests, and `[jobs] keep`.

The daemon is the one writer of the state dir: members can read `jobs/` and `rejected/`
but not change them. So a member's `winopt clean` drops a request into the spool,
`spool/clean-TOKEN.clean` (JSON: the job ids, refused file names and rotated decision
logs to remove, and the age they must have), and this handler carries it out after
checking each item against the request file's owner (`handlers.cleanup`: a member's
own finished jobs and refused files; root and the daemon's user anything). The request
is read like a job file: never through a symlink, bounded, and refused when another
member could have written it (a group-writable file or one with another name). One
journal line says who asked and what went, and one more per job removed (JOB_ID, USER).

`[jobs] keep` (e.g. "30d") is the same clean-up with the daemon's own rights, applied at
every reconcile (at start, on reload, every `reconcile_interval`): finished jobs, refused
files and rotated decision logs older than that go. Unset, everything is kept.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

from winopt.daemon.handler import CLEAN_KIND, Quiet
from winopt.contracts.publish import unlink_at
from winopt.contracts.state_dir import CLEAN_SUFFIX, is_request
from winopt.daemon.adapters.jobs import SpoolJobs
from winopt.daemon.status import StatusBook
from winopt.contracts.beneath import UnsafeFile, open_dir, read_regular
from winopt.handlers.jobs.cleanup import (
    Plan,
    Rights,
    decision_log_problem,
    describe,
    duration_text,
    first,
    job_problem,
    plan_older_than,
    refused_problem,
    remove_decision_log,
    remove_refused,
)
from winopt.handlers.jobs.store import JobStore
from winopt.handlers.jobs.ids import is_job_id, printable
from winopt.contracts.state_dir import REJECTED_DIR, SPOOL_DIR
from winopt.handlers.jobs.spool import _untrusted as untrusted

log = logging.getLogger(__name__)

CLEAN_TARGET = "clean"
#: the largest clean request read (100000 names fit several times over)
MAX_REQUEST_BYTES = 16 << 20


def request_name(token: str) -> str:
    return f"clean-{token}{CLEAN_SUFFIX}"


class Cleaner(Quiet):
    """The "clean" handler: requests in the spool, and the keep policy at reconciles."""

    kind = CLEAN_KIND

    def __init__(self, state_dir: Path, jobs: SpoolJobs, book: StatusBook, keep: float | None) -> None:
        self.state_dir = state_dir
        self.spool = state_dir / SPOOL_DIR
        self.rejected = state_dir / REJECTED_DIR
        self.jobs = jobs
        self.book = book
        self.keep = keep

    # ------------------------------------------------------------ the daemon's Handler
    def route(self, path: Path) -> str | None:
        """Observer thread: a clean request renamed or written into the spool."""
        if path.parent == self.spool and is_request(path.name, CLEAN_SUFFIX):
            return CLEAN_TARGET
        return None

    def watched_dirs(self) -> list[Path]:
        return [self.spool]

    def targets(self) -> list[str]:
        return [CLEAN_TARGET]

    def work(self, _target: Any, reasons: frozenset[str]) -> None:
        """Worker thread: every request waiting in the spool; at a reconcile, the keep
        policy too."""
        for name in self._requests():
            try:
                self.take(name)
            except Exception as exc:  # one request must not stop the others
                log.exception("spool/%s: cannot carry out the clean request: %s", printable(name), exc,
                              extra={"EVENT": "clean_error"})
        if "reconcile" in reasons and self.keep is not None:
            self.apply_keep()

    def reload(self, keep: float | None) -> None:
        self.keep = keep

    # ------------------------------------------------------------ requests
    def _requests(self) -> list[str]:
        try:
            names = [n for n in os.listdir(self.spool) if is_request(n, CLEAN_SUFFIX)]
        except FileNotFoundError:
            return []
        return sorted(names)

    def take(self, name: str) -> None:
        """Carry out one request as far as its owner may, then remove it."""
        spool = open_dir(self.spool)
        try:
            try:
                data, st = read_regular(name, spool, MAX_REQUEST_BYTES, "clean request")
            except FileNotFoundError:
                return
            except (UnsafeFile, PermissionError) as exc:
                self._drop(spool, name, f"spool/{printable(name)}: not read: {exc}")
                return
            rights = Rights(st.st_uid, os.geteuid())
            problem = untrusted(st)
            try:
                plan, older_than = _parse(data)
            except ValueError as exc:
                problem = problem or f"not a clean request ({exc})"
            if problem:
                self._drop(spool, name, f"spool/{printable(name)} from {rights.name}: refused: {problem}", rights.name)
                return
            removed, kept = self.carry_out(plan, rights, older_than, by=rights.name)
            # told before the request goes: whoever waits for it to go then finds the line
            self._summary(f"clean requested by {rights.name}", removed, kept, rights.name, older_than)
            self._drop(spool, name, None)
        finally:
            os.close(spool)

    def _drop(self, spool: int, name: str, refusal: str | None, user: str | None = None) -> None:
        """Log why a request is refused (if it is), then remove it (the spool is the
        daemon's: it may remove anyone's file)."""
        if refusal:
            log.warning("%s", refusal, extra={"EVENT": "clean_refused"} | ({"USER": user} if user else {}))
        unlink_at(spool, name)

    # ------------------------------------------------------------ the work
    def carry_out(self, plan: Plan, rights: Rights, older_than: float | None, *, by: str) -> tuple[Plan, list[str]]:
        """Remove what `plan` names that `rights` may remove: (what went, why the rest stayed)."""
        now = time.time()
        store = self.jobs.spool.store
        kept: list[str] = []
        jobs = [j for j in plan.jobs if self._job_ok(store, j, rights, older_than, now, kept)]
        gone_jobs = [j for j in jobs if self._remove_job(j, by, kept)]
        rejected = [n for n in plan.rejected if _ok(refused_problem(self.rejected, n, rights, older_than, now), kept)]
        for name in rejected:
            remove_refused(self.rejected, name)
            self.book.remove_entry("rejected", name)
        logs = [n for n in plan.decision_logs
                if _ok(decision_log_problem(self.state_dir, n, rights, older_than, now), kept)]
        for name in logs:
            remove_decision_log(self.state_dir, name)
        return Plan(tuple(gone_jobs), tuple(rejected), tuple(logs)), kept

    def _job_ok(self, store: JobStore, job_id: str, rights: Rights, older_than: float | None, now: float,
                kept: list[str]) -> bool:
        if not is_job_id(job_id) or not store.exists(job_id):
            kept.append(f"no job {printable(job_id)}")
            return False
        return _ok(job_problem(store.load(job_id), rights, older_than, now), kept)

    def _remove_job(self, job_id: str, by: str, kept: list[str]) -> bool:
        try:
            self.jobs.remove(job_id)
        except (KeyError, ValueError, OSError) as exc:
            kept.append(f"job {job_id}: {exc}")
            return False
        log.info("job %s: removed by %s", job_id, by, extra={"JOB_ID": job_id, "EVENT": "job_removed", "USER": by})
        return True

    def apply_keep(self) -> None:
        """`[jobs] keep`: whatever is older goes, with the daemon's own rights."""
        assert self.keep is not None
        rights = Rights(os.geteuid(), os.geteuid())
        plan = plan_older_than(self.state_dir, rights, self.keep)
        if plan:
            removed, kept = self.carry_out(plan, rights, self.keep, by="keep policy")
            self._summary("keep policy", removed, kept, None, self.keep)

    def _summary(self, who: str, removed: Plan, kept: list[str], user: str | None, older_than: float | None) -> None:
        """One line: who asked, what went, what stayed and why."""
        age = f" (older than {duration_text(older_than)})" if older_than is not None else ""
        text = f"{who}{age}: removed {describe(removed)}"
        if removed.jobs:
            text += f" (jobs {first(removed.jobs)})"
        if kept:
            text += f"; kept {len(kept)}: {first(kept, 2)}"
        fields = {"EVENT": "clean"} | ({"USER": user} if user else {})
        log.log(logging.WARNING if kept else logging.INFO, "%s", text, extra=fields)


def _ok(problem: str | None, kept: list[str]) -> bool:
    if problem is not None:
        kept.append(problem)
    return problem is None


def _parse(data: bytes) -> tuple[Plan, float | None]:
    """(what to remove, the age it must have) from a request's bytes."""
    doc = orjson.loads(data)
    plan = Plan.from_dict(doc)
    older_than = doc.get("older_than_s")
    if older_than is not None and (isinstance(older_than, bool) or not isinstance(older_than, (int, float))
                                   or older_than < 0):
        raise ValueError("older_than_s: must be a number of seconds >= 0")
    return plan, None if older_than is None else float(older_than)

