"""STATE/daemon.jsonl: the daemon's story where members of group winopt can read it
(issue 12, item 3).

The journal is for root and the adm group: a member who submitted a job gets "No journal
files were opened due to insufficient permissions" from `journalctl -u winopt-daemon`.
So the daemon also appends every line it logs to the state dir, which group winopt may
enter (/var/lib/winopt is 0750 winopt:winopt): one JSON object per line, the time, level,
message and the structured fields the journal gets (JOB_ID, RUN, RIG, EVENT, USER, ...),
so `winopt logs JOB` selects a job's lines by field, never by matching text. The file is
0640 in the state dir's group, and bounded: past MAX_BYTES it is rotated to
daemon.jsonl.1 ... .BACKUPS, the oldest dropped (16 MiB in all). It is written by the
daemon alone, like everything in the state dir.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from winopt.contracts.clock import iso_from_timestamp
from winopt.contracts.state_dir import LOG_NAME
from winopt.daemon.journal import EscapeControls

MAX_BYTES = 4 << 20
BACKUPS = 3
LOG_MODE = 0o640


def log_files(state_dir: Path) -> list[Path]:
    """The log and its rotated copies, oldest first (those that exist)."""
    names = [f"{LOG_NAME}.{n}" for n in range(BACKUPS, 0, -1)] + [LOG_NAME]
    return [state_dir / name for name in names if (state_dir / name).exists()]


class JsonLineFormatter(logging.Formatter):
    """A record as one JSON line: at, level, message, its upper-case fields (the
    journal's structured fields, passed as `extra`), and a traceback when it has one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "at": iso_from_timestamp(record.created),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        doc.update({key: str(value) for key, value in record.__dict__.items() if key.isupper()})
        if record.exc_text or record.exc_info:
            doc["traceback"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


class GroupLogHandler(logging.handlers.RotatingFileHandler):
    """The rotated, group-readable log file. A write that fails (a full disk) is said
    once on stderr, not once per line, and said again only after one has succeeded."""

    def __init__(self, state_dir: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        super().__init__(state_dir / LOG_NAME, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.setFormatter(JsonLineFormatter())
        self.addFilter(EscapeControls())  # as the journal's lines: no control character gets through
        self._failing = False

    def _open(self) -> TextIO:
        """Opened 0640 whatever the umask, never through a symlink, in the state dir's
        group (winopt; a daemon run by hand as root would otherwise make it root's)."""
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     LOG_MODE)
        try:
            group = os.stat(os.path.dirname(self.baseFilename)).st_gid
            if os.fstat(fd).st_gid != group:
                os.fchown(fd, -1, group)
            os.fchmod(fd, LOG_MODE)
        except OSError:
            pass  # the mode and group it was made with; the group may not read it
        return os.fdopen(fd, "a", encoding=self.encoding)

    def emit(self, record: logging.LogRecord) -> None:
        self._emitted = True
        super().emit(record)
        if self._emitted:
            self._failing = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self._emitted = False
        if not self._failing:
            self._failing = True
            error = sys.exc_info()[1]
            print(f"winopt daemon: cannot write {self.baseFilename}: {error}; members' `winopt logs` "
                  "misses lines until it can", file=sys.stderr)


def attach_log_file(state_dir: Path) -> logging.Handler | None:
    """Add the group-readable log to the root logger (beside the journal); None, with a
    line on stderr, when the state dir will not have it."""
    try:
        handler = GroupLogHandler(state_dir)
    except OSError as exc:
        print(f"winopt daemon: cannot open {state_dir / LOG_NAME}: {exc.strerror or exc}; members' "
              "`winopt logs` shows nothing new", file=sys.stderr)
        return None
    logging.getLogger().addHandler(handler)
    return handler
