"""`winopt optimize` end to end, in process: real SQLite studies, real files, real sieve."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from winopt.cli import main
from winopt.contracts import lock_for, sha256_file
from winopt.contracts.schemas import CONFIG_NAME, SURVIVORS_NAME
from winopt.optimizer import objective as study_module  # the trial runs the sieve there
from winopt.optimizer.study import default_storage_url

from optimize_support import optimize_argv, read_config, reference_survivors, write_history


@pytest.fixture
def draws(tmp_path: Path) -> Path:
    return write_history(tmp_path / "draws.json")


def trials_of(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = default_storage_url(out)
    name = optuna.get_all_study_names(storage)[0]
    return optuna.load_study(study_name=name, storage=storage).trials


def test_run_completes_then_resume_extends(tmp_path: Path, draws: Path) -> None:
    out = tmp_path / "run"
    assert main(optimize_argv(draws, out, 4)) == 0
    config = read_config(out)
    assert config["status"] == "complete" and config["completed_at"] is not None
    assert config["completed_trials"] == 4 and config["total_trials"] == 4
    assert config["study_name"] == "run" and config["error"] is None
    assert config["survivors_sha256"] == sha256_file(out / SURVIVORS_NAME)
    assert (out / SURVIVORS_NAME).read_bytes() == reference_survivors(config, draws)
    started = config["started_at"]

    assert main(optimize_argv(draws, out, 6)) == 0  # the same study, two more trials
    config = read_config(out)
    assert config["completed_trials"] == 6 and config["status"] == "complete"
    assert config["started_at"] == started
    assert len(trials_of(out)) == 6

    assert main(optimize_argv(draws, out, 6)) == 0  # nothing left: no new trial
    assert len(trials_of(out)) == 6
    assert read_config(out)["completed_trials"] == 6


def test_seeded_resume_does_not_replay_the_same_points(tmp_path: Path, draws: Path) -> None:
    out = tmp_path / "run"
    assert main(optimize_argv(draws, out, 3)) == 0
    assert main(optimize_argv(draws, out, 6)) == 0
    points = [tuple(sorted(t.params.items())) for t in trials_of(out)]
    assert len(set(points)) == 6


def test_resume_with_other_settings_is_refused(tmp_path: Path, draws: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(optimize_argv(draws, out, 2)) == 0
    before = (out / CONFIG_NAME).read_bytes()
    capsys.readouterr()
    assert main(optimize_argv(draws, out, 4, "--prng", "lcg32")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prng 'java_lcg' (now 'lcg32')" in err[0]
    assert (out / CONFIG_NAME).read_bytes() == before  # the complete snapshot stays


@pytest.mark.parametrize("option, value, message", [
    ("--window-size", "12:4", "low end is above the high end"),
    ("--window-size", "four", "expected an integer or LOW:HIGH"),
    ("--forward-threshold", "0:0.5", "thresholds lie in (0, 1]"),
    ("--skip-max", "1:2", "below --skip-min's upper bound"),
    ("--time-of-day", "noon", "expected a comma list of all, midday, evening"),
])
def test_bad_bounds_get_one_line(tmp_path: Path, draws: Path, capsys: pytest.CaptureFixture[str],
                                 option: str, value: str, message: str) -> None:
    out = tmp_path / "run"
    assert main([*optimize_argv(draws, out, 2), option, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and option in err[0]
    assert not (out / CONFIG_NAME).exists()


def test_bad_history_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"date": "2021-01-01", "session": "midday", "draw": 50}]')
    assert main(optimize_argv(bad, tmp_path / "run", 2)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
    assert not (tmp_path / "run").exists()  # bad input changes no file


def test_a_session_asked_for_must_exist(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    draws = tmp_path / "ints.json"
    draws.write_text(str([i % 10 for i in range(100)]))
    assert main(optimize_argv(draws, tmp_path / "run", 2, "--time-of-day", "midday")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(draws) in err[0]


def test_a_locked_directory_is_refused(tmp_path: Path, draws: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with lock_for(out / ".optimize"):
        assert main(optimize_argv(draws, out, 2)) == 2
    assert "another winopt optimize is running" in capsys.readouterr().err
    assert not (out / CONFIG_NAME).exists()


def test_fixed_parameters_and_clamped_offset_are_recorded(tmp_path: Path, draws: Path) -> None:
    """`--window-size 4 --offset 500` on a 120-draw history: the sieve clamps the offset to
    112 and the snapshot records what was used."""
    out = tmp_path / "run"
    argv = optimize_argv(draws, out, 2, "--window-size", "4", "--offset", "500",
                         "--time-of-day", "all")
    assert main(argv) == 0
    config = read_config(out)
    assert config["window_size"] == 4 and config["time_of_day"] == "all"
    assert config["offset"] == 112 and config["best_params"]["offset"] == 112
    assert "clamp" in (config["note"] or "")
    assert (out / SURVIVORS_NAME).read_bytes() == reference_survivors(config, draws)


def test_plain_int_history_searches_all_only(tmp_path: Path) -> None:
    """A plain list of ints has no sessions: the default search keeps time_of_day 'all'."""
    draws = tmp_path / "ints.json"
    draws.write_text(str([i % 10 for i in range(0, 1000, 9)]))
    out = tmp_path / "run"
    assert main(optimize_argv(draws, out, 2)) == 0
    assert {t.params["time_of_day"] for t in trials_of(out)} == {"all"}


def test_trials_left_running_are_failed_and_not_counted(tmp_path: Path, draws: Path) -> None:
    out = tmp_path / "run"
    assert main(optimize_argv(draws, out, 2)) == 0
    study = optuna.load_study(study_name="run", storage=default_storage_url(out))
    orphan = study.ask()  # what a kill -9 mid-trial leaves behind
    assert main(optimize_argv(draws, out, 4)) == 0
    states = {t.number: t.state for t in trials_of(out)}
    assert states[orphan.number] == TrialState.FAIL
    assert sum(s == TrialState.COMPLETE for s in states.values()) == 4
    assert read_config(out)["completed_trials"] == 4


def test_uncaught_error_ends_failed_then_resume_completes(
        tmp_path: Path, draws: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A fault injected into the third sieve call: status failed with the error text, exit 1,
    one line on stderr; the same command then completes the study."""
    out = tmp_path / "run"
    real = study_module.run_sieve
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("GPU fell off the bus")
        return real(*args, **kwargs)

    monkeypatch.setattr(study_module, "run_sieve", flaky)
    assert main(optimize_argv(draws, out, 5)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("winopt: error: optimize failed: RuntimeError: GPU fell off")
    config = read_config(out)
    assert config["status"] == "failed" and "GPU fell off the bus" in config["error"]
    assert config["completed_trials"] == 2
    monkeypatch.setattr(study_module, "run_sieve", real)
    assert main(optimize_argv(draws, out, 5)) == 0
    config = read_config(out)
    assert config["status"] == "complete" and config["error"] is None
    assert config["completed_trials"] == 5
    assert (out / SURVIVORS_NAME).read_bytes() == reference_survivors(config, draws)


def test_two_directories_share_one_study_through_a_storage_url(tmp_path: Path,
                                                               draws: Path) -> None:
    """`--storage URL --study NAME` from two output directories (two rigs): the second run
    continues the same study to N in total, and a RUNNING trial of another live process
    (no stale heartbeat) is left alone."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    shared = ["--storage", url, "--study", "shared"]
    assert main(optimize_argv(draws, tmp_path / "rig1", 3, *shared)) == 0
    live = optuna.load_study(study_name="shared", storage=url).ask()
    assert main(optimize_argv(draws, tmp_path / "rig2", 5, *shared)) == 0
    config = read_config(tmp_path / "rig2")
    assert config["status"] == "complete" and config["completed_trials"] == 5
    trials = optuna.load_study(study_name="shared", storage=url).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    assert trials[live.number].state == TrialState.RUNNING
    assert config["best_trial_number"] is not None
    assert (tmp_path / "rig2" / SURVIVORS_NAME).read_bytes() == reference_survivors(config, draws)


def test_bayesian_strategy_past_its_random_startup(tmp_path: Path, draws: Path) -> None:
    """TPE takes over after 10 random trials; the define-by-run skip_max range (its low end
    follows skip_min) must work there too."""
    out = tmp_path / "run"
    argv = optimize_argv(draws, out, 13)
    argv[argv.index("random")] = "bayesian"
    assert main(argv) == 0
    trials = trials_of(out)
    assert len(trials) == 13 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.params["skip_max"] >= t.params["skip_min"] for t in trials)
    assert read_config(out)["status"] == "complete"


def test_resume_with_other_time_of_day_choices_is_one_line(
        tmp_path: Path, draws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Optuna cannot change a categorical's choices within a study: a resume that does is
    refused up front (one line, exit 2, snapshot untouched) instead of every trial failing.
    The order the choices are written in does not matter."""
    out = tmp_path / "run"
    assert main(optimize_argv(draws, out, 2, "--time-of-day", "evening,midday")) == 0
    before = (out / CONFIG_NAME).read_bytes()
    capsys.readouterr()
    assert main(optimize_argv(draws, out, 3, "--time-of-day", "all")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "samples time_of_day from midday,evening, not all" in err
    assert (out / CONFIG_NAME).read_bytes() == before
    assert main(optimize_argv(draws, out, 3, "--time-of-day", "midday,evening")) == 0
    config = read_config(out)
    assert config["status"] == "complete" and config["completed_trials"] == 3
