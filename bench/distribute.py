"""Time from an NPZ publish to "every rig synced": 2 local rigs and 2 ssh rigs (rigs.sh),
for a 1 MB and a 50 MB NPZ, median of 10, with the reference measured in the same run:
a plain `cp` of the NPZ, and a single rsync of it over ssh to one rig.

    sudo .venv/bin/python bench/distribute.py [--reps 10] [--sizes 1,50]

Needs root for the ssh rigs (network namespaces); without it only local rigs are timed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from winopt.contracts import publish_atomic, publish_json, sha256_file
from winopt.contracts.schemas import NPZ_META_NAME, NPZ_NAME
from winopt.handlers.rigs.distributor import Distributor
from winopt.handlers.rigs.config import Rig, rig_from_dict
from winopt.handlers.rigs.rsync import rsync_argv, run_rsync

REPO = Path(__file__).resolve().parents[1]
RIGS_SH = Path(os.environ.get("WINOPT_RIGS_SH", REPO.parent / "shared" / "tools" / "rigs.sh"))


def publish(run_dir: Path, version: int, megabytes: float) -> str:
    """A fresh NPZ of about `megabytes` (incompressible) and its meta, as the converter would."""
    data = np.random.default_rng(version).integers(0, 2**63, int(megabytes * 2**17), dtype=np.int64)
    npz = run_dir / NPZ_NAME
    publish_atomic(npz, lambda fh: np.savez_compressed(fh, seeds=data, version=np.int64(version)))
    sha = sha256_file(npz)
    publish_json(run_dir / NPZ_META_NAME, {"version": version, "npz_sha256": sha})
    return sha


def ssh_rigs_up(work: Path) -> tuple[Path | None, list[Rig]]:
    """Two sshd rigs from rigs.sh, or none (with a note) where that cannot work."""
    if os.geteuid() != 0 or not RIGS_SH.is_file():
        print("note: not root or no rigs.sh: timing local rigs only", file=sys.stderr)
        return None, []
    for attempt in range(5):
        directory = work / f"sshrigs{attempt}"
        up = subprocess.run(
            [str(RIGS_SH), "up", str(directory), "--count", "2", "--net", f"10.{random.randint(150, 250)}"],
            capture_output=True, text=True,
        )  # fmt: skip
        if up.returncode == 0:
            break
    else:
        raise SystemExit(f"rigs.sh up failed: {up.stderr}")
    rigs = []
    for i, line in enumerate((directory / "rigs").read_text().splitlines(), 1):
        addr = line.split()[2]
        table = {
            "target": f"root@{addr}:{directory}/rig{i}/data/",
            "known_hosts": str(directory / "known_hosts"),
            "identity_file": str(directory / "client_key"),
        }
        rigs.append(rig_from_dict(f"ssh{i}", table))
    return directory, rigs


def median_time(reps: int, once: Callable[[int], float]) -> float:
    return statistics.median(once(rep) for rep in range(reps))


def bench_distribute(rigs: list[Rig], run_dir: Path, megabytes: float, reps: int) -> float:
    dist = Distributor(rigs, max_parallel=len(rigs))
    names = [r.name for r in rigs]

    def once(rep: int) -> float:
        sha = publish(run_dir, rep + 1, megabytes)
        begin = time.perf_counter()
        dist.submit("bench", run_dir / NPZ_NAME, run_dir / NPZ_META_NAME, sha)

        def synced(snap: dict) -> bool:
            return all(snap["bench"][n]["state"] == "synced" and snap["bench"][n]["sha256"] == sha for n in names)

        if not dist.wait_for(synced, 600):
            raise SystemExit(f"not synced: {dist.snapshot()}")
        return time.perf_counter() - begin

    try:
        return median_time(reps, once)
    finally:
        dist.stop(10)


def bench_cp(run_dir: Path, target: Path, reps: int) -> float:
    def once(rep: int) -> float:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        begin = time.perf_counter()
        subprocess.run(["cp", str(run_dir / NPZ_NAME), str(target)], check=True)
        return time.perf_counter() - begin

    return median_time(reps, once)


def bench_single_rsync(rig: Rig, run_dir: Path, reps: int) -> float:
    def once(rep: int) -> float:
        argv = rsync_argv(rig, run_dir / NPZ_NAME, rig.destination(f"single{rep}"))
        result = run_rsync(argv, timeout=600)
        if not result.ok:
            raise SystemExit(f"reference rsync failed: {result.describe()}")
        return result.duration

    return median_time(reps, once)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--sizes", default="1,50", help="NPZ sizes in MB, comma-separated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="winopt-bench-") as tmp:
        work = Path(tmp)
        rigs_dir, ssh = ssh_rigs_up(work)
        try:
            local = [rig_from_dict(f"local{i}", {"target": str(work / f"local{i}")}) for i in (1, 2)]
            rigs = local + ssh
            print(f"rigs: {', '.join(r.name for r in rigs)}; median of {args.reps}; cpus {os.cpu_count()}")
            print(f"{'size':>6} {'all rigs synced':>16} {'cp (local)':>11} {'1 rsync':>9} {'ratio':>7}")
            for size in (float(s) for s in args.sizes.split(",")):
                run_dir = work / f"run{size:g}"
                run_dir.mkdir()
                total = bench_distribute(rigs, run_dir, size, args.reps)
                cp = bench_cp(run_dir, work / "cp-target", args.reps)
                ref_rig = ssh[0] if ssh else local[0]
                single = bench_single_rsync(ref_rig, run_dir, args.reps)
                print(f"{size:>4g}MB {total:>15.3f}s {cp:>10.3f}s {single:>8.3f}s {total / single:>6.2f}x")
            print("ratio = all rigs synced / one rsync of the NPZ to one rig (%s)" % (ssh[0].name if ssh else "local1"))
        finally:
            if rigs_dir is not None:
                subprocess.run([str(RIGS_SH), "down", str(rigs_dir)], capture_output=True)


if __name__ == "__main__":
    main()
