"""Crash and signal endings of `winopt optimize` as real subprocesses, and resume after them.

No sleep synchronises anything here: progress is observed by polling the snapshot with a
deadline. The one sleep is the random delay that puts the kill -9 at a random moment of a
trial (inside the sieve, a publish, an SQLite commit ...).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from winopt.cli import main
from winopt.contracts import sha256_file
from winopt.contracts.schemas import CONFIG_NAME, SURVIVORS_NAME
from winopt.optimizer.study import default_storage_url

from optimize_support import (
    optimize_argv,
    read_config,
    read_config_or_none,
    reference_survivors,
    subprocess_env,
    wait_for,
    winopt_cmd,
    write_history,
)

TRIALS = 12
START_TIMEOUT = 90  # interpreter start, imports and the first trial on a busy 2-core box


@pytest.fixture
def draws(tmp_path: Path) -> Path:
    return write_history(tmp_path / "draws.json")


def start(draws: Path, out: Path, trials: int, log: Path, *,
          nohup: bool = False) -> subprocess.Popen[bytes]:
    """`nohup`: start it under nohup(1), which ignores SIGHUP and execs the command."""
    argv = winopt_cmd(*optimize_argv(draws, out, trials))
    with open(log, "ab") as sink:
        return subprocess.Popen(["nohup", *argv] if nohup else argv,
                                stdout=sink, stderr=sink, env=subprocess_env())


def wait_for_trials(proc: subprocess.Popen[bytes], out: Path, n: int, log: Path) -> dict:
    """Poll until the snapshot shows `n` finished trials; the process must still run."""
    def reached():
        if proc.poll() is not None:
            raise AssertionError(f"optimize exited {proc.returncode} early:\n{log.read_text()}")
        config = read_config_or_none(out)
        return config if config and config["completed_trials"] >= n else None
    return wait_for(reached, START_TIMEOUT, f"{n} finished trials in {out}")


def assert_consistent(out: Path) -> dict:
    """A snapshot that parses and names survivors that are on disk, byte for byte."""
    config = read_config(out)
    if config["survivors_sha256"] is not None:
        assert sha256_file(out / SURVIVORS_NAME) == config["survivors_sha256"]
    return config


def complete_trials(out: Path) -> int:
    storage = default_storage_url(out)
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    return len(study.get_trials(states=(TrialState.COMPLETE,)))


def resume_to_completion(draws: Path, out: Path, trials: int, log: Path) -> dict:
    with open(log, "ab") as sink:
        rc = subprocess.run(winopt_cmd(*optimize_argv(draws, out, trials)), stdout=sink,
                            stderr=sink, env=subprocess_env(), timeout=300).returncode
    assert rc == 0, log.read_text()
    config = assert_consistent(out)
    assert config["status"] == "complete" and config["completed_at"] is not None
    assert config["completed_trials"] == trials
    assert complete_trials(out) == trials
    assert (out / SURVIVORS_NAME).read_bytes() == reference_survivors(config, draws)
    return config


def kill9_at_random(draws: Path, out: Path, log: Path, rng: random.Random) -> dict:
    """Start a run, SIGKILL it at a random moment after a random number of trials, and
    return the snapshot it left (always consistent with its survivors)."""
    proc = start(draws, out, TRIALS, log)
    try:
        wait_for_trials(proc, out, rng.randint(1, TRIALS // 2), log)
        time.sleep(rng.uniform(0.0, 0.05))  # the random moment, not a synchronisation
    finally:
        proc.kill()
        proc.wait()
    return assert_consistent(out)


def kill9_then_resume(tmp_path: Path, draws: Path, seed: int) -> None:
    rng = random.Random(seed)
    for attempt in range(3):
        out, log = tmp_path / f"run{seed}-{attempt}", tmp_path / f"run{seed}-{attempt}.log"
        config = kill9_at_random(draws, out, log, rng)
        if config["status"] != "complete":
            break
        # a fast run may finish its last trial before the kill lands: that is a finished
        # run, not a crash, so take another random moment in a fresh directory
        assert config["completed_trials"] == TRIALS
    else:
        raise AssertionError("three kills in a row landed after the run had finished")
    assert config["status"] == "in_progress"
    assert 1 <= config["completed_trials"] < TRIALS
    assert config["survivors_sha256"] is not None
    resume_to_completion(draws, out, TRIALS, log)


@pytest.mark.parametrize("rep", range(3))
def test_kill9_at_a_random_moment_then_resume(tmp_path: Path, draws: Path, rep: int) -> None:
    kill9_then_resume(tmp_path, draws, seed=1000 + rep)


@pytest.mark.stress
@pytest.mark.parametrize("rep", range(12))
def test_kill9_stress(tmp_path: Path, draws: Path, rep: int) -> None:
    kill9_then_resume(tmp_path, draws, seed=int.from_bytes(os.urandom(4), "big"))


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_signal_mid_run_interrupts_then_resume_completes(tmp_path: Path, draws: Path,
                                                         sig: signal.Signals, code: int) -> None:
    out, log = tmp_path / "run", tmp_path / "run.log"
    trials = 8  # six trials (each ~0.1-0.4 s) still to run when the signal lands
    proc = start(draws, out, trials, log)
    try:
        wait_for_trials(proc, out, 2, log)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    config = assert_consistent(out)
    assert config["status"] == "interrupted"
    assert config["error"] == f"interrupted by {sig.name}"
    assert 2 <= config["completed_trials"] < trials
    resume_to_completion(draws, out, trials, log)


def test_sighup_under_nohup_is_ignored_and_the_run_completes(tmp_path: Path, draws: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "run.log"
    proc = start(draws, out, 4, log, nohup=True)
    try:
        wait_for_trials(proc, out, 1, log)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    config = assert_consistent(out)
    assert config["status"] == "complete" and config["completed_trials"] == 4


@pytest.mark.parametrize("damage", ["survivors replaced", "survivors missing", "config missing"])
def test_resume_repairs_survivors_that_do_not_match(tmp_path: Path, draws: Path,
                                                    damage: str) -> None:
    """What a crash between the two publishes (or a person) can leave: survivors that are
    not the best trial's. The next run re-sieves the best trial and republishes."""
    out = tmp_path / "run"
    assert main(optimize_argv(draws, out, 3)) == 0
    good = (out / SURVIVORS_NAME).read_bytes()
    if damage == "survivors replaced":
        (out / SURVIVORS_NAME).write_text("[]\n")
    elif damage == "survivors missing":
        (out / SURVIVORS_NAME).unlink()
    else:
        (out / CONFIG_NAME).unlink()
    assert main(optimize_argv(draws, out, 3)) == 0
    config = assert_consistent(out)
    assert config["status"] == "complete" and config["completed_trials"] == 3
    assert (out / SURVIVORS_NAME).read_bytes() == good
