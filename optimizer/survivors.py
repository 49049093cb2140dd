"""The records of bidirectional_survivors.json (SPEC §3) from one sieve result.

One object per bidirectional survivor, sorted by seed, with the keys of
`SURVIVOR_FIELDS` in that order and plain Python ints, floats and strings (so any JSON
encoder, and `json.dumps` in a test, writes them). Per-survivor values come from NumPy
columns converted once with `tolist()`; the fields every record shares are built once
and spliced in, so 100k survivors take a fraction of a second.

Field meanings that the spec leaves implicit:
- `score` is the mean of the forward and reverse match rates;
- `skip_range` is the number of skips tried, `skip_max - skip_min + 1` (both inclusive);
- `offset` is the offset the sieve used (after clamping), not the one asked for;
- `forward_count`, `reverse_count`, `bidirectional_count` are the whole sieve's counts,
  repeated on every record (the rigs' Step 2.5 reads them per row).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from winopt.contracts.schemas import SURVIVOR_FIELDS
from winopt.optimizer.sieve import SieveResult

SKIP_MODE = "constant"
_PER_SURVIVOR = SURVIVOR_FIELDS[:5]


def survivor_records(
    result: SieveResult, *, time_of_day: str, trial_number: int
) -> list[dict[str, Any]]:
    """The SPEC §3 objects of `result`'s bidirectional survivors, sorted by seed."""
    order = np.argsort(result.seeds, kind="stable")
    forward = np.asarray(result.forward_rate, dtype=np.float64)[order]
    reverse = np.asarray(result.reverse_rate, dtype=np.float64)[order]
    columns = (
        np.asarray(result.seeds, dtype=np.uint64)[order].tolist(),
        np.asarray(result.skips, dtype=np.int64)[order].tolist(),
        forward.tolist(),
        reverse.tolist(),
        ((forward + reverse) / 2).tolist(),
    )
    shared = shared_fields(result, time_of_day=time_of_day, trial_number=trial_number)
    return [
        {
            "seed": seed,
            "skip": skip,
            "forward_match_rate": f,
            "reverse_match_rate": r,
            "score": score,
            **shared,
        }
        for seed, skip, f, r, score in zip(*columns, strict=True)
    ]


def shared_fields(result: SieveResult, *, time_of_day: str, trial_number: int) -> dict[str, Any]:
    """The fields after the first five, equal on every record of one sieve run, in order."""
    params = result.params
    shared = {
        "window_size": int(params.window_size),
        "offset": int(params.offset),
        "skip_min": int(params.skip_min),
        "skip_max": int(params.skip_max),
        "skip_range": int(params.skip_max) - int(params.skip_min) + 1,
        "time_of_day": str(time_of_day),
        "trial_number": int(trial_number),
        "prng_type": str(params.prng),
        "skip_mode": SKIP_MODE,
        "forward_count": int(result.forward_count),
        "reverse_count": int(result.reverse_count),
        "bidirectional_count": int(result.bidirectional_count),
    }
    assert tuple(shared) == SURVIVOR_FIELDS[len(_PER_SURVIVOR) :], (
        "schema drifted from SURVIVOR_FIELDS"
    )
    return shared
