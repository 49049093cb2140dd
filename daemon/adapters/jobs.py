"""Spool jobs inside the daemon (SPEC §5, issue 5): the spool as one handler target, the
job runner, and what each job event means for status.json, the journal and the runs.

Any finished file in STATE/spool/ (close-after-write or rename-into), a reconcile, or a
scan's own "not ready yet, look again in N s" schedules one spool scan on a worker thread;
the jobs it accepts go to the `JobRunner`, which starts at most `max_parallel_jobs`
`winopt optimize` children. Files renamed into the spool are complete by construction
(`winopt submit`, `mv`): the observer tells us their names and the scan skips their
grace period. `*.sync` requests belong to the distribution handler and are never read.

Each job directory is also a run (`WatchedRuns.add_run`, named by the job id), so it is
converted and decided like a watched directory; it holds an inotify watch only while its
child runs (a finished job changes no files, and inotify instances are a scarce per-user
resource). Every `JobEvent` is one journal line with a JOB_ID field, and the job's
status.json entry is rebuilt from its state file, the truth on disk, with the job's
history, so no transition is lost to coalesced status writes.

status.json is rewritten on every change, so it holds every active job but only the
`[jobs] finished_kept` newest finished ones (by end time): months of jobs would otherwise
make each rewrite megabytes. Older ones leave the jobs section, their runs are retired
(no more timer decisions or reconciles), and `jobs_left_out` counts them; their
directories stay, they are the user's results.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from winopt.contracts.state_dir import ENDED_MARK
from winopt.daemon.handler import RUN_KIND, SPOOL_KIND, Quiet
from winopt.daemon.config import DaemonConfig
from winopt.daemon.reports import JobReports
from winopt.daemon.status import StatusBook
from winopt.handlers.jobs.cleanup import remove_job_dir
from winopt.handlers.jobs.runner import JobRunner
from winopt.handlers.jobs.store import TERMINAL, JobRecord, cancel_requester
from winopt.handlers.jobs.spool import JobEvent, Spool

log = logging.getLogger(__name__)

#: the daemon's handler kinds (its queue keys are `(kind, target)`), and the one spool target
SPOOL_TARGET = "spool"
#: event kinds after which a job's child no longer runs (its directory needs no watch)
ENDED = frozenset({*TERMINAL, "stopped", "interrupted", "retrying"})
LEVELS = {
    "rejected": logging.WARNING, "cancel_rejected": logging.WARNING, "blocked": logging.WARNING,
    "orphan_stopped": logging.WARNING, "failed": logging.ERROR, "error": logging.ERROR,
    "retrying": logging.WARNING, "recovered": logging.WARNING,
}
COUNTED = ("accepted", "rejected", "complete", "failed", "cancelled")
#: history lines a status entry carries (the state file keeps up to 50)
STATUS_HISTORY = 20

Record = Callable[..., None]  # CoalescingQueue.record(key, reason, delay=...)
#: how finished jobs are ordered, oldest first (see `finished_key`)
FinishedKey = tuple[float, int, str]


class Runs(Protocol):
    """What the jobs need of the run adapter (`WatchedRuns`): a job's directory is a run."""

    job_state: Callable[[str], str | None] | None

    def add_run(self, name: str, path: Path, *, kind: str = ..., job_id: str | None = ...,
                rigs: list[str] | tuple[str, ...] | None = ..., watch: bool = ...) -> None: ...

    def retire(self, path: Path) -> bool: ...

    def process(self, run_dir: Path, reasons: frozenset[str]) -> None: ...


