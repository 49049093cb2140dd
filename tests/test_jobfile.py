"""The job file format: valid jobs become the right `winopt optimize` argv, every kind of
bad input is one JobError naming the file and the key, and fuzzing finds no other error."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs_support import toml_job, write_plain_history, write_session_history
from winopt.optimizer.space import LIMITS as BOUNDS
from winopt.handlers.jobs.jobfile import (
    KEYS,
    REQUIRED,
    JobError,
    load_job,
    optimize_argv,
    parse_job_bytes,
    validate_job,
)
from winopt.contracts.job import JobSpec


@pytest.fixture
def draws_dir(tmp_path: Path) -> Path:
    d = tmp_path / "draws"
    d.mkdir()
    write_plain_history(d / "plain.json", 200)
    write_session_history(d / "sessions.json", 60)
    return d


def check(raw: Any, draws_dir: Path, **kw: Any) -> JobSpec:
    kw.setdefault("allowed_draws_dirs", [draws_dir])
    kw.setdefault("base_dir", draws_dir)
    return validate_job(raw, source="spool/j.toml", **kw)


VALID = {"draws": "plain.json", "trials": 5}


def test_a_full_toml_job_becomes_the_optimize_argv(tmp_path: Path, draws_dir: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(toml_job(
        draws="sessions.json", trials=12, prng="xorshift32", seed_start=1000, seed_count=5000,
        strategy="random", mod=1000, time_of_day=["midday", "evening"], window_size=[4, 12],
        offset=3, skip_min=[0, 5], skip_max=[10, 100], forward_threshold=[0.2, 0.5],
        reverse_threshold=0.3, name="pick3-mid", rigs=["rig1"], priority=5,
    ))
    spec = load_job(job, allowed_draws_dirs=[draws_dir], base_dir=draws_dir, known_rigs=["rig1", "rig2"])
    assert spec.draws == str((draws_dir / "sessions.json").resolve())
    assert (spec.name, spec.rigs, spec.priority) == ("pick3-mid", ("rig1",), 5)
    argv = optimize_argv(spec, tmp_path / "out")
    assert argv[:4] == [sys.executable, "-m", "winopt", "optimize"]
    opts = dict(zip(argv[4::2], argv[5::2]))
    assert opts == {
        "--draws": spec.draws, "--out": str(tmp_path / "out"), "--trials": "12",
        "--prng": "xorshift32", "--strategy": "random", "--seed-start": "1000",
        "--seed-count": "5000", "--mod": "1000", "--window-size": "4:12", "--offset": "3",
        "--skip-min": "0:5", "--skip-max": "10:100", "--forward-threshold": "0.2:0.5",
        "--reverse-threshold": "0.3", "--time-of-day": "midday,evening",
    }


def test_the_argv_is_accepted_by_the_real_optimize_parser(tmp_path: Path, draws_dir: Path) -> None:
    """The contract with `winopt optimize`: its own parser and search-space check take it."""
    import argparse

    from winopt.cli import optimize as optimize_command

    raw = {**VALID, "window_size": [2, 9], "skip_min": 4, "skip_max": [4, 30],
           "forward_threshold": [0.25, 1], "time_of_day": "all", "seed_count": 10, "cores": 3}
    argv = optimize_argv(check(raw, draws_dir), tmp_path / "out")
    parser = argparse.ArgumentParser()
    optimize_command.add_arguments(parser)
    args = parser.parse_args(argv[4:])
    assert args.cores == 3
    space = optimize_command.search_space(args)
    assert space.bounds["window_size"] == (2, 9)
    assert space.bounds["forward_threshold"] == (0.25, 1.0)
    assert space.time_of_day == ("all",) and args.trials == 5


def test_a_json_job_and_the_spec_round_trip(draws_dir: Path) -> None:
    raw = parse_job_bytes(json.dumps({**VALID, "window_size": 8}).encode(), "j.json", ".json")
    spec = check(raw, draws_dir)
    assert spec.bounds == {"window_size": (8, 8)}
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert "--window-size" in optimize_argv(spec, "/o") and "8" in optimize_argv(spec, "/o")


def test_absent_optional_keys_leave_the_optimizer_defaults(draws_dir: Path) -> None:
    argv = optimize_argv(check(VALID, draws_dir), "/o")
    for opt in ("--seed-count", "--window-size", "--time-of-day", "--storage", "--study"):
        assert opt not in argv


# one case per kind of bad input: (job keys, key named, words in the message)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"trials": 5}, "draws", "missing"),
    ({"draws": "plain.json"}, "trials", "missing"),
    ({**VALID, "frobnicate": 1}, "frobnicate", "unknown key"),
    ({**VALID, "command": "rm -rf /"}, "command", "cannot name a command"),
    ({**VALID, "storage": "sqlite:////etc/x.db"}, "storage", "SQLite file in its job directory"),
    ({**VALID, "trials": True}, "trials", "integer, got boolean"),
    ({**VALID, "trials": 5.0}, "trials", "integer, got number"),
    ({**VALID, "trials": "5"}, "trials", "integer, got string"),
    ({**VALID, "trials": 0}, "trials", "between 1 and"),
    ({**VALID, "prng": "randu"}, "prng", "one of java_lcg"),
    ({**VALID, "cores": 0}, "cores", "between 1"),
    ({**VALID, "strategy": "grid"}, "strategy", "bayesian, random"),
    ({**VALID, "seed_start": -1}, "seed_start", "between 0"),
    ({**VALID, "seed_start": 2**64 - 1, "seed_count": 2}, "seed_count", "passes 2**64"),
    ({**VALID, "seed_start": 2**48 - 1, "seed_count": 2}, "seed_count", "past java_lcg's 2^48"),
    ({**VALID, "prng": "xorshift32", "seed_start": 2**32}, "seed_start", "past xorshift32's 2^32"),
    ({**VALID, "mod": 1}, "mod", "between 2"),
    ({**VALID, "priority": 10**6}, "priority", "between -1000 and 1000"),
    ({**VALID, "window_size": [12, 4]}, "window_size", "empty: lo is above hi"),
    ({**VALID, "window_size": [1, 2, 3]}, "window_size", "two values"),
    ({**VALID, "window_size": 0}, "window_size", "outside 1..10000"),
    ({**VALID, "offset": [0, True]}, "offset", "integer or [lo, hi], got boolean"),
    ({**VALID, "forward_threshold": 0}, "forward_threshold", "outside (0, 1]"),
    ({**VALID, "reverse_threshold": [0.2, 1.5]}, "reverse_threshold", "outside (0, 1]"),
    ({**VALID, "reverse_threshold": math.nan}, "reverse_threshold", "number or [lo, hi]"),
    ({**VALID, "skip_min": 20, "skip_max": [5, 15]}, "skip_max", "cannot hold"),
    ({**VALID, "skip_min": [0, 300]}, "skip_min", "cannot hold"),
    ({**VALID, "time_of_day": "noon"}, "time_of_day", "all, midday, evening"),
    ({**VALID, "time_of_day": []}, "time_of_day", "empty list"),
    ({**VALID, "time_of_day": ["all", "all"]}, "time_of_day", "twice"),
    ({**VALID, "name": "../etc"}, "name", "is not a name"),
    ({**VALID, "name": "a/b"}, "name", "is not a name"),
    ({**VALID, "name": "bad\x07bell"}, "name", "is not a name"),
    ({**VALID, "name": "x" * 65}, "name", "is not a name"),
    ({**VALID, "name": 7}, "name", "must be a string"),
    ({**VALID, "rigs": "rig1"}, "rigs", "list of rig names"),
    ({**VALID, "rigs": ["rig1", "rig1"]}, "rigs", "twice"),
    ({**VALID, "rigs": ["rig9"]}, "rigs", "unknown rig 'rig9'"),
    ({**VALID, "draws": 5}, "draws", "path string"),
    ({**VALID, "draws": "nope.json"}, "draws", "No such file"),
    ({**VALID, "draws": "/etc/passwd"}, "draws", "not under an allowed draws directory"),
    ({**VALID, "draws": "../outside.json"}, "draws", "not under an allowed draws directory"),
    ({**VALID, "draws": "escape.json"}, "draws", "not under an allowed draws directory"),
    ({**VALID, "draws": "bad.json"}, "draws", "not valid JSON"),
    ({**VALID, "draws": "badentry.json"}, "draws", "entry 2"),
    ({**VALID, "draws": "sub"}, "draws", "not a regular file"),
    ({**VALID, "draws": "a\nb.json"}, "draws", "control characters"),
    ({**VALID, "window_size": 150}, "window_size", "fewer than 2 * window_size = 300"),
    ({**VALID, "time_of_day": "midday"}, "draws", "selects nothing"),
]


@pytest.mark.parametrize(("raw", "key", "words"), BAD, ids=[f"{k}:{w[:24]}" for _, k, w in BAD])
def test_each_kind_of_bad_job_names_file_and_key(raw: dict[str, Any], key: str, words: str,
                                                 tmp_path: Path, draws_dir: Path) -> None:
    (tmp_path / "outside.json").write_text("[1, 2, 3, 4, 5, 6]")
    (draws_dir / "escape.json").symlink_to(tmp_path / "outside.json")
    (draws_dir / "bad.json").write_text("[1, 2,")
    (draws_dir / "badentry.json").write_text("[1, 2, 3000, 4]")
    (draws_dir / "sub").mkdir()
    with pytest.raises(JobError) as caught:
        check(raw, draws_dir, known_rigs=["rig1"])
    message = str(caught.value)
    assert message.startswith(f"spool/j.toml: {key}: "), message
    assert words in message
    assert "\n" not in message


def test_a_relative_draws_path_needs_a_base_directory(draws_dir: Path) -> None:
    with pytest.raises(JobError, match="draws: 'plain.json' is relative"):
        check(VALID, draws_dir, base_dir=None)
    absolute = {**VALID, "draws": str(draws_dir / "plain.json")}
    assert check(absolute, draws_dir, base_dir=None).draws == str((draws_dir / "plain.json").resolve())


def test_no_allowed_directories_refuses_every_draws_file(draws_dir: Path) -> None:
    with pytest.raises(JobError, match="none configured"):
        check(VALID, draws_dir, allowed_draws_dirs=[])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_draws_file_is_refused(draws_dir: Path) -> None:
    (draws_dir / "plain.json").chmod(0)
    with pytest.raises(JobError, match="draws: .*ermission denied"):
        check(VALID, draws_dir)


@pytest.mark.parametrize(("data", "suffix", "words"), [
    (b"trials = ", ".toml", "not valid TOML"),
    (b'{"trials": 1, "trials": 2}', ".json", "appears twice"),
    (b"[1, 2]", ".json", "expected a table of job keys, got list"),
    (b"\xff\xfe", ".toml", "not UTF-8"),
    (b"x" * 70_000, ".toml", "too large"),
    (b"trials = 1", ".yaml", "not a job file"),
    (b"[" * 5000 + b"]" * 5000, ".json", "nested too deeply"),
])
def test_unparsable_files_name_the_file(data: bytes, suffix: str, words: str) -> None:
    with pytest.raises(JobError) as caught:
        parse_job_bytes(data, "spool/x" + suffix, suffix)
    assert str(caught.value).startswith("spool/x" + suffix + ": ")
    assert words in str(caught.value)


# ---------------------------------------------------------------------------- fuzzing

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
           | st.text(max_size=12) | st.sampled_from(["plain.json", "midday", "all", "random", "x/y"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
near_values = st.one_of(
    st.integers(-3, 300), st.floats(-0.5, 1.5), st.lists(st.integers(-3, 300), min_size=2, max_size=2),
    st.lists(st.floats(0, 1.2), min_size=2, max_size=2), st.sampled_from(["all", "midday", ["evening"]]),
)
keys = st.sampled_from(KEYS) | st.text(max_size=10)
jobs = st.dictionaries(keys, values | near_values, max_size=7)


def expect_only_job_errors(raw: Any, draws_dir: Path) -> None:
    try:
        check(raw, draws_dir, known_rigs=["rig1"])
    except JobError as exc:
        message = str(exc)
        assert exc.key is not None, message
        assert message.startswith(f"spool/j.toml: {exc.key}: ")
        present = {k if isinstance(k, str) and k.isprintable() and 0 < len(k) <= 40 else None
                   for k in raw}
        assert exc.key in present or exc.key in REQUIRED or not exc.key.isidentifier(), message
        assert "\n" not in message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs)
def test_fuzz_arbitrary_tables_raise_only_job_errors(draws_dir: Path, raw: dict[str, Any]) -> None:
    expect_only_job_errors(raw, draws_dir)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from([*BOUNDS, "time_of_day", "seed_start", "seed_count",
                                         "prng", "name", "rigs", "priority", "mod"]),
                       values | near_values, max_size=5))
def test_fuzz_valid_base_with_fuzzed_keys(draws_dir: Path, extra: dict[str, Any]) -> None:
    """Starting from a valid job reaches the deep checks (ranges, draws, cross-checks)."""
    expect_only_job_errors({**VALID, **extra}, draws_dir)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200) | st.dictionaries(st.sampled_from(KEYS), near_values, max_size=6).map(
    lambda d: toml_job(**{"draws": "plain.json", "trials": 3, **d})), st.sampled_from([".toml", ".json"]))
def test_fuzz_arbitrary_text_raises_only_job_errors(draws_dir: Path, text: str, suffix: str) -> None:
    try:
        raw = parse_job_bytes(text.encode(), "spool/j" + suffix, suffix)
    except JobError as exc:
        assert str(exc).startswith("spool/j" + suffix + ": ") and exc.key is None
        return
    expect_only_job_errors(raw, draws_dir)


def test_the_commented_example_is_a_valid_job(tmp_path: Path) -> None:
    """The shipped example job (winopt/job.example.toml) against the bundled sample history it names."""
    repo = Path(__file__).resolve().parents[1]
    samples = repo / "samples"
    spec = load_job(repo / "winopt" / "job.example.toml", allowed_draws_dirs=[samples], base_dir=samples)
    assert spec.draws == str((samples / "planted_java_lcg.json").resolve())
    assert (spec.name, spec.trials, spec.bounds["window_size"]) == ("planted-demo", 20, (2, 50))
    assert "--out" in optimize_argv(spec, tmp_path)
