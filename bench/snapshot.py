"""Cost of the SnapshotWriter callback early and late in one study: it must stay flat.

One in-memory Optuna study runs 2,000 trials of a trivial objective that hands the writer a
ready-made sieve result of 100 survivors. Even trials are new bests (survivors + config
published), odd trials are not (config only). The callback alone is timed; medians over 40
trials around trial 10 and around trial 2,000 are printed with their ratio (late / early).
For contrast, the same run also times what a scanning callback does each trial (count the
COMPLETE trials, as Optuna's MaxTrialsCallback does): its ratio grows with the study.

    .venv/bin/python bench/snapshot.py [--trials 2000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from winopt.optimizer.sieve.core import SieveParams, SieveResult
from winopt.optimizer.snapshot import SnapshotWriter
from winopt.optimizer.study import RunSettings, StudyProgress
from winopt.optimizer.objective import SIEVE_ATTR, sieve_attr

SETTINGS = RunSettings(prng="java_lcg", seed_start=0, seed_count=100_000, mod=1000,
                       draws_sha256="0" * 64)
PARAMS = SieveParams(prng="java_lcg", window_size=8, offset=10, skip_min=0, skip_max=20,
                     forward_threshold=0.25, reverse_threshold=0.25, seed_start=0,
                     seed_count=100_000, mod=1000)
WINDOW = 40


def fake_result(n: int) -> SieveResult:
    """A sieve result with `n` survivors (the bench measures writing, not sieving)."""
    rng = np.random.default_rng(n)
    return SieveResult(
        params=PARAMS,
        seeds=np.sort(rng.choice(100_000, size=n, replace=False)).astype(np.uint64),
        skips=rng.integers(0, 21, size=n).astype(np.int64),
        forward_rate=np.full(n, 0.25), reverse_rate=np.full(n, 0.375),
        forward_count=10 * n, reverse_count=11 * n, bidirectional_count=n,
        expected_chance_bidirectional=0.5, notes=[],
    )


def run(trials: int, directory: Path) -> tuple[dict[int, float], dict[int, float]]:
    """Per-trial seconds of the writer, and of the reference scan."""
    result = fake_result(100)
    pending: dict[int, SieveResult] = {}

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_int("window_size", 2, 50)
        trial.set_user_attr(SIEVE_ATTR, sieve_attr(result, "all"))
        pending[trial.number] = result
        return float(trial.number if trial.number % 2 == 0 else -1)

    writer = SnapshotWriter(directory, settings=SETTINGS, study_name="bench", started_at="now",
                            total_trials=trials, take_result=lambda n: pending.pop(n, None),
                            progress=StudyProgress())
    times: dict[int, float] = {}
    scans: dict[int, float] = {}

    def timed(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        t0 = time.perf_counter()
        writer(study, trial)
        t1 = time.perf_counter()
        study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        times[trial.number] = t1 - t0
        scans[trial.number] = time.perf_counter() - t1

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=trials, callbacks=[timed])
    assert writer.failed_writes == 0
    return times, scans


def median_ms(times: dict[int, float], numbers: range, parity: int | None = None) -> float:
    return 1000 * statistics.median(
        times[n] for n in numbers if parity is None or n % 2 == parity)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        times, scans = run(args.trials, Path(tmp))
    early = range(10, 10 + WINDOW)
    late = range(args.trials - WINDOW, args.trials)
    print(f"SnapshotWriter callback in one study of {args.trials} trials (medians over the "
          f"{WINDOW} trials from ~10 and up to {args.trials}):")
    for label, parity in (("new best (survivors + config)", 0), ("config only", 1)):
        a, b = median_ms(times, early, parity), median_ms(times, late, parity)
        print(f"  {label:32s} trial ~10: {a:7.3f} ms   trial ~{args.trials}: {b:7.3f} ms"
              f"   ratio late/early: {b / a:.2f}")
    a, b = median_ms(scans, early), median_ms(scans, late)
    print(f"  {'reference: scan COMPLETE trials':32s} trial ~10: {a:7.3f} ms   trial "
          f"~{args.trials}: {b:7.3f} ms   ratio late/early: {b / a:.2f}")


if __name__ == "__main__":
    main()
