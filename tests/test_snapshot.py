"""SnapshotWriter with a real Optuna study (SQLite), the real sieve and real files."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import optuna
import orjson
import pytest
from optuna.trial import TrialState

from winopt.contracts import sha256_file
from winopt.contracts.schemas import CONFIG_FIELDS, CONFIG_NAME, SURVIVORS_NAME
from winopt.optimizer.draws import load_history
from winopt.optimizer.snapshot import NO_TRIALS_NOTE, SnapshotWriter
from winopt.optimizer.study import RunSettings, open_study, scan_progress
from winopt.optimizer.objective import SIEVE_ATTR, SieveObjective
from winopt.optimizer.space import SearchSpace, parse_bounds

from optimize_support import MOD, read_config, reference_survivors, write_history

SETTINGS = RunSettings(prng="java_lcg", seed_start=0, seed_count=2000, mod=MOD,
                       draws_sha256="0" * 64)


def small_space(**bounds: str) -> SearchSpace:
    given = {"window_size": "2:6", "offset": "0:40", "skip_min": "0:3", "skip_max": "3:12",
             "forward_threshold": "0.2:0.5", "reverse_threshold": "0.2:0.5", **bounds}
    return SearchSpace().with_bounds(**{k: parse_bounds(k, v) for k, v in given.items()})


@pytest.fixture
def draws(tmp_path: Path) -> Path:
    return write_history(tmp_path / "draws.json")


#: the counts the old pipeline's watcher compares: integers in every snapshot, never null
COUNTS = ("forward_count", "reverse_count", "bidirectional_count", "best_bidirectional_count")


def check_old_keys(config: dict, fixed_time_of_day: str | None = None) -> None:
    """The old pipeline's keys of one snapshot (SPEC §3): integer counts, 0 until a trial
    succeeds; `bidirectional_count` and `optimization_score` the best trial's; `sessions`
    the sessions its time_of_day selects; `test_both_modes` false."""
    for key in COUNTS:
        assert type(config[key]) is int, (key, config[key])
    assert config["test_both_modes"] is False
    if config["best_trial_number"] is None:
        assert all(config[key] == 0 for key in COUNTS), config
        assert config["optimization_score"] is None and config["note"] == NO_TRIALS_NOTE
        tod = fixed_time_of_day
    else:
        assert config["bidirectional_count"] == config["best_bidirectional_count"]
        assert config["bidirectional_count"] == int(config["best_value"])
        assert config["optimization_score"] == config["best_value"]
        tod = config["time_of_day"]
    expected = {"midday": ["midday"], "evening": ["evening"]}.get(tod, ["midday", "evening"])
    assert config["sessions"] == expected, (tod, config["sessions"])


def make_run(tmp_path: Path, draws: Path, space: SearchSpace, total: int,
             fixed_time_of_day: str | None = None):
    """A study in SQLite, its objective and its writer, wired as `winopt optimize` does."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    histories = {t: load_history(draws, mod=MOD, time_of_day=t) for t in space.time_of_day}
    study = open_study(f"sqlite:///{out}/optuna.db", "t",
                       optuna.samplers.RandomSampler(seed=3), shared=False)
    objective = SieveObjective(histories, SETTINGS, space, device="cpu")
    writer = SnapshotWriter(out, settings=SETTINGS, study_name="t", started_at="x",
                            total_trials=total, take_result=objective.take,
                            progress=scan_progress(study.get_trials()),
                            fixed_time_of_day=fixed_time_of_day)
    return out, study, objective, writer


