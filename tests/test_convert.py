"""`winopt convert`: survivors JSON -> NPZ + meta (SPEC §3), on real files, real locks and
the real command line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np
import orjson
import pytest

from test_convert_old import CODES
from winopt.cli import main
from winopt.contracts.locks import lock_for, lock_path
from winopt.contracts.publish import sha256_file
from winopt.contracts.schemas import (
    NPZ_ARRAYS,
    NPZ_META_NAME,
    NPZ_NAME,
    NPZ_SCHEMA_VERSION,
    OVERLAP_FIELDS,
    PRNG_CODES,
    PRNG_TYPE_CODES,
    SKIP_MODES,
    SURVIVORS_NAME,
)
from winopt.contracts.survivors import SURVIVOR_FIELDS, Survivor
from winopt.contracts.errors import UserError
from winopt.handlers.convert import to_npz as convert_module
from winopt.handlers.convert.to_npz import SurvivorsInFlux, convert, is_stale

FLOAT_FIELDS = ("forward_match_rate", "reverse_match_rate", "score")


def survivor(seed: int, **over: object) -> dict:
    """One SPEC §3 survivor object, every field present."""
    row = {
        "seed": seed,
        "skip": seed % 7,
        "forward_match_rate": 0.75,
        "reverse_match_rate": 0.5,
        "score": 0.625,
        "window_size": 8,
        "offset": 3,
        "skip_min": 0,
        "skip_max": 10,
        "skip_range": 10,
        "time_of_day": "midday",
        "trial_number": 4,
        "prng_type": "java_lcg",
        "skip_mode": "constant",
        "forward_count": 120,
        "reverse_count": 90,
        "bidirectional_count": 3,
        "intersection_count": 3,
        "intersection_ratio": 3 / 207,
        "forward_only_count": 117,
        "reverse_only_count": 87,
        "survivor_overlap_ratio": 3 / 120,
        "bidirectional_selectivity": 120 / 90,
        "intersection_weight": 3 / 210,
    }
    row.update(over)
    return row


def write(path: Path, rows: object) -> Path:
    path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return path


def varied_rows() -> list[dict]:
    """Rows that differ in every field, so a column mix-up cannot pass; every code name of
    the NPZ table appears across the rows."""
    families = list(PRNG_TYPE_CODES)
    return [
        survivor(
            seed,
            skip=i,
            forward_match_rate=i / 10,
            reverse_match_rate=1 - i / 10,
            score=0.5,
            window_size=10 + i,
            offset=20 + i,
            skip_min=i,
            skip_max=30 + i,
            skip_range=31,
            trial_number=40 + i,
            prng_type=families[i % len(families)],
            forward_count=1000 + i,
            reverse_count=2000 + i,
            bidirectional_count=7 + i,
            skip_mode=("constant", "variable")[i % 2],
            **{name: 0.125 * (i + 1) + j for j, name in enumerate(OVERLAP_FIELDS)},
        )
        for i, seed in enumerate([5, 17, 2**31, 99_999, 12345, 2**32 - 1, 0])
    ]


def load(npz: Path) -> dict[str, np.ndarray]:
    with np.load(npz, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def test_round_trip_every_field_and_dtype(tmp_path):
    rows = varied_rows()
    src = write(tmp_path / SURVIVORS_NAME, rows)
    result = convert(src)
    assert result.converted and result.count == len(rows) and result.warnings == []
    assert result.npz_path == tmp_path / NPZ_NAME and result.meta_path == tmp_path / NPZ_META_NAME
    arrays = load(result.npz_path)
    assert set(arrays) == set(NPZ_ARRAYS) and len(arrays) == 23
    assert set(OVERLAP_FIELDS) <= set(arrays)
    for name, (dtype, key) in NPZ_ARRAYS.items():
        array = arrays[name]
        assert array.shape == (len(rows),), name
        if name == "seeds":
            assert array.dtype == np.uint32  # every seed < 2**32
            assert array.tolist() == [r["seed"] for r in rows]
        elif key == "prng_type":
            assert array.dtype == np.uint8
            assert array.tolist() == [0, 1, 2, 3, 4, 5, 6]  # java_lcg .. xorshift128_reverse
        elif key == "skip_mode":
            assert array.dtype == np.uint8 and array.tolist() == [0, 1, 0, 1, 0, 1, 0]
        else:
            assert array.dtype == np.dtype(dtype), name
            assert np.array_equal(array, np.array([r[key] for r in rows], dtype=dtype)), name


def test_meta_describes_source_and_npz(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    result = convert(src)
    meta = orjson.loads(result.meta_path.read_bytes())
    assert meta == result.meta
    st = src.stat()
    assert meta["schema_version"] == NPZ_SCHEMA_VERSION and meta["count"] == 7
    assert meta["source"]["sha256"] == sha256_file(src)
    assert meta["source"]["size"] == st.st_size and meta["source"]["mtime_ns"] == st.st_mtime_ns
    assert meta["source"]["name"] == SURVIVORS_NAME
    assert meta["npz_sha256"] == sha256_file(result.npz_path)
    assert meta["encodings"]["dtypes"]["seeds"] == "uint32"
    assert meta["encodings"]["dtypes"]["score"] == "float32"
    assert meta["encodings"]["prng_type"] == PRNG_TYPE_CODES
    assert meta["encodings"]["skip_mode"] == SKIP_MODES == {"constant": 0, "variable": 1}
    assert meta["warnings"] == []
    assert datetime.fromisoformat(meta["converted_at"]).utcoffset() is not None


def test_meta_lists_every_code_0_to_17(tmp_path):
    """The rigs' loader knows codes 0-11: the meta's table teaches it the rest (SPEC §3),
    with the old pipeline's codes unchanged."""
    src = write(tmp_path / SURVIVORS_NAME, [survivor(1)])
    codes = convert(src).meta["encodings"]["prng_type"]
    assert sorted(codes.values()) == list(range(18))
    assert codes == CODES  # the table written out, in test_convert_old
    assert set(PRNG_CODES) <= set(codes)  # winopt's families are a subset, same codes
    assert all(codes[name] == code for name, code in PRNG_CODES.items())


