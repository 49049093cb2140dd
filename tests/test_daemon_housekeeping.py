"""Issue 11, finding 10, against a real `winopt daemon`: a status.json temp left by a
kill -9 is swept from the state dir; a full state dir logs its status error once, not 4
times a second, and says when it is over; a directory named `x.toml` in the spool is
reported once. (`winopt status | head`: tests/test_escaping.py.)

The full state dir is a real tmpfs of a few MB mounted over the test's state dir
(tests/mount_support.py; skipped where mounting is not possible), filled to the last byte."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from daemon_support import DaemonProcess, poll
from mount_support import fill, small_tmpfs
from winopt.daemon.repeats import RepeatedErrors

#: a pid no process can have (above the kernel's pid_max limit of 2**22)
DEAD_PID = 2**22 + 7


def config(tmp_path: Path, **keys: float) -> Path:
    path = tmp_path / "daemon.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in {"debounce": 0.1, **keys}.items()))
    return path


def test_a_status_temp_left_by_a_kill_is_swept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    stale = state / f".status.json.{DEAD_PID}.0badc0de.tmp"  # its writer is gone
    stale.write_text("{")
    os.utime(stale, (time.time() - 300, time.time() - 300))
    live = state / f".status.json.{os.getpid()}.0123abcd.tmp"  # a writer that is still at it
    live.write_text("{")
    foreign = state / "notes.tmp"  # not a name winopt makes: never touched
    foreign.write_text("mine")
    d = DaemonProcess(state, [], args=["--config", str(config(tmp_path))])
    try:
        d.start()
        assert poll(lambda: not stale.exists(), 10), "the stale temp is still there"
        assert live.exists() and foreign.exists()
    finally:
        d.kill()


def test_a_full_state_dir_logs_its_status_error_once_and_its_end(tmp_path: Path) -> None:
    """Before: `cannot write .../status.json` 4 times a second for as long as the disk
    stayed full."""
    with small_tmpfs(tmp_path / "state", "4m") as state:
        d = DaemonProcess(state, [], args=["--config", str(config(tmp_path, reconcile_interval=1))])
        try:
            d.start()
            filler = fill(state)
            line = f"cannot write {state / 'status.json'}: No space left on device"
            assert poll(lambda: line in d.log(), 10), d.log()
            first = time.monotonic()
            # the writer keeps trying every 0.25 s; 3 s of it is a dozen failures
            assert poll(lambda: time.monotonic() - first > 3, 5)
            assert d.log().count(line) == 1, d.log()
            filler.unlink()
            assert poll(lambda: "status.json written again (after" in d.log(), 10), d.log()
            failures = int(d.log().split("status.json written again (after ")[1].split()[0])
            assert failures >= 8, d.log()
            assert poll(lambda: d.status().get("daemon", {}).get("state") == "running", 5)
            assert d.stop() == 0
        finally:
            d.kill()


def test_a_directory_in_the_spool_is_reported_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "spool" / "x.toml").mkdir(parents=True)
    d = DaemonProcess(state, [], args=["--config", str(config(tmp_path, reconcile_interval=1))])
    try:
        d.start()
        line = "spool: x.toml is a directory, not a job file; ignored"
        assert poll(lambda: line in d.log(), 10), d.log()
        reconciles = d.counter("reconciles")
        assert poll(lambda: d.counter("reconciles") >= reconciles + 2, 10)  # scanned again since
        assert d.log().count(line) == 1, d.log()
        assert "rejected is a directory" not in d.log()
    finally:
        d.kill()


def test_repeated_errors_are_logged_once_per_interval_with_the_count(caplog) -> None:
    now = [0.0]
    repeats = RepeatedErrors(logging.getLogger("winopt.test_repeats"), interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="winopt.test_repeats"):
        for _ in range(10):
            repeats.log("status", logging.ERROR, "cannot write status.json: disk full")
            now[0] += 0.25
        now[0] += 60
        repeats.log("status", logging.ERROR, "cannot write status.json: disk full")
        repeats.log("status", logging.ERROR, "cannot write status.json: read-only file system")
        repeats.log("other", logging.ERROR, "cannot write status.json: disk full")
        assert repeats.clear("status", "status.json written again") == 12
        assert repeats.clear("status", "status.json written again") == 0
    assert [r.getMessage() for r in caplog.records] == [
        "cannot write status.json: disk full",
        "cannot write status.json: disk full (the same 9 more time(s) in the last 62s)",
        "cannot write status.json: read-only file system",
        "cannot write status.json: disk full",
        "status.json written again (after 12 failure(s))",
    ]
