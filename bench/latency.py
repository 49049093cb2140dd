"""Benchmark: how fast the daemon turns a new survivors file into a published NPZ, and
what it costs while nothing happens.

A `winopt daemon` child watches one run directory. Each of --events rounds publishes a
fresh 100,000-survivor file the way the optimizer does (temp file, fsync, rename; then the
snapshot naming its sha256) and times, from the rename, until the NPZ is renamed into
place (seen through inotify by this script; the NPZ's meta must then name that very
survivors file). The debounce is part of that time by design and is reported separately.
The reference, measured in the same run on the same file: `handlers.convert.convert`
called in this process, so "overhead" is the daemon's cost beyond the conversion itself.
Then the daemon sits idle for --idle seconds and its CPU time (utime+stime from
/proc/PID/stat) and voluntary context switches (all threads) are read before and after.

    .venv/bin/python bench/latency.py [--events 50] [--survivors 100000] [--idle 30]
                                      [--debounce 0.5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
from watchdog.events import FileMovedEvent, FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver

from winopt.contracts.publish import dump_json, fsync_dir, publish_json
from winopt.contracts.schemas import CONFIG_NAME, NPZ_META_NAME, NPZ_NAME, SURVIVORS_NAME
from winopt.handlers.convert.to_npz import convert

CLK_TCK = os.sysconf("SC_CLK_TCK")


def overlap(n: int) -> dict:
    """SPEC §3's overlap statistics for |F| = 3n, |R| = 2n, |F ∩ R| = |B| = n."""
    return {"intersection_count": n, "intersection_ratio": 1 / 4, "forward_only_count": 2 * n,
            "reverse_only_count": n, "survivor_overlap_ratio": 1 / 3,
            "bidirectional_selectivity": 3 / 2, "intersection_weight": 1 / 5}  # fmt: skip


def survivor_rows(n: int) -> list[dict]:
    return [
        {"seed": 10_000 + 13 * i, "skip": i % 11, "forward_match_rate": 0.4, "reverse_match_rate": 0.35,
         "score": 0.375, "window_size": 20, "offset": 30, "skip_min": 0, "skip_max": 10, "skip_range": 10,
         "time_of_day": "all", "trial_number": 0, "prng_type": "java_lcg", "skip_mode": "constant",
         "forward_count": n * 3, "reverse_count": n * 2, "bidirectional_count": n,
         **overlap(n)}
        for i in range(n)
    ]


def snapshot_for(data: bytes, n: int, trial: int) -> dict:
    import hashlib

    return {"schema_version": 2, "status": "in_progress", "completed_trials": trial + 1, "total_trials": 10_000,
            "last_updated": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "best_trial_number": trial, "best_value": n, "best_bidirectional_count": n,
            "expected_chance_bidirectional": 0.01, "survivors_file": SURVIVORS_NAME,
            "survivors_sha256": hashlib.sha256(data).hexdigest(), "survivors_count": n}