@pytest.mark.parametrize("name", list(PRNG_TYPE_CODES))
def test_every_code_converts(tmp_path, name):
    src = write(tmp_path / SURVIVORS_NAME, [survivor(1, prng_type=name)] * 2)
    result = convert(src)
    assert load(result.npz_path)["prng_type"].tolist() == [PRNG_TYPE_CODES[name]] * 2
    assert result.warnings == []


def test_npz_is_the_rigs_v3_format(tmp_path):
    """The rigs' loader calls an NPZ its v3 format when it holds skip_min, skip_max,
    forward_count and bidirectional_count (utils/survivor_loader.py, detect_npz_version),
    and needs `seeds`; it opens the NPZ with pickling allowed, winopt's needs none."""
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    arrays = load(convert(src).npz_path)  # allow_pickle=False
    assert {"seeds", "skip_min", "skip_max", "forward_count", "bidirectional_count"} <= set(arrays)
    assert all(a.dtype != object for a in arrays.values())


@pytest.mark.parametrize(
    "seeds",
    [[2**32], [1, 2**32 + 5], [2**63, 2**64 - 1], [0, 2**64 - 1, 2**53 + 1]],
    ids=["2^32", "mixed", "top", "no-float-round-trip"],
)
def test_large_seeds_are_uint64_and_exact(tmp_path, seeds):
    src = write(tmp_path / SURVIVORS_NAME, [survivor(s, prng_type="pcg32") for s in seeds])
    result = convert(src)
    array = load(result.npz_path)["seeds"]
    assert array.dtype == np.uint64
    assert [int(v) for v in array] == seeds
    assert result.meta["encodings"]["dtypes"]["seeds"] == "uint64"


def test_largest_uint32_seed_stays_uint32(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, [survivor(2**32 - 1)])
    assert load(convert(src).npz_path)["seeds"].dtype == np.uint32


