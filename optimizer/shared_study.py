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

import hashlib
import json
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
from filelock import FileLock
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from winopt.contracts.errors import UserError
from winopt.optimizer.shared_storage import GRACE_PERIOD, safe_url, since_trouble
from winopt.contracts.clock import now_iso
from winopt.optimizer.study import COUNTED_STATES, SETTINGS_ATTR, STARTED_ATTR, RunSettings, check_settings
from winopt.optimizer.space import SearchSpace

log = logging.getLogger(__name__)

#: study user attribute: {"target", "space", "strategy", "histories"}
SHARED_ATTR = "winopt_shared"
#: study user attribute: True while the study wants trials
OPEN_ATTR = "winopt_open"
#: study user attribute: sha256 of SHARED_ATTR and SETTINGS_ATTR (`spec_fingerprint`)
SPEC_ATTR = "winopt_spec_sha256"
#: trial user attribute a worker sets when it uploaded the trial's survivors:
#: {"artifact_id", "sha256", "count", "encoding"}
SURVIVORS_ATTR = "survivors"
#: trial system attribute: the grace period (s) of the worker running it
GRACE_ATTR = "winopt_grace"
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
    fingerprint = spec_fingerprint(study.user_attrs)
    if study.user_attrs.get(SPEC_ATTR) != fingerprint:
        study.set_user_attr(SPEC_ATTR, fingerprint)
    counted = len(study.get_trials(deepcopy=False, states=COUNTED_STATES))
    set_open(study, counted < spec.target)
    return study


def close_study(storage: RDBStorage, name: str) -> bool:
    """Study `name` takes no more trials; False when there is no such study."""
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    except KeyError:
        return False
    set_open(study, False)
    return True


def set_open(study: optuna.Study, value: bool) -> None:
    if study.user_attrs.get(OPEN_ATTR) is not value:
        study.set_user_attr(OPEN_ATTR, value)


@dataclass(frozen=True)
class OpenStudy:
    name: str
    study_id: int
    spec: SharedSpec


def open_studies(storage: RDBStorage,
                 cache: dict[int, tuple[Any, OpenStudy | None]] | None = None) -> list[OpenStudy]:
    """The studies in `storage` marked open, oldest first. Each poll reads only which
    studies are open and their spec's fingerprint (`SPEC_ATTR`): a storage keeps every
    study ever run, each with its draws, and 26 workers polling every few seconds must
    not load them all; a spec is read again when its fingerprint changes (always for a
    study opened by a head node that writes none). A study whose attributes this winopt
    cannot read (opened by a newer head node, or by hand) is passed over with one
    warning, never an error: the other studies are served."""
    cache = {} if cache is None else cache
    found = []
    for sid, fingerprint in sorted(_open_fingerprints(storage).items()):
        if sid not in cache or fingerprint is None or cache[sid][0] != fingerprint:
            try:
                name = storage.get_study_name_from_id(sid)
                attrs = storage.get_study_user_attrs(sid)
            except KeyError:  # deleted meanwhile
                cache.pop(sid, None)
                continue
            try:
                spec = SharedSpec.from_attrs(attrs)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("study %s: cannot serve it (its attributes are not what this "
                            "winopt reads: %s: %s); passed over", name, type(exc).__name__, exc)
                spec = None
            cache[sid] = (fingerprint, OpenStudy(name, sid, spec) if spec else None)
        entry = cache[sid][1]
        if entry is not None:
            found.append(entry)
    return found


def _open_fingerprints(storage: RDBStorage) -> dict[int, str | None]:
    """{study id: its spec fingerprint, or None} of the studies marked open."""
    attr = models.StudyUserAttributeModel
    with _create_scoped_session(storage.scoped_session) as session:
        ids = [sid for (sid,) in session.query(attr.study_id).filter(
            attr.key == OPEN_ATTR, attr.value_json == json.dumps(True))]
        if not ids:
            return {}
        prints = dict(session.query(attr.study_id, attr.value_json).filter(
            attr.key == SPEC_ATTR, attr.study_id.in_(ids)).all())
    return {sid: prints.get(sid) for sid in ids}


