"""`winopt optimize`: run or resume the window search of one output directory (SPEC §2).

A run holds `DIR/.optimize.lock` for its whole life, so two optimizers never share a
directory. It checks the study's settings, fails trials a crash left RUNNING, writes the
draws' training and holdout parts (`histories`; unchanged files are left alone), makes the
survivors on disk match the best trial again, writes a first snapshot, runs the trials
still missing, and always ends with a snapshot that says how it ended: `complete` (exit 0),
`interrupted` (SIGINT 130, SIGTERM 143, SIGHUP 129) or `failed` (exit 1, with the error).

Signals only set a flag: a publish in hand is never cut short. The running sieve notices
the flag at its next progress report and abandons the trial (FAIL, run again on resume);
between trials `study.stop()` ends the loop.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import optuna
from filelock import Timeout
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from winopt.contracts import lock_for, sha256_file, sweep_temps
from winopt.contracts.schemas import (
    CONFIG_NAME,
    PRNG_CODES,
    SURVIVORS_NAME,
    TIME_OF_DAY,
    read_snapshot,
)
from winopt.contracts.errors import UserError, in_file
from winopt.optimizer.draws import load_history
from winopt.optimizer.histories import load_split, publish_histories
from winopt.optimizer.snapshot import SnapshotWriter
from winopt.optimizer.study import (
    COUNTED_STATES,
    STARTED_ATTR,
    RunSettings,
    check_settings,
    default_storage_url,
    default_study_name,
    fail_running_trials,
    make_sampler,
    open_study,
    scan_progress,
)
from winopt.optimizer.objective import SieveObjective, StopRequested
from winopt.optimizer.space import DEFAULT_BOUNDS, SearchSpace, check_time_of_day_choices, parse_bounds, parse_time_of_day

log = logging.getLogger("winopt.optimize")

#: Seeds per trial when --seed-count is not given (SPEC is silent). With 100,000 a trial of
#: the default search space takes 0.2 s (window 2) to ~6 s (window 50, skips 0-250) on one
#: CPU core, so a default 50-trial run finishes in minutes on any machine and a trial is
#: never long to lose; rigs set --seed-count to what their GPU sieves in a few seconds.
DEFAULT_SEED_COUNT = 100_000
LOCK_NAME = ".optimize"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of SPEC §2, plus one LOW:HIGH (or fixed VALUE) option per window parameter."""
    parser.add_argument("--draws", required=True, type=Path, metavar="FILE",
                        help="draw history (JSON, SPEC §1)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output directory: snapshot, survivors, default storage")
    parser.add_argument("--trials", required=True, type=int, metavar="N",
                        help="finished trials (complete + pruned) the study should reach in total")
    parser.add_argument("--prng", default="java_lcg", choices=tuple(PRNG_CODES))
    parser.add_argument("--seed-start", type=int, default=0, metavar="S")
    parser.add_argument("--seed-count", type=int, default=DEFAULT_SEED_COUNT, metavar="C",
                        help=f"seeds sieved per trial (default {DEFAULT_SEED_COUNT:,})")
    parser.add_argument("--mod", type=int, default=1000, metavar="M")
    parser.add_argument("--strategy", choices=("bayesian", "random"), default="bayesian",
                        help="TPE sampler (bayesian) or uniform random sampling")
    parser.add_argument("--sampler-seed", type=int, default=None, metavar="SEED",
                        help="seed the sampler (reproducible runs and tests)")
    parser.add_argument("--study", default=None, metavar="NAME",
                        help="study name (default: the output directory's name)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage URL (default: sqlite:///DIR/optuna.db)")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default=None,
                        help="sieve device (default: $WINOPT_DEVICE, else auto)")
    parser.add_argument("--cores", type=int, default=None, metavar="N",
                        help="CPU cores each trial's sieve uses (default: all this process may "
                        "use); results do not depend on it")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    bounds = parser.add_argument_group(
        "search space", "each takes VALUE (fixed) or LOW:HIGH (narrowed); defaults SPEC §2")
    for name, (low, high) in DEFAULT_BOUNDS.items():
        note = " (low end raised to skip_min)" if name == "skip_max" else ""
        bounds.add_argument(f"--{name.replace('_', '-')}", default=None, metavar="LOW:HIGH",
                            help=f"default {low}:{high}{note}")
    bounds.add_argument("--time-of-day", default=None, metavar="LIST",
                        help=f"comma list of {','.join(TIME_OF_DAY)} (default all three)")


