"""What the daemon knows, for people and scripts: STATE/status.json and STATE/decisions.jsonl.

`StatusBook` holds the status in memory under one lock; any thread updates it cheaply and
a writer thread publishes it atomically (contracts.publish_json), coalesced to at most one
write per `min_interval` however busy the daemon is — a burst of 200 events costs a few
writes, not 200. Idle, the writer blocks with no timeout. `DecisionLog` appends one JSON
line per changed decision with a single write(2) on an O_APPEND descriptor plus fsync, so
concurrent appenders never interleave and a crash loses at most the line in hand. Past
`max_bytes` the file becomes decisions.jsonl.1 (replacing the one before), so months of
runs keep at most two generations on disk.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from winopt.contracts.clock import now_iso
from winopt.contracts.state_dir import DECISIONS_NAME, STATUS_NAME
from winopt.contracts.status import COUNTERS, STATUS_SCHEMA_VERSION
from winopt.contracts.publish import append_durably, dump_json, fsync_dir, publish_bytes
from winopt.daemon.repeats import RepeatedErrors

log = logging.getLogger(__name__)

#: decisions.jsonl is rotated to decisions.jsonl.1 once it reaches this size
DECISIONS_MAX_BYTES = 64 << 20


class StatusBook:
    """The status document, updated from any thread, published by its own thread."""

    def __init__(
        self,
        state_dir: Path,
        *,
        min_interval: float = 0.25,
        on_written: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.path = state_dir / STATUS_NAME
        self.min_interval = min_interval
        self._on_written = on_written
        self._cond = threading.Condition()
        self._doc: dict[str, Any] = {
            "schema_version": STATUS_SCHEMA_VERSION,
            "updated_at": None,
            "daemon": {"counters": dict.fromkeys(COUNTERS, 0)},
            "runs": {},
            "jobs": {},  # spool jobs (issue 5)
            "jobs_left_out": 0,  # finished jobs beyond [jobs] finished_kept, not in "jobs"
            "rejected": {},  # spool files refused, by their name in STATE/rejected/ (issues 5, 11)
            "rigs": {},  # distribution targets (issue 6)
        }
        self._dirty = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.writes = 0
        self._encode_errors: set[str] = set()
        #: a full or read-only state dir fails every write (4 a second): one line a minute
        self._write_errors = RepeatedErrors(log)

    # ------------------------------------------------------------ updates
    def update_daemon(self, **fields: Any) -> None:
        with self._cond:
            self._doc["daemon"].update(fields)
            self._touch()

    def count(self, counter: str, n: int = 1) -> None:
        with self._cond:
            counters = self._doc["daemon"]["counters"]
            counters[counter] = counters.get(counter, 0) + n
            self._touch()

    def update_entry(self, section: str, name: str, /, **fields: Any) -> None:
        """Merge `fields` into `section[name]` ("runs", "jobs", "rejected", "rigs")."""
        with self._cond:
            self._doc[section].setdefault(name, {}).update(fields)
            self._touch()

    def set_section(self, section: str, entries: dict[str, Any]) -> None:
        """Replace a whole section (rebuilt from disk at start and at reconciles)."""
        with self._cond:
            if self._doc[section] != entries:
                self._doc[section] = copy.deepcopy(entries)
                self._touch()

    def set_field(self, name: str, value: Any) -> None:
        """Set one top-level field that is not a section (`jobs_left_out`)."""
        with self._cond:
            if self._doc.get(name) != value:
                self._doc[name] = value
                self._touch()

    def remove_entry(self, section: str, name: str) -> None:
        with self._cond:
            if self._doc[section].pop(name, None) is not None:
                self._touch()

    def update_run(self, name: str, **fields: Any) -> None:
        self.update_entry("runs", name, **fields)

    def remove_run(self, name: str) -> None:
        self.remove_entry("runs", name)

    def run(self, name: str) -> dict[str, Any]:
        """A copy of one run's entry ({} when unknown)."""
        with self._cond:
            return copy.deepcopy(self._doc["runs"].get(name, {}))

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return copy.deepcopy(self._doc)

    def _touch(self) -> None:
        self._dirty = True
        self._cond.notify()

    # ------------------------------------------------------------ writer
    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="status-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the writer and write the final state now."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def flush(self) -> None:
        """Write now if anything changed since the last write."""
        with self._cond:
            if not self._dirty:
                return
            self._dirty = False
            self._doc["updated_at"] = now_iso()
            doc = copy.deepcopy(self._doc)
        try:
            publish_bytes(self.path, self._encode(doc), mode=0o664)
        except OSError as exc:  # the same text each time (not the temp file's random name)
            self._write_errors.log("write", logging.ERROR, f"cannot write {self.path}: {exc.strerror or exc}",
                                   extra={"EVENT": "status_failed"})
            with self._cond:
                self._dirty = True
            return
        self._write_errors.clear("write", f"{self.path} written again", extra={"EVENT": "status_written"})
        self.writes += 1
        if self._on_written is not None:
            self._on_written(doc)

    def _encode(self, doc: dict[str, Any]) -> bytes:
        """status.json's bytes. A value that is not JSON (a bug wherever it came from) is
        written as its text and logged once: it must not kill the writer thread, which
        would leave status.json frozen while the daemon otherwise looks healthy."""
        try:
            return dump_json(doc)
        except TypeError as exc:
            if str(exc) not in self._encode_errors:
                self._encode_errors.add(str(exc))
                log.error("status.json: %s; written as text", exc, extra={"EVENT": "status_failed"})
            return orjson.dumps(_text_safe(doc), default=str, option=orjson.OPT_INDENT_2
                                | orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)

    def _writer(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
            started = time.monotonic()
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - a dead writer would freeze status.json
                log.error("status.json writer: %s: %s", type(exc).__name__, exc, extra={"EVENT": "status_failed"})
            self._pause(started + self.min_interval)

    def alive(self) -> bool:
        """Whether the writer thread runs: the daemon feeds the systemd watchdog only
        while it does, since a daemon whose status.json froze is not healthy."""
        return self._thread is not None and self._thread.is_alive()

    def _pause(self, until: float) -> None:
        """Rate limit: no next write before `until` (a stop cuts the pause short)."""
        with self._cond:
            while not self._stopping and (left := until - time.monotonic()) > 0:
                self._cond.wait(left)


class DecisionLog:
    """STATE/decisions.jsonl: one JSON object per line, appended atomically and durably."""

    def __init__(self, state_dir: Path, max_bytes: int = DECISIONS_MAX_BYTES) -> None:
        self.path = state_dir / DECISIONS_NAME
        self.max_bytes = max_bytes
        self._rotating = threading.Lock()  # one rotation per full file, however many appenders

    def append(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)
        with self._rotating:
            self._rotate_if_full()
        append_durably(self.path, line)

    def _rotate_if_full(self) -> None:
        """Move a full log aside (a line in flight on the old descriptor lands there whole)."""
        try:
            if os.stat(self.path).st_size < self.max_bytes:
                return
            os.replace(self.path, self.path.with_name(DECISIONS_NAME + ".1"))
        except FileNotFoundError:
            return
        fsync_dir(self.path.parent)


def _text_safe(value: Any) -> Any:
    """`value` with every string JSON can hold: a file name that is not UTF-8 (its bytes
    decoded as surrogates) shows as `\\udcff` text rather than stop every write."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_text_safe(k): _text_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text_safe(v) for v in value]
    return value
