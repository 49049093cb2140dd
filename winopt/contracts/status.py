"""STATE/status.json (SPEC §5): what the daemon knows, for people and scripts.

One writer (the daemon's `StatusBook`) publishes it; several parts of the daemon fill its
sections (the loop `daemon`, the runs adapter `runs`, the jobs adapter `jobs` and
`rejected`, the rigs adapter `rigs`), and `winopt status`, `winopt sync` and scripts read
it. These Structs are its schema: `read_status` checks the types of what it reads, and
the tests hold every file a real daemon writes to it with unknown keys forbidden
(`unknown_keys`), so a writer's new or misspelt key fails there. Every
field is optional, so a reader takes a file any winopt version wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from winopt.contracts.state_dir import STATUS_NAME

STATUS_SCHEMA_VERSION = 1
#: the daemon's counters, in status.json's `daemon.counters`
COUNTERS = ("events", "conversions", "conversion_errors", "decisions", "handler_errors", "reconciles")


class _Entry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Optional fields: absent and null read the same."""


class DaemonInfo(_Entry):
    """The daemon itself: its process, health and what it watches."""

    pid: int | None = None
    version: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    state: str | None = None  # starting, running, stopping, stopped
    config: str | None = None
    state_dir: str | None = None
    observer_alive: bool | None = None
    workers: dict[str, int] | None = None  # {alive, configured}
    watching: list[str] | None = None
    missing: list[str] | None = None
    last_event: dict[str, str] | None = None  # {path, at}
    last_reconcile: str | None = None
    counters: dict[str, int] | None = None  # COUNTERS


class SnapshotSummary(_Entry):
    """A run's snapshot as the watcher reads it (`winopt.contracts.snapshot`)."""

    status: str | None = None
    completed_trials: int | None = None
    total_trials: int | None = None
    best: int | None = None
    last_updated: str | None = None


class NpzSummary(_Entry):
    """The run's published NPZ, from its meta."""

    sha256: str | None = None
    count: int | None = None
    converted_at: str | None = None


class Progress(_Entry):
    """How fast a run's trials finish, and when it should end (the daemon's clock)."""

    rate_per_hour: float | None = None
    eta: str | None = None
    trials_left: int | None = None
    measured_over: int | None = None


class RunEntry(_Entry):
    """A watched run directory, or a spool job's directory (`kind` "job")."""

    kind: str | None = None
    path: str | None = None
    job_id: str | None = None
    state: str | None = None  # waiting, running, complete, interrupted, failed, error, missing
    error: str | None = None
    snapshot: SnapshotSummary | None = None
    decision: dict[str, Any] | None = None  # SPEC §4, as `winopt evaluate --json` prints it
    npz: NpzSummary | None = None
    npz_note: str | None = None
    processed_at: str | None = None
    progress: Progress | None = None


class JobEntry(_Entry):
    """A spool job."""

    state: str | None = None
    name: str | None = None
    owner: str | None = None
    priority: int | None = None
    pid: int | None = None
    trials: int | None = None
    run: str | None = None
    dir: str | None = None
    source: str | None = None
    accepted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    attempts: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    error: str | None = None
    cancel_requested: Any = None
    rigs: list[str] | None = None
    history: list[dict[str, Any]] | None = None


class RejectedEntry(_Entry):
    """A spool file the daemon refused (in STATE/rejected/)."""

    reason: str | None = None
    at: str | None = None
    owner: str | None = None


class RigEntry(_Entry):
    """A rig and the state of each run's copy on it ({run: the distributor's state})."""

    target: str | None = None
    transport: str | None = None  # ssh, local
    layout: str | None = None
    run: str | None = None
    runs: dict[str, dict[str, Any]] | None = None


class StatusDoc(_Entry):
    """The whole document."""

    schema_version: int | None = None
    updated_at: str | None = None
    daemon: DaemonInfo | None = None
    runs: dict[str, RunEntry] | None = None
    jobs: dict[str, JobEntry] | None = None
    jobs_left_out: int | None = None
    rejected: dict[str, RejectedEntry] | None = None
    rigs: dict[str, RigEntry] | None = None


def decode_status(data: bytes) -> dict[str, Any]:
    """status.json's bytes as a plain dict, once its types are checked (ValueError: not
    a status file this winopt reads)."""
    msgspec.json.decode(data, type=StatusDoc)
    return msgspec.json.decode(data)


def read_status(state_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The status document as last published (OSError, ValueError as they come)."""
    return decode_status((Path(state_dir) / STATUS_NAME).read_bytes())


#: where the schema nests: a field's Struct, or {Struct} for a section of named entries
_NESTED: dict[type[_Entry], dict[str, Any]] = {
    StatusDoc: {"daemon": DaemonInfo, "runs": {RunEntry}, "jobs": {JobEntry}, "rejected": {RejectedEntry},
                "rigs": {RigEntry}},
    RunEntry: {"snapshot": SnapshotSummary, "npz": NpzSummary, "progress": Progress},
}


def unknown_keys(doc: dict[str, Any], struct: type[_Entry] = StatusDoc, where: str = "") -> list[str]:
    """The keys of a decoded status.json that the schema lacks, as paths (`runs.r1.x`):
    what the tests hold a real daemon's file to, so a writer cannot drift from it."""
    found = [f"{where}{key}" for key in doc if key not in struct.__struct_fields__]
    for key, inner in _NESTED.get(struct, {}).items():
        value = doc.get(key)
        if isinstance(inner, set) and isinstance(value, dict):
            (entry,) = inner
            for name, item in value.items():
                if isinstance(item, dict):
                    found += unknown_keys(item, entry, f"{where}{key}.{name}.")
        elif isinstance(value, dict):
            found += unknown_keys(value, inner, f"{where}{key}.")
    return found
