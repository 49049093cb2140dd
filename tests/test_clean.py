"""Listing and cleaning jobs (issue 12, item 7).

- As real members of a throw-away group (tests/members_support.py), against a real
  daemon: `winopt jobs` lists everyone's jobs with their owners; `winopt jobs --rejected`
  a member's own refused files (`--all`: everyone's); alice cleans her finished job, but
  not mallory's (refused at the prompt, and by the daemon when she drops a request of her
  own making that names it), and `--older-than` takes only her own things.
- `[jobs] keep` removes finished jobs, refused files and rotated decision logs older than
  it at the daemon's start (and every reconcile), and nothing younger or still running.
- Root with no daemon running cleans directly, holding the daemon's instance lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from daemon_support import DaemonProcess, poll
from jobs_support import toml_job, write_plain_history
from members_support import Member
from head_support import Head
from winopt.daemon.config import ConfigError, parse_config
from winopt.contracts.state_dir import LOG_NAME
from winopt.handlers.jobs.refs import short_id
from winopt.handlers.jobs.spool import Spool

OLD = (datetime.now().astimezone() - timedelta(days=40)).isoformat(timespec="seconds")


def args(head: Head) -> tuple[str, ...]:
    return ("--config", str(head.config), "--state-dir", str(head.state))


def run_ok(who: Member, *argv: str) -> str:
    done = who.winopt(*argv)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout


def test_members_list_jobs_and_clean_only_their_own(head: Head) -> None:
    alice, mallory = head.members.alice, head.members.mallory
    d = head.start()
    hers, theirs = head.submit(alice, head.job(2)), head.submit(mallory, head.job(2))
    head.drop(alice, "alice-bad.toml", "trials = 0\n")
    head.drop(mallory, "mallory-bad.toml", "trials = 0\n")
    assert poll(lambda: all(head.job_state(d, j) == "complete" for j in (hers, theirs))
                and len(d.status().get("rejected") or {}) == 2, 90), d.log()

    listed = json.loads(run_ok(alice, "jobs", "--json", *args(head)))
    assert {(j["id"], j["owner"], j["state"]) for j in listed} == {(hers, alice.name, "complete"),
                                                                   (theirs, mallory.name, "complete")}
    table = run_ok(alice, "jobs", *args(head)).splitlines()
    assert table[0].split() == ["ID", "NAME", "STATE", "AGE", "OWNER"] and max(map(len, table)) <= 80
    assert any(line.startswith(short_id(hers)) and line.split()[-1] == alice.name for line in table), table
    own = json.loads(run_ok(alice, "jobs", "--rejected", "--json", *args(head)))
    assert [(r["name"], r["owner"]) for r in own] == [("alice-bad.toml", alice.name)]
    assert "draws: missing" in own[0]["reason"]
    assert {r["name"] for r in json.loads(run_ok(alice, "jobs", "--rejected", "--all", "--json", *args(head)))} \
        == {"alice-bad.toml", "mallory-bad.toml"}

    # not mallory's: refused at the prompt, in one line
    refused = alice.winopt("clean", short_id(theirs), *args(head))
    assert refused.returncode == 2 and refused.stderr == (
        f"winopt: error: job {theirs} is {mallory.name}'s: only its owner, root or the daemon's user may remove it\n")
    # ... and by the daemon, when she writes a request herself (the daemon checks its owner)
    request = head.root / "forged.json"
    request.write_text(json.dumps({"jobs": [theirs], "rejected": ["mallory-bad.toml"], "decision_logs": []}))
    os.chown(request, alice.uid, -1)
    alice.ok(f"install -m 640 {request} {head.spool}/.x.tmp && mv {head.spool}/.x.tmp {head.spool}/clean-x.clean")
    assert poll(lambda: not (head.spool / "clean-x.clean").exists(), 20), d.log()
    assert (head.state / "jobs" / theirs).is_dir() and (head.state / "rejected" / "mallory-bad.toml").exists()
    assert f"clean requested by {alice.name}: removed nothing; kept 2: job {theirs} is {mallory.name}'s" in d.log()

    # a request the group could have rewritten is not taken as hers
    request.write_text(json.dumps({"jobs": [hers]}))
    alice.ok(f"install -m 660 {request} {head.spool}/.y.tmp && mv {head.spool}/.y.tmp {head.spool}/clean-y.clean")
    assert poll(lambda: not (head.spool / "clean-y.clean").exists(), 20), d.log()
    assert (head.state / "jobs" / hers).is_dir() and "clean-y.clean from " in d.log() and "writable by others" in d.log()

    # her own, by its short id: through the daemon, which she cannot write
    cleaned = run_ok(alice, "clean", short_id(hers), *args(head))
    assert cleaned.splitlines() == [f"removed job {short_id(hers)}", "removed 1 job"], cleaned
    assert not (head.state / "jobs" / hers).exists() and (head.state / "jobs" / theirs).is_dir()
    assert poll(lambda: hers not in (d.status().get("jobs") or {}) and hers not in (d.status().get("runs") or {}), 20)
    story = run_ok(alice, "logs", "-n", "0", *args(head))
    assert f"job {hers}: removed by {alice.name}" in story

    # everything of hers, whatever its age: her refused file goes, mallory's things stay
    again = run_ok(alice, "clean", "--older-than", "0s", *args(head))
    assert again.splitlines()[-1] == "removed 1 refused file", again
    assert sorted(os.listdir(head.state / "rejected")) == ["mallory-bad.toml", "mallory-bad.toml.error"]
    assert run_ok(alice, "clean", "--older-than", "0s", *args(head)).strip() == "nothing to clean older than 0s"
    assert [j["id"] for j in json.loads(run_ok(mallory, "jobs", "--json", *args(head)))] == [theirs]
    assert d.stop() == 0


def old_state(tmp_path: Path) -> tuple[Path, Spool, dict[str, str]]:
    """A state dir with an old and a new finished job, an old and a new refused file,
    a queued job accepted long ago, and an old rotated decision log."""
    draws = tmp_path / "draws"
    draws.mkdir()
    write_plain_history(draws / "plain.json", 200)
    state = tmp_path / "state"
    spool = Spool(state, allowed_draws_dirs=[draws], grace=0)
    spool.ensure_layout()
    for name in ("old.toml", "new.toml", "waiting.toml", "old-bad.toml", "new-bad.toml"):
        text = toml_job(draws="plain.json", trials=2) if "bad" not in name else "trials = 0\n"
        (spool.dir / name).write_text(text)
    accepted = {r.source.removesuffix(".toml"): r.id for r in spool.scan(now=time.time() + 60).accepted}
    for name in ("old", "new"):
        spool.store.transition(accepted[name], "cancelled", "test")
    for name in ("old", "waiting"):
        spool.store.update(accepted[name], lambda r: replace(r, updated_at=OLD, accepted_at=OLD))
    past = time.time() - 40 * 86400
    os.utime(spool.rejected / "old-bad.toml.error", (past, past))
    (state / "decisions.jsonl.1").write_text("{}\n")
    os.utime(state / "decisions.jsonl.1", (past, past))
    return state, spool, accepted


def test_keep_removes_what_is_older_at_start_and_nothing_else(tmp_path: Path) -> None:
    state, spool, ids = old_state(tmp_path)
    config = tmp_path / "daemon.toml"
    config.write_text(f'[jobs]\nallowed_draws_dirs = ["{tmp_path / "draws"}"]\nkeep = "30d"\nmax_parallel_jobs = 1\n')
    d = DaemonProcess(state, [], args=["--config", str(config)], env={"WINOPT_DEVICE": "cpu"})
    d.start()
    try:
        # the summary is logged after the last removal: the checks below see the end state
        def summary() -> bool:
            text = (state / LOG_NAME).read_text() if (state / LOG_NAME).exists() else ""
            return any(json.loads(line).get("EVENT") == "clean" for line in text.splitlines() if line.endswith("}"))

        assert poll(summary, 20), d.log()
        assert not (state / "jobs" / ids["old"]).exists()
        assert (state / "jobs" / ids["new"]).is_dir() and (state / "jobs" / ids["waiting"]).is_dir()
        assert sorted(os.listdir(state / "rejected")) == ["new-bad.toml", "new-bad.toml.error"]
        assert not (state / "decisions.jsonl.1").exists()
        assert poll(lambda: ids["old"] not in (d.status().get("jobs") or {}), 10), d.status().get("jobs")
        assert "old-bad.toml" not in (d.status().get("rejected") or {})
        lines = [json.loads(line) for line in (state / LOG_NAME).read_text().splitlines()]
        kept = [r for r in lines if r.get("EVENT") == "clean"]
        assert kept and kept[0]["message"] == ("keep policy (older than 30d): removed 1 job, 1 refused file, "
                                               f"1 decision log (jobs {ids['old']})"), kept
    finally:
        d.stop()


def test_keep_is_checked_like_every_key() -> None:
    assert parse_config({"jobs": {"keep": "30d"}}, "f").jobs.keep == 30 * 86400
    assert parse_config({}, "f").jobs.keep is None  # default: keep everything
    for bad, words in (("soon", 'must be a duration like "30d"'), (0, "must be > 0"), (True, "must be a number")):
        with pytest.raises(ConfigError, match=words):
            parse_config({"jobs": {"keep": bad}}, "f")


def test_root_without_a_daemon_cleans_directly(tmp_path: Path) -> None:
    state, spool, ids = old_state(tmp_path)
    clean = [sys.executable, "-m", "winopt", "clean", "--state-dir", str(state)]
    listed = subprocess.run([*clean, "--older-than", "30d", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[-1] == "1 job, 1 refused file, 1 decision log would be removed"
    assert (state / "jobs" / ids["old"]).is_dir()
    done = subprocess.run([*clean, "--older-than", "30d"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "removed 1 job, 1 refused file, 1 decision log"
    assert not (state / "jobs" / ids["old"]).exists() and (state / "jobs" / ids["new"]).is_dir()
    running = subprocess.run([*clean, ids["waiting"]], capture_output=True, text=True, timeout=60)
    assert running.returncode == 2 and running.stderr == (
        f"winopt: error: job {ids['waiting']} is queued: only a finished job is removed "
        f"(winopt cancel {ids['waiting']} first)\n")
    nothing = subprocess.run(clean, capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 2 and "say what to clean" in nothing.stderr
    assert not spool.dir.joinpath("clean").exists() and not any(n.endswith(".clean") for n in os.listdir(spool.dir))
