"""What the daemon's loop asks of each feature's adapter: the `Handler` protocol.

The loop knows no feature by name. Each adapter (runs, spool jobs, clean requests, rig
sync requests) says which changed files are its business (`route`, on the observer
thread), which directories it needs watched, what a reconcile and the decision timer look
at again, how to do the work for one target (on a worker thread), and where a failure of
that work shows. The loop queues targets as `(kind, target)` keys, so two adapters never
share a target by accident.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any, Protocol

#: the queue kinds of the adapters (one adapter may schedule another's target by its kind)
RUN_KIND, SPOOL_KIND, CLEAN_KIND, SYNC_KIND = "run", "spool", "clean", "sync"


class Handler(Protocol):
    """One feature's work, as the loop drives it."""

    kind: str

    def route(self, path: Path) -> Hashable | None:
        """Observer thread: the target a changed file belongs to, or None (not ours)."""

    def moved(self, path: Path) -> None:
        """Observer thread: a file was renamed into a watched directory (so it is whole);
        told before `route`."""

    def watched_dirs(self) -> Iterable[Path]:
        """The directories this handler needs inotify watches on, now."""

    def targets(self) -> Iterable[Hashable]:
        """What a reconcile looks at again."""

    def due(self) -> Iterable[Hashable]:
        """What the decision timer looks at again (decisions age: a run stalls)."""

    def work(self, target: Any, reasons: frozenset[str]) -> None:
        """Worker thread: bring one target up to date; `reasons` say why it was queued."""

    def failed(self, target: Any, exc: BaseException) -> None:
        """`work` raised (the loop has logged and counted it): show it where the feature
        keeps its state."""


class Quiet:
    """Defaults for the parts most handlers do not need."""

    def moved(self, path: Path) -> None:
        pass

    def due(self) -> Iterable[Hashable]:
        return ()

    def failed(self, target: Any, exc: BaseException) -> None:
        pass
