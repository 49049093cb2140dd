"""`winopt synth` then `winopt sieve`, through the CLI: every family recovers its planted
seed, the survivors JSON is exactly SPEC §3, time_of_day matters, and bad input is one
line with exit 2."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polling import poll
from winopt.cli import main
from winopt.contracts.schemas import OVERLAP_FIELDS
from winopt.contracts.survivors import SURVIVOR_FIELDS
from winopt.optimizer.sieve.generators import FAMILIES, family, seed_state
from winopt.optimizer.sieve.core import SieveParams, SieveResult
from winopt.optimizer.survivors import survivor_records
from winopt.optimizer.synth import truth_path

#: (seed, pivot, skip, draws, window, forward threshold, reverse threshold, sessions): each
#: makes a chance survivor improbable (< 1e-5 expected over the seeds and skips scanned);
#: the sieve's window is [pivot - window, pivot + window)
CASES = [
    (12345, 20, 0, 40, 4, 0.75, 0.75, "none"),
    (2**30 + 5, 31, 3, 70, 10, 0.5, 0.4, "midday,evening"),
    (987654321, 12, 7, 30, 12, 0.34, 0.5, "evening"),
]
SEEDS_BELOW, SEEDS_ABOVE = 200, 600


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def synth(tmp_path: Path, prng: str, seed: int, skip: int, draws: int, *extra: str) -> Path:
    out = tmp_path / f"{prng}-{seed}-{skip}.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            main(
                [
                    "synth",
                    "--prng",
                    prng,
                    "--seed",
                    str(seed),
                    "--skip",
                    str(skip),
                    "--draws",
                    str(draws),
                    *extra,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    return out


def sieve_args(
    path: Path,
    prng: str,
    window: int,
    offset: int,
    skips: tuple[int, int],
    thresholds: tuple[float, float],
    seeds: tuple[int, int],
    *extra: str,
) -> list[str]:
    return [
        "sieve",
        "--draws",
        str(path),
        "--prng",
        prng,
        "--window-size",
        str(window),
        "--offset",
        str(offset),
        "--skip-min",
        str(skips[0]),
        "--skip-max",
        str(skips[1]),
        "--forward-threshold",
        str(thresholds[0]),
        "--reverse-threshold",
        str(thresholds[1]),
        "--seed-start",
        str(seeds[0]),
        "--seed-count",
        str(seeds[1]),
        *extra,
    ]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"W{c[4]}-skip{c[2]}")
@pytest.mark.parametrize("prng", FAMILIES)
def test_planted_seed_is_the_only_survivor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prng: str, case: tuple[Any, ...]
) -> None:
    state, at, skip, draws, window, fwd, rev, sessions = case
    path = synth(tmp_path, prng, state, skip, draws, "--sessions", sessions)
    skips = (max(0, skip - 2), skip + 3)
    seeds = (state - SEEDS_BELOW, SEEDS_BELOW + SEEDS_ABOVE)
    code, out, err = run_cli(
        capsys, *sieve_args(path, prng, window, at - window, skips, (fwd, rev), seeds, "--json")
    )
    assert code == 0, err
    records = json.loads(out)
    assert [r["seed"] for r in records] == [state], records
    (hit,) = records
    assert list(hit) == list(SURVIVOR_FIELDS)
    assert hit == {
        "seed": state,
        "skip": skip,
        "forward_match_rate": 1.0,
        "reverse_match_rate": 1.0,
        "score": 1.0,
        "window_size": window,
        "offset": at - window,
        "skip_min": skips[0],
        "skip_max": skips[1],
        "skip_range": skips[1] - skips[0],
        "time_of_day": "all",
        "trial_number": 0,
        "prng_type": prng,
        "skip_mode": "constant",
        "forward_count": hit["forward_count"],
        "reverse_count": hit["reverse_count"],
        "bidirectional_count": 1,
        **{name: hit[name] for name in OVERLAP_FIELDS},
    }
    assert hit["forward_count"] >= 1 and hit["reverse_count"] >= 1
    assert hit["intersection_count"] == 1
    assert "bidirectional 1" in err and "chance expectation" in err


def test_time_of_day_selection_matters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Planted only in the evening draws: found with evening, noise for midday and all."""
    path = synth(tmp_path, "minstd", 5150, 2, 60, "--plant-in", "evening")
    args = sieve_args(path, "minstd", 8, 22, (0, 4), (0.5, 0.5), (5000, 500), "--json")
    found = {}
    for selection in ("evening", "midday", "all"):
        code, out, err = run_cli(capsys, *args, "--time-of-day", selection)
        assert code == 0, err
        found[selection] = [(r["seed"], r["skip"], r["time_of_day"]) for r in json.loads(out)]
    assert found == {"evening": [(5150, 2, "evening")], "midday": [], "all": []}


