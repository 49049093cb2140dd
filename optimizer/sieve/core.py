"""The bidirectional sieve of SPEC §1: which seeds, with one constant skip, reproduce a
window of the draw history both after and before the pivot.

The hypothesis is the rigs' (SPEC §1): the seed is the generator's seed, its state before
the first draw of the selected history, and draw `t` is `y_{s + t(s+1)}`. So both halves
of the window are predicted forwards from the seed: the reverse half is simply the W draws
before the pivot, the forward half the W draws from it on.

`run_sieve` is the fast implementation: seeds in fixed-size chunks (memory does not grow
with `seed_count`), each chunk moved through a precomputed schedule of states with
jump-ahead (`jumps`), early rejection and compaction (`schedule`, `scan`). The same code
runs on NumPy or CuPy (`xp`). `reference.run_reference` computes the same `SieveResult` the
slow, obvious way; the tests hold the two equal.

Definitions (SPEC §1): the window spans history draws [o, o+2W), the pivot is p = o+W.
A rate passes when `matches / W >= threshold`; this module turns each threshold into the
least passing match count with that very comparison (`chance.min_matches`), so integer
tests here and float tests in the reference cannot disagree on rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from winopt.contracts.errors import UserError
from winopt.optimizer.sieve.chance import chance_level, min_matches
from winopt.optimizer.sieve.generators import FAMILIES, check_seed_range, family
from winopt.optimizer.sieve.steppers import stepper as make_stepper
from winopt.optimizer.sieve.parallel import RunCancel, new_run, process_map, worker_count
from winopt.optimizer.sieve.schedule import build_schedule
from winopt.optimizer.sieve.scan import Scanned, scan
from winopt.optimizer.sieve.xp import array_module, is_gpu, to_host

#: seeds per chunk. A chunk holds a few state-sized arrays plus one byte of match count per
#: (seed, skip) and direction: 32k seeds keep the arrays in a CPU's L2 cache; a GPU needs
#: many more to hide kernel launches (1M seeds x 251 skips: about 0.5 GB of counts).
CPU_CHUNK = 1 << 15
GPU_CHUNK = 1 << 20


@dataclass(frozen=True)
class SieveParams:
    """One sieve run: family, window, skip range, thresholds and seed range (SPEC §1)."""

    prng: str
    window_size: int
    offset: int
    skip_min: int
    skip_max: int
    forward_threshold: float
    reverse_threshold: float
    seed_start: int
    seed_count: int
    mod: int = 1000


@dataclass
class SieveResult:
    """Bidirectional survivors (sorted by seed) with their best skip and both rates."""

    params: SieveParams  # as used (offset possibly clamped)
    seeds: np.ndarray  # uint64
    skips: np.ndarray  # int64
    forward_rate: np.ndarray  # float64
    reverse_rate: np.ndarray  # float64
    forward_count: int  # |F|: seeds with some skip passing forward
    reverse_count: int  # |R|: seeds with some skip passing reverse
    bidirectional_count: int  # |B|: seeds with one skip passing both (B is within F and R)
    expected_chance_bidirectional: float
    notes: list[str] = field(default_factory=list)
    #: |F ∩ R|: seeds passing forward with some skip and reverse with some (maybe other)
    #: skip; with |F| and |R| it gives the overlap statistics of SPEC §3
    forward_reverse_count: int = 0


@dataclass(frozen=True)
class Window:
    """A validated window: the draws compared in each direction and the counts needed."""

    params: SieveParams
    forward_draws: list[int]  # draws p, p+1, ..., p+W-1
    reverse_draws: list[int]  # draws o, o+1, ..., p-1 (before the pivot, in history order)
    k_forward: int
    k_reverse: int
    notes: list[str]

    @property
    def skips(self) -> range:
        return range(self.params.skip_min, self.params.skip_max + 1)

    @property
    def pivot(self) -> int:
        """History index of the first forward draw, p = o + W."""
        return self.params.offset + self.params.window_size


def prepare(draws: Any, params: SieveParams) -> Window:
    """Validate `params` against the history and cut out the window (offset clamped, with a
    note). Every impossible combination is a `UserError` saying which parameter and why."""
    _check_params(params)
    history = np.asarray(draws)
    if history.ndim != 1 or (history.size and not np.issubdtype(history.dtype, np.integer)):
        raise UserError("draw history must be a 1-D sequence of integers")
    history = history.astype(np.int64)
    bad = np.flatnonzero((history < 0) | (history >= params.mod))
    if bad.size:
        i = int(bad[0])
        raise UserError(f"draw {int(history[i])} at index {i} is outside [0, {params.mod})")
    n, w = history.size, params.window_size
    if n < 2 * w:
        raise UserError(
            f"history has {n} draws; window_size {w} needs at least {2 * w} (2 x window_size)"
        )
    notes = []
    offset = params.offset
    if offset > n - 2 * w:
        offset = n - 2 * w
        notes.append(f"offset {params.offset} clamped to {offset} (history has {n} draws)")
        params = replace(params, offset=offset)
    pivot = offset + w
    return Window(
        params=params,
        forward_draws=[int(v) for v in history[pivot : pivot + w]],
        reverse_draws=[int(v) for v in history[offset:pivot]],
        k_forward=min_matches(params.forward_threshold, w),
        k_reverse=min_matches(params.reverse_threshold, w),
        notes=notes,
    )


def _check_params(p: SieveParams) -> None:
    """Raise a `UserError` for the first parameter no window could satisfy."""
    if p.prng not in FAMILIES:
        raise UserError(f"unknown prng {p.prng!r} (known: {', '.join(FAMILIES)})")
    checks = [
        (p.window_size >= 1, f"window_size must be >= 1, got {p.window_size}"),
        (p.offset >= 0, f"offset must be >= 0, got {p.offset}"),
        (p.skip_min >= 0, f"skip_min must be >= 0, got {p.skip_min}"),
        (p.skip_max >= p.skip_min, f"skip_max {p.skip_max} is below skip_min {p.skip_min}"),
        (1 <= p.mod <= 1 << 32, f"mod must be in [1, 2^32], got {p.mod}"),
        (p.seed_count >= 0, f"seed_count must be >= 0, got {p.seed_count}"),
    ]
    seeds = check_seed_range(p.prng, p.seed_start, p.seed_count)
    if seeds:
        checks.insert(0, (False, seeds))
    for name in ("forward_threshold", "reverse_threshold"):
        t = getattr(p, name)
        checks.append((math.isfinite(t) and 0.0 <= t <= 1.0, f"{name} must be in [0, 1], got {t}"))
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def run_sieve(
    draws: np.ndarray,
    params: SieveParams,
    *,
    device: str | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int | None = None,
    cores: int | None = None,
) -> SieveResult:
    """Run the bidirectional sieve over `params`' seed range and skip range.

    `device` is "cpu" | "gpu" | "auto" (default `$WINOPT_DEVICE`, else auto). `progress(n)`
    is called after each chunk with the number of seeds it finished. `chunk_size` (seeds
    per chunk) only trades speed for memory, `cores` (default: every core the process may
    use; a GPU uses one) only speed for CPU; results never depend on either."""
    window = prepare(draws, params)
    params = window.params
    xp = array_module(device)
    step = make_stepper(params.prng, xp)
    chunk = chunk_size or min(GPU_CHUNK if is_gpu(xp) else CPU_CHUNK,
                              step.chunk_limit or CPU_CHUNK << 10)  # fmt: skip
    end = params.seed_start + params.seed_count
    starts = range(params.seed_start, end, chunk)
    workers = 1 if is_gpu(xp) else min(worker_count(cores), len(starts))
    engines: dict[int, _Engine] = {}

    def local(start: int, size: int, cancel: Any = None) -> _Tally:
        """One chunk in this process (the schedules are built on first use)."""
        if not engines:
            engines[0] = _Engine.build(window, xp, step)
        return engines[0].sieve(start, size, cancel)

    tally = _Tally()
    if workers <= 1:  # a stop or Ctrl-C interrupts this very loop: nothing to cancel
        for start in starts:
            size = min(chunk, end - start)
            tally.merge(local(start, size))
            if progress is not None:
                progress(size)
    else:
        run = new_run()
        spec = _spec(window)
        args = ((run, spec, start, min(chunk, end - start)) for start in starts)
        chunks = process_map(_sieve_task, args, workers, run,
                             lambda _run, _spec, start, size: local(start, size))  # fmt: skip
        with closing(chunks):  # a stop raised by `progress` cancels the run here, not at GC
            for part in chunks:
                tally.merge(part)
                if progress is not None:
                    progress(part.seeds)
    expected = chance_level(
        params.window_size, window.k_forward, window.k_reverse, params.mod,
        len(window.skips), params.seed_count,
    )
    return tally.result(window, expected.bidirectional)


@dataclass
class _Engine:
    """What sieving a chunk needs: the stepper and both directions' schedules."""

    window: Window
    xp: Any
    step: Any
    forward: Any
    reverse: Any

    @classmethod
    def build(cls, window: Window, xp: Any, step: Any = None) -> _Engine:
        params = window.params
        step = step or make_stepper(params.prng, xp)
        lag, select = family(params.prng).lag, step.select
        forward = build_schedule(lag, window.pivot, window.forward_draws, window.skips,
                                 window.k_forward, select=select)  # fmt: skip
        reverse = build_schedule(lag, params.offset, window.reverse_draws, window.skips,
                                 window.k_reverse, select=select)  # fmt: skip
        return cls(window, xp, step, forward, reverse)

    def sieve(self, start: int, size: int, cancel: Any = None) -> _Tally:
        """The tally of seeds [start, start + size)."""
        if cancel is not None:
            cancel.check()
        seeds = np.arange(size, dtype=np.uint64) + np.uint64(start)
        x0 = self.step.states(seeds)
        mod = self.window.params.mod
        part = _Tally()
        part.add(self.xp, seeds, scan(self.step, self.forward, x0, mod, cancel),
                 scan(self.step, self.reverse, x0, mod, cancel), self.window)  # fmt: skip
        return part


