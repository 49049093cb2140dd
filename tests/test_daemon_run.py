"""The daemon as a process, end to end: real inotify, real files, a writer imitating the
optimizer's atomic writes, and the NPZ, status.json and decisions.jsonl it must produce."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import zipfile
from collections.abc import Hashable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from daemon_support import (
    DaemonProcess,
    npz_matches_survivors,
    npz_source_sha,
    poll,
    snapshot,
    write_trial,
)
from winopt.contracts.publish import publish_bytes, publish_json, sha256_file
from winopt.contracts.schemas import CONFIG_NAME, NPZ_META_NAME, NPZ_NAME, SURVIVORS_NAME
from winopt.daemon.coalesce import CoalescingQueue
from winopt.daemon.watch import Watcher


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run1"
    run.mkdir()
    return run


@pytest.fixture
def daemon(tmp_path: Path, run_dir: Path):
    procs: list[DaemonProcess] = []

    def start(**kw) -> DaemonProcess:
        d = DaemonProcess(tmp_path / "state", [run_dir], **kw).start()
        procs.append(d)
        return d

    yield start
    for d in procs:
        d.kill()


def part(d: DaemonProcess, key: str) -> dict:
    """One part of run1's status entry ({} while absent or null)."""
    return d.run("run1").get(key) or {}


def test_a_new_best_becomes_an_npz_a_status_and_a_decision(daemon, run_dir: Path) -> None:
    d = daemon()
    publish_json(run_dir / CONFIG_NAME, snapshot(0, status="in_progress", completed=1, total=50, note="x"))
    digest = write_trial(run_dir, 1500, completed=20, total=50, status="in_progress", trial=19)
    assert poll(lambda: npz_source_sha(run_dir) == digest), d.log()
    assert npz_matches_survivors(run_dir)
    run = poll(lambda: part(d, "npz") and part(d, "snapshot").get("completed_trials") == 20 and d.run("run1"))
    assert run["state"] == "running" and run["kind"] == "watched" and run["path"] == str(run_dir)
    assert run["snapshot"]["best"] == 1500 and run["snapshot"]["total_trials"] == 50
    assert run["npz"]["count"] == 1500 and run["npz"]["sha256"] == sha256_file(run_dir / NPZ_NAME)
    assert run["decision"]["action"] == "wait" and run["error"] is None
    decisions = poll(lambda: [x for x in d.decisions() if x.get("action") == "wait"])
    assert decisions[-1]["run"] == "run1" and decisions[-1]["time"] and decisions[-1]["reasoning"]

    write_trial(run_dir, 1500, completed=50, total=50, status="complete", trial=19)
    assert poll(lambda: part(d, "decision").get("action") == "proceed"), d.log()
    assert poll(lambda: d.decisions()[-1]["action"] == "proceed")
    daemon_info = d.status()["daemon"]
    assert daemon_info["pid"] == d.pid and daemon_info["watching"] == [str(run_dir), str(d.state_dir / "spool")]
    assert daemon_info["workers"]["alive"] == daemon_info["workers"]["configured"]
    assert d.stop() == 0
    assert d.status()["daemon"]["state"] == "stopped"


def test_a_burst_of_200_rewrites_is_coalesced(daemon, run_dir: Path) -> None:
    d = daemon()
    started = time.monotonic()
    for i in range(200):
        digest = write_trial(run_dir, 50 + i % 7, start=1000 + i, trial=i, status="in_progress",
                             completed=i + 1, total=200)
        time.sleep(max(0.0, started + (i + 1) * 0.01 - time.monotonic()))  # pacing: 200 in ~2 s
    assert poll(lambda: npz_source_sha(run_dir) == digest, 30), d.log()
    assert poll(lambda: part(d, "snapshot").get("completed_trials") == 200)
    conversions = d.counter("conversions")
    assert 1 <= conversions <= 20, conversions
    assert d.counter("events") >= 200  # every write was seen, and coalesced
    assert npz_matches_survivors(run_dir)


def test_files_changed_while_the_daemon_was_down_are_converted_at_start(daemon, run_dir: Path) -> None:
    d = daemon()
    first = write_trial(run_dir, 80)
    assert poll(lambda: npz_source_sha(run_dir) == first)
    assert d.stop() == 0
    second = write_trial(run_dir, 90, start=5000)
    d2 = daemon()
    assert poll(lambda: npz_source_sha(run_dir) == second), d2.log()
    assert npz_matches_survivors(run_dir)


