"""Where the daemon's log lines go: the journal, systemd's stderr, or a terminal.

Under systemd with systemd-python importable, records go to journald natively with their
structured fields (RUN, JOB_ID, RIG, EVENT, ...: pass them as `extra={...}`), so
`journalctl -u winopt-daemon RUN=r1` filters one run. Under systemd without systemd-python,
stderr lines carry the `<N>` priority prefixes of sd-daemon(3) that journald parses. On a
terminal, plain time-stamped lines. systemd sets `$JOURNAL_STREAM` to the device:inode of
the stderr it connected; comparing it with our stderr tells a real journal connection
from an inherited variable (systemd.exec(5)).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

SYSLOG_IDENTIFIER = "winopt-daemon"
#: Python level -> syslog priority (sd-daemon(3) prefixes)
PRIORITIES = ((logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
#: structured fields our records may carry
FIELDS = ("RUN", "JOB_ID", "RIG", "EVENT", "PATH", "SHA256", "ACTION")


class PriorityPrefixFormatter(logging.Formatter):
    """`<N>message` for journald reading our stderr (no time: the journal stamps it)."""

    def format(self, record: logging.LogRecord) -> str:
        prio = next((p for level, p in PRIORITIES if record.levelno >= level), 7)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def stderr_is_journal(env: Mapping[str, str] = os.environ, stream: TextIO = sys.stderr) -> bool:
    """Whether `$JOURNAL_STREAM` names the stream we write to (systemd.exec(5))."""
    value = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def make_handler(
    env: Mapping[str, str] = os.environ,
    stream: TextIO = sys.stderr,
    sender: Callable[..., Any] | None = None,
) -> logging.Handler:
    """The handler for this environment; `sender` replaces journal.send (for tests)."""
    if stderr_is_journal(env, stream):
        try:
            from systemd.journal import JournalHandler, send
        except ImportError:
            handler: logging.Handler = logging.StreamHandler(stream)
            handler.setFormatter(PriorityPrefixFormatter("%(message)s"))
            return handler
        return JournalHandler(sender_function=sender or send, SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    return handler


def setup_logging(level: str, env: Mapping[str, str] = os.environ) -> logging.Handler:
    """Route every logger to the one handler for this environment; winopt at `level`,
    libraries at warning (their debug chatter is not the daemon's story)."""
    handler = make_handler(env)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    set_level(level)
    return handler


def set_level(level: str) -> None:
    """Change winopt's log level (at start and on reload)."""
    logging.getLogger("winopt").setLevel(level.upper())
