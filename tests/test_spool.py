"""The spool: accept, reject, ignore, wait for files still being written, survive kill -9
at any point, and the `winopt submit` / `winopt cancel` round trip (real files, real
processes, polling with deadlines)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jobs_support import toml_job, wait_for, write_plain_history
from winopt.contracts.state_dir import STATE_FILE
from winopt.handlers.jobs.spool import Spool
from winopt.handlers.jobs.ids import JOB_ID_RE, new_job_id

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    draws = tmp_path / "draws"
    draws.mkdir()
    write_plain_history(draws / "plain.json", 200)
    return tmp_path / "state"


def make_spool(state: Path, grace: float = 0.5) -> Spool:
    spool = Spool(state, allowed_draws_dirs=[state.parent / "draws"], grace=grace)
    spool.ensure_layout()
    return spool


def later() -> float:
    """A scan time past any grace period, so a test need not wait for one."""
    return time.time() + 60


def spool_names(spool: Spool) -> set[str]:
    return {p.name for p in spool.dir.iterdir() if p.is_file()}


def winopt(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winopt", *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})


def daemon_toml(tmp_path: Path, state_dir: Path) -> Path:
    """A daemon config allowing the test's draws directory, as the daemon would run."""
    config = tmp_path / "daemon.toml"
    config.write_text(f'state_dir = "{state_dir}"\n[jobs]\nallowed_draws_dirs = ["{tmp_path / "draws"}"]\n')
    return config


# ---------------------------------------------------------------------------- accept / reject


def test_a_valid_file_becomes_a_queued_job(state: Path) -> None:
    spool = make_spool(state)
    text = toml_job(draws="plain.json", trials=4, name="mine", window_size=[2, 8])
    (spool.dir / "first.toml").write_text(text)
    result = spool.scan(now=later())
    assert [e.kind for e in result.events] == ["accepted"]
    (record,) = result.accepted
    assert JOB_ID_RE.fullmatch(record.id) and "-mine-" in record.id
    job_dir = spool.store.dir(record.id)
    assert (job_dir / "job.toml").read_text() == text
    saved = json.loads((job_dir / STATE_FILE).read_text())
    assert saved["state"] == "queued" and saved["source"] == "first.toml"
    assert saved["spec"]["draws"] == str((state.parent / "draws" / "plain.json").resolve())
    assert spool_names(spool) == set() and not any(spool.accepting.iterdir())
    assert spool.store.jobs() == [record]


def test_a_fresh_file_waits_out_the_grace_period_unless_it_was_renamed_in(state: Path) -> None:
    spool = make_spool(state, grace=30)
    (spool.dir / "j.json").write_text(json.dumps({"draws": "plain.json", "trials": 1}))
    result = spool.scan()
    assert not result.accepted and 29 < result.retry_after <= 30
    assert spool_names(spool) == {"j.json"}
    assert len(spool.scan(renamed={"j.json"}).accepted) == 1


def test_a_bad_file_moves_to_rejected_beside_its_reason(state: Path) -> None:
    spool = make_spool(state)
    for _ in range(2):
        (spool.dir / "bad.toml").write_text(toml_job(draws="plain.json", trials=0))
        result = spool.scan(now=later())
        assert [e.kind for e in result.events] == ["rejected"] and not result.accepted
    names = sorted(p.name for p in spool.rejected.iterdir())
    assert names == ["bad.1.toml", "bad.1.toml.error", "bad.toml", "bad.toml.error"]
    reason = (spool.rejected / "bad.toml.error").read_text()
    assert reason.startswith("spool/bad.toml: trials: must be between 1 and")
    assert not spool.store.jobs() and spool_names(spool) == set()


def test_hidden_and_temp_names_and_directories_are_left_alone(state: Path) -> None:
    """...and `winopt sync` requests, which the distribution handler consumes."""
    spool = make_spool(state)
    for name in (".partial.toml", "x.toml.tmp", "sync-all.1a2b.sync"):
        (spool.dir / name).write_text("trials = ")
    (spool.dir / "somedir").mkdir()
    result = spool.scan(now=later())
    assert not result.events
    assert spool_names(spool) == {".partial.toml", "x.toml.tmp", "sync-all.1a2b.sync"}
    assert not spool.is_spool_entry(spool.dir / "sync-all.1a2b.sync")
    assert spool.is_spool_entry(spool.dir / "job.toml")


