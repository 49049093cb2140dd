"""Benchmark: loading draw histories and building survivor records, against simple references.

1. `load_history` on a history of --draws midday/evening objects (and a plain list of ints)
   against the straightforward loader: `json.load`, then one Python pass that checks each
   entry (type, keys, draw range, session, date, order) and appends its draw.
2. `survivor_records` for --survivors survivors against a per-record loop that indexes
   the NumPy arrays field by field (NumPy scalars converted one at a time).

Both sides of each pair run in this process on the same input (best of --repeat), so the
ratios hold on any machine; the results must be equal, or the script exits 1.

    .venv/bin/python bench/history.py [--draws 1000000] [--survivors 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from winopt.optimizer.draws import load_history
from winopt.optimizer.sieve.core import SieveParams, SieveResult
from winopt.optimizer.survivors import overlap_statistics, survivor_records


def best_of(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest wall time of `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def make_history(path: Path, draws: int) -> None:
    start = dt.date(1900, 1, 1)
    rng = np.random.default_rng(7)
    values = rng.integers(0, 1000, draws).tolist()
    entries = [
        {
            "date": (start + dt.timedelta(days=k // 2)).isoformat(),
            "session": ("midday", "evening")[k % 2],
            "draw": v,
        }
        for k, v in enumerate(values)
    ]
    path.write_bytes(orjson.dumps(entries, option=orjson.OPT_INDENT_2))


def reference_load(path: Path, mod: int = 1000) -> np.ndarray:
    """The loader one writes first: json.load and a check per entry."""
    with open(path) as fh:
        entries = json.load(fh)
    assert isinstance(entries, list) and entries
    draws, previous = [], None
    for entry in entries:
        assert isinstance(entry, dict) and all(k in entry for k in ("date", "session", "draw"))
        value = entry["draw"]
        assert type(value) is int and 0 <= value < mod
        assert entry["session"] in ("midday", "evening")
        when = (dt.date.fromisoformat(entry["date"]), entry["session"] == "evening")
        assert previous is None or when > previous
        previous = when
        draws.append(value)
    return np.array(draws, dtype=np.int64)


def make_result(count: int) -> SieveResult:
    rng = np.random.default_rng(11)
    params = SieveParams(
        prng="java_lcg",
        window_size=20,
        offset=5,
        skip_min=0,
        skip_max=250,
        forward_threshold=0.3,
        reverse_threshold=0.3,
        seed_start=0,
        seed_count=2**40,
    )
    return SieveResult(
        params=params,
        seeds=np.sort(rng.choice(2**40, count, replace=False)).astype(np.uint64),
        skips=rng.integers(0, 251, count),
        forward_rate=rng.integers(6, 21, count) / 20,
        reverse_rate=rng.integers(6, 21, count) / 20,
        forward_count=count * 3,
        reverse_count=count * 2,
        bidirectional_count=count,
        expected_chance_bidirectional=1.0,
        notes=[],
    )


def reference_records(
    result: SieveResult, time_of_day: str, trial_number: int
) -> list[dict[str, Any]]:
    """One dict per survivor, each field read from the arrays by index."""
    p = result.params
    return [
        {
            "seed": int(result.seeds[i]),
            "skip": int(result.skips[i]),
            "forward_match_rate": float(result.forward_rate[i]),
            "reverse_match_rate": float(result.reverse_rate[i]),
            "score": float((result.forward_rate[i] + result.reverse_rate[i]) / 2),
            "window_size": p.window_size,
            "offset": p.offset,
            "skip_min": p.skip_min,
            "skip_max": p.skip_max,
            "skip_range": p.skip_max - p.skip_min,
            "time_of_day": time_of_day,
            "trial_number": trial_number,
            "prng_type": p.prng,
            "skip_mode": "constant",
            "forward_count": result.forward_count,
            "reverse_count": result.reverse_count,
            "bidirectional_count": result.bidirectional_count,
            **overlap_statistics(result),
        }
        for i in range(len(result.seeds))
    ]


def report(name: str, fast: float, slow: float) -> None:
    print(f"{name}: winopt {fast:.3f} s, reference {slow:.3f} s, ratio {slow / fast:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--survivors", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.json"
        make_history(path, args.draws)
        print(f"history: {args.draws:,} objects, {path.stat().st_size / 1e6:.0f} MB")
        fast, ours = best_of(args.repeat, lambda: load_history(path))
        slow, theirs = best_of(args.repeat, lambda: reference_load(path))
        report("load_history (objects)", fast, slow)
        ok &= np.array_equal(ours, theirs)
        plain = Path(tmp) / "plain.json"
        plain.write_bytes(orjson.dumps(ours.tolist()))
        fast, _ = best_of(args.repeat, lambda: load_history(plain))
        print(f"load_history (plain ints): {fast:.3f} s")
    result = make_result(args.survivors)
    fast, ours = best_of(
        args.repeat, lambda: survivor_records(result, time_of_day="all", trial_number=3)
    )
    slow, theirs = best_of(args.repeat, lambda: reference_records(result, "all", 3))
    report(f"survivor_records ({args.survivors:,})", fast, slow)
    ok &= ours == theirs
    if not ok:
        print("MISMATCH: winopt and the reference disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
