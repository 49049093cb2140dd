"""`winopt synth`: the history holds exactly what its truth file says was planted.

The planted draws are checked twice: against `generators.raw_outputs` for every family,
and, for java_lcg and minstd, against a few lines written here straight from the SPEC §1
table, so synth and the generators cannot agree on a shared mistake about indexing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from winopt.cli import main
from winopt.optimizer.draws import load_history
from winopt.optimizer.sieve.generators import FAMILIES, raw_outputs
from winopt.optimizer.synth import truth_path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "planted_java_lcg.json"


def synth(tmp_path: Path, *args: str, name: str = "h.json") -> tuple[Path, dict[str, Any]]:
    out = tmp_path / name
    assert main(["synth", *args, "--out", str(out)]) == 0
    return out, json.loads(truth_path(out).read_text())


def spec_outputs(prng: str, seed: int, ts: list[int]) -> list[int]:
    """y_t for each t, from the SPEC table alone: state x_0 = seeded, y_t = out(x_{t+1})."""
    if prng == "java_lcg":
        m, a, c = 2**48, 25214903917, 11
        x0, out = seed % m, lambda x: x >> 16
    else:  # minstd
        m, a, c = 2**31 - 1, 48271, 0
        x0, out = (seed % m) or 1, lambda x: x
    result = []
    for t in ts:
        x = x0
        for _ in range(t + 1):
            x = (a * x + c) % m
        result.append(out(x))
    return result


@pytest.mark.parametrize("prng", ["java_lcg", "minstd"])
@pytest.mark.parametrize("skip", [0, 2, 5])
def test_planted_draws_follow_the_spec_formula(tmp_path: Path, prng: str, skip: int) -> None:
    n = 20
    path, truth = synth(tmp_path, "--prng", prng, "--seed", "4242", "--skip", str(skip),
                        "--draws", str(n), "--sessions", "none")  # fmt: skip
    ts = [skip + t * (skip + 1) for t in range(n)]
    assert load_history(path).tolist() == [y % 1000 for y in spec_outputs(prng, 4242, ts)]
    assert (truth["prng"], truth["seed"], truth["skip"], truth["draws"]) == (prng, 4242, skip, n)


@pytest.mark.parametrize("prng", FAMILIES)
def test_every_family_plants_the_generator_stream(tmp_path: Path, prng: str) -> None:
    seed, skip, n, mod = 987654321, 4, 30, 100
    path, truth = synth(tmp_path, "--prng", prng, "--seed", str(seed), "--skip", str(skip),
                        "--draws", str(n), "--mod", str(mod))  # fmt: skip
    outputs = raw_outputs(prng, seed, n * (skip + 1))
    assert load_history(path, mod=mod).tolist() == [y % mod for y in outputs[skip :: skip + 1]]
    assert truth["mod"] == mod and truth["seed"] == seed
    assert truth["time_of_day"] == "all" and truth["entries"] == n


@pytest.mark.parametrize("prng", FAMILIES)
def test_skip_0_is_what_the_rigs_regenerate(tmp_path: Path, prng: str) -> None:
    """With skip 0 the planted history is the rigs' `cpu_reference(seed, n)` mod 1000:
    from the SPEC's seed-12345 vectors, the first five draws are known literally."""
    path, _ = synth(tmp_path, "--prng", prng, "--seed", "12345", "--skip", "0", "--draws", "5",
                    "--sessions", "none")  # fmt: skip
    vectors = {
        "java_lcg": [875, 331, 694, 737, 468], "lcg32": [949, 70, 248, 576, 833],
        "minstd": [495, 227, 989, 883, 142], "xorshift32": [330, 807, 904, 42, 323],
        "xorshift64": [84, 203, 743, 199, 550], "pcg32": [0, 953, 90, 461, 703],
        "mt19937": [690, 381, 685, 553, 284], "xorshift128": [827, 538, 163, 140, 73],
        "xoshiro256pp": [496, 116, 432, 474, 700], "philox4x32": [145, 473, 333, 118, 536],
        "sfc64": [831, 908, 978, 383, 986],
    }  # fmt: skip
    assert load_history(path).tolist() == vectors[prng]


def test_dates_advance_one_day_per_cycle_of_sessions(tmp_path: Path) -> None:
    path, truth = synth(
        tmp_path,
        "--prng",
        "java_lcg",
        "--seed",
        "1",
        "--skip",
        "0",
        "--draws",
        "5",
        "--start-date",
        "2023-12-31",
    )
    entries = json.loads(path.read_text())
    assert [(e["date"], e["session"]) for e in entries] == [
        ("2023-12-31", "midday"),
        ("2023-12-31", "evening"),
        ("2024-01-01", "midday"),
        ("2024-01-01", "evening"),
        ("2024-01-02", "midday"),
    ]
    assert truth["sessions"] == ["midday", "evening"] and truth["start_date"] == "2023-12-31"


