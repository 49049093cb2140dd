"""A stand-in for systemd's notify socket: what the daemon tells systemd (READY=1,
RELOADING=1, WATCHDOG=1, STATUS=...), received and kept with arrival times."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from polling import poll


class FakeSystemd:
    """Receives and keeps every notification, with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def texts(self) -> list[str]:
        return [m for _, m in list(self.messages)]

    def index_of(self, assignment: str, after: int = 0) -> int | None:
        for i, text in enumerate(self.texts()):
            if i >= after and assignment in text.split("\n"):
                return i
        return None

    def wait_for(self, assignment: str, after: int = 0, timeout: float = 20) -> int:
        """Index of the first message from `after` on that holds `assignment`."""
        found = poll(lambda: self.index_of(assignment, after) is not None, timeout)
        assert found, f"no {assignment} after message {after}: {self.texts()}"
        return self.index_of(assignment, after)  # type: ignore[return-value]

    def count(self, assignment: str) -> int:
        return sum(assignment in text.split("\n") for text in self.texts())


@pytest.fixture
def fake_systemd(tmp_path: Path):
    fake = FakeSystemd(tmp_path / "notify.sock")
    yield fake
    fake.close()