def stage(path: Path, data: bytes) -> Path:
    """Write `data` to a hidden temp name beside `path`, fsynced: ready to rename."""
    tmp = path.with_name(f".{path.name}.bench.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


class NpzPublished(FileSystemEventHandler):
    """Records when the NPZ and its meta are renamed into the run directory."""

    def __init__(self) -> None:
        self.npz_at: list[float] = []
        self.meta = threading.Event()

    def on_moved(self, event) -> None:  # type: ignore[no-untyped-def]
        now = time.monotonic()
        name = os.path.basename(os.fsdecode(event.dest_path))
        if name == NPZ_NAME:
            self.npz_at.append(now)
        elif name == NPZ_META_NAME:
            self.meta.set()


def cpu_and_switches(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (all threads)
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                switches += int(line.split()[1])
    return cpu, switches


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--survivors", type=int, default=100_000)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--debounce", type=float, default=0.5)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="winopt-latency-") as tmp:
        run, state = Path(tmp) / "run", Path(tmp) / "state"
        run.mkdir()
        config = Path(tmp) / "daemon.toml"
        config.write_text(f'debounce = {args.debounce}\nmax_delay = {max(5.0, args.debounce)}\nlog_level = "warning"\n')
        rows = survivor_rows(args.survivors)

        # reference: the conversion alone, in this process, on the same kind of file
        publish_json(run / SURVIVORS_NAME, rows)
        reference = []
        for _ in range(3):
            t = time.perf_counter()
            convert(run / SURVIVORS_NAME)
            reference.append(time.perf_counter() - t)
        for name in (SURVIVORS_NAME, NPZ_NAME, NPZ_META_NAME):
            (run / name).unlink()

        daemon = subprocess.Popen(
            [sys.executable, "-m", "winopt", "daemon", "--config", str(config), "--state-dir", str(state),
             "--watch", str(run)],
            stderr=subprocess.PIPE,
        )
        status = state / "status.json"
        if not wait_for(lambda: status.exists() and orjson.loads(status.read_bytes())["daemon"].get("state") == "running", 60):
            daemon.kill()
            print("daemon did not start:", daemon.stderr.read().decode() if daemon.stderr else "", file=sys.stderr)
            return 1
        seen = NpzPublished()
        observer = InotifyObserver()
        observer.schedule(seen, str(run), event_filter=[FileMovedEvent])
        observer.start()
        latencies: list[float] = []
        try:
            for i in range(args.events):
                rows[0]["trial_number"] = i  # a different file each time
                data = dump_json(rows)
                survivors_tmp = stage(run / SURVIVORS_NAME, data)
                config_tmp = stage(run / CONFIG_NAME, dump_json(snapshot_for(data, args.survivors, i)))
                seen.meta.clear()
                before = len(seen.npz_at)
                t0 = time.monotonic()
                os.rename(survivors_tmp, run / SURVIVORS_NAME)
                os.rename(config_tmp, run / CONFIG_NAME)
                fsync_dir(run)
                if not seen.meta.wait(120) or len(seen.npz_at) <= before:
                    print(f"event {i}: no NPZ within 120 s", file=sys.stderr)
                    return 1
                meta = orjson.loads((run / NPZ_META_NAME).read_bytes())
                assert meta["source"]["sha256"] == snapshot_for(data, 0, 0)["survivors_sha256"], "stale NPZ"
                latencies.append(seen.npz_at[-1] - t0)

            time.sleep(1.0)  # let the last status write and decision settle before idling
            cpu0, sw0 = cpu_and_switches(daemon.pid)
            time.sleep(args.idle)  # the measurement itself: the daemon left alone
            cpu1, sw1 = cpu_and_switches(daemon.pid)
        finally:
            observer.stop()
            observer.join()
            daemon.send_signal(signal.SIGTERM)
            rc = daemon.wait(60)

    ref = statistics.median(reference)
    p50, p99 = pct(latencies, 0.50), pct(latencies, 0.99)
    print(f"survivors per file          {args.survivors:,}")
    print(f"events                      {len(latencies)}")
    print(f"debounce (configured)       {args.debounce * 1000:8.0f} ms  (included in the latencies below)")
    print(f"rename -> NPZ published     p50 {p50 * 1000:8.0f} ms   p99 {p99 * 1000:8.0f} ms   max {max(latencies) * 1000:8.0f} ms")
    print(f"  minus debounce            p50 {(p50 - args.debounce) * 1000:8.0f} ms   p99 {(p99 - args.debounce) * 1000:8.0f} ms")
    print(f"reference: convert() alone  median {ref * 1000:8.0f} ms (same file size, in-process, 3 runs)")
    print(f"ratio (p50 - debounce) / reference: {(p50 - args.debounce) / ref:.2f}")
    print(f"idle {args.idle:.0f} s: CPU {cpu1 - cpu0:.3f} s ({100 * (cpu1 - cpu0) / args.idle:.3f} %), "
          f"{sw1 - sw0} voluntary context switches (all threads)")
    print(f"daemon exit status after SIGTERM: {rc}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