def test_table_output_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = synth(tmp_path, "java_lcg", 424242, 1, 50)
    code, out, err = run_cli(
        capsys, *sieve_args(path, "java_lcg", 6, 19, (0, 3), (0.5, 0.5), (424000, 500))
    )
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "bidirectional 1 (chance expectation" in out
    assert lines[-2].split() == ["seed", "skip", "forward", "reverse", "score"]
    assert lines[-1].split() == ["424242", "1", "1.000", "1.000", "1.000"]


def test_clamped_offset_is_noted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = synth(tmp_path, "lcg32", 77, 0, 20, "--sessions", "none")
    code, out, err = run_cli(
        capsys, *sieve_args(path, "lcg32", 5, 90, (0, 0), (1.0, 1.0), (0, 100))
    )
    assert code == 0, err
    assert "offset 90 clamped to 10" in out
    assert out.splitlines()[-1].split() == ["77", "0", "1.000", "1.000", "1.000"]


def test_history_too_short_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = synth(tmp_path, "pcg32", 1, 0, 10)
    code, out, err = run_cli(capsys, *sieve_args(path, "pcg32", 6, 0, (0, 1), (0.5, 0.5), (0, 10)))
    assert code == 2 and out == ""
    assert (
        err.startswith(f"winopt: error: {path}: history has 10 draws") and err.count("\n") == 1
    ), err
    code, out, err = run_cli(
        capsys,
        *sieve_args(path, "pcg32", 3, 0, (0, 1), (0.5, 0.5), (0, 10)),
        "--time-of-day",
        "evening",
    )
    assert code == 2 and out == ""
    assert err.startswith(f"winopt: error: {path}: history has 5 draws") and err.endswith(
        "(time_of_day evening)\n"
    ), err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--skip-min": "5", "--skip-max": "3"}, "--skip-min <= --skip-max"),
        ({"--forward-threshold": "1.5"}, "--forward-threshold must lie in [0, 1]"),
        ({"--window-size": "0"}, "--window-size must be at least 1"),
        ({"--seed-count": "0"}, "--seed-count >= 1"),
        ({"--mod": "0"}, "mod must be a positive integer"),
        ({"--mod": "1"}, "--mod must lie in [2, 2^32]"),
        ({"--seed-start": str(2**48 - 5)}, "reaches past java_lcg's 2^48 seeds"),
    ],
)
def test_bad_parameters_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(list(range(50))))
    argv = sieve_args(path, "java_lcg", 4, 0, (0, 1), (0.5, 0.5), (0, 10), "--mod", "1000")
    for flag, value in change.items():
        argv[argv.index(flag) + 1] = value
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("winopt: error: ") and message in err and err.count("\n") == 1, err


