"""`winopt convert`: bidirectional_survivors.json -> the rigs' NPZ and its meta (SPEC §3).

The survivors file is read once; its sha256 is computed from those bytes on a second
thread while msgspec decodes them straight into typed structs, so every type and range
check happens inside the decoder and its error already names the first bad entry. The
arrays are then filled column by column in C (`np.fromiter`), with no per-field Python
loop over the rows; the fields a trial repeats on every row are checked by the decoder
and filled without a pass at all (`_decode_one_trial`).

Two kinds of file come in. winopt's own (`winopt optimize`, SPEC §3: every field present)
take the strict decoder above. A file the strict decoder refuses is read again by the
old-pipeline decoder (`_OldSurvivor`, the section "old-pipeline files" below), which
converts every file the old pipeline's converter (convert_survivors_to_binary.py v3.1)
converted, to the values it wrote: missing fields take its defaults, `skip_range` may be
an int, a [min, max] list or a "min-max" string, `_hybrid` and `_reverse` family names and
`skip_mode` "variable" get their codes, counts may be floats, unknown keys are ignored.
Where winopt differs from it, on purpose: seeds stay exact (uint64 when one is >= 2**32,
where it truncated to uint32); `_hybrid` names get the base family's code (it wrote 0,
java_lcg, for every name not in its table); `skip`, which it never wrote, is the record's
`skip_min` (else 0); and what it silently accepted but is plainly broken is still refused
in one line (a negative seed or one >= 2**64, a rate outside [0, 1], an unknown family
name, a string or null where a number belongs). What was defaulted is reported as one
warning line (`ConvertResult.warnings`, the meta's `warnings`).

The NPZ is the format `np.savez_compressed` writes (a ZIP of `.npy` members, DEFLATE),
written with zlib level 1 and fixed member timestamps: on bench/convert.py's 100k rows,
5x faster than savez's level 6 for 11 % more bytes (0.98 MB); and the same survivors
always give the same NPZ bytes, so an unchanged sha256 really means unchanged content on
the rigs. NPZ and meta are published atomically and in that order under the NPZ's lock,
so a reader that sees a meta sees its NPZ.

The library functions are thread-safe (no shared mutable state) and print nothing; the
daemon calls them from worker threads.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import re
import sys
import time
import typing
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from winopt import __version__
from winopt.contracts import lock_for, publish_bytes, publish_json, sha256_file
from winopt.contracts.schemas import (
    HYBRID_SUFFIX,
    NPZ_ARRAYS,
    NPZ_NAME,
    NPZ_SCHEMA_VERSION,
    OVERLAP_FIELDS,
    PRNG_TYPE_CODES,
    SKIP_MODES,
    TIME_OF_DAY,
    npz_meta_path,
    read_npz_meta,
)
from winopt.errors import UserError, in_file

#: zlib level of the NPZ members (see the module docstring for why not savez's 6)
NPZ_COMPRESSLEVEL = 1
#: ZIP member timestamp: fixed, so identical arrays give identical NPZ bytes
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)
_UINT64_MAX = 2**64 - 1

_Count = Annotated[int, msgspec.Meta(ge=0, le=_INT32_MAX)]
_Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
_Tally = Annotated[float, msgspec.Meta(ge=0.0)]
_Family = Literal[tuple(PRNG_TYPE_CODES)]  # type: ignore[valid-type]
_SkipMode = Literal[tuple(SKIP_MODES)]  # type: ignore[valid-type]
_TimeOfDay = Literal[TIME_OF_DAY]  # type: ignore[valid-type]


class SurvivorsInFlux(Exception):
    """The survivors file on disk is not the one the snapshot names: a write is in
    progress. Not a `UserError`: nothing is wrong, try again at the next event."""


class _Survivor(msgspec.Struct, gc=False, kw_only=True):
    """One object of bidirectional_survivors.json as winopt writes it (SPEC §3), as the
    strict decoder checks it; a file it refuses is read again as an old-pipeline file
    (`_OldSurvivor`), which decides the error, if any.

    Every field the NPZ stores is required; `time_of_day` is optional (not stored) and
    unknown keys are ignored, so additive schema changes do not break conversion. Fields
    are declared in the order the optimizer writes them (msgspec tries the next declared
    field first), and the names are Literals (decoded to shared objects, checked inside
    the decoder)."""

    seed: Annotated[int, msgspec.Meta(ge=0)]  # <= 2**64-1 checked when filling the array
    skip: _Count
    forward_match_rate: _Rate
    reverse_match_rate: _Rate
    score: _Rate
    window_size: _Count
    offset: _Count
    skip_min: _Count
    skip_max: _Count
    skip_range: _Count
    time_of_day: _TimeOfDay | None = None
    trial_number: _Count
    prng_type: _Family
    skip_mode: _SkipMode
    forward_count: _Tally
    reverse_count: _Tally
    bidirectional_count: _Tally
    intersection_count: _Tally
    intersection_ratio: _Tally
    forward_only_count: _Tally
    reverse_only_count: _Tally
    survivor_overlap_ratio: _Tally
    bidirectional_selectivity: _Tally
    intersection_weight: _Tally


#: the fields one trial's file repeats on every row (SPEC §3: the trial's window, number,
#: counts and overlap statistics); see _decode_one_trial
TRIAL_FIELDS = (
    "window_size",
    "offset",
    "skip_min",
    "skip_max",
    "skip_range",
    "trial_number",
    "forward_count",
    "reverse_count",
    "bidirectional_count",
    *OVERLAP_FIELDS,
)
_SURVIVOR_TYPES = typing.get_type_hints(_Survivor, include_extras=True)


@dataclass(frozen=True)
class _Survivors:
    """Decoded rows, plus the fields the decoder proved equal on every row (and their
    value), which need no pass over the rows. `old`: the rows are `_OldSurvivor`s (an
    old-pipeline file, read with the old converter's defaults)."""

    rows: list[Any]
    constants: dict[str, Any]
    old: bool = False


@dataclass
class ConvertResult:
    """What `convert` did: `converted` is False when `if_stale` found the NPZ up to date.

    `warnings`: at most one line saying what an old-pipeline file left to defaults (the
    meta's `warnings`: the NPZ's, also when it was up to date); the CLI prints it to
    stderr, the daemon logs it."""

    converted: bool
    npz_path: Path
    meta_path: Path
    count: int
    meta: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Source:
    """The survivors file as read once: its bytes, their sha256, size and mtime."""

    path: Path
    data: bytes
    sha256: str
    size: int
    mtime_ns: int


def default_npz_path(survivors: str | os.PathLike[str]) -> Path:
    """bidirectional_survivors_binary.npz beside the survivors file."""
    return Path(survivors).with_name(NPZ_NAME)


def read_source(path: Path) -> tuple[bytes, os.stat_result]:
    """The survivors file's bytes and the stat of the same open file (so size and mtime
    describe exactly these bytes, even if the file is replaced meanwhile)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(), os.fstat(fh.fileno())
    except FileNotFoundError as exc:
        raise in_file(path, "no such file") from exc
    except OSError as exc:
        raise in_file(path, f"cannot read: {exc.strerror or exc}") from exc


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: what read_hash_parse found: the survivors, the parse error, or None (not parsed)
_Parsed = _Survivors | UserError | None


def read_hash_parse(path: Path, *, parse: bool = True) -> tuple[_Source, _Parsed]:
    """Read the survivors once; hash those bytes and, when `parse`, decode them meanwhile
    (hashlib releases the GIL, so the two overlap on a second core).

    A parse failure is returned, not raised: the caller first checks the sha256 (a file
    that is not the one expected is "in flux", which explains a parse error better)."""
    data, st = read_source(path)
    parsed: _Parsed = None
    if not parse:
        sha = _sha256_hex(data)
    else:
        with ThreadPoolExecutor(1, thread_name_prefix="winopt-sha256") as pool:
            digest = pool.submit(_sha256_hex, data)
            try:
                parsed = parse_survivors(path, data)
            except UserError as exc:
                parsed = exc
            sha = digest.result()
    return _Source(path, data, sha, len(data), st.st_mtime_ns), parsed


def parse_survivors(path: Path, data: bytes) -> _Survivors:
    """Decode and type-check the survivors list; UserError naming the first bad entry.

    winopt's format first (fast, strict); a file that is not, as an old-pipeline file
    (lenient, the old converter's defaults). An error is the old-pipeline decoder's: it
    accepts everything the strict one does, so its complaint is about truly bad input,
    not about a field an old file never had."""
    fast = _decode_one_trial(data)
    if fast is not None:
        return fast
    try:
        return _Survivors(msgspec.json.Decoder(list[_Survivor]).decode(data), {})
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        raise in_file(path, f"not valid JSON ({_where_in_text(str(exc), data)})") from exc
    try:
        return _Survivors(msgspec.json.Decoder(list[_OldSurvivor]).decode(data), {}, old=True)
    except msgspec.ValidationError as exc:
        raise in_file(path, _describe_validation(str(exc))) from exc


def _decode_one_trial(data: bytes) -> _Survivors | None:
    """The fast path for what `winopt optimize` writes, one trial's survivors: the trial's
    fields are declared as the first row's value (`_constant_type`), so the decoder checks
    that every row repeats them, and they need no column pass (~1/3 less time on 100k
    rows). None when the file is anything else (mixed trials, bad input, integral counts
    written as floats, an old-pipeline file): the general decoders then handle it and word
    any error."""
    first = _first_row(data)
    if first is None:
        return None
    constants = {k: first[k] for k in TRIAL_FIELDS}
    fields: list[tuple[Any, ...]] = []
    for name in _Survivor.__struct_fields__:
        kind = _constant_type(constants[name]) if name in constants else _SURVIVOR_TYPES[name]
        fields.append((name, kind, None) if name == "time_of_day" else (name, kind))
    try:
        row = msgspec.defstruct("_TrialRow", fields, gc=False, kw_only=True)
        return _Survivors(msgspec.json.Decoder(list[row]).decode(data), constants)
    except (msgspec.MsgspecError, TypeError, ValueError):
        return None


def _constant_type(value: int | float) -> Any:
    """The type that admits only `value`: `Literal[n]` for an integer written as one (no
    Python object per row at all), else a float bounded above and below by it (the overlap
    ratios, 1.0 and 0.0 included; the decoder compares each row's value in C). A row that
    writes the same number another way (3 for 3.0) leaves the fast path, no more."""
    if type(value) is int and -(2**63) <= value < 2**63:
        return Literal[value]
    return Annotated[float, msgspec.Meta(ge=value, le=value)]


def _first_row(data: bytes) -> dict[str, Any] | None:
    """The first object of the list, decoded on its own: checked as a `_Survivor`, returned
    as written (an int stays an int, 1.0 a float). None if that is not possible."""
    start = data.find(b"{")
    end = data.find(b"}", start)
    if start < 0 or end < 0:
        return None
    text = data[start : end + 1]
    try:
        msgspec.json.Decoder(_Survivor).decode(text)
        row = msgspec.json.decode(text)
    except msgspec.MsgspecError:
        return None
    return row if isinstance(row, dict) else None


def _where_in_text(message: str, data: bytes) -> str:
    """msgspec's "... (byte 1234)" -> "... at line 56", which an editor can go to."""
    match = re.search(r"\(byte (\d+)\)", message)
    if not match:
        return message
    line = data.count(b"\n", 0, int(match[1])) + 1
    return f"{message[: match.start()].rstrip()} at line {line}"


def _describe_validation(message: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$[3].seed`" -> "entry 3, seed: expected
    `int`, got `str`" (entries counted from 0, as in the file's list)."""
    text, _, where = message.partition(" - at `")
    text = text[:1].lower() + text[1:]
    where = where.rstrip("`")
    if not where or where == "$":
        return "not a list of survivor objects: " + text if "array" in text else text
    index, _, field = where[2:].partition("]")
    field = field.lstrip(".")
    if text.startswith("invalid enum value") and field in _NAMED_CODES:
        what, codes = _NAMED_CODES[field]
        text = f"unknown {what} {text.split(' ', 3)[3]} (known: {', '.join(codes)})"
    return f"entry {index}{', ' + field if field else ''}: {text}"


#: survivor fields that hold a name, with what to call an unknown one and the known names
_NAMED_CODES: dict[str, tuple[str, tuple[str, ...]]] = {
    "prng_type": ("PRNG family", (*PRNG_TYPE_CODES, f"NAME{HYBRID_SUFFIX} of one of them")),
    "skip_mode": ("skip mode", tuple(SKIP_MODES)),
    "time_of_day": ("time of day", TIME_OF_DAY),
}


def survivor_arrays(path: Path, survivors: _Survivors) -> tuple[dict[str, np.ndarray], list[str]]:
    """One array per NPZ field (SPEC §3), in NPZ_ARRAYS order, all of length len(rows),
    and the warning line of an old-pipeline file (what it left to defaults), if any."""
    if survivors.old:
        return _old_arrays(path, survivors.rows)
    rows, n = survivors.rows, len(survivors.rows)
    arrays: dict[str, np.ndarray] = {"seeds": _seed_array(path, rows)}
    for name, (dtype, key) in NPZ_ARRAYS.items():
        if key in survivors.constants:
            arrays[name] = np.full(n, survivors.constants[key], dtype)
        elif key == "prng_type":
            arrays[name] = _coded(rows, key, PRNG_TYPE_CODES)
        elif key == "skip_mode":
            arrays[name] = _coded(rows, key, SKIP_MODES)
        elif name != "seeds":
            arrays[name] = np.fromiter(map(attrgetter(key), rows), dtype, n)
    return arrays, []


def _seed_array(path: Path, items: list[Any]) -> np.ndarray:
    """Seeds as uint32 when every seed < 2**32, else uint64; exact (no float round trip)."""
    try:
        seeds = np.fromiter(map(attrgetter("seed"), items), np.uint64, len(items))
    except OverflowError:
        index = next(i for i, s in enumerate(items) if s.seed > _UINT64_MAX)
        raise in_file(path, f"entry {index}, seed: {items[index].seed} exceeds 2**64-1") from None
    if len(seeds) == 0 or int(seeds.max()) < 2**32:
        return seeds.astype(np.uint32)
    return seeds


def _coded(items: list[Any], key: str, codes: dict[str, int]) -> np.ndarray:
    """A name column as its uint8 codes (the decoder has already rejected unknown names);
    one trial's file holds one family, which takes the fast path."""
    names = set(map(attrgetter(key), items))
    if len(names) == 1:
        return np.full(len(items), codes[names.pop()], np.uint8)
    return np.fromiter(map(codes.__getitem__, map(attrgetter(key), items)), np.uint8, len(items))


# --- old-pipeline files ----------------------------------------------------------------------
#
# What the old converter (convert_survivors_to_binary.py v3.1) did, field by field, and so
# what these functions reproduce: `seed` required; each rate from its own key, else the
# other rate's, else 0.0; `score`, the counts and the seven overlap statistics as float32,
# 0.0 when missing (counts may be floats); window_size, offset, trial_number, skip_min and
# skip_max as int32, 0 when missing; `skip_range` as int32 from an int, a 2-list (second
# minus first), a "min-max" string (max minus min; 0 when either side is not an integer)
# or anything else int() reads (0 when it cannot); `skip_mode` "constant" 0 / "variable" 1,
# "constant" when missing; `prng_type` from its table, the name taken from `prng_type`,
# else `prng_base`, else "java_lcg". It never wrote `skip`: winopt writes the record's
# skip_min (0 when missing), the smallest skip its trial searched and so a skip inside the
# record's own [skip_min, skip_max] (0 need not be: skip_min may be above it); no old
# reader depends on `skip`, since the old converter never wrote it.

#: default of an int field a record leaves out: outside int32, so no decoded value equals it
_NO_INT = 1 << 40
#: default of a rate a record leaves out: outside [0, 1], which the decoder enforces
_NO_RATE = -1.0
#: default of a float a record leaves out (JSON has no NaN, so no decoded value is NaN)
_NO_FLOAT = math.nan

_Int32 = Annotated[int, msgspec.Meta(ge=_INT32_MIN, le=_INT32_MAX)]
_OldFamily = Literal[  # type: ignore[valid-type]
    (*PRNG_TYPE_CODES, *(name + HYBRID_SUFFIX for name in PRNG_TYPE_CODES))
]


class _OldSurvivor(msgspec.Struct, gc=False, kw_only=True):
    """One object of an old-pipeline survivors file, as leniently as the old converter read
    it (see the section comment); the defaults are markers no file value can take, so
    `_old_arrays` can count what was defaulted. Unknown keys (sessions, time_of_day, ...)
    are ignored; `prng_base` is checked only where it is used."""

    seed: Annotated[int, msgspec.Meta(ge=0)]
    skip: _Count = _NO_INT
    forward_match_rate: _Rate = _NO_RATE
    reverse_match_rate: _Rate = _NO_RATE
    score: float = _NO_FLOAT
    window_size: _Int32 = _NO_INT
    offset: _Int32 = _NO_INT
    skip_min: _Int32 = _NO_INT
    skip_max: _Int32 = _NO_INT
    skip_range: Any = msgspec.UNSET
    trial_number: _Int32 = _NO_INT
    prng_type: _OldFamily | msgspec.UnsetType = msgspec.UNSET
    prng_base: Any = msgspec.UNSET
    skip_mode: _SkipMode | msgspec.UnsetType = msgspec.UNSET
    forward_count: float = _NO_FLOAT
    reverse_count: float = _NO_FLOAT
    bidirectional_count: float = _NO_FLOAT
    intersection_count: float = _NO_FLOAT
    intersection_ratio: float = _NO_FLOAT
    forward_only_count: float = _NO_FLOAT
    reverse_only_count: float = _NO_FLOAT
    survivor_overlap_ratio: float = _NO_FLOAT
    bidirectional_selectivity: float = _NO_FLOAT
    intersection_weight: float = _NO_FLOAT


#: what a field missing from an old record becomes (the warning line says so); fields
#: not listed become 0
_DEFAULT_WORDS = {
    "skip": "skip_min",
    "forward_match_rate": "reverse_match_rate, else 0",
    "reverse_match_rate": "forward_match_rate, else 0",
    "skip_mode": "constant",
    "prng_type": "prng_base, else java_lcg",
}


class _Defaults:
    """Which fields how many old records left to defaults, and the family names coded
    as another: the makings of the one warning line."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.counts: dict[str, int] = {}
        self.recoded: dict[str, str] = {}

    def add(self, name: str, count: int) -> None:
        if count:
            self.counts[name] = self.counts.get(name, 0) + int(count)

    def line(self) -> list[str]:
        """[] when nothing was defaulted, else the one warning line, e.g. "old-pipeline
        survivors (120 records): defaulted skip (to skip_min) on all; score (to 0) on 3;
        prng_type lcg32_hybrid coded as lcg32 (6)"."""
        groups = self._groups().items()
        parts = [self._group(names, count, words) for (words, count), names in groups]
        parts += [f"prng_type {name} coded as {base} ({PRNG_TYPE_CODES[base]})"
                  for name, base in sorted(self.recoded.items())]
        if not parts:
            return []
        if self.counts:
            parts[0] = "defaulted " + parts[0]
        return [f"old-pipeline survivors ({self.total} records): " + "; ".join(parts)]

    def _groups(self) -> dict[tuple[str, int], list[str]]:
        """Fields defaulted alike (same default, same number of records), in file order."""
        groups: dict[tuple[str, int], list[str]] = {}
        for name in _OLD_FIELD_ORDER:
            if name in self.counts:
                key = (_DEFAULT_WORDS.get(name, "0"), self.counts[name])
                groups.setdefault(key, []).append(name)
        return groups

    def _group(self, names: list[str], count: int, words: str) -> str:
        if set(OVERLAP_FIELDS) <= set(names):
            names = [n for n in names if n not in OVERLAP_FIELDS] + ["the 7 overlap statistics"]
        return f"{', '.join(names)} (to {words}) on {'all' if count == self.total else count}"


_OLD_FIELD_ORDER = tuple(_OldSurvivor.__struct_fields__)


def _old_arrays(path: Path, rows: list[Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The NPZ arrays of an old-pipeline file, with the old converter's values (see the
    section comment), and the warning line naming what was defaulted."""
    n, seen = len(rows), _Defaults(len(rows))
    columns: dict[str, np.ndarray] = {"seeds": _seed_array(path, rows)}
    for name, (dtype, key) in NPZ_ARRAYS.items():
        if dtype == "int32" and key not in ("skip", "skip_range"):
            columns[name] = _old_ints(rows, key, seen)
        elif dtype == "float32" and key not in ("forward_match_rate", "reverse_match_rate"):
            columns[name] = _old_floats(rows, key, seen)
    columns["skip"] = _old_skips(rows, columns["skip_min"], seen)
    columns["forward_matches"], columns["reverse_matches"] = _old_rates(rows, seen)
    columns["skip_range"] = _old_skip_ranges(path, rows, seen)
    columns["skip_mode"] = _old_skip_modes(rows, seen)
    columns["prng_type"] = _old_families(path, rows, seen)
    arrays = {name: columns[name] for name in NPZ_ARRAYS}
    return arrays, seen.line()


def _column(rows: list[Any], key: str, dtype: Any) -> np.ndarray:
    return np.fromiter(map(attrgetter(key), rows), dtype, len(rows))


def _old_ints(rows: list[Any], key: str, seen: _Defaults) -> np.ndarray:
    """An int32 field, 0 where missing."""
    values = _column(rows, key, np.int64)
    missing = values == _NO_INT
    seen.add(key, missing.sum())
    return np.where(missing, 0, values).astype(np.int32)


def _old_floats(rows: list[Any], key: str, seen: _Defaults) -> np.ndarray:
    """A float32 field (score, a count, an overlap statistic), 0.0 where missing."""
    values = _column(rows, key, np.float64)
    missing = np.isnan(values)
    seen.add(key, missing.sum())
    return np.where(missing, 0.0, values).astype(np.float32)


def _old_skips(rows: list[Any], skip_min: np.ndarray, seen: _Defaults) -> np.ndarray:
    """`skip`, the record's skip_min (0 when that is missing too) where missing."""
    values = _column(rows, "skip", np.int64)
    missing = values == _NO_INT
    seen.add("skip", missing.sum())
    return np.where(missing, skip_min, values).astype(np.int32)


def _old_rates(rows: list[Any], seen: _Defaults) -> tuple[np.ndarray, np.ndarray]:
    """The two match rates: each from its own key, else the other's, else 0.0."""
    fwd = _column(rows, "forward_match_rate", np.float64)
    rev = _column(rows, "reverse_match_rate", np.float64)
    no_fwd, no_rev = fwd == _NO_RATE, rev == _NO_RATE
    seen.add("forward_match_rate", no_fwd.sum())
    seen.add("reverse_match_rate", no_rev.sum())
    fwd_out = np.where(no_fwd, np.where(no_rev, 0.0, rev), fwd)
    rev_out = np.where(no_rev, np.where(no_fwd, 0.0, fwd), rev)
    return fwd_out.astype(np.float32), rev_out.astype(np.float32)


def _old_skip_ranges(path: Path, rows: list[Any], seen: _Defaults) -> np.ndarray:
    """`skip_range` read the old converter's way (`old_skip_range`); 0 where missing or
    unreadable; a value past int32 is an error (the old converter failed on it too). A
    file holds few distinct values (one per trial), so each is parsed once."""
    values = list(map(attrgetter("skip_range"), rows))
    try:
        read = {v: old_skip_range(v) for v in set(values)}
        parsed = list(map(read.__getitem__, values))
    except TypeError:  # [min, max] lists are not hashable: row by row
        parsed = [old_skip_range(v) for v in values]
    seen.add("skip_range", parsed.count(None))
    if any(_past_int32(v) for v in set(parsed)):
        i = next(i for i, v in enumerate(parsed) if _past_int32(v))
        raise in_file(path, f"entry {i}, skip_range: {values[i]!r} gives {parsed[i]}, past int32")
    return np.fromiter((v or 0 for v in parsed), np.int32, len(parsed))


def _past_int32(value: int | None) -> bool:
    return value is not None and not _INT32_MIN <= value <= _INT32_MAX


def old_skip_range(value: Any) -> int | None:
    """A `skip_range` value as the old converter read it, None where it read 0 (missing or
    unreadable): an int as is (a bool as 0/1, as Python counts it); a list of two as
    second minus first; a string holding "-" as the integer after the first "-" minus the
    one before it ("0-10" -> 10); anything else through int() (a float truncates, "12"
    -> 12)."""
    try:
        if isinstance(value, int):
            return int(value)
        if isinstance(value, list):
            return int(value[1]) - int(value[0]) if len(value) == 2 else None
        if isinstance(value, str) and "-" in value:
            low, high = value.split("-")[:2]
            return int(high) - int(low)
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _old_skip_modes(rows: list[Any], seen: _Defaults) -> np.ndarray:
    """`skip_mode` codes; "constant" where missing."""
    names = list(map(attrgetter("skip_mode"), rows))
    codes = {**SKIP_MODES, msgspec.UNSET: SKIP_MODES["constant"]}
    seen.add("skip_mode", names.count(msgspec.UNSET))
    return np.fromiter(map(codes.__getitem__, names), np.uint8, len(names))


def _old_families(path: Path, rows: list[Any], seen: _Defaults) -> np.ndarray:
    """`prng_type` codes: the name from `prng_type`, else `prng_base`, else java_lcg; a
    `_hybrid` name gets its base family's code (noted for the warning line)."""
    names = list(map(attrgetter("prng_type"), rows))
    missing = [i for i, name in enumerate(names) if name is msgspec.UNSET]
    seen.add("prng_type", len(missing))
    for i in missing:
        names[i] = _old_base_name(path, i, rows[i].prng_base)
    codes = {name: _family_code(name, seen) for name in set(names)}
    return np.fromiter(map(codes.__getitem__, names), np.uint8, len(names))


def _old_base_name(path: Path, index: int, base: Any) -> str:
    """The family a record without `prng_type` names in `prng_base` (java_lcg if none)."""
    if base is msgspec.UNSET:
        return "java_lcg"
    known = isinstance(base, str) and _family_code(base, None) is not None
    if not known:
        what, codes = _NAMED_CODES["prng_type"]
        raise in_file(path, f"entry {index}, prng_base: unknown {what} {base!r} (known: "
                            f"{', '.join(codes)})")
    return base


def _family_code(name: str, seen: _Defaults | None) -> int | None:
    """A family name's code (a `_hybrid` one: its base's, noted in `seen`); None if unknown."""
    if name in PRNG_TYPE_CODES:
        return PRNG_TYPE_CODES[name]
    base = name[: -len(HYBRID_SUFFIX)] if name.endswith(HYBRID_SUFFIX) else None
    if base not in PRNG_TYPE_CODES:
        return None
    if seen is not None:
        seen.recoded[name] = base
    return PRNG_TYPE_CODES[base]


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The NPZ file's bytes: what np.savez_compressed writes, at level 1 with fixed
    timestamps (deterministic; np.load reads it the same way)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue(), compresslevel=NPZ_COMPRESSLEVEL)
    return buf.getvalue()


def build_meta(
    source: _Source, arrays: dict[str, np.ndarray], npz: bytes, warnings: list[str]
) -> dict[str, Any]:
    """bidirectional_survivors_binary.meta.json (SPEC §3): what was converted, from what.

    `encodings` holds the code tables as the old converter's meta laid them out
    (`encodings.prng_type`, `encodings.skip_mode`), every code listed, so that a reader on
    the rigs learns codes its own table lacks (the rigs' loader knows 0-11), plus each
    array's dtype."""
    mtime = datetime.fromtimestamp(source.mtime_ns / 1e9, timezone.utc).astimezone()
    return {
        "schema_version": NPZ_SCHEMA_VERSION,
        "count": int(len(arrays["seeds"])),
        "source": {
            "name": source.path.name,
            "path": str(source.path.absolute()),
            "sha256": source.sha256,
            "size": source.size,
            "mtime": mtime.isoformat(),
            "mtime_ns": source.mtime_ns,
        },
        "npz_sha256": hashlib.sha256(npz).hexdigest(),
        "npz_size": len(npz),
        "encodings": {
            "prng_type": dict(PRNG_TYPE_CODES),
            "skip_mode": dict(SKIP_MODES),
            "dtypes": {name: array.dtype.name for name, array in arrays.items()},
        },
        "warnings": list(warnings),
        "converted_at": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "converter": f"winopt {__version__}",
    }


def _npz_matches_meta(npz: Path, meta: dict[str, Any]) -> bool:
    """The NPZ on disk is the one the meta describes (a crash between the two renames
    leaves a new NPZ beside an old meta: that pair must count as stale)."""
    try:
        if os.stat(npz).st_size != meta.get("npz_size"):
            return False
        return sha256_file(npz) == meta.get("npz_sha256")
    except OSError:
        return False


def is_stale(survivors: str | os.PathLike[str], npz: str | os.PathLike[str] | None = None) -> bool:
    """Whether the NPZ must be (re)built from `survivors` (SPEC §3).

    Stale when the meta is missing or unreadable, of another NPZ_SCHEMA_VERSION (an NPZ an
    older winopt wrote lacks arrays: it is rebuilt once after an upgrade), the NPZ is
    missing or not the one the meta describes, or the survivors' sha256 differs from the
    meta's. The size is the fast
    pre-check: a different size is stale without hashing. An equal size and mtime are not
    trusted as "fresh" (a same-size rewrite within the filesystem's timestamp granularity,
    or a copy that preserved mtime, would pass), so then the sha256 decides; hashing 60 MB
    costs ~40 ms. A missing survivors file counts as stale so that `convert` reports it.
    """
    survivors = Path(survivors)
    npz = Path(npz) if npz is not None else default_npz_path(survivors)
    meta = read_npz_meta(npz_meta_path(npz))
    if meta is None or not _current(meta) or not _npz_matches_meta(npz, meta):
        return True
    recorded = meta.get("source") or {}
    try:
        if os.stat(survivors).st_size != recorded.get("size"):
            return True
        return sha256_file(survivors) != recorded.get("sha256")
    except OSError:
        return True


def convert(
    survivors: str | os.PathLike[str],
    npz: str | os.PathLike[str] | None = None,
    *,
    if_stale: bool = False,
    expected_sha256: str | None = None,
) -> ConvertResult:
    """Convert `survivors` to the NPZ and its meta, under the NPZ's lock.

    `if_stale`: do nothing (converted=False) when the meta already describes this source.
    `expected_sha256`: raise SurvivorsInFlux when the file read is not that one.
    Bad input raises UserError naming the file and the first bad entry; the existing NPZ
    and meta are then untouched.
    """
    survivors = Path(survivors)
    npz = Path(npz) if npz is not None else default_npz_path(survivors)
    meta_path = npz_meta_path(npz)
    if not npz.parent.is_dir():
        raise in_file(npz, "output directory does not exist")
    with lock_for(npz):
        # With if_stale the NPZ is often up to date: hash first, parse only when needed.
        source, parsed = read_hash_parse(survivors, parse=not if_stale)
        if expected_sha256 is not None and source.sha256 != expected_sha256:
            raise SurvivorsInFlux(
                f"{survivors}: sha256 {source.sha256[:12]} is not the {expected_sha256[:12]} "
                "the snapshot names (a write is in progress)"
            )
        if if_stale:
            meta = read_npz_meta(meta_path)
            if _describes(meta, source) and _npz_matches_meta(npz, meta):
                count = int(meta.get("count", 0))
                return ConvertResult(False, npz, meta_path, count, meta, _meta_warnings(meta))
        if isinstance(parsed, UserError):
            raise parsed
        decoded = parsed if parsed is not None else parse_survivors(survivors, source.data)
        arrays, warnings = survivor_arrays(survivors, decoded)
        blob = npz_bytes(arrays)
        meta = build_meta(source, arrays, blob, warnings)
        publish_bytes(npz, blob)
        publish_json(meta_path, meta)
    return ConvertResult(True, npz, meta_path, meta["count"], meta, warnings)


def _describes(meta: dict[str, Any] | None, source: _Source) -> bool:
    """The meta was made from exactly these bytes, by this NPZ schema."""
    return (
        meta is not None
        and _current(meta)
        and (meta.get("source") or {}).get("sha256") == source.sha256
    )


def _current(meta: dict[str, Any]) -> bool:
    """The meta (and so its NPZ) is of this NPZ_SCHEMA_VERSION."""
    return meta.get("schema_version") == NPZ_SCHEMA_VERSION


def _meta_warnings(meta: dict[str, Any]) -> list[str]:
    """The meta's warning lines (none in a meta of another layout)."""
    warnings = meta.get("warnings")
    return [w for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []


# --- the command ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`winopt convert SURVIVORS.json [-o OUT.npz] [--if-stale]`."""
    parser.add_argument("survivors", type=Path, help="bidirectional_survivors.json to convert")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help=f"NPZ to write (default: {NPZ_NAME} beside SURVIVORS; the meta goes beside it)",
    )
    parser.add_argument(
        "--if-stale",
        action="store_true",
        help="convert only when the meta's source sha256 differs from SURVIVORS' "
        "(prints 'up to date' otherwise)",
    )


def run(args: argparse.Namespace) -> int:
    """Convert and print one line: count, NPZ path, sha256 prefix and time taken."""
    start = time.perf_counter()
    try:
        result = convert(args.survivors, args.output, if_stale=args.if_stale)
    except OSError as exc:  # output side: permissions, full disk, ...
        raise in_file(
            exc.filename or args.output or args.survivors, exc.strerror or str(exc)
        ) from exc
    sha = str(result.meta.get("npz_sha256", ""))[:12]
    if result.converted:
        for warning in result.warnings:
            print(f"winopt: warning: {args.survivors}: {warning}", file=sys.stderr)
    if not result.converted:
        print(f"up to date: {result.npz_path} ({result.count} survivors, sha256 {sha})")
        return 0
    ms = (time.perf_counter() - start) * 1000
    print(f"converted {result.count} survivors -> {result.npz_path} (sha256 {sha}, {ms:.0f} ms)")
    return 0


__all__ = [
    "ConvertResult",
    "SurvivorsInFlux",
    "add_arguments",
    "convert",
    "default_npz_path",
    "is_stale",
    "run",
]
