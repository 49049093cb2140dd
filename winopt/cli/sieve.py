"""`winopt sieve`: one bidirectional sieve run over a draw history, for people and scripts.

Without `--json` it prints the counts, the chance expectation, any notes (a clamped
offset) and the best survivors as a table. With `--json` stdout is exactly the SPEC §3
survivors list (what `bidirectional_survivors.json` would hold) and the summary goes to
stderr, so `winopt sieve --json ... > survivors.json` is a valid input for `winopt
convert`. Thresholds have no defaults: the ones given are the ones used (SPEC §1). A
progress bar is drawn on stderr only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from winopt.contracts.publish import dump_json
from winopt.contracts.schemas import TIME_OF_DAY
from winopt.contracts.errors import UserError, in_file
from winopt.optimizer.draws import check_selection, load_history
from winopt.optimizer.sieve.generators import FAMILIES, check_seed_range
from winopt.optimizer.sieve.core import SieveParams, SieveResult, run_sieve
from winopt.optimizer.survivors import survivor_records

#: trial number written into the records of a one-off run (not part of a study)
TRIAL_NUMBER = 0
TABLE_LIMIT = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the bidirectional sieve once: seeds [seed-start, seed-start+seed-count) and skips "
        "[skip-min, skip-max] against the window [offset, offset+2*window-size) of the history."
    )
    parser.add_argument("--draws", required=True, metavar="FILE", help="draw history (JSON)")
    parser.add_argument("--prng", required=True, choices=FAMILIES, help="generator family")
    parser.add_argument("--window-size", required=True, type=int, metavar="W")
    parser.add_argument(
        "--offset",
        required=True,
        type=int,
        metavar="O",
        help="first draw of the window; pivot = O+W",
    )
    parser.add_argument("--skip-min", required=True, type=int, metavar="A")
    parser.add_argument("--skip-max", required=True, type=int, metavar="B")
    parser.add_argument("--forward-threshold", required=True, type=float, metavar="T")
    parser.add_argument("--reverse-threshold", required=True, type=float, metavar="U")
    parser.add_argument("--seed-start", required=True, type=int, metavar="S")
    parser.add_argument("--seed-count", required=True, type=int, metavar="C")
    parser.add_argument(
        "--time-of-day", default="all", choices=TIME_OF_DAY, help="default %(default)s"
    )
    parser.add_argument(
        "--mod", type=int, default=1000, help="draws lie in [0, mod) (default %(default)s)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "gpu", "auto"), help="default: $WINOPT_DEVICE, else auto"
    )
    parser.add_argument(
        "--cores", type=int, default=None, metavar="N",
        help="CPU cores to use (default: all this process may use); results do not depend on it",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true", help="print the SPEC §3 survivors list on stdout"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=TABLE_LIMIT,
        help="survivors shown in the table, best first (0: all; default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    draws = load_history(args.draws, mod=args.mod, time_of_day=args.time_of_day)
    result = sieve_file(args.draws, draws, params, time_of_day=args.time_of_day,
                        device=args.device, cores=args.cores)  # fmt: skip
    summary = sys.stderr if args.json else sys.stdout
    print_summary(result, args, summary)
    records = survivor_records(result, time_of_day=args.time_of_day, trial_number=TRIAL_NUMBER)
    if args.json:
        sys.stdout.buffer.write(dump_json(records))
        sys.stdout.flush()
    else:
        print_table(records, args.limit, summary)
    return 0


def params_from_args(args: argparse.Namespace) -> SieveParams:
    """The sieve parameters, after the checks that need no history (one line each)."""
    check_selection(args.mod, args.time_of_day)
    if not 2 <= args.mod <= 2**32:
        raise UserError(f"--mod must lie in [2, 2^32] for the sieve, got {args.mod}")
    if args.window_size < 1:
        raise UserError(f"--window-size must be at least 1, got {args.window_size}")
    if args.offset < 0:
        raise UserError(f"--offset must be >= 0, got {args.offset}")
    if not 0 <= args.skip_min <= args.skip_max:
        raise UserError(
            f"need 0 <= --skip-min <= --skip-max, got {args.skip_min} and {args.skip_max}"
        )
    for name in ("forward_threshold", "reverse_threshold"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise UserError(f"--{name.replace('_', '-')} must lie in [0, 1], got {value}")
    if args.seed_start < 0 or args.seed_count < 1:
        raise UserError(
            "need --seed-start >= 0 and --seed-count >= 1, "
            f"got {args.seed_start} and {args.seed_count}"
        )
    problem = check_seed_range(args.prng, args.seed_start, args.seed_count)
    if problem:
        raise UserError(problem)
    return SieveParams(
        prng=args.prng,
        window_size=args.window_size,
        offset=args.offset,
        skip_min=args.skip_min,
        skip_max=args.skip_max,
        forward_threshold=args.forward_threshold,
        reverse_threshold=args.reverse_threshold,
        seed_start=args.seed_start,
        seed_count=args.seed_count,
        mod=args.mod,
    )


def sieve_file(
    path: str,
    draws: Any,
    params: SieveParams,
    *,
    time_of_day: str = "all",
    device: str | None = None,
    cores: int | None = None,
) -> SieveResult:
    """`run_sieve` on the draws of `path`; its complaints (too short...) name the file and
    the time_of_day selection the draws came from."""
    try:
        with progress_bar(params.seed_count) as progress:
            return run_sieve(draws, params, device=device, progress=progress, cores=cores)
    except UserError as exc:
        if str(exc).startswith(f"{path}:"):
            raise
        selection = "" if time_of_day == "all" else f" (time_of_day {time_of_day})"
        raise in_file(path, f"{exc}{selection}") from None


@contextmanager
def progress_bar(
    total: int, stream: TextIO | None = None
) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on stderr when it is a terminal (seeds done), else no progress callback."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="seed", unit_scale=True, file=stream, leave=False) as bar:
        yield bar.update


def print_summary(result: SieveResult, args: argparse.Namespace, out: TextIO) -> None:
    """Counts, chance expectation and notes: what a person reads first."""
    p = result.params
    print(
        f"{p.prng}  window {p.window_size}  offset {p.offset}  skips {p.skip_min}-{p.skip_max}  "
        f"thresholds {p.forward_threshold:g}/{p.reverse_threshold:g}  seeds {p.seed_start}.."
        f"{p.seed_start + p.seed_count - 1}  time_of_day {args.time_of_day}  mod {p.mod}",
        file=out,
    )
    for note in result.notes:
        print(f"note: {note}", file=out)
    print(
        f"forward survivors {result.forward_count}, reverse survivors {result.reverse_count}, "
        f"bidirectional {result.bidirectional_count} "
        f"(chance expectation {result.expected_chance_bidirectional:.3g})",
        file=out,
    )


def print_table(records: list[dict[str, Any]], limit: int, out: TextIO) -> None:
    """The survivors, best score first (ties by seed), at most `limit` rows (0: all)."""
    if not records:
        print("no bidirectional survivors", file=out)
        return
    best = sorted(records, key=lambda r: (-r["score"], r["seed"]))
    shown = best if limit <= 0 else best[:limit]
    width = max(4, len(str(max(r["seed"] for r in shown))))
    print(f"{'seed':>{width}}  {'skip':>4}  {'forward':>7}  {'reverse':>7}  {'score':>6}", file=out)
    for r in shown:
        print(
            f"{r['seed']:>{width}}  {r['skip']:>4}  {r['forward_match_rate']:>7.3f}  "
            f"{r['reverse_match_rate']:>7.3f}  {r['score']:>6.3f}",
            file=out,
        )
    if len(shown) < len(records):
        print(
            f"... {len(records) - len(shown)} more (--limit 0 shows all, --json writes them)",
            file=out,
        )
