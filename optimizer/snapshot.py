"""The per-trial snapshot (SPEC §2, §3): `SnapshotWriter`, an Optuna callback.

After every trial it rewrites `optimal_window_config.json`; when the trial is a new best it
first publishes that trial's `bidirectional_survivors.json`, then the config that records the
survivors' sha256 and count. Both are staged (written and fsynced) before either is renamed,
survivors first, so a crash leaves a config that names survivors on disk: only the
microseconds between the two renames could separate them, and resume checks for that.

Like Optuna's `MaxTrialsCallback`, the writer holds its configuration and counters and does
one thing per call; its cost is O(1) in the number of trials so far: it never reads
`study.trials`, it keeps counters that the run initialises once from the storage. A write
that fails (disk full, permission) is logged and tried again after the next trial; the study
goes on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from winopt.contracts.clock import now_iso
from winopt.contracts.publish import dump_json, publish_in_order, publish_json
from winopt.contracts.schemas import (
    CONFIG_FIELDS,
    CONFIG_NAME,
    CONFIG_SCHEMA_VERSION,
    SURVIVORS_NAME,
    WINDOW_PARAMS,
)
from winopt.optimizer.draws import SESSIONS
from winopt.optimizer.sieve.core import SieveResult
from winopt.optimizer.study import COUNTED_STATES, RunSettings, StudyProgress
from winopt.optimizer.objective import trial_summary
from winopt.optimizer.survivors import survivor_records

log = logging.getLogger(__name__)

NO_TRIALS_NOTE = "No successful trials yet"


@dataclass(frozen=True)
class SurvivorsOnDisk:
    """Identity of the survivors file the config names."""

    sha256: str
    count: int


@dataclass(frozen=True)
class PendingSurvivors:
    """A new best's survivors, serialised once, waiting to be published."""

    data: bytes
    sha256: str
    count: int

    @classmethod
    def of(cls, result: SieveResult, time_of_day: str, trial_number: int) -> PendingSurvivors:
        records = survivor_records(result, time_of_day=time_of_day, trial_number=trial_number)
        data = dump_json(records)
        return cls(data, hashlib.sha256(data).hexdigest(), len(records))