#: a window as sent to a worker: plain, small, hashable (the schedules are built there)
_Spec = tuple


def _spec(window: Window) -> _Spec:
    p = window.params
    return (p.prng, p.window_size, p.offset, p.skip_min, p.skip_max, p.forward_threshold,
            p.reverse_threshold, p.mod, tuple(window.forward_draws),
            tuple(window.reverse_draws), window.k_forward, window.k_reverse)  # fmt: skip


#: in a worker: the engines of the last few windows, keyed by `_Spec`
_engines: dict[_Spec, _Engine] = {}
_ENGINES_KEPT = 4


def _sieve_task(run: int, spec: _Spec, start: int, size: int) -> _Tally:
    """A worker's chunk: build (or reuse) the window's engine, sieve, return the tally."""
    cancel = RunCancel(run)
    cancel.check()
    engine = _engines.get(spec)
    if engine is None:
        prng, w, offset, skip_min, skip_max, ft, rt, mod, fwd, rev, kf, kr = spec
        params = SieveParams(prng, w, offset, skip_min, skip_max, ft, rt, 0, 0, mod)
        window = Window(params, list(fwd), list(rev), kf, kr, [])
        engine = _Engine.build(window, np)
        while len(_engines) >= _ENGINES_KEPT:
            _engines.pop(next(iter(_engines)))
        _engines[spec] = engine
    return engine.sieve(start, size, cancel)


