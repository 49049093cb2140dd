"""`winopt worker`'s loop (SPEC §7): serve every open study of a shared storage, one whole
trial at a time.

A worker looks for open studies (`shared_study.open_studies`), claims a trial in the first
that has a free slot (`claim_trial`: exactly N), runs the sieve with a heartbeat beating
beside it, uploads the survivors when the trial beats the study's best, and tells the
result. It never exits on a database error: every storage call is retried with backoff.
A worker that comes back after its trial was failed as stale (a rig cut off, a process
stopped) finds Optuna refusing the tell, and drops the result: the retry elsewhere counts.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import upload_artifact
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from winopt.optimizer.artifacts import artifact_store
from winopt.optimizer.snapshot import PendingSurvivors
from winopt.optimizer.objective import SieveObjective, StopRequested
from winopt.optimizer.shared_storage import Heartbeat, Stopped, retrying, safe_url
from winopt.optimizer.shared_study import (
    SURVIVORS_ATTR,
    OpenStudy,
    ask_lock,
    best_trial,
    claim_trial,
    compress,
    finished_count,
    make_sampler,
    open_studies,
)

log = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    heartbeat_interval: float
    grace_period: float
    cores: int | None = None
    device: str | None = None
    #: the artifact store: a directory or s3://BUCKET (`optimizer.artifacts`)
    artifacts: str | None = None
    #: exit when no open study needs more trials (else wait for new studies)
    once: bool = False
    #: exit after this many trials told (None: never)
    max_trials: int | None = None
    poll: float = 2.0


@dataclass
class WorkerCounts:
    told: list[tuple[str, int, str]] = field(default_factory=list)
    dropped: list[tuple[str, int]] = field(default_factory=list)


class Worker:
    """One worker process's loop; `stop` (any thread, a signal handler) ends it after the
    trial in hand, which is failed and queued for retry when cut short."""

    def __init__(self, storage: RDBStorage, options: WorkerOptions) -> None:
        self.storage = storage
        self.options = options
        self.stop_event = threading.Event()
        self.counts = WorkerCounts()
        self._cache: dict[int, tuple[Any, OpenStudy | None]] = {}
        self._studies: dict[int, optuna.Study] = {}

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> int:
        opts = self.options
        log.info("worker %d serving %s (heartbeat %gs, grace %gs, cores %s)", os.getpid(),
                 safe_url(self.storage.url), opts.heartbeat_interval, opts.grace_period,
                 opts.cores or "all")
        try:
            while not self.stop_event.is_set():
                if opts.max_trials is not None and len(self.counts.told) >= opts.max_trials:
                    break
                worked, wanted = self._one_round()
                if worked:
                    continue
                if not wanted and opts.once:
                    log.info("no open study needs trials: exiting (--once)")
                    break
                self.stop_event.wait(opts.poll)
        except Stopped:
            pass
        log.info("worker %d stops: %d trials told, %d results dropped", os.getpid(),
                 len(self.counts.told), len(self.counts.dropped))
        return 0

    def _one_round(self) -> tuple[bool, bool]:
        """Run one trial of the first open study with a free slot: (ran one, some open
        study still needs trials)."""
        studies = retrying("listing studies", lambda: open_studies(self.storage, self._cache),
                           stop=self.stop_event)
        wanted = False
        for entry in studies:
            if self.stop_event.is_set():
                return False, True
            try:
                remaining = entry.spec.target - retrying(
                    "counting trials", lambda: finished_count(self.storage, entry.study_id),
                    stop=self.stop_event)
                if remaining <= 0:
                    continue
                wanted = True
                study = self._study(entry)
                trial = retrying(f"study {entry.name}: asking for a trial",
                                 lambda: claim_trial(study, self.storage, entry.spec.target),
                                 stop=self.stop_event)
            except KeyError as exc:  # the study was deleted meanwhile: forget it
                log.warning("study %s: gone from the storage (%s); passed over", entry.name, exc)
                self._cache.pop(entry.study_id, None)
                self._studies.pop(entry.study_id, None)
                continue
            if trial is None:
                continue
            self._run_trial(entry, study, trial)
            return True, True
        return False, wanted

    def _study(self, entry: OpenStudy) -> optuna.Study:
        study = self._studies.get(entry.study_id)
        if study is None:
            study = retrying(f"loading study {entry.name}", lambda: optuna.load_study(
                study_name=entry.name, storage=self.storage,
                sampler=make_sampler(entry.spec.strategy)), stop=self.stop_event)
            self._studies[entry.study_id] = study
        return study

    # ------------------------------------------------------------------ one trial

    def _run_trial(self, entry: OpenStudy, study: optuna.Study, trial: optuna.Trial) -> None:
        spec = entry.spec
        objective = SieveObjective(spec.histories, spec.settings, spec.space,
                                   should_stop=self.stop_event.is_set,
                                   device=self.options.device, cores=self.options.cores)
        log.info("study %s: trial %d started", entry.name, trial.number)
        state, value = TrialState.COMPLETE, None
        with Heartbeat(self.storage, trial._trial_id, self.options.heartbeat_interval, trial.number):
            try:
                value = retrying(f"trial {trial.number}: running", lambda: objective(trial),
                                 stop=self.stop_event)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except (StopRequested, Stopped):
                state = TrialState.FAIL
            except Exception as exc:  # noqa: BLE001 - a trial's error fails the trial only
                if _finished_elsewhere(exc):
                    self._dropped(entry, trial.number, "while it ran")
                    return
                log.error("study %s: trial %d failed: %s: %s", entry.name, trial.number,
                          type(exc).__name__, exc)
                state = TrialState.FAIL
            if state == TrialState.COMPLETE and value is not None:
                try:
                    self._maybe_upload(entry, study, trial, objective, float(value))
                except Stopped:
                    state = TrialState.FAIL
                except Exception as exc:  # noqa: BLE001
                    if _finished_elsewhere(exc):
                        self._dropped(entry, trial.number, "before its survivors were uploaded")
                        return
                    log.error("study %s: trial %d: survivors not uploaded (%s: %s); the head "
                              "node re-runs the sieve if it needs them", entry.name,
                              trial.number, type(exc).__name__, exc)
            self._tell(entry, study, trial, state, value)

    def _maybe_upload(self, entry: OpenStudy, study: optuna.Study, trial: optuna.Trial,
                      objective: SieveObjective, value: float) -> None:
        """Upload the survivors (zlib-compressed JSON, exactly the bytes the head publishes)
        when this trial beats the study's best so far."""
        result = objective.take(trial.number)
        if self.options.artifacts is None or result is None:
            return
        best = retrying("reading the best trial", lambda: best_trial(self.storage, entry.study_id),
                        stop=self.stop_event)
        if best is not None and (value < best.value or (value == best.value and best.number < trial.number)):
            return
        pending = PendingSurvivors.of(result, str(trial.params["time_of_day"]), trial.number)
        store = artifact_store(self.options.artifacts, create=True)
        with tempfile.TemporaryDirectory(prefix="winopt-worker-") as tmp:
            path = Path(tmp) / f"survivors-{entry.name}-{trial.number}.json.z"
            path.write_bytes(compress(pending.data))
            artifact_id = retrying("uploading survivors", lambda: upload_artifact(
                artifact_store=store, file_path=str(path), study_or_trial=trial,
                mimetype="application/json", encoding="deflate"), stop=self.stop_event)
        # the reference after the file: a trial naming an artifact has it in the store
        attr: dict[str, Any] = {"artifact_id": artifact_id, "sha256": pending.sha256,
                                "count": pending.count, "encoding": "zlib",
                                "trial_number": trial.number}
        retrying("recording the survivors", lambda: trial.set_user_attr(SURVIVORS_ATTR, attr),
                 stop=self.stop_event)
        log.info("study %s: trial %d is a new best (%g): survivors uploaded (%d, sha256 %s)",
                 entry.name, trial.number, value, pending.count, pending.sha256[:12])

    def _tell(self, entry: OpenStudy, study: optuna.Study, trial: optuna.Trial,
              state: TrialState, value: float | None) -> None:
        def tell() -> None:
            if state == TrialState.COMPLETE:
                study.tell(trial, value)
            elif state == TrialState.PRUNED:
                study.tell(trial, state=state)
            else:  # cut short here: fail it and queue its retry as a stale one's, under
                # the ask lock, so that no ask takes the freed slot before the retry is queued
                with ask_lock(self.storage, entry.study_id):
                    study.tell(trial, state=state)
                    callback = self.storage.get_heartbeat_stale_trial_callback()
                    if callback is not None:
                        callback(study, self.storage.get_trial(trial._trial_id))

        try:
            retrying(f"trial {trial.number}: telling", tell)  # no stop: a result is kept
        except Exception as exc:  # noqa: BLE001
            frozen = retrying("reading the trial back", lambda: self.storage.get_trial(trial._trial_id))
            if frozen.state == state and (value is None or frozen.value == value):
                pass  # our own tell went through before the connection broke
            elif frozen.state.is_finished():
                self._dropped(entry, trial.number, f"({type(exc).__name__}: {exc})")
                return
            else:
                raise
        self.counts.told.append((entry.name, trial.number, state.name))
        log.info("study %s: trial %d told %s%s", entry.name, trial.number, state.name,
                 f" {value:g}" if value is not None and state == TrialState.COMPLETE else "")

    def _dropped(self, entry: OpenStudy, number: int, when: str) -> None:
        self.counts.dropped.append((entry.name, number))
        log.warning("study %s: trial %d was already finished by another worker (failed as "
                    "stale) %s; result dropped", entry.name, number, when)


def _finished_elsewhere(exc: BaseException) -> bool:
    if isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
        return True
    return isinstance(exc, ValueError) and "Cannot tell" in str(exc)
