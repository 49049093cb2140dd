"""`winopt evaluate`: one test per SPEC §4 rule, on real snapshot files, with a frozen `now`."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from winopt.cli import main
from winopt.contracts.schemas import CONFIG_NAME, SURVIVORS_NAME
from winopt.contracts.errors import UserError
from winopt.handlers.convert.to_npz import convert
from winopt.contracts.strict import parse_duration
from winopt.handlers.evaluate.rules import EXIT_CODES, decide, decision_for_bad_survivors, evaluate
from winopt.handlers.evaluate.thresholds import Thresholds

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
RECENT = (NOW - timedelta(minutes=5)).isoformat()


def snapshot(**fields: object) -> dict:
    """An in_progress snapshot updated five minutes before NOW, then `fields`. It has no
    chance expectation unless given (the count rules then decide; with one, a best far
    above it is significant: see the significance cases)."""
    base = {
        "schema_version": 2,
        "status": "in_progress",
        "completed_trials": 10,
        "total_trials": 50,
        "last_updated": RECENT,
        "best_bidirectional_count": 2000,
        "expected_chance_bidirectional": ...,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def run_dir(tmp_path: Path, **fields: object) -> Path:
    (tmp_path / CONFIG_NAME).write_bytes(orjson.dumps(snapshot(**fields)))
    return tmp_path


# Each case: snapshot fields -> (action, confidence, rule, words the reasoning must hold)
RULES = {
    # in_progress
    "in-progress-promising": (
        {"best_bidirectional_count": 1001},
        ("wait", 0.7, "promising", "1001"),
    ),
    "in-progress-early": (
        {"best_bidirectional_count": 1000, "completed_trials": 25},
        ("wait", 0.5, "early", "25/50"),
    ),
    "in-progress-poor-past-half": (
        {"best_bidirectional_count": 1000, "completed_trials": 26},
        ("retry", 0.4, "poor", "26/50"),
    ),
    "in-progress-no-trial-yet": (
        {
            "best_bidirectional_count": None,
            "note": "No successful trials yet",
            "completed_trials": 0,
        },
        ("wait", 0.5, "early", "none yet"),
    ),
    # a schema 3 snapshot before any successful trial: counts 0 (the old watcher needs
    # integers), best_trial_number null: no best yet, not a best of 0
    "in-progress-no-trial-yet-integer-counts": (
        {
            "schema_version": 3,
            "best_trial_number": None,
            "best_bidirectional_count": 0,
            "bidirectional_count": 0,
            "note": "No successful trials yet",
            "completed_trials": 0,
        },
        ("wait", 0.5, "early", "none yet"),
    ),
    "in-progress-no-trial-past-half-integer-counts": (
        {"schema_version": 3, "best_trial_number": None, "best_bidirectional_count": 0,
         "bidirectional_count": 0, "completed_trials": 30},
        ("retry", 0.4, "poor", "best only none yet"),
    ),
    "interrupted-before-any-trial-integer-counts": (
        {"status": "interrupted", "error": "SIGINT", "schema_version": 3,
         "best_trial_number": None, "best_bidirectional_count": 0, "bidirectional_count": 0},
        ("retry", 0.3, "interrupted", "best none yet: SIGINT"),
    ),
    "in-progress-nothing-past-half": (
        {"best_bidirectional_count": None, "completed_trials": 30},
        ("retry", 0.4, "poor", "best only none yet"),
    ),
    "in-progress-stalled": (
        {"last_updated": (NOW - timedelta(hours=2, minutes=1)).isoformat()},
        ("retry", 0.3, "stalled", "2h 1m"),
    ),
    "in-progress-not-yet-stalled": (
        {"last_updated": (NOW - timedelta(hours=1, minutes=59)).isoformat()},
        ("wait", 0.7, "promising", "2000"),
    ),
    # significance (SPEC §4): before the count rules, a best the chance expectation does not
    # explain; a planted seed found alone is the case it exists for
    "complete-planted-seed-alone": (
        {"status": "complete", "best_bidirectional_count": 1,
         "expected_chance_bidirectional": 5.4e-14},
        ("proceed", 0.95, "complete_significant", "Poisson tail 5.4e-14"),
    ),
    "complete-significant-below-the-tiers": (
        {"status": "complete", "best_bidirectional_count": 12,
         "expected_chance_bidirectional": 0.5},
        ("proceed", 0.95, "complete_significant", "chance expects 0.5"),
    ),
    "complete-not-significant": (
        {"status": "complete", "best_bidirectional_count": 12,
         "expected_chance_bidirectional": 4.0},
        ("retry", 0.4, "complete_few", "12"),
    ),
    "in-progress-significant": (
        {"best_bidirectional_count": 3, "expected_chance_bidirectional": 1e-9},
        ("wait", 0.8, "significant_running", "a finding chance does not explain"),
    ),
    "in-progress-stalled-beats-significant": (
        {"best_bidirectional_count": 3, "expected_chance_bidirectional": 1e-9,
         "last_updated": (NOW - timedelta(hours=3)).isoformat()},
        ("retry", 0.3, "stalled", "3h"),
    ),
    # complete tiers
    "complete-high": (
        {"status": "complete", "best_bidirectional_count": 10001},
        ("proceed", 0.95, "complete_high", "10001"),
    ),
    "complete-mid": (
        {"status": "complete", "best_bidirectional_count": 10000},
        ("proceed", 0.80, "complete_mid", "10000"),
    ),
    "complete-min": (
        {"status": "complete", "best_bidirectional_count": 1000},
        ("proceed", 0.60, "complete_min", "1000"),
    ),
    "complete-min-edge": (
        {"status": "complete", "best_bidirectional_count": 50},
        ("proceed", 0.60, "complete_min", "50"),
    ),
    "complete-few": (
        {"status": "complete", "best_bidirectional_count": 49},
        ("retry", 0.4, "complete_few", "49"),
    ),
    "complete-one": (
        {"status": "complete", "best_bidirectional_count": 1},
        ("retry", 0.4, "complete_few", " 1 "),
    ),
    "complete-zero": (
        {"status": "complete", "best_bidirectional_count": 0},
        ("escalate", 0.9, "complete_zero", " 0 "),
    ),
    "complete-ignores-age": (
        {
            "status": "complete",
            "best_bidirectional_count": 60,
            "last_updated": "2020-01-01T00:00:00+00:00",
        },
        ("proceed", 0.60, "complete_min", "60"),
    ),
    # ended early
    "interrupted": (
        {"status": "interrupted", "error": "SIGTERM"},
        ("retry", 0.3, "interrupted", "SIGTERM"),
    ),
    "failed": (
        {"status": "failed", "error": "ValueError: window too large"},
        ("retry", 0.3, "failed", "ValueError: window too large"),
    ),
    # no status: an old file, judged as complete
    "no-status": (
        {"status": ..., "best_bidirectional_count": 20000},
        ("proceed", 0.95, "complete_high", "20000"),
    ),
    # malformed
    "unknown-status": ({"status": "paused"}, ("escalate", 0.0, "malformed", "paused")),
    "best-not-a-number": (
        {"best_bidirectional_count": "many"},
        ("escalate", 0.0, "malformed", "best_bidirectional_count"),
    ),
    "best-negative": (
        {"best_bidirectional_count": -3},
        ("escalate", 0.0, "malformed", "best_bidirectional_count"),
    ),
    "trials-fractional": (
        {"completed_trials": 2.5},
        ("escalate", 0.0, "malformed", "completed_trials"),
    ),
}


@pytest.mark.parametrize("case", list(RULES))
def test_rule(tmp_path, case):
    fields, (action, confidence, rule, words) = RULES[case]
    decision = evaluate(run_dir(tmp_path, **fields), now=NOW)
    assert (decision["action"], decision["confidence"], decision["rule"]) == (
        action,
        confidence,
        rule,
    )
    assert words in decision["reasoning"], decision["reasoning"]
    assert decision["evaluated_at"] == NOW.isoformat()
    assert decision["path"] == str(tmp_path / CONFIG_NAME)


def test_missing_config_retries(tmp_path):
    for target in (tmp_path, tmp_path / CONFIG_NAME, tmp_path / "not-created-yet"):
        decision = evaluate(target, now=NOW)
        assert (decision["action"], decision["confidence"]) == ("retry", 0.0)
        assert "output file not yet created" in decision["reasoning"]
        typo = target.name == "not-created-yet"  # neither a directory nor a config file
        assert decision["warnings"] == ([f"{target} does not exist"] if typo else [])
    decision = evaluate(tmp_path / "gone" / CONFIG_NAME, now=NOW)
    assert decision["warnings"] == [f"{tmp_path / 'gone' / CONFIG_NAME} does not exist"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[1, 2]", b'"complete"', b"\xff\xfe"],
    ids=["bad-json", "empty", "list", "string", "not-utf8"],
)
def test_unreadable_or_not_an_object_escalates(tmp_path, content):
    (tmp_path / CONFIG_NAME).write_bytes(content)
    decision = evaluate(tmp_path, now=NOW)
    assert (decision["action"], decision["confidence"], decision["rule"]) == (
        "escalate",
        0.0,
        "unreadable",
    )
    assert str(tmp_path / CONFIG_NAME) in decision["reasoning"]


def test_config_that_cannot_be_read_escalates(tmp_path):
    (tmp_path / CONFIG_NAME).mkdir()  # read() fails: EISDIR
    decision = evaluate(tmp_path / CONFIG_NAME / "..", now=NOW)
    assert (decision["action"], decision["rule"]) == ("escalate", "unreadable")
    assert "cannot read" in decision["reasoning"]


def test_decide_on_a_snapshot_in_hand():
    decision = decide({"status": "complete", "best_bidirectional_count": 5}, now=NOW)
    assert decision["path"] is None and (decision["action"], decision["confidence"]) == (
        "retry",
        0.4,
    )


def test_no_status_is_treated_as_complete_with_a_warning(tmp_path):
    decision = evaluate(run_dir(tmp_path, status=..., best_bidirectional_count=5), now=NOW)
    assert decision["status"] == "complete" and decision["action"] == "retry"
    assert any("no status" in w for w in decision["warnings"])


def test_old_schema_file(tmp_path):
    """A pre-winopt config: window params and counts, no status, no best_* fields."""
    old = {
        "window_size": 40,
        "offset": 10,
        "skip_min": 0,
        "skip_max": 20,
        "forward_threshold": 0.4,
        "reverse_threshold": 0.5,
        "time_of_day": "all",
        "forward_count": 90000,
        "reverse_count": 85000,
        "bidirectional_count": 1234,
    }
    (tmp_path / CONFIG_NAME).write_text(json.dumps(old))
    decision = evaluate(tmp_path, now=NOW)
    assert (decision["action"], decision["confidence"]) == ("proceed", 0.80)
    assert decision["best_bidirectional_count"] == 1234
    assert decision["completed_trials"] is None and "?/? trials" in decision["reasoning"]


def test_best_value_float_is_read_when_best_count_missing(tmp_path):
    decision = evaluate(
        run_dir(tmp_path, status="complete", best_bidirectional_count=..., best_value=12000.0),
        now=NOW,
    )
    assert decision["best_bidirectional_count"] == 12000 and decision["action"] == "proceed"


def test_complete_without_any_count_counts_as_zero(tmp_path):
    decision = evaluate(run_dir(tmp_path, status="complete", best_bidirectional_count=...), now=NOW)
    assert decision["action"] == "escalate" and decision["confidence"] == 0.9
    assert any("no best count" in w for w in decision["warnings"])


def test_complete_without_a_successful_trial_is_zero_with_the_warning(tmp_path):
    """Every trial pruned: a schema 3 file says 0 in its counts and null in
    best_trial_number; judged as before the counts were integers (escalate, warned)."""
    fields = {"status": "complete", "schema_version": 3, "best_trial_number": None,
              "best_bidirectional_count": 0, "bidirectional_count": 0}
    decision = evaluate(run_dir(tmp_path, **fields), now=NOW)
    assert (decision["action"], decision["rule"]) == ("escalate", "complete_zero")
    assert decision["best_bidirectional_count"] is None
    assert any("no best count" in w for w in decision["warnings"])
    # a best trial that found nothing is a real best of 0: no warning
    decision = evaluate(run_dir(tmp_path, **{**fields, "best_trial_number": 4}), now=NOW)
    assert (decision["action"], decision["best_bidirectional_count"]) == ("escalate", 0)
    assert decision["warnings"] == []


def test_old_file_with_a_null_best_trial_keeps_its_count(tmp_path):
    """A pre-winopt file (no schema_version) may carry best_trial_number null from its
    incremental saves: its bidirectional_count still counts."""
    old = {"status": "complete", "best_trial_number": None, "bidirectional_count": 33320}
    (tmp_path / CONFIG_NAME).write_text(json.dumps(old))
    decision = evaluate(tmp_path, now=NOW)
    assert decision["best_bidirectional_count"] == 33320 and decision["action"] == "proceed"


def test_naive_last_updated_is_local_time(tmp_path):
    """The pre-winopt writer used datetime.now().isoformat(): no offset, local time."""
    local_now = NOW.astimezone()
    stamp = (local_now - timedelta(minutes=30)).replace(tzinfo=None).isoformat()
    decision = evaluate(run_dir(tmp_path, last_updated=stamp), now=NOW)
    assert decision["rule"] == "promising"
    stamp = (local_now - timedelta(hours=3)).replace(tzinfo=None).isoformat()
    assert evaluate(run_dir(tmp_path, last_updated=stamp), now=NOW)["rule"] == "stalled"


def test_missing_last_updated_stalls_by_file_mtime(tmp_path):
    target = run_dir(tmp_path, last_updated=...)
    old = (NOW - timedelta(hours=5)).timestamp()
    os.utime(target / CONFIG_NAME, (old, old))
    decision = evaluate(target, now=NOW)
    assert decision["rule"] == "stalled" and any("mtime" in w for w in decision["warnings"])
    fresh = (NOW - timedelta(minutes=1)).timestamp()
    os.utime(target / CONFIG_NAME, (fresh, fresh))
    assert evaluate(target, now=NOW)["rule"] == "promising"


def test_bad_last_updated_warns_and_uses_mtime(tmp_path):
    target = run_dir(tmp_path, last_updated="yesterday")
    recent = (NOW - timedelta(minutes=1)).timestamp()
    os.utime(target / CONFIG_NAME, (recent, recent))
    decision = evaluate(target, now=NOW)
    assert decision["action"] == "wait" and any("yesterday" in w for w in decision["warnings"])


def test_future_last_updated_warns(tmp_path):
    decision = evaluate(
        run_dir(tmp_path, last_updated=(NOW + timedelta(hours=1)).isoformat()), now=NOW
    )
    assert decision["action"] == "wait" and any("future" in w for w in decision["warnings"])


# --- at chance level ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("best", "expected", "warned"),
    [
        (30, 10.0, True),  # best == 3 x expected: still within
        (31, 10.0, False),  # just above
        (1, 0.5, True),
        (1, 0.2, False),  # one survivor where chance expects 0.2: not chance
        (0, 0.0001, False),  # nothing found is not "at chance"
        (0, 50.0, False),
        (5000, None, False),  # no expectation recorded (old file)
    ],
)
def test_chance_level_warning(tmp_path, best, expected, warned):
    fields = {"status": "complete", "best_bidirectional_count": best}
    fields["expected_chance_bidirectional"] = ... if expected is None else expected
    decision = evaluate(run_dir(tmp_path, **fields), now=NOW)
    assert any("at chance level" in w for w in decision["warnings"]) is warned
    assert decision["expected_chance_bidirectional"] == expected


def test_chance_warning_keeps_the_action(tmp_path):
    decision = evaluate(
        run_dir(
            tmp_path,
            status="complete",
            best_bidirectional_count=20000,
            expected_chance_bidirectional=9000.0,
        ),
        now=NOW,
    )
    assert decision["action"] == "proceed" and decision["confidence"] == 0.95
    assert decision["warnings"] == [
        "at chance level: best 20000 <= 3 x expected 9e+03 bidirectional survivors from random draws"
    ]


# --- decision shape, thresholds, bad survivors -------------------------------------------


def test_decision_holds_the_snapshot_fields_used(tmp_path):
    decision = evaluate(run_dir(tmp_path, expected_chance_bidirectional=1900.0), now=NOW)
    assert decision == {
        "action": "wait",
        "confidence": 0.7,
        "reasoning": "In progress: 10/50 trials, best 2000 > 1000: let it run.",
        "warnings": ["at chance level: best 2000 <= 3 x expected 1.9e+03 bidirectional "
                     "survivors from random draws"],
        "evaluated_at": "2026-03-01T12:00:00+00:00",
        "rule": "promising",
        "path": str(tmp_path / CONFIG_NAME),
        "status": "in_progress",
        "completed_trials": 10,
        "total_trials": 50,
        "best_bidirectional_count": 2000,
        "expected_chance_bidirectional": 1900.0,
        "last_updated": RECENT,
        "error": None,
    }
    json.dumps(decision)  # plain JSON types only


def test_thresholds_override_every_tier(tmp_path):
    strict = Thresholds(proceed_min=100, proceed_mid=5000, proceed_high=50000, stall_after=60)
    target = run_dir(tmp_path, status="complete", best_bidirectional_count=60)
    assert evaluate(target, strict, now=NOW)["action"] == "retry"
    assert evaluate(run_dir(tmp_path), strict, now=NOW)["rule"] == "stalled"  # 5 min > 60 s
    chance = Thresholds(chance_factor=10)
    target = run_dir(
        tmp_path, status="complete", best_bidirectional_count=60, expected_chance_bidirectional=7.0
    )
    assert not evaluate(target, now=NOW)["warnings"]
    assert evaluate(target, chance, now=NOW)["warnings"]
    custom = Thresholds(confidence_high=0.99)
    target = run_dir(tmp_path, status="complete", best_bidirectional_count=10**6)
    assert evaluate(target, custom, now=NOW)["confidence"] == 0.99


def test_thresholds_from_mapping(tmp_path):
    t = Thresholds.from_mapping({"stall_after": "90m", "proceed_min": 20, "proceed_mid": 2000.0})
    assert (t.stall_after, t.proceed_min, t.proceed_mid) == (5400.0, 20, 2000)
    cfg = tmp_path / "daemon.toml"
    with pytest.raises(UserError, match=rf"^{cfg}: unknown threshold 'stall'"):
        Thresholds.from_mapping({"stall": 5}, cfg)
    for bad in (
        {"confidence_high": 1.5},
        {"proceed_min": "x"},
        {"proceed_min": 20000},
        {"stall_after": "soon"},
    ):
        with pytest.raises(UserError):
            Thresholds.from_mapping(bad, cfg)


def test_thresholds_check_field_alone_and_tiers_together():
    """A consistent table that moves every tier above the defaults is valid as a whole,
    though proceed_min=2000 alone would break the default order."""
    table = {"proceed_min": 2000, "proceed_mid": 5000.0, "proceed_high": 20000}
    assert [Thresholds.check_field(k, v) for k, v in table.items()] == [2000, 5000, 20000]
    assert Thresholds.from_mapping(table).proceed_mid == 5000
    assert Thresholds.check_field("stall_after", "3h") == 10800.0
    with pytest.raises(UserError, match=r"^threshold confidence_high: 1.5 must be in \[0, 1\]$"):
        Thresholds.check_field("confidence_high", 1.5)
    with pytest.raises(UserError, match="unknown threshold 'stall'"):
        Thresholds.check_field("stall", 1)
    with pytest.raises(UserError, match="proceed_min <= proceed_mid"):
        Thresholds.from_mapping({"proceed_min": 2000})


def test_parse_duration():
    assert [parse_duration(s) for s in ("7200", "90m", "2h", "1.5d", "30s")] == [
        7200,
        5400,
        7200,
        129600,
        30,
    ]
    with pytest.raises(UserError):
        parse_duration("2 weeks")


def test_decision_for_bad_survivors(tmp_path):
    src = tmp_path / SURVIVORS_NAME
    src.write_text('[{"seed": "x"}]')
    with pytest.raises(UserError) as exc_info:
        convert(src)
    decision = decision_for_bad_survivors(src, str(exc_info.value), now=NOW)
    assert (decision["action"], decision["confidence"], decision["rule"]) == (
        "escalate",
        0.0,
        "bad_survivors",
    )
    assert decision["reasoning"].count(str(src)) == 1
    assert (
        "entry 0, seed" in decision["reasoning"] and "previous NPZ stays" in decision["reasoning"]
    )
    assert decision["evaluated_at"] == NOW.isoformat()


# --- the command -------------------------------------------------------------------------


def test_cli_line_json_and_exit_codes(tmp_path, capsys):
    target = run_dir(tmp_path, status="complete", best_bidirectional_count=0)
    assert main(["evaluate", str(target)]) == 0
    line = capsys.readouterr().out
    assert (
        line.startswith("escalate (0.90): Complete after 10/50 trials: best 0 ")
        and line.count("\n") == 1
    )

    assert main(["evaluate", str(target / CONFIG_NAME), "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["action"] == "escalate" and decision["best_bidirectional_count"] == 0

    assert main(["evaluate", str(target), "--exit-code"]) == EXIT_CODES["escalate"] == 5
    assert main(["evaluate", str(tmp_path / "absent"), "--exit-code"]) == EXIT_CODES["retry"]
    capsys.readouterr()


def test_cli_threshold_flags(tmp_path, capsys):
    """The command has no frozen clock: the snapshot is dated from the real one."""
    half_hour_ago = (datetime.now(timezone.utc) - timedelta(minutes=30)).isoformat()
    target = run_dir(tmp_path, last_updated=half_hour_ago)
    assert main(["evaluate", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "promising"
    assert main(["evaluate", str(target), "--json", "--stall-after", "10m"]) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "stalled"
    target = run_dir(tmp_path, status="complete", best_bidirectional_count=40)
    assert main(["evaluate", str(target), "--json", "--proceed-min", "30"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "proceed"
    assert main(["evaluate", str(target), "--proceed-min", "99999"]) == 2  # > proceed_mid
    assert capsys.readouterr().err.startswith("winopt: error: thresholds: ")


def test_poisson_tail() -> None:
    """Exact small cases, a tail far below float's epsilon, and the far side of the mean."""
    from winopt.handlers.evaluate.rules import poisson_tail

    assert poisson_tail(0, 3.0) == 1.0 and poisson_tail(1, 0.0) == 0.0
    assert poisson_tail(1, 2.0) == pytest.approx(1 - math.exp(-2.0), rel=1e-12)
    assert poisson_tail(3, 0.5) == pytest.approx(
        1 - math.exp(-0.5) * (1 + 0.5 + 0.125), rel=1e-9)  # fmt: skip
    assert poisson_tail(1, 5.4e-14) == pytest.approx(5.4e-14, rel=1e-6)
    assert poisson_tail(2, 1e-10) == pytest.approx(5e-21, rel=1e-6)
    assert poisson_tail(5, 50.0) == pytest.approx(1.0, abs=1e-12)
    # at or below chance with counts in the billions: the terms near the mean only (this
    # summed all k terms and took minutes); P(X >= mean - 0.1 sd) ~ 0.5398
    assert poisson_tail(10**9, 10**9 + 0.1 * 10**4.5) == pytest.approx(0.5398, abs=1e-3)
    assert poisson_tail(10**19, 1e300) == 1.0 and poisson_tail(10**9, 0.99e9) == 0.0
    assert poisson_tail(33320, 30000.0) < 1e-6 < poisson_tail(30100, 30000.0)
