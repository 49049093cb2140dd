"""`winopt synth`: write a draw history with a planted seed (for tests, demos, benches)."""

from __future__ import annotations

import argparse

from winopt.contracts.errors import UserError
from winopt.optimizer.draws import SESSIONS
from winopt.optimizer.synth import PLANT_IN, Plan, write

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write a draw history whose draws come from a PRNG seed (draw t is output "
        "skip + t(skip+1) of the seeded generator), plus NAME.truth.json saying what was "
        "planted."
    )
    parser.add_argument("--prng", required=True, help="generator family (java_lcg, lcg32, ...)")
    parser.add_argument(
        "--seed", required=True, type=int,
        help="the seed planted: the generator's seed, its state before draw 0 (as on the rigs)",
    )  # fmt: skip
    parser.add_argument(
        "--skip", required=True, type=int, help="outputs discarded before each draw"
    )
    parser.add_argument("--draws", required=True, type=int, help="draws in the planted selection")
    parser.add_argument(
        "--sessions",
        default="midday,evening",
        help="comma list of sessions per day, or 'none' for a plain list of ints "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--plant-in",
        default="all",
        choices=PLANT_IN,
        help="time_of_day selection that holds the planted stream; other sessions get random draws",
    )
    parser.add_argument(
        "--mod", type=int, default=1000, help="draws lie in [0, mod) (default %(default)s)"
    )
    parser.add_argument(
        "--rng-seed", type=int, default=0, help="seed of the random draws (default %(default)s)"
    )
    parser.add_argument(
        "--start-date", default="2020-01-01", help="date of the first draw (default %(default)s)"
    )
    parser.add_argument("--out", required=True, help="history file to write (JSON)")


def parse_sessions(text: str) -> tuple[str, ...]:
    """`midday,evening` -> ("midday", "evening"); `none` -> () (plain list of ints)."""
    if text.strip().lower() == "none":
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SESSIONS]
    if unknown or not names or len(set(names)) != len(names):
        raise UserError(
            f"--sessions must list midday and/or evening once each, or be 'none'; got {text!r}"
        )
    return tuple(s for s in SESSIONS if s in names)


def run(args: argparse.Namespace) -> int:
    plan = Plan(
        prng=args.prng,
        seed=args.seed,
        skip=args.skip,
        draws=args.draws,
        mod=args.mod,
        sessions=parse_sessions(args.sessions),
        plant_in=args.plant_in,
        rng_seed=args.rng_seed,
        start_date=args.start_date,
    )
    history, truth, entries = write(plan, args.out)
    print(
        f"wrote {history} ({entries} entries) and {truth}: {plan.prng} seed {plan.seed} "
        f"planted in time_of_day={plan.plant_in}, skip {plan.skip}"
    )
    return 0
