"""Members read the story without root (issue 12, item 3).

A real daemon on a state dir laid out as tmpfiles.d lays it out, real members of a
throw-away group (tests/members_support.py): alice submits a job and cancels another
with `winopt cancel`, then reads, as herself, `winopt logs JOB` (the daemon's lines about
that job, naming her as the one who submitted and cancelled it, and the optimizer's own
output) and `winopt logs`. The group-readable log carries the journal's fields (JOB_ID,
EVENT, USER); the journal itself gets the same fields (tests/test_daemon_jobs.py checks
USER there, under a real systemd).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import stat
import subprocess
import sys
import time
from pathlib import Path

from daemon_support import poll
from head_support import Head
from winopt.daemon.logfile import GroupLogHandler, log_files
from winopt.contracts.state_dir import LOG_NAME
from winopt.cli.logs import read_log, render
from winopt.handlers.jobs.refs import short_id


def records(state: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (state / LOG_NAME).read_text().splitlines()]
    except OSError:
        return []


def daemon_args(head: Head) -> tuple[str, ...]:
    return ("--config", str(head.config), "--state-dir", str(head.state))


def test_a_member_reads_who_submitted_and_cancelled_her_jobs_without_root(head: Head) -> None:
    alice = head.members.alice
    d = head.start()
    done = head.submit(alice, head.job(2))
    long = head.submit(alice, head.job(1_000_000))
    assert poll(lambda: head.job_state(d, done) == "complete" and head.job_state(d, long) == "running", 90), d.log()
    cancel = alice.winopt("cancel", short_id(long), *daemon_args(head))  # the short form status shows
    assert cancel.returncode == 0, cancel.stderr
    assert poll(lambda: head.job_state(d, long) == "cancelled", 60), d.log()

    log = head.state / LOG_NAME
    st = log.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, head.members.gid), "the group reads the daemon's log"
    fields = {(r.get("JOB_ID"), r.get("EVENT")): r for r in records(head.state)}
    assert fields[(done, "job_accepted")]["USER"] == alice.name
    assert fields[(long, "job_cancel_requested")]["USER"] == alice.name
    assert poll(lambda: any(r.get("EVENT") == "job_cancelled" and r.get("USER") == alice.name
                            for r in records(head.state)), 20), records(head.state)[-5:]

    shown = alice.winopt("logs", short_id(done), *daemon_args(head))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"job {done}: accepted from spool/{done}.toml, submitted by {alice.name}" in text, text
    assert f"job {done}: started" in text and f"job {done}: complete" in text, text
    assert f"-- {head.state / 'jobs' / done / 'optimizer.log'}" in text and "=== " in text, text
    assert long not in text, "another job's lines"

    shown = alice.winopt("logs", long, *daemon_args(head))
    assert shown.returncode == 0, shown.stderr
    assert f"cancel requested by {alice.name} while running" in shown.stdout, shown.stdout
    assert f"job {long}: cancelled: cancelled on request" in shown.stdout
    assert f"(requested by {alice.name})" in shown.stdout, shown.stdout

    everything = alice.winopt("logs", "-n", "0", *daemon_args(head))
    assert everything.returncode == 0 and "ready: watching" in everything.stdout, everything.stderr
    assert len(alice.winopt("logs", "-n", "3", *daemon_args(head)).stdout.splitlines()) == 3
    assert d.stop() == 0


def test_logs_says_in_one_line_when_there_is_no_log(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "winopt", "logs", "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (f"winopt: error: {tmp_path / LOG_NAME}: no daemon log yet (is the daemon running, and "
                           "is --state-dir right?)\n")
    assert os.listdir(tmp_path) == []


def test_the_group_log_is_bounded_rotated_0640_and_read_back_in_order(tmp_path: Path) -> None:

    handler = GroupLogHandler(tmp_path, max_bytes=4096, backups=3)
    logger = logging.getLogger("winopt.test.grouplog")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for i in range(500):
            logger.info("line %d \x1b[31m", i, extra={"JOB_ID": f"j{i % 2}", "EVENT": "test"})
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = log_files(tmp_path)
    assert [p.name for p in files] == [f"{LOG_NAME}.3", f"{LOG_NAME}.2", f"{LOG_NAME}.1", LOG_NAME]
    assert all(p.stat().st_size <= 4096 and stat.S_IMODE(p.stat().st_mode) == 0o640 for p in files)
    numbers = [int(r["message"].split()[1]) for r in read_log(tmp_path)]
    assert numbers == sorted(numbers) and numbers[-1] == 499 and numbers[0] > 0  # the oldest dropped
    assert render(read_log(tmp_path)[-1]).endswith("line 499 \\x1b[31m")  # escaped for the terminal


def test_logs_follow_prints_new_lines_as_they_come(tmp_path: Path) -> None:


    handler = GroupLogHandler(tmp_path)
    logger = logging.getLogger("winopt.test.follow")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.info("before")
    follower = subprocess.Popen([sys.executable, "-m", "winopt", "logs", "-f", "-n", "1", "--state-dir", str(tmp_path)],
                                stdout=subprocess.PIPE, text=True)
    selector = selectors.DefaultSelector()
    selector.register(follower.stdout, selectors.EVENT_READ)

    def next_line(deadline: float) -> str:
        return follower.stdout.readline() if selector.select(timeout=max(0.0, deadline - time.monotonic())) else ""

    try:
        first = next_line(time.monotonic() + 20)
        assert first.rstrip().endswith("info    before"), first  # the tail, printed before it follows
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while not any("after" in line for line in seen) and time.monotonic() < deadline:
            logger.info("after")  # again until the follower shows it: no guess at how long it takes
            seen.append(next_line(time.monotonic() + 0.5))
        assert any(line.rstrip().endswith("info    after") for line in seen), seen
    finally:
        follower.kill()
        follower.wait(10)
        logger.removeHandler(handler)
        handler.close()
