"""The survivors file's overlap statistics and skip_range (SPEC §3), checked against sets of
seeds built one seed at a time from the reference's match counts, and on hand-made counts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
import pytest

from winopt.contracts.publish import dump_json
from winopt.contracts.schemas import OVERLAP_FIELDS
from winopt.contracts.survivors import SURVIVOR_FIELDS
from winopt.optimizer.sieve.generators import family
from winopt.optimizer.sieve.reference import half_matches, run_reference
from winopt.optimizer.sieve.core import SieveParams, SieveResult, prepare, run_sieve
from winopt.optimizer.survivors import overlap_statistics, survivor_records

#: small draws (mod 10) and a 3-of-6 threshold: a few percent of seeds pass each way, so
#: F, R, F ∩ R and B are all non-empty and all different
PARAMS = SieveParams(prng="java_lcg", window_size=6, offset=9, skip_min=1, skip_max=4,
                     forward_threshold=0.5, reverse_threshold=0.5, seed_start=5000,
                     seed_count=6000, mod=10)


def result_of(f: int, r: int, both: int, b: int) -> SieveResult:
    """A SieveResult with only the four counts the statistics use."""
    empty = np.zeros(0)
    return SieveResult(params=PARAMS, seeds=empty.astype(np.uint64), skips=empty.astype(np.int64),
                       forward_rate=empty, reverse_rate=empty, forward_count=f, reverse_count=r,
                       bidirectional_count=b, expected_chance_bidirectional=0.0,
                       forward_reverse_count=both)


def from_sets(forward: set[int], reverse: set[int], bidirectional: set[int]) -> dict[str, float]:
    """The old pipeline's definitions, written out on explicit seed sets."""
    union, f, r = forward | reverse, len(forward), len(reverse)
    b = len(bidirectional)
    return {
        "intersection_count": b,
        "intersection_ratio": b / len(union) if union else 0.0,
        "forward_only_count": len(forward - reverse),
        "reverse_only_count": len(reverse - forward),
        "survivor_overlap_ratio": b / f if f else 0.0,
        "bidirectional_selectivity": f / r if r else 0.0,
        "intersection_weight": b / (f + r) if f + r else 0.0,
    }


def seed_sets(draws: np.ndarray, params: SieveParams) -> tuple[set[int], set[int], set[int]]:
    """F, R, B of SPEC §3, one seed and one skip at a time: F the seeds some skip passes
    forward, R reverse, B the seeds one skip passes both ways."""
    window = prepare(draws, params)
    p, fam = window.params, family(params.prng)
    seeds = np.arange(p.seed_start, p.seed_start + p.seed_count, dtype=np.uint64)
    x0 = fam.seed(seeds)
    forward: set[int] = set()
    reverse: set[int] = set()
    both: set[int] = set()
    for skip in window.skips:
        f = half_matches(fam, x0, skip, window.pivot, window.forward_draws, p.mod, len(seeds))
        r = half_matches(fam, x0, skip, p.offset, window.reverse_draws, p.mod, len(seeds))
        for seed, fm, rm in zip(seeds.tolist(), f.tolist(), r.tolist(), strict=True):
            f_ok, r_ok = fm / p.window_size >= p.forward_threshold, rm / p.window_size >= p.reverse_threshold
            if f_ok:
                forward.add(seed)
            if r_ok:
                reverse.add(seed)
            if f_ok and r_ok:
                both.add(seed)
    return forward, reverse, both


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    return np.random.default_rng(11).integers(0, PARAMS.mod, size=40)


def test_overlap_statistics_equal_the_set_definitions(draws: np.ndarray) -> None:
    forward, reverse, both = seed_sets(draws, PARAMS)
    # the case is informative: every set non-empty and B strictly inside F ∩ R inside F, R
    assert both and both < (forward & reverse) and (forward & reverse) < forward
    assert (forward & reverse) < reverse
    expected = from_sets(forward, reverse, both)
    for result in (run_sieve(draws, PARAMS, device="cpu"), run_reference(draws, PARAMS)):
        assert (result.forward_count, result.reverse_count, result.bidirectional_count) == (
            len(forward), len(reverse), len(both))
        assert result.forward_reverse_count == len(forward & reverse)
        stats = overlap_statistics(result)
        assert tuple(stats) == OVERLAP_FIELDS
        assert stats == pytest.approx(expected, rel=1e-12)
        assert all(type(stats[k]) is int for k in ("intersection_count", "forward_only_count",
                                                   "reverse_only_count"))
        assert all(type(v) is float for k, v in stats.items() if not k.endswith("_count"))


def test_survivor_records_carry_them_and_the_old_skip_range(draws: np.ndarray) -> None:
    result = run_sieve(draws, PARAMS, device="cpu")
    records = orjson.loads(dump_json(survivor_records(result, time_of_day="all", trial_number=3)))
    assert records and len(records) == result.bidirectional_count
    expected = overlap_statistics(result)
    for record in records:
        assert tuple(record) == SURVIVOR_FIELDS
        assert record["skip_range"] == PARAMS.skip_max - PARAMS.skip_min == 3  # not + 1
        assert {k: record[k] for k in OVERLAP_FIELDS} == expected
        assert list(record)[SURVIVOR_FIELDS.index("bidirectional_count") + 1] == OVERLAP_FIELDS[0]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((10, 6, 4, 3), (3, 3 / 12, 6, 2, 3 / 10, 10 / 6, 3 / 16)),
        ((0, 0, 0, 0), (0, 0.0, 0, 0, 0.0, 0.0, 0.0)),  # an empty trial: no NaN, no inf
        ((5, 0, 0, 0), (0, 0.0, 5, 0, 0.0, 0.0, 0.0)),  # |R| = 0: selectivity 0, not inf
        ((0, 7, 0, 0), (0, 0.0, 0, 7, 0.0, 0.0, 0.0)),
        ((8, 8, 8, 8), (8, 1.0, 0, 0, 1.0, 1.0, 0.5)),  # every seed bidirectional
    ],
)
def test_overlap_formulas_on_hand_made_counts(counts: tuple[int, int, int, int],
                                              expected: tuple[float, ...]) -> None:
    f, r, both, b = counts
    stats = overlap_statistics(result_of(f, r, both, b))
    assert stats == dict(zip(OVERLAP_FIELDS, expected, strict=True))
    assert [type(v) for v in stats.values()] == [int, float, int, int, float, float, float]


def test_numpy_counts_are_written_as_plain_numbers() -> None:
    """A sieve on another device may hand over NumPy integers: the file still gets ints."""
    result = replace(result_of(10, 6, 4, 3), forward_count=np.int64(10), reverse_count=np.int64(6),
                     forward_reverse_count=np.int64(4), bidirectional_count=np.int64(3))
    stats = overlap_statistics(result)
    assert orjson.loads(orjson.dumps(stats)) == stats
    assert type(stats["forward_only_count"]) is int and type(stats["intersection_ratio"]) is float
