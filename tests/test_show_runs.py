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
    (run / "optimal_window_config.json").write_text(json.dumps(doc))  # json: ints wider than 64 bits
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


# ---------------------------------------------------------------- status.json: only while current
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def write_status(state_dir: Path, run: Path, pid: int, snapshot: dict[str, Any] | None) -> None:
    """status.json of a daemon (pid) that tracked `run` as running, 2 of 4 trials done."""
    entry = {"path": str(run), "state": "running", "snapshot": snapshot,
             "progress": {"rate_per_hour": 473.0, "eta": "2099-01-01T00:00:00+00:00"},
             "decision": {"action": "wait", "confidence": 0.8, "reasoning": "stale: 2/4"}}
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "status.json").write_bytes(orjson.dumps(
        {"daemon": {"pid": pid, "state": "running"}, "runs": {run.name: entry}, "jobs": {}, "rigs": {}}))


OLDER = {"status": "in_progress", "completed_trials": 2, "total_trials": 4, "best": 1,
         "last_updated": "2025-12-31T23:59:00+00:00"}


def facts_of(run: Path, state_dir: Path, *argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = show(str(run), "--json", *argv, state_dir=state_dir, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("alive, summary", [(False, "current"), (True, "older")],
                         ids=["daemon-gone", "entry-for-an-older-snapshot"])
def test_show_does_not_trust_a_stale_status_entry(tmp_path: Path, alive: bool, summary: str) -> None:
    from winopt.daemon.adapters.runs import snapshot_summary

    run = make_run(tmp_path / "f")
    current = snapshot_summary(json.loads((run / "optimal_window_config.json").read_text()))
    write_status(tmp_path / "state", run, os.getpid() if alive else dead_pid(),
                 current if summary == "current" else OLDER)
    facts = facts_of(run, tmp_path / "state")
    assert facts["state"] == "complete" and facts["completed_trials"] == 4
    assert facts["rate_from"] == "trials" and facts["rate_per_hour"] == pytest.approx(4 * 3600 / 11)
    assert facts["eta"] is None
    assert facts["decision"]["action"] != "wait" and "stale" not in facts["decision"]["reasoning"]


def test_show_takes_a_running_daemons_current_entry(tmp_path: Path) -> None:
    from winopt.daemon.adapters.runs import snapshot_summary

    run = make_run(tmp_path / "f")
    write_status(tmp_path / "state", run, os.getpid(),
                 snapshot_summary(json.loads((run / "optimal_window_config.json").read_text())))
    facts = facts_of(run, tmp_path / "state")
    assert facts["state"] == "running" and facts["rate_from"] == "daemon" and facts["rate_per_hour"] == 473.0
    assert facts["decision"]["reasoning"] == "stale: 2/4"


# ---------------------------------------------------------------- the snapshot, read as the watcher reads it
def test_an_old_pipeline_snapshot_is_complete_with_its_best(tmp_path: Path) -> None:
    run = write_snapshot(tmp_path / "old", {"window_size": 512, "offset": 3, "skip_min": 0,
                                            "bidirectional_count": 4242, "optimization_score": 4242.0})
    facts = facts_of(run, tmp_path / "state")
    assert facts["state"] == "complete"
    assert facts["best"]["count"] == 4242 and facts["best"]["params"] == {"window_size": 512, "offset": 3,
                                                                          "skip_min": 0}
    assert "no optuna.db (a run made before winopt" in facts["study_error"]
    text = show(str(run), state_dir=tmp_path / "state").stdout
    assert "state    complete" in text and "4242 bidirectional survivors" in text
    assert "no successful trial yet" not in text


@pytest.mark.parametrize("bad", [
    {"best_bidirectional_count": "12", "expected_chance_bidirectional": "0.5"},
    {"completed_trials": True, "best_bidirectional_count": True},
    {"best_bidirectional_count": -5, "expected_chance_bidirectional": -1},
], ids=["strings", "bools", "negative"])
def test_snapshot_fields_of_the_wrong_type_show_as_unknown(tmp_path: Path, bad: dict[str, Any]) -> None:
    run = write_snapshot(tmp_path / "n", {**SNAPSHOT, **bad})
    done = show(str(run), state_dir=tmp_path / "state")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "best unknown (the snapshot's best count has the wrong type)" in text
    assert "trials True/" not in text and "survivor" not in text and "expects" not in text
    assert f"snapshot optimal_window_config.json: {', '.join(k for k in SNAPSHOT if k in bad)}: wrong type" in text
    facts = facts_of(run, tmp_path / "state")
    assert facts["best"] is None and facts["best_unknown"] is True
    if "completed_trials" in bad:
        assert facts["completed_trials"] is None


def test_show_json_writes_an_int_wider_than_64_bits(tmp_path: Path) -> None:
    run = write_snapshot(tmp_path / "big", {**SNAPSHOT, "total_trials": 10**20})
    assert facts_of(run, tmp_path / "state")["total_trials"] == 10**20


# ---------------------------------------------------------------- readers never write a storage
def test_show_report_and_dashboard_create_no_storage(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a")
    typo = tmp_path / "typo.db"
    url = f"sqlite:///{typo}"
    facts = facts_of(run, tmp_path / "state", "--storage", url)
    assert facts["study_error"] == f"{typo} (storage {url}): no such file; give the storage of an existing study"
    for argv in (("report", str(run), "--storage", url, "-o", str(tmp_path / "r.html")),
                 ("dashboard", "--storage", url, "--port", "0")):
        done = winopt(*argv)
        assert done.returncode == 2 and done.stderr == f"winopt: error: {typo} (storage {url}): no such file; " \
                                                       "give the storage of an existing study\n", done.stderr
    assert not typo.exists()


def test_an_empty_or_foreign_sqlite_file_is_left_as_it_is(tmp_path: Path) -> None:
    import sqlite3

    empty = write_snapshot(tmp_path / "empty", SNAPSHOT)
    (empty / "optuna.db").write_bytes(b"")
    assert "an empty file, not an Optuna storage" in facts_of(empty, tmp_path / "state")["study_error"]
    assert (empty / "optuna.db").stat().st_size == 0
    foreign = write_snapshot(tmp_path / "foreign", SNAPSHOT)
    with sqlite3.connect(foreign / "optuna.db") as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    before = (foreign / "optuna.db").read_bytes()
    assert "not an Optuna storage (no studies table)" in facts_of(foreign, tmp_path / "state")["study_error"]
    assert (foreign / "optuna.db").read_bytes() == before


# ---------------------------------------------------------------- workers = "rigs": the shared storage
JOB_ID = "20260101T000000Z-rigs-1a2b3c"


def rigs_job(state_dir: Path) -> tuple[Path, str]:
    """A finished `workers = "rigs"` job: its directory has the snapshot and state.json,
    its study (named by the job id) is in a shared storage (here SQLite), returned as a URL."""
    job = make_run(state_dir / "jobs" / JOB_ID)
    (job / "optuna.db").rename(state_dir / "shared.db")
    (job / "state.json").write_bytes(orjson.dumps({"id": JOB_ID, "state": "complete",
                                                   "spec": {"workers": "rigs", "trials": 4}}))
    return job, f"sqlite:///{state_dir / 'shared.db'}"


def test_show_reads_a_rigs_jobs_study_from_winopt_storage(tmp_path: Path) -> None:
    job, url = rigs_job(tmp_path / "state")
    for ref in (str(job), JOB_ID, "0101-1a2b3c"):
        facts = facts_of(Path(ref), tmp_path / "state", env={"WINOPT_STORAGE": url})
        assert facts["study_error"] is None and facts["best_trial"]["number"] == 2, facts
        assert facts["rate_from"] == "trials"
    facts = facts_of(job, tmp_path / "state")
    assert facts["study_error"] == f'{job}: a workers = "rigs" job, its study is in the shared storage: ' \
                                   "give --storage URL or set WINOPT_STORAGE"


def test_report_of_a_rigs_job_uses_winopt_storage(tmp_path: Path) -> None:
    job, url = rigs_job(tmp_path / "state")
    page = tmp_path / "report.html"
    done = winopt("report", JOB_ID, "--state-dir", str(tmp_path / "state"), "-o", str(page),
                  env={"WINOPT_STORAGE": url})
    assert done.returncode == 0, done.stderr
    assert f"winopt run {JOB_ID}" in page.read_text()


def test_the_daemon_writes_a_rigs_jobs_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The end-of-job report child of a rigs job reads the shared storage the daemon
    exported (it had returned at once: the job directory has no optuna.db). The writer's
    step is run here on the test's thread: the child is done when it returns."""
    from winopt.daemon.reports import REPORT_NAME, JobReports

    job, url = rigs_job(tmp_path / "state")
    monkeypatch.setenv("WINOPT_STORAGE", url)
    JobReports()._write(JOB_ID, job, shared=True)
    assert f"winopt run {JOB_ID}" in (job / REPORT_NAME).read_text()
    monkeypatch.delenv("WINOPT_STORAGE")  # no shared storage: nothing to read, no report, no error
    (job / REPORT_NAME).unlink()
    JobReports()._write(JOB_ID, job, shared=True)
    assert not (job / REPORT_NAME).exists()


# ---------------------------------------------------------------- winopt report
@pytest.mark.parametrize("target, problem", [
    ("missing/a.html", "{out}: no such directory {dir}/missing; create it or give another -o FILE"),
    ("adir", "{out}: is a directory; give a file name (-o {out}/report.html)"),
])
def test_report_to_a_path_it_cannot_write_is_one_line_naming_it(tmp_path: Path, target: str, problem: str) -> None:
    run = make_run(tmp_path / "a")
    (tmp_path / "adir").mkdir()
    out = tmp_path / target
    done = winopt("report", str(run), "-o", str(out), "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 2
    assert done.stderr == f"winopt: error: {problem.format(out=out, dir=tmp_path)}\n"
    assert os.listdir(tmp_path / "adir") == []


@pytest.mark.parametrize("values", [[2.0], [0.0, 0.0, 0.0, 0.0], [0.0, None]], ids=["one", "all-equal", "pruned"])
def test_report_has_no_importances_it_cannot_measure(tmp_path: Path, values: list[float | None]) -> None:
    run = make_run(tmp_path / "a", values)
    page = tmp_path / "r.html"
    done = winopt("report", str(run), "-o", str(page), "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    assert ('<section id="importances"><h2>Parameter importances</h2>\n'
            '<p class="missing">needs two finished trials with different counts</p>') in page.read_text()


def test_report_words_a_single_survivor_and_an_all_pruned_study(tmp_path: Path) -> None:
    one = make_run(tmp_path / "one", [1.0], best_value=1.0, best_bidirectional_count=1, best_trial_number=0)
    pruned = make_run(tmp_path / "pruned", [None, None])
    for run in (one, pruned):
        done = winopt("report", str(run), "-o", str(run / "r.html"), "--state-dir", str(tmp_path / "state"))
        assert done.returncode == 0, done.stderr
    assert "<td>1 survivor (trial 0," in (one / "r.html").read_text()
    page = (pruned / "r.html").read_text()
    assert '<p class="missing">no complete trial: all 2 finished trials were pruned</p>' in page
    assert "no finished trial yet" not in page


def test_show_of_a_best_count_of_zero_tests_nothing_against_chance(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", [0.0], best_value=0.0, best_bidirectional_count=0, best_trial_number=0)
    done = show(str(run), state_dir=tmp_path / "state")
    assert done.returncode == 0, done.stderr
    assert "expects 0.5; none found, nothing beyond chance" in done.stdout
    assert "P(>=" not in done.stdout


@pytest.mark.parametrize("port", ["0", "8123"])
def test_dashboard_on_an_address_it_cannot_listen_on_is_one_line_naming_it(tmp_path: Path, port: str) -> None:
    run = make_run(tmp_path / "a")
    done = winopt("dashboard", str(run), "--host", "192.0.2.1", "--port", port, "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 2
    where = "192.0.2.1" if port == "0" else f"192.0.2.1:{port}"
    assert done.stderr == f"winopt: error: cannot listen on {where}: Cannot assign requested address\n"


def test_a_queued_job_shows_its_target_and_no_missing_study(tmp_path: Path) -> None:
    """A job the daemon has not started: its job file's target, 0 done, and no hint about
    a storage (nothing has run, so nothing is missing)."""
    job = tmp_path / "state" / "jobs" / JOB_ID
    job.mkdir(parents=True)
    (job / "state.json").write_bytes(orjson.dumps({"id": JOB_ID, "state": "queued", "spec": {"trials": 5}}))
    facts = facts_of(job, tmp_path / "state")
    assert (facts["completed_trials"], facts["total_trials"], facts["study_error"]) == (0, 5, None)
    assert (facts["state"], facts["decision"]) == ("queued", None)
    done = show(str(job), state_dir=tmp_path / "state")
    assert done.returncode == 0 and "queued, trials 0/5" in done.stdout, done.stdout
    assert "storage" not in done.stdout and "not judged" in done.stdout, done.stdout
