"""The one clock format of every file winopt writes: ISO 8601 local time with its offset.

Snapshots carry milliseconds (two trials may end within a second, and `last_updated` must
still order them); everything else carries seconds, what people and the old watcher read.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def now_iso(*, precision: str = "seconds", offset_s: float = 0.0) -> str:
    """Now (plus `offset_s`), e.g. `2026-12-01T22:08:52+00:00`; `precision` as
    `datetime.isoformat`'s `timespec` ("seconds" or "milliseconds")."""
    return (datetime.now().astimezone() + timedelta(seconds=offset_s)).isoformat(timespec=precision)


def iso_from_timestamp(timestamp: float) -> str:
    """A Unix time (an mtime, a log record's) in the same format, to the second."""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")
