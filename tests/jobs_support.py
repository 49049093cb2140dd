"""Shared by the job tests: draw histories, job files, a stand-in optimizer, polling."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polling import wait_for  # noqa: F401 - re-exported

#: A stand-in for `winopt optimize` with the behaviour the runner relies on: atomic
#: snapshots after each trial, resume from the snapshot's count, SIGTERM -> "interrupted"
#: and exit 143, an exclusive flock for its whole life (a second one on the same
#: directory writes DOUBLE and exits 3: the tests assert that never happens), and a
#: start/end line per run in runs.log. Options: --out DIR --trials N [--delay S] [--fail].
STANDIN = r'''
import fcntl, json, os, signal, sys, time
args = sys.argv[1:]
out = args[args.index("--out") + 1]
trials = int(args[args.index("--trials") + 1])
delay = float(args[args.index("--delay") + 1]) if "--delay" in args else 0.05
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(signal.SIGTERM))
lock = os.open(os.path.join(out, ".standin.flock"), os.O_CREAT | os.O_RDWR)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    open(os.path.join(out, "DOUBLE"), "a").write(f"{os.getpid()}\n")
    sys.exit(3)
def log(what):
    with open(os.path.join(out, "runs.log"), "a") as fh:
        fh.write(f"{what} {os.getpid()} {time.time():.6f} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}\n")
def snap(status, done, **extra):
    path = os.path.join(out, "optimal_window_config.json")
    tmp = path + f".{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"status": status, "completed_trials": done, "total_trials": trials, **extra}, fh)
    os.replace(tmp, path)
try:
    done = json.load(open(os.path.join(out, "optimal_window_config.json")))["completed_trials"]
except (OSError, ValueError, KeyError):
    done = 0
log("start")
print(f"stand-in optimizer pid {os.getpid()} resuming at {done}/{trials}", flush=True)
snap("in_progress", done)
if "--fail" in args:
    snap("failed", done, error="stand-in failure on purpose")
    print("winopt: error: stand-in failure on purpose", file=sys.stderr, flush=True)
    log("end")
    sys.exit(1)
while done < trials and not stop:
    time.sleep(delay)
    if stop:
        break
    done += 1
    snap("in_progress", done)
if done >= trials:
    snap("complete", done)
    log("end")
    sys.exit(0)
snap("interrupted", done, error="interrupted by SIGTERM")
log("end")
sys.exit(143)
'''


def write_plain_history(path: Path, count: int = 200, mod: int = 1000) -> Path:
    """A plain list of `count` draws (session 'all')."""
    path.write_text(json.dumps([(i * 37 + 11) % mod for i in range(count)]))
    return path


def write_session_history(path: Path, days: int = 60, mod: int = 1000) -> Path:
    """Object entries, a midday and an evening draw per day."""
    start = dt.date(2022, 1, 1)
    entries = [{"date": (start + dt.timedelta(days=i // 2)).isoformat(),
                "session": ("midday", "evening")[i % 2], "draw": (i * 53 + 7) % mod}
               for i in range(2 * days)]
    path.write_text(json.dumps(entries))
    return path


def toml_job(**keys: Any) -> str:
    """A TOML job file with `keys` (strings, numbers, lists of those)."""
    return "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items())


def _toml(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return json.dumps(value)  # strings, ints and floats are written alike in TOML


def standin_command(script: Path, delay: float = 0.05, fail: bool = False) -> Callable[..., list[str]]:
    """A runner `command` that runs the stand-in with the job's trials."""

    def command(record: Any, job_dir: Path) -> list[str]:
        argv = [sys.executable, str(script), "--out", str(job_dir),
                "--trials", str(record.spec.trials), "--delay", str(delay)]
        return argv + (["--fail"] if fail else [])

    return command

