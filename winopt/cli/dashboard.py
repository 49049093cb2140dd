"""`winopt dashboard [JOB|DIR]`: Optuna's dashboard on a run's storage (issue 16).

Starts optuna-dashboard (the extra winopt[dashboard]) in this process on the run's
storage: the run directory's optuna.db, or `--storage URL` (which alone is enough).
It listens on localhost by default, so on a head node it is reached through ssh:
`ssh -L 8080:localhost:8080 head`, then http://localhost:8080/ on your machine.
`--port 0` takes a free port; the URL is printed as it starts. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import socket
import sys

from winopt.contracts.errors import UserError

DEFAULT_PORT = 8080
MISSING_EXTRA = "winopt dashboard needs optuna-dashboard: install winopt[dashboard] (pip install 'winopt[dashboard]')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from winopt.cli.runref import add_run_arguments

    add_run_arguments(parser, optional=True)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: reach it with ssh -L)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}; 0: a free one)")


def run(args: argparse.Namespace) -> int:
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError(MISSING_EXTRA) from None
    from winopt.handlers.report.trials import check_readable, storage_url
    from winopt.optimizer.shared_storage import safe_url, with_driver

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected 0 to 65535")
    if args.run is None:
        if not args.storage:
            raise UserError("give a run (JOB or DIR) or --storage URL")
        url, where = with_driver(args.storage), safe_url(args.storage)
    else:
        from winopt.cli.runref import resolve_run

        ref = resolve_run(args)
        url, where = storage_url(ref.run_dir, args.storage, ref.shared_storage), ref.name
    check_readable(url)  # it serves a storage, never creates one (a typo in --storage)
    port = _listenable(args.host, args.port)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception as exc:  # SQLAlchemy and driver errors: one line for a person
        raise UserError(f"{safe_url(url)}: cannot open the storage: {exc}".splitlines()[0]) from None
    print(f"optuna-dashboard for {where} on http://{_url_host(args.host)}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=port)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{port}: {exc.strerror or exc}") from None
    finally:
        sys.stdout.flush()
    return 0


def _listenable(host: str, port: int) -> int:
    """`port` (0: one nobody listens on now, the kernel's pick), checked bindable on
    `host` before the server starts: its own failure comes after lines of its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            where = f"{host}:{port}" if port else host
            raise UserError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        return sock.getsockname()[1]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
