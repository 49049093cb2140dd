"""Benchmark: `winopt convert` against the old converter on a 100,000-survivor file.

The reference is what the pre-winopt pipeline did: `json.load`, one list comprehension per
field, `np.savez_compressed`. Both run in the same process on the same file (best of
--repeat interleaved rounds, after an untimed warm-up), so the ratio holds on any
machine; wall and CPU time (all threads) are both shown. The `winopt convert` command is
also timed once as a subprocess (interpreter start and imports included). The NPZ files
must hold identical arrays (names, dtypes, values), or the script exits 1.

`--old-pipeline` times an old-pipeline file instead (what the old Step 1 wrote: no `skip`,
`skip_range` as "min-max", `_hybrid` names, extra keys), against the old converter's rules
(`dict.get` with its defaults per field) with winopt's three differences (exact seeds,
`_hybrid` coded as its base, `skip` = skip_min).

    .venv/bin/python bench/convert.py [--rows 100000] [--repeat 5] [--min-ratio 3] [--old-pipeline]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from winopt.contracts.publish import dump_json
from winopt.contracts.schemas import (
    NPZ_ARRAYS,
    OVERLAP_FIELDS,
    PRNG_TYPE_CODES,
    SKIP_MODES,
    SURVIVORS_NAME,
)
from winopt.handlers.convert.to_npz import convert


def make_survivors(path: Path, rows: int, seed: int = 2024) -> None:
    """One trial's survivors, as `winopt optimize` writes them (SPEC §3, every field,
    2-space indent): varied 64-bit seeds (sorted), skips and rates (k/W fractions at full
    float precision); the trial's own fields (window, counts, family) are the same on
    every row, as they are in a real file."""
    rng = random.Random(seed)
    window, offset, skip_min, skip_max = 43, 37, 0, 250
    start = 2**63 + rng.randrange(2**62)
    seeds = sorted(rng.sample(range(start, start + 2**40), rows))
    fwd_n, rev_n = 41 * rows + 17, 39 * rows + 5  # |F|, |R|; |F ∩ R| = rows
    trial = {
        "forward_count": fwd_n,
        "reverse_count": rev_n,
        "bidirectional_count": rows,
        # SPEC §3's overlap statistics of the trial (non-integral ratios, as in real files)
        "intersection_count": rows,
        "intersection_ratio": rows / (fwd_n + rev_n - rows),
        "forward_only_count": fwd_n - rows,
        "reverse_only_count": rev_n - rows,
        "survivor_overlap_ratio": rows / fwd_n,
        "bidirectional_selectivity": fwd_n / rev_n,
        "intersection_weight": rows / (fwd_n + rev_n),
    }
    records = []
    for s in seeds:
        f = rng.randint(window // 3, window) / window
        r = rng.randint(window // 3, window) / window
        records.append(
            {
                "seed": s,
                "skip": rng.randint(skip_min, skip_max),
                "forward_match_rate": f,
                "reverse_match_rate": r,
                "score": (f + r) / 2,
                "window_size": window,
                "offset": offset,
                "skip_min": skip_min,
                "skip_max": skip_max,
                "skip_range": skip_max - skip_min,
                "time_of_day": "evening",
                "trial_number": 31,
                "prng_type": "xorshift64",
                "skip_mode": "constant",
                **trial,
            }
        )
    path.write_bytes(dump_json(records))


def make_old_survivors(path: Path, rows: int, seed: int = 2024) -> None:
    """An old-pipeline file, as its Step 1 accumulator wrote one trial: constant and
    variable-skip (`java_lcg_hybrid`) survivors, `skip_range` "min-max", `sessions` and
    `prng_base`, no `skip` and no bidirectional_selectivity; a few seeds past 32 bits."""
    rng = random.Random(seed)
    window, offset, skip_min, skip_max = 43, 37, 0, 250
    seeds = sorted(rng.sample(range(2**33), rows))
    fwd_n, rev_n = 41 * rows + 17, 39 * rows + 5
    records = []
    for s in seeds:
        f = rng.randint(window // 3, window) / window
        r = rng.randint(window // 3, window) / window
        variable = rng.random() < 0.3
        records.append(
            {
                "seed": s,
                "forward_match_rate": f,
                "reverse_match_rate": r,
                "score": (f + r) / 2,
                "window_size": window,
                "offset": offset,
                "skip_min": skip_min,
                "skip_max": skip_max,
                "trial_number": 31,
                "prng_type": "java_lcg" + ("_hybrid" if variable else ""),
                "prng_base": "java_lcg",
                "skip_mode": "variable" if variable else "constant",
                "forward_count": fwd_n,
                "reverse_count": rev_n,
                "bidirectional_count": rows,
                "forward_only_count": fwd_n - rows,
                "reverse_only_count": rev_n - rows,
                "intersection_count": rows,
                "intersection_ratio": rows / (fwd_n + rev_n - rows),
                "survivor_overlap_ratio": rows / fwd_n,
                "intersection_weight": rows / (fwd_n + rev_n),
                "sessions": ["midday", "evening"],
                "skip_range": f"{skip_min}-{skip_max}",
            }
        )
    path.write_bytes(dump_json(records))


def reference_old_convert(src: Path, out: Path) -> None:
    """The old converter's rules (one list per field, `dict.get` with its defaults), with
    winopt's differences: exact seeds, `_hybrid` as its base, `skip` = skip_min."""
    with open(src) as fh:
        rows = json.load(fh)
    seeds = [r["seed"] for r in rows]
    arrays = {"seeds": np.array(seeds, np.uint32 if not seeds or max(seeds) < 2**32 else np.uint64)}
    f, r = "forward_match_rate", "reverse_match_rate"
    arrays["forward_matches"] = np.array([x.get(f, x.get(r, 0.0)) for x in rows], np.float32)
    arrays["reverse_matches"] = np.array([x.get(r, x.get(f, 0.0)) for x in rows], np.float32)
    arrays["skip"] = np.array([x.get("skip", x.get("skip_min", 0)) for x in rows], np.int32)
    for key in ("window_size", "offset", "trial_number", "skip_min", "skip_max"):
        arrays[key] = np.array([x.get(key, 0) for x in rows], np.int32)
    arrays["skip_range"] = np.array([_min_max(x.get("skip_range", 0)) for x in rows], np.int32)
    for key in ("score", "forward_count", "reverse_count", "bidirectional_count", *OVERLAP_FIELDS):
        arrays[key] = np.array([x.get(key, 0.0) for x in rows], np.float32)
    modes = [SKIP_MODES[x.get("skip_mode", "constant")] for x in rows]
    arrays["skip_mode"] = np.array(modes, np.uint8)
    names = [x.get("prng_type", x.get("prng_base", "java_lcg")) for x in rows]
    codes = [PRNG_TYPE_CODES[n.removesuffix("_hybrid")] for n in names]
    arrays["prng_type"] = np.array(codes, np.uint8)
    np.savez_compressed(out, **{name: arrays[name] for name in NPZ_ARRAYS})


