"""Where the daemon's log lines go: the journal, systemd's stderr, or a terminal.

Under systemd with systemd-python importable, records go to journald natively with their
structured fields (RUN, JOB_ID, RIG, EVENT, ...: pass them as `extra={...}`), so
`journalctl -u winopt-daemon RUN=r1` filters one run. Under systemd without systemd-python,
stderr lines carry the `<N>` priority prefixes of sd-daemon(3) that journald parses. On a
terminal, plain time-stamped lines. systemd sets `$JOURNAL_STREAM` to the device:inode of
the stderr it connected; comparing it with our stderr tells a real journal connection
from an inherited variable (systemd.exec(5)).

Every record passes `EscapeControls` on its way to the one handler: the message, the
structured fields and any traceback have their control characters shown as escapes
(`winopt.contracts.safe_text`), so a spool file named `x\x1b[2J\nFAKE LINE.toml` can neither drive
a terminal nor start a log line of its own, on the journal, on stderr or on a terminal.
A traceback keeps its lines, each indented, so no line of it reads as a record.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from winopt.contracts.safe_text import safe_lines, safe_text

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


class EscapeControls(logging.Filter):
    """The one place where log text is made safe for terminals and line-based readers:
    the formatted message (its args merged in first, so no raw value slips through them),
    the structured fields and the traceback text. A filter of the handler, so it covers
    journald's MESSAGE and fields, the `<N>` stderr lines and the terminal alike."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: logging reports it at emit
            return True
        record.msg, record.args = safe_text(message), None
        for name, value in list(record.__dict__.items()):
            if name.isupper() and isinstance(value, (str, os.PathLike)):  # journal fields (RUN, PATH...)
                setattr(record, name, safe_text(os.fspath(value)))
        if record.exc_info and not record.exc_text:
            record.exc_text = _indent(self._formatter.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = _indent(record.stack_info)
        return True


def _indent(text: str) -> str:
    """Traceback text on its own lines, each escaped and indented (never a record's start)."""
    return "\n".join("  " + line for line in safe_lines(text).split("\n"))


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
    """The handler for this environment, escaping what it logs (`EscapeControls`);
    `sender` replaces journal.send (for tests)."""
    handler = _destination(env, stream, sender)
    handler.addFilter(EscapeControls())
    return handler


def _destination(
    env: Mapping[str, str], stream: TextIO, sender: Callable[..., Any] | None
) -> logging.Handler:
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
