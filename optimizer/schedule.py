"""Which states the fast sieve visits, in what order, and when it may drop seeds.

For one direction of one window, hypothesis (seed, skip `s`) compares draw `i`
(i = 0 .. W-1, counted away from the pivot) with the output read from state `x_u`:

    forward:  u = lag + s + i(s+1)        reverse:  u = lag - 1 - i(s+1)

Many (i, s) pairs share a state (every reverse window starts at the same one, and
(i+1)(s+1) = (i'+1)(s'+1) collide often), so the schedule visits each needed state once and
compares its output with every draw that wants it.

Early rejection: a pair needing `k` matches is dead once it has missed `W - k + 1` draws, so
no seed can be dropped before every skip has had `n1 = W - k + 1` comparisons. Phase 1
visits exactly the states of draws `i < n1` (in increasing |u|, plus any later draw that
happens to share one of those states), then a checkpoint drops seeds all of whose skips
are dead; phase 2 visits the rest, with a checkpoint after every `n_skips` comparisons.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Visit:
    """Read the state `u` steps from the pivot; for each (draw value, skip rows) in
    `compare`, add 1 to those rows of the match counts where the output mod `mod` equals
    the value."""

    u: int
    compare: tuple[tuple[int, tuple[int, ...]], ...]


@dataclass(frozen=True)
class Checkpoint:
    """Drop every seed with no skip `r` where `matches[r] >= need[r]` (the matches still
    required beyond the draws left to compare)."""

    need: np.ndarray  # int64, one per skip row


@dataclass
class Schedule:
    """Everything one direction of a window does, precomputed once per sieve run."""

    steps: list[Visit | Checkpoint] = field(default_factory=list)
    n_skips: int = 0
    window: int = 0
    k: int = 0


def state_index(direction: int, lag: int, i: int, skip: int) -> int:
    """The state `u` whose output predicts draw `i` of a direction (+1 forward, -1 reverse)."""
    if direction > 0:
        return lag + skip + i * (skip + 1)
    return lag - 1 - i * (skip + 1)


def build_schedule(
    direction: int, lag: int, draws: list[int], skips: range, k: int
) -> Schedule:
    """The visit order for one direction: `draws[i]` is the history draw compared at
    distance `i` from the pivot, `k` the matches a window needs."""
    window = len(draws)
    n_skips = len(skips)
    sched = Schedule(n_skips=n_skips, window=window, k=k)
    if k > window:  # nothing can pass: visit nothing
        return sched
    pairs = defaultdict(list)  # u -> [(i, row)]
    for row, s in enumerate(skips):
        for i in range(window):
            pairs[state_index(direction, lag, i, s)].append((i, row))
    n1 = window - k + 1 if k > 0 else window  # k = 0: everything passes, no rejection
    phase1 = sorted({u for u, ps in pairs.items() if any(i < n1 for i, _ in ps)}, key=abs)
    phase2 = sorted(set(pairs) - set(phase1), key=abs)
    done = np.zeros(n_skips, dtype=np.int64)
    for u in phase1:
        sched.steps.append(_visit(u, pairs[u], draws, done))
    if k == 0 or not phase2:
        return sched
    sched.steps.append(Checkpoint(need=k - (window - done)))
    since = 0
    for u in phase2:
        sched.steps.append(_visit(u, pairs[u], draws, done))
        since += len(pairs[u])
        if since >= n_skips:
            sched.steps.append(Checkpoint(need=k - (window - done)))
            since = 0
    return sched


def _visit(u: int, pairs: list[tuple[int, int]], draws: list[int], done: np.ndarray) -> Visit:
    """A `Visit` of state `u` for `pairs` (draw index, skip row); counts them in `done`."""
    by_value: dict[int, list[int]] = defaultdict(list)
    for i, row in pairs:
        by_value[draws[i]].append(row)
        done[row] += 1
    return Visit(u=u, compare=tuple((v, tuple(rows)) for v, rows in sorted(by_value.items())))