class SnapshotWriter:
    """Optuna callback that keeps `DIR/optimal_window_config.json` current after each trial.

    `take_result(number)` hands over the `SieveResult` the objective computed for a trial
    (the survivors of a new best are never recomputed)."""

    def __init__(self, out_dir: Path, *, settings: RunSettings, study_name: str,
                 started_at: str, total_trials: int,
                 take_result: Callable[[int], SieveResult | None],
                 progress: StudyProgress | None = None,
                 fixed_time_of_day: str | None = None) -> None:
        self.out_dir = Path(out_dir)
        #: the one time_of_day every trial uses, when the search space fixes it: the old
        #: `sessions` key can name it before the first successful trial
        self.fixed_time_of_day = fixed_time_of_day
        self.config_path = self.out_dir / CONFIG_NAME
        self.survivors_path = self.out_dir / SURVIVORS_NAME
        self.settings = settings
        self.study_name = study_name
        self.started_at = started_at
        self.total_trials = total_trials
        self.take_result = take_result
        self.status = "in_progress"
        self.error: str | None = None
        self.completed_at: str | None = None
        self.counted = 0
        self.last: tuple[int, float | None] | None = None
        self.best: dict[str, Any] | None = None
        self.survivors: SurvivorsOnDisk | None = None
        self.pending: PendingSurvivors | None = None
        self.failed_writes = 0
        if progress is not None:
            self.start_from(progress)

    # ------------------------------------------------------------------ state

    def start_from(self, progress: StudyProgress) -> None:
        """Initialise the counters from the one scan made at start or resume. The best
        trial's survivors are unknown until `adopt_survivors` or `republish` says."""
        self.counted = progress.counted
        if progress.last is not None:
            self.last = (progress.last.number, progress.last.value)
        self.best = trial_summary(progress.best) if progress.best is not None else None
        self.survivors = None
        self.pending = None

    def adopt_survivors(self, sha256: str, count: int) -> None:
        """The survivors on disk are the best trial's (checked by the caller)."""
        self.survivors = SurvivorsOnDisk(sha256, count)

    def republish(self, result: SieveResult) -> None:
        """Publish the best trial's survivors again from a fresh sieve of its parameters."""
        assert self.best is not None
        self.pending = PendingSurvivors.of(result, self.best["params"]["time_of_day"],
                                           self.best["number"])
        self.survivors = None

    def record(self, trial: FrozenTrial) -> bool:
        """Count one finished trial; return True when it is a new best."""
        if trial.state not in COUNTED_STATES:
            return False
        self.counted += 1
        self.last = (trial.number, trial.value)
        if trial.state != TrialState.COMPLETE or trial.value is None:
            return False
        if self.best is not None and trial.value <= self.best["value"]:
            self.take_result(trial.number)  # not needed: let it go
            return False
        result = self.take_result(trial.number)
        self.best = trial_summary(trial)
        self.survivors = None
        self.pending = None
        if result is None:  # the objective always keeps it; a resume check would repair
            log.error("trial %d is a new best but its sieve result is missing", trial.number)
        else:
            self.pending = PendingSurvivors.of(result, self.best["params"]["time_of_day"],
                                               trial.number)
        return True

    # ------------------------------------------------------------------ the callback

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.record(trial)
        self.write()

    def finish(self, status: str, error: str | None = None) -> bool:
        """The run's last snapshot: complete, interrupted or failed."""
        self.status = status
        self.error = error
        self.completed_at = now_iso(precision="milliseconds") if status == "complete" else None
        return self.write()

    def write(self) -> bool:
        """Publish pending survivors (if any) and then the config; never raises OSError."""
        try:
            if self.pending is not None:
                pending = self.pending
                config = self.config(SurvivorsOnDisk(pending.sha256, pending.count))
                publish_in_order([(self.survivors_path, pending.data),
                                  (self.config_path, dump_json(config))])
                self.survivors = SurvivorsOnDisk(pending.sha256, pending.count)
                self.pending = None
            else:
                publish_json(self.config_path, self.config(self.survivors))
        except OSError as exc:
            self.failed_writes += 1
            log.warning("could not write the snapshot in %s (%s); trying again after the "
                        "next trial", self.out_dir, exc)
            return False
        return True

    # ------------------------------------------------------------------ the file

    def config(self, survivors: SurvivorsOnDisk | None) -> dict[str, Any]:
        """The SPEC §3 object, keys in CONFIG_FIELDS order.

        The counts are integers from the first snapshot on, 0 before any successful trial:
        the old pipeline's watcher compares them with numbers and fails on null. Whether a
        trial has succeeded is told by `best_trial_number` (null) and `note`, never by a
        count."""
        best = self.best
        params = best["params"] if best else {}
        best_count = int(best["value"]) if best else 0
        fields: dict[str, Any] = {
            "schema_version": CONFIG_SCHEMA_VERSION,
            "status": self.status,
            "note": NO_TRIALS_NOTE if best is None else ("; ".join(best["notes"]) or None),
            "error": self.error,
            "study_name": self.study_name,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "last_updated": now_iso(precision="milliseconds"),
            "completed_trials": self.counted,
            "total_trials": self.total_trials,
            "last_trial_number": self.last[0] if self.last else None,
            "last_trial_value": self.last[1] if self.last else None,
            "best_trial_number": best["number"] if best else None,
            "best_value": best["value"] if best else None,
            "best_bidirectional_count": best_count,
            "best_params": dict(params) if best else None,
            **{name: params.get(name) for name in WINDOW_PARAMS},
            "prng_type": self.settings.prng,
            "mod": self.settings.mod,
            "seed_start": self.settings.seed_start,
            "seed_count": self.settings.seed_count,
            "forward_count": _count(best["forward_count"] if best else None),
            "reverse_count": _count(best["reverse_count"] if best else None),
            "bidirectional_count": best_count,
            "expected_chance_bidirectional":
                best["expected_chance_bidirectional"] if best else None,
            "survivors_file": SURVIVORS_NAME if survivors else None,
            "survivors_sha256": survivors.sha256 if survivors else None,
            "survivors_count": survivors.count if survivors else None,
            "optimization_score": best["value"] if best else None,
            "sessions": sessions(params.get("time_of_day") or self.fixed_time_of_day),
            "test_both_modes": False,  # winopt tries constant skips only
        }
        return {key: fields[key] for key in CONFIG_FIELDS}


def sessions(time_of_day: str | None) -> list[str]:
    """The old config's `sessions`: the sessions the sieve saw.

    `["midday", "evening"]` for time_of_day "all" (a plain list of ints counts as both, as
    the old pipeline's default did), else the one selected. Before any successful trial the
    best trial's selection is unknown: it is the search space's when the space fixes one
    (`--time-of-day midday`), else both sessions (the old pipeline's default; the key is
    never null, its readers index it)."""
    return [time_of_day] if time_of_day in SESSIONS else list(SESSIONS)


def _count(value: Any) -> int:
    """A count as the snapshot writes it: an int, 0 when unknown (a trial from before the
    sieve attributes existed, or no trial yet)."""
    return 0 if value is None else int(value)
