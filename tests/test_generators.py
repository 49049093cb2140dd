"""The eleven PRNG families: SPEC §1 test vectors, seeding rules and seed spaces, an
independent step-by-step reference of each (written from the SPEC tables, with nothing
shared with `generators`), and the array steppers of the fast sieve (jump-ahead, twists,
counters) against the plain definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from winopt.optimizer.sieve.generators import (
    FAMILIES,
    M48,
    P31,
    advance,
    affine_power,
    check_seed_range,
    family,
    predicted_draws,
    raw_outputs,
    seed_state,
)
from winopt.optimizer.sieve.jumps import gf2_byte_tables
from winopt.optimizer.sieve.steppers import stepper

SPEC_VECTORS = {
    "java_lcg": [454757875, 3428499331, 68972694, 2852015737, 184400468],
    "lcg32": [1406938949, 178066070, 1543701248, 427461576, 562845833],
    "minstd": [595905495, 1558181227, 1498755989, 2021244883, 887213142],
    "xorshift32": [3336926330, 1697253807, 2816511904, 1955480042, 718842323],
    "xorshift64": [3387930084, 1014190203, 1691510743, 50736199, 1303054550],
    "pcg32": [0, 1882538953, 1534987090, 1894995461, 2528358703],
    "mt19937": [3992670690, 3823185381, 1358822685, 561383553, 789925284],
    "xorshift128": [80308827, 3275432538, 1299867163, 15152140, 1328750073],
    "xoshiro256pp": [4810518865347732496, 1791319405819414116, 16426893429566905432,
                     3498788172468386474, 14166353572916321700],
    "philox4x32": [3522838145, 11954473, 1814877333, 3057540118, 2504881536],
    "sfc64": [11400714819323210831, 6376491232222815908, 17425338571189619978,
              16912166003264728383, 9807794092452656986],
}
#: the rigs' xorshift64 (low 32 bits of the state) from seed 12345, mod 1000 (issue 10)
XORSHIFT64_DRAWS = [84, 203, 743, 199, 550]


def obvious(prng: str, seed: int, n: int) -> list[int]:
    """The first `n` raw outputs of `seed`, written out plainly from the SPEC §1 table."""
    out = []
    if prng == "java_lcg":
        x = seed & (2**48 - 1)
        for _ in range(n):
            x = (25214903917 * x + 11) % 2**48
            out.append(x >> 16)
    elif prng == "lcg32":
        x = seed & (2**32 - 1)
        for _ in range(n):
            x = (1103515245 * x + 12345) % (2**31 - 1)
            out.append(x)
    elif prng == "minstd":
        x = seed % (2**31 - 1) or 1
        for _ in range(n):
            x = 48271 * x % (2**31 - 1)
            out.append(x)
    elif prng == "xorshift32":
        x = seed & (2**32 - 1)
        for _ in range(n):
            x ^= (x << 13) % 2**32
            x ^= x >> 17
            x ^= (x << 5) % 2**32
            out.append(x)
    elif prng == "xorshift64":
        x = seed & (2**64 - 1)
        for _ in range(n):
            x ^= x >> 12
            x ^= (x << 25) % 2**64
            x ^= x >> 27
            x = x * 0x2545F4914F6CDD1D % 2**64
            out.append(x % 2**32)
    elif prng == "pcg32":
        x = seed & (2**64 - 1)
        for _ in range(n):
            old, x = x, (x * 6364136223846793005 + 1442695040888963407) % 2**64
            word = (((old >> 18) ^ old) >> 27) % 2**32
            rot = old >> 59
            out.append(((word >> rot) | (word << (32 - rot))) % 2**32)
    else:
        return obvious_wide(prng, seed, n)
    return out


def rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) % 2**64


def obvious_wide(prng: str, seed: int, n: int) -> list[int]:
    """The five families whose state is several words, from SPEC §1 "More families"."""
    out = []
    if prng == "mt19937":  # init_genrand, then the classic generator
        mt = [seed % 2**32]
        for i in range(1, 624):
            mt.append((1812433253 * (mt[-1] ^ (mt[-1] >> 30)) + i) % 2**32)
        index = 624
        for _ in range(n):
            if index == 624:
                for k in range(624):
                    y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7FFFFFFF)
                    mt[k] = mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y % 2 else 0)
                index = 0
            y = mt[index]
            index += 1
            y ^= y >> 11
            y ^= (y << 7) & 0x9D2C5680
            y ^= (y << 15) & 0xEFC60000
            out.append(y ^ (y >> 18))
    elif prng == "xorshift128":
        x, y, z, w = seed % 2**32, 362436069, 521288629, 88675123
        for _ in range(n):
            t = (x ^ (x << 11)) % 2**32
            x, y, z = y, z, w
            w = w ^ (w >> 19) ^ t ^ (t >> 8)
            out.append(w)
    elif prng == "xoshiro256pp":
        s = [seed % 2**64, 0x9E3779B97F4A7C15, 0x6A09E667F3BCC908, 0xBB67AE8584CAA73B]
        for _ in range(n):
            out.append((rotl((s[0] + s[3]) % 2**64, 23) + s[0]) % 2**64)
            t = (s[1] << 17) % 2**64
            s[2] ^= s[0]
            s[3] ^= s[1]
            s[1] ^= s[2]
            s[0] ^= s[3]
            s[2] ^= t
            s[3] = rotl(s[3], 45)
    elif prng == "philox4x32":
        for counter in range(n):
            c, key = [counter, 0, 0, 0], [seed % 2**32, seed >> 32]
            for _ in range(10):
                a, b = c[0] * 0xD2511F53, c[2] * 0xCD9E8D57
                c = [(b >> 32) ^ c[1] ^ key[0], b % 2**32, (a >> 32) ^ c[3] ^ key[1], a % 2**32]
                key = [(key[0] + 0x9E3779B9) % 2**32, (key[1] + 0xBB67AE85) % 2**32]
            out.append(c[0])
    elif prng == "sfc64":
        a, b, c, counter = seed % 2**64, 0x9E3779B97F4A7C15, 0x6A09E667F3BCC908, 1
        for _ in range(n):
            tmp = (a + b + counter) % 2**64
            counter += 1
            a, b, c = b ^ (b >> 11), (c + (c << 3)) % 2**64, (rotl(c, 24) + tmp) % 2**64
            out.append(tmp)
    else:
        raise AssertionError(prng)
    return out


def test_families_are_the_eleven_of_the_spec() -> None:
    assert FAMILIES == ("java_lcg", "lcg32", "minstd", "xorshift32", "xorshift64", "pcg32",
                        "mt19937", "xorshift128", "xoshiro256pp", "philox4x32", "sfc64")


@pytest.mark.parametrize("prng", FAMILIES)
def test_spec_test_vectors(prng: str) -> None:
    assert raw_outputs(prng, 12345, 5) == SPEC_VECTORS[prng]
    assert obvious(prng, 12345, 5) == SPEC_VECTORS[prng]


def test_xorshift64_outputs_its_low_32_bits() -> None:
    assert predicted_draws("xorshift64", 12345, 0, 5, 1000) == XORSHIFT64_DRAWS


@pytest.mark.parametrize("prng", FAMILIES)
def test_outputs_equal_the_obvious_reference_on_thousands_of_seeds(prng: str) -> None:
    rng = np.random.default_rng(7)
    space = family(prng).seed_space
    count = 300 if prng == "mt19937" else 2000  # 624 words to seed: slower in Python
    seeds = [0, 1, space - 1] + [int(v) for v in rng.integers(0, space, count, dtype=np.uint64)]
    for seed in seeds:
        assert raw_outputs(prng, seed, 6) == obvious(prng, seed, 6), seed


@settings(max_examples=60, deadline=None)
@given(prng=st.sampled_from(FAMILIES), data=st.data(), skip=st.integers(0, 30),
       first=st.integers(0, 40), n=st.integers(1, 8))  # fmt: skip
def test_predicted_draws_are_the_hypothesis(prng: str, data: st.DataObject, skip: int,
                                            first: int, n: int) -> None:  # fmt: skip
    """Draw t = y_{skip + t(skip+1)} (SPEC §1): with skip 0 exactly the rigs' stream."""
    seed = data.draw(st.integers(0, family(prng).seed_space - 1))
    stream = obvious(prng, seed, (first + n) * (skip + 1))
    want = [stream[skip + t * (skip + 1)] % 1000 for t in range(first, first + n)]
    assert predicted_draws(prng, seed, skip, n, 1000, first=first) == want


