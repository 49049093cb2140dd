"""The eleven PRNG families of SPEC §1: seeding, step and output, as the rigs define them.

Each family is exactly the CPU reference of the same name in the users' pipeline
(`prng_registry.py`), because the rigs (Steps 2.5, 3 and 6) regenerate draws from a
survivor's seed with those references: a seed means the same thing here and there. The
definitions are written once, with operators that mean the same thing on Python ints and
on NumPy uint64 arrays (wrapping multiply, explicit masks), so the scalar helpers used by
`winopt synth` and the tests, and the deliberately simple reference sieve (which steps
whole arrays of seeds), run literally the same code. The fast sieve's jump-ahead lives in
`winopt.optimizer.sieve.jumps` and is tested against these.

Indexing (SPEC §1): the seed gives the state `x_0`; `y_t` is the output of the step
`x_t -> x_{t+1}` (`y_0` is the first output, what the rigs' `cpu_reference(seed, 1)`
returns). For every family but pcg32 the output is a function of the *new* state,
`y_t = g(x_{t+1})`; pcg32 outputs the XSH-RR permutation of the *old* state,
`y_t = g(x_t)`. `Family.lag` is that 1 or 0, so `y_t = g(x_{t + lag})` for all of them.

Notes on the references:

* `lcg32`: the rigs seed `x = seed & (2^32-1)` and step mod p = 2^31 - 1. Reducing the
  seeded state mod p once more changes no output (the step is taken mod p), and keeps
  every state below 2^31 so that `A x + C` is exact in 64 bits.
* `minstd`: `seed mod p`, and 0 (a fixed point of the step) becomes 1.
* `xorshift64`: the product `x * 0x2545F4914F6CDD1D` is the new *state*, and the output
  is its low 32 bits. The step is therefore not GF(2)-linear and has no cheap jump-ahead:
  the sieve steps it.
* xorshift32 seed 0 (and xorshift64 seed 0) is the all-zero fixed point; it is a valid
  state that outputs 0 for ever, and the sieve treats it like any other.

The six single-word families are defined here; the five whose state is several words
(mt19937, xorshift128, xoshiro256pp, philox4x32, sfc64) in `wide_generators`, by the same
rules (their state is a tuple of words).

`Family.seed_space` is the number of distinct seeds the seeding keeps apart: a larger
seed would alias onto a smaller one (java_lcg keeps 48 bits, the 32-bit families 32,
minstd reduces mod p), so a seed range reaching past it is refused (SPEC §1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from winopt.optimizer.sieve import wide_generators as wide

M32 = (1 << 32) - 1
M48 = (1 << 48) - 1
M64 = (1 << 64) - 1
P31 = (1 << 31) - 1  # the Mersenne prime modulus of lcg32 and minstd

JAVA_A, JAVA_C = 25214903917, 11
LCG32_A, LCG32_C = 1103515245, 12345
MINSTD_A = 48271
XS64_MUL = 0x2545F4914F6CDD1D
PCG_A, PCG_C = 6364136223846793005, 1442695040888963407

# "Generic" values: a Python int or a NumPy uint64 array; each function below works on both.
Generic = Any


# --- seeding --------------------------------------------------------------------------


def _seed_java(seed: Generic) -> Generic:
    return seed & M48


def _seed_lcg32(seed: Generic) -> Generic:
    return (seed & M32) % P31


def _seed_minstd(seed: Generic) -> Generic:
    x = seed % P31
    return x + (x == 0)  # 0 is minstd's fixed point: it becomes 1


def _seed_32(seed: Generic) -> Generic:
    return seed & M32


def _seed_64(seed: Generic) -> Generic:
    return seed & M64


# --- steps -------------------------------------------------------------------------------


def _step_java(x: Generic) -> Generic:
    return (x * JAVA_A + JAVA_C) & M48


def _step_lcg32(x: Generic) -> Generic:
    return (x * LCG32_A + LCG32_C) % P31  # both factors < 2^31: the product fits 64 bits


def _step_minstd(x: Generic) -> Generic:
    return (x * MINSTD_A) % P31


def _step_xs32(x: Generic) -> Generic:
    x = x ^ ((x << 13) & M32)  # a new object: never mutate the caller's array
    x ^= x >> 17
    x ^= (x << 5) & M32
    return x


def _step_xs64(x: Generic) -> Generic:
    x = x ^ (x >> 12)
    x ^= (x << 25) & M64
    x ^= x >> 27
    return (x * XS64_MUL) & M64


def _step_pcg(x: Generic) -> Generic:
    return (x * PCG_A + PCG_C) & M64


# --- outputs -----------------------------------------------------------------------------


def _out_java(x: Generic) -> Generic:
    return x >> 16


def _out_identity(x: Generic) -> Generic:
    return x


def _out_low32(x: Generic) -> Generic:
    return x & M32


def _out_pcg_xsh_rr(x: Generic) -> Generic:
    xorshifted = (((x >> 18) ^ x) >> 27) & M32
    rot = x >> 59
    return (xorshifted >> rot) | ((xorshifted << ((32 - rot) & 31)) & M32)


@dataclass(frozen=True)
class Family:
    """One generator family: how a seed becomes a state, how the state moves, what it says.

    `affine` is `(A, C, m)` when the step is `x -> A*x + C mod m`, which makes any number
    of steps one multiply-add (`affine_power`). Seeds lie in `[0, seed_space)`."""

    name: str
    lag: int
    seed: Callable[[Generic], Generic]
    step: Callable[[Generic], Generic]
    output: Callable[[Generic], Generic]
    seed_space: int
    affine: tuple[int, int, int] | None = None


_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("java_lcg", 1, _seed_java, _step_java, _out_java, 1 << 48,
               (JAVA_A, JAVA_C, 1 << 48)),
        Family("lcg32", 1, _seed_lcg32, _step_lcg32, _out_identity, 1 << 32,
               (LCG32_A, LCG32_C, P31)),
        Family("minstd", 1, _seed_minstd, _step_minstd, _out_identity, P31,
               (MINSTD_A, 0, P31)),
        Family("xorshift32", 1, _seed_32, _step_xs32, _out_identity, 1 << 32),
        Family("xorshift64", 1, _seed_64, _step_xs64, _out_low32, 1 << 64),
        Family("pcg32", 0, _seed_64, _step_pcg, _out_pcg_xsh_rr, 1 << 64,
               (PCG_A, PCG_C, 1 << 64)),
        Family("mt19937", 1, wide.seed_mt, wide.step_mt, wide.out_mt, 1 << 32),
        Family("xorshift128", 1, wide.seed_xs128, wide.step_xs128, wide.out_xs128, 1 << 32),
        Family("xoshiro256pp", 0, wide.seed_xoshiro, wide.step_xoshiro, wide.out_xoshiro,
               1 << 64),
        Family("philox4x32", 0, wide.seed_philox, wide.step_philox, wide.out_philox, 1 << 64),
        Family("sfc64", 0, wide.seed_sfc, wide.step_sfc, wide.out_sfc, 1 << 64),
    )
}

FAMILIES: tuple[str, ...] = tuple(_FAMILIES)


def family(prng: str) -> Family:
    """The `Family` called `prng`; `KeyError` names the known ones."""
    try:
        return _FAMILIES[prng]
    except KeyError:
        raise KeyError(f"unknown PRNG family {prng!r} (known: {', '.join(FAMILIES)})") from None


def affine_power(a: int, c: int, m: int, n: int) -> tuple[int, int]:
    """`(A_n, C_n)` with `step^n(x) = A_n*x + C_n mod m` for the affine step `(a, c, m)`,
    `n >= 0`. Repeated squaring: O(log n) big-int operations."""
    if n < 0:
        raise ValueError(f"steps must be >= 0, got {n}")
    acc_a, acc_c = 1, 0
    while n:
        if n & 1:
            acc_a, acc_c = (a * acc_a) % m, (a * acc_c + c) % m
        a, c = (a * a) % m, (a * c + c) % m
        n >>= 1
    return acc_a, acc_c


def check_seed_range(prng: str, seed_start: int, seed_count: int) -> str | None:
    """Why seeds `[seed_start, seed_start + seed_count)` are not all distinct seeds of
    `prng` (a message for people), or None when they are."""
    space = family(prng).seed_space
    if seed_start < 0:
        return f"seed_start must be >= 0, got {seed_start}"
    if seed_count > 0 and seed_start + seed_count > space:
        return (
            f"seed range [{seed_start}, {seed_start + seed_count}) reaches past {prng}'s "
            f"{_power_text(space)} seeds (a larger seed aliases onto a smaller one); "
            f"use seeds below {space}"
        )
    return None


def _power_text(n: int) -> str:
    """2^48 rather than 281474976710656; 2^31-1 for the Mersenne prime."""
    if n & (n - 1) == 0:
        return f"2^{n.bit_length() - 1}"
    if (n + 1) & n == 0:
        return f"2^{n.bit_length()}-1"
    return str(n)


def seed_state(prng: str, seed: int) -> Any:
    """The generator state `x_0` for `seed` (the seeding rule of SPEC §1): a Python int,
    or a tuple of them for the families whose state is several words."""
    problem = check_seed_range(prng, int(seed), 1)
    if problem:
        raise ValueError(problem)
    return family(prng).seed(int(seed))


def advance(prng: str, state: Any, n: int) -> Any:
    """The state `n >= 0` steps after `state` (Python ints)."""
    fam = family(prng)
    if fam.affine is not None:
        a, c, m = fam.affine
        an, cn = affine_power(a, c, m, n)
        return (an * state + cn) % m
    if n < 0:
        raise ValueError(f"steps must be >= 0, got {n}")
    for _ in range(n):
        state = fam.step(state)
    return state


def raw_outputs(prng: str, seed: int, n: int, start: int = 0) -> list[int]:
    """Raw outputs `y_start .. y_{start+n-1}` of `seed`: what the rigs' reference
    `cpu_reference(seed, n, skip=start)` returns. Plain Python ints."""
    fam = family(prng)
    x = advance(prng, seed_state(prng, seed), start + fam.lag)
    out = []
    for _ in range(n):
        out.append(int(fam.output(x)))
        x = fam.step(x)
    return out


def predicted_draws(prng: str, seed: int, skip: int, n: int, mod: int, first: int = 0) -> list[int]:
    """The hypothesis (seed, skip) of SPEC §1 for draws `first .. first+n-1` of a
    selection: draw `t` is `y_{skip + t(skip+1)} mod mod`. Memory O(1) in `skip`."""
    fam, stride = family(prng), skip + 1
    x = advance(prng, seed_state(prng, seed), skip + first * stride + fam.lag)
    out = []
    for _ in range(n):
        out.append(int(fam.output(x)) % mod)
        x = advance(prng, x, stride)
    return out
