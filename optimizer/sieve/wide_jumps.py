"""The fast sieve's steppers for the five families whose state is several words.

A chunk's states are one array of shape (words, seeds), moved in place with whole-array
operations, NumPy or CuPy alike (see `jumps` for the single-word families and the `Stepper`
interface). What each family's mathematics gives:

* philox4x32 is counter-based: output `t` is computed from the key and `t` directly, so
  moving costs nothing and the schedule takes the fewest visits ("cover");
* mt19937 moves 624 outputs at a time (one twist of all its words, in four vectorised
  blocks that respect the reference's in-place order); any output of the twisted words is
  read directly, so the cost is one twist per 624 outputs whatever the visits;
* xorshift128, xoshiro256pp and sfc64 are stepped (xorshift128 and xoshiro256pp are
  GF(2)-linear and could jump by matrix powers, but their matrices are 128 and 256 bits
  wide: a jump costs as much as tens of steps, more than the gaps between a window's
  visits); sfc64's counter is the same for every seed, so it is the Python int `u + 1`.

Every stepper is checked against the plain definitions in `wide_generators` by the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from winopt.optimizer.sieve import wide_generators as wide
from winopt.optimizer.sieve.jumps import Array, Buffers, Stepper


class WideStepper(Stepper):
    """A state of several words: shape (words, n)."""

    def states(self, seeds: np.ndarray) -> Array:
        state = self.fam.seed(seeds.astype(np.uint64))
        words = [np.broadcast_to(np.asarray(w, dtype=np.uint64), seeds.shape)
                 for w in state if not isinstance(w, int)]  # fmt: skip
        return self.xp.asarray(np.stack(words).astype(self.dtype))

    def advance(self, x: Array, n: int, buf: Buffers, u: int = 0) -> Array:
        for k in range(n):
            self.step_at(x, buf, u + k)
        return x

    def move(self, x: Array, base: Array, u_from: int, u_to: int, buf: Buffers) -> Array:
        if u_to < u_from:
            self.xp.copyto(x, base)
            u_from = 0
        return self.advance(x, u_to - u_from, buf, u_from)

    def step_at(self, x: Array, buf: Buffers, u: int) -> None:
        """One step of states that are `u` steps after the seeded ones."""
        raise NotImplementedError


class Xorshift128Stepper(WideStepper):
    """Marsaglia's xorshift128 on uint32 words (x, y, z, w); the output is the new w."""

    dtype = np.uint32

    def step_at(self, x: Array, buf: Buffers, u: int) -> None:
        xp, U, t, w = self.xp, self.U, buf.tmp, buf.out_tmp
        xp.left_shift(x[0], U(11), out=t)
        xp.bitwise_xor(t, x[0], out=t)  # t = x ^ (x << 11)
        xp.right_shift(x[3], U(19), out=w)
        xp.bitwise_xor(w, x[3], out=w)
        xp.bitwise_xor(w, t, out=w)
        xp.right_shift(t, U(8), out=t)
        xp.bitwise_xor(w, t, out=w)  # w ^ (w >> 19) ^ t ^ (t >> 8)
        x[0:3] = x[1:4].copy()  # overlapping: a copy keeps CuPy's kernels well-defined
        xp.copyto(x[3], w)

    def outputs(self, x: Array, buf: Buffers, u: int = 0) -> Array:
        return x[3]


class Xoshiro256Stepper(WideStepper):
    """xoshiro256++ on uint64 words; the output (64 bits) is read from the state before
    the step (lag 0)."""

    out_dtype = np.uint64

    def step_at(self, x: Array, buf: Buffers, u: int) -> None:
        xp, U, t = self.xp, self.U, buf.tmp
        s0, s1, s2, s3 = x[0], x[1], x[2], x[3]
        xp.left_shift(s1, U(17), out=t)
        xp.bitwise_xor(s2, s0, out=s2)
        xp.bitwise_xor(s3, s1, out=s3)
        xp.bitwise_xor(s1, s2, out=s1)
        xp.bitwise_xor(s0, s3, out=s0)
        xp.bitwise_xor(s2, t, out=s2)
        rotl(xp, s3, 45, t, U)

    def outputs(self, x: Array, buf: Buffers, u: int = 0) -> Array:
        xp, out = self.xp, buf.out
        xp.add(x[0], x[3], out=out)
        rotl(xp, out, 23, buf.out_tmp, self.U)
        return xp.add(out, x[0], out=out)


class Sfc64Stepper(WideStepper):
    """SFC64 on uint64 words (a, b, c); the counter, equal for every seed, is `u + 1`."""

    out_dtype = np.uint64

    def step_at(self, x: Array, buf: Buffers, u: int) -> None:
        xp, U, tmp, t = self.xp, self.U, buf.out_tmp, buf.tmp
        a, b, c = x[0], x[1], x[2]
        xp.add(a, b, out=tmp)
        xp.add(tmp, U(u + 1), out=tmp)  # tmp = a + b + counter
        xp.right_shift(b, U(11), out=t)
        xp.bitwise_xor(b, t, out=a)  # a = b ^ (b >> 11)
        xp.left_shift(c, U(3), out=t)
        xp.add(c, t, out=b)  # b = c + (c << 3)
        rotl(xp, c, 24, t, U)
        xp.add(c, tmp, out=c)  # c = rotl(c, 24) + tmp

    def outputs(self, x: Array, buf: Buffers, u: int = 0) -> Array:
        xp, out = self.xp, buf.out
        xp.add(x[0], x[1], out=out)
        return xp.add(out, self.U(u + 1), out=out)


