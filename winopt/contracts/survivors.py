"""bidirectional_survivors.json, one object per survivor (SPEC §3), as msgspec Structs.

`Survivor` is the record as winopt writes it, checked strictly; `OldSurvivor` is a record of
the old pipeline's Step 1, read as leniently as its converter v3.1 read it, with markers
(`NO_INT`, `NO_RATE`, `NO_FLOAT`) that no file value can take, so a reader can count what
was left to defaults. The optimizer writes `SURVIVOR_FIELDS` (`Survivor`'s fields, in
order); the converter decodes both.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import msgspec

from winopt.contracts.schemas import HYBRID_SUFFIX, OVERLAP_FIELDS, PRNG_TYPE_CODES, SKIP_MODES, TIME_OF_DAY

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
UINT64_MAX = 2**64 - 1

Count = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]
Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Tally = Annotated[float, msgspec.Meta(ge=0.0)]
Family = Literal[tuple(PRNG_TYPE_CODES)]  # type: ignore[valid-type]
SkipMode = Literal[tuple(SKIP_MODES)]  # type: ignore[valid-type]
TimeOfDay = Literal[TIME_OF_DAY]  # type: ignore[valid-type]


class Survivor(msgspec.Struct, gc=False, kw_only=True):
    """One object of bidirectional_survivors.json as winopt writes it (SPEC §3), as the
    strict decoder checks it; a file it refuses is read again as an old-pipeline file
    (`OldSurvivor`), which decides the error, if any.

    Every field the NPZ stores is required; `time_of_day` is optional (not stored) and
    unknown keys are ignored, so additive schema changes do not break conversion. Fields
    are declared in the order the optimizer writes them (msgspec tries the next declared
    field first), and the names are Literals (decoded to shared objects, checked inside
    the decoder)."""

    seed: Annotated[int, msgspec.Meta(ge=0)]  # <= 2**64-1 checked when filling the array
    skip: Count
    forward_match_rate: Rate
    reverse_match_rate: Rate
    score: Rate
    window_size: Count
    offset: Count
    skip_min: Count
    skip_max: Count
    skip_range: Count
    time_of_day: TimeOfDay | None = None
    trial_number: Count
    prng_type: Family
    skip_mode: SkipMode
    forward_count: Tally
    reverse_count: Tally
    bidirectional_count: Tally
    intersection_count: Tally
    intersection_ratio: Tally
    forward_only_count: Tally
    reverse_only_count: Tally
    survivor_overlap_ratio: Tally
    bidirectional_selectivity: Tally
    intersection_weight: Tally


#: the fields one trial's file repeats on every row (SPEC §3: the trial's window, number,
#: counts and overlap statistics); see _decode_one_trial
TRIAL_FIELDS = (
    "window_size",
    "offset",
    "skip_min",
    "skip_max",
    "skip_range",
    "trial_number",
    "forward_count",
    "reverse_count",
    "bidirectional_count",
    *OVERLAP_FIELDS,
)


#: default of an int field a record leaves out: outside int32, so no decoded value equals it
NO_INT = 1 << 40
#: default of a rate a record leaves out: outside [0, 1], which the decoder enforces
NO_RATE = -1.0
#: default of a float a record leaves out (JSON has no NaN, so no decoded value is NaN)
NO_FLOAT = math.nan

Int32 = Annotated[int, msgspec.Meta(ge=INT32_MIN, le=INT32_MAX)]
OldFamily = Literal[  # type: ignore[valid-type]
    (*PRNG_TYPE_CODES, *(name + HYBRID_SUFFIX for name in PRNG_TYPE_CODES))
]


class OldSurvivor(msgspec.Struct, gc=False, kw_only=True):
    """One object of an old-pipeline survivors file, as leniently as the old converter read
    it (see the section comment); the defaults are markers no file value can take, so
    `_old_arrays` can count what was defaulted. Unknown keys (sessions, time_of_day, ...)
    are ignored; `prng_base` is checked only where it is used."""

    seed: Annotated[int, msgspec.Meta(ge=0)]
    skip: Count = NO_INT
    forward_match_rate: Rate = NO_RATE
    reverse_match_rate: Rate = NO_RATE
    score: float = NO_FLOAT
    window_size: Int32 = NO_INT
    offset: Int32 = NO_INT
    skip_min: Int32 = NO_INT
    skip_max: Int32 = NO_INT
    skip_range: Any = msgspec.UNSET
    trial_number: Int32 = NO_INT
    prng_type: OldFamily | msgspec.UnsetType = msgspec.UNSET
    prng_base: Any = msgspec.UNSET
    skip_mode: SkipMode | msgspec.UnsetType = msgspec.UNSET
    forward_count: float = NO_FLOAT
    reverse_count: float = NO_FLOAT
    bidirectional_count: float = NO_FLOAT
    intersection_count: float = NO_FLOAT
    intersection_ratio: float = NO_FLOAT
    forward_only_count: float = NO_FLOAT
    reverse_only_count: float = NO_FLOAT
    survivor_overlap_ratio: float = NO_FLOAT
    bidirectional_selectivity: float = NO_FLOAT
    intersection_weight: float = NO_FLOAT
    # keys the old Step 1 wrote that the NPZ does not hold: read (unchecked) only so that
    # the duplicate-key check can count them (`_keys_filled`) without reading twice
    sessions: Any = msgspec.UNSET
    time_of_day: Any = msgspec.UNSET




#: keys of each object in bidirectional_survivors.json, in the order written
SURVIVOR_FIELDS: tuple[str, ...] = Survivor.__struct_fields__
