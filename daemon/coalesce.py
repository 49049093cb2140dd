"""Turning a storm of events into a little work: per-key debounce and a pool of workers.

An optimizer rewrites its files after every trial and inotify reports each write; a
reader that must hash and convert a large file cannot keep up one event at a time, and
does not need to: it always re-reads the current state. So `CoalescingQueue.record(key)`
only notes that a key (a run) changed. The key becomes due `debounce` seconds after its
latest event, but never later than `max_delay` after the first unhandled one (a file
rewritten forever still gets converted). Due keys run on worker threads; one key never
runs on two workers at once, and a key that changes while it runs is due again after.
Idle workers block on a condition with no timeout: no polling, no CPU.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Work = Callable[[Hashable, frozenset[str]], None]
ErrorReport = Callable[[Hashable, BaseException], None]


@dataclass
class _Pending:
    first: float
    due: float
    reasons: set[str] = field(default_factory=set)


class CoalescingQueue:
    """Debounced keys, run by `workers` threads calling `work(key, reasons)`.

    `reasons` is the set of strings passed to `record` since the key last ran (e.g.
    {"changed", "timer"}), so the work can skip what no reason asks for."""

    def __init__(
        self,
        work: Work,
        *,
        workers: int = 2,
        debounce: float = 0.5,
        max_delay: float = 5.0,
        on_error: ErrorReport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._work = work
        self._on_error = on_error or (lambda key, exc: log.error("work on %s failed: %r", key, exc))
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[Hashable, _Pending] = {}
        self._running: set[Hashable] = set()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._nworkers = workers
        self.debounce = debounce
        self.max_delay = max_delay
        self.done = 0  # keys run to completion (or failure), for status and tests

    # ------------------------------------------------------------ producers
    def record(self, key: Hashable, reason: str = "changed", *, delay: float | None = None) -> None:
        """Note that `key` needs work; cheap enough for an inotify callback.

        `delay` (default: the debounce) 0 means "as soon as a worker is free"."""
        now = self._clock()
        wait = self.debounce if delay is None else delay
        with self._cond:
            if self._stopping:
                return
            entry = self._pending.setdefault(key, _Pending(first=now, due=now + wait))
            # trailing debounce: each event postpones the key, up to max_delay after the first
            entry.due = min(now + wait, entry.first + self.max_delay)
            entry.reasons.add(reason)
            self._cond.notify()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for _ in range(self._nworkers):
            self._spawn()

    def stop(self, timeout: float | None = None) -> list[Hashable]:
        """Let running work finish, start nothing new; return the keys left undone
        (the next start's reconcile finds them again)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._cond:
            return list(self._pending)

    def alive(self) -> tuple[int, int]:
        """(live worker threads, configured workers)."""
        return sum(t.is_alive() for t in self._threads), self._nworkers

    def revive(self) -> int:
        """Replace worker threads that died; return how many were replaced."""
        dead = [t for t in self._threads if not t.is_alive()]
        if self._stopping or not dead:
            return 0
        for t in dead:
            self._threads.remove(t)
            self._spawn()
        return len(dead)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._running

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending or running (for tests and the benchmark)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # ------------------------------------------------------------ workers
    def _spawn(self) -> None:
        t = threading.Thread(target=self._worker, name=f"worker-{len(self._threads)}", daemon=True)
        self._threads.append(t)
        t.start()

    def _next(self) -> tuple[Hashable, frozenset[str]] | None:
        """Wait for a due key nobody is running; None once stopping."""
        with self._cond:
            while not self._stopping:
                now = self._clock()
                free = [(e.due, k) for k, e in self._pending.items() if k not in self._running]
                due = [(d, k) for d, k in free if d <= now]
                if due:
                    _, key = min(due, key=lambda dk: dk[0])
                    entry = self._pending.pop(key)
                    self._running.add(key)
                    return key, frozenset(entry.reasons)
                timeout = min(d for d, _ in free) - now if free else None
                self._cond.wait(timeout)
            return None

    def _worker(self) -> None:
        while (item := self._next()) is not None:
            key, reasons = item
            try:
                self._work(key, reasons)
            except Exception as exc:  # one bad run must not stop the others
                try:
                    self._on_error(key, exc)
                except Exception:
                    log.exception("reporting a failure on %s failed", key)
            finally:
                with self._cond:
                    self._running.discard(key)
                    self.done += 1
                    self._cond.notify_all()
