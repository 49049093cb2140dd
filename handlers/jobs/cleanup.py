"""What a clean-up removes, and who may remove what (issue 12, item 7).

Three things grow for ever on a busy head node: finished jobs' directories
(STATE/jobs/ID/), refused spool files (STATE/rejected/NAME beside NAME.error) and rotated
decision logs (STATE/decisions.jsonl.1, ...). A member may remove her own finished jobs
and refused files; root and the daemon's own user (the state dir's owner: `winopt`) may
remove anything, decision logs included. Running jobs are never removed.

The rules are here once, for both sides of `winopt clean`: the command lists what it
would remove (a member can read all of it), and the daemon, the one writer of the state
dir, checks every item again against the uid of whoever dropped the request before it
removes anything. The `[jobs] keep` policy is the daemon's own clean-up, with its rights.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from winopt.contracts.publish import fsync_dir
from winopt.contracts.beneath import owner_of
from winopt.handlers.jobs.store import JobRecord, JobStore
from winopt.handlers.jobs.ids import is_job_id

#: decisions.jsonl rotated away (daemon/status.py `DecisionLog`)
from winopt.contracts.state_dir import ERROR_SUFFIX, JOBS_DIR, REJECTED_DIR
DECISION_LOG_RE = re.compile(r"decisions\.jsonl\.\d+")
#: the most items one clean request may name (a request is read whole by the daemon)
MAX_ITEMS = 100_000
KINDS = ("jobs", "rejected", "decision_logs")


@dataclass(frozen=True)
class Plan:
    """What one clean-up removes: job ids, names in rejected/, rotated decision logs."""

    jobs: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    decision_logs: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.jobs or self.rejected or self.decision_logs)

    def count(self) -> int:
        return len(self.jobs) + len(self.rejected) + len(self.decision_logs)

    def to_dict(self) -> dict[str, list[str]]:
        return {kind: list(getattr(self, kind)) for kind in KINDS}

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """A plan from a request's JSON; ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        items = {}
        for kind in KINDS:
            value = data.get(kind, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{kind}: must be a list of names")
            if len(value) > MAX_ITEMS:
                raise ValueError(f"{kind}: more than {MAX_ITEMS} names")
            items[kind] = tuple(value)
        return cls(**items)


@dataclass(frozen=True)
class Rights:
    """Who asks: their uid, and the daemon's (the state dir's owner)."""

    uid: int
    daemon_uid: int

    @property
    def privileged(self) -> bool:
        """Root and the daemon's own user may remove anything."""
        return self.uid in (0, self.daemon_uid)

    @property
    def name(self) -> str:
        return owner_of(self.uid).name


def state_owner(state_dir: Path) -> int:
    """The daemon's uid as a command sees it: the owner of the state dir."""
    return os.stat(state_dir).st_uid


# ---------------------------------------------------------------- the checks
def job_problem(record: JobRecord, rights: Rights, older_than: float | None, now: float) -> str | None:
    """Why `rights` may not remove job `record` now, or None when it may."""
    if not record.terminal:
        return f"job {record.id} is {record.state}: only a finished job is removed (winopt cancel {record.id} first)"
    if not rights.privileged and (record.owner_uid is None or record.owner_uid != rights.uid):
        owner = record.owner or "nobody's on record"
        return f"job {record.id} is {owner}'s: only its owner, root or the daemon's user may remove it"
    ended = ended_at(record)
    if older_than is not None and (ended is None or now - ended < older_than):
        return f"job {record.id} ended less than {duration_text(older_than)} ago"
    return None


def refused_problem(rejected_dir: Path, name: str, rights: Rights, older_than: float | None,
                    now: float) -> str | None:
    """Why `rights` may not remove refused file `name` now, or None when it may."""
    if not refused_name_ok(name):
        return f"{name!r} is not a refused file's name"
    try:
        st = os.lstat(rejected_dir / name)
    except FileNotFoundError:
        return f"no refused file {name}"
    if not rights.privileged and st.st_uid != rights.uid:
        return f"refused file {name} is {owner_of(st.st_uid).name}'s: only who dropped it, root or the daemon's user may remove it"
    at = refused_at(rejected_dir, name)
    if older_than is not None and now - at < older_than:
        return f"refused file {name} is less than {duration_text(older_than)} old"
    return None


def decision_log_problem(state_dir: Path, name: str, rights: Rights, older_than: float | None,
                         now: float) -> str | None:
    """Why `rights` may not remove rotated decision log `name`, or None when it may."""
    if not DECISION_LOG_RE.fullmatch(name):
        return f"{name!r} is not a rotated decision log"
    if not rights.privileged:
        return f"{name}: decision logs are removed by root or the daemon's user only"
    try:
        mtime = os.lstat(state_dir / name).st_mtime
    except FileNotFoundError:
        return f"no {name}"
    if older_than is not None and now - mtime < older_than:
        return f"{name} is less than {duration_text(older_than)} old"
    return None


def refused_name_ok(name: str) -> bool:
    """A name `rejected/` may hold for a refused file (never a path, a temp or an .error)."""
    return bool(name) and "/" not in name and name not in (".", "..") and not name.startswith(".") \
        and not name.endswith(ERROR_SUFFIX)


# ---------------------------------------------------------------- finding what is old
def ended_at(record: JobRecord) -> float | None:
    """When a finished job ended (its state file's last write), as a timestamp."""
    try:
        return datetime.fromisoformat(record.updated_at).timestamp()
    except (TypeError, ValueError):
        return None


def refused_at(rejected_dir: Path, name: str) -> float:
    """When a file was refused: its `.error`'s mtime (the file's own is its writer's)."""
    for path in (rejected_dir / (name + ERROR_SUFFIX), rejected_dir / name):
        try:
            return os.lstat(path).st_mtime
        except OSError:
            continue
    return 0.0


def plan_older_than(state_dir: Path, rights: Rights, older_than: float, now: float | None = None) -> Plan:
    """Everything `rights` may remove that is older than `older_than` seconds."""
    now = time.time() if now is None else now
    store = JobStore(state_dir / JOBS_DIR)
    jobs = tuple(r.id for r in store.jobs() if job_problem(r, rights, older_than, now) is None)
    rejected_dir = state_dir / REJECTED_DIR
    rejected = tuple(n for n in refused_names(rejected_dir)
                     if refused_problem(rejected_dir, n, rights, older_than, now) is None)
    logs = tuple(n for n in sorted(os.listdir(state_dir)) if DECISION_LOG_RE.fullmatch(n)
                 and decision_log_problem(state_dir, n, rights, older_than, now) is None) if rights.privileged else ()
    return Plan(jobs, rejected, logs)


def refused_names(rejected_dir: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(rejected_dir) if refused_name_ok(n))
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------- removing
def remove_job_dir(store: JobStore, job_id: str) -> None:
    """Remove a job's directory: renamed out of the way first (`jobs/.ID.removed.tmp`,
    which the next start's `remove_temp_dirs` finishes if a crash cuts this short), so
    a job is either whole on record or gone."""
    assert is_job_id(job_id), job_id
    gone = store.root / f".{job_id}.removed.tmp"
    os.rename(store.dir(job_id), gone)
    fsync_dir(store.root)
    shutil.rmtree(gone, ignore_errors=True)


def remove_refused(rejected_dir: Path, name: str) -> None:
    """Remove a refused file and its `.error` (a symlink is removed, never followed)."""
    for gone in (name, name + ERROR_SUFFIX):
        try:
            os.unlink(rejected_dir / gone)
        except FileNotFoundError:
            pass
    fsync_dir(rejected_dir)


def remove_decision_log(state_dir: Path, name: str) -> None:
    os.unlink(state_dir / name)
    fsync_dir(state_dir)


def describe(plan: Plan) -> str:
    """'2 jobs, 1 refused file, 1 decision log' (the kinds it holds)."""
    parts = [_count(len(plan.jobs), "job"), _count(len(plan.rejected), "refused file"),
             _count(len(plan.decision_logs), "decision log")]
    return ", ".join(p for p in parts if p) or "nothing"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}" if n else ""


def duration_text(seconds: float) -> str:
    """'30d', '12h', '90m' or '45s': a duration as it was most likely given."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def first(items: Iterable[str], n: int = 3) -> str:
    """Up to `n` names, and how many more."""
    names = list(items)
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")
