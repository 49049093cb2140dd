"""The bidirectional sieve (SPEC §1): planted seeds are found exactly, the fast sieve
equals the deliberately simple reference on random problems, parameters are checked, and
memory does not grow with the seed count."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from winopt.contracts.errors import UserError
from winopt.optimizer.sieve.generators import FAMILIES, family, predicted_draws, raw_outputs
from winopt.optimizer.sieve.reference import run_reference
from winopt.optimizer.sieve.core import SieveParams, SieveResult, run_sieve


def planted_history(prng: str, seed: int, skip: int, n: int, mod: int = 1000) -> np.ndarray:
    """Draws 0..n-1 of the hypothesis (seed, skip), spelt out from the raw outputs the
    rigs' reference gives: draw j is y_{skip + j(skip + 1)} mod `mod`."""
    outputs = raw_outputs(prng, seed, n * (skip + 1))
    return np.array([outputs[skip + j * (skip + 1)] % mod for j in range(n)])


def test_planted_history_is_the_predicted_draws() -> None:
    for prng in FAMILIES:
        assert planted_history(prng, 4321, 3, 12).tolist() == predicted_draws(prng, 4321, 3, 12, 1000)
        assert predicted_draws(prng, 4321, 3, 5, 1000, first=7) == planted_history(prng, 4321, 3, 12)[7:].tolist()


def assert_same(fast: SieveResult, ref: SieveResult) -> None:
    assert fast.params == ref.params
    assert fast.seeds.dtype == np.uint64 and fast.skips.dtype == np.int64
    assert fast.seeds.tolist() == ref.seeds.tolist()
    assert fast.skips.tolist() == ref.skips.tolist()
    assert fast.forward_rate.tolist() == ref.forward_rate.tolist()
    assert fast.reverse_rate.tolist() == ref.reverse_rate.tolist()
    assert (fast.forward_count, fast.reverse_count, fast.bidirectional_count) == (
        ref.forward_count, ref.reverse_count, ref.bidirectional_count)  # fmt: skip
    assert fast.forward_reverse_count == ref.forward_reverse_count
    assert fast.bidirectional_count <= fast.forward_reverse_count <= min(fast.forward_count, fast.reverse_count)
    assert fast.bidirectional_count == len(fast.seeds)
    assert fast.expected_chance_bidirectional == ref.expected_chance_bidirectional
    assert fast.notes == ref.notes


# --- planted recovery -------------------------------------------------------------------

PLANTS = [  # (state, skip, window, pivot, thresholds)
    (123457, 3, 6, 20, (1.0, 1.0)),
    (98765, 0, 10, 12, (0.7, 0.6)),
    (5_000_017, 7, 4, 40, (1.0, 1.0)),
]


@pytest.mark.parametrize("prng", FAMILIES)
@pytest.mark.parametrize(("state", "skip", "window", "pivot", "thresholds"), PLANTS)
def test_planted_state_is_found_alone(
    prng: str, state: int, skip: int, window: int, pivot: int, thresholds: tuple[float, float]
) -> None:
    draws = planted_history(prng, state, skip, pivot + window + 9)
    params = SieveParams(prng, window, pivot - window, 0, 9, *thresholds,
                         seed_start=state - 2000, seed_count=4000)  # fmt: skip
    result = run_sieve(draws, params)
    assert result.seeds.tolist() == [state]
    assert result.skips.tolist() == [skip]
    assert result.forward_rate.tolist() == [1.0] and result.reverse_rate.tolist() == [1.0]
    assert result.forward_count == result.reverse_count == result.bidirectional_count == 1
    assert result.notes == []


@pytest.mark.parametrize("prng", ["java_lcg", "xorshift64", "pcg32"])
def test_planted_state_with_a_large_skip_and_window(prng: str) -> None:
    """Skips in the hundreds and W = 30 (the optimizer's range), lenient thresholds."""
    state, skip, window, pivot = 2**40 + 11, 180, 30, 35
    draws = planted_history(prng, state, skip, 70)
    params = SieveParams(prng, window, pivot - window, 170, 190, 0.3, 0.3,
                         seed_start=state - 300, seed_count=600)  # fmt: skip
    result = run_sieve(draws, params)
    assert (result.seeds.tolist(), result.skips.tolist()) == ([state], [skip])
    assert (result.forward_rate[0], result.reverse_rate[0]) == (1.0, 1.0)