@pytest.mark.parametrize(
    ("prng", "seed", "state"),
    [
        ("java_lcg", 2**48 - 1, 2**48 - 1),
        ("lcg32", P31, 0),  # the same outputs as the rigs' x = P31: the step is mod p
        ("minstd", 0, 1),
        ("minstd", 5, 5),
        ("xorshift32", 2**32 - 1, 2**32 - 1),
        ("xorshift64", 2**64 - 1, 2**64 - 1),
        ("pcg32", 12345, 12345),
        ("xorshift128", 2**32 - 1, (2**32 - 1, 362436069, 521288629, 88675123)),
        ("philox4x32", 2**40 + 7, (7, 2**8, 0)),
    ],
)
def test_seeding_rules(prng: str, seed: int, state: int) -> None:
    assert seed_state(prng, seed) == state


@pytest.mark.parametrize(
    ("prng", "space"),
    [("java_lcg", 2**48), ("lcg32", 2**32), ("minstd", P31), ("xorshift32", 2**32),
     ("xorshift64", 2**64), ("pcg32", 2**64), ("mt19937", 2**32), ("xorshift128", 2**32),
     ("xoshiro256pp", 2**64), ("philox4x32", 2**64), ("sfc64", 2**64)],
)  # fmt: skip
def test_a_seed_past_the_family_seed_space_is_refused(prng: str, space: int) -> None:
    """The seeding would alias it onto a smaller seed (SPEC §1)."""
    assert check_seed_range(prng, space - 10, 10) is None
    problem = check_seed_range(prng, space - 10, 11)
    assert problem is not None and prng in problem and f"below {space}" in problem
    with pytest.raises(ValueError, match="reaches past"):
        seed_state(prng, space)


