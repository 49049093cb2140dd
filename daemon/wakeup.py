"""Waking the daemon's main loop: signals and other threads write to one pipe.

Signal handlers must do no work (they run between arbitrary bytecodes of the main thread,
possibly while it holds a lock), so Python's handlers here do nothing at all and
`signal.set_wakeup_fd` writes each signal's number into the pipe from C. Other threads
write a zero byte. The main loop sleeps in select() on the pipe until its next timer:
no polling.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterable


def _ignore(signum: int, frame: object) -> None:
    """The Python-level handler: nothing; the wakeup fd carries the signal."""


class Wakeup:
    """A self-pipe: `wake()` from any thread, `wait()` in the main thread."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_fd: int | None = None

    def catch(self, signals: Iterable[signal.Signals]) -> None:
        """Route `signals` to this pipe (main thread only)."""
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in signals:
            signal.signal(sig, _ignore)

    def wake(self) -> None:
        try:
            os.write(self._w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the main loop is already due to wake

    def wait(self, timeout: float | None) -> list[int]:
        """Sleep until woken or `timeout`; return the signal numbers received, in order."""
        if timeout is not None and timeout < 0:
            timeout = 0
        try:
            ready, _, _ = select.select([self._r], [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
            ready = [self._r]
        if not ready:
            return []
        data = b""
        while True:
            try:
                chunk = os.read(self._r, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        return [b for b in data if b]

    def close(self) -> None:
        if self._old_fd is not None:
            signal.set_wakeup_fd(self._old_fd)
        os.close(self._r)
        os.close(self._w)