def test_other_suffixes_and_symlinks_are_rejected(state: Path, tmp_path: Path) -> None:
    spool = make_spool(state)
    (spool.dir / "job.yaml").write_text("trials: 1")
    with open(spool.dir / "huge.json", "wb") as fh:  # sparse: 8 GiB that must never be read
        fh.truncate(8 << 30)
    (tmp_path / "target.toml").write_text(toml_job(draws="plain.json", trials=1))
    (spool.dir / "link.toml").symlink_to(tmp_path / "target.toml")
    result = spool.scan(now=later())
    reasons = {e.name: e.reason for e in result.events}
    assert "not a job file" in reasons["job.yaml"]
    assert "too large for a job file" in reasons["huge.json"]
    assert "not a regular file" in reasons["link.toml"]
    assert (spool.rejected / "link.toml").is_symlink() and not spool.store.jobs()


def test_names_at_the_length_limit_are_accepted_or_rejected_not_crashed_on(state: Path) -> None:
    spool = make_spool(state)
    good, bad = "g" * 250 + ".toml", "b" * 250 + ".toml"
    (spool.dir / good).write_text(toml_job(draws="plain.json", trials=1))
    (spool.dir / bad).write_text(toml_job(draws="plain.json", trials=-1))
    result = spool.scan(now=later())
    assert sorted(e.kind for e in result.events) == ["accepted", "rejected"]
    assert result.accepted[0].source == good
    (error,) = spool.rejected.glob("*.error")
    assert "trials" in error.read_text() and error.name.startswith("bbbb") and len(error.name) <= 255


def test_a_fifo_is_rejected_unread_and_a_directory_left_alone(state: Path) -> None:
    """Reading a FIFO would block the scan until someone writes to it."""
    spool = make_spool(state)
    (spool.dir / "sub.toml").mkdir()
    (spool.dir / "sub.toml" / "x").write_text("")
    os.mkfifo(spool.dir / "fifo.toml")
    result = spool.scan(now=later())
    assert [(e.kind, e.name) for e in result.events] == [("rejected", "fifo.toml")]
    assert "not a regular file" in (spool.rejected / "fifo.toml.error").read_text()
    assert (spool.dir / "sub.toml").is_dir()


# ---------------------------------------------------------------------------- slow writers


PIECES = ['draws = "plain.json"\n', "trials = 3\n", 'name = "slow"\n', "priority = 7\n", "window_size = [2, 9]\n"]


def scan_until_accepted(spool: Spool, writer: threading.Thread, deadline: float) -> list:
    """Scan repeatedly (as a busy daemon would) while the writer works, then until the job
    is in; every scan result is kept."""
    results = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = spool.scan()
        results.append(result)
        if result.accepted:
            break
        time.sleep(0.03)
    writer.join()
    return results


@pytest.mark.parametrize("reopen", [False, True], ids=["one-open", "reopen-per-piece"])
def test_a_file_written_slowly_in_place_is_read_only_when_whole(state: Path, reopen: bool) -> None:
    """Each prefix of the file is itself a valid job (so reading early would be caught:
    the job would lack the later lines). One open: /proc shows it open for writing.
    Reopened per piece: the grace period (1.5 s) outlasts the 0.25 s gaps."""
    spool = make_spool(state, grace=1.5)
    path = spool.dir / "slow.toml"

    def write() -> None:
        fh = open(path, "w")
        for piece in PIECES:
            fh.write(piece)
            fh.flush()
            if reopen:
                fh.close()
            time.sleep(0.25)
            if reopen:
                fh = open(path, "a")
        fh.close()

    writer = threading.Thread(target=write)
    writer.start()
    results = scan_until_accepted(spool, writer, deadline=20)
    accepted = [r for res in results for r in res.accepted]
    assert len(accepted) == 1, "the job was never accepted"
    assert not [e for res in results for e in res.events if e.kind == "rejected"]
    job_dir = spool.store.dir(accepted[0].id)
    assert (job_dir / "job.toml").read_text() == "".join(PIECES)
    assert accepted[0].spec.priority == 7 and accepted[0].spec.bounds["window_size"] == (2, 9)


def test_a_file_held_open_for_writing_is_not_taken_whatever_its_mtime(state: Path) -> None:
    """The /proc check on its own: the grace period is defeated by an old mtime."""
    spool = make_spool(state, grace=1)
    path = spool.dir / "held.toml"
    old = time.time() - 3600
    with open(path, "w") as fh:
        fh.write("".join(PIECES[:2]))
        fh.flush()
        os.utime(path, (old, old))
        result = spool.scan()
        assert not result.events and result.retry_after == 1
        fh.write("".join(PIECES[2:]))
    os.utime(path, (old, old))
    (record,) = spool.scan().accepted
    assert (spool.store.dir(record.id) / "job.toml").read_text() == "".join(PIECES)


# ---------------------------------------------------------------------------- crashes


