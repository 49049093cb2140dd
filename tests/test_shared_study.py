"""Several workers, one study in a real PostgreSQL (SPEC §7, issue 15): exactly N trials
with racing workers, a worker killed or stopped mid-trial, the database restarted under
them, the head node's publisher killed; every scenario ends with `Shared.assert_sound`."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState

from polling import wait_for
import shared_support
from shared_support import GRACE, Shared

pg_cluster = shared_support.pg_cluster  # the session's PostgreSQL (a fixture)


@pytest.fixture
def shared(request, pg_cluster, tmp_path: Path):
    params = getattr(request, "param", {})
    s = Shared(pg_cluster, tmp_path, trials=params.get("trials", 16),
               seed_count=params.get("seed_count", 20_000))
    yield s
    s.cleanup()


@pytest.mark.parametrize("shared", [{"trials": 16, "seed_count": 100_000}], indirect=True)
def test_four_racing_workers_finish_exactly_n(shared: Shared) -> None:
    """Tiny trials make the workers race for the last slots: never more than N finish."""
    head = shared.start_study()
    shared.wait_open()
    shared.sample_counts()
    workers = [shared.start_worker() for _ in range(4)]
    for w in workers:
        assert w.wait(timeout=120) == 0
    assert head.wait(timeout=60) == 0
    shared.stop_sampling()
    config = shared.assert_sound()
    assert sum("told" in p.read_text() for p in shared.worker_logs) >= 2, "no race happened"
    assert config["survivors_sha256"]


@pytest.mark.parametrize("shared", [{"trials": 12, "seed_count": 1_200_000}], indirect=True)
def test_worker_killed_and_worker_stopped_mid_trial(shared: Shared) -> None:
    """kill -9 of one worker mid-trial; SIGSTOP of another past the grace period, then
    SIGCONT: both trials are failed by the others and retried; the stopped worker's late
    result is refused by the storage and dropped. A SIGTERMed worker fails its own trial
    at once; that one is retried too."""
    head = shared.start_study()
    shared.wait_open()
    shared.sample_counts()
    victim, sleeper, steady, polite = (shared.start_worker() for _ in range(4))
    killed = wait_for(lambda: shared.running_trial_of(shared.worker_logs[0]), 60,
                      "worker 0 to be mid-trial")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    # a worker stopped cleanly (systemctl stop) fails its trial at once and queues the retry
    termed = wait_for(lambda: shared.running_trial_of(shared.worker_logs[3]), 90,
                      "worker 3 to be mid-trial")
    polite.send_signal(signal.SIGTERM)
    assert polite.wait(timeout=30) == 0

    def state(number: int) -> TrialState | None:
        return next((t.state for t in shared.trials_now() if t.number == number), None)

    def failed(number: int) -> bool:
        return state(number) == TrialState.FAIL

    def stop_mid_trial() -> int | None:
        """SIGSTOP worker 1 while the storage has its trial running (else let it go on)."""
        number = shared.running_trial_of(shared.worker_logs[1])
        if number is None:
            return None
        os.kill(sleeper.pid, signal.SIGSTOP)
        # still running, or already failed as stale while this look took its time
        if (state(number) in (TrialState.RUNNING, TrialState.FAIL)
                and shared.running_trial_of(shared.worker_logs[1]) == number):
            return number
        os.kill(sleeper.pid, signal.SIGCONT)  # it finished meanwhile: try the next one
        return None

    stopped = wait_for(stop_mid_trial, 90, "worker 1 stopped mid-trial")

    wait_for(lambda: failed(killed) and failed(stopped), 4 * GRACE + 30,
             f"trials {killed} and {stopped} to be failed as stale")
    os.kill(sleeper.pid, signal.SIGCONT)
    # failed at once, unless its sieve had just ended when the signal came: then told
    assert state(termed) == TrialState.FAIL or f"trial {termed} told" in shared.worker_logs[3].read_text()
    assert steady.wait(timeout=180) == 0
    assert sleeper.wait(timeout=120) == 0
    assert head.wait(timeout=60) == 0
    shared.stop_sampling()
    shared.assert_sound()
    text = shared.worker_logs[1].read_text()
    assert f"trial {stopped} was already finished by another worker" in text, text[-2000:]


@pytest.mark.parametrize("shared", [{"trials": 8, "seed_count": 1_500_000}], indirect=True)
def test_database_restart_mid_run(shared: Shared) -> None:
    """PostgreSQL stopped and started under two working workers and the head: nobody
    exits; the heartbeat thread of a running trial fails and beats on (Optuna's own dies at
    its first storage error); no trial is lost to the outage (a grace period longer than
    it); the study ends with exactly N."""
    head = shared.start_study()
    shared.wait_open()
    shared.sample_counts()
    workers = [shared.start_worker("--grace-period", "60") for _ in range(2)]
    wait_for(lambda: 1 <= sum(t.state == TrialState.COMPLETE or t.state == TrialState.PRUNED
                              for t in shared.trials_now()), 90, "a finished trial")
    wait_for(lambda: any(shared.running_trial_of(p) is not None for p in shared.worker_logs), 60,
             "a worker mid-trial")
    shared.cluster.stop()

    def text() -> str:
        return "".join(p.read_text() for p in shared.worker_logs)

    def beat_on_twice() -> bool:
        failures = re.findall(r"heartbeat of trial (\d+) failed .*; beating on", text())
        return any(failures.count(n) >= 2 for n in failures)

    try:
        wait_for(lambda: "database unreachable" in text() or "beating on" in text(), 60,
                 "a worker to notice the database is gone")
        # one heartbeat thread failing twice has survived its first error (or no trial runs)
        wait_for(lambda: beat_on_twice() or all(shared.running_trial_of(p) is None
                                                for p in shared.worker_logs), 30,
                 "a heartbeat failing twice (or no trial running any more)")
    finally:
        shared.cluster.start()
    for w in workers:
        assert w.wait(timeout=180) == 0
    assert head.wait(timeout=60) == 0
    shared.stop_sampling()
    shared.assert_sound()
    assert not [t.number for t in shared.trials_now() if t.state == TrialState.FAIL]
    assert "heartbeat" not in text() or "beating on" in text()


@pytest.mark.parametrize("shared", [{"trials": 12, "seed_count": 400_000}], indirect=True)
def test_head_publisher_killed_and_restarted(shared: Shared) -> None:
    """kill -9 of `winopt study` mid-run: the workers go on; started again, it rebuilds the
    snapshot from the storage, and counts never went down."""
    head = shared.start_study()
    shared.wait_open()
    shared.sample_counts()
    workers = [shared.start_worker() for _ in range(2)]
    wait_for(lambda: (c := shared.counts) and c[-1] >= 3, 90, "three trials published")
    os.kill(head.pid, signal.SIGKILL)
    head.wait()
    (shared.out / "bidirectional_survivors.json").unlink()  # lost with the head: rebuilt
    for artifact in shared.artifacts.iterdir():  # and damaged uploads: re-sieved, not trusted
        artifact.write_bytes(b"not zlib")
    head = shared.start_study("study2.log")
    for w in workers:
        assert w.wait(timeout=180) == 0
    assert head.wait(timeout=60) == 0
    shared.stop_sampling()
    shared.assert_sound()


def test_a_wrong_database_is_one_line_not_a_wait(pg_cluster) -> None:
    """Waiting cures a server that is down, not a database that does not exist: that is an
    error at once, one line naming the storage (without a password)."""
    import subprocess

    from optimize_support import subprocess_env, winopt_cmd

    url = pg_cluster.url("no_such_db").replace("postgres@", "postgres:s3cret@")
    proc = subprocess.run(winopt_cmd("worker", "--storage", url, "--once"), env=subprocess_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert 'database "no_such_db" does not exist' in proc.stderr and "s3cret" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_stopped_workers_open_transaction_blocks_no_one_for_long(pg_cluster) -> None:
    """A worker stopped between two statements of one of Optuna's transactions (SIGSTOP, a
    hung rig) holds its trial's and its study's row locks; without a limit every other
    worker's sweep and ask waited on them until it woke (a chaos run timed out so). Its
    session ends after IDLE_TX_LIMIT: the others fail its trial and ask a new one."""
    import threading
    import time
    import warnings

    import optuna
    import sqlalchemy

    from winopt.optimizer.shared_storage import IDLE_TX_LIMIT, open_storage
    from winopt.optimizer.shared_study import claim_trial

    url = pg_cluster.new_database()
    stopped = open_storage(url, heartbeat_interval=1, grace_period=2)
    other = open_storage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=stopped, study_name="s", direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with optimize"
        trial = study.ask()
    stopped.record_heartbeat(trial._trial_id)
    conn = stopped.engine.connect()  # mid-transaction, as a stopped process leaves it
    conn.execute(sqlalchemy.text("SELECT 1 FROM trials WHERE trial_id = :t FOR UPDATE"),
                 {"t": trial._trial_id})
    conn.execute(sqlalchemy.text("SELECT 1 FROM studies WHERE study_id = :s FOR UPDATE"),
                 {"s": study._study_id})
    wait_for(lambda: trial._trial_id in other._get_stale_trial_ids(study._study_id), 30,
             "the stopped worker's trial to go stale")
    claimed: list[object] = []
    start = time.monotonic()
    claimer = threading.Thread(target=lambda: claimed.append(claim_trial(
        optuna.load_study(study_name="s", storage=other), other, 5)), daemon=True)
    claimer.start()
    claimer.join(IDLE_TX_LIMIT + 30)
    try:
        assert claimed and claimed[0] is not None, "the other worker is still blocked"
        assert time.monotonic() - start < IDLE_TX_LIMIT + 30
        assert other.get_trial(trial._trial_id).state == TrialState.FAIL
        with pytest.raises(sqlalchemy.exc.OperationalError):  # its session was ended
            conn.execute(sqlalchemy.text("SELECT 1"))
    finally:
        conn.invalidate()
        conn.close()
        stopped.engine.dispose()
        other.engine.dispose()


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("shared", [{"trials": 24, "seed_count": 500_000}], indirect=True)
def test_chaos_kills_stops_and_a_database_restart(shared: Shared, seed: int) -> None:
    """Four workers; at random moments a worker is killed (and a new one started), one is
    stopped past the grace period and let go, the database restarts, and the publisher is
    killed and started again: still exactly N, every failure retried, counts monotonic."""
    import random

    rng = random.Random(seed)
    head = shared.start_study()
    shared.wait_open()
    shared.sample_counts()
    workers = [shared.start_worker() for _ in range(4)]

    def finished() -> int:
        return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in shared.trials_now())

    events = ["kill", "kill", "stop", "db", "head"]
    rng.shuffle(events)
    for i, event in enumerate(events):
        wait_for(lambda: finished() >= 2 + 3 * i, 180, f"{2 + 3 * i} finished trials")
        if event == "kill":
            alive = [w for w in workers if w.poll() is None]
            victim = rng.choice(alive)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            workers.append(shared.start_worker())
        elif event == "stop":
            alive = [w for w in workers if w.poll() is None]
            sleeper = rng.choice(alive)
            os.kill(sleeper.pid, signal.SIGSTOP)
            running = {t.number for t in shared.trials_now() if t.state == TrialState.RUNNING}
            # past the grace period: a trial it held is failed by the others (or none ran)
            wait_for(lambda: not (running & {t.number for t in shared.trials_now()
                                             if t.state == TrialState.RUNNING})
                     or finished() >= shared.trials, 4 * GRACE + 60, "its trial failed as stale")
            os.kill(sleeper.pid, signal.SIGCONT)
        elif event == "db":
            shared.cluster.stop()
            shared.cluster.start()
        else:
            os.kill(head.pid, signal.SIGKILL)
            head.wait()
            head = shared.start_study(f"study{i}.log")
    for w in workers:
        if w.returncode is None or w.returncode != -signal.SIGKILL:
            assert w.wait(timeout=300) == 0
    assert head.wait(timeout=120) == 0
    shared.stop_sampling()
    shared.assert_sound()