def test_best_skip_is_the_highest_score_then_the_smaller_skip() -> None:
    """skip 0 and skip 1 of one seed: a constant history (mod 1) makes every skip pass
    at 1.0 both ways, so the tie goes to skip_min; with a planted skip 2 in a larger mod
    the planted skip wins over partial matches."""
    draws = np.zeros(20, dtype=np.int64)
    tie = run_sieve(draws, SieveParams("minstd", 5, 0, 3, 6, 0.0, 0.0, 10, 3, mod=1))
    assert tie.seeds.tolist() == [10, 11, 12] and tie.skips.tolist() == [3, 3, 3]
    planted = planted_history("lcg32", 777, 2, 20, mod=2)
    result = run_sieve(planted, SieveParams("lcg32", 8, 2, 0, 4, 0.0, 0.0, 777, 1, mod=2))
    assert result.skips.tolist() == [2]
    assert run_reference(planted, result.params).skips.tolist() == [2]


def test_offset_is_clamped_and_said() -> None:
    draws = planted_history("java_lcg", 4242, 1, 100)
    result = run_sieve(draws, SieveParams("java_lcg", 10, 95, 0, 3, 1.0, 1.0, 4000, 500))
    assert result.params.offset == 80
    assert result.notes == ["offset 95 clamped to 80 (history has 100 draws)"]
    assert result.seeds.tolist() == [4242] and result.skips.tolist() == [1]


