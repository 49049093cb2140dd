"""The five families of SPEC §1 "More families": generators whose state is several words.

Each is exactly the rigs' CPU reference of the same name in `prng_registry.py`
(`mt19937_cpu_simple`, `xorshift128_cpu`, `xoshiro256pp_cpu`, `philox4x32_cpu`,
`sfc64_cpu`). As in `generators`, every function here means the same thing on Python ints
and on NumPy uint64 arrays (one value per seed): the reference sieve runs them on arrays of
seeds, `winopt synth` and the tests on ints.

A state is a tuple of words. Where a part of the state is the same for every seed (the
word index of mt19937, the counter of philox4x32 and sfc64) it is a plain Python int in
the tuple, so an array state never stores it per seed. Functions return new tuples and
never modify the arrays they are given.

Lags (`generators.Family.lag`): xorshift128 and mt19937 output from the state after the
step (lag 1); xoshiro256pp and sfc64 output a function of the state before it, and
philox4x32's output `t` is a function of the key and the counter `t` (lag 0).
"""

from __future__ import annotations

from typing import Any

M32 = (1 << 32) - 1
M64 = (1 << 64) - 1
Generic = Any
State = tuple[Any, ...]


def _rotl64(x: Generic, k: int) -> Generic:
    return ((x << k) & M64) | (x >> (64 - k))


# --- mt19937 (mt19937_cpu_simple: init_genrand, 624 words) --------------------------------

MT_N, MT_M = 624, 397
MT_MATRIX_A, MT_UPPER, MT_LOWER = 0x9908B0DF, 0x80000000, 0x7FFFFFFF


def seed_mt(seed: Generic) -> State:
    """init_genrand(seed & (2^32-1)); the word index starts at 624 (twist before the
    first output)."""
    words = [seed & M32]
    for i in range(1, MT_N):
        prev = words[-1]
        words.append((1812433253 * (prev ^ (prev >> 30)) + i) & M32)
    return (MT_N, *words)


def twist_mt(words: list[Generic]) -> list[Generic]:
    """The 624-word regeneration, in the reference's in-place order."""
    words = list(words)
    for i in range(MT_N):
        y = (words[i] & MT_UPPER) | (words[(i + 1) % MT_N] & MT_LOWER)
        words[i] = words[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1) * MT_MATRIX_A)
    return words


def step_mt(state: State) -> State:
    """One output's step: twist when the words are used up, then move the index on; the
    output is the tempered word just before the new index (lag 1)."""
    index, words = state[0], list(state[1:])
    if index >= MT_N:
        words, index = twist_mt(words), 0
    return (index + 1, *words)


def temper_mt(y: Generic) -> Generic:
    y = y ^ (y >> 11)
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    return y ^ (y >> 18)


def out_mt(state: State) -> Generic:
    return temper_mt(state[state[0]])  # state[0] is the index after the step: word index-1


# --- xorshift128 (Marsaglia, x y z w) ------------------------------------------------------

XS128_Y, XS128_Z, XS128_W = 362436069, 521288629, 88675123


def seed_xs128(seed: Generic) -> State:
    return (seed & M32, seed * 0 + XS128_Y, seed * 0 + XS128_Z, seed * 0 + XS128_W)


def step_xs128(state: State) -> State:
    x, y, z, w = state
    t = x ^ ((x << 11) & M32)
    return (y, z, w, w ^ (w >> 19) ^ t ^ (t >> 8))


def out_xs128(state: State) -> Generic:
    return state[3]


# --- xoshiro256++ --------------------------------------------------------------------------

XOSHIRO_S1, XOSHIRO_S2, XOSHIRO_S3 = 0x9E3779B97F4A7C15, 0x6A09E667F3BCC908, 0xBB67AE8584CAA73B


def seed_xoshiro(seed: Generic) -> State:
    return (seed & M64, seed * 0 + XOSHIRO_S1, seed * 0 + XOSHIRO_S2, seed * 0 + XOSHIRO_S3)


def step_xoshiro(state: State) -> State:
    s0, s1, s2, s3 = state
    t = (s1 << 17) & M64
    s2 = s2 ^ s0
    s3 = s3 ^ s1
    s1 = s1 ^ s2
    s0 = s0 ^ s3
    s2 = s2 ^ t
    return (s0, s1, s2, _rotl64(s3, 45))


def out_xoshiro(state: State) -> Generic:
    s0, _, _, s3 = state
    return (_rotl64((s0 + s3) & M64, 23) + s0) & M64


# --- philox4x32-10 (counter-based) ---------------------------------------------------------

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85


def seed_philox(seed: Generic) -> State:
    """key = (low 32, high 32 bits of the seed); the counter of output 0 is 0."""
    return (seed & M32, (seed >> 32) & M32, 0)


def step_philox(state: State) -> State:
    key0, key1, counter = state
    return (key0, key1, counter + 1)


def philox_word0(key0: Generic, key1: Generic, counter: int) -> Generic:
    """Word 0 of Philox4x32-10 of the counter block (counter, 0, 0, 0)."""
    c0, c1, c2, c3 = key0 * 0 + counter, key0 * 0, key0 * 0, key0 * 0
    k0, k1 = key0, key1
    for _ in range(10):
        p0, p1 = c0 * PHILOX_M0, c2 * PHILOX_M1
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & M32, (p0 >> 32) ^ c3 ^ k1, p0 & M32
        k0, k1 = (k0 + PHILOX_W0) & M32, (k1 + PHILOX_W1) & M32
    return c0


def out_philox(state: State) -> Generic:
    return philox_word0(*state)


# --- sfc64 ---------------------------------------------------------------------------------

SFC_B, SFC_C = 0x9E3779B97F4A7C15, 0x6A09E667F3BCC908


def seed_sfc(seed: Generic) -> State:
    """a = seed, b and c constants, counter 1 (the counter is shared by every seed)."""
    return (seed & M64, seed * 0 + SFC_B, seed * 0 + SFC_C, 1)


def step_sfc(state: State) -> State:
    a, b, c, counter = state
    tmp = (a + b + counter) & M64
    return (b ^ (b >> 11), (c + ((c << 3) & M64)) & M64, (_rotl64(c, 24) + tmp) & M64,
            (counter + 1) & M64)  # fmt: skip


def out_sfc(state: State) -> Generic:
    a, b, _, counter = state
    return (a + b + counter) & M64
