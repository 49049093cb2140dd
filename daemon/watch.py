"""Noticing changed files: a watchdog observer whose handler records paths and nothing else.

The roles are watchdog's own: the emitter reads the kernel (inotify), the observer owns
the threads, and our handler only hands each finished file's path to a callback (the
coalescer) — no I/O, no parsing, no locks held for long on the observer's thread. A file
counts as changed when a writer closes it after writing (IN_CLOSE_WRITE) or when it is
renamed into the directory (IN_MOVED_TO, the last step of an atomic publish); temp names
(leading '.' or trailing '.tmp') never count. `Watcher` keeps the wanted directories
scheduled, notices a dead observer or emitter and rebuilds it, and reports watchdog's own
warnings (inotify queue overflow, watch limits) as watcher errors so the daemon reconciles.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyObserver

from winopt.contracts.state_dir import is_temp_name

log = logging.getLogger(__name__)

#: the only events that mean "a file is complete": close-after-write and rename-into
EVENT_FILTER: list[type[FileSystemEvent]] = [FileClosedEvent, FileMovedEvent]


class PathRecorder(FileSystemEventHandler):
    """Runs on the observer thread: passes each finished file's path to `record` (to
    `moved` instead, when given, for a file renamed into place: complete by construction)."""

    def __init__(self, record: Callable[[Path], None], moved: Callable[[Path], None] | None = None) -> None:
        self._record = record
        self._moved = moved or record

    def on_closed(self, event: FileClosedEvent) -> None:
        self._take(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.dest_path:  # empty when the file was moved out of the directory
            self._take(event.dest_path, self._moved)

    def _take(self, path: bytes | str, record: Callable[[Path], None] | None = None) -> None:
        path = os.fsdecode(path)
        if is_temp_name(os.path.basename(path)):
            return
        try:
            (record or self._record)(Path(path))
        except Exception:  # the observer thread must survive whatever the callback does
            log.exception("recording %s failed", path, extra={"PATH": path, "EVENT": "error"})


class ReportingObserver(InotifyObserver):
    """An inotify observer that reports its own thread's end (normal or not)."""

    def __init__(self, on_exit: Callable[[], None]) -> None:
        super().__init__(generate_full_events=True)  # renames from outside count too
        self._on_exit = on_exit

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._on_exit()


class WatcherErrorHook(logging.Handler):
    """watchdog logs (rather than raises) inotify queue overflows and similar losses; each
    such warning means events may be missing, so it counts as a watcher error."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._on_error = on_error

    def emit(self, record: logging.LogRecord) -> None:
        self._on_error(record.getMessage())


ObserverFactory = Callable[[Callable[[], None]], BaseObserver]


class Watcher:
    """Keeps a set of directories watched, and says whether the watching is healthy.

    Called from the daemon's main thread only (`set_dirs`, `check`, `stop`); the
    callbacks it is given run on watchdog's threads and must be quick and thread-safe."""

    def __init__(
        self,
        record: Callable[[Path], None],
        on_error: Callable[[str], None],
        observer_factory: ObserverFactory = ReportingObserver,
        moved: Callable[[Path], None] | None = None,
    ) -> None:
        self._handler = PathRecorder(record, moved)
        self._on_error = on_error
        self._factory = observer_factory
        self._observer: BaseObserver | None = None
        self._wanted: tuple[Path, ...] = ()
        self._watches: dict[Path, ObservedWatch] = {}
        self._stopping = False
        self._reported: set[Path] = set()  # directories whose watch failure was logged
        self._hook = WatcherErrorHook(on_error)
        logging.getLogger("watchdog").addHandler(self._hook)

    # ------------------------------------------------------------ public
    @property
    def watching(self) -> list[Path]:
        """Directories with a live watch."""
        return [d for d in self._wanted if d in self._watches]

    @property
    def missing(self) -> list[Path]:
        """Wanted directories that could not be watched (absent, unreadable)."""
        return [d for d in self._wanted if d not in self._watches]

    def start(self, dirs: Iterable[Path]) -> None:
        self._new_observer()
        self.set_dirs(dirs)

    def set_dirs(self, dirs: Iterable[Path]) -> None:
        """Watch exactly `dirs` from now on."""
        self._wanted = tuple(dict.fromkeys(dirs))
        for d in [d for d in self._watches if d not in self._wanted]:
            self._unschedule(d)
        for d in self._wanted:
            if d not in self._watches:
                self._schedule(d)

    def observer_alive(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def check(self) -> bool:
        """Repair what can be repaired; return whether watching is healthy.

        A dead observer thread is rebuilt; a dead emitter (its directory was removed) is
        dropped and its directory watched again once it exists. Either repair is a watcher
        error: events may have been missed, so the caller reconciles."""
        if not self.observer_alive():
            self._on_error("the observer thread had stopped; restarting it")
            try:
                self._new_observer()
            except Exception as exc:
                log.error("cannot restart the file observer: %s", exc, extra={"EVENT": "watch_failed"})
                return False
            self._watches.clear()
        repaired = False
        assert self._observer is not None
        live = {e.watch for e in self._observer.emitters if e.is_alive()}
        for d, watch in list(self._watches.items()):
            if watch not in live:
                self._unschedule(d)
                repaired = True
        for d in self.missing:
            repaired |= self._schedule(d)
        if repaired:
            self._on_error("watches were re-established")
        return self.observer_alive()

    def stop(self) -> None:
        self._stopping = True
        logging.getLogger("watchdog").removeHandler(self._hook)
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive():
                self._observer.join(timeout=5)

    # ------------------------------------------------------------ internals
    def _new_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop()
        observer = self._factory(self._observer_exited)
        observer.start()
        self._observer = observer

    def _observer_exited(self) -> None:
        if not self._stopping:
            self._on_error("the observer thread ended")

    def _schedule(self, d: Path) -> bool:
        assert self._observer is not None
        try:
            self._watches[d] = self._observer.schedule(
                self._handler, os.fspath(d), recursive=False, event_filter=EVENT_FILTER
            )
        except OSError as exc:
            level = logging.DEBUG if d in self._reported else logging.WARNING
            self._reported.add(d)
            log.log(
                level,
                "cannot watch %s: %s (will retry at each reconcile)",
                d,
                exc.strerror or exc,
                extra={"PATH": str(d), "EVENT": "watch_failed"},
            )
            return False
        self._reported.discard(d)
        log.info("watching %s", d, extra={"PATH": str(d), "EVENT": "watch"})
        return True

    def _unschedule(self, d: Path) -> None:
        watch = self._watches.pop(d)
        if self._observer is not None:
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError) as exc:
                log.debug("unscheduling %s: %s", d, exc)
