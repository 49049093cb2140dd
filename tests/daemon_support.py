"""Helpers for the daemon tests: a daemon subprocess, and a writer that imitates the
optimizer's atomic snapshot writes (survivors first, then the config naming them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from winopt.contracts.publish import publish_json, sha256_file
from winopt.contracts.schemas import CONFIG_NAME, NPZ_META_NAME, NPZ_NAME, SURVIVORS_NAME
from polling import poll  # noqa: F401 - re-exported for the daemon tests

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the optimizer's files
def overlap(f: int, r: int, both: int, b: int) -> dict[str, Any]:
    """The seven overlap statistics of SPEC §3 for |F|, |R|, |F ∩ R| and |B|."""
    ratio = lambda num, den: num / den if den else 0.0  # noqa: E731
    return {
        "intersection_count": b, "intersection_ratio": ratio(b, f + r - both),
        "forward_only_count": f - both, "reverse_only_count": r - both,
        "survivor_overlap_ratio": ratio(b, f), "bidirectional_selectivity": ratio(f, r),
        "intersection_weight": ratio(b, f + r),
    }  # fmt: skip


def survivors(n: int, *, start: int = 1000, trial: int = 0) -> list[dict[str, Any]]:
    """`n` survivor objects in the SPEC §3 shape, sorted by seed."""
    return [
        {
            "seed": start + 7 * i,
            "skip": i % 5,
            "forward_match_rate": 0.5,
            "reverse_match_rate": 0.25,
            "score": 0.375,
            "window_size": 8,
            "offset": 10,
            "skip_min": 0,
            "skip_max": 10,
            "skip_range": 10,
            "time_of_day": "all",
            "trial_number": trial,
            "prng_type": "java_lcg",
            "skip_mode": "constant",
            "forward_count": 120,
            "reverse_count": 90,
            "bidirectional_count": n,
            **overlap(120, 90, n, n),
        }
        for i in range(n)
    ]


def snapshot(count: int, *, status: str = "complete", completed: int = 10, total: int = 10,
             sha256: str | None = None, trial: int = 0, **extra: Any) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    now = now[:-2] + ":" + now[-2:]
    return {
        "schema_version": 2,
        "status": status,
        "study_name": "test",
        "started_at": now,
        "completed_at": now if status == "complete" else None,
        "last_updated": now,
        "completed_trials": completed,
        "total_trials": total,
        "last_trial_number": trial,
        "last_trial_value": count,
        "best_trial_number": trial,
        "best_value": count,
        "best_bidirectional_count": count,
        "expected_chance_bidirectional": 0.001,
        "survivors_file": SURVIVORS_NAME,
        "survivors_sha256": sha256,
        "survivors_count": count,
        **extra,
    }


def write_trial(run: Path, n: int, *, start: int = 1000, trial: int = 0, **snap: Any) -> str:
    """What the optimizer does on a new best: survivors, then the snapshot naming their
    sha256. Returns that sha256."""
    publish_json(run / SURVIVORS_NAME, survivors(n, start=start, trial=trial))
    digest = sha256_file(run / SURVIVORS_NAME)
    publish_json(run / CONFIG_NAME, snapshot(n, sha256=digest, trial=trial, **snap))
    return digest


def npz_source_sha(run: Path) -> str | None:
    """The survivors sha256 the published NPZ was made from (None: no NPZ yet)."""
    try:
        meta = json.loads((run / NPZ_META_NAME).read_text())
    except (OSError, ValueError):
        return None
    return (meta.get("source") or {}).get("sha256")


def npz_matches_survivors(run: Path) -> bool:
    """The NPZ on disk holds exactly the seeds of the survivors file on disk."""
    import numpy as np

    if not (run / NPZ_NAME).exists() or npz_source_sha(run) != sha256_file(run / SURVIVORS_NAME):
        return False
    seeds = [s["seed"] for s in json.loads((run / SURVIVORS_NAME).read_text())]
    with np.load(run / NPZ_NAME, allow_pickle=False) as npz:
        return npz["seeds"].tolist() == seeds


# ---------------------------------------------------------------- the daemon
class DaemonProcess:
    """`winopt daemon` as a child process with its own state dir, log file and env."""

    def __init__(self, state_dir: Path, watch: list[Path], *, args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.watch = watch
        self.args = args or []
        self.env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC",
                                                                  "WATCHDOG_PID", "JOURNAL_STREAM")}
        self.env.update(env or {})
        self.log_path = state_dir.parent / f"{state_dir.name}-daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, ready: bool = True) -> DaemonProcess:
        cmd = [sys.executable, "-m", "winopt", "daemon", "--state-dir", str(self.state_dir),
               "--log-level", "debug", *self.args]
        for d in self.watch:
            cmd += ["--watch", str(d)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        log.close()
        if ready:
            assert poll(self.is_ready, 30), f"daemon not ready:\n{self.log()}"
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def run(self, name: str) -> dict[str, Any]:
        return (self.status().get("runs") or {}).get(name) or {}

    def counter(self, name: str) -> int:
        return ((self.status().get("daemon") or {}).get("counters") or {}).get(name, 0)

    def is_ready(self) -> bool:
        daemon = self.status().get("daemon") or {}
        assert self.proc is not None and self.proc.poll() is None, f"daemon exited:\n{self.log()}"
        return daemon.get("pid") == self.pid and daemon.get("state") == "running"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def decisions(self) -> list[dict[str, Any]]:
        try:
            lines = (self.state_dir / "decisions.jsonl").read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def stop_all(daemons: list[DaemonProcess]) -> None:
    """Stop every daemon still running (SIGTERM, which stops its children too), killing
    one that does not stop within a minute: no test leaves a daemon behind."""
    for d in daemons:
        if d.alive():
            try:
                d.stop(timeout=60)
            except subprocess.TimeoutExpired:
                d.kill()
