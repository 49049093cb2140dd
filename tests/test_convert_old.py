"""`winopt convert` of old-pipeline survivors files (issue 10, SPEC §3): every file the old
converter (convert_survivors_to_binary.py v3.1) converted converts, to the values it wrote,
with winopt's documented differences (exact 64-bit seeds, `_hybrid` coded as its base
family, `skip` defaulted to `skip_min`) and one warning line naming what was defaulted.

The expected arrays are written out literally (the hand-written file) or computed from the
parameters each record was generated from (the property test): never by the converter's
own parsing code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from winopt.cli import main
from winopt.contracts.schemas import NPZ_ARRAYS, NPZ_META_NAME, NPZ_NAME, SURVIVORS_NAME
from winopt.handlers.convert.to_npz import convert

#: the old converter's code table plus winopt's new families (SPEC §3), written out
CODES = {
    "java_lcg": 0, "java_lcg_reverse": 1, "mt19937": 2, "mt19937_reverse": 3,
    "xorshift128": 4, "xorshift128_reverse": 5, "lcg32": 6, "lcg32_reverse": 7,
    "minstd": 8, "minstd_reverse": 9, "randu": 10, "randu_reverse": 11,
    "xorshift32": 12, "xorshift64": 13, "pcg32": 14, "xoshiro256pp": 15,
    "philox4x32": 16, "sfc64": 17,
}  # fmt: skip

OVERLAP = (
    "intersection_count",
    "intersection_ratio",
    "forward_only_count",
    "reverse_only_count",
    "survivor_overlap_ratio",
    "bidirectional_selectivity",
    "intersection_weight",
)

# Six records of the shapes the old pipeline wrote:
# 0: its v3.1 constant-skip block (every field but `skip`; skip_range an int; extra keys);
# 1: its accumulator path (skip_range "min-max", a _hybrid name, variable skip, a 64-bit
#    seed, no bidirectional_selectivity, sessions as a string);
# 2: a _reverse family, skip_range a [min, max] list, float counts, no reverse rate, no score;
# 3: only a seed and prng_base: every default;
# 4: no prng_type nor prng_base (java_lcg), no forward rate, skip_range unreadable ("a-b");
# 5: skip_range a string without "-", a skip given, skip_mode constant.
OLD_FILE: list[dict[str, Any]] = [
    {
        "seed": 123456789,
        "forward_match_rate": 0.8,
        "reverse_match_rate": 0.6,
        "score": 0.7,
        "window_size": 12,
        "offset": 5,
        "skip_min": 3,
        "skip_max": 40,
        "skip_range": 37,
        "sessions": ["midday", "evening"],
        "trial_number": 17,
        "prng_base": "java_lcg",
        "skip_mode": "constant",
        "prng_type": "java_lcg",
        "forward_count": 5000,
        "reverse_count": 4000,
        "bidirectional_count": 25,
        "intersection_count": 25,
        "intersection_ratio": 0.0028,
        "forward_only_count": 4975,
        "reverse_only_count": 3975,
        "survivor_overlap_ratio": 0.005,
        "bidirectional_selectivity": 1.25,
        "intersection_weight": 0.00277,
    },
    {
        "seed": 2**40 + 7,
        "forward_match_rate": 1.0,
        "reverse_match_rate": 0.9,
        "score": 0.95,
        "window_size": 9,
        "offset": 0,
        "skip_min": 2,
        "skip_max": 11,
        "trial_number": 3,
        "prng_type": "lcg32_hybrid",
        "prng_base": "lcg32",
        "skip_mode": "variable",
        "forward_count": 300,
        "reverse_count": 200,
        "bidirectional_count": 12,
        "forward_only_count": 290,
        "reverse_only_count": 190,
        "intersection_count": 10,
        "intersection_ratio": 0.02,
        "survivor_overlap_ratio": 0.033,
        "intersection_weight": 0.02,
        "sessions": "all",
        "skip_range": "2-11",
    },
    {
        "seed": 4294967295,
        "forward_match_rate": 0.55,
        "window_size": 20,
        "offset": 7,
        "skip_min": 0,
        "skip_max": 100,
        "skip_range": [0, 100],
        "trial_number": 8,
        "prng_type": "mt19937_reverse",
        "forward_count": 1234.0,
        "reverse_count": 987.5,
        "bidirectional_count": 3.0,
    },
    {"seed": 0, "prng_base": "minstd"},
    {
        "seed": 99,
        "reverse_match_rate": 0.25,
        "skip_min": 4,
        "skip_max": 6,
        "skip_range": "a-b",
        "window_size": 5,
    },
    {
        "seed": 2**64 - 1,
        "skip": 9,
        "forward_match_rate": 0.5,
        "reverse_match_rate": 0.5,
        "score": 0.5,
        "skip_min": 1,
        "skip_max": 13,
        "skip_range": "12",
        "prng_type": "xorshift64",
        "skip_mode": "constant",
    },
]

#: what each array must hold for OLD_FILE: the old converter's values, except seeds (exact
#: uint64; it truncated to uint32), prng_type of row 1 (lcg32's 6; it wrote 0) and `skip`
#: (it wrote none; winopt: skip_min, else 0)
EXPECTED: dict[str, tuple[str, list[Any]]] = {
    "seeds": ("uint64", [123456789, 2**40 + 7, 4294967295, 0, 99, 2**64 - 1]),
    "forward_matches": ("float32", [0.8, 1.0, 0.55, 0.0, 0.25, 0.5]),
    "reverse_matches": ("float32", [0.6, 0.9, 0.55, 0.0, 0.25, 0.5]),
    "score": ("float32", [0.7, 0.95, 0.0, 0.0, 0.0, 0.5]),
    "skip": ("int32", [3, 2, 0, 0, 4, 9]),
    "window_size": ("int32", [12, 9, 20, 0, 5, 0]),
    "offset": ("int32", [5, 0, 7, 0, 0, 0]),
    "trial_number": ("int32", [17, 3, 8, 0, 0, 0]),
    "skip_min": ("int32", [3, 2, 0, 0, 4, 1]),
    "skip_max": ("int32", [40, 11, 100, 0, 6, 13]),
    "skip_range": ("int32", [37, 9, 100, 0, 0, 12]),
    "forward_count": ("float32", [5000, 300, 1234, 0, 0, 0]),
    "reverse_count": ("float32", [4000, 200, 987.5, 0, 0, 0]),
    "bidirectional_count": ("float32", [25, 12, 3, 0, 0, 0]),
    "intersection_count": ("float32", [25, 10, 0, 0, 0, 0]),
    "intersection_ratio": ("float32", [0.0028, 0.02, 0, 0, 0, 0]),
    "forward_only_count": ("float32", [4975, 290, 0, 0, 0, 0]),
    "reverse_only_count": ("float32", [3975, 190, 0, 0, 0, 0]),
    "survivor_overlap_ratio": ("float32", [0.005, 0.033, 0, 0, 0, 0]),
    "bidirectional_selectivity": ("float32", [1.25, 0, 0, 0, 0, 0]),
    "intersection_weight": ("float32", [0.00277, 0.02, 0, 0, 0, 0]),
    "skip_mode": ("uint8", [0, 1, 0, 0, 0, 0]),
    "prng_type": ("uint8", [0, 6, 3, 8, 0, 13]),
}

WARNING = (  # counted by hand from OLD_FILE; fields defaulted alike share a group
    "old-pipeline survivors (6 records): "
    "defaulted skip (to skip_min) on 5; "  # rows 0-4
    "forward_match_rate (to reverse_match_rate, else 0) on 2; "  # rows 3, 4
    "reverse_match_rate (to forward_match_rate, else 0) on 2; "  # rows 2, 3
    "score, offset, trial_number, forward_count, reverse_count, bidirectional_count "
    "(to 0) on 3; "  # rows 2-4 / 3-5
    "window_size, skip_range (to 0) on 2; "  # rows 3, 5 / 3 and 4 ("a-b")
    "skip_min, skip_max (to 0) on 1; "  # row 3
    "prng_type (to prng_base, else java_lcg) on 2; "  # rows 3, 4
    "skip_mode (to constant) on 3; "  # rows 2-4
    "intersection_count, intersection_ratio, forward_only_count, reverse_only_count, "
    "survivor_overlap_ratio, intersection_weight (to 0) on 4; "  # rows 2-5
    "bidirectional_selectivity (to 0) on 5; "  # rows 1-5
    "prng_type lcg32_hybrid coded as lcg32 (6)"
)


def write(path: Path, rows: object) -> Path:
    path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return path


def load(npz: Path) -> dict[str, np.ndarray]:
    with np.load(npz, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def assert_arrays(arrays: dict[str, np.ndarray], expected: dict[str, tuple[str, list]]) -> None:
    assert set(arrays) == set(expected) == set(NPZ_ARRAYS)
    for name, (dtype, values) in expected.items():
        assert arrays[name].dtype == np.dtype(dtype), name
        assert arrays[name].tolist() == np.array(values, dtype=dtype).tolist(), name


def test_old_file_converts_to_the_old_converters_values(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, OLD_FILE)
    result = convert(src)
    assert result.converted and result.count == 6
    assert_arrays(load(result.npz_path), EXPECTED)
    assert result.warnings == [WARNING]
    assert result.meta["warnings"] == [WARNING]
    assert orjson.loads((tmp_path / NPZ_META_NAME).read_bytes())["warnings"] == [WARNING]


def test_cli_prints_the_one_warning_line_to_stderr(tmp_path, capsys):
    src = write(tmp_path / SURVIVORS_NAME, OLD_FILE)
    assert main(["convert", str(src)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"converted 6 survivors -> {tmp_path / NPZ_NAME} ")
    assert err == f"winopt: warning: {src}: {WARNING}\n"
    assert main(["convert", str(src), "--if-stale"]) == 0  # up to date: said once is enough
    out, err = capsys.readouterr()
    assert out.startswith("up to date: ") and err == ""


def test_up_to_date_result_still_carries_the_warning(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, OLD_FILE)
    convert(src)
    again = convert(src, if_stale=True)
    assert not again.converted and again.warnings == [WARNING]


def test_v31_constant_block_only_lacks_skip(tmp_path):
    """What the old Step 1 (integration v3.1) wrote for constant skips: every field but
    `skip`, which the warning names alone."""
    rows = [{**OLD_FILE[0], "seed": s} for s in (1, 2, 3)]
    result = convert(write(tmp_path / SURVIVORS_NAME, rows))
    assert result.warnings == [
        "old-pipeline survivors (3 records): defaulted skip (to skip_min) on all"
    ]
    arrays = load(result.npz_path)
    assert arrays["seeds"].dtype == np.uint32 and arrays["seeds"].tolist() == [1, 2, 3]
    assert arrays["skip"].tolist() == [3, 3, 3] and arrays["skip_range"].tolist() == [37] * 3


def test_seven_overlap_statistics_missing_are_named_together(tmp_path):
    row = {k: v for k, v in OLD_FILE[0].items() if k not in OVERLAP}
    result = convert(write(tmp_path / SURVIVORS_NAME, [{**row, "skip": 1}] * 4))
    assert result.warnings == [
        "old-pipeline survivors (4 records): defaulted the 7 overlap statistics (to 0) on all"
    ]
    assert all(load(result.npz_path)[name].tolist() == [0.0] * 4 for name in OVERLAP)


def test_a_winopt_row_among_old_ones_keeps_its_values(tmp_path):
    winopt_row = {
        **{k: v for k, v in OLD_FILE[0].items() if k not in ("sessions", "prng_base")},
        "seed": 5,
        "skip": 21,
        "skip_range": 37,
        "time_of_day": "evening",
    }
    result = convert(write(tmp_path / SURVIVORS_NAME, [winopt_row, OLD_FILE[3]]))
    arrays = load(result.npz_path)
    assert arrays["skip"].tolist() == [21, 0] and arrays["prng_type"].tolist() == [0, 8]
    assert arrays["score"].tolist() == np.array([0.7, 0.0], np.float32).tolist()
    assert result.warnings and result.warnings[0].startswith("old-pipeline survivors (2 records): ")


# --- property test: any old-style file, against an independent reference ------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
NUMBER = st.one_of(st.integers(-(2**53), 2**53), st.floats(-1e30, 1e30, allow_nan=False))
RATE = st.floats(0.0, 1.0)
MISSING = None  # a field the record leaves out


@st.composite
def skip_range_field(draw: st.DrawFn) -> tuple[Any, int]:
    """(the value as written, the int the old converter read from it)."""
    a, b = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    return draw(
        st.sampled_from(
            [
                (b - a, b - a),
                ([a, b], b - a),
                (f"{a}-{b}", b - a),
                (str(b), b),
                ("n/a", 0),
                (None, 0),
                (MISSING, 0),
            ]
        )
    )


@st.composite
def old_record(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """An old-pipeline record and the value each array must hold for it."""
    seed = draw(st.integers(0, 2**64 - 1))
    rec: dict[str, Any] = {"seed": seed}
    want: dict[str, Any] = {"seeds": seed}

    def maybe(key: str, strategy: st.SearchStrategy, default: Any) -> Any:
        value = draw(st.one_of(st.just(MISSING), strategy))
        if value is not MISSING:
            rec[key] = value
        return default if value is MISSING else value

    fwd = maybe("forward_match_rate", RATE, MISSING)
    rev = maybe("reverse_match_rate", RATE, MISSING)
    want["forward_matches"] = fwd if fwd is not MISSING else (rev if rev is not MISSING else 0.0)
    want["reverse_matches"] = rev if rev is not MISSING else (fwd if fwd is not MISSING else 0.0)
    want["score"] = maybe("score", NUMBER, 0.0)
    for key in ("window_size", "offset", "trial_number", "skip_min", "skip_max"):
        want[key] = maybe(key, INT32, 0)
    want["skip"] = maybe("skip", st.integers(0, 2**31 - 1), want["skip_min"])
    written, read = draw(skip_range_field())
    if written is not MISSING:
        rec["skip_range"] = written
    want["skip_range"] = read
    for key in ("forward_count", "reverse_count", "bidirectional_count", *OVERLAP):
        want[key] = maybe(key, NUMBER, 0.0)
    want["skip_mode"] = {"constant": 0, "variable": 1}[
        maybe("skip_mode", st.sampled_from(["constant", "variable"]), "constant")
    ]
    names = st.sampled_from([*CODES, *(n + "_hybrid" for n in CODES)])
    base = maybe("prng_base", names, "java_lcg")
    family = maybe("prng_type", names, base)
    want["prng_type"] = CODES[family.removesuffix("_hybrid")]
    if draw(st.booleans()):
        rec["sessions"] = draw(st.sampled_from([["midday", "evening"], "all", ["midday"]]))
    return rec, want


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(old_record(), max_size=12))
def test_any_old_file_converts_to_the_reference_values(tmp_path, records):
    src = write(tmp_path / SURVIVORS_NAME, [rec for rec, _ in records])
    result = convert(src)
    arrays = load(result.npz_path)
    seeds = [want["seeds"] for _, want in records]
    seed_dtype = "uint64" if seeds and max(seeds) >= 2**32 else "uint32"
    expected = {
        name: (seed_dtype if name == "seeds" else dtype, [want[name] for _, want in records])
        for name, (dtype, _) in NPZ_ARRAYS.items()
    }
    assert_arrays(arrays, expected)
    assert len(result.warnings) <= 1


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({"seed": 1, "forward_match_rate": 1.01}, "entry 0, forward_match_rate"),
        ({"seed": 1, "prng_type": "java_lcg_hybrid_hybrid"}, "unknown PRNG family"),
        ({"seed": 1, "window_size": 2**31}, "entry 0, window_size"),
        ({"seed": 1, "skip": -1}, "entry 0, skip"),
        ({"seed": 1, "score": "0.5"}, "entry 0, score"),
        ({"seed": 1, "skip_range": 2**31}, "entry 0, skip_range"),
    ],
)
def test_truly_bad_old_records_are_one_line(tmp_path, capsys, record, words):
    src = write(tmp_path / SURVIVORS_NAME, [record])
    assert main(["convert", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"winopt: error: {src}: ") and words in err, err