def test_unknown_family_and_negative_seed_are_refused() -> None:
    with pytest.raises(KeyError, match="known: java_lcg"):
        family("randu")
    with pytest.raises(ValueError):
        seed_state("java_lcg", -1)


@settings(max_examples=60, deadline=None)
@given(prng=st.sampled_from(FAMILIES), seed=st.integers(0, 2**31 - 2),
       n=st.integers(0, 400), m=st.integers(0, 400))  # fmt: skip
def test_advance_composes(prng: str, seed: int, n: int, m: int) -> None:
    x = seed_state(prng, seed)
    assert advance(prng, advance(prng, x, n), m) == advance(prng, x, n + m)
    with pytest.raises(ValueError):
        advance(prng, x, -1)


@settings(max_examples=60, deadline=None)
@given(prng=st.sampled_from(["java_lcg", "lcg32", "minstd", "pcg32"]),
       seed=st.integers(0, 2**31 - 2), n=st.integers(0, 300))  # fmt: skip
def test_affine_power_is_repeated_stepping(prng: str, seed: int, n: int) -> None:
    fam = family(prng)
    a, c, m = fam.affine
    x = fam.seed(seed)
    an, cn = affine_power(a, c, m, n)
    y = x
    for _ in range(n):
        y = fam.step(y)
    assert (an * x + cn) % m == y


SINGLE = FAMILIES[:6]
WIDE = FAMILIES[6:]


