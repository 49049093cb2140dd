"""A run's Optuna study read back as facts a person asks about (issue 16): each trial's
count, the chance expectation it had, the window it used and its notes (an offset clamped,
a window that did not fit, the one session searched), and the pace of the run.

The study is found as `winopt optimize` made it: the storage given, else the run
directory's own `optuna.db` (a `workers = "rigs"` job's: the shared storage); the study
name from the snapshot, else the directory's name. Nothing here writes to the storage: an
SQLite file that is missing, empty or without Optuna's tables is refused, not created.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import orjson
from sqlalchemy.engine import make_url

from winopt.contracts.clock import is_downtime
from winopt.contracts.errors import UserError
from winopt.contracts.schemas import CONFIG_NAME, read_snapshot
from winopt.contracts.state_dir import STATE_FILE
from winopt.optimizer.objective import SIEVE_ATTR
from winopt.optimizer.shared_storage import safe_url, with_driver
from winopt.optimizer.study import default_storage_url, default_study_name

#: finished trials the pace is measured over (the newest): recent enough to follow a
#: slowdown, enough to smooth one slow trial
PACE_TRIALS = 20


@dataclass
class TrialFacts:
    """One trial as `winopt show` and the report describe it."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    params: dict[str, Any]
    expected: float | None = None
    forward_count: int | None = None
    reverse_count: int | None = None
    notes: list[str] = field(default_factory=list)
    started: datetime | None = None
    completed: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number, "state": self.state, "value": self.value, "params": self.params,
            "expected_chance_bidirectional": self.expected, "forward_count": self.forward_count,
            "reverse_count": self.reverse_count, "notes": self.notes,
            "started_at": _iso(self.started), "completed_at": _iso(self.completed),
        }


def storage_url(run_dir: Path, storage: str | None = None, shared: str | None = None) -> str:
    """The run's Optuna storage: `storage`; else the run directory's optuna.db; else, for
    a `workers = "rigs"` job (its study is in the daemon's shared storage, named by the
    job id), `shared` (the CLI finds it: $WINOPT_STORAGE or the daemon's config)."""
    if storage:
        return with_driver(storage)
    if (run_dir / "optuna.db").is_file():
        return default_storage_url(run_dir)
    if rigs_job(run_dir):
        if shared:
            return with_driver(shared)
        raise UserError(f"{run_dir}: a workers = \"rigs\" job, its study is in the shared storage: "
                        "give --storage URL or set WINOPT_STORAGE")
    raise UserError(f"{run_dir}: no optuna.db (a run made before winopt, or with --storage URL: "
                    "give --storage URL)")


def rigs_job(run_dir: Path) -> bool:
    """Whether `run_dir` is a spool job's directory whose job runs on the rigs' workers
    (its state.json's spec says `workers = "rigs"`)."""
    return job_spec(run_dir).get("workers") == "rigs"


