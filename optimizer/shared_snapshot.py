"""The head node's side of a shared study (SPEC §7): `StudyPublisher`, the one writer of a
shared study's snapshot.

Workers on the rigs write nothing but the storage. The publisher reads the study's counts
and best trial from the storage and publishes, into the run's directory, exactly the files
`winopt optimize` writes (SPEC §3, same order: survivors, then the config naming them), so
conversion, decisions and rsync work as for a local run. The best trial's survivors come
from the artifact its worker uploaded (checked against the sha256 the worker recorded), or,
when that is missing or does not match, from a fresh sieve of the trial's parameters (it is
deterministic). Counts come from the storage, where finished trials never go away, so they
never go down; a restarted publisher adopts the survivors on disk when the config there
names the same best trial and the file's sha256, and otherwise rebuilds them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import RDBStorage

from winopt.contracts.errors import UserError
from winopt.contracts.publish import sha256_file
from winopt.contracts.schemas import CONFIG_NAME, SURVIVORS_NAME, read_snapshot
from winopt.optimizer.shared_study import (
    SURVIVORS_ATTR,
    SharedSpec,
    decompress,
    set_open,
)
from winopt.optimizer.snapshot import PendingSurvivors, SnapshotWriter
from winopt.optimizer.study import STARTED_ATTR, scan_progress
from winopt.optimizer.artifacts import artifact_store
from winopt.optimizer.objective import SieveObjective

log = logging.getLogger(__name__)


@dataclass
class Published:
    """What the last publish wrote: a poll that finds the same writes nothing."""

    counted: int
    last: int | None
    best: int | None
    status: str


class StudyPublisher:
    """Publishes one shared study's snapshot into `out_dir`; `publish()` once per poll."""

    def __init__(self, storage: RDBStorage, study: optuna.Study, spec: SharedSpec,
                 out_dir: Path, artifacts: str | None = None, *,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.storage = storage
        self.study = study
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.artifacts = artifacts
        #: a re-sieve ends with `StopRequested` when this says so (a signal to the head)
        self.should_stop = should_stop
        self.started_at = study.user_attrs.get(STARTED_ATTR) or ""
        self.published: Published | None = None
        #: (best trial number, sha256, count) of the survivors on disk
        self.survivors: tuple[int, str, int] | None = None
        self.sieved = 0  # best trials whose survivors had to be re-sieved (tests, logs)
        self._adopt_from_disk()

    def _adopt_from_disk(self) -> None:
        """After a restart: the survivors on disk are kept when the config names them."""
        try:
            config: dict[str, Any] | None = read_snapshot(self.out_dir / CONFIG_NAME)
        except (FileNotFoundError, UserError):
            return
        if not config or config.get("study_name") != self.study.study_name:
            return
        number, sha = config.get("best_trial_number"), config.get("survivors_sha256")
        path = self.out_dir / SURVIVORS_NAME
        if number is not None and sha and path.is_file() and sha256_file(path) == sha:
            self.survivors = (int(number), sha, int(config.get("survivors_count") or 0))
            # what the snapshot on disk says: a restart that finds nothing new rewrites
            # nothing (a finished study keeps its completed_at)
            self.published = Published(int(config.get("completed_trials") or 0),
                                       config.get("last_trial_number"), int(number),
                                       str(config.get("status")))

    def publish(self, *, final_status: str | None = None, error: str | None = None) -> bool:
        """Publish when something changed (or `final_status` is given); True when the study
        has reached its target (then the snapshot says complete and the study is closed)."""
        trials = self.storage.get_all_trials(self.study._study_id, deepcopy=False)
        progress = scan_progress(trials)
        done = progress.counted >= self.spec.target
        status = "complete" if done else (final_status or "in_progress")
        now = Published(progress.counted, progress.last.number if progress.last else None,
                        progress.best.number if progress.best else None, status)
        if now == self.published:
            return done
        fixed = self.spec.space.time_of_day
        writer = SnapshotWriter(self.out_dir, settings=self.spec.settings,
                                study_name=self.study.study_name, started_at=self.started_at,
                                total_trials=self.spec.target, take_result=lambda _n: None,
                                progress=progress,
                                fixed_time_of_day=fixed[0] if len(fixed) == 1 else None)
        best = progress.best
        if best is not None:
            if self.survivors is not None and self.survivors[0] == best.number:
                writer.adopt_survivors(self.survivors[1], self.survivors[2])
            else:
                writer.pending = self._survivors_of(best)
        if status == "in_progress":
            ok = writer.write()
        else:
            ok = writer.finish(status, error)
        if not ok:  # not written (a full disk, say): not done until it is, at a later poll
            return False
        if best is not None and writer.survivors is not None:
            self.survivors = (best.number, writer.survivors.sha256, writer.survivors.count)
        self.published = now
        if done:
            set_open(self.study, False)
        log.info("study %s: %d/%d trials, best %s%s", self.study.study_name, progress.counted,
                 self.spec.target,
                 f"{best.value:g} (trial {best.number})" if best is not None else "none yet",
                 f", {status}" if status != "in_progress" else "")
        return done

    def _survivors_of(self, best: optuna.trial.FrozenTrial) -> PendingSurvivors:
        """The best trial's survivors: its artifact when it is there and matches the
        sha256 its worker recorded, else a fresh sieve of its parameters."""
        attr = best.user_attrs.get(SURVIVORS_ATTR)
        # a retried trial inherits its failed original's user attributes: an artifact is
        # this trial's only when it says so
        if (isinstance(attr, dict) and attr.get("trial_number") == best.number
                and self.artifacts is not None):
            data = self._download(attr["artifact_id"])
            if data is not None and hashlib.sha256(data).hexdigest() == attr.get("sha256"):
                return PendingSurvivors(data, attr["sha256"], int(attr.get("count", 0)))
            log.warning("study %s: trial %d's survivors artifact is missing or does not match "
                        "its sha256: re-running its sieve", self.study.study_name, best.number)
        else:
            log.info("study %s: trial %d has no survivors artifact here: re-running its sieve",
                     self.study.study_name, best.number)
        objective = SieveObjective(self.spec.histories, self.spec.settings, self.spec.space,
                                   should_stop=self.should_stop)
        result = objective.sieve(best.params)
        self.sieved += 1
        return PendingSurvivors.of(result, str(best.params["time_of_day"]), best.number)

    def _download(self, artifact_id: str) -> bytes | None:
        assert self.artifacts is not None
        try:
            with artifact_store(self.artifacts).open_reader(artifact_id) as reader:
                return decompress(reader.read())
        except (ArtifactNotFound, OSError, ValueError) as exc:
            log.debug("artifact %s: %s", artifact_id, exc)
            return None
        except Exception as exc:  # zlib.error and friends: a damaged artifact
            log.debug("artifact %s: %s", artifact_id, exc)
            return None
