"""`winopt sync`: send NPZ files to the rigs now, through the daemon or by hand.

`winopt sync [RUN]` (no rigs on the command line) asks the running daemon: it drops a
request `spool/sync-<RUN or all>.<random>.sync` (a hidden temp name renamed into place, as
`winopt submit` and `winopt cancel` do), and the daemon checks RUN (every run when it is
omitted) on every rig again, forgetting any backoff and `failed` marks: a rig wiped or
repaired by hand gets the newest NPZ now. The command returns once the daemon has taken
the request; with `--wait`, once every rig has made its try, exiting 0 only when each has
the NPZ (a rig that is down shows `retrying` and its error; the daemon keeps trying).

`winopt sync RUN_DIR --rig NAME=TARGET ... | --rigs FILE` is the standalone form: no
daemon, the same `Distributor` the daemon uses, so a person can push a run by hand (or
script it) and see per rig what happened. It waits until every rig is synced or has
failed, or until `--timeout`, and exits 0 only when every rig has the NPZ. Either way the
run's train_history.json and holdout_history.json travel with the NPZ when the run
directory has them (`Distributor`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from winopt.contracts.schemas import NPZ_META_NAME, NPZ_NAME
from winopt.contracts.errors import UserError, in_file
from winopt.cli.table import fit_table, terminal_width, wrap_all

#: seconds to wait for the daemon to take a request (without --timeout)
TAKE_TIMEOUT = 10.0
POLL_INTERVAL = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", nargs="?", metavar="RUN | RUN_DIR",
        help="with the daemon: the run to check on every rig, as `winopt status` names it (default: "
             f"every run); with --rig/--rigs: the run directory holding {NPZ_NAME} and its meta "
             "(and the train/holdout histories, sent too when present)",
    )  # fmt: skip
    parser.add_argument("--state-dir", help="the daemon's state directory (default: the daemon config's "
                        "state_dir, else /var/lib/winopt)")
    parser.add_argument("--config", help="the daemon's config file, for its state_dir (default "
                        "/etc/winopt/daemon.toml when present)")
    parser.add_argument("--wait", action="store_true",
                        help="with the daemon: wait until every rig has been checked, print each rig's state")
    parser.add_argument("--run", help="standalone: run name on the rigs (default: the directory's name)")
    parser.add_argument(
        "--rig", action="append", default=[], metavar="NAME=TARGET",
        help="a rig: local directory or [user@]host:/path/ (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--rigs", type=Path, metavar="FILE",
        help="TOML file with [rigs.NAME] tables (the daemon config works: only rigs are read)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float,
                        help=f"give up after S seconds (default: 300 standalone, {TAKE_TIMEOUT:g} for the daemon "
                             "to take a request, 300 with --wait)")
    parser.add_argument("--json", action="store_true", help="print the per-rig states as JSON")


def run(args: argparse.Namespace) -> int:
    if not args.rig and not args.rigs:
        return request_from_daemon(args)
    if args.target is None:
        raise UserError("with --rig/--rigs, give the run directory to send")
    return send_standalone(args)


# ---------------------------------------------------------------- through the daemon
def request_from_daemon(args: argparse.Namespace) -> int:
    """Drop a sync request into the daemon's spool; wait until it is taken (and, with
    --wait, until every rig has been checked)."""
    from winopt.contracts import publish_json
    from winopt.daemon.adapters.rigs import request_name
    from winopt.contracts.status import read_status
    from winopt.contracts.clock import now_iso
    from winopt.cli.submit import SUBMIT_MODE, daemon_settings, spool_dir

    if args.run is not None:
        raise UserError("--run is for the standalone form (with --rig/--rigs)")
    state_dir = daemon_settings(args)[0]
    spool = spool_dir(state_dir)
    status = _read_status(read_status, state_dir)
    run = args.target
    if run is not None and status is not None and run not in (status.get("runs") or {}):
        known = ", ".join(sorted(status.get("runs") or {})) or "none"
        raise UserError(f"no run {run!r} in {state_dir}/status.json (runs: {known})")
    before = _transfers(status, run)
    request = spool / request_name(run, secrets.token_hex(4))
    publish_json(request, {"run": run, "requested_at": now_iso(), "requested_by": _user()}, mode=SUBMIT_MODE)
    what = f"run {run}" if run else "every run"
    timeout = args.timeout if args.timeout is not None else (300.0 if args.wait else TAKE_TIMEOUT)
    deadline = time.monotonic() + timeout
    if not _wait(lambda: not request.exists(), deadline):
        print(f"winopt: the daemon did not take the sync request for {what} within {timeout:g} s (is it running?); "
              f"{request} stays for its next start", file=sys.stderr)
        return 1
    if not args.wait:
        print(f"resync of {what} requested: the daemon took it (see `winopt status`)")
        return 0
    states: dict[str, Any] = {}

    def checked() -> bool:
        nonlocal states
        states = _rig_states(_read_status(read_status, state_dir), run)
        return all(not s.get("in_flight") and s.get("transfers", 0) > before.get(key, 0)
                   and s.get("state") != "pending" for key, s in states.items())

    done = _wait(checked, deadline)
    if not states:
        print(f"no rig receives {what} (no NPZ yet, or no rigs configured)", file=sys.stderr)
        return 1
    _print({f"{rig} {name}" if run is None else rig: s for (rig, name), s in sorted(states.items())}, as_json=args.json)
    if not done:
        print(f"winopt: not every rig checked within {timeout:g} s", file=sys.stderr)
    return 0 if done and all(s["state"] == "synced" for s in states.values()) else 1


def _read_status(read_status: Any, state_dir: Path) -> dict[str, Any] | None:
    try:
        doc = read_status(state_dir)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _rig_states(status: dict[str, Any] | None, run: str | None) -> dict[tuple[str, str], dict[str, Any]]:
    """{(rig, run): state} from status.json's `rigs` section, for `run` (None: all)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for rig, entry in ((status or {}).get("rigs") or {}).items():
        for name, state in (entry.get("runs") or {}).items():
            if run is None or name == run:
                found[(rig, name)] = state
    return found