def test_recover_finishes_or_discards_what_a_crash_left(state: Path) -> None:
    spool = make_spool(state)
    text = toml_job(draws="plain.json", trials=2)
    staged_id = new_job_id("staged")
    (spool.accepting / f"{staged_id}@staged.toml").write_text(text)
    done_id = new_job_id("done")
    (spool.dir / "done.toml").write_text(text)
    spool.store.create(done_id, text.encode(), ".toml", _spec(spool, text), source="done.toml")
    (spool.dir / "done.toml").rename(spool.accepting / f"{done_id}@done.toml")
    half = spool.store.root / f".{new_job_id('half')}.tmp"
    half.mkdir()
    (half / "job.toml").write_text(text)
    result = spool.recover()
    assert [r.id for r in result.accepted] == [staged_id]
    assert sorted(r.id for r in spool.store.jobs()) == sorted([staged_id, done_id])
    assert not any(spool.accepting.iterdir()) and not half.exists()
    assert not spool.recover().events  # idempotent


def _spec(spool: Spool, text: str):
    from winopt.handlers.jobs.jobfile import parse_job_bytes, validate_job

    raw = parse_job_bytes(text.encode(), "x.toml", ".toml")
    return validate_job(raw, source="x.toml", allowed_draws_dirs=spool.allowed_draws_dirs,
                        base_dir=spool.allowed_draws_dirs[0])


SCAN_LOOP = """
import sys, time
from winopt.handlers.jobs.spool import Spool
spool = Spool(sys.argv[1], allowed_draws_dirs=[sys.argv[2]], grace=0)
print("ready", flush=True)
while True:
    spool.scan(now=time.time() + 60)
"""


def kill_during_accepts(state: Path, files: int, seed: int) -> None:
    """Drop `files` job files (a third invalid), let a scanning process start on them,
    kill -9 it at a random moment, recover and scan in this process: every file ends in
    exactly one place (a job whose source is its name, or rejected/), none is left over."""
    rng = random.Random(seed)
    spool = make_spool(state)
    names = [f"job{i:03d}.toml" for i in range(files)]
    for i, name in enumerate(names):
        trials = 0 if i % 3 == 0 else 2
        (spool.dir / name).write_text(toml_job(draws="plain.json", trials=trials))
    proc = subprocess.Popen([sys.executable, "-c", SCAN_LOOP, str(state), str(state.parent / "draws")],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "ready"
        wait_for(lambda: len(spool_names(spool)) < files, 30, "the scanner to take a file", 0.001)
        time.sleep(rng.uniform(0, 0.02 * (1 + seed % 10)))  # a random point among the accepts
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    spool.recover()
    spool.scan(now=later())
    sources = [r.source for r in spool.store.jobs()]
    rejected = [p.name for p in spool.rejected.iterdir() if not p.name.endswith(".error")]
    assert len(sources) == len(set(sources)), "a file became two jobs"
    assert sorted(sources + rejected) == names
    assert all(int(n[3:6]) % 3 == 0 for n in rejected)
    assert spool_names(spool) == set() and not any(spool.accepting.iterdir())
    assert not list(spool.store.root.glob(".*"))


def test_kill_9_while_accepting_loses_and_duplicates_nothing(state: Path) -> None:
    kill_during_accepts(state, files=24, seed=1)


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(20))
def test_kill_9_while_accepting_repeatedly(tmp_path: Path, seed: int) -> None:
    draws = tmp_path / "draws"
    draws.mkdir()
    write_plain_history(draws / "plain.json", 200)
    kill_during_accepts(tmp_path / "state", files=40, seed=seed)


# ---------------------------------------------------------------------------- cancel requests


def accept_one(spool: Spool, name: str = "j.toml") -> str:
    (spool.dir / name).write_text(toml_job(draws="plain.json", trials=2))
    return spool.scan(now=later()).accepted[0].id


def test_a_cancel_request_is_recorded_and_consumed(state: Path) -> None:
    spool = make_spool(state)
    job_id = accept_one(spool)
    (spool.dir / f"{job_id}.cancel").write_text("{}")
    result = spool.scan(now=later())
    assert result.cancels == [job_id] and [e.kind for e in result.events] == ["cancel_requested"]
    assert spool.store.load(job_id).cancel_requested
    assert spool_names(spool) == set()


def test_cancel_requests_for_unknown_or_finished_jobs_are_rejected(state: Path) -> None:
    spool = make_spool(state)
    job_id = accept_one(spool)
    spool.store.transition(job_id, "running", "test")
    spool.store.transition(job_id, "complete", "test")
    unknown = new_job_id("ghost")
    for name in (f"{job_id}.cancel", f"{unknown}.cancel", "not-an-id.cancel"):
        (spool.dir / name).write_text("")
    result = spool.scan(now=later())
    reasons = {e.name: e.reason for e in result.events}
    assert reasons == {f"{job_id}.cancel": f"job {job_id} is already complete",
                       f"{unknown}.cancel": f"no job {unknown}",
                       "not-an-id.cancel": "not-an-id is not a job id"}
    assert (spool.rejected / f"{unknown}.cancel.error").read_text().strip() == f"no job {unknown}"
    assert not result.cancels


