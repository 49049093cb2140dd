"""Which states the fast sieve visits, in what order, and when it may drop seeds.

For one half of one window, hypothesis (seed, skip `s`) compares draw `i` of the half
(history draw `j = first + i`, i = 0 .. W-1) with the output read from state

    u = lag + s + j(s+1)

steps after the seeded state `x_0` (SPEC §1: draw `j` is `y_{s + j(s+1)}`, and
`y_t = g(x_{t+lag})`). Many (j, s) pairs share a state ((j+1)(s+1) = (j'+1)(s'+1)), so
the schedule visits each needed state once, in ascending `u` (states only move forwards),
and compares its output with every draw that wants it.

Early rejection: a pair needing `k` matches is dead once it has missed `W - k + 1` draws, so
no seed can be dropped before every skip has had `n1 = W - k + 1` comparisons. Phase 1
visits exactly such states (the nearest ones, or the fewest, see `select`, plus any later
draw that happens to share one of them), then a checkpoint drops seeds all of whose skips
are dead; phase 2 visits the rest, with a checkpoint after every `n_skips` comparisons.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Visit:
    """Read the state `u` steps after the seeded one; for each (draw value, skip rows) in
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


def state_index(lag: int, j: int, skip: int) -> int:
    """The state `u` whose output predicts history draw `j` under skip `skip`."""
    return lag + skip + j * (skip + 1)


def build_schedule(
    lag: int, first: int, draws: list[int], skips: range, k: int, *, select: str = "first"
) -> Schedule:
    """The visit order for one half of a window: `draws[i]` is history draw `first + i`,
    `k` the matches a half needs.

    `select` picks phase 1's states: "first" takes each skip's first draws (the shortest
    walk, for generators that must step); "cover" greedily takes states shared by many
    skips (fewest visits, for generators where every move costs the same)."""
    window = len(draws)
    n_skips = len(skips)
    sched = Schedule(n_skips=n_skips, window=window, k=k)
    if k > window:  # nothing can pass: visit nothing
        return sched
    pairs = defaultdict(list)  # u -> [(i, row)]
    for row, s in enumerate(skips):
        for i in range(window):
            pairs[state_index(lag, first + i, s)].append((i, row))
    n1 = window - k + 1 if k > 0 else window  # k = 0: everything passes, no rejection
    chosen = _cover(pairs, n_skips, n1) if select == "cover" else _first(pairs, n1)
    phase1 = sorted(chosen)
    phase2 = sorted(set(pairs) - set(chosen))
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

    heap = [(-len(ps), u) for u, ps in pairs.items()]  # u is also the distance from x_0
    heapq.heapify(heap)
    chosen: set[int] = set()
    while heap and max(need) > 0:
        negative, u = heapq.heappop(heap)
        gain = useful(u)
        if gain == 0:
            continue
        if gain < -negative:  # stale priority: re-queue with the current one
            heapq.heappush(heap, (-gain, u))
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