@dataclass
class _Tally:
    """Counts and survivors accumulated chunk by chunk (on the host)."""

    forward_count: int = 0
    reverse_count: int = 0
    forward_reverse_count: int = 0
    parts: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    seeds: int = 0  # seeds tallied

    def merge(self, other: _Tally) -> None:
        """Fold in the tally of the next chunk (chunks are merged in seed order)."""
        self.forward_count += other.forward_count
        self.reverse_count += other.reverse_count
        self.forward_reverse_count += other.forward_reverse_count
        self.parts.extend(other.parts)
        self.seeds += other.seeds

    def add(self, xp: Any, seeds: np.ndarray, fwd: Scanned, rev: Scanned, window: Window) -> None:
        """Fold one chunk in: forward/reverse counts, then the seeds passing both for one
        skip, each with the skip of highest f + r (ties: the smaller skip)."""
        f_ok = fwd.matches >= window.k_forward
        r_ok = rev.matches >= window.k_reverse
        f_any, r_any = f_ok.any(axis=0), r_ok.any(axis=0)
        self.forward_count += int(f_any.sum())
        self.reverse_count += int(r_any.sum())
        n = seeds.shape[0]
        self.seeds += int(n)
        col_f = _columns(xp, n, fwd.positions[f_any], xp.flatnonzero(f_any))
        col_r = _columns(xp, n, rev.positions[r_any], xp.flatnonzero(r_any))
        common = xp.flatnonzero((col_f >= 0) & (col_r >= 0))
        self.forward_reverse_count += int(common.shape[0])
        if common.shape[0] == 0:
            return
        mf = fwd.matches[:, col_f[common]].astype(xp.int32)
        mr = rev.matches[:, col_r[common]].astype(xp.int32)
        both = (mf >= window.k_forward) & (mr >= window.k_reverse)
        has = both.any(axis=0)
        common, mf, mr, both = common[has], mf[:, has], mr[:, has], both[:, has]
        best = xp.argmax(xp.where(both, mf + mr, -1), axis=0)  # first maximum: smaller skip
        cols = xp.arange(best.shape[0])
        w = float(window.params.window_size)
        self.parts.append(
            tuple(
                to_host(a)
                for a in (
                    seeds[to_host(common)],
                    best.astype(xp.int64) + window.params.skip_min,
                    mf[best, cols] / w,
                    mr[best, cols] / w,
                )
            )
        )

    def result(self, window: Window, expected: float) -> SieveResult:
        """The `SieveResult` of everything added."""
        if self.parts:
            seeds, skips, f, r = (np.concatenate(a) for a in zip(*self.parts))
        else:
            seeds, skips = np.zeros(0, np.uint64), np.zeros(0, np.int64)
            f, r = np.zeros(0, np.float64), np.zeros(0, np.float64)
        return SieveResult(
            params=window.params,
            seeds=seeds.astype(np.uint64),
            skips=skips.astype(np.int64),
            forward_rate=f.astype(np.float64),
            reverse_rate=r.astype(np.float64),
            forward_count=self.forward_count,
            reverse_count=self.reverse_count,
            bidirectional_count=int(seeds.shape[0]),
            expected_chance_bidirectional=expected,
            notes=list(window.notes),
            forward_reverse_count=self.forward_reverse_count,
        )


def _columns(xp: Any, n: int, positions: Any, columns: Any) -> Any:
    """A length-`n` map from chunk position to column (-1 where absent)."""
    col = xp.full(n, -1, dtype=xp.int64)
    col[positions] = columns
    return col
