"""Chance level (SPEC §1): the expected survivor counts for random draws agree with what
the sieve really counts on random histories, and thresholds become match counts with
exactly the comparison the reference sieve uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from winopt.optimizer.sieve.chance import binomial_tail, chance_level, min_matches
from winopt.optimizer.sieve.core import SieveParams, run_sieve


@given(threshold=st.floats(0, 1), window=st.integers(1, 60))
def test_min_matches_is_the_float_comparison(threshold: float, window: int) -> None:
    k = min_matches(threshold, window)
    assert all((m / window >= threshold) == (m >= k) for m in range(window + 1))


def test_min_matches_rounding_cases() -> None:
    assert min_matches(0.3, 10) == 3  # 3/10 == 0.3 exactly as floats
    assert min_matches(0.1 * 3, 10) == 4  # 0.30000000000000004 > 3/10
    assert min_matches(0.0, 7) == 0 and min_matches(1.0, 7) == 7
    assert min_matches(0.15, 2) == 1 and min_matches(0.6, 50) == 30


def test_binomial_tail() -> None:
    assert binomial_tail(8, 0, 0.001) == 1.0 and binomial_tail(8, 9, 0.5) == 0.0
    assert binomial_tail(4, 4, 0.1) == pytest.approx(1e-4, rel=1e-12)
    assert binomial_tail(3, 1, 0.5) == pytest.approx(7 / 8, rel=1e-12)
    assert binomial_tail(10, 3, 0.2) + sum(
        math.comb(10, j) * 0.2**j * 0.8 ** (10 - j) for j in range(3)
    ) == pytest.approx(1.0, rel=1e-12)


def test_chance_level_limits() -> None:
    one = chance_level(8, 4, 5, 1000, 1, 10**6)
    pf, pr = binomial_tail(8, 4, 1e-3), binomial_tail(8, 5, 1e-3)
    assert one.bidirectional == pytest.approx(1e6 * pf * pr, rel=1e-9)
    assert one.forward == pytest.approx(1e6 * pf, rel=1e-9)
    assert one.reverse == pytest.approx(1e6 * pr, rel=1e-9)
    many = chance_level(8, 4, 5, 1000, 51, 10**6)
    assert many.bidirectional == pytest.approx(51 * one.bidirectional, rel=1e-3)  # n*p << 1
    assert chance_level(8, 4, 5, 1000, 51, 0).bidirectional == 0.0
    assert chance_level(8, 0, 0, 1000, 3, 7).bidirectional == 7.0


@pytest.mark.parametrize(
    ("mod", "window", "threshold", "skip_max"),
    [(10, 4, 0.5, 3), (6, 5, 0.6, 7), (20, 3, 0.6, 9)],
)
def test_chance_level_agrees_with_monte_carlo(mod: int, window: int, threshold: float, skip_max: int) -> None:
    """Random histories through the real sieve: forward, reverse and bidirectional counts
    (hundreds to thousands per history) average to the expectation within 4 standard
    errors, measured across the histories."""
    histories, seeds = 12, 20_000
    counts = []
    for h in range(histories):
        draws = np.random.default_rng(1000 + h).integers(0, mod, 2 * window)
        params = SieveParams("xorshift32", window, 0, 0, skip_max, threshold, threshold,
                             h * 10**6, seeds, mod)  # fmt: skip
        r = run_sieve(draws, params)
        counts.append((r.forward_count, r.reverse_count, r.bidirectional_count))
    k = min_matches(threshold, window)
    want = chance_level(window, k, k, mod, skip_max + 1, seeds)
    assert r.expected_chance_bidirectional == want.bidirectional
    got = np.array(counts, dtype=float)
    mean, sem = got.mean(axis=0), got.std(axis=0, ddof=1) / math.sqrt(histories)
    for name, observed, error, expected in zip(
        ("forward", "reverse", "bidirectional"), mean, sem, (want.forward, want.reverse, want.bidirectional)
    ):
        assert abs(observed - expected) <= 4 * error + 1.0, (name, observed, error, expected)
