"""optimal_window_config.json as every reader reads it: one tolerant reader (SPEC §3, §4).

The optimizer writes the snapshot; `winopt evaluate`, the daemon's runs and jobs, and
`winopt optimize` itself (on resume) read it. Old files (the pre-winopt pipeline's) lack
most fields, so every field is optional here; what is present must have its type, else
`SnapshotError` says which field is wrong, in `contracts.strict`'s words (the watcher
escalates such a file).

The best count is `best_bidirectional_count`, else `best_value`, else the old pipeline's
`bidirectional_count`. A winopt snapshot (it has `schema_version`) whose
`best_trial_number` is null has no successful trial yet: its counts are 0 only because the
old watcher needs integers, so its best is None ("none yet").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import msgspec

from winopt.contracts import strict
from winopt.contracts.schemas import read_snapshot

#: where the best count may be, newest schema first
BEST_KEYS = ("best_bidirectional_count", "best_value", "bidirectional_count")

_Number = Annotated[float, msgspec.Meta(ge=0)]
_Status = Literal["in_progress", "complete", "interrupted", "failed"]


class SnapshotError(ValueError):
    """A field the readers use has a value of the wrong type (one line, naming it)."""


class _Fields(msgspec.Struct, kw_only=True):
    """The fields readers use, typed; every other key is ignored."""

    schema_version: Any = None
    status: _Status | None = None
    best_trial_number: Any = msgspec.UNSET  # present-and-null is what says "no best yet"
    completed_trials: _Number | None = None
    total_trials: _Number | None = None
    best_bidirectional_count: _Number | None = None
    best_value: _Number | None = None
    bidirectional_count: _Number | None = None
    expected_chance_bidirectional: _Number | None = None
    last_updated: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SnapshotView:
    """A snapshot as the watcher, status and jobs see it."""

    status: str  # "complete" for an old file without one (`status_given` False)
    status_given: bool
    completed: int | None
    total: int | None
    best: int | None
    expected: float | None
    last_updated: str | None
    error: str | None


def view(raw: Mapping[str, Any]) -> SnapshotView:
    """The used fields of a decoded snapshot, type-checked (`SnapshotError` otherwise)."""
    try:
        fields = strict.convert(raw, _Fields)
    except strict.SchemaError as exc:
        raise SnapshotError(str(exc)) from None
    best_key = next((k for k in BEST_KEYS if getattr(fields, k) is not None), None)
    if no_successful_trial(raw):
        best_key = None
    return SnapshotView(
        status=fields.status or "complete",
        status_given=fields.status is not None,
        completed=_whole(fields, "completed_trials"),
        total=_whole(fields, "total_trials"),
        best=_whole(fields, best_key) if best_key else None,
        expected=fields.expected_chance_bidirectional,
        last_updated=fields.last_updated,
        error=fields.error,
    )


def no_successful_trial(raw: Mapping[str, Any]) -> bool:
    """A winopt snapshot written before any successful trial (its counts are 0, not a best).

    Only winopt files carry `schema_version`; a pre-winopt file's null best_trial_number
    (its incremental saves had one) says nothing about its `bidirectional_count`."""
    return (raw.get("schema_version") is not None and "best_trial_number" in raw
            and raw["best_trial_number"] is None)


def _whole(fields: _Fields, key: str) -> int | None:
    """A count; Optuna's best_value is a float such as 1234.0, which is accepted."""
    value = getattr(fields, key)
    if value is not None and float(value) != int(value):
        raise SnapshotError(f"{key}: must be a whole number, got {value!r}")
    return None if value is None else int(value)



def read_view(path: str | os.PathLike[str]) -> tuple[dict[str, Any], SnapshotView]:
    """Read and view a snapshot file: FileNotFoundError when there is none yet,
    `UserError` when it is not a JSON object, `SnapshotError` for a field's type."""
    raw = read_snapshot(path)
    return raw, view(raw)


def view_known(raw: Mapping[str, Any]) -> tuple[SnapshotView, tuple[str, ...]]:
    """`view`, with each field of the wrong type left unknown instead of failing the whole
    file, and the names of those fields: a reader that shows a run (`winopt show`) says
    what it can and which fields it could not use. A bad best count makes the best
    unknown (an older key is not a stand-in for it)."""
    bad = tuple(key for key in _Fields.__struct_fields__ if key in raw and not _valid(key, raw[key]))
    known = view({k: v for k, v in raw.items() if k not in bad})
    if any(key in bad for key in BEST_KEYS):
        known = replace(known, best=None)
    return known, bad


def _valid(key: str, value: Any) -> bool:
    try:
        view({key: value})
    except SnapshotError:
        return False
    return True
