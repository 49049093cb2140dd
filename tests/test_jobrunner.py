"""The job runner with real child processes: a stand-in optimizer (tests/jobs_support.py)
for the scheduling rules and crash cases, and the real `winopt optimize` for the contract
(complete, cancel, stop and resume with exactly its trials)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import Timeout

from jobs_support import STANDIN, standin_command, toml_job, wait_for, write_plain_history
from winopt.contracts import lock_for
from winopt.handlers.jobs.runner import JobRunner, decide_outcome
from winopt.contracts.state_dir import LOG_FILE, PID_FILE
from winopt.handlers.jobs.spool import JobEvent, Spool

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    draws = tmp_path / "draws"
    draws.mkdir()
    write_plain_history(draws / "plain.json", 200)
    spool = Spool(tmp_path / "state", allowed_draws_dirs=[draws], grace=0)
    spool.ensure_layout()
    return spool


@pytest.fixture
def standin(tmp_path: Path) -> Path:
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)
    return script


def accept(spool: Spool, *jobs: dict) -> list[str]:
    """Drop job files in this order (mtimes one second apart) and accept them."""
    base = time.time() - 100
    for i, keys in enumerate(jobs):
        path = spool.dir / f"j{i:02d}.toml"
        path.write_text(toml_job(draws="plain.json", **keys))
        os.utime(path, (base + i, base + i))
    return [r.id for r in spool.scan().accepted]


def runs(spool: Spool, job_id: str) -> list[tuple[float, float, str]]:
    """(start, end, gpu) of each stand-in run of a job, from its runs.log."""
    path = spool.store.dir(job_id) / "runs.log"
    lines = [ln.split() for ln in path.read_text().splitlines()] if path.exists() else []
    starts = [(float(t), gpu) for what, _, t, gpu in lines if what == "start"]
    ends = [float(t) for what, _, t, _ in lines if what == "end"]
    return [(s, e, gpu) for (s, gpu), e in zip(starts, ends + [float("inf")] * len(starts))]


def snapshot(spool: Spool, job_id: str) -> dict:
    try:
        return json.loads((spool.store.dir(job_id) / "optimal_window_config.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


def no_double_runs(spool: Spool, ids: list[str]) -> None:
    for job_id in ids:
        assert not (spool.store.dir(job_id) / "DOUBLE").exists(), f"two optimizers ran on {job_id}"


# ---------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(("rc", "status", "cancel", "stopping", "state"), [
    (0, "complete", False, False, "complete"),
    (0, "complete", True, True, "complete"),
    (143, "interrupted", True, False, "cancelled"),
    (-9, "in_progress", True, False, "cancelled"),
    (143, "interrupted", False, True, "running"),
    (-9, "in_progress", False, True, "running"),
    (143, "interrupted", False, False, "interrupted"),
    (0, "in_progress", False, False, "failed"),
    (1, "failed", False, False, "failed"),
    (-9, "in_progress", False, False, "failed"),
    (2, None, False, False, "failed"),
])
def test_outcome_of_each_kind_of_exit(rc: int, status: str | None, cancel: bool, stopping: bool, state: str) -> None:
    got, reason = decide_outcome(rc, status, "boom" if rc == 1 else None, cancel=cancel, stopping=stopping)
    assert got == state
    if state == "failed" and rc == 1:
        assert reason == "exit code 1: boom"
    if rc == -9 and state == "failed":
        assert reason == "killed by SIGKILL"


# ---------------------------------------------------------------------------- scheduling


def test_jobs_complete_with_at_most_max_parallel_children(spool: Spool, standin: Path) -> None:
    ids = accept(spool, *[{"trials": 4}] * 5)
    events: list[JobEvent] = []
    # 1 s per child: two started together overlap in their own logs whatever their start-up lag
    runner = JobRunner(spool.store, max_parallel_jobs=2, command=standin_command(standin, delay=0.25),
                       on_event=events.append)
    runner.start()
    assert runner.wait_idle(60)
    for job_id in ids:
        record = spool.store.load(job_id)
        assert (record.state, record.exit_code, record.attempts) == ("complete", 0, 1)
        assert snapshot(spool, job_id)["completed_trials"] == 4
        assert not (spool.store.dir(job_id) / PID_FILE).exists()
        log = (spool.store.dir(job_id) / LOG_FILE).read_text()
        assert log.startswith("=== ") and "started attempt 1" in log and "stand-in optimizer" in log
    intervals = [(s, e) for job_id in ids for s, e, _ in runs(spool, job_id)]
    assert len(intervals) == 5 and max_overlap(intervals) == 2
    kinds = [e.kind for e in events]
    assert kinds.count("started") == 5 and kinds.count("complete") == 5


def test_higher_priority_first_then_first_in_first_out(spool: Spool, standin: Path) -> None:
    ids = accept(spool, {"trials": 1}, {"trials": 1}, {"trials": 1, "priority": 5},
                 {"trials": 1, "priority": -1}, {"trials": 1})
    runner = JobRunner(spool.store, max_parallel_jobs=1, command=standin_command(standin, delay=0.01))
    runner.start()
    assert runner.wait_idle(60)
    order = sorted(ids, key=lambda job_id: runs(spool, job_id)[0][0])
    assert order == [ids[2], ids[0], ids[1], ids[4], ids[3]]


def test_one_job_per_gpu(spool: Spool, standin: Path) -> None:
    ids = accept(spool, *[{"trials": 3}] * 4)
    runner = JobRunner(spool.store, max_parallel_jobs=8, gpus=[0, "1"],
                       command=standin_command(standin, delay=0.3))  # overlap whatever the start-up lag
    runner.start()
    assert runner.wait_idle(60)
    spans = [run for job_id in ids for run in runs(spool, job_id)]
    assert {gpu for _, _, gpu in spans} == {"0", "1"}
    for gpu in ("0", "1"):
        assert max_overlap([(s, e) for s, e, g in spans if g == gpu]) == 1
    assert max_overlap([(s, e) for s, e, _ in spans]) == 2


def test_a_rigs_job_takes_no_slot_and_no_gpu(spool: Spool, standin: Path) -> None:
    """A `workers = "rigs"` job's child only publishes what the workers do: it runs beside
    the local jobs without a GPU, and the local jobs keep the one slot and GPU."""
    ids = accept(spool, {"trials": 20}, {"trials": 20, "workers": "rigs"}, {"trials": 20, "workers": "rigs"},
                 {"trials": 3})
    runner = JobRunner(spool.store, max_parallel_jobs=1, gpus=[0], command=standin_command(standin))
    runner.start()
    assert runner.wait_idle(60)
    spans = {job_id: runs(spool, job_id) for job_id in ids}
    assert [gpu for _, _, gpu in spans[ids[0]] + spans[ids[3]]] == ["0", "0"]
    assert {gpu for job_id in ids[1:3] for _, _, gpu in spans[job_id]} == {"-"}
    first = spans[ids[0]][0]
    # beside it: started before it ended (the children start milliseconds apart, in any order)
    assert all(s < first[1] for job_id in ids[1:3] for s, _, _ in spans[job_id])
    assert max_overlap([(s, e) for job_id in (ids[0], ids[3]) for s, e, _ in spans[job_id]]) == 1


def test_the_child_environment_is_the_jobs_not_the_daemons(spool: Spool, tmp_path: Path) -> None:
    (job_id,) = accept(spool, {"trials": 1})
    dump = ("import json, os, sys; out = sys.argv[2]; json.dump(dict(os.environ), open(out + '/env.json', 'w'));"
            "json.dump({'status': 'complete'}, open(out + '/optimal_window_config.json', 'w'))")

    def command(record, job_dir: Path) -> list[str]:
        return [sys.executable, "-c", dump, "--out", str(job_dir)]

    env = {**os.environ, "NOTIFY_SOCKET": "@winopt-test", "WATCHDOG_USEC": "1000", "JOURNAL_STREAM": "8:1"}
    runner = JobRunner(spool.store, command=command, env=env, gpus=["GPU-abc"])
    runner.start()
    assert runner.wait_idle(30)
    child_env = json.loads((spool.store.dir(job_id) / "env.json").read_text())
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"} & child_env.keys()
    assert child_env["WINOPT_JOB_ID"] == job_id and child_env["CUDA_VISIBLE_DEVICES"] == "GPU-abc"
    assert spool.store.load(job_id).state == "complete"


# ---------------------------------------------------------------------------- outcomes


def test_a_failing_child_fails_its_job_with_the_reason(spool: Spool, standin: Path) -> None:
    (job_id,) = accept(spool, {"trials": 2})
    runner = JobRunner(spool.store, command=standin_command(standin, fail=True))
    runner.start()
    assert runner.wait_idle(30)
    record = spool.store.load(job_id)
    assert (record.state, record.exit_code) == ("failed", 1)
    assert record.error == "exit code 1: stand-in failure on purpose"


def test_cancel_a_queued_and_a_running_job(spool: Spool, standin: Path) -> None:
    running, queued = accept(spool, {"trials": 500}, {"trials": 1})
    events: list[JobEvent] = []
    runner = JobRunner(spool.store, command=standin_command(standin), on_event=events.append)
    runner.start()
    wait_for(lambda: snapshot(spool, running).get("completed_trials", 0) >= 1, 30, "the first trial")
    assert runner.queued() == [queued]
    runner.cancel(queued)
    assert spool.store.load(queued).state == "cancelled"
    (spool.dir / f"{running}.cancel").write_text("")  # the other one through the spool
    runner.handle_scan(spool.scan())
    assert runner.wait_idle(30)
    record = spool.store.load(running)
    assert (record.state, record.exit_code) == ("cancelled", 143)
    assert snapshot(spool, running)["status"] == "interrupted"
    assert not runs(spool, queued), "the cancelled queued job ran"
    assert [e.kind for e in events if e.job_id == running][-2:] == ["cancel_requested", "cancelled"]


def test_a_sigterm_from_outside_is_resumed(spool: Spool, standin: Path) -> None:
    """`systemctl stop` signals the whole cgroup: a child may get SIGTERM before the daemon
    does. That is an interruption, not a failure: the job resumes."""
    (job_id,) = accept(spool, {"trials": 20})
    events: list[JobEvent] = []
    runner = JobRunner(spool.store, command=standin_command(standin), on_event=events.append, restart_delay=0.1)
    runner.start()
    wait_for(lambda: snapshot(spool, job_id).get("completed_trials", 0) >= 2, 30, "two trials")
    os.kill(runner.running()[job_id], signal.SIGTERM)
    assert runner.wait_idle(60)
    record = spool.store.load(job_id)
    assert (record.state, record.attempts, record.interrupts) == ("complete", 2, 0)
    assert snapshot(spool, job_id)["completed_trials"] == 20
    assert [e.kind for e in events] == ["started", "interrupted", "resumed", "complete"]


# ---------------------------------------------------------------------------- stops and crashes


def test_stop_leaves_jobs_running_and_the_next_start_resumes_them(spool: Spool, standin: Path) -> None:
    ids = accept(spool, {"trials": 30}, {"trials": 30}, {"trials": 5})
    first = JobRunner(spool.store, max_parallel_jobs=2, command=standin_command(standin))
    first.start()
    wait_for(lambda: all(snapshot(spool, i).get("completed_trials", 0) >= 2 for i in ids[:2]), 30, "progress")
    first.stop(timeout=30)
    assert [spool.store.load(i).state for i in ids] == ["running", "running", "queued"]
    assert [snapshot(spool, i)["status"] for i in ids[:2]] == ["interrupted"] * 2
    assert not any((spool.store.dir(i) / PID_FILE).exists() for i in ids)

    events: list[JobEvent] = []
    second = JobRunner(spool.store, max_parallel_jobs=2, command=standin_command(standin), on_event=events.append)
    second.start()
    assert second.wait_idle(60)
    assert [e.kind for e in events[:2]] == ["resumed", "resumed"]
    for job_id, trials in zip(ids, (30, 30, 5)):
        assert spool.store.load(job_id).state == "complete"
        assert snapshot(spool, job_id)["completed_trials"] == trials
    assert [len(runs(spool, i)) for i in ids] == [2, 2, 1]
    no_double_runs(spool, ids)


SUPERVISOR = """
import signal, sys
from pathlib import Path
from jobs_support import standin_command
from winopt.handlers.jobs.runner import JobRunner
from winopt.handlers.jobs.store import JobStore
runner = JobRunner(JobStore(sys.argv[1]), max_parallel_jobs=int(sys.argv[3]),
                   command=standin_command(Path(sys.argv[2]), delay=float(sys.argv[4])))