def _transfers(status: dict[str, Any] | None, run: str | None) -> dict[tuple[str, str], int]:
    return {key: int(s.get("transfers") or 0) for key, s in _rig_states(status, run).items()}


def _wait(condition: Any, deadline: float) -> bool:
    """Poll `condition` until it holds or `deadline` (monotonic) passes."""
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# ---------------------------------------------------------------- standalone
def send_standalone(args: argparse.Namespace) -> int:
    from winopt.handlers.rigs.distributor import Distributor, RetryPolicy

    rigs = _rigs(args)
    run_dir = Path(args.target).resolve()
    npz, meta = run_dir / NPZ_NAME, run_dir / NPZ_META_NAME
    for path in (npz, meta):
        if not path.is_file():
            raise in_file(path, "no such file (convert the run first: winopt convert)")
    name = args.run or run_dir.name
    distributor = Distributor(rigs, policy=RetryPolicy(base=1.0, cap=15.0), max_parallel=len(rigs))
    try:
        distributor.submit(name, npz, meta)
        distributor.wait_settled(300.0 if args.timeout is None else args.timeout)
        states = distributor.snapshot().get(name, {})
    finally:
        distributor.stop(timeout=5.0)
    _print(states, as_json=args.json)
    return 0 if states and all(s["state"] == "synced" for s in states.values()) else 1


def _rigs(args: argparse.Namespace) -> dict[str, Any]:
    from winopt.handlers.rigs.config import merge_rigs, parse_rig_arg, parse_rigs

    configured: dict[str, Any] = {}
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
    rows = []
    for rig, s in sorted(states.items()):
        sha = (s["sha256"] or "-")[:12]
        took = f"{s['last_duration_s']:.2f}s" if s["last_duration_s"] is not None else "-"
        detail = s["last_error"] or ("sent " + ", ".join(s["last_sent"]) if s["last_sent"] else "up to date")
        rows.append((rig, s["state"], sha, took, detail))
    print("\n".join(rig_table(rows, terminal_width())))


def rig_table(rows: list[tuple[str, str, str, str, str]], width: int) -> list[str]:
    """The per-rig table, header aligned with the rows whatever the names' lengths and
    fitting `width`; a DETAIL that had to be shortened (an error) follows in full under
    the table, wrapped, since it says what to fix."""
    table = fit_table(("RIG", "STATE", "SHA256", "TIME", "DETAIL"), rows, width, flexible=("RIG", "DETAIL"))
    notes = [f"{rig}: {detail}" for (rig, *_, detail), line in zip(rows, table[1:]) if not line.endswith(detail)]
    return table + wrap_all(notes, width)