def test_empty_list_gives_valid_empty_npz(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, [])
    result = convert(src)
    arrays = load(result.npz_path)
    assert set(arrays) == set(NPZ_ARRAYS)
    assert all(a.shape == (0,) for a in arrays.values())
    assert arrays["seeds"].dtype == np.uint32 and arrays["prng_type"].dtype == np.uint8
    assert result.count == 0 and result.meta["count"] == 0


def test_100k_rows_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    n = 100_000
    seeds = np.sort(rng.choice(2**62, size=n, replace=False).astype(np.uint64) + np.uint64(2**63))
    skips = rng.integers(0, 250, n)
    fwd = rng.integers(10, 41, n) / 40
    rev = rng.integers(10, 41, n) / 40
    rows = [
        survivor(
            int(s),
            skip=int(k),
            forward_match_rate=float(f),
            reverse_match_rate=float(r),
            score=float((f + r) / 2),
            prng_type="xorshift64",
            bidirectional_count=n,
        )
        for s, k, f, r in zip(seeds, skips, fwd, rev)
    ]
    src = write(tmp_path / SURVIVORS_NAME, rows)
    result = convert(src)
    arrays = load(result.npz_path)
    assert result.count == n and all(a.shape == (n,) for a in arrays.values())
    assert arrays["seeds"].dtype == np.uint64 and np.array_equal(arrays["seeds"], seeds)
    assert np.array_equal(arrays["skip"], skips.astype(np.int32))
    assert np.array_equal(arrays["forward_matches"], fwd.astype(np.float32))
    assert np.array_equal(arrays["score"], ((fwd + rev) / 2).astype(np.float32))
    assert set(arrays["prng_type"].tolist()) == {PRNG_CODES["xorshift64"]}
    assert set(arrays["bidirectional_count"].tolist()) == {float(n)}