def test_thresholds_are_required(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = sieve_args(tmp_path / "d.json", "java_lcg", 4, 0, (0, 1), (0.5, 0.5), (0, 10))
    at = argv.index("--reverse-threshold")
    del argv[at : at + 2]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "--reverse-threshold" in capsys.readouterr().err


def test_json_goes_to_stdout_alone_in_a_real_process(tmp_path: Path) -> None:
    path = synth(tmp_path, "xorshift32", 99, 1, 16)
    argv = sieve_args(path, "xorshift32", 4, 4, (0, 2), (0.75, 0.75), (90, 20), "--json")
    proc = subprocess.run(
        [sys.executable, "-m", "winopt", *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["seed"] for r in json.loads(proc.stdout)] == [99]
    assert "bidirectional 1" in proc.stderr and "Traceback" not in proc.stderr
    assert "\r" not in proc.stderr and "/20 [" not in proc.stderr  # no progress bar into a pipe


def test_cores_1_and_the_default_give_identical_survivors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = synth(tmp_path, "xorshift128", 4321, 2, 40)
    args = sieve_args(path, "xorshift128", 5, 10, (0, 4), (0.4, 0.4), (0, 20_000), "--json")
    outs = []
    for extra in (["--cores", "1"], [], ["--cores", "64"]):
        code, out, err = run_cli(capsys, *args, *extra)
        assert code == 0, err
        outs.append(out)
    assert outs[0] == outs[1] == outs[2]
    assert 4321 in [r["seed"] for r in json.loads(outs[0])]


def test_ctrl_c_stops_a_long_sieve_within_seconds(tmp_path: Path) -> None:
    """SIGINT while every core is busy: the process is gone within seconds (a few tenths
    on a quiet box; the sieve itself would take hours), exit 130."""
    path = synth(tmp_path, "xorshift64", 5, 0, 400)
    argv = sieve_args(path, "xorshift64", 50, 100, (0, 250), (0.1, 0.1), (0, 10**9), "--json")
    proc = subprocess.Popen([sys.executable, "-m", "winopt", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        threads = Path(f"/proc/{proc.pid}/task")
        assert poll(lambda: len(list(threads.iterdir())) > 2, 60), "the sieve threads never started"
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert proc.wait(timeout=10) == 130
        assert time.monotonic() - started < 3.0
    finally:
        proc.kill()
        proc.wait()


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    """stderr on a pty gets a tqdm bar; the piped run above got none."""
    path = synth(tmp_path, "java_lcg", 3, 0, 16)
    argv = sieve_args(path, "java_lcg", 4, 4, (0, 2), (0.75, 0.75), (0, 5000), "--json")
    master, slave = pty.openpty()
    fcntl.ioctl(
        slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0)
    )  # a 0x0 pty hides the bar
    with subprocess.Popen(
        [sys.executable, "-m", "winopt", *argv], stdout=subprocess.PIPE, stderr=slave
    ) as proc:
        os.close(slave)
        stdout = proc.stdout.read() if proc.stdout else b""
        terminal = read_all(master)
        assert proc.wait(timeout=120) == 0
    assert [r["seed"] for r in json.loads(stdout)] == [3]
    assert "/5.00k [" in terminal, terminal  # tqdm's "n/total [elapsed...]" of 5000 seeds


def read_all(fd: int) -> str:
    """Everything written to a pty until its last writer closes it."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


# --- survivor_records on its own ------------------------------------------------------


def result_of(
    seeds: list[int], skips: list[int], fwd: list[float], rev: list[float]
) -> SieveResult:
    params = SieveParams(
        prng="xorshift64",
        window_size=10,
        offset=3,
        skip_min=2,
        skip_max=9,
        forward_threshold=0.2,
        reverse_threshold=0.3,
        seed_start=0,
        seed_count=2**64,
    )
    return SieveResult(
        params=params,
        seeds=np.array(seeds, dtype=np.uint64),
        skips=np.array(skips, dtype=np.int64),
        forward_rate=np.array(fwd),
        reverse_rate=np.array(rev),
        forward_count=40,
        reverse_count=30,
        bidirectional_count=len(seeds),
        expected_chance_bidirectional=0.5,
        notes=[],
        forward_reverse_count=10,
    )


def test_survivor_records_are_plain_sorted_and_complete() -> None:
    big = 2**64 - 1
    result = result_of([big, 7, 2**32], [9, 2, 5], [0.2, 1.0, 0.5], [0.3, 0.9, 0.6])
    records = survivor_records(result, time_of_day="midday", trial_number=12)
    assert [r["seed"] for r in records] == [7, 2**32, big]
    assert all(list(r) == list(SURVIVOR_FIELDS) for r in records)
    assert records[0] == {
        "seed": 7,
        "skip": 2,
        "forward_match_rate": 1.0,
        "reverse_match_rate": 0.9,
        "score": 0.95,
        "window_size": 10,
        "offset": 3,
        "skip_min": 2,
        "skip_max": 9,
        "skip_range": 7,
        "time_of_day": "midday",
        "trial_number": 12,
        "prng_type": "xorshift64",
        "skip_mode": "constant",
        "forward_count": 40,
        "reverse_count": 30,
        "bidirectional_count": 3,
        # |F| 40, |R| 30, |F ∩ R| 10, |B| 3: |F ∪ R| 60, |F − R| 30, |R − F| 20
        "intersection_count": 3,
        "intersection_ratio": 3 / 60,
        "forward_only_count": 30,
        "reverse_only_count": 20,
        "survivor_overlap_ratio": 3 / 40,
        "bidirectional_selectivity": 40 / 30,
        "intersection_weight": 3 / 70,
    }
    assert records[2]["score"] == pytest.approx(0.25)
    plain = (int, float, str)
    assert all(type(v) in plain for r in records for v in r.values())
    assert json.loads(json.dumps(records)) == records  # the standard library encodes them


def test_survivor_records_of_an_empty_result() -> None:
    assert survivor_records(result_of([], [], [], []), time_of_day="all", trial_number=0) == []


# --- winopt demo ----------------------------------------------------------------------


def test_demo_finds_the_bundled_planted_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "demo", "--out", str(tmp_path / "demo"))
    assert code == 0, out + err
    assert "FOUND the planted seed 271828: skip 3, forward 1.0, reverse 1.0" in out
    assert "winopt evaluate: proceed (0.95)" in out and "Poisson tail" in out
    assert out.rstrip().endswith("demo OK")
    (record,) = json.loads((tmp_path / "demo" / "bidirectional_survivors.json").read_text())
    assert (record["seed"], record["skip"], record["score"]) == (271828, 3, 1.0)


def test_demo_fails_loudly_when_the_seed_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truth file that names another seed than the one planted: exit 1, not OK."""
    sample = Path(__file__).resolve().parent.parent / "samples" / "planted_java_lcg.json"
    copy = tmp_path / sample.name
    copy.write_bytes(sample.read_bytes())
    truth = json.loads(truth_path(sample).read_text())
    truth_path(copy).write_text(json.dumps({**truth, "seed": truth["seed"] + 1}))
    code, out, _ = run_cli(capsys, "demo", "--out", str(tmp_path / "demo"), "--sample", str(copy))
    assert code == 1
    # re-planting from that truth gives another history: caught before any sieving
    assert "demo FAILED: winopt synth wrote" in out and f"differs from {copy}" in out
    assert "demo OK" not in out


def test_demo_check_fails_when_the_planted_seed_did_not_survive(tmp_path: Path) -> None:
    from winopt.cli.demo import Demo, DemoFailed, step_check_planted

    demo = Demo(out=tmp_path, sample=tmp_path / "h.json", truth={"seed": 5, "skip": 3})
    demo.survivors = [{"seed": 6, "skip": 3, "forward_match_rate": 1.0, "reverse_match_rate": 1.0}]
    with pytest.raises(DemoFailed, match="planted seed 5 NOT found among 1 survivors"):
        step_check_planted(demo)


def test_demo_without_its_sample_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "gone.json"
    code, _, err = run_cli(
        capsys, "demo", "--out", str(tmp_path / "demo"), "--sample", str(missing)
    )
    assert (
        code == 2
        and err == f"winopt: error: {missing}: the demo sample is missing (pass --sample FILE)\n"
    )


# --- stress: random plantings ---------------------------------------------------------


@pytest.mark.stress
@pytest.mark.parametrize("prng", FAMILIES)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_plantings_are_recovered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prng: str, data: st.DataObject
) -> None:
    """Any seed, pivot, skip and window that fits: the planted seed (and only seeds that seed
    the very same state), at rate 1.0 with the planted skip."""
    space = family(prng).seed_space
    state = data.draw(st.integers(1, space - 1), label="seed")
    window = data.draw(st.integers(6, 16), label="window")
    draws = data.draw(st.integers(2 * window, 80), label="draws")
    at = data.draw(st.integers(window, draws - window), label="at")
    skip = data.draw(st.integers(0, 12), label="skip")
    threshold = data.draw(st.sampled_from([0.5, 0.75, 1.0]), label="threshold")
    sessions = data.draw(st.sampled_from(["none", "midday,evening", "midday"]), label="sessions")
    path = synth(tmp_path, prng, state, skip, draws, "--sessions", sessions)
    start = max(0, min(state - 100, space - 400))
    argv = sieve_args(
        path,
        prng,
        window,
        at - window,
        (max(0, skip - 3), skip + 3),
        (threshold, threshold),
        (start, 400),
        "--json",
    )
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    # seeds that seed the same state (minstd's 0 -> 1, lcg32's mod 2^31-1) alias
    planted = seed_state(prng, state)
    aliases = [s for s in range(start, start + 400) if seed_state(prng, s) == planted]
    assert state in aliases
    assert [
        (r["seed"], r["skip"], r["forward_match_rate"], r["reverse_match_rate"])
        for r in json.loads(out)
    ] == [(seed, skip, 1.0, 1.0) for seed in aliases]
