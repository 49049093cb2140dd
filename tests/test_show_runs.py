"""`winopt show` and `winopt report` on hand-made runs (a review of issue 16): a stale
status.json, an old-pipeline snapshot, snapshot fields of the wrong type, a report's
output path, importances that cannot be measured, storages that must not be written,
`workers = "rigs"` jobs, and paths that are not runs. Each run is a few files written
here (a snapshot, an optuna.db with trials made directly), so nothing runs a search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from report_support import winopt

#: a winopt snapshot of a finished run, 4 of 4 trials, best count 3 in trial 2
SNAPSHOT = {
    "schema_version": 3, "status": "complete", "study_name": "run", "completed_trials": 4,
    "total_trials": 4, "best_trial_number": 2, "best_value": 3.0, "best_bidirectional_count": 3,
    "best_params": {"window_size": 8, "offset": 3}, "expected_chance_bidirectional": 0.5,
    "last_updated": "2026-01-01T00:00:00+00:00",
}


def write_snapshot(run: Path, doc: dict[str, Any]) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "optimal_window_config.json").write_bytes(orjson.dumps(doc))
    return run


def make_study(url: str, name: str, values: list[float | None]) -> None:
    """A study with one trial per value (None: a pruned trial), each 2 s long, with
    parameters that differ from trial to trial."""
    import optuna
    from optuna.distributions import IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i, value in enumerate(values):
        state = optuna.trial.TrialState.PRUNED if value is None else optuna.trial.TrialState.COMPLETE
        trial = optuna.trial.create_trial(
            params={"window_size": 4 + i, "offset": i}, state=state, value=value,
            distributions={"window_size": IntDistribution(2, 64), "offset": IntDistribution(0, 64)})
        trial.datetime_start = start + timedelta(seconds=3 * i)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=2)
        study.add_trial(trial)


def make_run(run: Path, values: list[float | None] | None = None, **changes: Any) -> Path:
    """A finished local run: its snapshot and its optuna.db."""
    write_snapshot(run, {**SNAPSHOT, "study_name": run.name, **changes})
    make_study(f"sqlite:///{run / 'optuna.db'}", run.name, [1, 0, 3, 2] if values is None else values)
    return run


def show(*argv: str, state_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return winopt("show", *argv, "--state-dir", str(state_dir), env={"WINOPT_STORAGE": "", **(env or {})})


# ---------------------------------------------------------------- what is not a run
def test_a_path_that_does_not_exist_is_no_such_directory(tmp_path: Path) -> None:
    done = show(str(tmp_path / "runs" / "typo"), state_dir=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"winopt: error: {tmp_path}/runs/typo: no such directory; give a run directory " \
                          "(winopt optimize --out DIR) or a job id\n"


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    done = show(str(tmp_path / "file"), state_dir=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(f"winopt: error: {tmp_path}/file: not a directory;")
    assert done.stderr.count("\n") == 1


def test_a_directory_that_is_not_a_run_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notarun").mkdir()
    done = show(str(tmp_path / "notarun"), state_dir=tmp_path / "state")
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith(f"winopt: error: {tmp_path}/notarun: not a run (no optimal_window_config.json")
    assert done.stderr.count("\n") == 1 and done.stdout == ""
