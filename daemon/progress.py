"""A run's pace for status.json (issue 16): trials per hour and when it should end.

`ProgressClock.observe` is told each snapshot the daemon reads. It keeps, per run, the
last few (snapshot time, trials done) pairs at which the count grew, timed by the
snapshot's own `last_updated` (when the trial ended, not when the daemon looked), and
measures the rate over them: recent enough to follow a run that slows down, several
trials wide so one slow trial does not swing it. Until the count has grown twice under
this daemon, the rate is the snapshot's average since `started_at`. The ETA is the last
sample plus the trials left at that rate; a run that is not in progress has none.

A run that was stopped or crashed and resumed must not be measured across its downtime
(a 13-minute outage made 3,600 trials/h read as 9): the samples start again when the run
comes back from a status other than in_progress, or when one trial took far longer than
the run's recent trials (`is_downtime`: ten times, and a minute at least); after such a
restart there is no rate until the count has grown twice again.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from winopt.contracts.clock import is_downtime

#: count increments the rate is measured over
SAMPLES = 20


class ProgressClock:
    """Rate and ETA per run name; thread-safe (runs are processed on worker threads)."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self._samples: dict[str, deque[tuple[datetime, int]]] = {}
        self._status: dict[str, Any] = {}
        self._restarted: set[str] = set()  # runs measured afresh after downtime: no fallback
        self._size = samples
        self._lock = threading.Lock()

    def observe(self, name: str, snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
        """The run's `progress` entry for this snapshot: rate_per_hour, eta (ISO 8601, or
        None), trials_left, measured_over (trials); None when nothing can be said yet."""
        if not snapshot:
            return None
        done, total = snapshot.get("completed_trials"), snapshot.get("total_trials")
        at = _parse(snapshot.get("last_updated"))
        if not isinstance(done, int) or at is None:
            return None
        with self._lock:
            seen = self._samples.setdefault(name, deque(maxlen=self._size + 1))
            status, self._status[name] = self._status.get(name), snapshot.get("status")
            if seen and done < seen[-1][1]:  # a new run in the same directory
                seen.clear()
                self._restarted.discard(name)
            elif seen and (_downtime(seen, at, done) or (
                    status not in (None, "in_progress") and snapshot.get("status") == "in_progress")):
                seen.clear()  # resumed: measure from here
                self._restarted.add(name)
            if not seen or done > seen[-1][1]:
                seen.append((at, done))
            samples = list(seen)
            fallback = name not in self._restarted
        rate, over = _rate(samples, snapshot, at, done, fallback=fallback)
        if rate is None:
            return None
        left = max(0, total - done) if isinstance(total, int) else None
        eta = None
        if snapshot.get("status") == "in_progress" and left is not None and rate > 0:
            eta = (samples[-1][0] + timedelta(hours=left / rate)).isoformat(timespec="seconds")
        return {"rate_per_hour": round(rate, 3), "eta": eta, "trials_left": left, "measured_over": over}

    def forget(self, name: str) -> None:
        with self._lock:
            self._samples.pop(name, None)
            self._status.pop(name, None)
            self._restarted.discard(name)


def _downtime(seen: deque[tuple[datetime, int]], at: datetime, done: int) -> bool:
    """Whether the count's growth since the last sample took far longer per trial than
    the samples before it did (the run was down meanwhile)."""
    if done <= seen[-1][1] or len(seen) < 2:
        return False
    gaps = sorted((b[0] - a[0]).total_seconds() / (b[1] - a[1]) for a, b in zip(seen, list(seen)[1:]))
    typical = gaps[len(gaps) // 2]
    gap = (at - seen[-1][0]).total_seconds() / (done - seen[-1][1])
    return is_downtime(gap, typical)


def _rate(samples: list[tuple[datetime, int]], snapshot: dict[str, Any], at: datetime,
          done: int, *, fallback: bool = True) -> tuple[float | None, int]:
    """(trials per hour, trials it was measured over); with fewer than two samples, the
    average since `started_at` when `fallback`."""
    if len(samples) >= 2:
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        seconds = (t1 - t0).total_seconds()
        if seconds > 0 and c1 > c0:
            return (c1 - c0) * 3600.0 / seconds, c1 - c0
    if not fallback:
        return None, 0
    started = _parse(snapshot.get("started_at"))
    if started is not None and done > 0:
        seconds = (at - started).total_seconds()
        if seconds > 0:
            return done * 3600.0 / seconds, done
    return None, 0


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.astimezone()