def test_a_cancel_waits_for_its_job_file_still_in_the_spool(state: Path) -> None:
    spool = make_spool(state, grace=30)
    job_id = new_job_id("pending")
    (spool.dir / f"{job_id}.json").write_text(json.dumps({"draws": "plain.json", "trials": 2}))
    (spool.dir / f"{job_id}.cancel").write_text("")
    result = spool.scan(renamed={f"{job_id}.cancel"})
    assert not result.events and result.retry_after is not None
    result = spool.scan(renamed={f"{job_id}.json", f"{job_id}.cancel"})
    assert [r.id for r in result.accepted] == [job_id] and result.cancels == [job_id]


# ---------------------------------------------------------------------------- submit / cancel CLI


def test_submit_then_cancel_round_trip(state: Path, tmp_path: Path) -> None:
    spool = make_spool(state)
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.toml").write_text(toml_job(draws="../draws/plain.json", trials=3, name="from-file"))
    config = daemon_toml(tmp_path, state)
    done = winopt("submit", "job.toml", "--name", "cli-name", "--config", str(config), cwd=work)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert JOB_ID_RE.fullmatch(job_id) and "-cli-name-" in job_id
    assert spool_names(spool) == {f"{job_id}.json"}
    written = json.loads((spool.dir / f"{job_id}.json").read_text())
    assert written["draws"] == str((state.parent / "draws" / "plain.json").resolve())

    result = spool.scan(now=later())
    assert [r.id for r in result.accepted] == [job_id]
    assert spool.store.load(job_id).spec.name == "cli-name"

    done = winopt("cancel", job_id, "--state-dir", str(state))
    assert done.returncode == 0 and done.stdout.strip() == f"cancel requested for {job_id}"
    assert spool.scan(now=later()).cancels == [job_id]


def test_submit_refuses_a_bad_job_with_one_line_and_exit_2(state: Path, tmp_path: Path) -> None:
    spool = make_spool(state)
    bad = tmp_path / "bad.toml"
    bad.write_text(toml_job(draws="draws/plain.json", trials=5, window_size=[9, 3]))
    done = winopt("submit", str(bad), "--state-dir", str(state))
    assert done.returncode == 2
    assert done.stderr == f"winopt: error: {bad}: window_size: range [9, 3] is empty: lo is above hi\n"
    assert spool_names(spool) == set()
    done = winopt("submit", str(bad), "--state-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "window_size" in done.stderr  # validated before the spool


def test_submit_needs_an_existing_spool(tmp_path: Path, state: Path) -> None:
    job = tmp_path / "ok.toml"
    job.write_text(toml_job(draws="draws/plain.json", trials=5))
    done = winopt("submit", str(job), "--config", str(daemon_toml(tmp_path, tmp_path / "nowhere")))
    assert done.returncode == 2 and "no spool directory" in done.stderr
    assert done.stderr.count("\n") == 1


def test_cancel_refuses_unknown_finished_and_malformed_ids(state: Path) -> None:
    spool = make_spool(state)
    job_id = accept_one(spool)
    spool.store.transition(job_id, "cancelled", "test")
    cases = {job_id: f"job {job_id} is already cancelled", new_job_id("ghost"): "no job",
             "../../etc": "is not a job id"}
    for arg, words in cases.items():
        done = winopt("cancel", arg, "--state-dir", str(state))
        assert done.returncode == 2 and words in done.stderr and done.stderr.count("\n") == 1
    assert spool_names(spool) == set()


def test_submit_reads_the_state_dir_from_the_daemon_config(state: Path, tmp_path: Path) -> None:
    spool = make_spool(state)
    config = tmp_path / "daemon.toml"
    config.write_text(f'state_dir = "{state}"\n[jobs]\nmax_parallel_jobs = 2\n'
                      f'allowed_draws_dirs = ["{tmp_path / "draws"}"]\n')
    job = tmp_path / "ok.json"
    job.write_text(json.dumps({"draws": "draws/plain.json", "trials": 2}))
    done = winopt("submit", str(job), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert spool_names(spool) == {done.stdout.strip() + ".json"}
    assert "-ok-" in done.stdout
    config.write_text(f'state_dir = "{state}"\n')  # no allowed_draws_dirs: STATE/draws only
    done = winopt("submit", str(job), "--config", str(config))
    assert done.returncode == 2 and f"is not under an allowed draws directory ({state / 'draws'})" in done.stderr
