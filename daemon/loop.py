"""`winopt daemon`: the main loop that ties watching, coalescing, work, status and systemd.

The main thread owns the lifecycle and the timers; it sleeps in select() on a wakeup
pipe until a signal, a watcher error or its next timer (reconcile, decision timer,
systemd watchdog ping). File events go straight from the observer thread into the
coalescing queue; worker threads do the work; the status writer publishes status.json.
Work is organised as handlers, one adapter per feature (`winopt.daemon.handler.Handler`:
which changed files are its business, which directories it needs watched, what a
reconcile and the decision timer re-examine, the work itself and where its failure
shows). The loop knows none of them by name: runs, spool jobs, clean requests and rig
sync requests plug in the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import filelock
import msgspec

from winopt import __version__
from winopt.contracts.locks import lock_for
from winopt.contracts.publish import sweep_temps
from winopt.daemon import notify
from winopt.daemon.coalesce import CoalescingQueue
from winopt.daemon.adapters.clean import Cleaner
from winopt.daemon.config import DaemonConfig, run_names
from winopt.daemon.adapters.rigs import RigDistribution
from winopt.daemon.adapters.jobs import SpoolJobs
from winopt.daemon.handler import Handler
from winopt.daemon.journal import set_level, setup_logging
from winopt.daemon.logfile import attach_log_file
from winopt.daemon.repeats import RepeatedErrors
from winopt.daemon.adapters.runs import WatchedRuns
from winopt.daemon.adapters.studies import export_storage
from winopt.daemon.status import DecisionLog, StatusBook
from winopt.contracts.status import read_status
from winopt.contracts.clock import now_iso
from winopt.daemon.wakeup import Wakeup
from winopt.daemon.watch import Watcher
from winopt.contracts.errors import UserError

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state dir if needed; refuse one the daemon cannot write."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{state_dir}: cannot create the state dir: {exc.strerror} (give --state-dir)") from None
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise UserError(f"{state_dir}: state dir not writable by uid {os.getuid()} (give --state-dir)")


class Daemon:
    """One daemon process: `serve()` runs until SIGTERM/SIGINT and returns the exit code."""

    def __init__(self, load_config: Callable[[], DaemonConfig]) -> None:
        self._load_config = load_config
        self.config = load_config()  # ConfigError -> exit 2 before anything starts
        self._wakeup = Wakeup()
        self._reconcile_wanted = threading.Event()
        self._watches_wanted = threading.Event()
        self._timers: dict[str, float] = {}
        self._healthy = True
        self._handlers: dict[str, Handler] = {}
        #: a handler failing the same way at every event (a full disk) logs once a minute
        self._failures = RepeatedErrors(log)

    def register(self, handler: Handler) -> None:
        """Add a feature's adapter (before `serve` starts watching, or followed by a
        reload). Order matters: a changed file goes to the first handler that routes it."""
        self._handlers[handler.kind] = handler

    # ------------------------------------------------------------ lifecycle
    def serve(self) -> int:
        cfg = self.config
        prepare_state_dir(cfg.state_dir)
        setup_logging(cfg.log_level)
        instance = lock_for(cfg.state_dir / "daemon", timeout=0)
        try:
            instance.acquire()
        except filelock.Timeout:
            raise UserError(f"{cfg.state_dir}: another winopt daemon is using this state dir") from None
        group_log = attach_log_file(cfg.state_dir)  # members read it: `winopt logs`
        try:
            self._wakeup.catch((signal.SIGHUP, *STOP_SIGNALS))
            self._start()
            self._loop()
            self._stop()
        finally:
            if group_log is not None:
                logging.getLogger().removeHandler(group_log)
                group_log.close()
            instance.release()
        return 0

    def _start(self) -> None:
        cfg = self.config
        # `workers = "rigs"` jobs' children reach the shared storage; without one they are refused
        shared_storage = export_storage(cfg.optuna)
        sweep_temps(cfg.state_dir)  # a status.json temp that a kill -9 left (more at each reconcile)
        previous = self._previous_runs(cfg.state_dir)
        self.book = StatusBook(cfg.state_dir, min_interval=cfg.status_interval, on_written=self._status_written)
        self.rigs = RigDistribution(self.book, cfg.state_dir, cfg.rigs, cfg.distribution)
        self.runs = WatchedRuns(self.book, DecisionLog(cfg.state_dir), self._thresholds, on_npz=self.rigs.on_npz,
                                max_survivors_bytes=lambda: self.config.convert.max_survivors_bytes)
        self._thresholds_now = cfg.make_thresholds()
        self.queue = CoalescingQueue(self._work, workers=cfg.workers, debounce=cfg.debounce,
                                     max_delay=cfg.max_delay, on_error=self._work_failed)
        self.register(self.runs)
        self.register(self.rigs)  # before the spool jobs: `winopt sync` requests (spool/*.sync)
        self.watcher = Watcher(self._file_changed, self._watcher_error, moved=self._file_moved)
        self.book.update_daemon(
            pid=os.getpid(), version=__version__, started_at=now_iso(), state="starting",
            config=str(cfg.source) if cfg.source else None, state_dir=str(cfg.state_dir),
        )
        log.info("winopt daemon %s starting (pid %d, state dir %s, config %s)", __version__, os.getpid(),
                 cfg.state_dir, cfg.source or "none: defaults and flags", extra={"EVENT": "start"})
        self.book.start()
        self.runs.set_runs(run_names(cfg.watch), previous)
        self.jobs = SpoolJobs(cfg, self.book, self.runs, schedule=self.queue.record,
                              watches_changed=self.watches_changed, shared_storage=shared_storage)
        self.register(self.jobs)
        self.cleaner = Cleaner(cfg.state_dir, self.jobs, self.book, cfg.jobs.keep)  # winopt clean, [jobs] keep
        self.register(self.cleaner)
        self.jobs.start()  # resumes the jobs a stop or crash interrupted
        self.watcher.start(self._watched_dirs())
        self.queue.start()
        self._reconcile("start")
        self._arm_timers()
        self.book.update_daemon(state="running")
        notify.notify("READY=1", "STATUS=" + self._summary(self.book.snapshot()))
        log.info("ready: watching %d of %d directories", len(self.watcher.watching), len(self._watched_dirs()),
                 extra={"EVENT": "ready"})

    def _stop(self) -> None:
        notify.notify("STOPPING=1")
        log.info("stopping: finishing the work in hand", extra={"EVENT": "stopping"})
        self.book.update_daemon(state="stopping")
        self.watcher.stop()
        # children first: they need their stop_timeout to write "interrupted" within systemd's
        # TimeoutStopSec, which a long conversion drained before them could otherwise eat
        self.jobs.stop()  # children SIGTERMed: they write "interrupted"; resumed at next start
        self.rigs.stop()  # transfers in flight end now; the next start checks every rig
        left = self.queue.stop()
        if left:
            log.info("left for the next start's reconcile: %s", ", ".join(map(_key_text, left)),
                     extra={"EVENT": "stopping"})
        self.book.update_daemon(state="stopped", stopped_at=now_iso(), observer_alive=False,
                                workers={"alive": 0, "configured": self.config.workers})
        self.book.stop()
        self._wakeup.close()
        log.info("stopped", extra={"EVENT": "stopped"})

    # ------------------------------------------------------------ main loop
    def _loop(self) -> None:
        while True:
            timeout = min(self._timers.values()) - time.monotonic() if self._timers else None
            for signum in self._wakeup.wait(timeout):
                if signum in STOP_SIGNALS:
                    log.info("received %s", signal.Signals(signum).name, extra={"EVENT": "signal"})
                    return
                if signum == signal.SIGHUP:
                    self._reload()
            if self._reconcile_wanted.is_set():
                self._reconcile("watcher error")
            if self._watches_wanted.is_set():
                self._watches_wanted.clear()
                self.watcher.set_dirs(self._watched_dirs())
                self.book.update_daemon(watching=[str(d) for d in self.watcher.watching],
                                        missing=[str(d) for d in self.watcher.missing])
            self._run_due_timers()

    def _arm_timers(self) -> None:
        now = time.monotonic()
        cfg = self.config
        self._timers = {"reconcile": now + cfg.reconcile_interval, "decide": now + cfg.decide_interval}
        interval = notify.watchdog_interval()
        if interval is not None:
            self._timers["watchdog"] = now  # first ping right away
            self._watchdog_interval = interval

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        cfg = self.config
        if self._timers.get("watchdog", float("inf")) <= now:
            self._timers["watchdog"] = now + self._watchdog_interval
            self._ping_watchdog()
        if self._timers["reconcile"] <= now:
            self._timers["reconcile"] = now + cfg.reconcile_interval
            self._reconcile("timer")
        if self._timers["decide"] <= now:
            self._timers["decide"] = now + cfg.decide_interval
            for kind, handler in self._handlers.items():
                for target in handler.due():
                    self.queue.record((kind, target), "timer", delay=0)

    # ------------------------------------------------------------ liveness
    def _check_health(self) -> bool:
        """Observer, workers and status writer alive (repairing what can be); the systemd watchdog is fed
        only while this holds, so a daemon gone blind is restarted by systemd."""
        observer_ok = self.watcher.check()
        revived = self.queue.revive()
        if revived:
            log.error("%d worker thread(s) had died; replaced", revived, extra={"EVENT": "worker_died"})
        alive, configured = self.queue.alive()
        writer_ok = self.book.alive()
        healthy = observer_ok and alive == configured and writer_ok
        self.book.update_daemon(
            observer_alive=observer_ok, workers={"alive": alive, "configured": configured},
            watching=[str(d) for d in self.watcher.watching], missing=[str(d) for d in self.watcher.missing],
        )
        if healthy != self._healthy:
            log.log(logging.INFO if healthy else logging.CRITICAL,
                    "liveness %s (observer %s, workers %d/%d, status writer %s)", "restored" if healthy else "FAILED",
                    "alive" if observer_ok else "dead", alive, configured, "alive" if writer_ok else "dead",
                    extra={"EVENT": "liveness"})
        self._healthy = healthy
        return healthy

    def _ping_watchdog(self) -> None:
        if self._check_health():
            notify.notify("WATCHDOG=1")

    # ------------------------------------------------------------ events and work
    def _watched_dirs(self) -> list[Path]:
        return list(dict.fromkeys(d for h in self._handlers.values() for d in h.watched_dirs()))

    def _file_changed(self, path: Path) -> None:
        """Observer thread: map a changed file to its handler's target and record it;
        nothing else."""
        for kind, handler in self._handlers.items():
            target = handler.route(path)
            if target is not None:
                self.queue.record((kind, target), "changed")
                self.book.count("events")
                self.book.update_daemon(last_event={"path": str(path), "at": now_iso()})
                return

    def _file_moved(self, path: Path) -> None:
        """Observer thread: a file renamed into a watched directory (complete by
        construction); handlers that care hear it, then it is routed like any change."""
        for handler in self._handlers.values():
            handler.moved(path)
        self._file_changed(path)

    def watches_changed(self) -> None:
        """Any thread: a handler's `dirs()` changed (a job started or ended); the main
        loop re-applies them (the watcher is the main thread's)."""
        self._watches_wanted.set()
        self._wakeup.wake()

    def _watcher_error(self, message: str) -> None:
        """Any thread: events may have been lost; reconcile from the main loop."""
        log.warning("watcher: %s; reconciling", message, extra={"EVENT": "watcher_error"})
        self._reconcile_wanted.set()
        self._wakeup.wake()

    def _reconcile(self, why: str) -> None:
        """Catch what events missed: every run is looked at again (the work itself converts
        only a stale NPZ and records only a changed decision)."""
        self._reconcile_wanted.clear()
        self._check_health()
        sweep_temps(self.config.state_dir)  # status.json temps of a killed daemon, once stale
        n = 0
        for kind, handler in self._handlers.items():
            for target in handler.targets():
                self.queue.record((kind, target), "reconcile", delay=0)
                n += 1
        self.book.count("reconciles")
        self.book.update_daemon(last_reconcile=now_iso())
        log.debug("reconcile (%s): %d targets scheduled", why, n, extra={"EVENT": "reconcile"})

    def _work(self, key: Hashable, reasons: frozenset[str]) -> None:
        kind, target = key  # type: ignore[misc]
        self._handlers[kind].work(target, reasons)
        self._failures.clear(key)  # a repeating failure of this target is over

    def _work_failed(self, key: Hashable, exc: BaseException) -> None:
        kind, target = key  # type: ignore[misc]
        # an OSError's own text names the temp file it failed on: its strerror repeats
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self._failures.log(key, logging.ERROR, f"{kind} {target}: handler failed: {type(exc).__name__}: {detail}",
                           exc_info=exc, extra={"PATH": str(target), "EVENT": "handler_error"})
        self.book.count("handler_errors")
        self._handlers[kind].failed(target, exc)

    def _thresholds(self) -> Any:
        return self._thresholds_now

    # ------------------------------------------------------------ reload
    def _reload(self) -> None:
        notify.reloading()
        log.info("SIGHUP: reloading the config", extra={"EVENT": "reload"})
        try:
            new = self._load_config()
            thresholds = new.make_thresholds()
        except Exception as exc:  # noqa: BLE001 - no config file may stop the daemon
            text = str(exc) if isinstance(exc, UserError) else f"unexpected {type(exc).__name__}: {exc}"
            log.error("reload failed, keeping the current config: %s", text, extra={"EVENT": "reload_failed"},
                      exc_info=None if isinstance(exc, UserError) else exc)
            notify.notify("READY=1", "STATUS=reload failed, old config kept: " + text)
            return
        new = self._keep_restart_only(new)
        self.config = new
        self._thresholds_now = thresholds
        set_level(new.log_level)
        self.queue.debounce, self.queue.max_delay = new.debounce, new.max_delay
        self.book.min_interval = new.status_interval
        self.runs.set_runs(run_names(new.watch))
        self.jobs.reload(new)
        self.cleaner.reload(new.jobs.keep)
        self.rigs.reload(new.rigs, new.distribution)
        self.watcher.set_dirs(self._watched_dirs())
        self._reconcile("reload")
        self._arm_timers()
        notify.notify("READY=1", "STATUS=" + self._summary(self.book.snapshot()))
        log.info("config reloaded: watching %d directories", len(new.watch), extra={"EVENT": "reloaded"})

    def _keep_restart_only(self, new: DaemonConfig) -> DaemonConfig:
        """Settings that only a restart can change keep their running values (and say so)."""
        keep: dict[str, Any] = {}
        for name in ("state_dir", "workers", "optuna"):
            if getattr(new, name) != getattr(self.config, name):
                log.warning("%s changed to %s: takes effect at the next restart", name, getattr(new, name),
                            extra={"EVENT": "reload"})
                keep[name] = getattr(self.config, name)
        return msgspec.structs.replace(new, **keep)

    # ------------------------------------------------------------ status
    @staticmethod
    def _previous_runs(state_dir: Path) -> dict[str, Any]:
        try:
            return read_status(state_dir).get("runs") or {}
        except (OSError, ValueError, AttributeError):
            return {}

    def _status_written(self, doc: dict[str, Any]) -> None:
        text = self._summary(doc)
        if text != getattr(self, "_last_status_line", None):
            self._last_status_line = text
            notify.status_line(text)

    @staticmethod
    def _summary(doc: dict[str, Any]) -> str:
        """The one-line STATUS= for `systemctl status`."""
        daemon = doc.get("daemon", {})
        counters = daemon.get("counters", {})
        runs = doc.get("runs", {})
        errors = sum(1 for r in runs.values() if r.get("error"))
        text = f"{len(runs)} runs ({errors} with errors), {counters.get('conversions', 0)} conversions"
        jobs = [j.get("state") for j in (doc.get("jobs") or {}).values()]
        if jobs:
            text += f", jobs: {jobs.count('running')} running, {jobs.count('queued')} queued"
        copies = [c.get("state") for r in (doc.get("rigs") or {}).values() for c in (r.get("runs") or {}).values()]
        if copies:
            text += f", rig copies: {copies.count('synced')}/{len(copies)} synced"
        last = daemon.get("last_event")
        if last:
            text += f", last event {Path(last['path']).parent.name}/{Path(last['path']).name} at {last['at'][11:19]}"
        return text


def _key_text(key: Hashable) -> str:
    kind, target = key  # type: ignore[misc]
    return f"{kind} {target}"
