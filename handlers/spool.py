"""The spool and the job directories (SPEC §5): the filesystem is the state machine.

Layout under the state directory, Maildir-style, so that recovery after kill -9 is a
directory listing and every job file is in exactly one place at every instant:

    spool/NAME.toml|json     dropped by users or `winopt submit` (dotfiles and *.tmp ignored)
    spool/ID.cancel          a cancel request (`winopt cancel ID`)
    spool/NAME.sync          a resync request (`winopt sync`): not ours, the distribution
                             handler consumes it; the spool leaves it alone
    spool/.accepting/ID@NAME a file being accepted as job ID (moved there by one rename)
    spool/rejected/NAME      a refused file, beside NAME.error saying why
    jobs/ID/                 an accepted job: job.toml|json (the bytes accepted), state.json,
                             and the optimizer's output (it is the run's --out directory)
    jobs/.ID.tmp/            a job directory being built (renamed to jobs/ID/ when whole)

Accepting a file: rename it into `.accepting/` under the id it will get, validate it,
build `jobs/.ID.tmp/`, rename that to `jobs/ID/`, unlink the staged file. A crash at any
step leaves either the spool file (accepted again), a staged file (`recover` finishes or
refuses it: it is done exactly when `jobs/ID/` exists) or a temp directory (removed).

A file written in place, without a rename, is not read while it may still be growing:
it is taken only once its mtime is `grace` seconds old, no process this daemon can see
holds it open for writing (/proc, best effort: other users' processes are invisible
without privileges), and its size, mtime and inode are the same just before it is taken.
A file known to have arrived by rename (`winopt submit`, `cp x .x.tmp && mv .x.tmp
spool/x.toml`; the daemon sees IN_MOVED_TO) is complete by construction: the caller names
it in `scan(renamed=...)` and it skips the grace period. Otherwise a renamed file waits
the grace period too (a rename keeps the temp file's mtime): seconds, against runs of hours.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from winopt.contracts import lock_for, publish_bytes, publish_json
from winopt.contracts.publish import fsync_dir
from winopt.handlers.jobfile import JOB_SUFFIXES, MAX_JOB_BYTES, JobError, JobSpec, parse_job_bytes, validate_job

log = logging.getLogger("winopt.jobs")

SPOOL_DIR, REJECTED_DIR, ACCEPTING_DIR, JOBS_DIR = "spool", "rejected", ".accepting", "jobs"
STATE_FILE, PID_FILE, LOG_FILE = "state.json", "optimizer.pid", "optimizer.log"
CANCEL_SUFFIX = ".cancel"
#: requests that other daemon handlers take from the spool directory (never jobs)
FOREIGN_SUFFIXES = (".sync",)
STATE_SCHEMA_VERSION = 1
JOB_STATES = ("queued", "running", "complete", "failed", "cancelled")
TERMINAL = frozenset({"complete", "failed", "cancelled"})
#: state -> states it may move to ("running" -> "running" is a resume)
TRANSITIONS = {
    "queued": frozenset({"running", "cancelled"}),
    "running": frozenset({"running", "complete", "failed", "cancelled"}),
}
#: 20250131T235959Z-NAME-1a2b3c: sortable by creation time, safe in paths and log fields
JOB_ID_RE = re.compile(r"\d{8}T\d{6}Z-[A-Za-z0-9_][A-Za-z0-9._-]{0,39}-[0-9a-f]{6}")
HISTORY_LIMIT = 50
DEFAULT_GRACE = 2.0
#: seconds before a file that raised an unexpected error is tried again
ERROR_RETRY = 5.0
#: a file name's limit in bytes (Linux NAME_MAX), and the room a rejected file's name gets
#: (its `.N` for a duplicate, `.error`, and the temp name of that publish must fit too)
NAME_MAX = 255
REJECTED_NAME_MAX = 200


# ---------------------------------------------------------------------------- ids and names


def new_job_id(name: str, now: dt.datetime | None = None) -> str:
    """`UTCTIME-NAME-RANDOM`: sorts by creation time; the random part keeps two jobs with
    one name in one second apart."""
    when = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return f"{when:%Y%m%dT%H%M%SZ}-{id_name(name)}-{secrets.token_hex(3)}"


def id_name(text: str) -> str:
    """The name part of an id: `text` with anything but letters, digits, '.', '_', '-'
    turned into '-', at most 40 characters, 'job' when nothing is left."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip(".-")[:40]
    return safe or "job"


