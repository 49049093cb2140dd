"""`winopt sync RUN_DIR --rig NAME=TARGET ...`: send a run's NPZ and meta to rigs now.

This is the standalone form: no daemon, the same `Distributor` the daemon uses, so a
person can push a run by hand (or script it) and see per rig what happened. It waits
until every rig is synced or has failed, or until `--timeout`, and exits 0 only when
every rig has the NPZ.

Later, under the daemon: `winopt sync [RUN]` with no rigs on the command line will drop
a request file into `STATE/spool/` (a hidden temp name renamed into place, as `winopt
submit` and `winopt cancel` do); the daemon's watcher picks it up and calls
`Distributor.resync(run)` (every run when RUN is omitted), which re-checks every rig with
rsync's quick check and forgets any backoff.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from winopt.contracts.schemas import NPZ_META_NAME, NPZ_NAME
from winopt.errors import UserError, in_file
from winopt.handlers.distribute import Distributor, RetryPolicy
from winopt.handlers.rigs import Rig, merge_rigs, parse_rig_arg, parse_rigs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help=f"run directory holding {NPZ_NAME} and its meta")
    parser.add_argument("--run", help="run name on the rigs (default: the directory's name)")
    parser.add_argument(
        "--rig", action="append", default=[], metavar="NAME=TARGET",
        help="a rig: local directory or [user@]host:/path/ (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--rigs", type=Path, metavar="FILE",
        help="TOML file with [rigs.NAME] tables (the daemon config works: only rigs are read)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after S seconds (default 300)")
    parser.add_argument("--json", action="store_true", help="print the per-rig states as JSON")


def run(args: argparse.Namespace) -> int:
    rigs = _rigs(args)
    run_dir = args.run_dir.resolve()
    npz, meta = run_dir / NPZ_NAME, run_dir / NPZ_META_NAME
    for path in (npz, meta):
        if not path.is_file():
            raise in_file(path, "no such file (convert the run first: winopt convert)")
    name = args.run or run_dir.name
    distributor = Distributor(rigs, policy=RetryPolicy(base=1.0, cap=15.0), max_parallel=len(rigs))
    try:
        distributor.submit(name, npz, meta)
        distributor.wait_settled(args.timeout)
        states = distributor.snapshot().get(name, {})
    finally:
        distributor.stop(timeout=5.0)
    _print(states, as_json=args.json)
    return 0 if states and all(s["state"] == "synced" for s in states.values()) else 1


def _rigs(args: argparse.Namespace) -> dict[str, Rig]:
    configured: dict[str, Rig] = {}
    if args.rigs:
        configured = parse_rigs(_read_toml(args.rigs).get("rigs", {}), source=args.rigs, base_dir=args.rigs.parent)
    rigs = merge_rigs(configured, [parse_rig_arg(text) for text in args.rig])
    if not rigs:
        raise UserError("no rigs: give --rig NAME=TARGET or --rigs FILE")
    return rigs


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise in_file(path, "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise in_file(path, f"not valid TOML: {exc}") from None


def _print(states: dict[str, dict], *, as_json: bool) -> None:
    if as_json:
        json.dump(states, sys.stdout, indent=2)
        print()
        return
    print(f"{'RIG':<12} {'STATE':<9} {'SHA256':<12} {'TIME':>7}  DETAIL")
    for rig, s in sorted(states.items()):
        sha = (s["sha256"] or "-")[:12]
        took = f"{s['last_duration_s']:.2f}s" if s["last_duration_s"] is not None else "-"
        detail = s["last_error"] or ("sent " + ", ".join(s["last_sent"]) if s["last_sent"] else "up to date")
        print(f"{rig:<12} {s['state']:<9} {sha:<12} {took:>7}  {detail}")
