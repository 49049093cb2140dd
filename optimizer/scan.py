"""The fast sieve's hot loop: run one direction's `Schedule` over a chunk of seeds.

All seeds of the chunk move together through the scheduled states (one array operation per
state, never a Python loop over seeds); match counts live in a (skips x seeds) matrix of
small integers. At each checkpoint the seeds that can no longer pass for any skip are
compacted away, so the later, sparser part of the schedule runs on the few that remain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from winopt.optimizer.jumps import Stepper
from winopt.optimizer.schedule import Checkpoint, Schedule

Array = Any


@dataclass
class Scanned:
    """What one direction leaves: the chunk positions of the seeds still in the running
    (ascending) and their full match counts, one row per skip."""

    positions: Array  # int64, (n,)
    matches: Array  # uint8 / uint16, (n_skips, n)


def count_dtype(window: int) -> Any:
    """The smallest unsigned type that holds a match count up to `window`."""
    return np.uint8 if window < 256 else np.uint16


def scan(stepper: Stepper, schedule: Schedule, x0: Array, mod: int) -> Scanned:
    """Match counts of every (seed, skip) for one direction; seeds dropped at checkpoints
    are absent from the result (none of their skips could reach `schedule.k`)."""
    xp = stepper.xp
    n = int(x0.shape[0])
    positions = xp.arange(n, dtype=xp.int64)
    matches = xp.zeros((schedule.n_skips, n), dtype=count_dtype(schedule.window))
    base, x, u = x0, x0.copy(), 0
    buf, eq = stepper.buffers(n), xp.empty(n, dtype=bool)
    for step in schedule.steps:
        if isinstance(step, Checkpoint):
            keep = _survivors(xp, matches, step)
            if keep is None:
                continue
            positions, base, x, matches = positions[keep], base[keep], x[keep], matches[:, keep]
            buf, eq = stepper.buffers(x.shape[0]), xp.empty(x.shape[0], dtype=bool)
            if x.shape[0] == 0:
                break
            continue
        gap = step.u - u
        if gap < 0 or stepper.cost(step.u) + 1.0 < stepper.cost(gap):  # start again from x_0
            xp.copyto(x, base)
            gap = step.u
        stepper.advance(x, gap, buf)
        u = step.u
        residues = stepper.residues(x, mod, buf)
        for value, rows in step.compare:
            xp.equal(residues, stepper.V(value), out=eq)
            _add_rows(xp, matches, rows, eq.view(xp.uint8))  # True/False as 1/0
    return Scanned(positions=positions, matches=matches)


def _add_rows(xp: Any, matches: Array, rows: tuple[int, ...], eq: Array) -> None:
    """matches[row] += eq for each row: one broadcast add for a run of rows."""
    first, last = rows[0], rows[-1]
    if last - first + 1 == len(rows):
        block = matches[first : last + 1]
        xp.add(block, eq, out=block)
        return
    for row in rows:
        xp.add(matches[row], eq, out=matches[row])


def _survivors(xp: Any, matches: Array, checkpoint: Checkpoint) -> Array | None:
    """Indices of the seeds with some skip still able to pass; None when that is all."""
    need = checkpoint.need
    if need.min() <= 0 or matches.shape[1] == 0:
        return None
    alive = (matches >= xp.asarray(need, dtype=matches.dtype)[:, None]).any(axis=0)
    keep = xp.flatnonzero(alive)
    if int(keep.shape[0]) == matches.shape[1]:
        return None
    return keep
