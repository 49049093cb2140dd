"""`winopt evaluate DIR|CONFIG`: print the watcher decision for a run (SPEC §4).

`winopt evaluate` exits 0 for every decision (a decision is not an error); with
`--exit-code` it exits proceed 0, wait 3, retry 4, escalate 5, for scripts that branch on
it (1 and 2 keep meaning crash and bad input).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, get_args

from msgspec.structs import fields

from winopt.contracts.errors import UserError
from winopt.contracts.strict import parse_duration
from winopt.handlers.evaluate.rules import EXIT_CODES, evaluate, format_decision
from winopt.handlers.evaluate.thresholds import THRESHOLD_HELP, Thresholds


def add_threshold_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per Thresholds field (--stall-after, --proceed-high, ...), default unset."""
    group = parser.add_argument_group("decision thresholds (defaults of SPEC §4)")
    for f in fields(Thresholds):
        kind = parse_duration if f.name == "stall_after" else get_args(f.type)[0]
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            type=_cli_type(kind),
            default=None,
            metavar="N",
            help=f"{THRESHOLD_HELP[f.name]} (default {f.default:g})",
        )


def _cli_type(kind: Any) -> Any:
    """argparse type that turns UserError/ValueError into argparse's one-line usage error."""

    def convert(text: str) -> Any:
        try:
            return kind(text)
        except (UserError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(kind, "__name__", "value")
    return convert


def thresholds_from_args(args: argparse.Namespace, base: Thresholds = Thresholds()) -> Thresholds:
    """`base` with the threshold flags that were given (each checked, and the tiers' order)."""
    given = {f.name: getattr(args, f.name) for f in fields(Thresholds) if getattr(args, f.name, None) is not None}
    return Thresholds.from_mapping({**base.to_dict(), **given})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`winopt evaluate DIR|CONFIG [--json] [--exit-code] [threshold flags]`."""
    parser.add_argument("target", type=Path, help="run directory or optimal_window_config.json")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    codes = ", ".join(f"{a} {c}" for a, c in EXIT_CODES.items())
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help=f"exit with a status per action ({codes}); without it any decision exits 0",
    )
    add_threshold_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Print the decision (one line, or JSON); exit 0 unless --exit-code."""
    decision = evaluate(args.target, thresholds_from_args(args))
    if args.json:
        print(json.dumps(decision, indent=2))
    else:
        print(format_decision(decision))
    return EXIT_CODES[decision["action"]] if args.exit_code else 0


