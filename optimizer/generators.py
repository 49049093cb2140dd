"""The six v1 PRNG families of SPEC §1: seeding, step, inverse step and output.

These definitions are the single source of truth for what each generator *is*. They are
written once, with operators that mean the same thing on Python ints and on NumPy uint64
arrays (wrapping multiply, explicit masks), so the scalar helpers used by `winopt synth`
and the tests, and the deliberately simple reference sieve (which steps whole arrays of
seeds), run literally the same code. The fast sieve's jump-ahead lives in
`winopt.optimizer.jumps` and is tested against these.

Indexing (SPEC §1): `y_t` is the output of the step `x_t -> x_{t+1}`. For every family but
pcg32 the output is a function of the *new* state, `y_t = g(x_{t+1})`; pcg32 outputs the
XSH-RR permutation of the *old* state, `y_t = g(x_t)`. `Family.lag` is that 1 or 0, so
`y_t = g(x_{t + lag})` for all of them.

Choices the SPEC table leaves open, fixed here:

* `lcg32`: the state lives in Z_p with p = 2^31 - 1 (the step is taken mod p, not 2^31);
  a seed is first read as 32 bits (`seed mod 2^32`, "x = seed (32-bit)"), then reduced
  mod p, so seeds p .. 2^32-1 behave as `seed mod p`.
* `minstd`: `seed mod p`, and 0 (a fixed point of the step) becomes 1.
* `xorshift64`: the product `x * 0x2545F4914F6CDD1D` is the new *state* (and the output),
  not only the output as in Marsaglia/Vigna's xorshift64*. The SPEC test vector decides
  it: from seed 12345 this reading gives draws 4, 907, 695, 551, 486 (mod 1000), while
  xorshift64* gives 4, 292, 324, 541, 375. The step is therefore not GF(2)-linear and
  has no cheap jump-ahead: the sieve steps it.
* xorshift32 seed 0 (and xorshift64 seed 0) is the all-zero fixed point; it is a valid
  state that outputs 0 for ever, and the sieve treats it like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

M32 = (1 << 32) - 1
M48 = (1 << 48) - 1
M64 = (1 << 64) - 1
P31 = (1 << 31) - 1  # the Mersenne prime modulus of lcg32 and minstd

JAVA_A, JAVA_C = 25214903917, 11
LCG32_A, LCG32_C = 1103515245, 12345
MINSTD_A = 48271
XS64_MUL = 0x2545F4914F6CDD1D
PCG_A, PCG_C = 6364136223846793005, 1442695040888963407

JAVA_AINV = pow(JAVA_A, -1, 1 << 48)
LCG32_AINV = pow(LCG32_A, -1, P31)
MINSTD_AINV = pow(MINSTD_A, -1, P31)
XS64_MULINV = pow(XS64_MUL, -1, 1 << 64)
PCG_AINV = pow(PCG_A, -1, 1 << 64)

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


# --- steps and their inverses ------------------------------------------------------------


def _step_java(x: Generic) -> Generic:
    return (x * JAVA_A + JAVA_C) & M48


def _unstep_java(x: Generic) -> Generic:
    return ((x - JAVA_C) * JAVA_AINV) & M48


def _step_lcg32(x: Generic) -> Generic:
    return (x * LCG32_A + LCG32_C) % P31  # both factors < 2^31: the product fits 64 bits


def _unstep_lcg32(x: Generic) -> Generic:
    return ((x + (P31 - LCG32_C)) * LCG32_AINV) % P31


def _step_minstd(x: Generic) -> Generic:
    return (x * MINSTD_A) % P31


def _unstep_minstd(x: Generic) -> Generic:
    return (x * MINSTD_AINV) % P31


def _step_xs32(x: Generic) -> Generic:
    x = x ^ ((x << 13) & M32)  # a new object: never mutate the caller's array
    x ^= x >> 17
    x ^= (x << 5) & M32
    return x


def _unstep_xs32(x: Generic) -> Generic:
    # (1 + L)^-1 = (1 + L)(1 + L^2)(1 + L^4)... for a nilpotent shift L; undo in reverse order
    x = x ^ ((x << 5) & M32)
    x ^= (x << 10) & M32
    x ^= (x << 20) & M32
    x ^= x >> 17
    x ^= (x << 13) & M32
    x ^= (x << 26) & M32
    return x


def _step_xs64(x: Generic) -> Generic:
    x = x ^ (x >> 12)
    x ^= (x << 25) & M64
    x ^= x >> 27
    return (x * XS64_MUL) & M64


def _unstep_xs64(x: Generic) -> Generic:
    x = (x * XS64_MULINV) & M64
    x ^= x >> 27
    x ^= x >> 54
    x ^= (x << 25) & M64
    x ^= (x << 50) & M64
    x ^= x >> 12
    x ^= x >> 24
    x ^= x >> 48
    return x


def _step_pcg(x: Generic) -> Generic:
    return (x * PCG_A + PCG_C) & M64


def _unstep_pcg(x: Generic) -> Generic:
    return ((x - PCG_C) * PCG_AINV) & M64


# --- outputs -----------------------------------------------------------------------------


def _out_java(x: Generic) -> Generic:
    return x >> 16


def _out_identity(x: Generic) -> Generic:
    return x


def _out_pcg_xsh_rr(x: Generic) -> Generic:
    xorshifted = (((x >> 18) ^ x) >> 27) & M32
    rot = x >> 59
    return (xorshifted >> rot) | ((xorshifted << ((32 - rot) & 31)) & M32)


@dataclass(frozen=True)
class Family:
    """One generator family: how a seed becomes a state, how the state moves, what it says.

    `affine` is `(A, C, m)` when the step is `x -> A*x + C mod m`, which makes any number
    of steps one multiply-add (`affine_power`)."""

    name: str
    lag: int
    seed: Callable[[Generic], Generic]
    step: Callable[[Generic], Generic]
    unstep: Callable[[Generic], Generic]
    output: Callable[[Generic], Generic]
    affine: tuple[int, int, int] | None = None


_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("java_lcg", 1, _seed_java, _step_java, _unstep_java, _out_java,
               (JAVA_A, JAVA_C, 1 << 48)),
        Family("lcg32", 1, _seed_lcg32, _step_lcg32, _unstep_lcg32, _out_identity,
               (LCG32_A, LCG32_C, P31)),
        Family("minstd", 1, _seed_minstd, _step_minstd, _unstep_minstd, _out_identity,
               (MINSTD_A, 0, P31)),
        Family("xorshift32", 1, _seed_32, _step_xs32, _unstep_xs32, _out_identity),
        Family("xorshift64", 1, _seed_64, _step_xs64, _unstep_xs64, _out_identity),
        Family("pcg32", 0, _seed_64, _step_pcg, _unstep_pcg, _out_pcg_xsh_rr,
               (PCG_A, PCG_C, 1 << 64)),
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
    """`(A_n, C_n)` with `step^n(x) = A_n*x + C_n mod m` for the affine step `(a, c, m)`.

    Negative `n` jumps backwards (the inverse map is affine too). Repeated squaring:
    O(log |n|) big-int operations."""
    if n < 0:
        a_inv = pow(a, -1, m)
        a, c, n = a_inv, (-a_inv * c) % m, -n
    acc_a, acc_c = 1, 0
    while n:
        if n & 1:
            acc_a, acc_c = (a * acc_a) % m, (a * acc_c + c) % m
        a, c = (a * a) % m, (a * c + c) % m
        n >>= 1
    return acc_a, acc_c


def seed_state(prng: str, seed: int) -> int:
    """The generator state for `seed` (the seeding rule of SPEC §1)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(family(prng).seed(int(seed)))


def advance(prng: str, state: int, n: int) -> int:
    """The state `n` steps after `state` (`n < 0`: before it), as a Python int."""
    fam = family(prng)
    if fam.affine is not None:
        a, c, m = fam.affine
        an, cn = affine_power(a, c, m, n)
        return (an * state + cn) % m
    move = fam.step if n >= 0 else fam.unstep
    for _ in range(abs(n)):
        state = move(state)
    return state


def raw_outputs(prng: str, state: int, t0: int, n: int) -> list[int]:
    """Raw outputs `y_t`, `t = t0 .. t0+n-1`, of the hypothesis whose pivot state is `x_0 = state`.

    Negative `t` go through the inverse step, so a history can be planted on both sides of
    a pivot. Plain Python ints."""
    fam = family(prng)
    x = advance(prng, state, t0 + fam.lag)
    out = []
    for _ in range(n):
        out.append(int(fam.output(x)))
        x = fam.step(x)
    return out
