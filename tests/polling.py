"""Polling with deadlines: how every test waits for another process or thread.

No bare sleeps as synchronisation: a test states what it waits for and how long it may
take, and fails naming it when the deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Wait for `condition()` to be truthy; return its value (or the last falsy one), for
    `assert poll(...)` with a message of the caller's own."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy and return it; fail the test
    naming `what` after `timeout` seconds."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
    return value
