"""The Optuna study of `winopt optimize` (SPEC §2): its fixed settings, storage, resume and
progress (the search space is `winopt.optimizer.space`, a trial's work `objective`).

Counting rule. `--trials N` is N *finished* trials in the study: COMPLETE ones plus PRUNED
ones. A trial is PRUNED when its parameters cannot be evaluated on this history (a window
that needs more draws than the time-of-day selection has): that is an answer about the
point, so it counts, and a search space that is mostly infeasible still ends. FAIL trials
never count: they are crashes (RUNNING trials failed at resume), interruptions, or the
uncaught error that ended a run, and resume runs them again.

Resume. The settings that give a trial its meaning (PRNG, seed range, mod, the draw
history's sha256) are stored as the study's user attributes and a resume with other ones
is refused: mixing them would make the best trial meaningless. The search space and the
trial count may change between runs (narrowing a search is normal).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from winopt.contracts.clock import now_iso
from winopt.contracts.schemas import PRNG_CODES
from winopt.contracts.errors import UserError
from winopt.optimizer.sieve.generators import check_seed_range

#: study user attribute holding the run's fixed settings
SETTINGS_ATTR = "winopt_settings"
STARTED_ATTR = "winopt_started_at"
#: seconds between heartbeats, and after which a silent RUNNING trial is stale, for storages
#: that other processes may share (explicit --storage URLs)
HEARTBEAT_INTERVAL = 60
GRACE_PERIOD = 180


# --------------------------------------------------------------------------- fixed settings


@dataclass(frozen=True)
class RunSettings:
    """What every trial of one study shares; a resume must use the same."""

    prng: str
    seed_start: int
    seed_count: int
    mod: int
    draws_sha256: str

    def validate(self) -> None:
        if self.prng not in PRNG_CODES:
            raise UserError(f"--prng {self.prng!r}: expected one of {', '.join(PRNG_CODES)}")
        if self.seed_start < 0 or self.seed_count < 1:
            raise UserError(
                f"--seed-start {self.seed_start} --seed-count {self.seed_count}: the seed range "
                "needs a start >= 0 and a count >= 1"
            )
        problem = check_seed_range(self.prng, self.seed_start, self.seed_count)
        if problem:
            raise UserError(f"--seed-start {self.seed_start} --seed-count {self.seed_count}: {problem}")
        if self.mod < 2:
            raise UserError(f"--mod {self.mod}: must be at least 2")


def check_settings(study: optuna.Study, settings: RunSettings, where: str) -> None:
    """Store `settings` on a new study, or refuse a resume whose settings differ."""
    stored = study.user_attrs.get(SETTINGS_ATTR)
    wanted = asdict(settings)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, wanted)
        return
    diffs = [f"{k} {stored.get(k)!r} (now {v!r})" for k, v in wanted.items() if stored.get(k) != v]
    if diffs:
        raise UserError(
            f"{where}: study {study.study_name!r} was started with other settings: "
            f"{'; '.join(diffs)}. Resume with the original ones, or use a new --out/--study"
        )


# --------------------------------------------------------------------------- storage


def default_storage_url(out_dir: Path) -> str:
    """`sqlite:///DIR/optuna.db`, absolute, so the URL is the same from any cwd."""
    return f"sqlite:///{(out_dir.resolve() / 'optuna.db').as_posix()}"


def default_study_name(out_dir: Path) -> str:
    """The output directory's name, made safe; 'winopt' when it has none."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", out_dir.resolve().name).strip("-.")
    return name or "winopt"


def make_sampler(strategy: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """TPE for `bayesian`, uniform random for `random`."""
    if strategy == "bayesian":
        return optuna.samplers.TPESampler(seed=seed)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"--strategy {strategy!r}: expected bayesian or random")


def open_study(url: str, name: str, sampler: optuna.samplers.BaseSampler, *,
               shared: bool) -> optuna.Study:
    """Create or load the study (maximize). A `shared` storage gets heartbeats so that only
    trials of dead processes are ever failed, never a live trial of another rig."""
    try:
        if shared:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage: Any = optuna.storages.RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD)
        else:
            storage = optuna.storages.RDBStorage(url)
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                    pruner=optuna.pruners.NopPruner(),
                                    direction="maximize", load_if_exists=True)
    except Exception as exc:  # SQLAlchemy and driver errors: one line for a person
        raise UserError(f"--storage {url}: cannot open the study: {exc}".splitlines()[0]) from exc
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(
            f"--storage {url}: study {name!r} exists but minimizes; use another --study")
    if STARTED_ATTR not in study.user_attrs:
        study.set_user_attr(STARTED_ATTR, now_iso(precision="milliseconds"))
    return study


def fail_running_trials(study: optuna.Study, *, shared: bool) -> list[int]:
    """Mark trials left RUNNING by a crashed process FAILED; return their numbers.

    On the directory's own storage (held under the directory lock) every RUNNING trial is
    a dead process's. On a shared storage only heartbeat-stale ones are."""
    if shared:
        running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        still = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        return sorted(running - still)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        failed.append(trial.number)
    return failed


# --------------------------------------------------------------------------- progress at start


COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class StudyProgress:
    """The study's state at start: the one scan of its trials that a run makes."""

    counted: int = 0
    best: FrozenTrial | None = None
    last: FrozenTrial | None = None


def scan_progress(trials: Iterable[FrozenTrial]) -> StudyProgress:
    """Count finished trials and find the best: highest value, ties to the first trial
    (the same rule the snapshot writer applies trial by trial)."""
    progress = StudyProgress()
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state not in COUNTED_STATES:
            continue
        progress.counted += 1
        progress.last = trial
        if trial.state == TrialState.COMPLETE and trial.value is not None and (
                progress.best is None or trial.value > progress.best.value):
            progress.best = trial
    return progress
