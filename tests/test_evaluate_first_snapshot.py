"""`winopt evaluate` on the optimizer's first snapshot (SPEC §3, §4; issue 10 item 4): the
config now carries the old pipeline's keys and integer counts 0 before any successful
trial, and must still decide wait/retry with "none yet", never judge a best of 0.

The snapshot is written out key by key as SPEC §3 lists it, not taken from the optimizer,
so this guards the contract between the two."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from winopt.cli import main
from winopt.contracts.schemas import CONFIG_NAME
from winopt.handlers.evaluate.rules import evaluate

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def first_snapshot(**over: object) -> dict:
    """Every SPEC §3 key of a snapshot written before any successful trial."""
    snap = {
        "schema_version": 3,
        "status": "in_progress",
        "note": "No successful trials yet",
        "error": None,
        "study_name": "winopt-a",
        "started_at": (NOW - timedelta(minutes=6)).isoformat(),
        "completed_at": None,
        "last_updated": (NOW - timedelta(minutes=5)).isoformat(),
        "completed_trials": 0,
        "total_trials": 50,
        "last_trial_number": None,
        "last_trial_value": None,
        "best_trial_number": None,
        "best_value": None,
        "best_bidirectional_count": 0,
        "best_params": None,
        "window_size": None,
        "offset": None,
        "skip_min": None,
        "skip_max": None,
        "forward_threshold": None,
        "reverse_threshold": None,
        "time_of_day": None,
        "prng_type": "java_lcg",
        "mod": 1000,
        "seed_start": 0,
        "seed_count": 1_000_000,
        "forward_count": 0,
        "reverse_count": 0,
        "bidirectional_count": 0,
        "expected_chance_bidirectional": None,
        "survivors_file": None,
        "survivors_sha256": None,
        "survivors_count": None,
        "optimization_score": None,
        "sessions": ["midday", "evening"],
        "test_both_modes": False,
    }
    snap.update(over)
    return snap


def run_dir(tmp_path: Path, snap: dict) -> Path:
    (tmp_path / CONFIG_NAME).write_text(json.dumps(snap))
    return tmp_path


@pytest.mark.parametrize(
    ("over", "action", "confidence", "words"),
    [
        ({}, "wait", 0.5, "0/50 trials, best none yet so far"),
        # trials pruned past half, still nothing: retry, as with null counts
        ({"completed_trials": 30, "last_trial_number": 29}, "retry", 0.4, "best only none yet"),
        # no update for over 2 h: stalled
        (
            {"last_updated": (NOW - timedelta(hours=3)).isoformat()},
            "retry",
            0.3,
            "stalled",
        ),
        ({"status": "interrupted", "error": "SIGINT"}, "retry", 0.3, "best none yet: SIGINT"),
    ],
    ids=["early", "past-half", "stalled", "interrupted"],
)
def test_first_snapshot_decides_as_with_null_counts(tmp_path, over, action, confidence, words):
    decision = evaluate(run_dir(tmp_path, first_snapshot(**over)), now=NOW)
    assert (decision["action"], decision["confidence"]) == (action, confidence)
    assert words in decision["reasoning"], decision["reasoning"]
    assert "best 0" not in decision["reasoning"]
    assert decision["best_bidirectional_count"] is None


def test_first_snapshot_cli_exit_code_is_wait(tmp_path, capsys):
    recent = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    snap = first_snapshot(last_updated=recent)
    assert main(["evaluate", str(run_dir(tmp_path, snap)), "--exit-code"]) == 3
    assert capsys.readouterr().out.startswith("wait (0.50): ")


def test_after_the_first_success_the_count_is_the_best(tmp_path):
    snap = first_snapshot(
        note=None,
        completed_trials=1,
        best_trial_number=0,
        best_value=1500.0,
        best_bidirectional_count=1500,
        bidirectional_count=1500,
        optimization_score=1500.0,
        expected_chance_bidirectional=0.01,
    )
    decision = evaluate(run_dir(tmp_path, snap), now=NOW)
    assert decision["best_bidirectional_count"] == 1500
    assert decision["action"] == "wait" and "best 1500" in decision["reasoning"]


def test_old_pipeline_config_is_read_as_before(tmp_path):
    """A pre-winopt config (no schema_version, no status) is judged by its
    bidirectional_count, as it always was."""
    old = {"window_size": 40, "forward_count": 90000, "bidirectional_count": 33320,
           "optimization_score": 33320.0, "sessions": ["midday", "evening"],
           "test_both_modes": False}  # fmt: skip
    decision = evaluate(run_dir(tmp_path, old), now=NOW)
    assert (decision["action"], decision["confidence"]) == ("proceed", 0.95)
    assert decision["best_bidirectional_count"] == 33320
