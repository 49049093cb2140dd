"""Log lines for errors that repeat: the first at once, then at most one per interval.

A full or read-only state dir makes the status writer fail on every try, four times a
second; a broken handler fails at every event. One line per failure buries the journal
in identical lines and hides the story. `RepeatedErrors` logs an error the first time it
happens, keeps quiet while the very same text repeats within `interval` seconds, and when
it logs again (the interval has passed, or the text changed) says how many identical
lines it left out. `clear` ends a run of failures and says how many there were, so the
journal shows when the fault ended too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

#: seconds between two lines of one repeating error
DEFAULT_INTERVAL = 60.0


@dataclass
class _Run:
    """One key's current run of identical errors."""

    text: str
    logged_at: float
    failures: int = 1  # since the key last succeeded, logged or not, whatever the text
    left_out: int = 0  # since the last line logged


class RepeatedErrors:
    """Rate limits identical log lines per key (a path, a job, a handler target).
    Thread-safe; the lines go to `logger` with the level and `extra` fields given."""

    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self.interval = interval
        self._clock = clock
        self._runs: dict[Hashable, _Run] = {}
        self._lock = threading.Lock()

    def log(self, key: Hashable, level: int, text: str, *, extra: Mapping[str, Any] | None = None,
            exc_info: Any = None) -> bool:
        """Log `text` for `key` unless the same text was logged for it less than `interval`
        ago; returns whether a line was written."""
        now = self._clock()
        with self._lock:
            run = self._runs.get(key)
            if run is not None and run.text == text:
                run.failures += 1
                if now - run.logged_at < self.interval:
                    run.left_out += 1
                    return False
                note = "" if not run.left_out else \
                    f" (the same {run.left_out} more time(s) in the last {now - run.logged_at:.0f}s)"
                run.logged_at, run.left_out = now, 0
            else:
                note = "" if run is None or not run.left_out else f" (the previous error {run.left_out} more time(s))"
                self._runs[key] = _Run(text, now, failures=1 + (run.failures if run else 0))
        self._log.log(level, "%s%s", text, note, extra=dict(extra or {}), exc_info=exc_info)
        return True

    def clear(self, key: Hashable, text: str | None = None, *, extra: Mapping[str, Any] | None = None) -> int:
        """The fault of `key` is over: forget it, and when it had failed, log `text` (if
        given) with the number of failures; returns that number (0: nothing was wrong)."""
        with self._lock:
            run = self._runs.pop(key, None)
        if run is None:
            return 0
        if text:
            self._log.info("%s (after %d failure(s))", text, run.failures, extra=dict(extra or {}))
        return run.failures
