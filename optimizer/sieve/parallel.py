"""Spreading the sieve's chunks over the cores the process may use.

Chunks are independent, so they run in worker PROCESSES (threads do not pay here: a chunk
is thousands of small NumPy calls, and with threads they convoy on the GIL). The pool
comes from the "forkserver" start method (never plain fork: the parent may have threads,
tqdm's monitor or Optuna's, and forking with threads can deadlock), is created on first
use and kept for the life of the process (`winopt optimize` sieves once per trial and
must not pay start-up per trial), one per worker count.

Workers ignore SIGINT, SIGTERM and SIGHUP: a Ctrl-C, or a signal to the process group,
reaches the parent, which abandons the sieve. Abandoning crosses processes through one
shared counter, the last cancelled run number: every sieve gets a new run number, and its
chunks (`RunCancel`) stop at their next visit once the counter reaches it. A worker exits
as soon as the process that started the pool is gone (a kill -9 leaves no orphans).

Results are handed back in submission order, whatever order the chunks finish in, so a
sieve's result never depends on the number of cores; at most two chunks per worker are in
flight, so memory stays flat however many chunks there are. Should the pool break (a
worker killed), the rest of the sieve runs in-process, with the same results.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from winopt.contracts.errors import UserError

T = TypeVar("T")
R = TypeVar("R")

#: chunks in flight per worker: one running, one ready to start
IN_FLIGHT_PER_WORKER = 2


class Cancelled(Exception):
    """Raised inside a chunk whose sieve was abandoned (nobody reads its result)."""


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


# --------------------------------------------------------------------------- the process pool

#: the modules a worker needs, imported once in the fork server: workers start in
#: milliseconds instead of importing NumPy each
PRELOAD = ["winopt.optimizer.sieve.core"]

_lock = threading.Lock()
_pools: dict[int, ProcessPoolExecutor] = {}
_shared: Any = None  # the last cancelled run number (a shared 64-bit integer)
_runs = itertools.count(1)
_in_flight: set[Future[Any]] = set()

# in a worker: the shared counter, set by `_init_worker`
_worker_cancelled: Any = None


def new_run() -> int:
    """A fresh run number (one per sieve)."""
    with _lock:
        return next(_runs)


def cancel_run(run: int) -> None:
    """Abandon run `run` (and any older one): its chunks stop at their next visit."""
    with _lock:
        if _shared is not None and _shared.value < run:
            _shared.value = run


class RunCancel:
    """A run's cancel flag as a worker sees it: `check` raises once the parent cancelled
    the run (`cancel_run`)."""

    def __init__(self, run: int) -> None:
        self.run = run

    def check(self) -> None:
        if _worker_cancelled is not None and _worker_cancelled.value >= self.run:
            raise Cancelled


def pool(workers: int) -> ProcessPoolExecutor:
    """The process pool of `workers` workers, started on first use and kept."""
    global _shared
    with _lock:
        found = _pools.get(workers)
        if found is not None:
            return found
        ctx = multiprocessing.get_context("forkserver")
        if _shared is None:
            ctx.set_forkserver_preload(PRELOAD)
            _shared = ctx.Value("q", 0, lock=False)
        made = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(_shared, os.getpid()))  # fmt: skip
        _pools[workers] = made
        return made


def _drop_pool(workers: int) -> None:
    """Forget a broken pool (the next sieve starts a new one)."""
    with _lock:
        broken = _pools.pop(workers, None)
    if broken is not None:
        broken.shutdown(wait=False, cancel_futures=True)


@atexit.register
def shutdown_pools() -> None:
    """Stop every pool: queued chunks are dropped, idle workers exit."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for p in pools:
        p.shutdown(wait=False, cancel_futures=True)


def in_flight() -> int:
    """Chunks submitted to a pool and not finished (running or queued)."""
    with _lock:
        return len(_in_flight)


def _forget(future: Future[Any]) -> None:
    with _lock:
        _in_flight.discard(future)


def _init_worker(shared: Any, parent: int) -> None:
    """In each worker: signals are the parent's business; exit when the parent is gone."""
    global _worker_cancelled
    _worker_cancelled = shared
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True,
                     name="winopt-parent-watch").start()  # fmt: skip


def _exit_with(parent: int) -> None:
    """Wait for process `parent` to end (pidfd; else poll), then end this worker."""
    try:
        fd = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfds here: poll
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
    select.select([fd], [], [])
    os._exit(1)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (the default SIGINT handler's KeyboardInterrupt) until the block is
    done, so it never lands inside multiprocessing's bookkeeping. Other handlers (e.g.
    `optimize`'s, which only sets a flag) and other threads are left alone."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):  # fmt: skip
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if caught:
            raise KeyboardInterrupt


def process_map(task: Callable[..., R], args: Iterable[tuple[Any, ...]], workers: int,
                run: int, local: Callable[..., R]) -> Iterator[R]:  # fmt: skip
    """`task(*a)` for each `a` in `args`, on the `workers`-process pool, yielded in order.
    `task` must be a picklable module-level function of picklable arguments; `local(*a)`
    computes the same in this process (used if the pool breaks). When the consumer stops
    early (an error, Ctrl-C, a stop request), run `run` is cancelled: nothing more starts,
    the running chunks stop at their next visit, and nobody waits for them."""
    with _sigint_deferred():
        executor = pool(workers)
    pending: deque[tuple[Future[R], tuple[Any, ...]]] = deque()
    source = iter(args)
    broken = False

    def submit(a: tuple[Any, ...]) -> None:
        with _sigint_deferred():  # a Ctrl-C inside submit could leave a worker half-started
            future = executor.submit(task, *a)
            with _lock:
                _in_flight.add(future)
            future.add_done_callback(_forget)
            pending.append((future, a))

    def first() -> R:
        nonlocal broken
        future, a = pending.popleft()
        if not broken:
            try:
                return future.result()
            except BrokenProcessPool:
                broken = True
                _drop_pool(workers)
        return local(*a)

    finished = False
    try:
        for a in source:
            if broken:
                pending.append((Future(), a))
            else:
                try:
                    submit(a)
                except BrokenProcessPool:  # broke between chunks
                    broken = True
                    _drop_pool(workers)
                    pending.append((Future(), a))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                yield first()
        while pending:
            yield first()
        finished = True
    finally:
        if not finished:
            cancel_run(run)
            for future, _ in pending:
                future.cancel()