# --- fast == reference ------------------------------------------------------------------


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, SieveParams, int]:
    prng = draw(st.sampled_from(FAMILIES))
    window = draw(st.integers(1, 7))
    mod = draw(st.integers(1, 12))
    n = 2 * window + draw(st.integers(0, 6))
    skip_min = draw(st.integers(0, 4))
    skip_max = skip_min + draw(st.integers(0, 5))
    threshold = st.one_of(st.sampled_from([0.0, 0.3, 0.5, 1 / 3, 2 / 3, 1.0]), st.floats(0, 1))
    space = family(prng).seed_space
    seed_start = draw(st.one_of(st.integers(0, min(2**33, space - 300)), st.just(space - 300)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    if draw(st.booleans()):  # chance hits only
        draws = rng.integers(0, mod, n)
    else:  # a planted seed in range, with a few draws overwritten
        plant_skip = draw(st.integers(skip_min, skip_max))
        draws = planted_history(prng, seed_start + 17, plant_skip, n, mod)
        noisy = rng.random(n) < 0.2
        draws[noisy] = rng.integers(0, mod, int(noisy.sum()))
    params = SieveParams(prng, window, draw(st.integers(0, n)), skip_min, skip_max,
                         draw(threshold), draw(threshold), seed_start, draw(st.integers(1, 300)),
                         mod)  # fmt: skip
    return draws, params, draw(st.integers(1, 400))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_fast_sieve_equals_reference(problem: tuple[np.ndarray, SieveParams, int]) -> None:
    draws, params, chunk = problem
    assert_same(run_sieve(draws, params, chunk_size=chunk), run_reference(draws, params))


@pytest.mark.parametrize("prng", FAMILIES)
def test_fast_equals_reference_on_many_chance_survivors(prng: str) -> None:
    """Small mod and W: thousands of chance survivors with varied skips and rates, across
    chunk boundaries and through early rejection (k between 1 and W)."""
    rng = np.random.default_rng(3)
    draws = rng.integers(0, 5, 30)
    params = SieveParams(prng, 6, 5, 1, 9, 0.5, 0.5, 2**31 - 4000, 3000, mod=5)
    fast = run_sieve(draws, params, chunk_size=1024)
    ref = run_reference(draws, params)
    assert_same(fast, ref)
    assert fast.bidirectional_count > 100 and len(set(fast.skips.tolist())) > 5


@pytest.mark.stress
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_fast_sieve_equals_reference_stress(problem: tuple[np.ndarray, SieveParams, int]) -> None:
    draws, params, chunk = problem
    assert_same(run_sieve(draws, params, chunk_size=chunk), run_reference(draws, params))


def test_windows_beyond_255_draws_count_without_overflow() -> None:
    """W = 260 needs 16-bit match counts: with mod 1 every draw matches, so every seed
    passes at 1.0 only if the counts reach 260."""
    draws = np.zeros(600, dtype=np.int64)
    params = SieveParams("xorshift64", 260, 3, 0, 1, 1.0, 1.0, 5, 40, mod=1)
    result = run_sieve(draws, params, chunk_size=16)
    assert result.seeds.tolist() == list(range(5, 45))
    assert set(result.forward_rate.tolist()) == {1.0} and set(result.skips.tolist()) == {0}
    assert_same(result, run_reference(draws, params))


# --- chunks, progress, memory -------------------------------------------------------------


def test_chunking_changes_nothing_and_progress_counts_every_seed() -> None:
    rng = np.random.default_rng(5)
    draws = rng.integers(0, 5, 40)
    params = SieveParams("xorshift32", 5, 10, 0, 6, 0.6, 0.6, 1, 5000, mod=5)
    calls: list[int] = []
    small = run_sieve(draws, params, chunk_size=999, progress=calls.append)
    assert calls == [999] * 5 + [5]
    whole = run_sieve(draws, params, chunk_size=10_000)
    assert_same(small, whole)
    assert small.bidirectional_count > 0


@pytest.mark.parametrize("prng", ["java_lcg", "xorshift64", "mt19937", "philox4x32"])
def test_any_number_of_cores_and_any_chunk_size_give_identical_results(prng: str) -> None:
    """Chunks finish in any order on several threads; the result is merged in seed order,
    so one core, all cores and odd chunk sizes agree exactly, and progress counts every
    seed once."""
    draws = np.random.default_rng(11).integers(0, 6, 40)
    params = SieveParams(prng, 6, 8, 0, 7, 0.5, 0.5, 3, 9000, mod=6)
    one = run_sieve(draws, params, cores=1)
    calls: list[int] = []
    many = run_sieve(draws, params, cores=4, chunk_size=701, progress=calls.append)
    assert_same(many, one)
    assert sum(calls) == 9000 and len(calls) == -(-9000 // 701)
    assert_same(run_sieve(draws, params, chunk_size=2048), one)  # the default: every core
    assert one.bidirectional_count > 10


def test_cores_below_one_is_a_user_error() -> None:
    with pytest.raises(UserError, match="--cores must be at least 1"):
        run_sieve(np.zeros(20, dtype=np.int64), GOOD, cores=0)


def test_a_stop_from_progress_ends_the_sieve_and_its_chunks() -> None:
    """What Ctrl-C and `optimize`'s stop do: the exception raised in the progress callback
    leaves run_sieve at once, nothing more is started, and the chunks still running in the
    worker processes stop at their next visit (the pool soon has nothing in flight)."""
    import time

    from winopt.optimizer.sieve import parallel

    class Stop(Exception):
        pass

    calls: list[int] = []

    def progress(n: int) -> None:
        calls.append(n)
        if len(calls) == 3:
            raise Stop

    draws = np.random.default_rng(12).integers(0, 1000, 60)
    params = SieveParams("java_lcg", 8, 10, 0, 20, 0.5, 0.5, 0, 10_000_000)
    with pytest.raises(Stop):
        run_sieve(draws, params, cores=2, chunk_size=1000, progress=progress)
    assert len(calls) == 3
    deadline = time.monotonic() + 10.0  # milliseconds on a quiet box; 10**4 chunks left would take far longer
    while parallel.in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert parallel.in_flight() == 0


def test_memory_does_not_grow_with_seed_count() -> None:
    """Peak traced memory for 64 chunks is that of 4 chunks (plus the survivor list) in
    one process; with worker processes the parent's peak for 256 chunks is that of 64
    (at most two chunks per worker in flight; the chunks' arrays live in the workers).

    "That of" allows 128 bytes per added chunk: the executor's bookkeeping jitters by some
    kilobytes under load, while a per-chunk leak is far larger (a chunk's smallest array
    is 16 KiB, an extra future in flight about 1 KiB). Each peak is the lower of two runs,
    so a one-off lazy allocation is not counted as growth."""
    draws = np.random.default_rng(9).integers(0, 1000, 60)

    def peak(count: int, cores: int) -> int:
        seen = []
        for _ in range(2):
            tracemalloc.start()
            try:
                run_sieve(draws, SieveParams("java_lcg", 8, 10, 0, 20, 0.5, 0.5, 0, count),
                          chunk_size=2048, cores=cores)  # fmt: skip
                seen.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
        return min(seen)

    def flat(chunks: tuple[int, int], cores: int) -> None:
        small, large = (peak(n * 2048, cores) for n in chunks)
        assert large < 1.05 * small + 128 * (chunks[1] - chunks[0]), (small, large)

    flat((4, 64), 1)
    peak(16 * 2048, 2)  # the pool started, the workers' caches warm
    flat((64, 256), 2)


# --- parameters -----------------------------------------------------------------------------

GOOD = SieveParams("java_lcg", 5, 0, 0, 3, 0.5, 0.5, 0, 10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prng": "randu"}, "unknown prng 'randu'"),
        ({"window_size": 0}, "window_size must be >= 1"),
        ({"window_size": 11}, "history has 20 draws; window_size 11 needs at least 22"),
        ({"skip_min": 4, "skip_max": 3}, "skip_max 3 is below skip_min 4"),
        ({"forward_threshold": 1.5}, "forward_threshold must be in [0, 1]"),
        ({"reverse_threshold": float("nan")}, "reverse_threshold must be in [0, 1]"),
        ({"offset": -1}, "offset must be >= 0"),
        ({"seed_start": 2**48 - 5}, "reaches past java_lcg's 2^48 seeds"),
        ({"prng": "xorshift32", "seed_start": 2**32 - 9}, "reaches past xorshift32's 2^32 seeds"),
        ({"prng": "minstd", "seed_start": 2**31 - 2}, "reaches past minstd's 2^31-1 seeds"),
        ({"prng": "xorshift64", "seed_start": 2**64 - 5}, "reaches past xorshift64's 2^64 seeds"),
        ({"mod": 0}, "mod must be in [1, 2^32]"),
    ],
)
def test_impossible_parameters_are_user_errors(change: dict, message: str) -> None:
    params = SieveParams(**{**GOOD.__dict__, **change})
    with pytest.raises(UserError) as err:
        run_sieve(np.zeros(20, dtype=np.int64), params)
    assert message in str(err.value)


def test_a_draw_outside_the_mod_is_a_user_error() -> None:
    draws = np.array([1] * 10 + [1000] + [2] * 9)
    with pytest.raises(UserError, match=r"draw 1000 at index 10 is outside \[0, 1000\)"):
        run_sieve(draws, GOOD)


def test_zero_seeds_give_an_empty_result() -> None:
    result = run_sieve(np.zeros(20, dtype=np.int64), SieveParams(**{**GOOD.__dict__, "seed_count": 0}))
    assert result.seeds.size == 0 and result.bidirectional_count == result.forward_count == 0
    assert result.expected_chance_bidirectional == 0.0


# --- device switch ----------------------------------------------------------------------------


def test_device_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """cpu always works; gpu without CuPy and a device is a clear error, not a silent
    CPU run; nonsense is refused; auto falls back to NumPy here."""
    pytest.importorskip("numpy")
    draws = planted_history("pcg32", 99, 1, 20)
    params = SieveParams("pcg32", 5, 5, 0, 2, 1.0, 1.0, 90, 20)
    monkeypatch.setenv("WINOPT_DEVICE", "cpu")
    assert run_sieve(draws, params).seeds.tolist() == [99]
    monkeypatch.setenv("WINOPT_DEVICE", "quantum")
    with pytest.raises(UserError, match="WINOPT_DEVICE='quantum'"):
        run_sieve(draws, params)
    assert run_sieve(draws, params, device="auto").seeds.tolist() == [99]
    try:
        import cupy  # noqa: F401

        has_cupy = True
    except ImportError:
        has_cupy = False
    if not has_cupy:
        with pytest.raises(UserError, match="GPU requested"):
            run_sieve(draws, params, device="gpu")
