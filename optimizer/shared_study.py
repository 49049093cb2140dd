"""A study shared by many machines (SPEC §7): what makes it open to `winopt worker`s, the
storage they reach it through, the lock that keeps it at exactly N finished trials, and
the retry rule for a database that goes away for a while.

Open study. The head node (`winopt study`, run by the daemon for a `workers = "rigs"`
job) stores everything a worker needs as the study's user attributes: the fixed settings
(`SETTINGS_ATTR`, as `winopt optimize` stores them), and `SHARED_ATTR` with the target
trial count, the search space, the sampler strategy and the draws of each time_of_day
selection. `OPEN_ATTR` is True while the study wants trials; the head clears it at the
target. A worker therefore runs a trial from the storage alone; it needs no per-study
command.

Exactly N. `MaxTrialsCallback` counts after the fact, so W workers overshoot by up to
W-1. A worker here sweeps stale trials, counts finished plus running trials and asks for a
trial only under the study's ask lock (a PostgreSQL advisory lock on a connection of its
own; a file lock beside a SQLite database), and records the new trial's first heartbeat
before it lets go. Finished trials can then never exceed the target; a failed trial frees
its slot and its retry (Optuna's `RetryFailedTrialCallback`, queued WAITING) is what the
next ask pops. A trial seen under the lock with no heartbeat at all was asked by a worker
that never started it: the next claim takes it over instead of asking a new one. (The storage itself, retries and heartbeats: `shared_storage`.)
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from winopt.contracts.errors import UserError
from winopt.optimizer.shared_storage import safe_url
from winopt.contracts.clock import now_iso
from winopt.optimizer.study import COUNTED_STATES, SETTINGS_ATTR, STARTED_ATTR, RunSettings, check_settings
from winopt.optimizer.space import SearchSpace

log = logging.getLogger(__name__)

#: study user attribute: {"target", "space", "strategy", "histories"}
SHARED_ATTR = "winopt_shared"
#: study user attribute: True while the study wants trials
OPEN_ATTR = "winopt_open"
#: trial user attribute a worker sets when it uploaded the trial's survivors:
#: {"artifact_id", "sha256", "count", "encoding"}
SURVIVORS_ATTR = "survivors"
#: advisory lock class id ("wino"), the second key is the study id
ADVISORY_CLASS = 0x77696E6F

# --------------------------------------------------------------------------- the study's spec


@dataclass(frozen=True)
class SharedSpec:
    """What a worker needs to run any trial of an open study."""

    settings: RunSettings
    space: SearchSpace
    target: int
    strategy: str
    histories: dict[str, np.ndarray]

    def attrs(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "space": self.space.describe(),
            "strategy": self.strategy,
            "histories": {k: [int(x) for x in v] for k, v in self.histories.items()},
        }

    @classmethod
    def from_attrs(cls, user_attrs: dict[str, Any]) -> SharedSpec | None:
        """The spec of a study, or None when it is not a winopt shared study."""
        shared = user_attrs.get(SHARED_ATTR)
        settings = user_attrs.get(SETTINGS_ATTR)
        if not isinstance(shared, dict) or not isinstance(settings, dict):
            return None
        space_attr = dict(shared["space"])
        tod = tuple(space_attr.pop("time_of_day"))
        space = SearchSpace(bounds={k: tuple(v) for k, v in space_attr.items()},
                            time_of_day=tod, time_of_day_given=True)
        histories = {k: np.asarray(v, dtype=np.int64) for k, v in shared["histories"].items()}
        return cls(RunSettings(**settings), space, int(shared["target"]),
                   str(shared.get("strategy", "bayesian")), histories)


def make_sampler(strategy: str) -> optuna.samplers.BaseSampler:
    """TPE with `constant_liar` (running trials count as bad guesses, so parallel workers
    do not all try the same point), or uniform random."""
    if strategy == "random":
        return optuna.samplers.RandomSampler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(constant_liar=True)


# --------------------------------------------------------------------------- opening a study


def open_for_workers(storage: RDBStorage, name: str, spec: SharedSpec) -> optuna.Study:
    """Create (or load) study `name` and mark it open for workers with `spec`; a resume
    with other settings is refused (as `winopt optimize` refuses it)."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(f"study {name!r} exists but minimizes; use another --study")
    check_settings(study, spec.settings, safe_url(storage.url))
    if STARTED_ATTR not in study.user_attrs:
        study.set_user_attr(STARTED_ATTR, now_iso(precision="milliseconds"))
    # histories and space may be narrowed on a resume, as with `winopt optimize`
    if study.user_attrs.get(SHARED_ATTR) != spec.attrs():
        study.set_user_attr(SHARED_ATTR, spec.attrs())
    counted = len(study.get_trials(deepcopy=False, states=COUNTED_STATES))
    set_open(study, counted < spec.target)
    return study


def set_open(study: optuna.Study, value: bool) -> None:
    if study.user_attrs.get(OPEN_ATTR) is not value:
        study.set_user_attr(OPEN_ATTR, value)


@dataclass(frozen=True)
class OpenStudy:
    name: str
    study_id: int
    spec: SharedSpec


