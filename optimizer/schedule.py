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

import heapq
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
    direction: int,
    lag: int,
    draws: list[int],
    skips: range,
    k: int,
    *,
    select: str = "first",
    order: str = "outward",
) -> Schedule:
    """The visit order for one direction: `draws[i]` is the history draw compared at
    distance `i` from the pivot, `k` the matches a window needs.

    `select` picks phase 1's states: "first" takes the draws nearest the pivot (the
    shortest walk, for generators that must step); "cover" greedily takes states shared
    by many skips (fewest visits, for generators where every move costs the same).
    `order` walks each phase "outward" from the pivot or in "ascending" u (for a
    generator whose forward step is cheaper than its inverse step and whose long moves
    are cheap, the reverse side is best walked from its far end towards the pivot)."""
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
    chosen = _cover(pairs, n_skips, n1) if select == "cover" else _first(pairs, n1)
    key = abs if order == "outward" else None
    phase1 = sorted(chosen, key=key)
    phase2 = sorted(set(pairs) - set(chosen), key=key)
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


def _first(pairs: dict[int, list[tuple[int, int]]], n1: int) -> set[int]:
    """The states of draws 0 .. n1-1 of every skip."""
    return {u for u, ps in pairs.items() if any(i < n1 for i, _ in ps)}


def _cover(pairs: dict[int, list[tuple[int, int]]], n_skips: int, n1: int) -> set[int]:
    """Few states that give every skip row at least `n1` comparisons: greedy set
    multicover, most still-useful pairs first (lazy max-heap), nearer states on ties."""
    need = [n1] * n_skips

    def useful(u: int) -> int:
        return sum(1 for _, row in pairs[u] if need[row] > 0)

    heap = [(-len(ps), abs(u), u) for u, ps in pairs.items()]
    heapq.heapify(heap)
    chosen: set[int] = set()
    while heap and max(need) > 0:
        negative, distance, u = heapq.heappop(heap)
        gain = useful(u)
        if gain == 0:
            continue
        if gain < -negative:  # stale priority: re-queue with the current one
            heapq.heappush(heap, (-gain, distance, u))
            continue
        chosen.add(u)
        for _, row in pairs[u]:
            need[row] -= 1
    return chosen


def _visit(u: int, pairs: list[tuple[int, int]], draws: list[int], done: np.ndarray) -> Visit:
    """A `Visit` of state `u` for `pairs` (draw index, skip row); counts them in `done`."""
    by_value: dict[int, list[int]] = defaultdict(list)
    for i, row in pairs:
        by_value[draws[i]].append(row)
        done[row] += 1
    return Visit(u=u, compare=tuple((v, tuple(rows)) for v, rows in sorted(by_value.items())))