def test_one_session_per_day(tmp_path: Path) -> None:
    path, truth = synth(
        tmp_path,
        "--prng",
        "lcg32",
        "--seed",
        "9",
        "--skip",
        "1",
        "--draws",
        "3",
        "--sessions",
        "evening",
    )
    entries = json.loads(path.read_text())
    assert [(e["date"], e["session"]) for e in entries] == [
        ("2020-01-01", "evening"),
        ("2020-01-02", "evening"),
        ("2020-01-03", "evening"),
    ]
    assert truth["sessions"] == ["evening"]


@pytest.mark.parametrize("planted", ["midday", "evening"])
def test_plant_in_one_session_leaves_the_other_random(tmp_path: Path, planted: str) -> None:
    common = [
        "--prng",
        "xorshift32",
        "--seed",
        "31337",
        "--skip",
        "2",
        "--draws",
        "50",
    ]
    only, truth = synth(tmp_path, *common, "--plant-in", planted)
    everywhere, _ = synth(tmp_path, *common, "--sessions", "none", name="all.json")
    other = "evening" if planted == "midday" else "midday"
    assert truth["time_of_day"] == planted and truth["entries"] == 100 and truth["draws"] == 50
    assert load_history(only, time_of_day=planted).tolist() == load_history(everywhere).tolist()
    noise = load_history(only, time_of_day=other)
    assert len(noise) == 50
    assert (noise != load_history(everywhere)).sum() > 40  # unrelated to the planted stream
    reseeded, _ = synth(tmp_path, *common, "--plant-in", planted, "--rng-seed", "1", name="r.json")
    assert load_history(reseeded, time_of_day=other).tolist() != noise.tolist()
    assert load_history(reseeded, time_of_day=planted).tolist() == load_history(everywhere).tolist()


def test_output_is_deterministic(tmp_path: Path) -> None:
    args = [
        "--prng",
        "pcg32",
        "--seed",
        "5",
        "--skip",
        "1",
        "--draws",
        "9",
        "--plant-in",
        "evening",
    ]
    first, _ = synth(tmp_path, *args, name="a.json")
    second, _ = synth(tmp_path, *args, name="b.json")
    assert first.read_bytes() == second.read_bytes()


def test_bundled_sample_is_what_its_readme_command_makes(tmp_path: Path) -> None:
    """samples/ is reproducible: rerunning the documented command gives the same bytes."""
    truth = json.loads(truth_path(SAMPLE).read_text())
    out, _ = synth(
        tmp_path,
        "--prng",
        truth["prng"],
        "--seed",
        str(truth["seed"]),
        "--skip",
        str(truth["skip"]),
        "--draws",
        str(truth["draws"]),
        name=SAMPLE.name,
    )
    assert out.read_bytes() == SAMPLE.read_bytes()
    assert truth_path(out).read_bytes() == truth_path(SAMPLE).read_bytes()
    assert (
        f"--seed {truth['seed']} --skip {truth['skip']}"
        in (SAMPLE.parent / "README.md").read_text()
    )


def test_truth_path_sits_beside_the_history() -> None:
    assert truth_path(Path("d/x.json")) == Path("d/x.truth.json")
    assert truth_path(Path("d/x")) == Path("d/x.truth.json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prng", "randu"], "unknown prng 'randu'"),
        (["--seed", "4294967296", "--prng", "xorshift32"], "reaches past xorshift32's 2^32"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--skip", "-1"], "--skip must be >= 0"),
        (["--draws", "0"], "--draws must be at least 1"),
        (["--sessions", "night"], "--sessions must list midday and/or evening"),
        (["--sessions", "none", "--plant-in", "midday"], "--plant-in midday needs that session"),
        (["--start-date", "Jan 1"], "--start-date must be YYYY-MM-DD"),
        (["--start-date", "9999-12-30"], "run past year 9999"),
        (["--rng-seed", "-1", "--plant-in", "midday"], "--rng-seed must be >= 0"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    base = {"--prng": "java_lcg", "--seed": "1", "--skip": "0", "--draws": "10"}
    argv = ["synth"]
    overrides = dict(zip(args[::2], args[1::2], strict=True))
    for key, value in {**base, **overrides}.items():
        argv += [key, value]
    out = tmp_path / "h.json"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("winopt: error: ") and message in err and err.count("\n") == 1
    assert not out.exists() and not truth_path(out).exists()


def test_an_output_directory_that_does_not_exist_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OSError on the output side reaches a person as one line and exit 2, never a
    traceback."""
    out = tmp_path / "missing" / "h.json"
    argv = ["synth", "--prng", "java_lcg", "--seed", "1", "--skip", "0",
            "--draws", "10", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("winopt: error: ") and err.count("\n") == 1
    assert "missing" in err and "output directory does not exist" in err


def test_an_os_error_while_writing_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any OSError a command meets (here: --out names a directory, so the rename fails)
    is one `winopt: error:` line and exit 2 from the CLI, never a traceback."""
    out = tmp_path / "taken"
    out.mkdir()
    argv = ["synth", "--prng", "java_lcg", "--seed", "1", "--skip", "0",
            "--draws", "10", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("winopt: error: ") and err.count("\n") == 1
    assert "Is a directory" in err and out.is_dir() and not list(out.iterdir())
