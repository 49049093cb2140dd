"""The one clock format of every file winopt writes: ISO 8601 local time with its offset.

Snapshots carry milliseconds (two trials may end within a second, and `last_updated` must
still order them); everything else carries seconds, what people and the old watcher read.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: a pause this many typical trial times long (and MIN_DOWNTIME seconds at least) is the
#: run being down (stopped, crashed, its database away), not its pace: rates leave it out
DOWNTIME_FACTOR = 10.0
MIN_DOWNTIME = 60.0


def now_iso(*, precision: str = "seconds", offset_s: float = 0.0) -> str:
    """Now (plus `offset_s`), e.g. `2026-12-01T22:08:52+00:00`; `precision` as
    `datetime.isoformat`'s `timespec` ("seconds" or "milliseconds")."""
    return (datetime.now().astimezone() + timedelta(seconds=offset_s)).isoformat(timespec=precision)


def iso_from_timestamp(timestamp: float) -> str:
    """A Unix time (an mtime, a log record's) in the same format, to the second."""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def is_downtime(gap: float, typical: float) -> bool:
    """Whether a pause of `gap` seconds, in a run whose trials typically take `typical`,
    is downtime (the daemon's rate and `winopt show`'s pace both leave it out)."""
    return gap > max(DOWNTIME_FACTOR * typical, MIN_DOWNTIME)
