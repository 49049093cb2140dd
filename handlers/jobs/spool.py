"""The spool (SPEC §5): taking the files users drop, Maildir-style.

Layout under the state directory, Maildir-style, so that recovery after kill -9 is a
directory listing and every job file is in exactly one place at every instant:

    spool/NAME.toml|json     dropped by users or `winopt submit` (dotfiles and *.tmp ignored)
    spool/ID.cancel          a cancel request (`winopt cancel ID`)
    spool/NAME.sync          a resync request (`winopt sync`): not ours, the distribution
                             handler consumes it; the spool leaves it alone
    spool/NAME.clean         a clean-up request (`winopt clean`): not ours either
                             (daemon/adapters/clean.py)
    accepting/ID@NAME        a file being accepted as job ID (moved there by one rename)
    rejected/NAME            a refused file, beside NAME.error saying why
    jobs/ID/                 an accepted job: job.toml|json (the bytes accepted), draws.json
                             (the draws file's bytes, checked), state.json, and the
                             optimizer's output (it is the run's --out directory)
    jobs/.ID.tmp/            a job directory being built (renamed to jobs/ID/ when whole)

The spool is a drop box (issue 11): members of group winopt create files there and can
remove or rename only their own (sticky bit); everything the daemon keeps lies outside
it, where only the daemon writes (`spooldirs`). The daemon works through directory
descriptors and never follows a symlink it did not make: it opens a spool file with
`O_NOFOLLOW`, checks with `fstat` that it is a regular file nobody else can write, reads
it once through that descriptor and accepts exactly those bytes, owned by the file's
owner at that moment (recorded in state.json: a later rename cannot change whose job it
is). A file named after a job id (`winopt submit`'s) gets that id only if no earlier
spool file claims it.

Accepting a file: read it, rename it into `accepting/` under the id it will get, validate
the bytes read (its draws file read once, beneath its allowed directory, and copied into
the job), build `jobs/.ID.tmp/`, rename that to `jobs/ID/`, unlink the staged file. A
crash at any step leaves either the spool file (accepted again), a staged file (the next
`recover` or scan finishes or refuses it: it is done exactly when `jobs/ID/` exists) or
a temp directory (removed). Whatever one file can raise refuses that file with a reason;
only the environment (a full disk) leaves it staged, to be tried again.

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

import logging
import os
import stat
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from winopt.handlers.jobs.store import CANCEL_REQUESTED, JobRecord, JobStore, may_cancel
from winopt.handlers.jobs.ids import NAME_MAX, fit_name, is_job_id, new_job_id, printable
from winopt.contracts.procs import files_open_for_writing
from winopt.contracts.clock import iso_from_timestamp
from winopt.contracts.publish import move_at, publish_at, unlink_at
from winopt.contracts.beneath import Owner, UnsafeFile, open_regular, owner_of, read_regular
from winopt.handlers.jobs.draws import DEFAULT_MAX_DRAWS_BYTES, read_draws_beneath
from winopt.handlers.jobs.jobfile import MAX_JOB_BYTES, JobError, parse_job_bytes, validate_job
from winopt.contracts.state_dir import (
    ACCEPTING_DIR,
    CANCEL_SUFFIX,
    ERROR_SUFFIX,
    JOB_SUFFIXES,
    JOBS_DIR,
    REJECTED_DIR,
    SPOOL_DIR,
    is_job_candidate,
)
from winopt.handlers.jobs.spooldirs import (
    SpoolDirs,
    ensure_layout,
    exists_at,
    free_name,
    warn_legacy,
)

log = logging.getLogger("winopt.jobs")

#: refused files kept in rejected/ (the newest): only the daemon can remove them there
REJECTED_KEPT = 500
DEFAULT_GRACE = 2.0
#: seconds before a file that raised an unexpected error is tried again
ERROR_RETRY = 5.0
#: the room a rejected file's name gets (its `.N` for a duplicate, `.error`, and the temp
#: name of that publish must fit too)
REJECTED_NAME_MAX = 200



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
    #: for rejected and cancel_rejected: the file's name in `STATE/rejected/`
    rejected_as: str | None = None
    #: who did it, for the journal's USER field: the owner of the job file (accepted) or
    #: of the cancel request (cancel_requested, cancel_rejected)
    user: str | None = None


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
    `grace`: seconds a file written in place must rest before it is read;
    `max_draws_bytes`: the largest draws file a job may name (`[jobs] max_draws_bytes`);
    `shared_storage`: whether `workers = "rigs"` jobs have a storage to run in (None: any
    job is taken, as without a daemon)."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        allowed_draws_dirs: Sequence[str | os.PathLike[str]],
        known_rigs: Sequence[str] | None = None,
        grace: float = DEFAULT_GRACE,
        max_draws_bytes: int = DEFAULT_MAX_DRAWS_BYTES,
        shared_storage: bool | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / SPOOL_DIR
        self.rejected = self.state_dir / REJECTED_DIR
        self.accepting = self.state_dir / ACCEPTING_DIR
        self.store = JobStore(self.state_dir / JOBS_DIR)
        self.allowed_draws_dirs = [Path(d) for d in allowed_draws_dirs]
        self.known_rigs = known_rigs
        self.grace = grace
        self.max_draws_bytes = max_draws_bytes
        self.shared_storage = shared_storage
        self._scanning = threading.RLock()
        self._open_for_writing: set[str] | None = None
        self._dirs_noted: set[str] = set()  # directories in the spool already logged

    def ensure_layout(self) -> None:
        """Create the directories and put their modes right (`spooldirs.ensure_layout`)."""
        ensure_layout(self.state_dir)

    # -- entry points ---------------------------------------------------------------

    def recover(self) -> ScanResult:
        """Finish what a crash interrupted: staged files become jobs (or are refused),
        half-built job directories and temp files in rejected/ go (only this process
        writes there). Idempotent; run before the first scan."""
        with self._scanning:
            self.ensure_layout()
            warn_legacy(self.state_dir)
            self.store.remove_temp_dirs()
            result = ScanResult()
            with SpoolDirs.open(self.state_dir) as dirs:
                for name in os.listdir(dirs.rejected):
                    if name.startswith(".") and name.endswith(".tmp"):  # an `.error` publish cut short
                        os.unlink(name, dir_fd=dirs.rejected)
                self._finish_staged(dirs, result)
            return result

    def scan(self, renamed: Collection[str] = (), now: float | None = None) -> ScanResult:
        """Take every ready file in the spool: staged files a failed accept left first,
        then job files (oldest first), then cancel requests, so a cancel dropped with its
        job finds it. `renamed`: names the caller saw renamed into the spool (complete,
        so no grace period). Scans are serialised: call from any thread."""
        with self._scanning:
            self.ensure_layout()
            self._open_for_writing = None  # looked up once per scan, when first needed
            result = ScanResult()
            with SpoolDirs.open(self.state_dir) as dirs:
                self._finish_staged(dirs, result)
                entries = self._candidates(dirs)
                jobs = [e for e in entries if not e[0].endswith(CANCEL_SUFFIX)]
                cancels = [e for e in entries if e[0].endswith(CANCEL_SUFFIX)]
                for take, batch in ((self._take_job_file, jobs), (self._take_cancel, cancels)):
                    for name, st in batch:
                        try:
                            take(dirs, name, st, name in renamed, now, result)
                        except Exception as exc:  # one file must not starve the others
                            self._failed(name, exc, result)
            return result

    def rejected_files(self) -> dict[str, dict[str, Any]]:
        """Every refused file in `rejected/`: name -> {reason, at, owner} (from its `.error`)."""
        found: dict[str, dict[str, Any]] = {}
        try:
            entries = list(os.scandir(self.rejected))
        except OSError:
            return found
        for entry in entries:
            if not entry.name.startswith(".") and not entry.name.endswith(ERROR_SUFFIX):
                found[entry.name] = self.rejected_entry(entry.name)
        return found

    def rejected_entry(self, name: str) -> dict[str, Any]:
        """{reason, at, owner} of one refused file, from its `.error` (written when it was
        refused) and its owner (whoever dropped it)."""
        try:
            fd, st = open_regular(str(self.rejected / (name + ERROR_SUFFIX)), None)
            with os.fdopen(fd, "rb") as fh:
                reason = fh.read(4096).decode(errors="replace").strip()
            at = iso_from_timestamp(st.st_mtime)
        except (OSError, UnsafeFile):
            return {"reason": None, "at": None, "owner": None}
        try:
            owner: str | None = owner_of(os.lstat(self.rejected / name).st_uid).name
        except OSError:
            owner = None
        return {"reason": reason, "at": at, "owner": owner}

    def is_spool_entry(self, path: str | os.PathLike[str]) -> bool:
        """Whether a watcher event on `path` concerns the spool (for the daemon's filter)."""
        path = Path(path)
        return path.parent == self.dir and is_job_candidate(path.name)

    # -- job files ------------------------------------------------------------------

    def _candidates(self, dirs: SpoolDirs) -> list[tuple[str, os.stat_result]]:
        found = []
        with os.scandir(dirs.spool) as entries:
            for entry in entries:
                if not is_job_candidate(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not _is_dir(st):
                    found.append((entry.name, st))
                elif entry.name not in self._dirs_noted:  # `x.toml/`: say so, once
                    self._dirs_noted.add(entry.name)
                    log.warning("spool: %s is a directory, not a job file; ignored", entry.name)
        return sorted(found, key=lambda e: (e[1].st_mtime_ns, e[0]))

    def _take_job_file(
        self, dirs: SpoolDirs, name: str, st: os.stat_result, renamed: bool, now: float | None, result: ScanResult
    ) -> None:
        """Read a ready spool file once, through one descriptor, then stage it under the
        id it gets; what is accepted is exactly what was read."""
        wait = self._not_ready(dirs, name, st, renamed, now)
        if wait is not None:
            result.defer(wait)
            return
        source = f"{SPOOL_DIR}/{printable(name)}"
        if not _is_regular(st):
            self._reject(dirs, dirs.spool, name, name, "not a regular file (a symlink or device cannot be a job)", result)
            return
        try:
            data, st = read_regular(name, dirs.spool, MAX_JOB_BYTES, "job file")
        except FileNotFoundError:
            return  # taken by a concurrent scan, or removed by its owner
        except (UnsafeFile, PermissionError) as exc:
            self._reject(dirs, dirs.spool, name, name, f"{source}: {_unreadable(exc)}", result)
            return
        problem = _untrusted(st)
        if problem:
            self._reject(dirs, dirs.spool, name, name, f"{source}: {problem}", result)
            return
        job_id, refusal = self._id_for(dirs, name, st, data)
        if refusal:
            self._reject(dirs, dirs.spool, name, name, f"{source}: {refusal}", result)
            return
        staged = f"{job_id}@{fit_name(name, NAME_MAX - len(job_id) - 1)}"
        try:
            move_at(dirs.spool, name, dirs.accepting, staged)
        except FileNotFoundError:
            return
        if not _same_file(dirs.accepting, staged, st):  # its owner swapped it after the read
            self._reject(dirs, dirs.accepting, staged, name, f"{source}: replaced while it was being read", result)
            return
        self._accept(dirs, staged, job_id, name, data, st, result)

    def _id_for(self, dirs: SpoolDirs, name: str, st: os.stat_result, data: bytes) -> tuple[str, str | None]:
        """(the id this file gets, or a reason it cannot be taken): its own stem when
        `winopt submit` named it so (the id submit printed), unless that job exists or an
        earlier spool file claims the id (a file cannot take over another's pending job);
        else a new id from the job's name or the file's stem."""
        stem = name.rsplit(".", 1)[0]
        if is_job_id(stem):
            if self.store.dir(stem).exists() or self._staged(dirs, stem):
                return stem, f"job {stem} already exists (a file submitted twice?)"
            rival = _earlier_claim(dirs.spool, name, stem, st)
            if rival:
                return stem, (f"job id {stem} is claimed by spool/{printable(rival)}, which came first: "
                              "a file cannot take another file's id")
            return stem, None
        job_name = stem
        if Path(name).suffix in JOB_SUFFIXES:
            try:
                raw = parse_job_bytes(data, name, Path(name).suffix)
                if isinstance(raw.get("name"), str):
                    job_name = raw["name"]
            except JobError:
                pass  # validation reports it
        job_id = new_job_id(job_name)
        while self.store.dir(job_id).exists():
            job_id = new_job_id(job_name)
        return job_id, None

    def _finish_staged(self, dirs: SpoolDirs, result: ScanResult) -> None:
        """Staged files a crash or a failed accept (a full disk, say) left: each becomes
        its job, is refused, or (an accept that finished) is removed. A file that fails
        again stays staged for the next scan; the others go on."""
        for staged in sorted(os.listdir(dirs.accepting)):
            try:
                self._finish_one(dirs, staged, result)
            except Exception as exc:
                self._failed(staged, exc, result)

    def _finish_one(self, dirs: SpoolDirs, staged: str, result: ScanResult) -> None:
        job_id, _, name = staged.partition("@")
        source = f"{SPOOL_DIR}/{printable(name or staged)}"
        if not is_job_id(job_id) or not name:
            self._reject(dirs, dirs.accepting, staged, name or staged, "unrecognised staged file", result)
        elif self.store.exists(job_id):
            unlink_at(dirs.accepting, staged)
        else:
            try:
                data, st = read_regular(staged, dirs.accepting, MAX_JOB_BYTES, "job file")
            except (UnsafeFile, PermissionError) as exc:
                self._reject(dirs, dirs.accepting, staged, name, f"{source}: {_unreadable(exc)}", result)
                return
            self._accept(dirs, staged, job_id, name, data, st, result)

    def _accept(
        self, dirs: SpoolDirs, staged: str, job_id: str, name: str, data: bytes, st: os.stat_result,
        result: ScanResult,
    ) -> None:
        """Validate the bytes read from a staged file and make them job `job_id`, owned
        by the file's owner, with its draws file copied in; or refuse the file. Whatever
        one file can raise refuses it with the reason; only the environment (an OSError:
        a full disk) leaves it staged, to be tried again."""
        source = f"{SPOOL_DIR}/{printable(name)}"
        stem = name.rsplit(".", 1)[0]
        owner = owner_of(st.st_uid)
        draws = _DrawsRead(self, owner)
        try:
            if is_job_id(stem) and stem != job_id:
                raise JobError(source, None, f"job {stem} already exists (a file submitted twice?)")
            problem = _untrusted(st)
            if problem:
                raise JobError(source, None, problem)
            raw = parse_job_bytes(data, source, Path(name).suffix)
            base = self.allowed_draws_dirs[0] if self.allowed_draws_dirs else None
            spec = validate_job(raw, source=source, allowed_draws_dirs=self.allowed_draws_dirs,
                                base_dir=base, known_rigs=self.known_rigs, read=draws,
                                shared_storage=self.shared_storage)
            record = self.store.create(job_id, data, Path(name).suffix, spec, source=name, owner=owner,
                                       draws=draws.data)
        except JobError as exc:
            self._reject(dirs, dirs.accepting, staged, name, str(exc), result)
            return
        except OSError:
            raise  # not this file's fault: it stays staged and the next scan tries again
        except Exception as exc:
            log.exception("spool: %s cannot be accepted", source)
            self._reject(dirs, dirs.accepting, staged, name, f"{source}: cannot be accepted: {excerpt(exc)}", result)
            return
        unlink_at(dirs.accepting, staged)
        result.accepted.append(record)
        result.events.append(JobEvent("accepted", job_id, f"submitted by {owner.name}, queued with priority "
                                      f"{spec.priority}", name, user=owner.name))

    def _reject(
        self, dirs: SpoolDirs, dir_fd: int, entry: str, name: str, reason: str, result: ScanResult,
        kind: str = "rejected",
    ) -> None:
        """Move a refused file (`entry` in `dir_fd`, dropped as `name`) to `rejected/` (a
        free name) after writing its `.error`: a crash between leaves the file where it
        was, and the next scan rejects it again. A rename moves a symlink, never what it
        points at."""
        target = free_name(dirs.rejected, fit_name(printable(name), REJECTED_NAME_MAX))
        publish_at(dirs.rejected, target + ERROR_SUFFIX, (reason + "\n").encode())
        try:
            move_at(dir_fd, entry, dirs.rejected, target)
        except FileNotFoundError:
            os.unlink(target + ERROR_SUFFIX, dir_fd=dirs.rejected)
            return
        stem = name.rsplit(".", 1)[0]
        result.events.append(JobEvent(kind, stem if is_job_id(stem) else None, reason, name, target))
        self._prune_rejected(dirs)

    def _prune_rejected(self, dirs: SpoolDirs) -> None:
        """Keep the newest REJECTED_KEPT refused files: members cannot remove them from
        `rejected/`, so the daemon does, oldest first, lest bad files fill the disk."""
        names = [n for n in os.listdir(dirs.rejected) if not n.startswith(".") and not n.endswith(ERROR_SUFFIX)]
        if len(names) <= REJECTED_KEPT:
            return
        def age(n: str) -> int:
            try:
                return os.stat(n + ERROR_SUFFIX, dir_fd=dirs.rejected, follow_symlinks=False).st_mtime_ns
            except OSError:
                return 0
        for old in sorted(names, key=age)[: len(names) - REJECTED_KEPT]:
            for gone in (old, old + ERROR_SUFFIX):
                try:
                    os.unlink(gone, dir_fd=dirs.rejected)
                except FileNotFoundError:
                    pass

    def _failed(self, name: str, exc: Exception, result: ScanResult) -> None:
        """An unexpected failure on one file (the environment: it is tried again)."""
        log.exception("spool: cannot process %s", printable(name))
        result.events.append(JobEvent("error", None, f"cannot process: {excerpt(exc)}", name))
        result.defer(max(self.grace, ERROR_RETRY))

    def _writers(self) -> set[str]:
        if self._open_for_writing is None:
            self._open_for_writing = files_open_for_writing(self.dir)
        return self._open_for_writing

    def _not_ready(
        self, dirs: SpoolDirs, name: str, st: os.stat_result, renamed: bool, now: float | None
    ) -> float | None:
        """Seconds to wait before `name` may be read, or None when it is ready."""
        age = (now if now is not None else time.time()) - st.st_mtime
        if age < self.grace and not renamed:
            return self.grace - age
        if _is_regular(st) and os.path.join(os.path.realpath(self.dir), name) in self._writers():
            return self.grace
        try:
            again = os.stat(name, dir_fd=dirs.spool, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if (again.st_size, again.st_mtime_ns, again.st_ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
            return self.grace
        return None

    @staticmethod
    def _staged(dirs: SpoolDirs, job_id: str) -> bool:
        return any(n.startswith(f"{job_id}@") for n in os.listdir(dirs.accepting))

    # -- cancel requests ------------------------------------------------------------

    def _take_cancel(
        self, dirs: SpoolDirs, name: str, st: os.stat_result, renamed: bool, now: float | None, result: ScanResult
    ) -> None:
        """A cancel request: honoured for the job's owner (or root, or the daemon's own
        user), never read (its name says everything)."""
        job_id = name[: -len(CANCEL_SUFFIX)]
        wait = self._not_ready(dirs, name, st, renamed, now)
        if wait is not None:
            result.defer(wait)
            return
        if not is_job_id(job_id):
            self._reject(dirs, dirs.spool, name, name, f"{printable(job_id)!s} is not a job id", result, "cancel_rejected")
            return
        if self._job_file_pending(dirs, job_id):
            result.defer(self.grace)
            return
        try:
            record = self.store.load(job_id)
        except KeyError:
            self._reject(dirs, dirs.spool, name, name, f"no job {job_id}", result, "cancel_rejected")
            return
        who = owner_of(st.st_uid).name
        if not may_cancel(st.st_uid, record):
            self._reject(dirs, dirs.spool, name, name, f"job {job_id} is {record.owner}'s: only its owner can cancel it "
                         f"(asked by {who})", result, "cancel_rejected")
            return
        record = self.store.request_cancel(job_id, by=who)
        if record.terminal:
            self._reject(dirs, dirs.spool, name, name, f"job {job_id} is already {record.state}", result, "cancel_rejected")
            return
        unlink_at(dirs.spool, name)
        result.cancels.append(job_id)
        result.events.append(JobEvent("cancel_requested", job_id, f"{CANCEL_REQUESTED} by {who} while {record.state}",
                                      name, user=who))

    def _job_file_pending(self, dirs: SpoolDirs, job_id: str) -> bool:
        """Whether job `job_id` is still on its way in (in the spool or staged)."""
        return any(exists_at(dirs.spool, f"{job_id}{s}") for s in JOB_SUFFIXES) or self._staged(dirs, job_id)


class _DrawsRead:
    """The spool's way of reading a job's draws file (`validate_job(read=...)`): beneath
    its allowed directory, never through a symlink, at most `max_draws_bytes`, only
    what the job's owner may read; keeps the bytes, which become the job's copy."""

    def __init__(self, spool: Spool, owner: Owner) -> None:
        self.spool, self.owner = spool, owner
        self.data: bytes | None = None

    def __call__(self, path: Path) -> bytes:
        self.data = read_draws_beneath(path, self.spool.allowed_draws_dirs, limit=self.spool.max_draws_bytes,
                                       owner=self.owner)
        return self.data


def _untrusted(st: os.stat_result) -> str | None:
    """Why a job file must not be trusted to be its owner's, or None: another member
    could write it (the group's write bit; the spool is group-writable, the file's group
    is the spool's), or it has another name somewhere else (a hard link)."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"writable by others (mode {mode:o}): another member could change it before it is read; "
                "drop it with mode 644 or 640 (chmod go-w; winopt submit does)")
    if st.st_nlink != 1:
        return f"it has {st.st_nlink} hard links: another name could change it; copy it into the spool instead"
    return None


def _earlier_claim(spool_fd: int, name: str, job_id: str, st: os.stat_result) -> str | None:
    """Another spool file claiming id `job_id` that arrived first (by ctime, which nobody
    can set back: renaming a file into the spool sets it), or None. A tie takes neither."""
    for suffix in JOB_SUFFIXES:
        other = f"{job_id}{suffix}"
        if other == name:
            continue
        try:
            rival = os.stat(other, dir_fd=spool_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if rival.st_ctime_ns <= st.st_ctime_ns:
            return other
    return None


def _unreadable(exc: UnsafeFile | PermissionError) -> str:
    """Why a job file cannot be read, for its `.error` (its owner's mode is the file's
    fault, so it is refused, not tried again)."""
    if isinstance(exc, PermissionError):
        return "cannot read: permission denied (the daemon reads it as group winopt: mode 640 or 644)"
    return str(exc)


def _same_file(dir_fd: int, name: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def excerpt(exc: BaseException, limit: int = 80) -> str:
    """An exception as a short, escaped excerpt for a one-line reason: its type and the
    start of its message, never a file's content at length."""
    text = printable(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= limit else text[: limit - 3] + "..."





def _is_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
