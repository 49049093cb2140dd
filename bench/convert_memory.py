"""Benchmark: the memory `winopt convert` needs, against the size of the NPZ's arrays.

Issue 11 asks that converting a survivors file peak at no more than twice the NPZ's
arrays (what the rigs load: 90 bytes a survivor with 64-bit seeds), whatever the size of
the file: the JSON text (~800 bytes a survivor) must never be held whole. For each size
it converts a one-trial file as `winopt optimize` writes it (bench/convert.py's rows,
written in batches so the generator itself stays small) in a fresh process, twice: once
under tracemalloc (peak of Python and NumPy allocations during `convert`), once without
(peak RSS growth over the process's RSS before `convert`, from VmHWM). It also reports
the RSS left after a conversion aborted by a bad last entry (memory returned?), and the
time taken (the untraced run).

    .venv/bin/python bench/convert_memory.py [--rows 100000 1000000] [--keep DIR]

No limits are enforced here (machines differ); the figures go in the issue's report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert import make_survivors  # noqa: E402 - bench/convert.py's rows

from winopt.contracts.schemas import NPZ_NAME, SURVIVORS_NAME  # noqa: E402

BATCH = 20_000


def write_big(path: Path, rows: int) -> None:
    """The bytes `dump_json(rows)` would give, written BATCH rows at a time."""
    with open(path, "wb") as out, tempfile.TemporaryDirectory() as tmp:
        out.write(b"[")
        for start in range(0, rows, BATCH):
            part = Path(tmp) / "part.json"
            make_survivors(part, min(BATCH, rows - start), seed=start + 1)
            body = part.read_bytes()[1:-3]  # "\n  {...},\n  {...}" without "[" and "\n]\n"
            out.write((b"," if start else b"") + body)
        out.write(b"\n]\n")


def vm(field: str) -> int:
    """VmRSS or VmHWM of this process, in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Make VmHWM start again from the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def child(src: Path, mode: str) -> dict:
    """One measurement in this (fresh) process."""
    from winopt.handlers.convert.to_npz import convert
    from winopt.contracts.errors import UserError

    out = src.with_name(NPZ_NAME)
    if mode == "trace":
        import tracemalloc

        tracemalloc.start()
        convert(src, out)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"traced_peak": peak}
    if mode == "aborted":
        data = src.read_bytes()
        bad = src.with_name("bad.json")
        bad.write_bytes(data[: data.rindex(b'"seed"')] + b'"seed": -1, "x": 0}\n]\n')
        del data
        before = vm("VmRSS")
        try:
            convert(bad, bad.with_name("bad.npz"))
        except UserError:
            pass
        return {"rss_before": before, "rss_after_abort": vm("VmRSS")}
    before = vm("VmRSS")
    reset_peak()
    start = time.perf_counter()
    convert(src, out)
    took = time.perf_counter() - start
    with np.load(out, allow_pickle=False) as npz:
        arrays = sum(npz[name].nbytes for name in npz.files)
    return {"rss_before": before, "rss_peak": vm("VmHWM"), "rss_after": vm("VmRSS"), "arrays": arrays,
            "seconds": took}


def measure(src: Path, mode: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(src)], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", type=Path, help="make (or reuse) the survivors files in this directory")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[1]), args.child[0])))
        return 0
    mb = 1e6
    with tempfile.TemporaryDirectory(prefix="winopt-bench-") as tmp:
        base = args.keep or Path(tmp)
        print(f"{'rows':>9} {'file MB':>8} {'arrays MB':>9} {'traced peak MB':>14} {'RSS growth MB':>13} "
              f"{'peak/arrays':>11} {'RSS left MB':>11} {'after abort':>11} {'seconds':>7}")
        for rows in args.rows:
            run = base / f"rows{rows}"
            run.mkdir(parents=True, exist_ok=True)
            src = run / SURVIVORS_NAME
            if not src.exists():
                write_big(src, rows)
            plain, traced, aborted = measure(src, "plain"), measure(src, "trace"), measure(src, "aborted")
            growth = plain["rss_peak"] - plain["rss_before"]
            worst = max(traced["traced_peak"], growth)
            print(f"{rows:>9} {src.stat().st_size / mb:>8.0f} {plain['arrays'] / mb:>9.1f} "
                  f"{traced['traced_peak'] / mb:>14.1f} {growth / mb:>13.1f} {worst / plain['arrays']:>11.2f} "
                  f"{(plain['rss_after'] - plain['rss_before']) / mb:>11.1f} "
                  f"{(aborted['rss_after_abort'] - aborted['rss_before']) / mb:>11.1f} {plain['seconds']:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
