"""`winopt daemon`: run the daemon in the foreground (normally started by systemd)."""

from __future__ import annotations

import argparse

from winopt.daemon.config import resolve_config
from winopt.daemon.loop import Daemon

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="TOML config (default /etc/winopt/daemon.toml when it exists)")
    parser.add_argument("--state-dir", metavar="DIR", help="where status.json and decisions.jsonl go")
    parser.add_argument("--watch", metavar="DIR", action="append", default=[],
                        help="a run directory to watch (repeatable; adds to the config's list)")
    parser.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error")
    parser.add_argument("--rig", metavar="NAME=TARGET", action="append", default=[],
                        help="a rig receiving every NPZ: a local directory or [user@]host:/path/ "
                             "(repeatable; adds to the config's [rigs])")
    parser.add_argument("--storage", metavar="URL",
                        help="shared Optuna storage (postgresql://...) for `workers = \"rigs\"` jobs, "
                             "published by this daemon (default: the config's [optuna] storage, "
                             "else $WINOPT_STORAGE; a password given here shows in ps: "
                             "keep it in the config or the environment)")
    parser.add_argument("--check-config", action="store_true",
                        help="only check the config (with the other flags) as a reload would, print "
                             "one line and exit: 0 when the daemon would take it, 2 when not (the "
                             "unit's ExecReload= runs this before it signals the daemon)")


def run(args: argparse.Namespace) -> int:
    load = lambda: resolve_config(  # noqa: E731 - re-run verbatim at each reload
        args.config, state_dir=args.state_dir, watch=args.watch, log_level=args.log_level, rigs=args.rig,
        storage=args.storage,
    )
    if args.check_config:  # what a reload checks before it takes a config (see `_reload`)
        config = load()
        config.make_thresholds()
        dirs, rigs = len(config.watch), len(config.rigs)
        print(f"winopt: {config.source or 'no config file (defaults and flags)'}: config OK ({dirs} watched "
              f"director{'y' if dirs == 1 else 'ies'}, {rigs} rig{'' if rigs == 1 else 's'})")
        return 0
    return Daemon(load).serve()


