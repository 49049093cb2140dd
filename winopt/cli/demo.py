"""`winopt demo` (run by `make demo`): the bundled planted sample, sieved, seed found.

The sample in `samples/` was written by `winopt synth` (see samples/README.md), so its
truth file says which seed was planted (the rigs' seed: the generator's state before the
first draw) and with which skip. The demo runs the sieve with a window in the middle of
the history, a skip range and seed range that hold the truth, and exits non-zero unless
the planted seed comes back with both rates 1.0 and the planted skip.

The demo is a list of small steps sharing one `Demo` record; each step prints what it
does and what it found. A later step (a short optimization, convert, evaluate) is one
more function appended to `STEPS`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from winopt.contracts.publish import publish_json
from winopt.contracts.schemas import CONFIG_NAME, SURVIVORS_NAME, read_snapshot
from winopt.contracts.errors import UserError
from winopt.optimizer.draws import load_history
from winopt.optimizer.sieve.core import SieveParams, SieveResult
from winopt.cli.sieve import sieve_file
from winopt.optimizer.survivors import survivor_records
from winopt.optimizer.synth import Plan, load_truth, truth_path
from winopt.optimizer.synth import write as write_history

SAMPLE_NAME = "planted_java_lcg.json"
#: the demo's sieve: a window of 8 draws each side of the pivot, thresholds at 1/2, and a
#: seed range of this many seeds around the planted one
WINDOW_SIZE = 8
THRESHOLD = 0.5
SEED_COUNT = 1_000_000
SKIP_SPAN = 10
#: the optimization step: a short study in DEMO_OUT/run
OPTIMIZE_DIR = "run"
OPTIMIZE_TRIALS = 12


class DemoFailed(Exception):
    """The demo ran but did not show what it should (the planted seed was not found)."""


@dataclass
class Demo:
    """What the steps share: where things are and what earlier steps found."""

    out: Path
    sample: Path
    truth: dict[str, Any] = field(default_factory=dict)
    params: SieveParams | None = None
    result: SieveResult | None = None
    survivors: list[dict[str, Any]] = field(default_factory=list)


def default_sample() -> Path:
    """The bundled sample: `samples/` at the source root (beside the `winopt` folder)."""
    return Path(__file__).resolve().parents[2] / "samples" / SAMPLE_NAME


def step_read_truth(demo: Demo) -> None:
    """Read what `winopt synth` planted in the bundled sample."""
    if not demo.sample.is_file():
        raise UserError(f"{demo.sample}: the demo sample is missing (pass --sample FILE)")
    demo.truth = load_truth(truth_path(demo.sample))
    t = demo.truth
    say(
        f"sample {demo.sample.name}: {t['entries']} draws, {t['prng']} seed {t['seed']} planted "
        f"(time_of_day={t['time_of_day']}), skip {t['skip']}"
    )


def step_synth(demo: Demo) -> None:
    """Re-plant the sample with `winopt synth` and check it matches the bundled file."""
    t = demo.truth
    plan = Plan(prng=t["prng"], seed=t["seed"], skip=t["skip"], draws=t["draws"],
                mod=t["mod"], sessions=tuple(t["sessions"]), plant_in=t["time_of_day"],
                rng_seed=t["rng_seed"], start_date=t["start_date"])
    plan.check()
    fresh, _, entries = write_history(plan, demo.out / f"synth-{demo.sample.name}")
    if fresh.read_bytes() != demo.sample.read_bytes():
        raise DemoFailed(f"winopt synth wrote {fresh}, which differs from {demo.sample}")
    say(f"winopt synth --prng {t['prng']} --seed {t['seed']} --skip {t['skip']} "
        f"--draws {t['draws']}: {entries} draws, identical to the bundled sample")


def step_sieve(demo: Demo) -> None:
    """Sieve the sample with a window in the middle of the history."""
    t = demo.truth
    demo.params = params_for(t)
    p = demo.params
    say(
        f"sieving seeds {p.seed_start}..{p.seed_start + p.seed_count - 1} x skips "
        f"{p.skip_min}..{p.skip_max}, window {p.window_size} at offset {p.offset}, "
        f"thresholds {p.forward_threshold}/{p.reverse_threshold}"
    )
    draws = load_history(demo.sample, mod=t["mod"], time_of_day=t["time_of_day"])
    started = time.perf_counter()
    demo.result = sieve_file(str(demo.sample), draws, p, time_of_day=t["time_of_day"])
    r = demo.result
    say(
        f"{p.seed_count * (p.skip_max - p.skip_min + 1):,} hypotheses in "
        f"{time.perf_counter() - started:.2f} s: forward {r.forward_count}, reverse "
        f"{r.reverse_count}, bidirectional {r.bidirectional_count} "
        f"(chance expectation {r.expected_chance_bidirectional:.2g})"
    )


def step_publish_survivors(demo: Demo) -> None:
    """Publish the survivors as the optimizer does (SPEC §3)."""
    assert demo.result is not None
    demo.survivors = survivor_records(
        demo.result, time_of_day=demo.truth["time_of_day"], trial_number=0
    )
    target = publish_json(demo.out / SURVIVORS_NAME, demo.survivors)
    say(f"wrote {target} ({plural(len(demo.survivors), 'survivor')})")


def step_check_planted(demo: Demo) -> None:
    """Check that the planted seed survived, at both rates 1.0 with the planted skip."""
    t = demo.truth
    found = [r for r in demo.survivors if r["seed"] == t["seed"]]
    if not found:
        raise DemoFailed(
            f"planted seed {t['seed']} NOT found among {len(demo.survivors)} survivors"
        )
    hit = found[0]
    if (hit["skip"], hit["forward_match_rate"], hit["reverse_match_rate"]) != (t["skip"], 1.0, 1.0):
        raise DemoFailed(f"planted seed {t['seed']} found with the wrong skip or rates: {hit}")
    others = len(demo.survivors) - 1
    say(
        f"FOUND the planted seed {hit['seed']}: skip {hit['skip']}, forward 1.0, reverse 1.0"
        + (
            f" ({plural(others, 'other survivor')}: chance hits)"
            if others
            else " (and nothing else)"
        )
    )


def step_optimize(demo: Demo) -> None:
    """Run a short `winopt optimize` on the sample, watching its snapshot update."""
    t = demo.truth
    run_dir = demo.out / OPTIMIZE_DIR
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo's own scratch run: start afresh
    window, pivot = min(WINDOW_SIZE, t["draws"] // 2), t["draws"] // 2
    argv = [sys.executable, "-m", "winopt", "optimize", "--draws", str(demo.sample),
            "--out", str(run_dir), "--trials", str(OPTIMIZE_TRIALS), "--prng", t["prng"],
            "--mod", str(t["mod"]), "--seed-start", str(max(0, t["seed"] - 50_000)),
            "--seed-count", "100000", "--window-size", str(window),
            "--offset", str(pivot - window), "--skip-min", "0:3", "--skip-max", "3:12",
            "--strategy", "random", "--sampler-seed", "0"]
    say(f"winopt optimize --out {run_dir} --trials {OPTIMIZE_TRIALS} (window fixed in the "
        "middle; skips, thresholds and time_of_day searched)")
    config_file, seen = run_dir / CONFIG_NAME, None
    with subprocess.Popen(argv, stderr=subprocess.DEVNULL) as proc:
        while True:  # a person's view of the file the daemon watches, polled
            done = proc.poll() is not None
            try:
                c = read_snapshot(config_file)
            except (FileNotFoundError, UserError):
                c = None
            if c and (c["status"], c["completed_trials"]) != seen:
                seen = (c["status"], c["completed_trials"])
                best = (f"best {c['best_bidirectional_count']} (trial {c['best_trial_number']})"
                        if c["best_trial_number"] is not None else c["note"])
                say(f"snapshot: {c['status']}, {c['completed_trials']}/{c['total_trials']} "
                    f"trials, {best}")
            if done:
                break
            time.sleep(0.1)
    if proc.returncode != 0 or not c or c["status"] != "complete":
        raise DemoFailed(f"winopt optimize exited {proc.returncode}; see {config_file}")
    survivors = orjson.loads((run_dir / SURVIVORS_NAME).read_bytes())
    if t["seed"] not in {r["seed"] for r in survivors}:
        raise DemoFailed(f"the best trial's survivors lack the planted seed {t['seed']}")
    say(f"best trial {c['best_trial_number']}: time_of_day {c['time_of_day']}, skips "
        f"{c['skip_min']}..{c['skip_max']}; its survivors hold the planted seed {t['seed']}")


def step_convert_evaluate(demo: Demo) -> None:
    """Convert the run's survivors to the rigs' NPZ and print the watcher's decision."""
    import numpy as np

    from winopt.handlers.convert.to_npz import convert
    from winopt.handlers.evaluate.rules import evaluate, format_decision

    run_dir = demo.out / OPTIMIZE_DIR
    result = convert(run_dir / SURVIVORS_NAME)
    with np.load(result.npz_path, allow_pickle=False) as npz:
        seeds, skips = npz["seeds"], npz["skip"]
        where = np.flatnonzero(seeds == demo.truth["seed"])
        if where.size == 0:
            raise DemoFailed(f"{result.npz_path} lacks the planted seed {demo.truth['seed']}")
        say(f"winopt convert: {plural(result.count, 'survivor')} -> {result.npz_path} "
            f"(seeds {seeds.dtype}); planted seed at row {where[0]}, skip {skips[where[0]]}")
    decision = evaluate(run_dir)
    say(f"winopt evaluate: {format_decision(decision)}")
    if decision["action"] != "proceed":  # a planted seed is a finding (SPEC §4 significance)
        raise DemoFailed(f"the watcher decided {decision['action']}, not proceed")


