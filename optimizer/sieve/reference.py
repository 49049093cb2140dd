"""The deliberately simple sieve: the definition of SPEC §1, executed literally.

For every skip separately, every seed's generator is stepped one output at a time (the
plain `generators` step, no jump-ahead) from its seeded state to the last window draw,
and every window draw is compared; rates are `matches / W` compared with the thresholds as
floats; nothing is rejected early. It is vectorised over seeds only so that the tests and
`bench/sieve.py` finish. It exists to be obviously right, so that `sieve.run_sieve` can be
held equal to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from winopt.optimizer.sieve.chance import chance_level
from winopt.optimizer.sieve.generators import Family, family
from winopt.optimizer.sieve.core import SieveParams, SieveResult, Window, prepare


def half_matches(fam: Family, x0: Any, skip: int, first: int, draws: list[int], mod: int,
                 n: int) -> np.ndarray:  # fmt: skip
    """Per seed, how many of `draws` (history draws first, first+1, ...) equal
    y_{skip + j(skip+1)} mod `mod`, j the draw's history index: the generator is stepped
    one output at a time from the seeded states `x0` of `n` seeds (`generators` never
    modifies a state it is given)."""
    matches = np.zeros(n, dtype=np.int64)
    x = x0
    stride = skip + 1
    for t in range((first + len(draws)) * stride):  # outputs y_0 .. y_{last needed}
        if fam.lag == 1:  # y_t = g(x_{t+1})
            x = fam.step(x)
            y = fam.output(x)
        else:  # y_t = g(x_t)
            y = fam.output(x)
            x = fam.step(x)
        j, rest = divmod(t - skip, stride)
        if rest == 0 and j >= first:
            matches += (y % mod) == draws[j - first]
    return matches


def run_reference(draws: np.ndarray, params: SieveParams, *, chunk_size: int = 1 << 14) -> SieveResult:
    """The `SieveResult` of SPEC §1 for `params`, computed the slow, obvious way."""
    window = prepare(draws, params)
    p = window.params
    parts: list[tuple[np.ndarray, ...]] = []
    forward_count = reverse_count = both_count = 0
    for start in range(p.seed_start, p.seed_start + p.seed_count, chunk_size):
        size = min(chunk_size, p.seed_start + p.seed_count - start)
        seeds = np.arange(size, dtype=np.uint64) + np.uint64(start)
        f, r, best, has = _chunk(window, seeds)
        f_any = (f / p.window_size >= p.forward_threshold).any(axis=0)
        r_any = (r / p.window_size >= p.reverse_threshold).any(axis=0)
        forward_count += int(f_any.sum())
        reverse_count += int(r_any.sum())
        both_count += int((f_any & r_any).sum())
        cols = np.flatnonzero(has)
        rows = best[cols]
        parts.append((seeds[cols], rows + p.skip_min, f[rows, cols] / p.window_size,
                      r[rows, cols] / p.window_size))
    seeds, skips, fr, rr = (np.concatenate(a) for a in zip(*parts)) if parts else (
        np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    expected = chance_level(p.window_size, window.k_forward, window.k_reverse, p.mod,
                            len(window.skips), p.seed_count)
    return SieveResult(
        params=p, seeds=seeds.astype(np.uint64), skips=skips.astype(np.int64),
        forward_rate=fr.astype(np.float64), reverse_rate=rr.astype(np.float64),
        forward_count=forward_count, reverse_count=reverse_count,
        bidirectional_count=int(seeds.shape[0]),
        expected_chance_bidirectional=expected.bidirectional, notes=list(window.notes),
        forward_reverse_count=both_count,
    )


def _chunk(window: Window, seeds: np.ndarray) -> tuple[np.ndarray, ...]:
    """Full match counts (skips x seeds) both ways, each seed's best skip row, and which
    seeds pass both directions for some one skip."""
    p = window.params
    fam = family(p.prng)
    x0 = fam.seed(seeds.astype(np.uint64))
    n = seeds.shape[0]
    skips = list(window.skips)
    f = np.stack([half_matches(fam, x0, s, window.pivot, window.forward_draws, p.mod, n) for s in skips])
    r = np.stack([half_matches(fam, x0, s, p.offset, window.reverse_draws, p.mod, n) for s in skips])
    both = (f / p.window_size >= p.forward_threshold) & (r / p.window_size >= p.reverse_threshold)
    best = np.argmax(np.where(both, f + r, -1), axis=0)
    return f, r, best, both.any(axis=0)
