"""An accepted job (SPEC §5): what a valid job file describes, as the spool's state files
keep it (`jobs/ID/state.json`, key `spec`) and the runner and status read it.

The job file's own checks, with their words for people, are `winopt.handlers.jobs.jobfile`;
what they accept is this Struct, and what is stored is its plain form (`to_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

DEFAULT_PRNG = "java_lcg"


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A validated job: every value checked, the draws path absolute and resolved.

    Window parameters are `(lo, hi)` pairs (a fixed value is `(v, v)`), absent for the
    optimizer's default; `time_of_day` is None for the default (all three)."""

    draws: str
    trials: int
    prng: str = DEFAULT_PRNG
    strategy: str = "bayesian"
    seed_start: int | None = None
    seed_count: int | None = None
    mod: int | None = None
    time_of_day: tuple[str, ...] | None = None
    bounds: dict[str, tuple[int | float, int | float]] = {}
    name: str | None = None
    rigs: tuple[str, ...] = ()
    priority: int = 0
    cores: int | None = None
    #: "local": a `winopt optimize` child; "rigs": `winopt study`, a study in the daemon's
    #: shared storage that every `winopt worker` serves (SPEC §7)
    workers: str = "local"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for the job directory's state file."""
        return msgspec.to_builtins(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """The inverse of `to_dict` (an empty time_of_day list is the default, None)."""
        spec = msgspec.convert(dict(data), cls)
        return msgspec.structs.replace(spec, time_of_day=None) if spec.time_of_day == () else spec
