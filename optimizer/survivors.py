"""The records of bidirectional_survivors.json (SPEC §3) from one sieve result.

One object per bidirectional survivor, sorted by seed, with the keys of
`SURVIVOR_FIELDS` in that order and plain Python ints, floats and strings (so any JSON
encoder, and `json.dumps` in a test, writes them). Per-survivor values come from NumPy
columns converted once with `tolist()`; the fields every record shares are built once
and spliced in, so 100k survivors take a fraction of a second.

Field meanings that the spec leaves implicit:
- `score` is the mean of the forward and reverse match rates;
- `skip_range` is `skip_max - skip_min`, as the old pipeline wrote it (one less than the
  number of skips tried, both ends being inclusive): the rigs' Step 2.5 reads it so;
- `offset` is the offset the sieve used (after clamping), not the one asked for;
- `forward_count`, `reverse_count`, `bidirectional_count` are the whole sieve's counts,
  repeated on every record (the rigs' Step 2.5 reads them per row), and so are the seven
  overlap statistics after them (`overlap_statistics`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from winopt.contracts.schemas import OVERLAP_FIELDS
from winopt.contracts.survivors import SURVIVOR_FIELDS
from winopt.optimizer.sieve.core import SieveResult

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
        "skip_range": int(params.skip_max) - int(params.skip_min),
        "time_of_day": str(time_of_day),
        "trial_number": int(trial_number),
        "prng_type": str(params.prng),
        "skip_mode": SKIP_MODE,
        "forward_count": int(result.forward_count),
        "reverse_count": int(result.reverse_count),
        "bidirectional_count": int(result.bidirectional_count),
        **overlap_statistics(result),
    }
    assert tuple(shared) == SURVIVOR_FIELDS[len(_PER_SURVIVOR) :], (
        "schema drifted from SURVIVOR_FIELDS"
    )
    return shared


def overlap_statistics(result: SieveResult) -> dict[str, int | float]:
    """The trial's seven overlap statistics (SPEC §3), keys in `OVERLAP_FIELDS` order.

    They are the old pipeline's definitions over the trial's seed sets: F (some skip passes
    forward), R (some skip passes reverse) and B (one skip passes both), so B lies within
    F ∩ R. The sieve counts |F|, |R|, |B| and |F ∩ R| (`forward_reverse_count`), which is
    all they need: |F ∪ R| = |F| + |R| − |F ∩ R|, |F − R| = |F| − |F ∩ R|. Counts are ints,
    ratios floats; a ratio whose denominator is 0 is 0.0 (SPEC §3: an empty trial must not
    put NaN or infinity into the survivors file or the NPZ).
    """
    f, r = int(result.forward_count), int(result.reverse_count)
    b, both = int(result.bidirectional_count), int(result.forward_reverse_count)
    stats: dict[str, int | float] = {
        "intersection_count": b,
        "intersection_ratio": _ratio(b, f + r - both),
        "forward_only_count": f - both,
        "reverse_only_count": r - both,
        "survivor_overlap_ratio": _ratio(b, f),
        "bidirectional_selectivity": _ratio(f, r),
        "intersection_weight": _ratio(b, f + r),
    }
    assert tuple(stats) == OVERLAP_FIELDS, "schema drifted from OVERLAP_FIELDS"
    return stats


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator as a float, 0.0 for a zero denominator."""
    return numerator / denominator if denominator else 0.0
