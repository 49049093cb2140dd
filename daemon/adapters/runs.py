"""The work done for a watched run directory: convert when stale, decide, record.

Runs on a worker thread, once per coalesced burst of events (or reconcile, or decision
timer). It re-reads the files as they are now — events only say "look again". The
survivors are converted through `handlers.convert.convert` (the same code as `winopt
convert`: only when stale, under the NPZ's lock, published atomically), checked against
the snapshot's `survivors_sha256` so a survivors file whose snapshot has not caught up yet
(a write in progress) is left for the next event. The decision comes from
`handlers.evaluate` (the same as `winopt evaluate`); a corrupt survivors file escalates. Each changed decision is appended to decisions.jsonl.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from winopt.handlers.convert.to_npz import DEFAULT_MAX_SURVIVORS_BYTES, SurvivorsInFlux, convert
from winopt.handlers.evaluate.rules import DAEMON_RESUMER, RESUMER, decide, decision_for_bad_survivors, evaluate
from winopt.daemon.handler import RUN_KIND, Quiet
from winopt.contracts.npz_meta import npz_meta_path, read_npz_meta
from winopt.contracts.snapshot import SnapshotError, SnapshotView, view
from winopt.contracts.publish import sweep_temps
from winopt.contracts.schemas import (
    CONFIG_NAME,
    NPZ_NAME,
    SURVIVORS_NAME,
    read_snapshot,
)
from winopt.daemon.progress import ProgressClock
from winopt.daemon.status import DecisionLog, StatusBook
from winopt.contracts.clock import now_iso
from winopt.contracts.errors import UserError

log = logging.getLogger(__name__)

#: os.stat identity of a file: (inode, size, mtime_ns), or None when absent
FileSig = tuple[int, int, int] | None
#: (run name, NPZ, meta, the NPZ's sha256, rig subset or None for every rig): told after
#: each conversion check that leaves a run with an NPZ (daemon/distribution.py sends it)
OnNpz = Callable[[str, Path, Path, str | None, tuple[str, ...] | None], None]


def file_sig(path: Path) -> FileSig:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class _Seen:
    """What a run looked like when it was last processed."""

    sig: tuple[FileSig, FileSig] = (None, None)
    error: str | None = None  # conversion error for these very files
    decision: tuple[str, str] | None = None  # (action, reasoning) last recorded


class WatchedRuns(Quiet):
    """Processes watched run directories; thread-safe across runs, one worker per run
    at a time (the coalescing queue guarantees that). The daemon's "run" `Handler`:
    a target is a run directory."""

    kind = RUN_KIND

    def __init__(
        self,
        book: StatusBook,
        decisions: DecisionLog,
        thresholds: Callable[[], Any],
        on_npz: OnNpz | None = None,
        max_survivors_bytes: Callable[[], int] | None = None,
    ) -> None:
        self._book = book
        self._decisions = decisions
        self._thresholds = thresholds
        self._on_npz = on_npz
        #: `[convert] max_survivors_bytes` as the config says now (a reload changes it)
        self._max_bytes = max_survivors_bytes
        self._names: dict[Path, str] = {}
        self._seen: dict[Path, _Seen] = {}
        #: per run: kind ("watched": from the config; "job": a spool job's directory),
        #: job_id, rigs (None: every rig), watch (whether it wants an inotify watch) and,
        #: once `retire`d, retire (dropped after its next processing)
        self._attrs: dict[Path, dict[str, Any]] = {}
        self._previous: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: a spool job's state by id (set by the jobs handler): it decides whether the
        #: watcher judges the job's run at all, and who resumes it
        self.job_state: Callable[[str], str | None] | None = None
        #: each run's rate and ETA in status.json (issue 16)
        self._progress = ProgressClock()

    # ------------------------------------------------------------ set-up
    def set_runs(self, names: dict[Path, str], previous: dict[str, Any] | None = None) -> None:
        """Watch these directories under these names; `previous` (status.json's runs from
        the last daemon) seeds the last decisions so a restart does not repeat them. Runs
        added by `add_run` (spool jobs) are not the config's: they stay."""
        with self._lock:
            if previous is not None:
                self._previous = previous
            for d in [d for d in self._names if d not in names and self._attrs[d]["kind"] == "watched"]:
                self._forget(d)
            for d, name in names.items():
                self._adopt(d, name, {"kind": "watched", "job_id": None, "rigs": None, "watch": True})
                self._book.update_run(name, kind="watched", path=str(d))

    def add_run(self, name: str, path: Path, *, kind: str = "job", job_id: str | None = None,
                rigs: list[str] | tuple[str, ...] | None = None, watch: bool = True) -> None:
        """Process `path` as a run named `name` although the config does not list it (a
        spool job's directory), or update such a run's settings. `rigs`: the rigs its NPZ
        goes to (None: all). `watch=False` keeps it in status, reconciles and decision
        timers without an inotify watch (a job that is not running changes no files)."""
        with self._lock:
            self._adopt(path, name, {"kind": kind, "job_id": job_id,
                                     "rigs": None if rigs is None else tuple(rigs), "watch": watch})
        self._book.update_run(name, kind=kind, path=str(path), job_id=job_id)

    def remove_run(self, path: Path) -> None:
        """Stop processing a run added by `add_run` and drop it from status."""
        with self._lock:
            if path in self._names:
                self._forget(path)

    def retire(self, path: Path) -> bool:
        """Drop a run added by `add_run` after its next `process`, which the caller
        schedules: a job that just finished still gets its final conversion and decision,
        and the drop happens on the run's own queue key, so no worker of that run can
        write its status entry back after it. `add_run` before then keeps it after all."""
        with self._lock:
            attrs = self._attrs.get(path)
            if attrs is None:
                return False
            attrs["retire"] = True
            return True

    def _forget_if_retired(self, path: Path) -> None:
        with self._lock:
            if (self._attrs.get(path) or {}).get("retire"):
                self._forget(path)

    def _adopt(self, d: Path, name: str, attrs: dict[str, Any]) -> None:
        self._names[d] = name
        self._attrs[d] = attrs
        seen = self._seen.setdefault(d, _Seen())
        old = self._previous.get(name, {}).get("decision") or {}
        if seen.decision is None and old.get("action"):
            seen.decision = decision_key(old)

    def _forget(self, d: Path) -> None:
        self._progress.forget(self._names[d])
        self._book.remove_run(self._names.pop(d))
        self._seen.pop(d, None)
        self._attrs.pop(d, None)

    def dirs(self) -> list[Path]:
        """Every run: what reconciles and decision timers look at."""
        with self._lock:
            return list(self._names)

    def watch_dirs(self) -> list[Path]:
        """The runs that want an inotify watch (the config's, and running jobs)."""
        with self._lock:
            return [d for d in self._names if self._attrs[d]["watch"]]

    # ------------------------------------------------------------ the daemon's Handler
    def watched_dirs(self) -> list[Path]:
        return self.watch_dirs()

    def targets(self) -> list[Path]:
        return self.dirs()

    def due(self) -> list[Path]:
        """Every run: a decision changes with time alone (a run stalls)."""
        return self.dirs()

    def route(self, path: Path) -> Path | None:
        return self.run_for(path)

    def work(self, run_dir: Path, reasons: frozenset[str]) -> None:
        self.process(run_dir, reasons)

    def failed(self, run_dir: Path, exc: BaseException) -> None:
        """The run's status entry says its handler failed."""
        name = self.name_for(run_dir) or str(run_dir)
        self._book.update_run(name, state="error", error=f"handler failed: {type(exc).__name__}: {exc}")

    def rigs_for(self, run_dir: Path) -> tuple[str, ...] | None:
        """The rigs a run's NPZ goes to (None: every configured rig)."""
        with self._lock:
            return (self._attrs.get(run_dir) or {}).get("rigs")

    def _log_fields(self, name: str, run_dir: Path) -> dict[str, str]:
        """Journal fields naming a run (and its job, so `journalctl JOB_ID=` has it all)."""
        with self._lock:
            job_id = (self._attrs.get(run_dir) or {}).get("job_id")
        return {"RUN": name, "JOB_ID": job_id} if job_id else {"RUN": name}

    def name_for(self, run_dir: Path) -> str | None:
        with self._lock:
            return self._names.get(run_dir)

    def run_for(self, path: Path) -> Path | None:
        """The watched run a changed file belongs to (only its two input files count)."""
        if path.name not in (CONFIG_NAME, SURVIVORS_NAME):
            return None
        with self._lock:
            return path.parent if path.parent in self._names else None

    # ------------------------------------------------------------ work
    def process(self, run_dir: Path, reasons: frozenset[str]) -> None:
        """Bring one run up to date: convert if needed, decide, record; then drop it if it
        was retired (`retire`)."""
        try:
            self._update(run_dir, reasons)
        finally:  # a failed last look still lets a retired run go
            self._forget_if_retired(run_dir)

    def _update(self, run_dir: Path, reasons: frozenset[str]) -> None:
        with self._lock:
            name = self._names.get(run_dir)
            seen = self._seen.get(run_dir)
            attrs = self._attrs.get(run_dir) or {}
            kind, job_id = attrs.get("kind", "watched"), attrs.get("job_id")
        if name is None or seen is None:
            return  # no longer watched (config reloaded)
        if not run_dir.is_dir():
            self._book.update_run(name, state="missing", error=f"{run_dir}: directory not found")
            return
        if "reconcile" in reasons:
            sweep_temps(run_dir)  # what a killed writer (optimizer or converter) left behind
        sigs = self._sigs(run_dir)
        snapshot, snapshot_error = self._read_snapshot(run_dir)
        if sigs != seen.sig or reasons != {"timer"}:
            seen.error = self._convert(name, run_dir, snapshot)
        seen.sig = sigs
        job_state = self.job_state(job_id) if job_id and self.job_state else None
        decision = self._decide(run_dir, snapshot, sigs[0], seen.error, job_state)
        self._record(name, run_dir, snapshot, snapshot_error, decision, seen, kind)

    @staticmethod
    def _sigs(run_dir: Path) -> tuple[FileSig, FileSig]:
        return file_sig(run_dir / CONFIG_NAME), file_sig(run_dir / SURVIVORS_NAME)

    @staticmethod
    def _read_snapshot(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return read_snapshot(run_dir / CONFIG_NAME), None
        except FileNotFoundError:
            return None, None
        except UserError as exc:
            return None, str(exc)

    def _convert(self, name: str, run_dir: Path, snapshot: dict[str, Any] | None) -> str | None:
        """Convert the survivors if stale; return the error text for a corrupt file."""
        survivors = run_dir / SURVIVORS_NAME
        if not survivors.exists():
            return None
        expected = (snapshot or {}).get("survivors_sha256") or None
        fields = {**self._log_fields(name, run_dir), "PATH": str(survivors)}
        limit = self._max_bytes() if self._max_bytes is not None else DEFAULT_MAX_SURVIVORS_BYTES
        try:
            result = convert(survivors, if_stale=True, expected_sha256=expected, max_bytes=limit)
        except SurvivorsInFlux as exc:
            log.info("run %s: survivors still being written, waiting for the next write (%s)",
                     name, exc, extra={**fields, "EVENT": "in_flux"})
            self._book.update_run(
                name, npz_note="survivors differ from the snapshot's survivors_sha256; waiting for the next write"
            )
            return None
        except UserError as exc:
            log.error("run %s: survivors not converted, previous NPZ kept: %s",
                      name, exc, extra={**fields, "EVENT": "convert_failed"})
            self._book.count("conversion_errors")
            return str(exc)
        self._book.update_run(name, npz_note=None)
        if result.converted:
            self._book.count("conversions")
            log.info("run %s: converted %d survivors to %s", name, result.count, result.npz_path.name,
                     extra={**fields, "EVENT": "converted", "SHA256": result.meta.get("npz_sha256", "")})
            for warning in result.warnings:  # an old-pipeline file: what was defaulted
                log.warning("run %s: %s", name, warning, extra={**fields, "EVENT": "convert_warning"})
        if self._on_npz is not None:  # a new NPZ, or the check of an old one (start, reconcile)
            self._on_npz(name, result.npz_path, result.meta_path, result.meta.get("npz_sha256"),
                         self.rigs_for(run_dir))
        return None

    def _decide(
        self, run_dir: Path, snapshot: dict[str, Any] | None, sig: FileSig,
        conversion_error: str | None, job_state: str | None = None,
    ) -> dict[str, Any] | None:
        """`winopt evaluate`'s decision, on the snapshot already read when there is one; a
        survivors file that does not convert escalates. A spool job gets none while queued
        or once cancelled (there is nothing for the watcher to judge), and the daemon is
        who resumes one that was stopped."""

        if job_state in UNJUDGED_JOB_STATES:
            return None
        if conversion_error:
            return decision_for_bad_survivors(run_dir / SURVIVORS_NAME, conversion_error)
        if snapshot is None or sig is None:  # missing or unreadable: evaluate says which
            return evaluate(run_dir, self._thresholds())
        mtime = datetime.fromtimestamp(sig[2] / 1e9, timezone.utc)
        resumer = DAEMON_RESUMER if job_state == "running" else RESUMER
        return decide(snapshot, self._thresholds(), path=run_dir / CONFIG_NAME, file_mtime=mtime,
                      resumer=resumer)  # fmt: skip

    def _record(
        self,
        name: str,
        run_dir: Path,
        snapshot: dict[str, Any] | None,
        snapshot_error: str | None,
        decision: dict[str, Any] | None,
        seen: _Seen,
        kind: str = "watched",
    ) -> None:
        error = seen.error or snapshot_error
        self._book.update_run(
            name,
            kind=kind,
            path=str(run_dir),
            state=run_state(snapshot, error),
            snapshot=snapshot_summary(snapshot),
            progress=self._progress.observe(name, snapshot),
            decision=decision,
            npz=npz_summary(run_dir / NPZ_NAME),
            error=error,
            processed_at=now_iso(),
        )
        if decision is None:  # a queued or cancelled job: nothing to record
            seen.decision = None
            return
        key = decision_key(decision)
        if key == seen.decision:
            return
        seen.decision = key
        self._decisions.append({"run": name, "path": str(run_dir), "time": now_iso(), **decision})
        self._book.count("decisions")
        level = logging.WARNING if key[0] == "escalate" else logging.INFO
        log.log(level, "run %s: decision %s (%s)", name, key[0], key[1],
                extra={**self._log_fields(name, run_dir), "EVENT": "decision", "ACTION": key[0]})


#: job states whose run gets no watcher decision: nothing has run, or it was called off
UNJUDGED_JOB_STATES = frozenset({"queued", "cancelled"})


def decision_key(decision: dict[str, Any]) -> tuple[str, str]:
    """What makes a decision new (a decisions.jsonl line, a journal line): its action and
    reasoning, except that a stall's reasoning names its ever-growing age; a stall is the
    same stall while the snapshot it judged is, or a stalled run would add a line at every
    decision timer, for as long as nobody resumes it."""
    reasoning = str(decision.get("reasoning"))
    if decision.get("rule") == "stalled":
        reasoning = f"stalled, last update {decision.get('last_updated')}"
    return str(decision.get("action")), reasoning


def run_state(snapshot: dict[str, Any] | None, error: str | None) -> str:
    """One word for the run's lifecycle, as `winopt status` shows it."""
    if error:
        return "error"
    if snapshot is None:
        return "waiting"
    status = snapshot.get("status") or "complete"  # old files have no status: complete
    return {"in_progress": "running"}.get(status, status)


def snapshot_summary(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """The snapshot's part of a run's status entry, read as the watcher reads it (one
    reader: the same best, the same "none yet"); a field of the wrong type shows as
    unknown (None): the run's decision escalates it."""
    if snapshot is None:
        return None
    try:
        snap: SnapshotView | None = view(snapshot)
    except SnapshotError:
        snap = None
    return {
        "status": snapshot.get("status"),
        "completed_trials": snap.completed if snap else None,
        "total_trials": snap.total if snap else None,
        "best": snap.best if snap else None,
        "last_updated": snap.last_updated if snap else None,
    }


def npz_summary(npz: Path) -> dict[str, Any] | None:
    """sha256, count and converted_at of the published NPZ, from its meta."""
    meta = read_npz_meta(npz_meta_path(npz))
    if meta is None or not npz.exists():
        return None
    return {
        "sha256": meta.npz_sha256,
        "count": meta.count,
        "converted_at": meta.converted_at,
    }