def is_job_id(text: str) -> bool:
    return JOB_ID_RE.fullmatch(text) is not None


def printable(name: str) -> str:
    """A file name as it may appear in a one-line message (control characters escaped)."""
    return name if name.isprintable() else repr(name)[1:-1]


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- job records


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

    def create(self, job_id: str, data: bytes, suffix: str, spec: JobSpec, source: str) -> JobRecord:
        """Build `jobs/ID/` (the accepted bytes and a queued state) under a temp name and
        rename it into place, so a job directory is either whole or absent."""
        at = now_iso()
        record = JobRecord(
            id=job_id, state="queued", spec=spec, source=source, job_file=f"job{suffix}",
            accepted_at=at, accepted_ns=time.time_ns(), updated_at=at,
            history=({"state": "queued", "at": at, "reason": f"accepted from {printable(source)}"},),
        )
        tmp = self.root / f".{job_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o775)
        publish_bytes(tmp / record.job_file, data)
        publish_json(tmp / STATE_FILE, record.to_dict())
        os.rename(tmp, self.dir(job_id))
        fsync_dir(self.root)
        return record

    def update(self, job_id: str, change: Callable[[JobRecord], JobRecord]) -> JobRecord:
        """Read, change and atomically rewrite one job's state, under its lock."""
        path = self.dir(job_id) / STATE_FILE
        with lock_for(path):
            record = change(self.load(job_id))
            publish_json(path, record.to_dict())
        return record

    def transition(self, job_id: str, state: str, reason: str, **changes: Any) -> JobRecord:
        """Move a job to `state` (checked against TRANSITIONS), with a history line."""

        def change(record: JobRecord) -> JobRecord:
            if state not in TRANSITIONS.get(record.state, ()):
                raise ValueError(f"job {job_id}: no transition {record.state} -> {state}")
            return _with_history(replace(record, state=state, **changes), state, reason)

        return self.update(job_id, change)

    def request_cancel(self, job_id: str) -> JobRecord:
        """Record a cancel request (the runner acts on it); a no-op on a finished job."""

        def change(record: JobRecord) -> JobRecord:
            if record.terminal or record.cancel_requested:
                return record
            return _with_history(replace(record, cancel_requested=True), record.state, "cancel requested")

        return self.update(job_id, change)

    def remove_temp_dirs(self) -> None:
        """Delete job directories a crash left half built (`jobs/.ID.tmp`)."""
        for entry in self.root.glob(".*.tmp"):
            log.info("removing half-built job directory %s", entry.name)
            shutil.rmtree(entry, ignore_errors=True)


def _with_history(record: JobRecord, state: str, reason: str) -> JobRecord:
    at = now_iso()
    entry = {"state": state, "at": at, "reason": reason}
    return replace(record, updated_at=at, history=(*record.history, entry)[-HISTORY_LIMIT:])


