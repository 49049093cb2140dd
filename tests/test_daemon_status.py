"""status.json (coalesced atomic writes), decisions.jsonl (atomic appends) and `winopt status`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from polling import poll
from winopt.daemon.status import DecisionLog, StatusBook
from winopt.contracts.status import read_status
from winopt.cli.status import render


def test_a_busy_book_is_written_a_few_times_and_ends_current(tmp_path: Path) -> None:
    book = StatusBook(tmp_path, min_interval=0.2)
    book.start()
    for i in range(5000):
        book.update_run("r1", completed=i)
        book.count("events")
    book.stop()
    doc = read_status(tmp_path)
    assert doc["runs"]["r1"]["completed"] == 4999
    assert doc["daemon"]["counters"]["events"] == 5000
    assert 1 <= book.writes <= 10, book.writes
    assert doc["jobs"] == {} and doc["rigs"] == {}


def test_a_value_that_is_not_json_never_stops_the_status_writer(tmp_path: Path) -> None:
    def runs_on_disk() -> dict:
        try:
            return read_status(tmp_path)["runs"]
        except OSError:
            return {}

    book = StatusBook(tmp_path, min_interval=0.01)
    book.start()
    try:
        book.update_run("r1", path=tmp_path)  # a Path: not JSON
        assert poll(lambda: runs_on_disk().get("r1", {}).get("path") == str(tmp_path), 5), runs_on_disk()
        book.update_run("r2", state="running")  # the writer lives on
        assert poll(lambda: "r2" in runs_on_disk(), 5), runs_on_disk()
    finally:
        book.stop()


def test_a_failing_after_write_hook_never_stops_the_status_writer(tmp_path: Path) -> None:
    """The hook (systemd STATUS=) raising once must not leave status.json frozen."""
    seen: list[dict] = []

    def hook(doc: dict) -> None:
        seen.append(doc)
        if len(seen) == 1:
            raise RuntimeError("notify socket gone")

    book = StatusBook(tmp_path, min_interval=0.01, on_written=hook)
    book.start()
    try:
        book.update_run("r1", state="running")
        assert poll(lambda: len(seen) == 1, 5)
        book.update_run("r2", state="running")
        assert poll(lambda: len(seen) == 2 and "r2" in read_status(tmp_path)["runs"], 5), seen
        assert book.alive()
    finally:
        book.stop()
    assert not book.alive()


def test_readers_never_see_a_partial_status_file(tmp_path: Path) -> None:
    book = StatusBook(tmp_path, min_interval=0)
    book.start()
    book.update_run("r", n=0)
    book.flush()
    stop = threading.Event()
    bad: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                json.loads((tmp_path / "status.json").read_bytes())
                reads += 1
            except ValueError as exc:
                bad.append(str(exc))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(300):
        book.update_run("r", n=i, padding="x" * (i * 37 % 5000))
        book.flush()
    stop.set()
    t.join()
    book.stop()
    assert bad == [] and reads > 0


def append_from_four_threads(log: DecisionLog) -> None:
    """200 decisions of 3 KB, 50 from each of four threads at once."""

    def append(n: int) -> None:
        for i in range(50):
            log.append({"run": f"r{n}", "i": i, "reasoning": "y" * 3000})

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_decision_lines_from_many_threads_never_interleave(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    append_from_four_threads(log)
    lines = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == 200
    records = [json.loads(line) for line in lines]
    assert sorted((r["run"], r["i"]) for r in records) == sorted((f"r{n}", i) for n in range(4) for i in range(50))



def test_decision_log_rotates_so_months_of_decisions_stay_bounded(tmp_path: Path) -> None:
    limit, line_bytes = 64 << 10, 3100
    log = DecisionLog(tmp_path, max_bytes=limit)
    append_from_four_threads(log)
    log.append({"run": "last", "i": 0})
    current, previous = tmp_path / "decisions.jsonl", tmp_path / "decisions.jsonl.1"
    assert previous.exists()
    for path in (current, previous):  # over the limit by at most the lines in flight at a rotation
        assert path.stat().st_size < limit + 4 * line_bytes
        assert [json.loads(line) for line in path.read_text().splitlines()]  # every line whole
    assert json.loads(current.read_text().splitlines()[-1])["run"] == "last"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decisions.jsonl", "decisions.jsonl.1"]


SAMPLE = {
    "daemon": {"pid": 999999999, "state": "running", "started_at": "2026-01-01T10:00:00+00:00",
               "counters": {"conversions": 7}},
    "runs": {
        "r1": {"state": "running", "snapshot": {"completed_trials": 12, "total_trials": 50, "best": 1800},
               "decision": {"action": "wait", "confidence": 0.7},
               "npz": {"converted_at": "2026-01-01T11:55:00+00:00"}},
        "old": {"state": "error", "snapshot": None, "decision": {"action": "escalate", "confidence": 0.9},
                "npz": None, "error": "survivors.json: not valid JSON"},
    },
}


def test_the_table_reads_at_a_glance() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    text = render(SAMPLE, now=now)
    lines = text.splitlines()
    assert "not running" in lines[0] and "7 conversions" in lines[0]
    assert lines[1].split() == ["RUN", "STATE", "TRIALS", "BEST", "DECISION", "NPZ", "AGE", "RIGS"]
    assert lines[2].split() == ["old", "error", "-", "-", "escalate", "0.90", "-", "-"]  # no rigs: "-"
    assert lines[3].split() == ["r1", "running", "12/50", "1800", "wait", "0.70", "5m", "-"]
    assert lines[4] == "old: survivors.json: not valid JSON"
    assert render({"daemon": {}, "runs": {}}, now=now).endswith("no runs watched")
    assert "up 2h" in lines[0]


def test_finished_jobs_not_tracked_are_one_line() -> None:
    """status.json keeps only `[jobs] finished_kept` finished jobs and counts the rest."""
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    doc = {"daemon": {"state_dir": "/srv/state"}, "runs": {}, "jobs": {}, "jobs_left_out": 3}
    lines = render(doc, now=now, all_jobs=True).splitlines()
    assert lines[-1] == "... and 3 older finished jobs not tracked (their results stay in /srv/state/jobs/)"
    assert "not tracked" not in render({**doc, "jobs_left_out": 0}, now=now)
    assert "not tracked" not in render(SAMPLE, now=now)  # a status file from before the field


def winopt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winopt", *args], capture_output=True, text=True, timeout=60)


def test_status_command_json_and_table(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_text(json.dumps(SAMPLE))
    out = winopt("status", "--state-dir", str(tmp_path), "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == SAMPLE
    out = winopt("status", "--state-dir", str(tmp_path))
    assert out.returncode == 0 and "r1" in out.stdout and "12/50" in out.stdout


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_status_without_a_readable_file_is_one_clear_line(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "status.json").write_text(content)
    out = winopt("status", "--state-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith("winopt: error: daemon not running or state dir wrong: ")
    assert str(tmp_path / "status.json") in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("content", ['{"daemon": 5}', '{"rigs": {"r1": 3}}', '{"runs": {"r1": "running"}}'])
def test_a_status_file_of_another_shape_is_one_clear_line(tmp_path: Path, content: str) -> None:
    """JSON, but not the layout this version writes (another version, a hand edit)."""
    (tmp_path / "status.json").write_text(content)
    out = winopt("status", "--state-dir", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"winopt: error: {tmp_path / 'status.json'}: not a status file")
    assert len(out.stderr.strip().splitlines()) == 1
    assert winopt("status", "--state-dir", str(tmp_path), "--json").stdout == content
