"""Moving whole arrays of generator states by any number of steps, and reading their draws.

The fast sieve visits, for every seed of a chunk, a few hundred states scattered along the
sequence; what it needs from a family is "move these states by n steps" and "give me their
outputs mod `mod`". Each `Stepper` does that with in-place array operations (no temporaries
in the hot loop) on NumPy or CuPy alike:

* affine families (java_lcg, lcg32, minstd, pcg32): n steps are one multiply-add with
  `(A^n, C_n)` from `generators.affine_power`;
* xorshift32 is GF(2)-linear: n steps are a 32x32 bit matrix, applied as four 256-entry
  byte tables (4 gathers), used when that is cheaper than stepping;
* xorshift64 as the rigs define it multiplies inside the state, so it is not linear and is
  stepped.

States only ever move forwards: every state the sieve reads lies after the seeded one.

Every stepper is checked against the plain definitions in `generators` by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

from winopt.optimizer.sieve.generators import P31, XS64_MUL, Family, affine_power, family

Array = Any  # numpy.ndarray or cupy.ndarray


@dataclass
class Buffers:
    """Scratch arrays for one chunk: a state-typed temporary and the output residues."""

    tmp: Array  # state dtype
    out: Array  # output dtype: g(x) mod mod
    out_tmp: Array  # output dtype
    index: Array  # intp: byte-table lookups


class Stepper:
    """Array operations for one family on one array module (base class: step by step)."""

    dtype: Any = np.uint64
    #: outputs are 32 bits for every family; uint32 arithmetic is faster
    out_dtype: Any = np.uint32
    #: cost of one step and of one jump of any length, relative to each other within a
    #: family (measured with NumPy on 32k-element chunks)
    step_cost, jump_cost = 1.0, float("inf")
    #: how `schedule.build_schedule` should pick the visits before the first checkpoint
    select = "first"
    #: most seeds per chunk (None: the sieve's default); families with large states set it
    #: so that a chunk's states stay small
    chunk_limit: int | None = None

    def __init__(self, fam: Family, xp: ModuleType) -> None:
        self.fam = fam
        self.xp = xp

    def U(self, value: int) -> Any:
        """`value` as a state-typed scalar: no promotion surprises on NumPy or CuPy."""
        return self.dtype(value)

    def V(self, value: int) -> Any:
        """`value` as an output-typed scalar."""
        return self.out_dtype(value)

    def buffers(self, n: int) -> Buffers:
        """Scratch space for `n` states."""
        xp = self.xp
        return Buffers(
            tmp=xp.empty(n, dtype=self.dtype),
            out=xp.empty(n, dtype=self.out_dtype),
            out_tmp=xp.empty(n, dtype=self.out_dtype),
            index=xp.empty(n, dtype=xp.intp),
        )

    # -- seeds --------------------------------------------------------------------------
    def states(self, seeds: np.ndarray) -> Array:
        """Seeded states `x_0`, on this stepper's device, for host uint64 `seeds`. Seeding runs
        the generic definition on NumPy (never on CuPy, whose promotion of large Python
        int constants differs); the copy to the device is small next to the scan."""
        return self.xp.asarray(self.fam.seed(seeds).astype(self.dtype))

    def copy(self, x: Array) -> Array:
        """A copy of states `x` to move while `x` stays."""
        return x.copy()

    def take(self, x: Array, keep: Array) -> Array:
        """The states of the seeds at positions `keep` (the last axis is the seed's)."""
        return x[..., keep]

    # -- moving ----------------------------------------------------------------------------
    def move(self, x: Array, base: Array, u_from: int, u_to: int, buf: Buffers) -> Array:
        """States `x`, now `u_from` steps after the seeded `base`, moved to `u_to` steps
        after it, in place (restarting from `base` when going back or when that is
        cheaper); returns `x`."""
        gap = u_to - u_from
        if gap < 0 or self.cost(u_to) + 1.0 < self.cost(gap):
            self.xp.copyto(x, base)
            gap = u_to
        return self.advance(x, gap, buf)

    def cost(self, n: int) -> float:
        """What moving forwards by `n >= 0` steps costs, in units of one simple array
        operation."""
        return min(n * self.step_cost, self.jump_cost if n else 0.0)

    def advance(self, x: Array, n: int, buf: Buffers) -> Array:
        """Move states `x` forwards by `n >= 0` steps, in place; returns `x`."""
        if n == 0:
            return x
        if n * self.step_cost <= self.jump_cost:
            for _ in range(n):
                self.step_inplace(x, buf.tmp)
            return x
        return self.jump_inplace(x, n, buf)

    def step_inplace(self, x: Array, tmp: Array) -> None:
        raise NotImplementedError

    def jump_inplace(self, x: Array, n: int, buf: Buffers) -> Array:
        raise NotImplementedError

    # -- reading ------------------------------------------------------------------------
    def outputs(self, x: Array, buf: Buffers, u: int = 0) -> Array:
        """Raw outputs g(x) into `buf.out` (`u`: how many steps `x` is after the seeded
        state, for the families whose output depends on it)."""
        self.xp.copyto(buf.out, x, casting="unsafe")  # values fit the output type
        return buf.out

    def residues(self, x: Array, mod: int, buf: Buffers, u: int = 0) -> Array:
        """`g(x) mod mod` into `buf.out`. Division by a scalar is much faster than `%` in
        NumPy (a multiply-shift), so the remainder is taken as y - (y // m) * m."""
        xp = self.xp
        y = self.outputs(x, buf, u)  # may be `x` itself: never written to below
        if mod & (mod - 1) == 0:
            return xp.bitwise_and(y, self.V(mod - 1), out=buf.out)
        m = self.V(mod)
        xp.floor_divide(y, m, out=buf.out_tmp)
        xp.multiply(buf.out_tmp, m, out=buf.out_tmp)
        return xp.subtract(y, buf.out_tmp, out=buf.out)


class AffineStepper(Stepper):
    """x -> A x + C (mod m): any jump is one multiply-add."""

    step_cost = jump_cost = 1.0
    select = "cover"

    def __init__(self, fam: Family, xp: ModuleType) -> None:
        super().__init__(fam, xp)
        assert fam.affine is not None
        self.a, self.c, self.m = fam.affine

    def advance(self, x: Array, n: int, buf: Buffers) -> Array:
        if n == 0:
            return x
        an, cn = affine_power(self.a, self.c, self.m, n)
        xp = self.xp
        xp.multiply(x, self.U(an), out=x)
        xp.add(x, self.U(cn), out=x)
        return self.reduce(x, buf.tmp)

    def reduce(self, x: Array, tmp: Array) -> Array:
        """Bring `A x + C` (computed with wrapping uint64 arithmetic) into [0, m)."""
        return x  # m = 2^64: the wrap is the reduction


class Java48Stepper(AffineStepper):
    """java_lcg: 2^48 divides 2^64, so wrapped uint64 arithmetic is exact mod 2^48. States
    are kept as 64-bit representatives (never masked: one operation less per move); the
    output takes bits 16..47, which the representative has right."""

    def outputs(self, x: Array, buf: Buffers, u: int = 0) -> Array:
        self.xp.right_shift(x, self.U(16), out=buf.tmp)
        self.xp.copyto(buf.out, buf.tmp, casting="unsafe")  # keeps bits 16..47
        return buf.out


class Prime31Stepper(AffineStepper):
    """lcg32 / minstd mod p = 2^31 - 1: A, C, x < 2^31, so A x + C < 2^63 is exact."""

    def reduce(self, x: Array, tmp: Array) -> Array:
        xp, p = self.xp, self.U(P31)
        xp.floor_divide(x, p, out=tmp)
        xp.multiply(tmp, p, out=tmp)
        return xp.subtract(x, tmp, out=x)


class Pcg32Stepper(AffineStepper):
    """pcg32: affine mod 2^64; the output is XSH-RR of the *old* state (lag 0)."""

    def outputs(self, x: Array, buf: Buffers, u: int = 0) -> Array:
        xp, U, V = self.xp, self.U, self.V
        out, rot = buf.out, buf.out_tmp
        xp.right_shift(x, U(18), out=buf.tmp)
        xp.bitwise_xor(buf.tmp, x, out=buf.tmp)
        xp.right_shift(buf.tmp, U(27), out=buf.tmp)
        xp.copyto(out, buf.tmp, casting="unsafe")  # xorshifted: the low 32 bits
        xp.right_shift(x, U(59), out=buf.tmp)
        xp.copyto(rot, buf.tmp, casting="unsafe")
        rotated_right = xp.right_shift(out, rot)
        xp.subtract(V(32), rot, out=rot)
        xp.bitwise_and(rot, V(31), out=rot)
        xp.left_shift(out, rot, out=out)
        return xp.bitwise_or(out, rotated_right, out=out)


class Xorshift32Stepper(Stepper):
    """xorshift32 on uint32 arrays; long moves through byte tables of the jump matrix."""

    dtype = np.uint32
    step_cost, jump_cost = 1.0, 8.2

    def outputs(self, x: Array, buf: Buffers, u: int = 0) -> Array:
        return x

    def step_inplace(self, x: Array, tmp: Array) -> None:
        xp, U = self.xp, self.U
        for shift, left in ((13, True), (17, False), (5, True)):
            (xp.left_shift if left else xp.right_shift)(x, U(shift), out=tmp)
            xp.bitwise_xor(x, tmp, out=x)

    def jump_inplace(self, x: Array, n: int, buf: Buffers) -> Array:
        """x <- M x for the bit matrix M = step^n: xor of four byte-table lookups."""
        xp, U = self.xp, self.U
        tables = self._tables(n)
        index, acc = buf.index, buf.out
        xp.bitwise_and(x, U(255), out=index)
        xp.take(tables[0], index, out=acc)
        for byte in (1, 2, 3):
            xp.right_shift(x, U(8 * byte), out=buf.tmp)
            xp.bitwise_and(buf.tmp, U(255), out=index)
            xp.take(tables[byte], index, out=buf.tmp)
            xp.bitwise_xor(acc, buf.tmp, out=acc)
        xp.copyto(x, acc)
        return x

    def _tables(self, n: int) -> Array:
        key = (n, id(self.xp))
        if key not in _TABLES:
            _TABLES[key] = self.xp.asarray(gf2_byte_tables(self.fam.name, n))
        return _TABLES[key]


_TABLES: dict[tuple[int, int], Any] = {}


class Xorshift64Stepper(Stepper):
    """xorshift64 as the rigs define it (multiply inside the state, output the low 32
    bits): stepped."""

    def step_inplace(self, x: Array, tmp: Array) -> None:
        xp, U = self.xp, self.U
        for shift, left in ((12, False), (25, True), (27, False)):
            (xp.left_shift if left else xp.right_shift)(x, U(shift), out=tmp)
            xp.bitwise_xor(x, tmp, out=x)
        xp.multiply(x, U(XS64_MUL), out=x)


# --- GF(2) jump matrices for xorshift32 -----------------------------------------------------


def _apply(cols: tuple[int, ...], v: int) -> int:
    """Matrix (given by its column images) times bit vector `v`."""
    out, j = 0, 0
    while v:
        if v & 1:
            out ^= cols[j]
        v >>= 1
        j += 1
    return out


@lru_cache(maxsize=1024)
def gf2_power(prng: str, n: int) -> tuple[int, ...]:
    """Column images of step^n (`n >= 0`) for a GF(2)-linear 32-bit family."""
    fam = family(prng)
    base = tuple(fam.step(1 << j) for j in range(32))
    result = tuple(1 << j for j in range(32))
    while n:
        if n & 1:
            result = tuple(_apply(base, c) for c in result)
        base = tuple(_apply(base, c) for c in base)
        n >>= 1
    return result


def gf2_byte_tables(prng: str, n: int) -> np.ndarray:
    """(4, 256) uint32: `table[j][b]` = step^n applied to byte `b` placed at byte `j`."""
    cols = gf2_power(prng, n)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for j in range(4):
        for b in range(1, 256):
            low = b & -b
            tables[j, b] = tables[j, b ^ low] ^ cols[8 * j + low.bit_length() - 1]
    return tables
