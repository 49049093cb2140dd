"""Shared by the optimizer tests: small histories, a fast search space, file polling, and
the reference survivors a fresh sieve gives for a snapshot's best parameters."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from winopt.contracts.publish import dump_json, publish_json
from winopt.contracts.schemas import CONFIG_NAME, SURVIVORS_NAME
from winopt.optimizer.draws import load_history
from winopt.optimizer.sieve.core import run_sieve
from winopt.optimizer.study import RunSettings
from winopt.optimizer.objective import sieve_params
from winopt.optimizer.survivors import survivor_records
from polling import wait_for  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parents[1]

#: draws are taken mod 100 so that chance survivors are plentiful: counts vary from trial to
#: trial, new bests happen, and survivors files are not empty
MOD = 100
#: a search space small enough that a trial takes a few tens of milliseconds
FAST_SPACE = [
    "--window-size", "2:6", "--offset", "0:40", "--skip-min", "0:3", "--skip-max", "3:12",
    "--forward-threshold", "0.15:0.35", "--reverse-threshold", "0.15:0.35",
]


def write_history(path: Path, days: int = 60, seed: int = 7) -> Path:
    """`days` days of uniformly random midday and evening draws mod `MOD` (SPEC §1)."""
    rng = np.random.default_rng(seed)
    start = dt.date(2021, 1, 1)
    entries = [
        {"date": (start + dt.timedelta(days=i // 2)).isoformat(),
         "session": ("midday", "evening")[i % 2], "draw": int(d)}
        for i, d in enumerate(rng.integers(0, MOD, size=2 * days))
    ]
    publish_json(path, entries)
    return path


def optimize_argv(draws: Path, out: Path, trials: int, *extra: str,
                  seed_count: int = 2000) -> list[str]:
    """`winopt optimize` arguments for a fast, reproducible run."""
    return ["optimize", "--draws", str(draws), "--out", str(out), "--trials", str(trials),
            "--seed-count", str(seed_count), "--strategy", "random", "--sampler-seed", "1",
            "--device", "cpu", "--mod", str(MOD), *FAST_SPACE, *extra]


def winopt_cmd(*argv: str) -> list[str]:
    """The command line of a `winopt` subprocess in this interpreter."""
    return [sys.executable, "-m", "winopt", *argv]


def subprocess_env() -> dict[str, str]:
    """Environment for subprocesses: unbuffered, CPU sieve."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "WINOPT_DEVICE": "cpu"}


def read_config(out: Path) -> dict[str, Any]:
    return orjson.loads((out / CONFIG_NAME).read_bytes())


def read_config_or_none(out: Path) -> dict[str, Any] | None:
    try:
        return read_config(out)
    except FileNotFoundError:
        return None


def reference_survivors(config: dict[str, Any], draws: Path) -> bytes:
    """The survivors file a fresh sieve of the snapshot's best parameters gives."""
    params = config["best_params"]
    history = load_history(draws, mod=config["mod"], time_of_day=params["time_of_day"])
    settings = RunSettings(prng=config["prng_type"], seed_start=config["seed_start"],
                           seed_count=config["seed_count"], mod=config["mod"], draws_sha256="")
    result = run_sieve(history, sieve_params(settings, params), device="cpu")
    records = survivor_records(result, time_of_day=params["time_of_day"],
                               trial_number=config["best_trial_number"])
    return dump_json(records)


def survivors_bytes(out: Path) -> bytes:
    return (out / SURVIVORS_NAME).read_bytes()