def test_corrupt_survivors_keep_the_old_npz_and_escalate(daemon, run_dir: Path) -> None:
    d = daemon()
    good = write_trial(run_dir, 120)
    assert poll(lambda: npz_source_sha(run_dir) == good)
    before = {name: (run_dir / name).read_bytes() for name in (NPZ_NAME, NPZ_META_NAME)}

    publish_bytes(run_dir / SURVIVORS_NAME, b'[{"seed": 1, "skip": ')  # truncated JSON
    publish_json(run_dir / CONFIG_NAME, snapshot(121, sha256=sha256_file(run_dir / SURVIVORS_NAME)))
    run = poll(lambda: part(d, "decision").get("action") == "escalate" and d.run("run1"), 20)
    assert run, d.log()
    assert run["state"] == "error" and SURVIVORS_NAME in run["error"]
    assert "previous NPZ stays in place" in run["decision"]["reasoning"]
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert d.alive()
    assert any(x["action"] == "escalate" for x in d.decisions())
    assert "survivors not converted, previous NPZ kept" in d.log()

    fixed = write_trial(run_dir, 130, start=9000)  # the next good write is converted again
    assert poll(lambda: npz_source_sha(run_dir) == fixed), d.log()
    assert poll(lambda: d.run("run1").get("state") == "complete")


def test_an_old_pipeline_run_directory_is_converted_with_its_warning(daemon, run_dir: Path) -> None:
    """Issue 10: the old Step 1's survivors (no skip, no overlap statistics, a "min-max"
    skip_range, a _hybrid family) and its config without a status: converted, not escalated,
    and the journal says in one line what was defaulted."""
    old = [{"seed": 5 + i, "forward_match_rate": 0.5, "reverse_match_rate": 0.5, "score": 3.0,
            "window_size": 8, "offset": 10, "skip_min": 0, "skip_max": 10, "skip_range": "0-10",
            "trial_number": 4, "prng_type": "java_lcg_hybrid", "skip_mode": "variable",
            "forward_count": 40.0, "reverse_count": 30.0, "bidirectional_count": 3.0}
           for i in range(3)]  # fmt: skip
    publish_json(run_dir / SURVIVORS_NAME, old)
    publish_json(run_dir / CONFIG_NAME, {"window_size": 8, "offset": 10, "bidirectional_count": 3})
    d = daemon()
    assert poll(lambda: npz_source_sha(run_dir) == sha256_file(run_dir / SURVIVORS_NAME)), d.log()
    with np.load(run_dir / NPZ_NAME, allow_pickle=False) as npz:
        assert npz["seeds"].tolist() == [5, 6, 7] and npz["skip_range"].tolist() == [10] * 3
        assert npz["prng_type"].tolist() == [0] * 3 and npz["skip_mode"].tolist() == [1] * 3
    assert poll(lambda: "defaulted skip" in d.log()), d.log()
    (line,) = [x for x in d.log().splitlines() if "defaulted skip" in x]
    assert "run1" in line and "java_lcg_hybrid" in line
    assert part(d, "decision").get("action") != "escalate"


def test_survivors_ahead_of_their_snapshot_wait_for_it(daemon, run_dir: Path) -> None:
    """A survivors file the snapshot does not name yet is a write in progress: no NPZ from it."""
    d = daemon()
    good = write_trial(run_dir, 60)
    assert poll(lambda: npz_source_sha(run_dir) == good and d.counter("conversions") == 1)
    publish_json(run_dir / SURVIVORS_NAME, [])  # new survivors; the snapshot still names the old
    assert poll(lambda: "waiting for the next write" in (d.run("run1").get("npz_note") or ""))
    assert npz_source_sha(run_dir) == good and d.counter("conversions") == 1
    publish_json(run_dir / CONFIG_NAME, snapshot(0, sha256=sha256_file(run_dir / SURVIVORS_NAME)))
    assert poll(lambda: npz_source_sha(run_dir) == sha256_file(run_dir / SURVIVORS_NAME)), d.log()
    with np.load(run_dir / NPZ_NAME, allow_pickle=False) as npz:
        assert len(npz["seeds"]) == 0


def test_config_error_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text("workers = 0\n")
    d = DaemonProcess(tmp_path / "state", [], args=["--config", str(config)]).start(ready=False)
    assert d.proc.wait(30) == 2
    out = d.log().strip().splitlines()
    assert out == [f"winopt: error: {config}: workers: must be between 1 and 64, got 0"]


def test_a_second_daemon_on_the_same_state_dir_is_refused(daemon, tmp_path: Path) -> None:
    daemon()
    other = DaemonProcess(tmp_path / "state", []).start(ready=False)
    assert other.proc.wait(30) == 2
    assert "another winopt daemon is using this state dir" in other.log().splitlines()[-1]


def test_a_raising_handler_does_not_stop_later_events(tmp_path: Path) -> None:
    """The watcher-to-worker path with a handler that raises on its first call."""
    run = tmp_path / "run"
    run.mkdir()
    calls: list[str] = []
    errors: list[str] = []
    handled = threading.Event()

    def work(key: Hashable, reasons: frozenset[str]) -> None:
        calls.append(str(key))
        if len(calls) == 1:
            raise ValueError("handler bug")
        handled.set()

    queue = CoalescingQueue(work, workers=1, debounce=0.05, on_error=lambda k, e: errors.append(f"{k}: {e}"))
    watcher = Watcher(lambda p: queue.record(p.name), lambda m: None)
    queue.start()
    watcher.start([run])
    try:
        publish_json(run / "a.json", {})
        assert poll(lambda: errors, 5) == ["a.json: handler bug"]
        publish_json(run / "b.json", {})
        assert handled.wait(5)
        assert calls == ["a.json", "b.json"]
    finally:
        watcher.stop()
        queue.stop(timeout=5)


