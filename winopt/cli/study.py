"""`winopt study`: open a study in a shared storage to `winopt worker`s and publish its
snapshot into --out until it reaches its target (SPEC §7).

It takes `winopt optimize`'s options (the daemon runs it instead of `winopt optimize` for
a `workers = "rigs"` job) but runs no trial itself: it stores the settings, search space,
draws and target in the study, marks it open, writes the training and holdout histories,
and then, every --poll seconds, publishes what the storage says (`StudyPublisher`: the
same files and order as `winopt optimize`). It ends `complete` (exit 0) when the study has
its N finished trials, `interrupted` on SIGINT/SIGTERM/SIGHUP (the study stays open: the
workers go on, and running the same command again picks the snapshot up from the
storage). A database that goes away is waited for, with backoff.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from filelock import Timeout

from winopt.cli import optimize
from winopt.cli.worker import artifacts_of, setup_logging, storage_url
from winopt.contracts import lock_for, sha256_file, sweep_temps
from winopt.contracts.errors import UserError, in_file

log = logging.getLogger("winopt.study")
#: seconds `--close` waits for a database that is away
CLOSE_PATIENCE = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    optimize.add_arguments(parser)
    parser._option_string_actions["--storage"].help = (  # the shared storage, not DIR's SQLite
        "the shared storage the workers use (default: $WINOPT_STORAGE)")
    parser._option_string_actions["--sampler-seed"].help = (
        "ignored: the workers sample (TPE with constant_liar)")
    parser.add_argument("--artifacts", default=None, metavar="DIR|s3://BUCKET",
                        help="the workers' shared artifact store (default: $WINOPT_ARTIFACTS; "
                             "none: re-run the sieve for each new best)")
    parser.add_argument("--poll", type=float, default=2.0, metavar="S",
                        help="seconds between two looks at the storage (default 2)")
    parser.add_argument("--close", default=None, metavar="NAME",
                        help="close study NAME to the workers and exit (the daemon does this "
                             "when a workers = \"rigs\" job ends); needs no other option")
    for flag in ("--draws", "--out", "--trials"):  # required, but for --close
        action = parser._option_string_actions[flag]
        action.required = False
        action.help = f"{action.help} (required, but for --close)"
    parser.usage = ("%(prog)s --draws FILE --out DIR --trials N [options]\n"
                    "       %(prog)s --close NAME [--storage URL]")


def close(args: argparse.Namespace) -> int:
    """`--close NAME`: the study takes no more trials (waiting up to a minute for a
    database that is away; a study that does not exist is closed already)."""
    from winopt.optimizer.shared_storage import Stopped, open_storage, retrying, safe_url
    from winopt.optimizer.shared_study import close_study

    setup_logging("study", args.verbose)
    url = storage_url(args.storage)
    give_up = threading.Event()
    timer = threading.Timer(CLOSE_PATIENCE, give_up.set)
    timer.daemon = True
    timer.start()
    try:
        storage = retrying("opening the storage", lambda: open_storage(url), stop=give_up)
        closed = retrying(f"closing study {args.close}", lambda: close_study(storage, args.close),
                          stop=give_up)
    except Stopped:
        raise UserError(f"study {args.close}: the database {safe_url(url)} was out of reach for "
                        f"{CLOSE_PATIENCE:.0f} s; not closed (run winopt study --close again)") from None
    log.info("study %r %s in %s", args.close, "closed to the workers" if closed else
             "is not there (nothing to close)", safe_url(url))
    return 0


def run(args: argparse.Namespace) -> int:
    import optuna

    if args.close is not None:
        return close(args)
    missing = [flag for flag in ("draws", "out", "trials") if getattr(args, flag) is None]
    if missing:
        raise UserError("the following arguments are required: "
                        + ", ".join(f"--{flag}" for flag in missing))

    from winopt.optimizer.histories import load_split, publish_histories
    from winopt.optimizer.shared_snapshot import StudyPublisher
    from winopt.optimizer.objective import StopRequested
    from winopt.optimizer.shared_storage import Stopped, open_storage, retrying, root_text, safe_url
    from winopt.optimizer.shared_study import SharedSpec, open_for_workers, set_open
    from winopt.optimizer.study import RunSettings, default_study_name

    setup_logging("study", args.verbose)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = optimize.search_space(args)
    if args.trials < 1:
        raise UserError(f"--trials {args.trials}: must be at least 1")
    url = storage_url(args.storage)
    artifacts = artifacts_of(args.artifacts)
    histories, space = optimize.load_histories(args.draws, args.mod, space)
    split = load_split(args.draws, args.mod)
    settings = RunSettings(prng=args.prng, seed_start=args.seed_start, seed_count=args.seed_count,
                           mod=args.mod, draws_sha256=sha256_file(args.draws))
    settings.validate()
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise in_file(out, f"cannot create the output directory: {exc.strerror}") from None
    lock = lock_for(out / optimize.LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise in_file(out, "another winopt optimize or study is running in this directory") from None
    stop = threading.Event()
    signum: list[int] = []

    def handle(sig: int, _frame: FrameType | None) -> None:
        if not signum:
            signum.append(sig)
            log.info("%s received: writing the snapshot, then stopping (the study stays open "
                     "to the workers)", signal.Signals(sig).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    publisher = None
    try:
        sweep_temps(out)
        name = args.study or default_study_name(out)
        spec = SharedSpec(settings, space, args.trials, args.strategy, histories)
        storage = retrying("opening the storage", lambda: open_storage(url), stop=stop)
        study = retrying("opening the study", lambda: open_for_workers(storage, name, spec), stop=stop)
        publish_histories(out, split)
        publisher = StudyPublisher(storage, study, spec, out, artifacts, should_stop=stop.is_set)
        log.info("study %r open to workers in %s: target %d trials", name, safe_url(url), args.trials)
        while True:
            try:
                if retrying("publishing", publisher.publish, stop=stop):
                    log.info("complete: %d trials", args.trials)
                    return 0
            except (Stopped, StopRequested):  # a signal while waiting or re-sieving
                break
            if stop.wait(args.poll):
                break
        # a signal: one last snapshot that says so (skipped when the database is away, or
        # when it would need a sieve)
        reason = f"interrupted by {signal.Signals(signum[0]).name}"
        if job_cancelled(out):  # `winopt cancel`: the workers stop taking its trials
            reason = "cancelled"
            try:
                set_open(study, False)
                log.info("job cancelled: study %r closed to the workers", name)
            except Exception as exc:  # noqa: BLE001 - the daemon closes it again when the job ends
                log.warning("job cancelled: study %r not closed here (%s)", name, root_text(exc))
        if publisher.publish(final_status="interrupted", error=reason):
            return 0
    except Stopped:
        pass
    except StopRequested:
        log.warning("no last snapshot: it needed the best trial's sieve, and a stop was asked for")
    except Exception as exc:
        if publisher is None or not signum:
            raise
        log.warning("could not write the last snapshot: %s", exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.release()
    return 128 + signum[0]


def job_cancelled(out: Path) -> bool:
    """True when this is a daemon job (`WINOPT_JOB_ID`, the job directory `out`) whose
    state file records a cancel request: the SIGTERM was `winopt cancel`, not a daemon
    stop (after which the job resumes and the study must stay open)."""
    job_id = os.environ.get("WINOPT_JOB_ID")
    if not job_id or out.resolve().name != job_id:
        return False
    from winopt.handlers.jobs.store import JobStore

    try:
        return JobStore(out.resolve().parent).load(job_id).cancel_requested
    except Exception:  # noqa: BLE001 - no record: not a cancel we can tell
        return False
