"""The coalescing queue: bursts become little work, busy keys are not starved, one key never
runs twice at once, and a failing handler does not stop the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

import pytest

from daemon_support import poll
from winopt.daemon.coalesce import CoalescingQueue


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Hashable, frozenset[str]]] = []
        self.lock = threading.Lock()

    def __call__(self, key: Hashable, reasons: frozenset[str]) -> None:
        with self.lock:
            self.calls.append((key, reasons))


@pytest.fixture
def make_queue():
    queues: list[CoalescingQueue] = []

    def make(work, **kw) -> CoalescingQueue:
        q = CoalescingQueue(work, **kw)
        q.start()
        queues.append(q)
        return q

    yield make
    for q in queues:
        q.stop(timeout=5)


def test_a_burst_on_one_key_runs_once(make_queue) -> None:
    work = Recorder()
    q = make_queue(work, workers=2, debounce=1.0, max_delay=5)  # far longer than the burst, even when preempted
    for _ in range(200):
        q.record("run-a")
    q.record("run-a", "reconcile")
    assert q.wait_idle(5)
    assert work.calls == [("run-a", frozenset({"changed", "reconcile"}))]


def test_keys_are_independent(make_queue) -> None:
    work = Recorder()
    q = make_queue(work, workers=2, debounce=0.05, max_delay=1)
    for key in ("a", "b", "c"):
        q.record(key)
    assert q.wait_idle(5)
    assert sorted(k for k, _ in work.calls) == ["a", "b", "c"]


def test_a_key_rewritten_forever_still_runs_within_max_delay(make_queue) -> None:
    work = Recorder()
    q = make_queue(work, workers=1, debounce=0.2, max_delay=0.4)
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # an event every 10 ms: debounce alone never fires
        q.record("busy")
        time.sleep(0.01)  # pacing the producer, not synchronisation
    assert q.wait_idle(5)
    assert 2 <= len(work.calls) <= 6, work.calls


def test_zero_delay_runs_without_waiting_for_the_debounce(make_queue) -> None:
    work = Recorder()
    q = make_queue(work, workers=1, debounce=30, max_delay=60)
    q.record("now", "reconcile", delay=0)
    assert poll(lambda: len(work.calls) == 1, timeout=10)


def test_one_key_never_runs_on_two_workers_and_reruns_after(make_queue) -> None:
    release = threading.Event()
    entered = threading.Event()
    running = []
    overlaps = []
    calls = []

    def work(key: Hashable, reasons: frozenset[str]) -> None:
        if running:
            overlaps.append(key)
        running.append(key)
        calls.append(reasons)
        entered.set()
        release.wait(10)
        running.remove(key)

    q = make_queue(work, workers=4, debounce=0.01, max_delay=0.05)
    q.record("k")
    assert entered.wait(5)
    entered.clear()
    for _ in range(10):
        q.record("k", "again")  # arrives while k runs
    # the other three workers are free, yet k must wait for its own run to end
    assert not entered.wait(0.3)
    release.set()
    assert q.wait_idle(5)
    assert overlaps == []
    assert calls == [frozenset({"changed"}), frozenset({"again"})]


def test_a_raising_handler_does_not_stop_later_work(make_queue) -> None:
    failures: list[tuple[Hashable, str]] = []
    done: list[Hashable] = []

    def work(key: Hashable, reasons: frozenset[str]) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        done.append(key)

    q = make_queue(work, workers=1, debounce=0.01, on_error=lambda k, e: failures.append((k, str(e))))
    for key in ("bad", "good1", "bad", "good2"):
        q.record(key)
        assert q.wait_idle(5)
    assert failures == [("bad", "boom"), ("bad", "boom")]
    assert done == ["good1", "good2"]
    assert q.alive() == (1, 1)


def test_stop_lets_running_work_finish_and_returns_what_is_left() -> None:
    release = threading.Event()
    entered = threading.Event()
    finished = []

    def work(key: Hashable, reasons: frozenset[str]) -> None:
        entered.set()
        release.wait(10)
        finished.append(key)

    q = CoalescingQueue(work, workers=1, debounce=0.01, max_delay=0.1)
    q.start()
    q.record("first")
    assert entered.wait(5)
    q.record("later", delay=60)
    stopper = threading.Thread(target=lambda: left.extend(q.stop(timeout=10)))
    left: list[Hashable] = []
    stopper.start()
    release.set()
    stopper.join(10)
    assert finished == ["first"]
    assert left == ["later"]
    assert q.alive()[0] == 0