def job_state(run_dir: Path) -> dict[str, Any]:
    """A spool job directory's state.json (its state, its spec); {} for another run."""
    try:
        doc = orjson.loads((run_dir / STATE_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def job_spec(run_dir: Path, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job file's settings as the daemon accepted them (from `state`, its state.json
    when already read); {} for another run."""
    spec = (job_state(run_dir) if state is None else state).get("spec")
    return spec if isinstance(spec, dict) else {}


def check_readable(url: str) -> None:
    """Refuse an SQLite storage that is not already a database with Optuna's tables:
    opening it would create the file, or Optuna's schema in it, and a reader writes
    nothing. One line saying what is wrong with the file."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: opening it says why
        return
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    where = f"{path} (storage {safe_url(url)})"
    if not path.is_file():
        raise UserError(f"{where}: no such file; give the storage of an existing study")
    if path.stat().st_size == 0:
        raise UserError(f"{where}: an empty file, not an Optuna storage")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise UserError(f"{where}: not an SQLite database ({exc})".splitlines()[0]) from None
    if "studies" not in tables:
        raise UserError(f"{where}: not an Optuna storage (no studies table)")


def study_name(run_dir: Path, snapshot: dict[str, Any] | None, given: str | None = None) -> str:
    """The study's name: `given`, the snapshot's `study_name`, or the directory's default."""
    if given:
        return given
    if snapshot and isinstance(snapshot.get("study_name"), str) and snapshot["study_name"]:
        return snapshot["study_name"]
    return default_study_name(run_dir)


def read_snapshot_or_none(run_dir: Path) -> dict[str, Any] | None:
    """The run's optimal_window_config.json, None when there is none yet."""
    try:
        return read_snapshot(run_dir / CONFIG_NAME)
    except FileNotFoundError:
        return None


def load_study(url: str, name: str) -> Any:
    """The study, read as it is (an `optuna.Study`); one line when it cannot be opened."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_readable(url)
    try:
        return optuna.load_study(study_name=name, storage=url)
    except KeyError:
        raise UserError(f"{safe_url(url)}: no study {name!r} there (give --study NAME)") from None
    except Exception as exc:  # SQLAlchemy and driver errors: one line for a person
        raise UserError(f"{safe_url(url)}: cannot open the study: {exc}".splitlines()[0]) from None


def trial_facts(study: Any) -> list[TrialFacts]:
    """Every trial of the study, in number order."""
    facts = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = trial.user_attrs.get(SIEVE_ATTR) or {}
        params = dict(attrs.get("used_params") or trial.params)
        notes = [str(n) for n in attrs.get("notes") or []]
        if trial.user_attrs.get("infeasible"):
            notes.append(f"pruned: {trial.user_attrs['infeasible']}")
        if trial.state.name == "FAIL" and trial.system_attrs.get("fail_reason"):
            notes.append(f"failed: {str(trial.system_attrs['fail_reason']).splitlines()[0]}")
        tod = params.get("time_of_day")
        if tod in ("midday", "evening"):
            notes.append(f"time_of_day {tod}: one session searched, about half the history")
        facts.append(TrialFacts(
            number=trial.number, state=trial.state.name, value=trial.value, params=params,
            expected=attrs.get("expected_chance_bidirectional"), forward_count=attrs.get("forward_count"),
            reverse_count=attrs.get("reverse_count"), notes=notes,
            started=_aware(trial.datetime_start), completed=_aware(trial.datetime_complete)))
    return facts


def finished(trials: list[TrialFacts]) -> list[TrialFacts]:
    """The trials that count toward the target (complete or pruned), in number order."""
    return [t for t in trials if t.state in ("COMPLETE", "PRUNED")]


def best_trial(trials: list[TrialFacts]) -> TrialFacts | None:
    """Highest count, ties to the first trial (the snapshot's rule)."""
    best = None
    for t in trials:
        if t.state == "COMPLETE" and t.value is not None and (best is None or t.value > best.value):
            best = t
    return best


def pace(trials: list[TrialFacts], window: int = PACE_TRIALS) -> float | None:
    """Trials per hour over the newest `window` finished trials: their number over the
    time the run was busy with them, the union of their [start, end] (parallel workers
    overlap) plus the short gaps between; a gap that `is_downtime` against the median
    trial is the run being down (stopped, crashed) and does not count. None before
    one has finished."""
    done = sorted((t for t in finished(trials) if t.completed and t.started), key=lambda t: t.completed)
    recent = done[-window:]
    if not recent:
        return None
    spans = sorted((t.started, t.completed) for t in recent)
    lengths = sorted((end - start).total_seconds() for start, end in spans)
    typical = lengths[len(lengths) // 2]
    busy, (start, end) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s <= end:
            end = max(end, e)
            continue
        gap = (s - end).total_seconds()
        busy += (end - start).total_seconds() + (0.0 if is_downtime(gap, typical) else gap)
        start, end = s, e
    busy += (end - start).total_seconds()
    return len(recent) * 3600.0 / busy if busy > 0 else None



def _aware(moment: datetime | None) -> datetime | None:
    """Optuna's naive local times, as aware ones."""
    if moment is None:
        return None
    return moment.astimezone() if moment.tzinfo is None else moment


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).astimezone().isoformat(timespec="seconds")
