"""Spreading the sieve's chunks over the cores the process may use.

Chunks are independent, so they run on a pool of threads: NumPy releases the GIL inside
its array operations, which is where a chunk spends its time, and threads share the
sieve's precomputed schedules and need no pickling, start-up or clean-up of processes
(Ctrl-C reaches the main thread, which stops handing out chunks and sets `Cancel`; the
chunks running see it at their next visit and return at once). Results are handed back in submission order, whatever order
the chunks finish in, so a sieve's result never depends on the number of cores; at most
two chunks per core are in flight, so memory stays flat however many chunks there are.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from winopt.errors import UserError

T = TypeVar("T")
R = TypeVar("R")

#: chunks in flight per worker: one running, one ready to start
IN_FLIGHT_PER_WORKER = 2


class Cancelled(Exception):
    """Raised inside a chunk whose sieve was abandoned (nobody reads its result)."""


class Cancel:
    """A flag the main thread raises when it abandons a sieve; chunks check it often."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def check(self) -> None:
        """Raise `Cancelled` once the sieve was abandoned."""
        if self._event.is_set():
            raise Cancelled


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a systemd CPUAffinity=
    or taskset), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def worker_count(requested: int | None) -> int:
    """`requested` cores (None: all usable ones); more than usable is capped, fewer than
    one is an error."""
    usable = usable_cores()
    if requested is None:
        return usable
    if requested < 1:
        raise UserError(f"--cores must be at least 1, got {requested}")
    return min(requested, usable)


def ordered_map(work: Callable[[T], R], items: Iterable[T], workers: int,
                cancel: Cancel | None = None) -> Iterator[R]:  # fmt: skip
    """`work(item)` for each item, on `workers` threads, yielded in the items' order. When
    the consumer stops early (an error, Ctrl-C, a stop request), nothing more starts and
    `cancel` is raised for the running ones."""
    if workers <= 1:
        yield from map(work, items)
        return
    pending: deque[Future[R]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(workers, thread_name_prefix="winopt-sieve") as pool:
        try:
            for item in source:
                pending.append(pool.submit(work, item))
                if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            if pending and cancel is not None:
                cancel.set()
            for future in pending:
                future.cancel()
