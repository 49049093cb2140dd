"""Issue 11, finding 7: faults end in a known state. A job whose optimizer failed on a full
disk, or whose exit could not be recorded, is retried once the disk has room (at most
`max_fault_retries` times in a row, with backoff); a job left `running` with no process
is resumed by the next reconcile, not at the next restart.

The disk is real: a tmpfs of a few MB mounted over the state dir (tests/mount_support.py;
skipped where mounting is not possible), filled to its last byte by a filler file while
jobs run, and given back by deleting it. The runner's cases use the stand-in optimizer
(tests/jobs_support.py); the replay of the finding runs real `winopt optimize` children
under a real daemon."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from daemon_support import DaemonProcess
from jobs_support import STANDIN, standin_command, toml_job, wait_for, write_plain_history
from mount_support import fill, small_tmpfs
from optimize_support import MOD, write_history
from winopt.handlers.jobs.runner import JobRunner, disk_full, runs_job, terminate
from winopt.handlers.jobs.store import JobStore
from winopt.handlers.jobs.spool import JobEvent, Spool

#: the stand-in optimizer, failing its first FAILS runs (a file counts them) the way the
#: real one does when SQLite finds the disk full
FAILING_STANDIN = STANDIN.replace(
    'if "--fail" in args:',
    '''fails = int(os.environ.get("FAILS", "0"))
count = os.path.join(out, "fails.count")
done_fails = int(open(count).read()) if os.path.exists(count) else 0
if done_fails < fails:
    open(count, "w").write(str(done_fails + 1))
    print("winopt: error: optimize failed: OperationalError: (sqlite3.OperationalError) "
          "database or disk is full", file=sys.stderr, flush=True)
    sys.exit(1)
if "--fail" in args:''')


def accept_one(spool: Spool, trials: int) -> str:
    path = spool.dir / "j.toml"
    path.write_text(toml_job(draws="plain.json", trials=trials))
    os.utime(path, (time.time() - 100, time.time() - 100))
    (record,) = spool.scan().accepted
    return record.id


def make_spool(root: Path, state: Path) -> Spool:
    draws = root / "draws"
    draws.mkdir(exist_ok=True)
    write_plain_history(draws / "plain.json", 200)
    spool = Spool(state, allowed_draws_dirs=[draws], grace=0)
    spool.ensure_layout()
    return spool


@pytest.mark.parametrize(("fails", "state", "attempts"), [(2, "complete", 3), (5, "failed", 4)])
def test_a_job_that_failed_on_a_full_disk_is_retried_with_a_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: int, state: str, attempts: int
) -> None:
    """Before: marked `failed` for good at the first `database or disk is full`."""
    script = tmp_path / "standin.py"
    script.write_text(FAILING_STANDIN)
    monkeypatch.setenv("FAILS", str(fails))
    spool = make_spool(tmp_path, tmp_path / "state")
    job_id = accept_one(spool, trials=3)
    events: list[JobEvent] = []
    runner = JobRunner(spool.store, command=standin_command(script), on_event=events.append)
    runner.fault_retry_base = 0.05
    runner.start()
    assert runner.wait_idle(60)
    record = spool.store.load(job_id)
    assert (record.state, record.attempts) == (state, attempts), record.history
    retries = [e.reason for e in events if e.kind == "retrying"]
    assert len(retries) == 3 if state == "failed" else len(retries) == fails, retries
    assert "database or disk is full; on a full disk: retry 1 of 3 once there is room" in retries[0]
    if state == "failed":
        assert record.error.endswith("(a full disk, 4 times in a row)"), record.error
    else:
        assert record.fault_retries == 0  # a success ends the run of faults


def test_an_exit_that_could_not_be_recorded_is_retried_once_there_is_room(tmp_path: Path) -> None:
    """A real full disk: the optimizer dies on it, and so does the write of its exit
    into state.json. Before: `could not record its exit`, the job `running` with no
    process until the next daemon start."""
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)
    with small_tmpfs(tmp_path / "state", "2m") as state:
        spool = make_spool(tmp_path, state)
        job_id = accept_one(spool, trials=400)
        runner = JobRunner(spool.store, command=standin_command(script, delay=0.02))
        runner.fault_retry_base = 0.2
        runner.start()
        job_dir = spool.store.dir(job_id)
        wait_for(lambda: (job_dir / "optimal_window_config.json").exists(), 30, "the first snapshot")
        filler = fill(state)
        wait_for(lambda: not runner.running(), 30, "the stand-in to die on the full disk")
        record = spool.store.load(job_id)
        assert record.state == "running" and not runner.running(), record.history  # as the finding saw it
        filler.unlink()
        assert runner.wait_idle(60), "the job was not retried once the disk had room"
        record = spool.store.load(job_id)
        assert record.state == "complete" and record.attempts == 2, record.history
        runner.stop()


def test_a_running_job_with_no_process_is_resumed_by_resume_lost(tmp_path: Path) -> None:
    """Whatever left it so (an exit not recorded), a reconcile resumes such a job."""
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)
    spool = make_spool(tmp_path, tmp_path / "state")
    runner = JobRunner(spool.store, command=standin_command(script))
    runner.start()
    job_id = accept_one(spool, trials=2)
    spool.store.transition(job_id, "running", "started: attempt 1, pid 99999999", attempts=1)
    assert runner.resume_lost() == [job_id]
    assert runner.resume_lost() == []  # queued or running now: known
    assert runner.wait_idle(60)
    assert spool.store.load(job_id).state == "complete"
    runner.stop()


def test_disk_full_is_recognised_by_errno_and_by_message() -> None:
    assert disk_full(OSError(28, "No space left on device"))
    assert disk_full(OSError(122, "Disk quota exceeded"))
    assert disk_full("exit code 1: OperationalError: (sqlite3.OperationalError) database or disk is full")
    assert not disk_full("exit code 1: no survivors") and not disk_full(None)


# ---------------------------------------------------------------- the finding, replayed


@pytest.mark.stress  # the default pass's slowest test (about 25 s): three real jobs at once
def test_jobs_on_a_full_state_disk_all_complete_once_there_is_room(tmp_path: Path) -> None:
    """Three real `winopt optimize` jobs under a real daemon, the state dir (a tmpfs)
    filled while they run: each ends `complete` once the space is back, without a
    restart. Before: two `failed` for good (`database or disk is full`), one `running`
    with no process through every reconcile until a restart."""
    draws = tmp_path / "draws"
    draws.mkdir()
    write_history(draws / "h.json")
    config = tmp_path / "daemon.toml"
    config.write_text(f'debounce = 0.1\nreconcile_interval = 1\n[jobs]\nmax_parallel_jobs = 3\n'
                      f'allowed_draws_dirs = ["{draws}"]\ngrace = 0.5\nstop_timeout = 20\n')
    job = toml_job(draws="h.json", trials=120, mod=MOD, seed_count=3000, strategy="random", window_size=[2, 5],
                   offset=[0, 30], skip_min=[0, 2], skip_max=[3, 8], forward_threshold=[0.2, 0.5],
                   reverse_threshold=[0.2, 0.5])
    with small_tmpfs(tmp_path / "state", "48m") as state:
        d = DaemonProcess(state, [], args=["--config", str(config)], env={"WINOPT_DEVICE": "cpu"})
        try:
            d.start()
            for i in range(3):
                (state / "spool" / f".j{i}.tmp").write_text(job)
                (state / "spool" / f".j{i}.tmp").rename(state / "spool" / f"j{i}.toml")
            store = JobStore(state / "jobs")

            def trials_done() -> list[int]:
                return [_completed(store.dir(r.id)) for r in store.jobs()]

            wait_for(lambda: len(trials_done()) == 3 and min(trials_done()) >= 3, 120, "three jobs under way")
            filler = fill(state)
            wait_for(lambda: not _optimizers(state), 60, "the optimizers to die on the full disk")
            refill = fill(state, "refill")  # what their deaths freed: the disk stays full
            assert not [r.id for r in store.jobs() if r.terminal], [r.history for r in store.jobs()]
            reconciles = d.log().count("reconcile (timer)")
            # past the first retry (5 s): it must find no room and wait, not start and fail
            wait_for(lambda: d.log().count("reconcile (timer)") >= reconciles + 8, 60, "eight reconciles")
            assert not [r.id for r in store.jobs() if r.terminal], [r.history for r in store.jobs()]
            assert not _optimizers(state)  # every job waits for room, none fails for good
            filler.unlink()
            refill.unlink()
            wait_for(lambda: all(r.state == "complete" for r in store.jobs()), 120,
                     f"every job complete:\n{d.log()[-4000:]}")
            assert all(_completed(store.dir(r.id)) == 120 for r in store.jobs())
            assert d.alive()
            assert d.stop(timeout=60) == 0
        finally:
            d.kill()
            terminate([pid for pid in _optimizers(state)], 10)


def _completed(job_dir: Path) -> int:
    try:
        return int(json.loads((job_dir / "optimal_window_config.json").read_text())["completed_trials"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _optimizers(state: Path) -> list[int]:
    jobs = state / "jobs"
    dirs = [p for p in jobs.iterdir() if p.is_dir()] if jobs.is_dir() else []
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and any(runs_job(int(p), j) for j in dirs)]