def _min_max(value: object) -> int:
    """The bench file's skip_range forms: an int, or "min-max"."""
    if isinstance(value, str):
        low, high = value.split("-")
        return int(high) - int(low)
    return int(value)  # type: ignore[call-overload]


def reference_convert(src: Path, out: Path) -> None:
    """The old converter: json.load plus one list comprehension per field."""
    with open(src) as fh:
        rows = json.load(fh)
    seeds = [r["seed"] for r in rows]
    seed_dtype = np.uint32 if not seeds or max(seeds) < 2**32 else np.uint64
    arrays = {"seeds": np.array(seeds, dtype=seed_dtype)}
    for name, (dtype, key) in NPZ_ARRAYS.items():
        if name == "seeds":
            continue
        if key == "prng_type":
            values = [PRNG_TYPE_CODES[r[key]] for r in rows]
        elif key == "skip_mode":
            values = [SKIP_MODES[r[key]] for r in rows]
        else:
            values = [r[key] for r in rows]
        arrays[name] = np.array(values, dtype=dtype)
    np.savez_compressed(out, **arrays)


def best_times(repeat: int, *fns: Callable[[], object]) -> list[tuple[float, float]]:
    """(best wall time, best CPU time of the whole process) of each function over `repeat`
    interleaved rounds, after one warm-up round. Interleaving exposes both to the same
    background load; CPU time counts every thread (so overlapping work earns nothing
    there) and shows the work done even when other processes share the cores."""
    for fn in fns:
        fn()
    best = [(float("inf"), float("inf"))] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return best


