"""Rate and ETA (issue 16): the daemon's `ProgressClock` measures trials per hour from
snapshot counts over time, `winopt status` shows an ETA column when the table still fits,
and, through a real daemon with a running spool job: status.json carries the rate and
ETA, `winopt show JOB` (short id) shows them on one screen, `winopt dashboard JOB` serves
the job's study, and the daemon writes report.html into a job's directory when it ends."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from polling import wait_for
from report_support import dashboard_url, study_names
from test_daemon_jobs import FAST, Site, status_jobs
from jobs_support import toml_job
from winopt.cli.eta import eta_cell, with_eta
from winopt.cli.status import COLUMNS, render
from winopt.contracts.state_dir import ENDED_MARK
from winopt.daemon.progress import ProgressClock
from winopt.handlers.jobs.refs import short_id

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


def snap(done: int, minutes: float, *, total: int = 100, status: str = "in_progress",
         started: datetime = T0) -> dict:
    return {"status": status, "completed_trials": done, "total_trials": total,
            "last_updated": (T0 + timedelta(minutes=minutes)).isoformat(), "started_at": started.isoformat()}


# ---------------------------------------------------------------- ProgressClock
def test_rate_is_measured_from_the_counts_over_time_and_the_eta_from_what_is_left() -> None:
    clock = ProgressClock()
    assert clock.observe("r", snap(0, 0)) is None  # nothing finished: nothing to say
    first = clock.observe("r", snap(10, 10))  # one sample: the average since started_at
    assert first["rate_per_hour"] == 60.0 and first["trials_left"] == 90
    assert first["eta"] == (T0 + timedelta(minutes=100)).isoformat()
    clock.observe("r", snap(20, 15))
    progress = clock.observe("r", snap(30, 20))  # 30 trials in 20 minutes since the first sample: 90/h
    assert progress["rate_per_hour"] == 90.0 and progress["measured_over"] == 30
    assert progress["eta"] == (T0 + timedelta(minutes=20, seconds=70 * 40)).isoformat()
    assert clock.observe("r", snap(30, 25))["rate_per_hour"] == 90.0  # no new trial: no new sample


def test_the_rate_follows_a_slowdown_and_a_finished_run_has_no_eta() -> None:
    clock = ProgressClock(samples=3)
    for i in range(1, 11):
        clock.observe("r", snap(i, i))  # a trial a minute
    for i in range(11, 15):
        progress = clock.observe("r", snap(i, 10 + 10 * (i - 10)))  # then one every 10 minutes
    assert progress["rate_per_hour"] == 6.0
    done = clock.observe("r", snap(100, 2000, status="complete"))
    assert done["eta"] is None and done["trials_left"] == 0


def test_a_run_started_again_in_its_directory_starts_a_new_measure() -> None:
    clock = ProgressClock()
    clock.observe("r", snap(50, 50))
    clock.observe("r", snap(60, 60))
    again = clock.observe("r", snap(5, 100, started=T0 + timedelta(minutes=90)))
    assert again["rate_per_hour"] == 30.0  # 5 in 10 minutes since its own start


def test_a_resumed_run_is_not_measured_across_its_downtime() -> None:
    """A run at 60 trials an hour, down for 13 hours, then on again at the same pace: the
    rate was measured across the outage (a few trials an hour, the ETA days away) until 20
    new trials had pushed the old samples out. Now it starts again from the resume."""
    clock = ProgressClock()
    for i in range(1, 11):
        clock.observe("r", snap(i, i))  # a trial a minute
    assert clock.observe("r", snap(11, 11 + 13 * 60)) is None  # back: nothing measured yet
    clock.observe("r", snap(12, 12 + 13 * 60))
    assert clock.observe("r", snap(13, 13 + 13 * 60))["rate_per_hour"] == 60.0
    # and a run the daemon saw interrupted, then in progress again, starts afresh too
    other = ProgressClock()
    other.observe("o", snap(5, 5))
    other.observe("o", snap(6, 6))
    other.observe("o", snap(6, 7, status="interrupted"))
    assert other.observe("o", snap(7, 30)) is None


def test_show_s_pace_leaves_out_the_downtime_between_trials() -> None:
    from winopt.handlers.report.trials import TrialFacts, pace

    def trial(n: int, start_min: float) -> TrialFacts:
        start = T0 + timedelta(minutes=start_min)
        return TrialFacts(number=n, state="COMPLETE", value=1.0, params={}, started=start,
                          completed=start + timedelta(seconds=50))

    # 10 trials of 50 s a minute apart, 2 hours down, 10 more: 60 an hour, not 8
    trials = [trial(i, i) for i in range(10)] + [trial(10 + i, 130 + i) for i in range(10)]
    assert pace(trials) == pytest.approx(20 * 3600 / (2 * (9 * 60 + 50)), rel=1e-9)
    # two workers side by side: twice the throughput of one
    pair = [trial(i, i) for i in range(10)] + [trial(10 + i, i) for i in range(10)]
    assert pace(pair) == pytest.approx(20 * 3600 / (9 * 60 + 50), rel=1e-9)


# ---------------------------------------------------------------- the ETA column
def status_doc(eta: str | None) -> dict:
    run = {"kind": "watched", "state": "running",
           "snapshot": {"completed_trials": 30, "total_trials": 100, "best": 7},
           "progress": {"rate_per_hour": 120.0, "eta": eta},
           "decision": {"action": "wait", "confidence": 0.5}}
    return {"daemon": {"pid": 1, "state": "running"}, "runs": {"lottery/evening": run}, "rigs": {}}


def test_status_shows_the_eta_column_when_it_fits() -> None:
    now = T0
    lines = render(status_doc((T0 + timedelta(minutes=35)).isoformat()), now=now, width=80).splitlines()
    header = lines[1].split()
    assert header[:4] == ["RUN", "STATE", "TRIALS", "ETA"], lines
    assert lines[2].split()[3] == "35m" and all(len(line) <= 80 for line in lines)
    # no run has an ETA: the table is as before
    assert render(status_doc(None), now=now, width=80).splitlines()[1].split()[:4] == ["RUN", "STATE", "TRIALS", "BEST"]


def test_the_eta_column_is_left_out_when_the_table_would_not_fit() -> None:
    rows = [("a" * 60, "running", "30/100", "7", "wait 0.50", "-", "-")]
    columns, kept = with_eta(COLUMNS, rows, ["35m"], 80)
    assert columns == COLUMNS and kept == rows
    columns, wide = with_eta(COLUMNS, rows, ["35m"], None)
    assert columns[3] == "ETA" and wide[0][3] == "35m"
    assert eta_cell({"state": "running", "progress": {"eta": (T0 - timedelta(seconds=5)).isoformat()}}, T0) == "due"
    assert eta_cell({"state": "complete", "progress": {"eta": T0.isoformat()}}, T0) == "-"


# ---------------------------------------------------------------- a real daemon and spool job
@pytest.fixture
def site(tmp_path: Path):
    s = Site(tmp_path)
    yield s
    s.close()


def test_a_running_job_has_rate_eta_show_and_dashboard_and_a_report_when_it_ends(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the width the commands below lay out for
    site.configure(max_parallel_jobs=2, rigs=("a",))
    d = site.start()
    (site.root / "long.toml").write_text(toml_job(draws="draws/h.json", trials=5000, **FAST))
    (site.root / "short.toml").write_text(toml_job(draws="draws/h.json", trials=3, **FAST))
    long_id = site.winopt("submit", "long.toml").stdout.strip()
    short_job = site.winopt("submit", "short.toml").stdout.strip()
    assert long_id and short_job, d.log()

    # the daemon keeps rate and ETA for the running job
    progress = wait_for(lambda: (d.run(long_id).get("progress") or {}).get("eta") and d.run(long_id)["progress"],
                        60, "a rate and an ETA in status.json")
    assert progress["rate_per_hour"] > 0 and progress["trials_left"] > 0
    assert datetime.fromisoformat(progress["eta"]) > datetime.now(timezone.utc)

    # winopt show with the short id, while it runs
    shown = site.winopt("show", short_id(long_id))
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout
    assert f"(job {long_id})" in text and "running, trials " in text and "/5000" in text
    assert "trials/h, ETA in " in text, shown.stdout
    facts = json.loads(site.winopt("show", long_id, "--json").stdout)
    assert facts["state"] == "running" and facts["rate_from"] == "daemon" and facts["eta"]
    assert facts["last_trial"] is not None and facts["decision"]["action"] in ("wait", "retry")

    # winopt status has the ETA column where there is room (whether 80 columns have room
    # depends on the cells: the column-width rule itself is tested above); winopt status
    # JOB is winopt show
    table = site.winopt("status", "--wide").stdout.splitlines()
    header = next(line for line in table if line.startswith("JOB"))
    assert header.split()[:5] == ["JOB", "STATE", "PRIO", "TRIALS", "ETA"], table
    row = next(line for line in table if line.startswith(long_id)).split()
    assert row[1] == "running" and (row[4] == "due" or row[4][-1] in "smhd"), row
    assert all(len(line) <= 80 for line in site.winopt("status").stdout.splitlines())
    one = site.winopt("status", short_id(long_id))
    assert one.returncode == 0 and f"(job {long_id})" in one.stdout

    # Optuna's dashboard on the running job's storage
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-u", "-m", "winopt", "dashboard", short_id(long_id), "--port", "0",
                                 "--state-dir", str(site.state), "--config", str(site.config)],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        url = wait_for(lambda: dashboard_url(log), 60, "the dashboard's URL")
        assert wait_for(lambda: study_names(url), 60, "the dashboard's /api/studies") == [long_id]
    finally:
        proc.terminate()  # SIGTERM: SIGINT may be ignored when the tests run in the background
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    # the short job ended: the daemon wrote its report
    wait_for(lambda: status_jobs(d).get(short_job, {}).get("state") == "complete", 60, "the short job to complete")
    # its NPZ and the rig's copy, on one screen
    npz = wait_for(lambda: d.run(short_job).get("npz"), 60, "the short job's NPZ")
    wait_for(lambda: (((d.status().get("rigs") or {}).get("a") or {}).get("runs") or {}).get(short_job, {})
             .get("sha256") == npz["sha256"], 60, "rig a to hold the short job's NPZ")
    text = " ".join(site.winopt("show", short_job).stdout.split())
    assert f"npz {npz['count']} seed" in text and f"sha256 {npz['sha256'][:12]}" in text, text
    assert f"rigs a {site.root / 'rig-a'}" in text and f": synced, holds {npz['sha256'][:12]} (the newest), last sent " \
        in text, text
    report = site.job_dir(short_job) / "report.html"
    wait_for(report.exists, 120, f"{report}\n{d.log()[-3000:]}")
    page = report.read_text()
    assert 'id="history"' in page and "plotly" in page and "<script src=" not in page
    assert site.winopt("cancel", long_id).returncode == 0
    wait_for(lambda: status_jobs(d)[long_id]["state"] == "cancelled", 60, "the long job to be cancelled")
    assert d.stop() == 0

    # end-of-job work the daemon did not finish (stopped in the middle of it, or as the
    # job ended) is done at its next start: the mark says what was done
    ended = site.job_dir(short_job) / ENDED_MARK
    assert ended.exists()
    report.unlink()
    ended.unlink()
    d = site.start()
    wait_for(lambda: ended.exists() and (site.job_dir(long_id) / ENDED_MARK).exists(), 120,
             f"the end-of-job work again\n{d.log()[-3000:]}")
    assert 'id="history"' in report.read_text() and (site.job_dir(long_id) / "report.html").exists()
    assert d.stop() == 0