def test_snapshot_after_each_of_five_trials(tmp_path: Path, draws: Path) -> None:
    """The seed proposal's test: after each trial the file exists and completed_trials equals
    the number of trials so far; a named survivors file is on disk with that sha256."""
    out, study, objective, writer = make_run(tmp_path, draws, small_space(), total=5)
    writer.write()
    first = read_config(out)
    assert first["note"] == NO_TRIALS_NOTE and first["best_value"] is None
    assert first["survivors_file"] is None and first["completed_trials"] == 0
    check_old_keys(first)
    seen: list[int] = []

    def check(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        config = read_config(out)
        seen.append(config["completed_trials"])
        assert config["completed_trials"] == trial.number + 1
        assert config["last_trial_number"] == trial.number
        assert tuple(config) == CONFIG_FIELDS
        assert config["status"] == "in_progress" and config["total_trials"] == 5
        assert dt.datetime.fromisoformat(config["last_updated"]).utcoffset() is not None
        assert config["survivors_sha256"] == sha256_file(out / SURVIVORS_NAME)
        assert config["survivors_count"] == len(orjson.loads((out / SURVIVORS_NAME).read_bytes()))
        check_old_keys(config)

    study.optimize(objective, n_trials=5, callbacks=[writer, check])
    assert seen == [1, 2, 3, 4, 5]
    final = read_config(out)
    best = max((t for t in study.trials if t.state == TrialState.COMPLETE),
               key=lambda t: (t.value, -t.number))
    assert final["best_trial_number"] == best.number
    assert final["best_bidirectional_count"] == int(best.value)
    assert final["survivors_count"] == int(best.value)
    check_old_keys(final)
    sieved = best.user_attrs[SIEVE_ATTR]  # the best trial's own counts, not another's
    assert (final["forward_count"], final["reverse_count"]) == (sieved["forward_count"],
                                                                 sieved["reverse_count"])
    assert final["bidirectional_count"] == final["survivors_count"] > 0
    assert (out / SURVIVORS_NAME).read_bytes() == reference_survivors(final, draws)
    assert writer.finish("complete")
    done = read_config(out)
    assert done["status"] == "complete" and done["completed_at"] is not None


def test_failing_write_is_logged_and_retried(tmp_path: Path, draws: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A publish that fails (here: a directory squats on the config's name, which stops
    root as well as anyone) is logged; the study goes on and the next trial writes."""
    out, study, objective, writer = make_run(tmp_path, draws, small_space(), total=4)
    blocker = out / CONFIG_NAME

    def block_after_first(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 0:
            blocker.unlink(missing_ok=True)
            blocker.mkdir()
        elif trial.number == 2:
            shutil.rmtree(blocker)

    with caplog.at_level(logging.WARNING, logger="winopt.optimizer.snapshot"):
        study.optimize(objective, n_trials=4, callbacks=[block_after_first, writer])
    assert len(study.trials) == 4
    assert writer.failed_writes == 2  # trials 0 and 1 could not be written
    assert sum("could not write the snapshot" in r.getMessage() for r in caplog.records) == 2
    config = read_config(out)
    assert config["completed_trials"] == 4 and config["last_trial_number"] == 3
    assert config["survivors_sha256"] == sha256_file(out / SURVIVORS_NAME)
    assert (out / SURVIVORS_NAME).read_bytes() == reference_survivors(config, draws)


def test_callback_never_reads_the_trial_list(tmp_path: Path, draws: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """O(1) per trial: inside the callback, any read of the study's trials fails the test."""
    out, study, objective, writer = make_run(tmp_path, draws, small_space(), total=3)
    storage = study._storage
    inside = {"now": False}
    real = storage.get_all_trials

    def guarded(*args, **kwargs):
        assert not inside["now"], "the snapshot callback read the trial list"
        return real(*args, **kwargs)

    monkeypatch.setattr(storage, "get_all_trials", guarded)

    def watched(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        inside["now"] = True
        try:
            writer(study, trial)
        finally:
            inside["now"] = False

    study.optimize(objective, n_trials=3, callbacks=[watched])
    assert read_config(out)["completed_trials"] == 3


def test_infeasible_windows_are_pruned_and_counted(tmp_path: Path) -> None:
    """A window larger than the history allows is PRUNED with the reason, counts towards
    the total, and never becomes the best."""
    draws = write_history(tmp_path / "short.json", days=6)  # 12 draws, 6 per session
    space = SearchSpace(bounds=small_space(window_size="5:6").bounds, time_of_day=("midday",))
    out, study, objective, writer = make_run(tmp_path, draws, space, total=3)
    study.optimize(objective, n_trials=3, callbacks=[writer])
    assert {t.state for t in study.trials} == {TrialState.PRUNED}
    assert "draws; time_of_day midday has 6" in study.trials[0].user_attrs["infeasible"]
    config = read_config(out)
    assert config["completed_trials"] == 3
    assert config["best_trial_number"] is None and config["note"] == NO_TRIALS_NOTE
    assert config["last_trial_value"] is None
    check_old_keys(config)  # counts stay integer 0 when no trial ever succeeds
    assert writer.finish("complete")
    check_old_keys(read_config(out))


@pytest.mark.parametrize("fixed", [None, "all", "midday", "evening"])
def test_sessions_before_and_after_the_first_trial(tmp_path: Path, draws: Path,
                                                   fixed: str | None) -> None:
    """Before any trial `sessions` is the fixed time_of_day's, else both sessions; after,
    the best trial's selection; the old keys hold in every snapshot."""
    choices = ("all", "midday", "evening") if fixed is None else (fixed,)
    space = SearchSpace(bounds=small_space().bounds, time_of_day=choices)
    out, study, objective, writer = make_run(tmp_path, draws, space, total=4,
                                             fixed_time_of_day=fixed)
    writer.write()
    first = read_config(out)
    check_old_keys(first, fixed)
    assert first["sessions"] == ([fixed] if fixed in ("midday", "evening") else ["midday", "evening"])
    study.optimize(objective, n_trials=4, callbacks=[writer, lambda s, t: check_old_keys(read_config(out))])
    final = read_config(out)
    assert final["best_trial_number"] is not None
    if fixed is not None:
        assert final["time_of_day"] == fixed