def spec_fingerprint(attrs: dict[str, Any]) -> str:
    """What a worker compares to know a study's spec changed: its SHARED_ATTR and
    SETTINGS_ATTR, hashed."""
    text = json.dumps([attrs.get(SHARED_ATTR), attrs.get(SETTINGS_ATTR)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


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
        db = Path(url.split("///", 1)[1])
        with FileLock(str(db) + f".ask-{study_id}.lock"):
            yield lambda: None


def sweep_stale(study: optuna.Study, storage: RDBStorage) -> tuple[list[int], list[int]]:
    """Fail trials whose worker stopped beating, queue the retry of every failed trial
    that has none, and find RUNNING trials that never had a heartbeat: a worker records
    its trial's first heartbeat under the same lock as its ask, so such a trial, seen under
    the lock, is one whose worker died, stopped or lost the database between the two,
    before running anything. Returns (numbers failed, ids of such orphans), both found
    under the ask lock.

    Nothing is failed as stale within a grace period of a database outage (this process
    had one, or the server started since): the workers' heartbeats could not be recorded
    either, and their trials are alive."""
    sid = study._study_id
    running = {t._trial_id: t for t in storage.get_all_trials(
        sid, deepcopy=False, states=(TrialState.RUNNING,))}
    failed = []
    if running and not just_back(storage):
        for tid in _stale_ids(storage, sid, running):
            try:
                if tid in running and storage.set_trial_state_values(tid, state=TrialState.FAIL):
                    failed.append(running[tid].number)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another process failed it (or its worker told it) first
    queue_missing_retries(study, storage)
    beating = _with_heartbeat(storage, list(running))
    orphans = [tid for tid in sorted(running)
               if running[tid].number not in failed and tid not in beating]
    return sorted(failed), orphans


def _stale_ids(storage: RDBStorage, study_id: int, running: dict[int, FrozenTrial]) -> list[int]:
    """Running trials whose heartbeat is older than their own worker's grace period (it
    records it on the trial), and never younger than this worker's: a worker started by
    hand with a short --grace-period must not fail the trials of rigs that beat slowly."""
    own = storage.grace_period
    graces = {tid: float(t.system_attrs.get(GRACE_ATTR) or own) for tid, t in running.items()}
    stale: list[int] = []
    try:
        for grace in sorted(set(graces.values())):
            storage.grace_period = max(own, grace)
            stale += [tid for tid in storage._get_stale_trial_ids(study_id) if graces.get(tid) == grace]
    finally:
        storage.grace_period = own
    return stale


def queue_missing_retries(study: optuna.Study, storage: RDBStorage) -> list[int]:
    """Queue the retry (Optuna's `RetryFailedTrialCallback`) of every failed trial that has
    none: failing a trial and queueing its retry are two commits, and a connection lost
    between them (or a process killed) would leave the trial without one. Idempotent: a
    trial is retried when some trial names it in its `retry_history`. Two small queries
    per claim (every claim runs this), whatever the study's size; a chain that has had its
    `max_retry` retries is passed over. The numbers queued."""
    callback = storage.get_heartbeat_stale_trial_callback()
    if callback is None:
        return []
    failed, histories = _failures(storage, study._study_id)
    retried = {n for history in histories.values() for n in history}
    limit = getattr(callback, "_max_retry", None)
    queued = []
    for tid, number in sorted(failed.items(), key=lambda item: item[1]):
        exhausted = limit is not None and len(histories.get(tid, ())) >= limit
        if number not in retried and not exhausted:
            callback(study, storage.get_trial(tid))
            queued.append(number)
    return queued


def _failures(storage: RDBStorage, study_id: int) -> tuple[dict[int, int], dict[int, list[int]]]:
    """The study's failed trials ({trial id: number}) and every trial's `retry_history`
    ({trial id: numbers it retries}), read without loading whole trials."""
    trial, attr = models.TrialModel, models.TrialSystemAttributeModel
    with _create_scoped_session(storage.scoped_session) as session:
        failed = dict(session.query(trial.trial_id, trial.number).filter(
            trial.study_id == study_id, trial.state == TrialState.FAIL).all())
        if not failed:
            return {}, {}
        rows = session.query(attr.trial_id, attr.value_json).join(
            trial, trial.trial_id == attr.trial_id).filter(
            trial.study_id == study_id, attr.key == "retry_history").all()
    return failed, {tid: json.loads(value) for tid, value in rows}


def just_back(storage: RDBStorage) -> bool:
    """Whether the database was out of reach within the last grace period: this process
    had a transient error, or the PostgreSQL server started since."""
    grace = float(storage.grace_period or GRACE_PERIOD)
    if since_trouble() < grace:
        return True
    if storage.url.startswith("postgresql"):
        with storage.engine.connect() as conn:
            up = conn.execute(sqlalchemy.text(
                "SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())")).scalar()
        return up is not None and float(up) < grace
    return False


def _with_heartbeat(storage: RDBStorage, trial_ids: list[int]) -> set[int]:
    """Which of `trial_ids` have a heartbeat recorded (one query)."""
    if not trial_ids:
        return set()
    beat = models.TrialHeartbeatModel
    with _create_scoped_session(storage.scoped_session) as session:
        return {tid for (tid,) in session.query(beat.trial_id).filter(
            beat.trial_id.in_(trial_ids)).all()}


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
        storage.set_trial_system_attr(trial._trial_id, GRACE_ATTR, storage.grace_period)
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