def same_arrays(a: Path, b: Path) -> list[str]:
    """Differences between two NPZ files (empty when names, dtypes and values agree)."""
    problems = []
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        if sorted(x.files) != sorted(y.files):
            return [f"array names differ: {sorted(x.files)} vs {sorted(y.files)}"]
        for name in x.files:
            if x[name].dtype != y[name].dtype:
                problems.append(f"{name}: dtype {x[name].dtype} vs {y[name].dtype}")
            elif not np.array_equal(x[name], y[name]):
                problems.append(f"{name}: values differ")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--min-ratio", type=float, default=None, help="exit 1 below this ratio")
    parser.add_argument(
        "--old-pipeline", action="store_true", help="an old-pipeline survivors file instead"
    )
    args = parser.parse_args()
    make, reference = (
        (make_old_survivors, reference_old_convert)
        if args.old_pipeline
        else (make_survivors, reference_convert)
    )

    with tempfile.TemporaryDirectory(prefix="winopt-bench-") as tmp:
        src = Path(tmp) / SURVIVORS_NAME
        make(src, args.rows)
        ref_npz, lib_npz, cli_npz = (Path(tmp) / n for n in ("ref.npz", "lib.npz", "cli.npz"))
        kind = "old-pipeline " if args.old_pipeline else ""
        print(f"{kind}survivors: {args.rows} rows, {src.stat().st_size / 1e6:.1f} MB")

        (ref_wall, ref_cpu), (lib_wall, lib_cpu) = best_times(
            args.repeat, lambda: reference(src, ref_npz), lambda: convert(src, lib_npz)
        )
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "winopt", "convert", str(src), "-o", str(cli_npz)]
        subprocess.run(
            cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
        )
        cli_wall = time.perf_counter() - start

        problems = same_arrays(ref_npz, lib_npz) + same_arrays(ref_npz, cli_npz)
        ratio = ref_wall / lib_wall
        print("                                       wall ms   CPU ms (all threads)")
        print(
            f"reference (json.load + comprehensions + savez_compressed) {ref_wall * 1000:6.0f}"
            f" {ref_cpu * 1000:8.0f}"
        )
        print(
            f"winopt convert (library call, sha256 + meta + fsync)      {lib_wall * 1000:6.0f}"
            f" {lib_cpu * 1000:8.0f}"
        )
        print(f"winopt convert (CLI subprocess, incl. start-up)           {cli_wall * 1000:6.0f}")
        print(
            f"ratio reference / library: {ratio:.1f}x wall, {ref_cpu / lib_cpu:.1f}x CPU "
            "(target >= 3x)"
        )
        print(
            f"NPZ size: reference {ref_npz.stat().st_size:,} B, winopt {lib_npz.stat().st_size:,} B"
        )
        if problems:
            print("ARRAYS DIFFER: " + "; ".join(problems))
            return 1
        print("arrays identical (names, dtypes, values)")
        if args.min_ratio is not None and ratio < args.min_ratio:
            print(f"ratio below --min-ratio {args.min_ratio}")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