# ---------------------------------------------------------------------------- spool scans


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened to a job, for the daemon's log (JOB_ID field) and status.

    Spool kinds: accepted, rejected, cancel_requested, cancel_rejected, error (an
    unexpected failure on one file, logged and retried; `name` is the spool file). Runner kinds (see `jobrunner`): started, resumed, complete, failed,
    cancelled, stopped, interrupted, orphan_stopped, blocked."""

    kind: str
    job_id: str | None
    reason: str = ""
    name: str | None = None
    #: for rejected and cancel_rejected: the file's name in `spool/rejected/`
    rejected_as: str | None = None


@dataclass
class ScanResult:
    """What a scan did: jobs accepted (to queue), jobs whose cancel was requested (to
    stop), every event, and when to scan again for files that were not ready yet."""

    accepted: list[JobRecord] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    events: list[JobEvent] = field(default_factory=list)
    retry_after: float | None = None

    def defer(self, seconds: float) -> None:
        seconds = max(seconds, 0.05)
        self.retry_after = seconds if self.retry_after is None else min(self.retry_after, seconds)


class Spool:
    """The spool directory of a state directory, and the jobs it feeds.

    `allowed_draws_dirs`: where job draws files may live (a relative draws path is taken
    from the first of them); `known_rigs`: the rig names a job may list (None: any);
    `grace`: seconds a file written in place must rest before it is read."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        allowed_draws_dirs: Sequence[str | os.PathLike[str]],
        known_rigs: Sequence[str] | None = None,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / SPOOL_DIR
        self.rejected = self.dir / REJECTED_DIR
        self.accepting = self.dir / ACCEPTING_DIR
        self.store = JobStore(self.state_dir / JOBS_DIR)
        self.allowed_draws_dirs = [Path(d) for d in allowed_draws_dirs]
        self.known_rigs = known_rigs
        self.grace = grace
        self._scanning = threading.RLock()
        self._open_for_writing: set[str] | None = None
        self._dirs_noted: set[str] = set()  # directories in the spool already logged

    def ensure_layout(self) -> None:
        """Create the directories (group-writable spool, so users of the group can drop
        files; the umask and the tmpfiles.d entry decide the final modes)."""
        for d in (self.dir, self.rejected, self.accepting, self.store.root):
            d.mkdir(mode=0o775, parents=True, exist_ok=True)

    # -- entry points ---------------------------------------------------------------

    def recover(self) -> ScanResult:
        """Finish what a crash interrupted: staged files become jobs (or are refused),
        half-built job directories and temp files in rejected/ go (only this process
        writes there). Idempotent; run before the first scan."""
        with self._scanning:
            self.ensure_layout()
            self.store.remove_temp_dirs()
            for tmp in self.rejected.glob(".*.tmp"):  # an `.error` publish cut short
                tmp.unlink(missing_ok=True)
            result = ScanResult()
            for staged in sorted(self.accepting.iterdir()):
                job_id, _, name = staged.name.partition("@")
                if not is_job_id(job_id) or not name:
                    self._reject(staged, name or staged.name, "unrecognised staged file", result)
                elif self.store.exists(job_id):
                    _unlink_durably(staged)
                else:
                    self._finish_accept(staged, job_id, name, result)
            return result

    def scan(self, renamed: Collection[str] = (), now: float | None = None) -> ScanResult:
        """Take every ready file in the spool: job files first (oldest first), then
        cancel requests, so a cancel dropped with its job finds it. `renamed`: names the
        caller saw renamed into the spool (complete, so no grace period). Scans are
        serialised: call from any thread."""
        with self._scanning:
            self.ensure_layout()
            self._open_for_writing = None  # looked up once per scan, when first needed
            result = ScanResult()
            entries = self._candidates()
            jobs = [e for e in entries if not e[0].name.endswith(CANCEL_SUFFIX)]
            cancels = [e for e in entries if e[0].name.endswith(CANCEL_SUFFIX)]
            for take, batch in ((self._take_job_file, jobs), (self._take_cancel, cancels)):
                for path, st in batch:
                    try:
                        take(path, st, path.name in renamed, now, result)
                    except Exception as exc:  # one file must not starve the others
                        log.exception("spool: cannot process %s", printable(path.name))
                        result.events.append(JobEvent("error", None, f"cannot process: {exc}", path.name))
                        result.defer(max(self.grace, ERROR_RETRY))
            return result

    def rejected_files(self) -> dict[str, dict[str, Any]]:
        """Every refused file in `rejected/`: name -> {reason, at} (from its `.error`)."""
        found: dict[str, dict[str, Any]] = {}
        try:
            entries = list(os.scandir(self.rejected))
        except OSError:
            return found
        for entry in entries:
            if not entry.name.startswith(".") and not entry.name.endswith(".error"):
                found[entry.name] = self.rejected_entry(entry.name)
        return found

    def rejected_entry(self, name: str) -> dict[str, Any]:
        """{reason, at} of one refused file, from its `.error` (written when it was refused)."""
        try:
            with open(self.rejected / (name + ".error"), "rb") as fh:
                reason = fh.read(4096).decode(errors="replace").strip()
                at = dt.datetime.fromtimestamp(os.fstat(fh.fileno()).st_mtime).astimezone()
        except OSError:
            return {"reason": None, "at": None}
        return {"reason": reason, "at": at.isoformat(timespec="seconds")}

    def is_spool_entry(self, path: str | os.PathLike[str]) -> bool:
        """Whether a watcher event on `path` concerns the spool (for the daemon's filter)."""
        path = Path(path)
        return path.parent == self.dir and _is_candidate_name(path.name)

    # -- job files ------------------------------------------------------------------

    def _candidates(self) -> list[tuple[Path, os.stat_result]]:
        found = []
        for entry in os.scandir(self.dir):
            if not _is_candidate_name(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not _is_dir(st):
                found.append((Path(entry.path), st))
            elif entry.name not in self._dirs_noted and entry.name != REJECTED_DIR:  # `x.toml/`: say so, once
                self._dirs_noted.add(entry.name)
                log.warning("spool: %s is a directory, not a job file; ignored", entry.name)
        return sorted(found, key=lambda e: (e[1].st_mtime_ns, e[0].name))

    def _take_job_file(
        self, path: Path, st: os.stat_result, renamed: bool, now: float | None, result: ScanResult
    ) -> None:
        name = path.name
        wait = self._not_ready(path, st, renamed, now)
        if wait is not None:
            result.defer(wait)
            return
        if not _is_regular(st):
            self._reject(path, name, "not a regular file (a symlink or device cannot be a job)", result)
            return
        job_id = self._id_for(path, st)
        staged = self.accepting / f"{job_id}@{fit_name(name, NAME_MAX - len(job_id) - 1)}"
        try:
            os.rename(path, staged)
        except FileNotFoundError:
            return  # taken by a concurrent scan
        fsync_dir(self.dir)
        fsync_dir(self.accepting)
        self._finish_accept(staged, job_id, name, result)

    def _id_for(self, path: Path, st: os.stat_result) -> str:
        """The id this file will get: its own stem when `winopt submit` named it so (the
        id submit printed), else a new one from the job's name or the file's stem."""
        stem = path.name.rsplit(".", 1)[0]
        if is_job_id(stem) and not self.store.dir(stem).exists():
            return stem
        name = stem
        if path.suffix in JOB_SUFFIXES and st.st_size <= MAX_JOB_BYTES:
            try:
                raw = parse_job_bytes(path.read_bytes(), name, path.suffix)
                if isinstance(raw.get("name"), str):
                    name = raw["name"]
            except (JobError, OSError):
                pass  # validation reports it
        job_id = new_job_id(name)
        while self.store.dir(job_id).exists():
            job_id = new_job_id(name)
        return job_id

    def _finish_accept(self, staged: Path, job_id: str, name: str, result: ScanResult) -> None:
        """Validate a staged file and make it job `job_id`, or refuse it."""
        source = f"{SPOOL_DIR}/{printable(name)}"
        suffix = Path(name).suffix
        stem = name.rsplit(".", 1)[0]
        if is_job_id(stem) and stem != job_id:
            self._reject(staged, name, f"job {stem} already exists (a file submitted twice?)", result)
            return
        try:
            with open(staged, "rb") as fh:  # never more than a job file can be
                data = fh.read(MAX_JOB_BYTES + 1)
            raw = parse_job_bytes(data, source, suffix)
            base = self.allowed_draws_dirs[0] if self.allowed_draws_dirs else None
            spec = validate_job(raw, source=source, allowed_draws_dirs=self.allowed_draws_dirs,
                                base_dir=base, known_rigs=self.known_rigs)
        except JobError as exc:
            self._reject(staged, name, str(exc), result)
            return
        except OSError as exc:
            self._reject(staged, name, f"{source}: cannot read: {exc.strerror or exc}", result)
            return
        record = self.store.create(job_id, data, suffix, spec, source=name)
        _unlink_durably(staged)
        result.accepted.append(record)
        result.events.append(JobEvent("accepted", job_id, f"queued with priority {spec.priority}", name))

    def _reject(self, path: Path, name: str, reason: str, result: ScanResult, kind: str = "rejected") -> None:
        """Move a refused file to `rejected/` (a free name) after writing its `.error`:
        a crash between leaves the file where it was, and the next scan rejects it again."""
        target = _free_name(self.rejected, fit_name(name, REJECTED_NAME_MAX))
        publish_bytes(self.rejected / (target.name + ".error"), (reason + "\n").encode())
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return
        fsync_dir(path.parent)
        fsync_dir(self.rejected)
        stem = name.rsplit(".", 1)[0]
        result.events.append(JobEvent(kind, stem if is_job_id(stem) else None, reason, name, target.name))

    def _writers(self) -> set[str]:
        if self._open_for_writing is None:
            self._open_for_writing = files_open_for_writing(self.dir)
        return self._open_for_writing

    def _not_ready(self, path: Path, st: os.stat_result, renamed: bool, now: float | None) -> float | None:
        """Seconds to wait before `path` may be read, or None when it is ready."""
        age = (now if now is not None else time.time()) - st.st_mtime
        if age < self.grace and not renamed:
            return self.grace - age
        if _is_regular(st) and os.path.realpath(path) in self._writers():
            return self.grace
        try:
            again = path.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None
        if (again.st_size, again.st_mtime_ns, again.st_ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
            return self.grace
        return None

    # -- cancel requests ------------------------------------------------------------

    def _take_cancel(
        self, path: Path, st: os.stat_result, renamed: bool, now: float | None, result: ScanResult
    ) -> None:
        name = path.name
        job_id = name[: -len(CANCEL_SUFFIX)]
        wait = self._not_ready(path, st, renamed, now)
        if wait is not None:
            result.defer(wait)
            return
        if not is_job_id(job_id):
            self._reject(path, name, f"{printable(job_id)!s} is not a job id", result, "cancel_rejected")
            return
        if self._job_file_pending(job_id):
            result.defer(self.grace)
            return
        try:
            record = self.store.request_cancel(job_id)
        except KeyError:
            self._reject(path, name, f"no job {job_id}", result, "cancel_rejected")
            return
        if record.terminal:
            self._reject(path, name, f"job {job_id} is already {record.state}", result, "cancel_rejected")
            return
        _unlink_durably(path)
        result.cancels.append(job_id)
        result.events.append(JobEvent("cancel_requested", job_id, f"cancel requested while {record.state}", name))

    def _job_file_pending(self, job_id: str) -> bool:
        """Whether job `job_id` is still on its way in (in the spool or staged)."""
        return any((self.dir / f"{job_id}{s}").exists() for s in JOB_SUFFIXES) or any(
            self.accepting.glob(f"{job_id}@*")
        )


# ---------------------------------------------------------------------------- file helpers


def _is_candidate_name(name: str) -> bool:
    return not name.startswith(".") and not name.endswith((".tmp", *FOREIGN_SUFFIXES))


def _is_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def _free_name(directory: Path, name: str) -> Path:
    """`directory/name`, or `name.1`, `name.2`... before the suffix when that is taken."""
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    candidate, n = directory / name, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = directory / (f"{stem}.{n}.{suffix}" if dot else f"{name}.{n}")
    return candidate


def fit_name(name: str, limit: int) -> str:
    """`name`, or when it is longer than `limit` bytes a shortened form that keeps its
    suffix and stays unique (a hash of the whole name), so prefixes and `.error` fit."""
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix) <= 16 else ""
    digest = hashlib.sha256(raw).hexdigest()[:12]
    head = raw[: limit - len(os.fsencode(suffix)) - len(digest) - 1].decode("utf-8", errors="ignore")
    return f"{head}~{digest}{suffix}"


def _unlink_durably(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def files_open_for_writing(directory: Path) -> set[str]:
    """Paths in `directory` that a process visible in /proc holds open for writing (best
    effort: without privileges other users' descriptors cannot be read, which is not an
    error). One pass over /proc, however many files are waiting."""
    prefix = os.path.realpath(directory) + os.sep
    found: set[str] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if not target.startswith(prefix) or target in found:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                    flags = next(int(line.split()[1], 8) for line in fh if line.startswith("flags:"))
            except (OSError, StopIteration, ValueError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                found.add(target)
    return found
