"""The numbers of the SPEC §4 decision rules (`rules.py`): names, defaults, limits (msgspec
constraints) and help, for `winopt evaluate`'s flags and the daemon's `[decisions]` alike.
Values are checked one by one (an error names the threshold), the proceed tiers' order on
the whole table (a consistent table may move every tier)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, get_args

import msgspec
from msgspec import Meta, Struct

from winopt.contracts.errors import UserError, in_file
from winopt.contracts.strict import FLOAT_MAX, convert, parse_duration

Count = Annotated[int, Meta(ge=0)]
Confidence = Annotated[float, Meta(ge=0, le=1)]
Fraction = Annotated[float, Meta(gt=0, le=1)]

#: how a threshold's problem reads ("threshold NAME: " comes first)
PHRASES = {
    "integer": "expected a whole number, got {value!r}",
    "number": "expected a number, got {value!r}",
    "finite": "expected a number, got {value!r}",
    "range": "{value!r} must be in {interval}",
    "at least": "{value!r} must be >= {low}",
    "above": "{value!r} must be > {low}",
}


class Thresholds(Struct, frozen=True, kw_only=True):
    """Every number of the SPEC §4 rules, with its default. Counts are survivor counts,
    `stall_after` is seconds, confidences lie in [0, 1]; THRESHOLD_HELP says what each
    one does. Built with bad values it raises UserError("threshold NAME: ...")."""

    stall_after: Annotated[float, Meta(gt=0, le=FLOAT_MAX)] = 7200.0
    promising: Count = 1000
    halfway: Fraction = 0.5
    proceed_high: Count = 10000
    proceed_mid: Count = 1000
    proceed_min: Count = 50
    chance_factor: Annotated[float, Meta(ge=0, le=FLOAT_MAX)] = 3.0
    significance: Fraction = 1e-6
    confidence_significant: Confidence = 0.95
    confidence_significant_running: Confidence = 0.8
    confidence_stalled: Confidence = 0.3
    confidence_promising: Confidence = 0.7
    confidence_poor: Confidence = 0.4
    confidence_early: Confidence = 0.5
    confidence_high: Confidence = 0.95
    confidence_mid: Confidence = 0.80
    confidence_min: Confidence = 0.60
    confidence_few: Confidence = 0.4
    confidence_zero: Confidence = 0.9
    confidence_ended: Confidence = 0.3

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            self.check_field(name, getattr(self, name))
        if not self.proceed_min <= self.proceed_mid <= self.proceed_high:
            raise UserError(
                "thresholds: need proceed_min <= proceed_mid <= proceed_high, got "
                f"{self.proceed_min}, {self.proceed_mid}, {self.proceed_high}"
            )

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], source: str | os.PathLike[str] | None = None
    ) -> Thresholds:
        """Thresholds from a config table (the daemon's `[decisions]`, say): unknown keys
        and bad values are errors naming `source`; `stall_after` may be "2h"."""
        try:
            return cls(**{k: cls.check_field(k, v) for k, v in values.items()})
        except UserError as exc:
            raise (in_file(source, str(exc)) if source is not None else exc) from None

    @classmethod
    def check_field(cls, name: str, value: Any) -> Any:
        """One config value checked on its own (name, type, range) and returned as the
        field holds it. The order of the proceed tiers needs the whole table, so only
        `from_mapping` (or the constructor) checks that."""
        kinds = _kinds(cls)
        if name not in kinds:
            raise UserError(f"unknown threshold {name!r} (known: {', '.join(kinds)})")
        try:
            if name == "stall_after" and isinstance(value, str):
                value = parse_duration(value)
            elif isinstance(value, float) and value.is_integer() and get_args(kinds[name])[0] is int:
                value = int(value)  # a count written 2000.0
            return convert(value, kinds[name], phrases=PHRASES)
        except UserError as exc:  # a SchemaError's key is the whole value: its problem is all
            raise UserError(f"threshold {name}: {getattr(exc, 'problem', exc)}") from None

    def to_dict(self) -> dict[str, float]:
        return msgspec.structs.asdict(self)


@cache
def _kinds(cls: type[Thresholds]) -> dict[str, Any]:
    """Field name -> its type, constraints included."""
    return {f.name: f.type for f in msgspec.structs.fields(cls)}


#: what each Thresholds field does (the CLI's --help and the daemon config's docs)
THRESHOLD_HELP: dict[str, str] = {
    "stall_after": "in_progress without an update for longer than this is stalled (s, 90m, 2h)",
    "promising": "in_progress: a best above this is worth waiting for",
    "halfway": "in_progress: past this fraction of the trials, a best <= promising is retried",
    "proceed_high": "complete: a best above this proceeds with confidence-high",
    "proceed_mid": "complete: a best above this proceeds with confidence-mid",
    "proceed_min": "complete: a best of at least this proceeds with confidence-min; below, retry",
    "chance_factor": "warn 'at chance level' when 1 <= best <= this x the chance expectation",
    "significance": "a best whose Poisson tail under the chance expectation is below this is "
    "a finding: proceed (complete) or wait (in_progress), whatever the count",
    # confidence of each rule's decision
    "confidence_significant": "proceed, complete with a significant best",
    "confidence_significant_running": "wait, in_progress with a significant best",
    "confidence_stalled": "retry, in_progress and stalled",
    "confidence_promising": "wait, in_progress with a promising best",
    "confidence_poor": "retry, in_progress past halfway with a poor best",
    "confidence_early": "wait, in_progress and too early to judge",
    "confidence_high": "proceed, best > proceed-high",
    "confidence_mid": "proceed, best > proceed-mid",
    "confidence_min": "proceed, best >= proceed-min",
    "confidence_few": "retry, complete with 1 .. proceed-min - 1",
    "confidence_zero": "escalate, complete with 0 survivors",
    "confidence_ended": "retry, interrupted or failed",
}