class Philox4x32Stepper(WideStepper):
    """Philox4x32-10, counter-based: the state is the key (k0, k1) and never moves; output
    `u` is word 0 of the ten rounds over the counter block (u, 0, 0, 0)."""

    select = "cover"  # every visit costs the same: visit as few as possible

    def move(self, x: Array, base: Array, u_from: int, u_to: int, buf: Buffers) -> Array:
        return x

    def cost(self, n: int) -> float:
        return 0.0

    def outputs(self, x: Array, buf: Buffers, u: int = 0) -> Array:
        xp, U = self.xp, self.U
        m32 = U(wide.M32)
        k0, k1 = x[0].copy(), x[1].copy()
        # round 1 of the block (u, 0, 0, 0): only the counter's product is not zero
        p0 = u * wide.PHILOX_M0
        c0, c1 = k0.copy(), xp.zeros_like(k0)
        c2, c3 = xp.bitwise_xor(k1, U(p0 >> 32)), xp.full_like(k0, p0 & wide.M32)
        p0, p1 = xp.empty_like(k0), xp.empty_like(k0)
        for _ in range(9):
            xp.add(k0, U(wide.PHILOX_W0), out=k0)
            xp.bitwise_and(k0, m32, out=k0)
            xp.add(k1, U(wide.PHILOX_W1), out=k1)
            xp.bitwise_and(k1, m32, out=k1)
            xp.multiply(c0, U(wide.PHILOX_M0), out=p0)
            xp.multiply(c2, U(wide.PHILOX_M1), out=p1)
            xp.right_shift(p1, U(32), out=c0)
            xp.bitwise_xor(c0, c1, out=c0)
            xp.bitwise_xor(c0, k0, out=c0)
            xp.bitwise_and(p1, m32, out=c1)
            xp.right_shift(p0, U(32), out=c2)
            xp.bitwise_xor(c2, c3, out=c2)
            xp.bitwise_xor(c2, k1, out=c2)
            xp.bitwise_and(p0, m32, out=c3)
        xp.copyto(buf.out, c0, casting="unsafe")  # 32 bits
        return buf.out


class Mt19937Stepper(WideStepper):
    """MT19937 on (624, n) uint32 words. After `u >= 1` steps the words have been twisted
    `(u - 1) // 624 + 1` times and the output just made is word `(u - 1) % 624`."""

    dtype = np.uint32
    #: 624 words a seed: 4096 seeds keep a chunk's state (and its copy) near 10 MB each
    chunk_limit = 4096

    @staticmethod
    def twists(u: int) -> int:
        return 0 if u == 0 else (u - 1) // wide.MT_N + 1

    def move(self, x: Array, base: Array, u_from: int, u_to: int, buf: Buffers) -> Array:
        done, wanted = self.twists(u_from), self.twists(u_to)
        if wanted < done:
            self.xp.copyto(x, base)
            done = 0
        for _ in range(wanted - done):
            self.twist(x)
        return x

    def twist(self, x: Array) -> None:
        """All 624 words regenerated in place, in four blocks: word i takes the old word
        i+1 and word i+397 (old below i = 227, already regenerated from there on)."""
        n, m = wide.MT_N, wide.MT_M
        for lo, hi in ((0, n - m), (n - m, 2 * (n - m)), (2 * (n - m), n - 1)):
            self._regenerate(x, lo, hi, x[lo + 1 : hi + 1], x[(lo + m) % n : (hi + m - 1) % n + 1])
        self._regenerate(x, n - 1, n, x[0:1], x[m - 1 : m])

    def _regenerate(self, x: Array, lo: int, hi: int, following: Array, far: Array) -> None:
        xp, U = self.xp, self.U
        y = xp.bitwise_and(x[lo:hi], U(wide.MT_UPPER))
        y |= following & U(wide.MT_LOWER)
        odd = (y & U(1)) * U(wide.MT_MATRIX_A)
        y >>= U(1)
        y ^= far
        y ^= odd
        x[lo:hi] = y

    def outputs(self, x: Array, buf: Buffers, u: int = 0) -> Array:
        xp, U, y, t = self.xp, self.U, buf.out, buf.out_tmp
        xp.copyto(y, x[(u - 1) % wide.MT_N])
        xp.right_shift(y, U(11), out=t)
        xp.bitwise_xor(y, t, out=y)
        xp.left_shift(y, U(7), out=t)
        xp.bitwise_and(t, U(0x9D2C5680), out=t)
        xp.bitwise_xor(y, t, out=y)
        xp.left_shift(y, U(15), out=t)
        xp.bitwise_and(t, U(0xEFC60000), out=t)
        xp.bitwise_xor(y, t, out=y)
        xp.right_shift(y, U(18), out=t)
        return xp.bitwise_xor(y, t, out=y)


def rotl(xp: Any, x: Array, k: int, tmp: Array, U: Any) -> None:
    """x <- rotl64(x, k) in place (uint64)."""
    xp.right_shift(x, U(64 - k), out=tmp)
    xp.left_shift(x, U(k), out=x)
    xp.bitwise_or(x, tmp, out=x)


WIDE_STEPPERS: dict[str, type[Stepper]] = {
    "mt19937": Mt19937Stepper,
    "xorshift128": Xorshift128Stepper,
    "xoshiro256pp": Xoshiro256Stepper,
    "philox4x32": Philox4x32Stepper,
    "sfc64": Sfc64Stepper,
}
