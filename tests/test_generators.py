"""The six PRNG families: SPEC §1 test vectors, seeding rules, inverse steps, and the
array steppers of the fast sieve (jump-ahead) against the plain definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from winopt.optimizer.generators import (
    FAMILIES,
    M48,
    P31,
    advance,
    affine_power,
    family,
    raw_outputs,
    seed_state,
)
from winopt.optimizer.jumps import gf2_byte_tables, stepper

SPEC_VECTORS = {
    "java_lcg": [454757875, 3428499331, 68972694, 2852015737, 184400468],
    "lcg32": [1406938949, 178066070, 1543701248, 427461576, 562845833],
    "minstd": [595905495, 1558181227, 1498755989, 2021244883, 887213142],
    "xorshift32": [3336926330, 1697253807, 2816511904, 1955480042, 718842323],
    "pcg32": [0, 1882538953, 1534987090, 1894995461, 2528358703],
}
XORSHIFT64_DRAWS = [4, 907, 695, 551, 486]

seeds = st.integers(min_value=0, max_value=2**64 - 1)
families = st.sampled_from(FAMILIES)


def test_families_are_the_six_of_the_spec() -> None:
    assert FAMILIES == ("java_lcg", "lcg32", "minstd", "xorshift32", "xorshift64", "pcg32")


@pytest.mark.parametrize("prng", sorted(SPEC_VECTORS))
def test_spec_test_vectors(prng: str) -> None:
    assert raw_outputs(prng, seed_state(prng, 12345), 0, 5) == SPEC_VECTORS[prng]


def test_xorshift64_spec_draws_decide_the_state_reading() -> None:
    draws = [y % 1000 for y in raw_outputs("xorshift64", seed_state("xorshift64", 12345), 0, 5)]
    assert draws == XORSHIFT64_DRAWS


@pytest.mark.parametrize(
    ("prng", "seed", "state"),
    [
        ("java_lcg", 2**48 + 7, 7),
        ("lcg32", P31, 0),
        ("lcg32", 2**32 + 5, 5),  # read as 32 bits first
        ("minstd", 0, 1),
        ("minstd", P31, 1),
        ("minstd", P31 + 3, 3),
        ("xorshift32", 2**32 + 9, 9),
        ("xorshift64", 2**64 - 1, 2**64 - 1),
        ("pcg32", 12345, 12345),
    ],
)
def test_seeding_rules(prng: str, seed: int, state: int) -> None:
    assert seed_state(prng, seed) == state


def test_unknown_family_and_negative_seed_are_refused() -> None:
    with pytest.raises(KeyError, match="known: java_lcg"):
        family("mt19937")
    with pytest.raises(ValueError):
        seed_state("java_lcg", -1)


@settings(max_examples=300, deadline=None)
@given(prng=families, seed=seeds)
def test_inverse_step_undoes_step(prng: str, seed: int) -> None:
    fam = family(prng)
    x = fam.seed(seed)
    assert fam.unstep(fam.step(x)) == x
    assert fam.step(fam.unstep(x)) == x


@settings(max_examples=60, deadline=None)
@given(prng=families, seed=seeds, n=st.integers(-400, 400), m=st.integers(-400, 400))
def test_advance_composes_and_inverts(prng: str, seed: int, n: int, m: int) -> None:
    x = seed_state(prng, seed)
    assert advance(prng, advance(prng, x, n), m) == advance(prng, x, n + m)
    assert advance(prng, advance(prng, x, n), -n) == x


@settings(max_examples=60, deadline=None)
@given(prng=st.sampled_from(["java_lcg", "lcg32", "minstd", "pcg32"]), seed=seeds,
       n=st.integers(-300, 300))  # fmt: skip
def test_affine_power_is_repeated_stepping(prng: str, seed: int, n: int) -> None:
    fam = family(prng)
    a, c, m = fam.affine
    x = fam.seed(seed)
    an, cn = affine_power(a, c, m, n)
    y = x
    for _ in range(abs(n)):
        y = fam.step(y) if n > 0 else fam.unstep(y)
    assert (an * x + cn) % m == y


@settings(max_examples=40, deadline=None)
@given(prng=families, seed=seeds, t0=st.integers(-50, 50), n=st.integers(1, 20))
def test_raw_outputs_is_one_sequence_through_the_pivot(prng: str, seed: int, t0: int, n: int) -> None:
    """Outputs before the pivot (inverse steps) continue into those after it."""
    x = seed_state(prng, seed)
    whole = raw_outputs(prng, x, -60, 140)
    assert raw_outputs(prng, x, t0, n) == whole[t0 + 60 : t0 + 60 + n]


@pytest.mark.parametrize("prng", FAMILIES)
def test_generic_definitions_give_the_same_on_uint64_arrays(prng: str) -> None:
    """The reference sieve runs the same functions on arrays: they must agree with ints
    and never modify the array they are given."""
    fam = family(prng)
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True)
    raw[:3] = [0, 1, 2**64 - 1]
    states = fam.seed(raw)
    assert [int(v) for v in states] == [fam.seed(int(s)) for s in raw]
    before = states.copy()
    for fn in (fam.step, fam.unstep, fam.output):
        assert [int(v) for v in fn(states)] == [fn(int(s)) for s in states]
        assert np.array_equal(states, before)


# --- the fast sieve's array steppers ----------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(prng=families, n=st.integers(-700, 700), mod=st.sampled_from([7, 10, 256, 1000, 65521]),
       seed=st.integers(0, 2**32))  # fmt: skip
def test_stepper_moves_and_reads_like_the_definition(prng: str, n: int, mod: int, seed: int) -> None:
    fam = family(prng)
    step = stepper(prng, np)
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 2**64 - 1, 64, dtype=np.uint64, endpoint=True)
    x = step.states(raw)
    start = [seed_state(prng, int(s)) for s in raw]
    assert [int(v) for v in x] == start
    buf = step.buffers(x.shape[0])
    step.advance(x, n, buf)
    moved = [advance(prng, s, n) for s in start]
    assert [canonical(prng, int(v)) for v in x] == moved
    residues = step.residues(x, mod, buf)
    assert [int(v) for v in residues] == [fam.output(s) % mod for s in moved]


def canonical(prng: str, x: int) -> int:
    """java_lcg steppers keep 64-bit representatives of the 48-bit state."""
    return x & M48 if prng == "java_lcg" else x


def test_xorshift32_byte_tables_are_the_jump_matrix() -> None:
    """Table lookups of step^n equal n plain steps, forwards and backwards, and the
    stepper really takes the table path for long moves."""
    step = stepper("xorshift32", np)
    assert step.cost(100) == step.jump_cost < 100 * step.step_cost
    for n in (1, 2, 37, 1000, -1, -5, -1000):
        tables = gf2_byte_tables("xorshift32", n)
        for x in (1, 0x80000000, 0xDEADBEEF, 12345):
            looked_up = 0
            for j in range(4):
                looked_up ^= int(tables[j][(x >> (8 * j)) & 255])
            assert looked_up == advance("xorshift32", x, n)


def test_java_lcg_representatives_stay_exact_mod_2_48() -> None:
    """Unmasked wrapped uint64 arithmetic stays exact mod 2^48 over many moves, states near
    2^48 included, and the outputs read from the representatives are right."""
    step = stepper("java_lcg", np)
    start = [M48, M48 - 1, 2**47, 0, 12345]
    x = np.array(start, dtype=np.uint64)
    buf = step.buffers(len(start))
    total = 0
    for n in (123456789, -5, 2**40, -(2**41), 77):
        step.advance(x, n, buf)
        total += n
        want = [advance("java_lcg", s, total) for s in start]
        assert [int(v) & M48 for v in x] == want
        assert step.residues(x, 2**32, buf).tolist() == [w >> 16 for w in want]