STEPS: list[Callable[[Demo], None]] = [
    step_read_truth,
    step_synth,
    step_sieve,
    step_publish_survivors,
    step_check_planted,
    step_optimize,
    step_convert_evaluate,
]


def params_for(truth: dict[str, Any]) -> SieveParams:
    """Sieve parameters with a window in the middle of the history (any window that fits
    finds the seed) and skip and seed ranges that hold the truth."""
    pivot = truth["draws"] // 2
    window = min(WINDOW_SIZE, pivot)
    if window < 1:
        raise UserError("the sample is too short for a window")
    skip_min = max(0, truth["skip"] - SKIP_SPAN // 2)
    seed_start = max(0, truth["seed"] - SEED_COUNT // 3)
    return SieveParams(
        prng=truth["prng"],
        window_size=window,
        offset=pivot - window,
        skip_min=skip_min,
        skip_max=skip_min + SKIP_SPAN,
        forward_threshold=THRESHOLD,
        reverse_threshold=THRESHOLD,
        seed_start=seed_start,
        seed_count=SEED_COUNT,
        mod=truth["mod"],
    )


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="demo-out", help="folder for what the demo writes (default %(default)s)"
    )
    parser.add_argument(
        "--sample", type=Path, default=None, help="planted history (default: the bundled sample)"
    )


def run(args: argparse.Namespace) -> int:
    demo = Demo(out=Path(args.out), sample=args.sample or default_sample())
    demo.out.mkdir(parents=True, exist_ok=True)
    for number, step in enumerate(STEPS, 1):
        print(
            f"[{number}/{len(STEPS)}] {(step.__doc__ or step.__name__).splitlines()[0]}", flush=True
        )
        try:
            step(demo)
        except DemoFailed as exc:
            print(f"demo FAILED: {exc}", flush=True)
            return 1
    print("demo OK", flush=True)
    return 0