runner.start()
print("started", flush=True)
signal.pause()
"""


def kill_supervisor_then_restart(spool: Spool, standin: Path, jobs: int, parallel: int, delay: float) -> None:
    """Run the runner in a process, kill -9 it while its children work, start a new runner
    here: the orphans are found and stopped (their lock proves they run), every job ends
    complete with exactly its trials, and no job ever had two optimizers."""
    trials = max(25, round(2.0 / delay))  # about 2 s a job: an orphan outlives the checks below
    ids = accept(spool, *[{"trials": trials}] * jobs)
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(spool.store.root), str(standin),
                             str(parallel), str(delay)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(TESTS)})
    try:
        assert proc.stdout.readline().strip() == "started"
        active = ids[:parallel]
        wait_for(lambda: all(snapshot(spool, i).get("completed_trials", 0) >= 2 for i in active), 30, "progress")
    finally:
        proc.kill()
        proc.wait()
    orphans = [json.loads((spool.store.dir(i) / PID_FILE).read_text())["pid"] for i in active]
    for pid in orphans:
        os.kill(pid, 0)  # still running without their supervisor
    (spool.store.dir(active[0]) / PID_FILE).unlink()  # as if killed before writing it: /proc finds it
    with pytest.raises(Timeout):
        lock_for(spool.store.dir(active[0]) / PID_FILE, timeout=0).acquire()

    events: list[JobEvent] = []
    runner = JobRunner(spool.store, max_parallel_jobs=parallel, command=standin_command(standin, delay),
                       on_event=events.append)
    runner.start()
    assert runner.wait_idle(90)
    assert sum(e.kind == "orphan_stopped" for e in events) == parallel
    for job_id in ids:
        assert spool.store.load(job_id).state == "complete"
        assert snapshot(spool, job_id)["completed_trials"] == trials
        spans = [(s, e) for s, e, _ in runs(spool, job_id)]
        assert max_overlap(spans) == 1
    no_double_runs(spool, ids)


def test_kill_9_of_the_supervisor_orphans_are_stopped_and_resumed(spool: Spool, standin: Path) -> None:
    kill_supervisor_then_restart(spool, standin, jobs=3, parallel=2, delay=0.05)


@pytest.mark.stress
@pytest.mark.parametrize("round_", range(5))
def test_kill_9_of_the_supervisor_repeatedly(spool: Spool, standin: Path, round_: int) -> None:
    kill_supervisor_then_restart(spool, standin, jobs=6, parallel=3, delay=0.02 * (1 + round_))


# ---------------------------------------------------------------------------- the real optimizer


def real_job(**keys) -> dict:
    """A fast real run: the optimizer tests' small-mod history, search space, few seeds."""
    from optimize_support import MOD

    return {"mod": MOD, "seed_count": 2000, "strategy": "random", "window_size": [2, 6],
            "offset": [0, 40], "skip_min": [0, 3], "skip_max": [3, 12],
            "forward_threshold": [0.2, 0.5], "reverse_threshold": [0.2, 0.5], **keys}


