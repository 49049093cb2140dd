"""Tables fit the terminal (issue 12, item 4): `winopt status` with COLUMNS=80 over a status
file holding long names, many rigs and every job state has no line longer than 80, job
ids shortened (and typed back), `--wide` showing everything whole; the column meanings
in `--help`; `winopt sync --wait`'s header lines up with its rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from winopt.contracts.errors import UserError
from winopt.handlers.jobs.refs import resolve_job_id, short_id
from winopt.cli.sync import rig_table
from winopt.cli.table import fit_table, wrap

STATES = ("queued", "running", "complete", "failed", "cancelled")
LONG_ERROR = ("exit 23 (partial transfer due to error): rsync: [receiver] mkstemp \"/srv/rig-copy/r1/.bidirectional_"
              "survivors_binary.npz.Ab12Cd\" failed: Permission denied (13); to fix: let user winopt write "
              "/srv/rig-copy: chown -R winopt:winopt /srv/rig-copy")


def job_id(n: int, name: str = "a-rather-long-job-name-for-a-search") -> str:
    return f"202601{n + 10:02d}T1{n % 10}3000Z-{name}-{n:06x}"


def busy_status() -> dict[str, Any]:
    """A head node on a busy day: long run names, nine rigs (one failing with a long
    error), a job in every state (a running one being cancelled), a failed job's reason,
    refused files, and jobs left out."""
    rigs = {f"rig-number-{i}-in-the-far-rack": {"target": f"winopt@rig{i}.cluster.example.org:/data/winopt/",
                                                "runs": {}} for i in range(9)}
    runs: dict[str, Any] = {
        "projects/lottery/evening/2026/january/out": {
            "kind": "watched", "state": "in_progress",
            "snapshot": {"completed_trials": 123456, "total_trials": 1000000, "best": 987654321},
            "decision": {"action": "escalate", "confidence": 0.9},
            "npz": {"converted_at": "2026-01-31T10:00:00+00:00"},
            "error": "survivors.json: not valid JSON: unexpected character at line 1 column 99999 " * 2},
    }
    jobs: dict[str, Any] = {}
    for n, state in enumerate([*STATES, "running", *STATES]):
        jid = job_id(n)
        jobs[jid] = {"state": state, "priority": 10 * n, "trials": 1000000, "cancel_requested": n == 5,
                     "accepted_at": f"2026-01-{n + 1:02d}T00:00:00+00:00", "owner": "alice",
                     "reason": "exit 1: winopt: error: draws.json: entry 17: draw 1000 is out of range " * 3,
                     "history": [{"state": state, "at": "2026-01-31T11:00:00+00:00"}]}
        runs[jid] = {"kind": "job", "state": "in_progress",
                     "snapshot": {"completed_trials": 999999, "total_trials": 1000000, "best": 123456789},
                     "decision": {"action": "proceed", "confidence": 0.95}}
        for i, rig in enumerate(rigs):
            rigs[rig]["runs"][jid] = {"state": "retrying" if i == 3 else "synced", "attempts": 7,
                                      "next_try": "2026-01-31T12:05:00+00:00", "last_error": LONG_ERROR}
    return {"daemon": {"pid": 1, "state": "running", "started_at": "2026-01-30T00:00:00+00:00",
                       "state_dir": "/var/lib/winopt", "counters": {"conversions": 12345},
                       "missing": ["/srv/a", "/srv/b"]},
            "rigs": rigs, "runs": runs, "jobs": jobs, "jobs_left_out": 4321,
            "rejected": {f"a-very-long-file-name-somebody-dropped-{i}.toml": {
                "reason": f"spool/x.toml: {LONG_ERROR}", "at": f"2026-01-0{i + 1}T00:00:00+00:00"} for i in range(3)}}


def winopt(*args: str, columns: int | None = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "winopt", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_status_fits_80_columns_with_long_names_many_rigs_and_every_job_state(tmp_path: Path) -> None:
    doc = busy_status()
    (tmp_path / "status.json").write_text(json.dumps(doc))
    shown = winopt("status", "--state-dir", str(tmp_path), "--all")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, "\n".join(too_long)
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in map(short_id, doc["jobs"])}
    assert len(rows) == len(doc["jobs"]), shown.stdout  # every job, by its short id
    for jid, job in doc["jobs"].items():
        state = "cancelling" if job["cancel_requested"] else job["state"]
        assert rows[short_id(jid)].split()[1] == state, rows[short_id(jid)]
    assert "SINCE" in lines[[i for i, line in enumerate(lines) if line.startswith("JOB ")][0]]
    # the long notes are wrapped, not cut: every word of the rig error is there
    text = " ".join(shown.stdout.split())
    assert "chown -R winopt:winopt /srv/rig-copy" in text and "4321 older finished jobs" in text

    wide = winopt("status", "--state-dir", str(tmp_path), "--all", "--wide")
    assert all(any(line.startswith(jid) for line in wide.stdout.splitlines()) for jid in doc["jobs"]), wide.stdout
    assert any(LONG_ERROR in line for line in wide.stdout.splitlines())
    narrow = winopt("status", "--state-dir", str(tmp_path), "--all", columns=60)
    assert max(map(len, narrow.stdout.splitlines())) <= 60, narrow.stdout


def test_status_help_says_what_each_column_means() -> None:
    shown = winopt("status", "--help")
    assert shown.returncode == 0
    for column in ("RUN", "JOB", "STATE", "PRIO", "TRIALS", "BEST", "DECISION", "NPZ AGE", "RIGS", "SINCE"):
        assert f"\n  {column} " in shown.stdout, column
    assert "--wide" in shown.stdout
    assert "SINCE     time since the job last changed state" in shown.stdout


def test_short_ids_are_typed_back(tmp_path: Path) -> None:
    ids = [job_id(1), job_id(2, "other"), "20260111T130000Z-x-00abcd"]
    for jid in ids:
        (tmp_path / jid).mkdir()
    assert short_id(ids[0]) == "0111-000001"
    for jid in ids[:2]:
        assert resolve_job_id(short_id(jid), tmp_path) == jid
        assert resolve_job_id(jid[-6:], tmp_path) == jid
    with pytest.raises(UserError, match="names 2 jobs"):
        resolve_job_id("20260111T1", tmp_path)
    with pytest.raises(UserError, match="no job 'zzzz'"):
        resolve_job_id("zzzz", tmp_path)


def test_sync_wait_header_lines_up_with_rows_and_fits() -> None:
    rows = [("rig-number-one-in-the-far-rack projects/lottery/out", "synced", "0123456789ab", "0.12s",
             "sent bidirectional_survivors_binary.npz"),
            ("b r1", "retrying", "-", "-", LONG_ERROR)]
    lines = rig_table(rows, 80)
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    header, first, second = lines[:3]
    for column, cell in (("STATE", "synced"), ("SHA256", "0123456789ab"), ("TIME", "0.12s")):
        assert header.index(column) == first.index(cell), "\n".join(lines)
    assert second.index("retrying") == header.index("STATE")
    assert LONG_ERROR in " ".join(" ".join(lines[3:]).split()).replace("- ", "-")  # in full, under the table


def test_fit_table_and_wrap_never_pass_the_width() -> None:
    rows = [("x" * 50, "y" * 50, "z")] * 3
    for width in (20, 40, 80):
        assert max(map(len, fit_table(("A", "B", "C"), rows, width, flexible=("A", "B")))) <= width
        assert all(len(part) <= width for part in wrap("word " * 40 + "/a/very/long/path" * 10, width))
    assert fit_table(("A", "B"), [("abc", "d")], None) == ["A    B", "abc  d"]
