"""Throughput of shared studies (issue 15): trials per hour with 1 and with 2 `winopt
worker` processes on one PostgreSQL study, and what the storage costs per trial against
the trial itself.

Every trial has the same cost (the search space is fixed; `--seed-count` sets it), so
trials/h compare fairly. A throw-away PostgreSQL cluster is made in a temp dir (as the
tests make theirs) unless --storage names one. Printed:

- trials/h with 1 worker and with 2 (each `--cores 1`), measured from the storage's own
  trial start/complete times, and their ratio (the issue asks >= 1.7 on 2 cores);
- the sieve alone per trial (in this process), and the storage's overhead per trial: what
  one worker spends in `claim_trial` (stale sweep, count and ask under the advisory lock,
  first heartbeat), the suggestions, the trial's attributes and the tell, timed in this
  process on a trivial objective; with their ratio.

    .venv/bin/python bench/workers.py [--trials 24] [--seed-count 3000000] [--storage URL]

Workers start one or two seconds apart (Python and NumPy start-up), so runs need to be
long against that: the defaults give ~1 s trials, ~30 s for one worker.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from optimize_support import MOD, write_history  # noqa: E402
from pg_support import PgCluster, pg_bindir  # noqa: E402
from winopt.optimizer.draws import load_history  # noqa: E402
from winopt.optimizer.sieve.core import run_sieve  # noqa: E402
from winopt.optimizer.shared_storage import open_storage  # noqa: E402
from winopt.optimizer.shared_study import SharedSpec, claim_trial, open_for_workers  # noqa: E402
from winopt.optimizer.study import RunSettings
from winopt.optimizer.space import SearchSpace
from winopt.optimizer.objective import sieve_params

#: one point: every trial costs the same
FIXED = {"window_size": 6, "offset": 10, "skip_min": 0, "skip_max": 12,
         "forward_threshold": 0.3, "reverse_threshold": 0.3}
SPACE_ARGS = ["--window-size", "6", "--offset", "10", "--skip-min", "0", "--skip-max", "12",
              "--forward-threshold", "0.3", "--reverse-threshold", "0.3", "--time-of-day", "all"]


def run_workers(url: str, draws: Path, out: Path, name: str, trials: int, seed_count: int,
                workers: int) -> tuple[float, float]:
    """Trials per hour of `workers` worker processes on a new study of `trials` trials, and
    the median seconds of one trial (start to complete, as the storage recorded them)."""
    env = {**os.environ, "WINOPT_STORAGE": url, "WINOPT_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    winopt = [sys.executable, "-m", "winopt"]
    head = subprocess.Popen([*winopt, "study", "--draws", str(draws), "--out", str(out), "--study", name,
                             "--trials", str(trials), "--seed-count", str(seed_count), "--mod", str(MOD),
                             "--strategy", "random", "--poll", "0.5", *SPACE_ARGS],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = open_storage(url)
    deadline = time.monotonic() + 60
    while not any(s.study_name == name for s in storage.get_all_studies()):
        if time.monotonic() > deadline or head.poll() is not None:
            raise SystemExit("bench: winopt study did not open the study")
        time.sleep(0.1)
    procs = [subprocess.Popen([*winopt, "worker", "--cores", "1", "--once", "--poll", "0.2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    for p in procs:
        p.wait()
    head.wait(timeout=120)
    sid = storage.get_study_id_from_name(name)
    done = [t for t in storage.get_all_trials(sid) if t.state == TrialState.COMPLETE]
    assert len(done) == trials, f"{len(done)} trials finished, not {trials}"
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    storage.engine.dispose()
    each = statistics.median((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    return trials / (end - start).total_seconds() * 3600, each


def sieve_seconds(draws: Path, seed_count: int, repeat: int = 3) -> float:
    settings = RunSettings(prng="java_lcg", seed_start=0, seed_count=seed_count, mod=MOD, draws_sha256="")
    history = load_history(draws, mod=MOD, time_of_day="all")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_sieve(history, sieve_params(settings, FIXED), device="cpu", cores=1)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def storage_seconds(url: str, draws: Path, n: int = 40) -> float:
    """Median seconds of one trial's storage work on a trivial objective: claim (sweep,
    count, ask, first heartbeat under the lock), six suggestions, the sieve attribute, tell."""
    storage = open_storage(url)
    history = load_history(draws, mod=MOD, time_of_day="all")
    space = SearchSpace().with_bounds(**{k: (v, v) for k, v in FIXED.items()})
    settings = RunSettings(prng="java_lcg", seed_start=0, seed_count=1, mod=MOD, draws_sha256="x")
    spec = SharedSpec(settings, space, n, "random", {"all": history})
    study = open_for_workers(storage, "overhead", spec)
    study.sampler = optuna.samplers.RandomSampler()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        trial = claim_trial(study, storage, n)
        assert trial is not None
        space.suggest(trial)
        trial.set_user_attr("sieve", {"forward_count": 1, "reverse_count": 1})
        study.tell(trial, 0.0)
        times.append(time.perf_counter() - t0)
    storage.engine.dispose()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seed-count", type=int, default=3_000_000)
    parser.add_argument("--storage", default=None, help="an existing empty PostgreSQL database")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cluster = None
    with tempfile.TemporaryDirectory(prefix="winopt-bench-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        url = args.storage
        if url is None:
            bindir = pg_bindir()
            if bindir is None:
                raise SystemExit("bench: no PostgreSQL server (apt-get install postgresql) and no --storage")
            cluster = PgCluster(bindir)
            cluster.start()
            url = cluster.new_database()
        try:
            draws = write_history(root / "h.json")
            sieve = sieve_seconds(draws, args.seed_count)
            print(f"one trial's sieve alone (1 core, {args.seed_count:,} seeds): {sieve:.3f} s")
            one, one_each = run_workers(url, draws, root / "one", "one", args.trials, args.seed_count, 1)
            two, two_each = run_workers(url, draws, root / "two", "two", args.trials, args.seed_count, 2)
            print(f"1 worker : {one:8.0f} trials/h  (a trial takes {one_each:.2f} s)")
            print(f"2 workers: {two:8.0f} trials/h  (a trial takes {two_each:.2f} s: "
                  f"{two_each / one_each:.2f}x, the cores' share each worker got)")
            print(f"ratio 2/1: {two / one:.2f} (goal >= 1.7; the machine has {os.cpu_count()} cores, "
                  f"load average {os.getloadavg()[0]:.1f} now)")
            overhead = storage_seconds(url, draws)
            print(f"storage per trial (claim under the lock, suggest, attrs, tell): {overhead * 1000:.1f} ms")
            print(f"storage / sieve per trial: {overhead / sieve:.3f}")
        finally:
            if cluster is not None:
                cluster.destroy()


if __name__ == "__main__":
    main()
