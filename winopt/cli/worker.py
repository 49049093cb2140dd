"""`winopt worker`: run trials of every open study in a shared storage (SPEC §7).

One worker runs one trial at a time: start one per GPU (`winopt-worker@GPU.service` sets
CUDA_VISIBLE_DEVICES) or per group of cores (`--cores`). The storage URL holds the
database password, so it comes from the environment (`WINOPT_STORAGE`, set by the unit's
`EnvironmentFile=`) rather than the command line, where every user's `ps` would show it;
`--storage` is for tests and hand runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from winopt.contracts.errors import UserError
from winopt.optimizer.shared_storage import GRACE_PERIOD, HEARTBEAT_INTERVAL

log = logging.getLogger("winopt.worker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="shared Optuna storage, postgresql://USER:PASSWORD@HOST/DB "
                             "(default: $WINOPT_STORAGE)")
    parser.add_argument("--artifacts", default=None, metavar="DIR|s3://BUCKET",
                        help="the shared artifact store where a new best trial's survivors go: "
                             "a directory every machine mounts, or an S3 bucket (endpoint and "
                             "keys from the AWS_* variables) (default: $WINOPT_ARTIFACTS; none: "
                             "the head node re-runs the sieve)")
    parser.add_argument("--cores", type=int, default=None, metavar="N",
                        help="CPU cores each trial's sieve uses (default: all this process may use)")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default=None,
                        help="sieve device (default: $WINOPT_DEVICE, else auto)")
    parser.add_argument("--heartbeat-interval", type=int, default=HEARTBEAT_INTERVAL, metavar="S",
                        help=f"seconds between heartbeats of the running trial (default {HEARTBEAT_INTERVAL})")
    parser.add_argument("--grace-period", type=int, default=GRACE_PERIOD, metavar="S",
                        help="seconds without a heartbeat after which a running trial (of any "
                             f"worker) is failed and retried (default {GRACE_PERIOD})")
    parser.add_argument("--poll", type=float, default=5.0, metavar="S",
                        help="seconds between looks for work when no study has any (default 5)")
    parser.add_argument("--once", action="store_true",
                        help="exit when no open study needs more trials (default: wait for new ones)")
    parser.add_argument("--max-trials", type=int, default=None, metavar="N",
                        help="exit after N trials")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def storage_url(given: str | None) -> str:
    url = given or os.environ.get("WINOPT_STORAGE")
    if not url:
        raise UserError("no storage: give --storage URL or set WINOPT_STORAGE "
                        "(winopt-worker@.service reads it from /etc/winopt/worker.env)")
    return url


def artifacts_of(given: str | None) -> str | None:
    """The artifact store: `--artifacts`, else $WINOPT_ARTIFACTS, checked at once."""
    from winopt.optimizer.artifacts import check_artifacts

    where = given or os.environ.get("WINOPT_ARTIFACTS") or None
    return check_artifacts(where, "--artifacts" if given else "WINOPT_ARTIFACTS") if where else None


def run(args: argparse.Namespace) -> int:
    from winopt.optimizer.shared_storage import open_storage, retrying
    from winopt.optimizer.worker import Worker, WorkerOptions
    import optuna

    setup_logging("worker", args.verbose)
    if args.grace_period <= args.heartbeat_interval:
        raise UserError(f"--grace-period {args.grace_period} must be longer than "
                        f"--heartbeat-interval {args.heartbeat_interval}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = storage_url(args.storage)
    artifacts = artifacts_of(args.artifacts)
    options = WorkerOptions(heartbeat_interval=args.heartbeat_interval,
                            grace_period=args.grace_period, cores=args.cores, device=args.device,
                            artifacts=artifacts, once=args.once, max_trials=args.max_trials,
                            poll=args.poll)
    storage = retrying("opening the storage", lambda: open_storage(
        url, heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period))
    worker = Worker(storage, options)

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: failing the trial in hand (it is retried) and stopping",
                 signal.Signals(signum).name)
        worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handle)
    return worker.run()


def setup_logging(name: str, verbose: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr, format=f"winopt {name}: %(message)s")
    logging.getLogger("winopt").setLevel(logging.DEBUG if verbose else logging.INFO)