def _npz_intact(run: Path) -> bool:
    """The published NPZ, if any, is whole: a valid zip whose arrays all load."""
    path = run / NPZ_NAME
    if not path.exists():
        return True
    with np.load(path, allow_pickle=False) as npz:
        n = len(npz["seeds"])
        return all(len(npz[k]) == n for k in npz.files)


def kill_during_conversion(tmp_path: Path, run_dir: Path, rounds: int) -> None:
    """Kill -9 the daemon at random moments while it converts big survivors files; the NPZ
    on disk is never torn, and a restart converges to the newest survivors."""
    rng = random.Random(4)
    state = tmp_path / "state"
    config = tmp_path / "fast.toml"
    config.write_text("debounce = 0.02\n")  # so the random kill lands in the conversion itself
    digest = None
    for i in range(rounds):
        d = DaemonProcess(state, [run_dir], args=["--config", str(config)]).start()
        digest = write_trial(run_dir, 60_000, start=10 * i, trial=i)
        time.sleep(rng.uniform(0.0, 0.8))  # a random moment: the point of the test, not a sync
        d.kill()
        assert _npz_intact(run_dir)
    d = DaemonProcess(state, [run_dir], args=["--config", str(config)]).start()
    try:
        assert poll(lambda: npz_source_sha(run_dir) == digest, 60), d.log()
        assert npz_matches_survivors(run_dir) and _npz_intact(run_dir)
        assert zipfile.is_zipfile(run_dir / NPZ_NAME)
        assert json.loads((run_dir / NPZ_META_NAME).read_text())["npz_sha256"] == sha256_file(run_dir / NPZ_NAME)
    finally:
        assert d.stop() == 0


def test_kill_9_during_conversion_never_tears_the_npz(tmp_path: Path, run_dir: Path) -> None:
    kill_during_conversion(tmp_path, run_dir, rounds=2)


@pytest.mark.stress
def test_kill_9_during_conversion_repeated(tmp_path: Path, run_dir: Path) -> None:
    kill_during_conversion(tmp_path, run_dir, rounds=15)


def test_a_stalled_run_is_noticed_by_the_decision_timer(tmp_path: Path, run_dir: Path) -> None:
    """No file changes at all: the timer alone turns wait into retry "stalled"."""
    config = tmp_path / "stall.toml"
    # stall_after: long enough that a loaded machine still decides "wait" first
    config.write_text("decide_interval = 1\n[decisions]\nstall_after = 6\n")
    write_trial(run_dir, 1500, status="in_progress", completed=5, total=50)
    d = DaemonProcess(tmp_path / "state", [run_dir], args=["--config", str(config)]).start()
    try:
        assert poll(lambda: part(d, "decision").get("action") == "wait"), d.log()
        events = d.counter("events")
        stalled = poll(lambda: (x := part(d, "decision")).get("action") == "retry" and x, 15)
        assert stalled, d.log()
        assert "stalled" in stalled["reasoning"] and stalled["confidence"] == 0.3
        assert d.counter("events") == events  # no event caused it
        # the stall's age grows at every timer tick; it is still one decision, not one per tick
        first = datetime.fromisoformat(stalled["evaluated_at"])
        assert poll(lambda: datetime.fromisoformat(part(d, "decision")["evaluated_at"]) - first
                    >= timedelta(seconds=3), 15), d.log()
        assert [x["action"] for x in d.decisions()] == ["wait", "retry"]
    finally:
        assert d.stop() == 0


def test_sigint_stops_cleanly_too(daemon, run_dir: Path) -> None:
    d = daemon()
    assert d.stop(signal.SIGINT) == 0
    assert d.status()["daemon"]["state"] == "stopped"
    assert "stopped" in d.log()
    assert os.path.exists(d.state_dir / "daemon.lock")


def test_status_best_is_none_until_a_trial_succeeds() -> None:
    """winopt writes its counts as 0 before the first successful trial (the old watcher
    needs integers); status.json's `best` still says "none yet" then, and a real best of 0,
    or an old file's count, is kept."""
    from winopt.daemon.adapters.runs import snapshot_summary

    before = {"schema_version": 3, "status": "in_progress", "best_trial_number": None,
              "best_bidirectional_count": 0, "bidirectional_count": 0}
    assert snapshot_summary(before)["best"] is None
    assert snapshot_summary({**before, "best_trial_number": 2})["best"] == 0
    assert snapshot_summary({"best_trial_number": None, "best_bidirectional_count": 7})["best"] == 7