@pytest.fixture
def real_spool(tmp_path: Path) -> Spool:
    from optimize_support import write_history

    draws = tmp_path / "draws"
    draws.mkdir()
    write_history(draws / "plain.json")
    spool = Spool(tmp_path / "state", allowed_draws_dirs=[draws], grace=0)
    spool.ensure_layout()
    return spool


def real_runner(spool: Spool, **kw) -> JobRunner:
    return JobRunner(spool.store, env={**os.environ, "WINOPT_DEVICE": "cpu"}, stop_timeout=60, **kw)


def test_real_optimizer_runs_cancels_and_resumes(real_spool: Spool) -> None:
    spool = real_spool
    # the job to resume has far more trials than the short one, so it is still running when
    # the short one ends (at 12 a fast machine sometimes finished it first)
    done, cancelled, resumed = accept(spool, real_job(trials=3), real_job(trials=5000), real_job(trials=200))
    first = real_runner(spool, max_parallel_jobs=3)
    first.start()
    wait_for(lambda: snapshot(spool, cancelled).get("completed_trials", 0) >= 1, 120, "a real trial")
    first.cancel(cancelled)
    wait_for(lambda: snapshot(spool, resumed).get("completed_trials", 0) >= 2, 120, "real progress")
    wait_for(lambda: spool.store.load(done).terminal, 120, "the short job to end")
    first.stop()
    assert spool.store.load(done).state == "complete"
    assert snapshot(spool, done)["status"] == "complete" and snapshot(spool, done)["completed_trials"] == 3
    assert spool.store.load(cancelled).state == "cancelled"
    assert snapshot(spool, cancelled)["status"] == "interrupted"
    assert spool.store.load(resumed).state == "running"
    assert snapshot(spool, resumed)["status"] == "interrupted"

    second = real_runner(spool)
    second.start()
    assert second.wait_idle(180)
    record = spool.store.load(resumed)
    assert (record.state, record.attempts) == ("complete", 2)
    snap = snapshot(spool, resumed)
    assert (snap["status"], snap["completed_trials"], snap["total_trials"]) == ("complete", 200, 200)
    assert snap["study_name"] == resumed


