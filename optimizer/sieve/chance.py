"""What uniformly random draws would give: the chance level of a sieve (SPEC §1).

A prediction matches a uniformly random draw with probability exactly `q = 1/mod`, so a
window of W comparisons has a binomial number of matches and passes with the binomial tail
`P(Bin(W, q) >= k)`, `k` the minimum match count for the threshold (`min_matches`).

Skips are independent: under the hypothesis of SPEC §1 draw `j` is compared, for skip `s`,
with the output `y_{s + j(s+1)}`, a different output for every skip, so a seed's windows for
two skips share no comparison (two predictions of one draw coincide with probability
`1/mod`, as for random predictions). Two comparisons that share an output compare it with
two different draws, which for random draws are independent. So a seed passes some skip
with probability `1 - (1 - p)^n_skips`, `p` the per-skip probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def min_matches(threshold: float, window: int) -> int:
    """The least match count `m` with `m / window >= threshold` (`window + 1` if none).

    Computed with the very float comparison the reference sieve applies to rates, so the
    fast sieve's integer test `matches >= k` can never round differently (0.3 * 10 ...)."""
    for m in range(window + 1):
        if m / window >= threshold:
            return m
    return window + 1


def binomial_tail(n: int, k: int, p: float) -> float:
    """`P(Bin(n, p) >= k)`, summed exactly term by term (n is a window size: small)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return math.fsum(math.comb(n, j) * p**j * (1.0 - p) ** (n - j) for j in range(k, n + 1))


def _any_of(p: float, n: int) -> float:
    """`1 - (1 - p)^n` without cancellation for tiny `p`."""
    if p >= 1.0:
        return 1.0
    return -math.expm1(n * math.log1p(-p))


@dataclass(frozen=True)
class ChanceLevel:
    """Expected survivor counts for uniformly random draws (not necessarily integers)."""

    forward: float
    reverse: float
    bidirectional: float


def chance_level(
    window: int, k_forward: int, k_reverse: int, mod: int, n_skips: int, seed_count: int
) -> ChanceLevel:
    """Expected forward, reverse and bidirectional survivor counts over `seed_count` seeds
    and `n_skips` skips for windows of `window` draws needing `k_*` matches."""
    q = 1.0 / mod
    pf = binomial_tail(window, k_forward, q)
    pr = binomial_tail(window, k_reverse, q)
    return ChanceLevel(
        forward=seed_count * _any_of(pf, n_skips),
        reverse=seed_count * _any_of(pr, n_skips),
        bidirectional=seed_count * _any_of(pf * pr, n_skips),
    )