class SpoolJobs(Quiet):
    """The spool handler's work, routing and events; `start` once, `stop` on SIGTERM."""

    kind = SPOOL_KIND

    def __init__(
        self,
        config: DaemonConfig,
        book: StatusBook,
        runs: Runs,
        *,
        schedule: Record,
        watches_changed: Callable[[], None],
        shared_storage: bool | None = None,
    ) -> None:
        self._book = book
        self._runs = runs
        self._schedule = schedule
        self._watches_changed = watches_changed
        jobs = config.jobs
        self.spool = Spool(config.state_dir, allowed_draws_dirs=config.draws_dirs(),
                           known_rigs=list(config.rigs), grace=jobs.grace, max_draws_bytes=jobs.max_draws_bytes,
                           shared_storage=shared_storage)
        self.runner = JobRunner(self.spool.store, max_parallel_jobs=jobs.max_parallel_jobs, gpus=jobs.gpus,
                                stop_timeout=jobs.stop_timeout, on_event=self._on_event)
        self._renamed: set[str] = set()
        self._lock = threading.Lock()  # the renamed names
        self._events_lock = threading.Lock()  # one event at a time; the finished jobs below
        self._kept = jobs.finished_kept
        self._finished: dict[str, FinishedKey] = {}  # finished jobs in status.json -> end order
        self._left_out: set[str] = set()  # finished jobs beyond finished_kept, not tracked
        runs.job_state = self._job_state
        self.reports = JobReports()  # report.html when a job ends (issue 16)

    def _job_state(self, job_id: str) -> str | None:
        """The job's recorded state (None if it cannot be read: judge its run as usual)."""
        try:
            return self.spool.store.load(job_id).state
        except Exception:  # noqa: BLE001 - a missing or unreadable state file is no decision's concern
            return None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Finish what a crash left half done, show every job, then let the runner stop
        orphans, resume interrupted jobs and queue the rest."""
        recovered = self.spool.recover()
        records = self.spool.store.jobs()
        tracked, left_out = split_finished(records, self._kept)
        with self._events_lock:
            for record in tracked:
                self._show(record)
            self._left_out = {r.id for r in left_out}
            self._note_left_out(len(left_out))
        self._book.set_section("rejected", self.spool.rejected_files())
        for record in records:
            if record.terminal and not (self.spool.store.dir(record.id) / ENDED_MARK).exists():
                self._ended(record)  # its end-of-job work was cut short, or never started
        draws = ", ".join(map(str, self.spool.allowed_draws_dirs))
        log.info("spool %s: %d jobs on record; draws allowed under %s", self.spool.dir, len(records), draws,
                 extra={"EVENT": "spool_start", "PATH": str(self.spool.dir)})
        self.runner.start()
        self.runner.handle_scan(recovered)

    def stop(self) -> None:
        """SIGTERM the children and wait (they write "interrupted"; their jobs stay
        `running` on disk and resume at the next start), then record their last state."""
        running = list(self.runner.running())
        self.runner.stop()
        self.reports.stop()
        for job_id in running:
            try:
                self._runs.process(self.spool.store.dir(job_id), frozenset({"stop"}))
            except Exception as exc:  # the stop goes on whatever one run's files hold
                log.error("job %s: cannot record its final state: %s", job_id, exc,
                          extra={"JOB_ID": job_id, "EVENT": "handler_error"})

    def reload(self, config: DaemonConfig) -> None:
        """New `[jobs]` limits and draws directories, and the rigs jobs may name; running
        children are not disturbed."""
        jobs = config.jobs
        self.spool.allowed_draws_dirs = list(config.draws_dirs())
        self.spool.known_rigs = list(config.rigs)
        self.spool.grace = jobs.grace
        self.spool.max_draws_bytes = jobs.max_draws_bytes
        self.runner.stop_timeout = jobs.stop_timeout
        self.runner.set_limits(jobs.max_parallel_jobs, jobs.gpus)
        with self._events_lock:
            self._kept = jobs.finished_kept
            self._bring_back()
            self._drop_oldest()
        log.info("jobs: at most %d at once%s", self.runner.slots,
                 f" on GPUs {', '.join(map(str, jobs.gpus))}" if jobs.gpus else "", extra={"EVENT": "reload"})
        self._schedule((SPOOL_KIND, SPOOL_TARGET), "reload", delay=0)

    # ------------------------------------------------------------ the daemon's Handler
    def route(self, path: Path) -> str | None:
        """Observer thread: a job file or cancel request in the spool -> the spool target."""
        return SPOOL_TARGET if self.spool.is_spool_entry(path) else None

    def moved(self, path: Path) -> None:
        """Observer thread: `path` was renamed into place, so it is complete."""
        if self.spool.is_spool_entry(path):
            with self._lock:
                self._renamed.add(path.name)

    def watched_dirs(self) -> list[Path]:
        return [self.spool.dir]

    def targets(self) -> list[str]:
        return [SPOOL_TARGET]

    def work(self, _target: Any, reasons: frozenset[str]) -> None:
        """Worker thread: take every ready spool file; look again when some were not."""
        with self._lock:
            renamed = set(self._renamed)
        result = self.spool.scan(renamed=renamed)
        with self._lock:
            self._renamed -= {n for n in renamed if not os.path.lexists(self.spool.dir / n)}
        self.runner.handle_scan(result)
        if result.retry_after is not None:
            self._schedule((SPOOL_KIND, SPOOL_TARGET), "retry", delay=result.retry_after)
        if "reconcile" in reasons:  # someone may have cleaned rejected/
            self._book.set_section("rejected", self.spool.rejected_files())
            self.runner.resume_lost()  # a job whose exit could not be recorded (a full disk)

    # ------------------------------------------------------------ events
    def _on_event(self, event: JobEvent) -> None:
        """Any thread: one job event -> journal line, counters, status entry, run."""
        self._log(event)
        if event.kind in COUNTED:
            self._book.count(f"jobs_{event.kind}")
        if event.kind in ("rejected", "cancel_rejected") and event.rejected_as:
            # as `Spool.rejected_files` rebuilds it at reconciles (the reason names the spool file)
            self._book.update_entry("rejected", event.rejected_as, **self.spool.rejected_entry(event.rejected_as))
        if event.job_id is None:
            return
        # Events reach us from several threads, not always in order (a short job's
        # "complete" may overtake its "started"): so one at a time, and what is recorded is
        # read now from the state file and the runner, never inferred from the event.
        with self._events_lock:
            if event.job_id in self._left_out or not self.spool.store.exists(event.job_id):
                return  # a finished job no longer tracked never changes again
            record = self.spool.store.load(event.job_id)
            pid = self.runner.running().get(record.id)
            self._track(record, watch=pid is not None)
            if event.kind in ("started", "resumed", *ENDED):
                self._watches_changed()
            if event.kind in ENDED:
                self._schedule((RUN_KIND, self.spool.store.dir(record.id)), "job ended", delay=0)
            self._book.update_entry("jobs", record.id, **self.entry(record, pid))
            if record.terminal:
                self._finished[record.id] = finished_key(record)
                self._drop_oldest()
                if event.kind in TERMINAL:
                    self._ended(record)

    def _ended(self, record: JobRecord) -> None:
        """The work once a job ends: its shared study closed (a rigs job), report.html."""
        self.reports.request(record.id, self.spool.store.dir(record.id), close_study=record.spec.workers == "rigs")

    # ------------------------------------------------------------ clean-up (daemon/adapters/clean.py)
    def remove(self, job_id: str) -> None:
        """A finished job cleaned away: out of status.json (its run retired on its own
        queue key, so no worker writes it back), then its directory. Raises ValueError
        for a job that is not finished: a running job is never removed."""
        with self._events_lock:
            if not self.spool.store.load(job_id).terminal:
                raise ValueError(f"job {job_id} is not finished")
            self._finished.pop(job_id, None)
            if job_id in self._left_out:
                self._left_out.discard(job_id)
                self._book.set_field("jobs_left_out", len(self._left_out))
            self._book.remove_entry("jobs", job_id)
            job_dir = self.spool.store.dir(job_id)
            remove_job_dir(self.spool.store, job_id)
            if self._runs.retire(job_dir):
                self._schedule((RUN_KIND, job_dir), "removed", delay=0)

    # ------------------------------------------------------------ finished jobs kept
    def _show(self, record: JobRecord) -> None:
        """Track a job with no running child: its run, its status entry (events lock held)."""
        self._track(record, watch=False)
        self._book.update_entry("jobs", record.id, **self.entry(record, None))
        if record.terminal:
            self._finished[record.id] = finished_key(record)

    def _drop_oldest(self) -> None:
        """Past `finished_kept`, the oldest finished jobs leave status.json and their runs
        are retired after one last look, which a job that just finished still needs for
        its final conversion and decision (events lock held)."""
        excess = len(self._finished) - self._kept
        if excess <= 0:
            return
        for job_id in sorted(self._finished, key=self._finished.__getitem__)[:excess]:
            del self._finished[job_id]
            self._left_out.add(job_id)
            self._book.remove_entry("jobs", job_id)
            job_dir = self.spool.store.dir(job_id)
            if self._runs.retire(job_dir):
                self._schedule((RUN_KIND, job_dir), "untracked", delay=0)
        self._note_left_out(excess)

    def _bring_back(self) -> None:
        """A reload that raised `finished_kept` tracks the newest jobs left out again (the
        reload's reconcile looks at their runs); events lock held."""
        room = self._kept - len(self._finished)
        if room <= 0 or not self._left_out:
            return
        records = [r for r in self.spool.store.jobs() if r.id in self._left_out]  # unreadable ones skipped
        for record in sorted(records, key=finished_key)[-room:]:
            self._left_out.discard(record.id)
            self._show(record)
        self._book.set_field("jobs_left_out", len(self._left_out))

    def _note_left_out(self, dropped: int) -> None:
        """status.json's `jobs_left_out`, and one journal line when jobs were dropped."""
        self._book.set_field("jobs_left_out", len(self._left_out))
        if dropped:
            log.info("jobs: %d finished job(s) no longer tracked in status.json (finished_kept = %d, "
                     "%d left out in all); their results stay in %s", dropped, self._kept, len(self._left_out),
                     self.spool.store.root, extra={"EVENT": "jobs_untracked", "PATH": str(self.spool.store.root)})

    def _log(self, event: JobEvent) -> None:
        """One journal line per event; USER names who submitted or cancelled the job."""
        fields = {"EVENT": f"job_{event.kind}"}
        if event.job_id:
            fields["JOB_ID"] = event.job_id
        user = event.user or (self._canceller(event.job_id) if event.kind == "cancelled" else None)
        if user:
            fields["USER"] = user
        if event.kind in ("rejected", "cancel_rejected", "error"):
            where = f"spool/{event.name}"
            if event.rejected_as:
                fields["PATH"] = f"rejected/{event.rejected_as}"
            text = f"{where}: {event.kind.replace('_', ' ')}: {event.reason.removeprefix(where + ': ')}"
        elif event.kind == "accepted":
            text = f"job {event.job_id}: accepted from spool/{event.name}, {event.reason}"
        else:
            text = f"job {event.job_id}: {event.kind.replace('_', ' ')}: {event.reason}"
            if event.kind == "cancelled" and user:
                text += f" (requested by {user})"
        log.log(LEVELS.get(event.kind, logging.INFO), "%s", text, extra=fields)

    def _canceller(self, job_id: str | None) -> str | None:
        """Who asked to cancel `job_id` (its state file's history), for the journal."""
        try:
            return cancel_requester(self.spool.store.load(job_id)) if job_id else None
        except (KeyError, OSError, ValueError, TypeError):
            return None

    def _track(self, record: JobRecord, *, watch: bool) -> None:
        """The job's directory as a run (watched by inotify only while it runs)."""
        rigs = list(record.spec.rigs) or None  # none named: every rig
        self._runs.add_run(record.id, self.spool.store.dir(record.id), kind="job", job_id=record.id,
                           rigs=rigs, watch=watch)

    def entry(self, record: JobRecord, pid: int | None) -> dict[str, Any]:
        """A job's status.json entry. On disk a stopped job stays `running` (that is what
        makes it resume); without a child it shows as `interrupted` here."""
        history = list(record.history)
        state = "interrupted" if record.state == "running" and pid is None else record.state
        started = next((h["at"] for h in history if h.get("state") == "running"), None)
        return {
            "state": state,
            "name": record.spec.name,
            "owner": record.owner,
            "priority": record.priority,
            "pid": pid,
            "trials": record.spec.trials,
            "run": record.id,
            "dir": str(self.spool.store.dir(record.id)),
            "source": record.source,
            "accepted_at": record.accepted_at,
            "started_at": started,
            "ended_at": record.updated_at if record.terminal else None,
            "attempts": record.attempts,
            "exit_code": record.exit_code,
            "reason": history[-1]["reason"] if history else None,
            "error": record.error,
            "cancel_requested": record.cancel_requested,
            "rigs": list(record.spec.rigs) or None,
            "history": history[-STATUS_HISTORY:],
        }


def finished_key(record: JobRecord) -> FinishedKey:
    """A finished job's place, oldest first: its end (a finished job's state file is last
    written when it ends; its acceptance time if that does not parse), then acceptance
    order, since the times are to the second and tiny jobs end within one."""
    for text in (record.updated_at, record.accepted_at):
        try:
            return datetime.fromisoformat(text).timestamp(), record.accepted_ns, record.id
        except (TypeError, ValueError):
            continue
    return 0.0, record.accepted_ns, record.id


def split_finished(records: list[JobRecord], kept: int) -> tuple[list[JobRecord], list[JobRecord]]:
    """(tracked, left out): every active job and the `kept` newest finished ones, and
    the older finished ones, each list in the order given."""
    finished = sorted((r for r in records if r.terminal), key=finished_key, reverse=True)
    left_out = {r.id for r in finished[kept:]}
    return [r for r in records if r.id not in left_out], [r for r in records if r.id in left_out]