def open_studies(storage: RDBStorage, cache: dict[int, OpenStudy] | None = None) -> list[OpenStudy]:
    """The studies in `storage` marked open, oldest first (specs parsed once per study
    when `cache` is given)."""
    found = []
    for frozen in storage.get_all_studies():
        attrs = frozen.user_attrs
        if attrs.get(OPEN_ATTR) is not True:
            continue
        sid = frozen._study_id
        entry = cache.get(sid) if cache is not None else None
        if entry is None or entry.spec.attrs() != attrs.get(SHARED_ATTR):
            spec = SharedSpec.from_attrs(attrs)
            if spec is None:
                continue
            entry = OpenStudy(frozen.study_name, sid, spec)
            if cache is not None:
                cache[sid] = entry
        found.append(entry)
    return sorted(found, key=lambda s: s.study_id)


# --------------------------------------------------------------------------- exactly N


@contextmanager
def ask_lock(storage: RDBStorage, study_id: int) -> Iterator[Callable[[], None]]:
    """Only one process at a time counts and asks in this study; yields `still_held()`,
    which raises when the lock was lost meanwhile.

    PostgreSQL: a transaction-level advisory lock on a connection of its own. Every session
    of a storage from `open_storage` carries `idle_in_transaction_session_timeout`, so a
    holder that stops (SIGSTOP, a rig cut off the network, where TCP would keep its session
    for hours) loses the lock, and any row lock it held in Optuna's own sessions, after
    `IDLE_TX_LIMIT` seconds instead of blocking every worker. SQLite: a file lock beside
    the database."""
    url = storage.url
    if url.startswith("postgresql"):
        with storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:a, :b)"),
                         {"a": ADVISORY_CLASS, "b": study_id})
            def still_held() -> None:
                conn.execute(sqlalchemy.text("SELECT 1"))  # raises once the session is gone

            try:
                yield still_held
            finally:
                try:
                    conn.rollback()  # ends the transaction: the lock goes with it
                except Exception:  # noqa: BLE001 - a lost session released the lock already
                    conn.invalidate()
    else:
        from filelock import FileLock

        db = Path(url.split("///", 1)[1])
        with FileLock(str(db) + f".ask-{study_id}.lock"):
            yield lambda: None


def sweep_stale(study: optuna.Study, storage: RDBStorage) -> tuple[list[int], list[int]]:
    """Fail trials whose worker stopped beating (Optuna's `fail_stale_trials`, which runs
    the retry callback), and find RUNNING trials that never had a heartbeat: a worker
    records its trial's first heartbeat under the same lock as its ask, so such a trial,
    seen under the lock, is one whose worker died, stopped or lost the database between
    the two, before running anything. Returns (numbers failed, ids of such orphans), both
    found under the ask lock."""
    sid = study._study_id
    running = {t._trial_id: t for t in storage.get_all_trials(
        sid, deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return [], []
    stale = set(storage._get_stale_trial_ids(sid))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = [running[tid].number for tid in stale
              if tid in running and storage.get_trial(tid).state == TrialState.FAIL]
    orphans = [tid for tid in sorted(running)
               if tid not in stale and not _has_heartbeat(storage, tid)]
    return sorted(failed), orphans


def _has_heartbeat(storage: RDBStorage, trial_id: int) -> bool:
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session) as session:
        return models.TrialHeartbeatModel.where_trial_id(trial_id, session) is not None


def claim_trial(study: optuna.Study, storage: RDBStorage, target: int) -> optuna.Trial | None:
    """Under the ask lock: fail stale trials; take over a trial whose asker never got to
    its first heartbeat (it ran nothing, so its slot and its parameters are simply taken
    on, with no failure to retry); or ask for a new trial when finished plus running
    trials are below `target`. The trial's first heartbeat is recorded, and the lock
    checked still held, before the lock is let go. None when the study has no free slot."""
    with ask_lock(storage, study._study_id) as still_held:
        failed, orphans = sweep_stale(study, storage)
        if failed:
            log.warning("study %s: trials %s stopped beating; failed, to be retried",
                        study.study_name, failed)
        if orphans:
            trial = optuna.Trial(study, orphans[0])
            log.warning("study %s: trial %d was asked but never started (its worker stopped "
                        "or lost the database); taken over", study.study_name, trial.number)
        else:
            busy = len(storage.get_all_trials(
                study._study_id, deepcopy=False,
                states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))
            if busy >= target:
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with optimize"
                trial = study.ask()
        storage.record_heartbeat(trial._trial_id)
        still_held()  # else another worker may have taken this trial over meanwhile
        return trial


def finished_count(storage: RDBStorage, study_id: int) -> int:
    return len(storage.get_all_trials(study_id, deepcopy=False, states=COUNTED_STATES))


# --------------------------------------------------------------------------- survivors


def best_trial(storage: RDBStorage, study_id: int) -> FrozenTrial | None:
    """The study's best finished trial: highest value, ties to the lowest number (the rule
    `scan_progress` and the snapshot use)."""
    best = None
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.value is None:
            continue
        if best is None or t.value > best.value or (t.value == best.value and t.number < best.number):
            best = t
    return best


def compress(data: bytes) -> bytes:
    return zlib.compress(data, 6)


def decompress(data: bytes) -> bytes:
    return zlib.decompress(data)
