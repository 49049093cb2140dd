"""sd_notify: the datagram protocol (path and abstract sockets), the watchdog settings, and
logging destinations. The end-to-end protocol with a daemon process is in
test_daemon_systemd.py."""

from __future__ import annotations

import io
import logging
import os
import socket
from pathlib import Path

import pytest

from winopt.daemon import journal, notify


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_datagram_to_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with receiver(path) as sock:
        assert notify.send_datagram("READY=1\nSTATUS=hello", {"NOTIFY_SOCKET": path})
        assert sock.recv(4096) == b"READY=1\nSTATUS=hello"


def test_datagram_to_an_abstract_socket() -> None:
    name = f"winopt-test-{os.getpid()}"
    with receiver("\0" + name) as sock:
        assert notify.send_datagram("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.send_datagram("READY=1", {}) is False
    assert notify.notify("READY=1") is False


def test_a_dead_socket_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert notify.notify("READY=1") is False
    with pytest.raises(OSError):  # the raw protocol raises; notify() is the guard
        notify.send_datagram("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})


def test_notify_through_libsystemd_reaches_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "n.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with receiver(path) as sock:
        assert notify.reloading()
        message = sock.recv(4096).decode()
    lines = message.split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0


def test_status_line_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "n.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with receiver(path) as sock:
        notify.status_line("2 runs\nREADY=1")
        assert sock.recv(4096) == b"STATUS=2 runs READY=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert notify.watchdog_interval(env) == expected


# ---------------------------------------------------------------- log destinations
def test_terminal_lines_are_plain() -> None:
    stream = io.StringIO()
    handler = journal.make_handler({}, stream)
    handler.emit(logging.LogRecord("winopt.x", logging.WARNING, __file__, 1, "run %s: hello", ("r1",), None))
    line = stream.getvalue()
    assert "run r1: hello" in line and "WARNING" in line and not line.startswith("<")


def test_priority_prefixes_for_journald_reading_stderr() -> None:
    formatter = journal.PriorityPrefixFormatter("%(message)s")
    record = lambda level, msg: logging.LogRecord("winopt", level, __file__, 1, msg, (), None)  # noqa: E731
    assert formatter.format(record(logging.ERROR, "bad")) == "<3>bad"
    assert formatter.format(record(logging.WARNING, "hmm")) == "<4>hmm"
    assert formatter.format(record(logging.INFO, "ok\nmore")) == "<6>ok\n<6>more"
    assert formatter.format(record(logging.DEBUG, "dbg")) == "<7>dbg"


def test_journal_stream_gets_structured_fields(tmp_path: Path) -> None:
    """With JOURNAL_STREAM naming our stderr, records go to journald with their fields."""
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        sent: list[tuple[str, dict]] = []
        handler = journal.make_handler(env, stream, sender=lambda MESSAGE, **kw: sent.append((MESSAGE, kw)))
        record = logging.LogRecord("winopt.daemon", logging.ERROR, __file__, 1, "run %s failed", ("r1",), None)
        record.RUN, record.EVENT = "r1", "convert_failed"
        handler.emit(record)
        assert journal.make_handler({"JOURNAL_STREAM": "1:2"}, stream).__class__ is logging.StreamHandler
    (message, fields), = sent
    assert message == "run r1 failed"
    assert fields["RUN"] == "r1" and fields["EVENT"] == "convert_failed"
    assert fields["PRIORITY"] == "3" and fields["SYSLOG_IDENTIFIER"] == "winopt-daemon"