def run(args: argparse.Namespace) -> int:
    """Validate, lock the directory, and run the study to one of its three endings."""
    _setup_logging(args.verbose)
    space = search_space(args)
    if args.trials < 1:
        raise UserError(f"--trials {args.trials}: must be at least 1")
    histories, space = load_histories(args.draws, args.mod, space)  # before any file changes
    split = load_split(args.draws, args.mod)  # the whole history: train/holdout files
    out = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise in_file(out, f"cannot create the output directory: {exc.strerror}") from None
    lock = lock_for(out / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise in_file(out, "another winopt optimize is running in this directory "
                           f"(it holds {LOCK_NAME}.lock)") from None
    sweep_temps(out)  # temps a killed earlier run left behind (writer gone, over a minute old)
    stop = SignalStop()
    try:
        stop.install()
        return OptimizeRun(args, space, histories, stop, split).execute()
    finally:
        stop.restore()
        lock.release()


def search_space(args: argparse.Namespace) -> SearchSpace:
    """The search space from the command line, validated."""
    given = {name: parse_bounds(name, getattr(args, name))
             for name in DEFAULT_BOUNDS if getattr(args, name) is not None}
    space = SearchSpace().with_bounds(**given)
    if args.time_of_day is not None:
        space = replace(space, time_of_day=parse_time_of_day(args.time_of_day),
                        time_of_day_given=True)
    space.validate()
    return space


class SignalStop:
    """SIGINT/SIGTERM/SIGHUP set a flag and nothing else, so no write is ever cut in half;
    also the Optuna callback that stops the study after the trial in hand.

    SIGHUP is a closed terminal or ssh session: without a handler it would kill the run
    with its snapshot still saying `running`. A SIGHUP ignored at start (`nohup`) stays
    ignored, as the person who ran it asked."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            log.info("%s received: finishing the write in hand, then stopping",
                     signal.Signals(signum).name)

    def __call__(self, study: optuna.Study, _trial: FrozenTrial) -> None:
        if self.requested:
            study.stop()


class TrialReporter:
    """Progress of trials: a tqdm bar on a terminal, else one log line per trial."""

    def __init__(self, writer: SnapshotWriter, total: int) -> None:
        self.writer = writer
        self.total = total
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=writer.counted, unit="trial",
                            desc="optimize", file=sys.stderr)

    def __call__(self, _study: optuna.Study, trial: FrozenTrial) -> None:
        best = self.writer.best
        best_text = f"{int(best['value'])} (trial {best['number']})" if best else "none yet"
        if self.bar is not None:
            self.bar.update(1 if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) else 0)
            self.bar.set_postfix_str(f"best {best_text}")
            return
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            count = int(trial.value)
            outcome = f"{count} bidirectional survivor{'' if count == 1 else 's'}"
        else:
            reason = trial.user_attrs.get("infeasible")
            outcome = trial.state.name.lower() + (f" ({reason})" if reason else "")
        log.info("trial %d: %s; %d/%d done, best %s", trial.number, outcome,
                 self.writer.counted, self.total, best_text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class OptimizeRun:
    """One invocation: set-up (errors here change no file), then the study, whose every
    ending is written to the snapshot."""

    def __init__(self, args: argparse.Namespace, space: SearchSpace,
                 histories: dict[str, np.ndarray], stop: SignalStop,
                 split: tuple[list[int], list[int]]) -> None:
        self.args = args
        self.space = space
        self.histories = histories
        self.split = split  # (training, holdout) draws of the whole history
        self.stop = stop
        self.out: Path = args.out
        self.shared = False

    def execute(self) -> int:
        args = self.args
        settings = RunSettings(prng=args.prng, seed_start=args.seed_start,
                               seed_count=args.seed_count, mod=args.mod,
                               draws_sha256=sha256_file(args.draws))
        settings.validate()
        shared = self.shared = (args.storage is not None
                                and args.storage != default_storage_url(self.out))
        url = args.storage or default_storage_url(self.out)
        name = args.study or default_study_name(self.out)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        seed = args.sampler_seed
        study = open_study(url, name, make_sampler(args.strategy, seed), shared=shared)
        check_settings(study, settings, url)
        check_time_of_day_choices(study, study.get_trials(deepcopy=False), self.space, url)
        failed = fail_running_trials(study, shared=shared)
        if failed:
            log.info("marked trials %s FAILED (left RUNNING by an earlier run)", failed)
        trials = study.get_trials(deepcopy=False)
        if seed is not None and trials:  # a resumed seeded run must not replay its draws
            study.sampler = make_sampler(args.strategy, seed + len(trials))
        progress = scan_progress(trials)
        objective = SieveObjective(self.histories, settings, self.space,
                                   should_stop=lambda: self.stop.requested, device=args.device,
                                   cores=args.cores)
        writer = SnapshotWriter(self.out, settings=settings, study_name=name,
                                started_at=study.user_attrs[STARTED_ATTR],
                                total_trials=args.trials, take_result=objective.take,
                                progress=progress, fixed_time_of_day=self.fixed_time_of_day())
        log.info("study %r in %s: %d of %d trials done%s", name, url, progress.counted,
                 args.trials, f", best {progress.best.value:g}" if progress.best else "")
        log.debug("search space %s", self.space.describe())
        return self.run_study(study, objective, writer, progress.best)

    def run_study(self, study: optuna.Study, objective: SieveObjective,
                  writer: SnapshotWriter, best: FrozenTrial | None) -> int:
        """Reconcile, write, optimise, and write how it ended."""
        reporter = TrialReporter(writer, self.args.trials)
        try:
            written = publish_histories(self.out, self.split)  # before the first snapshot
            if written:
                log.info("wrote %s", ", ".join(p.name for p in written))
            reconcile_survivors(self.out, writer, objective, best)
            writer.write()
            remaining = self.args.trials - writer.counted
            callbacks: list[Any] = [writer, reporter, self.stop]
            if self.shared:  # other processes add trials too: stop at N in the study
                callbacks.append(MaxTrialsCallback(self.args.trials, states=COUNTED_STATES))
            if remaining > 0 and not self.stop.requested:
                study.optimize(objective, n_trials=remaining, callbacks=callbacks)
            if self.shared:  # the writer counts what this process saw; the study knows all
                writer.counted = len(study.get_trials(deepcopy=False, states=COUNTED_STATES))
        except StopRequested:
            pass
        except Exception as exc:
            return self.fail(writer, exc)
        finally:
            reporter.close()
        return self.end(writer)

    def fixed_time_of_day(self) -> str | None:
        """The one time_of_day of the search space, when it has only one (else None)."""
        choices = self.space.time_of_day
        return choices[0] if len(choices) == 1 else None

    def end(self, writer: SnapshotWriter) -> int:
        """complete (0) or interrupted (128 + signal)."""
        if writer.counted >= self.args.trials:
            if not writer.finish("complete"):
                print(f"winopt: error: {self.out / CONFIG_NAME}: could not write the final "
                      "snapshot (see the log); run the same command again", file=sys.stderr)
                return 1
            log.info("complete: %d trials, best %s", writer.counted,
                     f"{int(writer.best['value'])} (trial {writer.best['number']})"
                     if writer.best else "none")
            return 0
        signum = self.stop.signum
        if signum is None:  # no signal, no error, yet short of N: say so, never "complete"
            return self.fail(writer, RuntimeError(
                f"the study stopped after {writer.counted} of {self.args.trials} trials"))
        reason = f"interrupted by {signal.Signals(signum).name}"
        writer.finish("interrupted", reason)
        log.info("%s after %d of %d trials; run the same command to resume", reason,
                 writer.counted, self.args.trials)
        return 128 + int(signum)

    def fail(self, writer: SnapshotWriter, exc: Exception) -> int:
        """failed: the error in the snapshot and one line for people."""
        text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        log.debug("the study failed", exc_info=exc)
        writer.finish("failed", text.splitlines()[0] if text else type(exc).__name__)
        print(f"winopt: error: optimize failed: {text.splitlines()[0] if text else ''} "
              f"(snapshot {self.out / CONFIG_NAME}; run the same command to resume)",
              file=sys.stderr)
        return exc.exit_code if isinstance(exc, UserError) else 1


def load_histories(path: Path, mod: int,
                   space: SearchSpace) -> tuple[dict[str, np.ndarray], SearchSpace]:
    """The draws for each time_of_day of the search space, and the space narrowed to the
    selections kept. A file that does not load is always an error; a session selection
    that is empty or too short for the smallest window is one only when the user asked
    for it, else it is left out (a plain list of ints has no midday draws)."""
    window_low = space.bounds["window_size"][0]
    histories: dict[str, np.ndarray] = {}
    for tod in space.time_of_day:
        try:
            draws = load_history(path, mod=mod, time_of_day=tod)
            if len(draws) < 2 * window_low:
                raise in_file(path, f"{len(draws)} draws for time_of_day {tod}, too few "
                                    f"for window_size {window_low} (needs {2 * window_low})")
        except UserError as exc:
            if space.time_of_day_given or tod == "all":
                raise
            log.info("leaving time_of_day %s out of the search: %s", tod, exc)
            continue
        histories[tod] = draws
    return histories, replace(space, time_of_day=tuple(histories))


def reconcile_survivors(out: Path, writer: SnapshotWriter, objective: SieveObjective,
                        best: FrozenTrial | None) -> None:
    """Make the survivors on disk the best trial's again (SPEC §2 resume): keep them when
    the config on disk names this study's best trial and the file's sha256, else re-run
    the sieve for the best trial's parameters (deterministic) and republish."""
    if best is None:
        return
    try:
        config: dict[str, Any] | None = read_snapshot(out / CONFIG_NAME)
    except (FileNotFoundError, UserError):
        config = None
    survivors = out / SURVIVORS_NAME
    matches = (
        config is not None
        and config.get("study_name") == writer.study_name
        and config.get("started_at") == writer.started_at
        and config.get("best_trial_number") == best.number
        and config.get("survivors_sha256") is not None
        and survivors.is_file()
        and sha256_file(survivors) == config["survivors_sha256"]
    )
    if matches:
        writer.adopt_survivors(config["survivors_sha256"], int(config["survivors_count"]))
        return
    log.info("survivors on disk are not those of best trial %d: re-running its sieve",
             best.number)
    writer.republish(objective.sieve(best.params))


def _setup_logging(verbose: bool) -> None:
    """Log lines to stderr unless the embedding program (the daemon) configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr, format="winopt optimize: %(message)s")
    logging.getLogger("winopt").setLevel(logging.DEBUG if verbose else logging.INFO)