# ---------------------------------------------------------------------------- load

INVALID_KINDS = [  # (file name suffix, content, words its .error must hold)
    (".toml", toml_job(draws="plain.json", trials=0), "trials: must be between"),
    (".toml", toml_job(draws="plain.json", trials=2, colour="red"), "colour: unknown key"),
    (".toml", toml_job(draws="plain.json", trials=2, command="sh"), "command: a job cannot name a command"),
    (".toml", toml_job(draws="plain.json", trials=2, window_size=[9, 3]), "window_size: range [9, 3] is empty"),
    (".toml", toml_job(draws="/etc/passwd", trials=2), "draws: /etc/passwd is not under an allowed"),
    (".toml", toml_job(draws="missing.json", trials=2), "draws: "),
    (".toml", "trials = = 2\n", "not valid TOML"),
    (".toml", toml_job(draws="plain.json", trials=2, name="a/b"), "name: 'a/b' is not a name"),
    (".json", json.dumps({"draws": "plain.json", "trials": 2, "forward_threshold": 2}), "forward_threshold:"),
    (".json", "[1, 2, 3]", "expected a table of job keys"),
    (".yaml", "trials: 2\n", "not a job file"),
]


@pytest.mark.stress
def test_200_files_at_once_150_complete_exactly_once_50_rejected(spool: Spool, standin: Path) -> None:
    names: dict[str, str | None] = {}  # spool name -> the words its .error must hold (None: valid)
    for i in range(200):
        if i % 4 == 3:
            suffix, text, words = INVALID_KINDS[i % len(INVALID_KINDS)]
        else:
            suffix, text, words = ".toml", toml_job(draws="plain.json", trials=2, priority=i % 3), None
        name = f"drop{i:03d}{suffix}"
        tmp = spool.dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.rename(spool.dir / name)
        names[name] = words
    events: list[JobEvent] = []
    runner = JobRunner(spool.store, max_parallel_jobs=4, command=standin_command(standin, delay=0.01),
                       on_event=events.append)
    runner.start()
    runner.handle_scan(spool.scan(renamed=set(names)))
    assert runner.wait_idle(600)
    jobs = spool.store.jobs()
    assert sorted(r.source for r in jobs) == sorted(n for n, w in names.items() if w is None)
    for record in jobs:
        assert record.state == "complete" and record.attempts == 1
        assert len(runs(spool, record.id)) == 1 and snapshot(spool, record.id)["completed_trials"] == 2
    for name, words in names.items():
        if words is not None:
            assert words in (spool.rejected / f"{name}.error").read_text(), name
    kinds = [e.kind for e in events]
    assert (kinds.count("accepted"), kinds.count("rejected"), kinds.count("complete")) == (150, 50, 150)
    assert not [p for p in spool.dir.iterdir() if p.is_file()]