@pytest.mark.parametrize("prng", SINGLE)
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
    for fn in (fam.step, fam.output):
        assert [int(v) for v in fn(states)] == [fn(int(s)) for s in states]
        assert np.array_equal(states, before)


# --- the fast sieve's array steppers ----------------------------------------------------


@pytest.mark.parametrize("prng", WIDE)
def test_wide_definitions_give_the_same_on_uint64_arrays(prng: str) -> None:
    """The same for states of several words: the reference sieve's arrays of seeds step
    like each seed's ints, and a state given is never modified."""
    fam = family(prng)
    seeds = np.random.default_rng(3).integers(0, fam.seed_space - 1, 40, dtype=np.uint64,
                                               endpoint=True)  # fmt: skip
    states = fam.seed(seeds)
    before = [np.array(w, copy=True) for w in states]
    for _ in range(700 if prng == "mt19937" else 30):  # mt19937: through a twist
        states = fam.step(states)
        ys = fam.output(states)
        if isinstance(ys, int):
            ys = np.full(len(seeds), ys)
    ints = [fam.seed(int(s)) for s in seeds]
    for _ in range(700 if prng == "mt19937" else 30):
        ints = [fam.step(x) for x in ints]
    assert [int(v) for v in ys] == [fam.output(x) for x in ints]
    assert all(np.array_equal(w, b) for w, b in zip(fam.seed(seeds), before, strict=True))


@settings(max_examples=80, deadline=None)
@given(prng=st.sampled_from(SINGLE), n=st.integers(0, 700),
       mod=st.sampled_from([7, 10, 256, 1000, 65521]), seed=st.integers(0, 2**32))  # fmt: skip
def test_stepper_moves_and_reads_like_the_definition(prng: str, n: int, mod: int, seed: int) -> None:
    fam = family(prng)
    step = stepper(prng, np)
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, fam.seed_space - 1, 64, dtype=np.uint64, endpoint=True)
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
    """Table lookups of step^n equal n plain steps, and the stepper really takes the
    table path for long moves."""
    step = stepper("xorshift32", np)
    assert step.cost(100) == step.jump_cost < 100 * step.step_cost
    for n in (1, 2, 37, 1000, 25_000):
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
    for n in (123456789, 5, 2**40, 2**41, 77):
        step.advance(x, n, buf)
        total += n
        want = [advance("java_lcg", s, total) for s in start]
        assert [int(v) & M48 for v in x] == want
        assert step.residues(x, 2**32, buf).tolist() == [w >> 16 for w in want]


@settings(max_examples=40, deadline=None)
@given(prng=st.sampled_from(WIDE), moves=st.lists(st.integers(0, 1500), min_size=1, max_size=4),
       mod=st.sampled_from([7, 1000, 65521]), seed=st.integers(0, 2**32))  # fmt: skip
def test_wide_steppers_move_and_read_like_the_definition(prng: str, moves: list[int], mod: int,
                                                          seed: int) -> None:  # fmt: skip
    """Moves forwards and back (a restart from the seeded states), and the residues at
    every stop equal the plain outputs (`y_t` read at state `t + lag`)."""
    fam = family(prng)
    step = stepper(prng, np)
    raw = np.random.default_rng(seed).integers(0, fam.seed_space - 1, 16, dtype=np.uint64,
                                               endpoint=True)  # fmt: skip
    base = step.states(raw)
    x, u, buf = step.copy(base), 0, step.buffers(16)
    for target in moves:
        target = max(target, fam.lag)  # the first output is read at state `lag`
        x = step.move(x, base, u, target, buf)
        u = target
        got = step.residues(x, mod, buf, u).tolist()
        want = [raw_outputs(prng, int(s), 1, start=u - fam.lag)[0] % mod for s in raw]
        assert got == want, (u, prng)
    keep = np.array([1, 4, 9])
    kept = step.take(x, keep)
    assert step.residues(kept, mod, step.buffers(3), u).tolist() == [want[i] for i in keep]