def test_same_survivors_give_identical_npz_bytes(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    first = convert(src).npz_path.read_bytes()
    assert convert(src).npz_path.read_bytes() == first


def test_output_path_and_meta_beside_it(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    out = tmp_path / "out" / "rig.npz"
    out.parent.mkdir()
    result = convert(src, out)
    assert result.npz_path == out and result.meta_path == out.with_name("rig.meta.json")
    assert result.meta_path.exists() and len(load(out)["seeds"]) == 7


def test_lock_file_left_in_place_group_writable(tmp_path):
    old = os.umask(0o022)  # even under a strict umask
    try:
        src = write(tmp_path / SURVIVORS_NAME, varied_rows())
        result = convert(src)
    finally:
        os.umask(old)
    lock = lock_path(result.npz_path)
    assert lock.exists()
    assert lock.stat().st_mode & 0o060 == 0o060
    convert(src)
    assert lock.exists()


def test_no_temp_files_left(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    convert(src)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {SURVIVORS_NAME, NPZ_NAME, NPZ_META_NAME, NPZ_NAME + ".lock"}


# --- staleness ---------------------------------------------------------------------------


def test_is_stale_follows_the_source_sha256(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    assert is_stale(src)  # no NPZ, no meta
    convert(src)
    assert not is_stale(src)
    os.utime(src, ns=(1, 1))  # same bytes, other mtime: still fresh (sha decides)
    assert not is_stale(src)
    data = src.read_bytes()
    src.write_bytes(data.replace(b'"seed": 5,', b'"seed": 6,', 1))  # same size, new bytes
    assert src.stat().st_size == len(data)
    assert is_stale(src)


@pytest.mark.parametrize("damage", ["meta-missing", "meta-corrupt", "npz-missing", "npz-other"])
def test_is_stale_when_npz_or_meta_damaged(tmp_path, damage):
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    result = convert(src)
    if damage == "meta-missing":
        result.meta_path.unlink()
    elif damage == "meta-corrupt":
        result.meta_path.write_text("{not json")
    elif damage == "npz-missing":
        result.npz_path.unlink()
    else:  # a crash between the NPZ rename and the meta rename: new NPZ, old meta
        other = write(tmp_path / "other.json", [survivor(1)])
        convert(other, tmp_path / "x.npz")
        os.replace(tmp_path / "x.npz", result.npz_path)
    assert is_stale(src)


def test_npz_of_an_older_schema_is_stale(tmp_path):
    """An NPZ written before the overlap statistics (meta schema 1) is rebuilt from the
    same survivors after an upgrade: `--if-stale` and the daemon must not keep it."""
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    result = convert(src)
    meta = orjson.loads(result.meta_path.read_bytes())
    result.meta_path.write_bytes(orjson.dumps({**meta, "schema_version": NPZ_SCHEMA_VERSION - 1}))
    assert is_stale(src)
    again = convert(src, if_stale=True)
    assert again.converted and again.meta["schema_version"] == NPZ_SCHEMA_VERSION == 2
    assert not is_stale(src) and not convert(src, if_stale=True).converted


def test_if_stale_skips_up_to_date_and_converts_changed(tmp_path, capsys):
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    assert main(["convert", str(src), "--if-stale"]) == 0
    assert capsys.readouterr().out.startswith("converted 7 survivors -> ")
    npz = tmp_path / NPZ_NAME
    before = (npz.read_bytes(), npz.stat().st_mtime_ns, (tmp_path / NPZ_META_NAME).read_bytes())

    assert main(["convert", str(src), "--if-stale"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("up to date: ") and out.count("\n") == 1
    after = (npz.read_bytes(), npz.stat().st_mtime_ns, (tmp_path / NPZ_META_NAME).read_bytes())
    assert after == before

    write(src, varied_rows()[:3])
    assert main(["convert", str(src), "--if-stale"]) == 0
    assert capsys.readouterr().out.startswith("converted 3 survivors -> ")
    assert len(load(npz)["seeds"]) == 3


def test_cli_line_names_count_path_sha_and_time(tmp_path, capsys):
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    assert main(["convert", str(src), "-o", str(tmp_path / "o.npz")]) == 0
    line = capsys.readouterr().out.strip()
    sha = sha256_file(tmp_path / "o.npz")[:12]
    assert line.startswith(f"converted 7 survivors -> {tmp_path / 'o.npz'} (sha256 {sha}, ")
    assert line.endswith(" ms)")


def test_expected_sha256(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    with pytest.raises(SurvivorsInFlux):
        convert(src, expected_sha256="0" * 64)
    assert not (tmp_path / NPZ_NAME).exists()
    assert not issubclass(SurvivorsInFlux, UserError)
    result = convert(src, expected_sha256=hashlib.sha256(src.read_bytes()).hexdigest())
    assert result.converted


def test_in_flux_wins_over_a_parse_error(tmp_path):
    """A half-written file is "in flux" when the snapshot names another sha, not "bad"."""
    src = tmp_path / SURVIVORS_NAME
    src.write_text('[{"seed": 1')
    with pytest.raises(SurvivorsInFlux):
        convert(src, expected_sha256="0" * 64)


def test_concurrent_conversions_leave_a_consistent_pair(tmp_path):
    """Worker threads converting the same run at once: the lock serialises them, and the
    meta left describes the NPZ left."""
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                convert(src)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    meta = orjson.loads((tmp_path / NPZ_META_NAME).read_bytes())
    assert meta["npz_sha256"] == sha256_file(tmp_path / NPZ_NAME)
    assert not is_stale(src)


# --- bad input ---------------------------------------------------------------------------

GOOD = [survivor(1), survivor(2)]

BAD_INPUTS = {
    "not-json": (b"[{'seed': 1}]", "not valid JSON"),
    "empty-file": (b"", "not valid JSON"),
    "truncated": (orjson.dumps(GOOD)[:-5], "not valid JSON"),
    "not-a-list": (orjson.dumps({"seed": 1}), "not a list"),
    "missing-seed": (
        orjson.dumps([survivor(1), {k: v for k, v in survivor(2).items() if k != "seed"}]),
        "entry 1: object missing required field `seed`",
    ),
    "wrong-type": (
        orjson.dumps([survivor(1), survivor(2), {**survivor(7), "seed": "7"}]),
        "entry 2, seed: expected `int`, got `str`",
    ),
    "row-is-a-list": (
        orjson.dumps([survivor(1), [1, 2, 3]]),
        "entry 1: expected `object`, got `array`",
    ),
    "bool-as-int": (orjson.dumps([survivor(1, window_size=True)]), "entry 0, window_size"),
    "negative-seed": (orjson.dumps([survivor(-1)]), "entry 0, seed"),
    "seed-over-64-bits": (
        orjson.dumps([survivor(12345)]).replace(b"12345", b"18446744073709551616"),
        "entry 0, seed: 18446744073709551616 exceeds 2**64-1",
    ),
    "rate-above-1": (
        orjson.dumps([survivor(1, forward_match_rate=1.5)]),
        "entry 0, forward_match_rate",
    ),
    "rate-below-0": (
        orjson.dumps([survivor(1), survivor(2, reverse_match_rate=-0.25)]),
        "entry 1, reverse_match_rate",
    ),
    "rate-is-a-string": (
        orjson.dumps([survivor(1, forward_match_rate="0.5")]),
        "entry 0, forward_match_rate: expected `float`, got `str`",
    ),
    "count-is-null": (
        orjson.dumps([survivor(1, forward_count=None)]),
        "entry 0, forward_count: expected `float`, got `null`",
    ),
    "old-file-negative-seed": (
        orjson.dumps([{"seed": 3, "skip_range": "0-5"}, {"seed": -3}]),
        "entry 1, seed",
    ),
    "skip-over-int32": (orjson.dumps([survivor(1, skip=2**31)]), "entry 0, skip"),
    "unknown-family": (
        orjson.dumps([survivor(1), survivor(2, prng_type="mt19938")]),
        "entry 1, prng_type: unknown PRNG family 'mt19938'",
    ),
    "hybrid-of-unknown-family": (
        orjson.dumps([survivor(1), survivor(2, prng_type="mt19938_hybrid")]),
        "entry 1, prng_type: unknown PRNG family 'mt19938_hybrid'",
    ),
    "unknown-prng-base": (
        orjson.dumps([{"seed": 1, "prng_type": "java_lcg"}, {"seed": 2, "prng_base": "nope"}]),
        "entry 1, prng_base: unknown PRNG family 'nope'",
    ),
    "unknown-skip-mode": (
        orjson.dumps([survivor(1, skip_mode="sometimes")]),
        "entry 0, skip_mode: unknown skip mode 'sometimes'",
    ),
    "skip-range-past-int32": (
        orjson.dumps([survivor(1), survivor(2, skip_range="0-4294967296")]),
        "entry 1, skip_range: '0-4294967296' gives 4294967296, past int32",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_npz_untouched(tmp_path, capsys, case):
    src = write(tmp_path / SURVIVORS_NAME, GOOD)
    convert(src)
    npz, meta = tmp_path / NPZ_NAME, tmp_path / NPZ_META_NAME
    before = (npz.read_bytes(), meta.read_bytes(), npz.stat().st_mtime_ns)
    content, expected = BAD_INPUTS[case]
    src.write_bytes(content)

    assert main(["convert", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"winopt: error: {src}: ") and expected in err, err
    assert (npz.read_bytes(), meta.read_bytes(), npz.stat().st_mtime_ns) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(UserError):
        convert(src, if_stale=True)


def test_missing_input_and_missing_output_dir(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope.json")]) == 2
    assert capsys.readouterr().err == f"winopt: error: {tmp_path / 'nope.json'}: no such file\n"
    src = write(tmp_path / SURVIVORS_NAME, GOOD)
    assert main(["convert", str(src), "-o", str(tmp_path / "no" / "x.npz")]) == 2
    assert "output directory does not exist" in capsys.readouterr().err


def test_command_exit_status_and_no_traceback(tmp_path):
    """The installed entry point, as a user runs it: exit 2, one line, no traceback."""
    src = tmp_path / SURVIVORS_NAME
    src.write_text('[{"skip": 1}]')
    proc = subprocess.run(
        [sys.executable, "-m", "winopt", "convert", str(src)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "entry 0: object missing required field `seed`" in proc.stderr


def test_survivor_fields_cover_the_npz(tmp_path):
    """Every NPZ source key is a SPEC §3 survivor field (guards the schema table)."""
    assert {key for _, key in NPZ_ARRAYS.values()} <= set(SURVIVOR_FIELDS)


def test_syntax_error_names_the_line(tmp_path, capsys):
    text = orjson.dumps(GOOD, option=orjson.OPT_INDENT_2).decode()
    broken = text.replace('"skip": 2,', '"skip": 2,,')
    line = broken[: broken.index(",,")].count("\n") + 1
    src = tmp_path / SURVIVORS_NAME
    src.write_text(broken)
    assert main(["convert", str(src)]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and err.rstrip().endswith(f"at line {line})"), err


# --- the one-trial fast path and the general path agree ----------------------------------


def one_trial_rows(n: int = 50, **over: object) -> list[dict]:
    return [
        survivor(1000 + 7 * i, skip=i % 11, forward_match_rate=(i % 9) / 8, **over)
        for i in range(n)
    ]


def general_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays the general decoder gives (the fast path switched off)."""
    data = path.read_bytes()
    rows = msgspec.json.Decoder(list[Survivor]).decode(data)
    arrays, warnings = convert_module.survivor_arrays(path, convert_module._Survivors(rows, {}))
    assert warnings == []
    return arrays


def test_one_trial_file_takes_the_fast_path(tmp_path):
    src = write(tmp_path / SURVIVORS_NAME, one_trial_rows())
    decoded = convert_module.parse_survivors(src, src.read_bytes())
    assert set(decoded.constants) == set(convert_module.TRIAL_FIELDS)
    arrays = load(convert(src).npz_path)
    expected = general_arrays(src)
    assert all(
        np.array_equal(arrays[k], expected[k]) and arrays[k].dtype == expected[k].dtype
        for k in expected
    )


TRIAL_FIELDS = set(convert_module.TRIAL_FIELDS)


@pytest.mark.parametrize(
    ("rows", "constant"),
    [
        # a second trial at the end: the general decoder takes over
        (one_trial_rows() + [survivor(99_999, trial_number=5)], set()),
        # integral counts written as floats, on every row: still the trial's constants
        (one_trial_rows(forward_count=120.0, intersection_ratio=1.0), TRIAL_FIELDS),
        # the same count written 120 on the first rows and 120.0 on the last: general decoder
        (one_trial_rows() + [survivor(99_999, forward_count=120.0)], set()),
        # a non-integral count, the same on every row: still a constant of the trial
        (one_trial_rows(forward_count=120.5), TRIAL_FIELDS),
        # an overlap ratio that differs on one row: general decoder
        (one_trial_rows() + [survivor(99_999, intersection_ratio=0.5)], set()),
        # an unknown key holding a brace: the first row cannot be cut out, general decoder
        ([{**r, "note": "a } in a string"} for r in one_trial_rows()], set()),
    ],
    ids=[
        "mixed-trials",
        "float-counts",
        "int-and-float-count",
        "fractional-counts",
        "ratio-varies",
        "brace-in-string",
    ],
)
def test_both_decoders_give_the_same_arrays(tmp_path, rows, constant):
    src = write(tmp_path / SURVIVORS_NAME, rows)
    assert set(convert_module.parse_survivors(src, src.read_bytes()).constants) == constant
    arrays = load(convert(src).npz_path)
    expected = general_arrays(src)
    assert set(arrays) == set(expected)
    for name in expected:
        assert arrays[name].dtype == expected[name].dtype, name
        assert np.array_equal(arrays[name], expected[name]), name
    assert arrays["forward_count"][0] == np.float32(rows[0]["forward_count"])
    assert arrays["trial_number"][-1] == rows[-1]["trial_number"]


def test_convert_waits_for_the_npz_lock(tmp_path):
    """Another holder of NAME.lock (the daemon's distributor, another converter) keeps
    convert from publishing until it lets go."""
    src = write(tmp_path / SURVIVORS_NAME, varied_rows())
    npz = tmp_path / NPZ_NAME
    done = threading.Event()
    worker = threading.Thread(target=lambda: (convert(src), done.set()))
    with lock_for(npz):
        worker.start()
        assert not done.wait(0.5)  # still blocked half a second later
        assert not npz.exists()
    assert done.wait(30) and npz.exists()
    worker.join()
