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

from winopt.optimizer.sieve.jumps import Stepper
from winopt.optimizer.sieve.parallel import RunCancel
from winopt.optimizer.sieve.schedule import Checkpoint, Schedule

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


def scan(stepper: Stepper, schedule: Schedule, x0: Array, mod: int,
         cancel: RunCancel | None = None) -> Scanned:  # fmt: skip
    """Match counts of every (seed, skip) for one direction; seeds dropped at checkpoints
    are absent from the result (none of their skips could reach `schedule.k`). `cancel`
    is checked at every visit: an abandoned sieve's chunk stops there."""
    xp = stepper.xp
    n = int(x0.shape[-1])
    positions = xp.arange(n, dtype=xp.int64)
    matches = xp.zeros((schedule.n_skips, n), dtype=count_dtype(schedule.window))
    base, x, u = x0, stepper.copy(x0), 0
    buf, eq = stepper.buffers(n), xp.empty(n, dtype=bool)
    for step in schedule.steps:
        if isinstance(step, Checkpoint):
            keep = _survivors(xp, matches, step)
            if keep is None:
                continue
            positions, matches = positions[keep], matches[:, keep]
            base, x = stepper.take(base, keep), stepper.take(x, keep)
            n = int(positions.shape[0])
            buf, eq = stepper.buffers(n), xp.empty(n, dtype=bool)
            if n == 0:
                break
            continue
        if cancel is not None:
            cancel.check()
        x = stepper.move(x, base, u, step.u, buf)
        u = step.u
        residues = stepper.residues(x, mod, buf, u)
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
