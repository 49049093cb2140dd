"""Issue 16 on a finished demo run: `winopt show` on one screen, `winopt report` opened in
headless Chromium with its plots drawn from the data, `winopt dashboard` answering HTTP
on the run's storage, and one clear line when an extra is missing. Real processes and
files throughout; the demo run is made once for the module."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from optimize_support import REPO
from polling import wait_for
from report_support import (
    SECTIONS, dashboard_url, plot_counts, rendered_dom, section, study_names, winopt, without_module,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`winopt demo --out DIR`'s finished run (12 trials, the planted seed found)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    done = winopt("demo", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out / "run"


def trials_of(run: Path) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=run.name, storage=f"sqlite:///{run / 'optuna.db'}")
    return [{"value": t.value, "state": t.state.name, "attrs": t.user_attrs} for t in study.trials]


# ---------------------------------------------------------------- winopt show
def test_show_fits_80_columns_and_says_what_the_run_found_and_why(demo: Path) -> None:
    done = winopt("show", str(demo), env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert 8 <= len(lines) <= 24, done.stdout  # one screen
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    text = " ".join(done.stdout.split())
    assert "complete, trials 12/12" in text
    assert "trials/h" in text and "ETA -" in text  # finished: a rate, no ETA
    assert "1 bidirectional survivor (trial" in text
    assert "significant: chance does not explain it" in text
    assert "clamped to" in text  # the demo's window offset is clamped: the best trial's note
    assert "decision proceed 0.95" in text
    assert "npz 1 seed, sha256" in text


def test_show_json_has_the_facts(demo: Path) -> None:
    done = winopt("show", str(demo), "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    trials = trials_of(demo)
    assert facts["completed_trials"] == 12 == len(trials) and facts["total_trials"] == 12
    assert facts["rate_per_hour"] > 0 and facts["rate_from"] == "trials" and facts["eta"] is None
    best = facts["best"]
    assert best["count"] == 1 and best["significant"] is True
    assert best["poisson_tail"] < best["significance"] == 1e-6
    assert best["params"]["time_of_day"] == "evening"
    assert any("clamped" in note for note in facts["best_trial"]["notes"])
    assert any("one session searched" in note for note in facts["best_trial"]["notes"])
    assert facts["last_trial"]["number"] == 11
    assert facts["decision"]["action"] == "proceed"
    assert facts["npz"]["count"] == 1


def test_show_of_a_job_id_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    done = winopt("show", "0131-abcdef", "--state-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("winopt: error: no job '0131-abcdef' in") and done.stderr.count("\n") == 1


# ---------------------------------------------------------------- winopt report
def test_report_opens_offline_in_chromium_with_every_plot_drawn_from_the_data(demo: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    done = winopt("report", str(demo), "-o", str(page))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(page)
    raw = page.read_text()
    assert "<script src=" not in raw, "the report loads a script from elsewhere"
    dom = rendered_dom(page, tmp_path / "profile")
    trials = trials_of(demo)
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    counts = {name: plot_counts(section(dom, name)) for name in SECTIONS}
    for name, c in counts.items():
        assert c["svg"] >= 1 and c["traces"] >= 1 and c["missing"] == 0, (name, c)
    # one marker per finished trial in the history (its best-so-far line is a line)
    assert counts["history"]["points"] == len(complete), counts["history"]
    # counts above 0 and chance expectations, one marker each
    positive = sum(1 for t in complete if t["value"] > 0)
    expected = sum(1 for t in complete if (t["attrs"].get("sieve") or {}).get("expected_chance_bidirectional"))
    assert counts["chance"]["points"] == positive + expected, counts["chance"]
    assert counts["importances"]["bars"] >= 2  # one bar per parameter that varies
    assert counts["slice"]["points"] >= len(complete)
    # the best trial's one survivor: one skip bar, a bar for each rate
    assert counts["skips"]["bars"] == 1 and counts["rates"]["bars"] == 2, (counts["skips"], counts["rates"])


def test_report_without_the_extra_is_one_line(demo: Path, tmp_path: Path) -> None:
    done = winopt("report", str(demo), "-o", str(tmp_path / "r.html"), env=without_module(tmp_path, "plotly"))
    assert done.returncode == 2
    assert done.stderr == ("winopt: error: winopt report needs plotly: install winopt[report] "
                           "(pip install 'winopt[report]')\n")
    assert not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------- winopt dashboard
@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[callable]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> str:
        log = tmp_path / f"dashboard-{len(procs)}.log"
        with open(log, "wb") as fh:
            procs.append(subprocess.Popen([sys.executable, "-u", "-m", "winopt", "dashboard", *argv],
                                          stdout=fh, stderr=subprocess.STDOUT, cwd=REPO))
        proc = procs[-1]
        return wait_for(lambda: proc.poll() is None and dashboard_url(log) or
                        (proc.poll() is not None and pytest.fail(log.read_text())), 60, "the dashboard's URL")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: SIGINT may be ignored when the tests run in the background
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_dashboard_serves_the_runs_study_on_localhost(demo: Path, dashboard) -> None:
    url = dashboard(str(demo), "--port", "0")
    assert url.startswith("http://127.0.0.1:")
    assert wait_for(lambda: study_names(url), 60, "optuna-dashboard's /api/studies") == [demo.name]


def test_dashboard_without_the_extra_is_one_line(demo: Path, tmp_path: Path) -> None:
    done = winopt("dashboard", str(demo), "--port", "0", env=without_module(tmp_path, "optuna_dashboard"))
    assert done.returncode == 2
    assert done.stderr == ("winopt: error: winopt dashboard needs optuna-dashboard: install winopt[dashboard] "
                           "(pip install 'winopt[dashboard]')\n")
