"""`winopt convert`: bidirectional_survivors.json -> the rigs' NPZ and its meta (SPEC §3).

The survivors file is read once, a megabyte at a time, and never held whole: its sha256
is computed from those blocks on a second thread, while msgspec decodes them, a piece of
whole entries at a time (`handlers.json_pieces`), straight into typed structs, so every
type and range check happens inside the decoder and its error names the file's first bad
entry and line. Each piece's arrays are filled column by column in C (`np.fromiter`),
with no per-field Python loop over the rows; the fields a trial repeats on every row are
checked by the decoder and filled without a pass at all (`_decode_one_trial`). The NPZ
is written from those per-piece arrays (`handlers.npz_file`), so the memory a
conversion needs is about the NPZ's arrays plus one piece, whatever the file's size
(bench/convert_memory.py: at most twice the arrays, against 15 times when the text was
decoded whole). A file larger than `max_bytes` (the daemon's `[convert]
max_survivors_bytes`, `winopt convert --max-bytes`, 4 GiB by default) is refused before
it is read: one error line, the previous NPZ kept. After a large conversion, finished or
not, the heap's free memory is handed back to the system (`winopt.handlers.convert.heap`).

A key written twice in one entry is an error naming the entry and the key: a JSON
decoder silently keeps the last value, another reader might keep the first. Checking
costs one count of `:` per piece, compared with the keys the decoder filled; only when
they differ (unknown keys, a `:` inside a string, or a real duplicate) is the piece read
again to tell which.

Two kinds of file come in. winopt's own (`winopt optimize`, SPEC §3: every field present)
take the strict decoder above. A file the strict decoder refuses is read again by the
old-pipeline decoder (`OldSurvivor`, the section "old-pipeline files" below), which
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

import functools
import hashlib
import json
import os
import re
import stat
import typing
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import msgspec
import numpy as np

from winopt import __version__
from winopt.contracts.npz_meta import NpzEncodings, NpzMeta, NpzSource, npz_meta_path, read_npz_meta
from winopt.contracts.clock import now_iso
from winopt.contracts import lock_for, publish_atomic, publish_bytes, sha256_file
from winopt.contracts.publish import dump_json
from winopt.contracts.schemas import (
    HYBRID_SUFFIX,
    NPZ_ARRAYS,
    NPZ_NAME,
    OVERLAP_FIELDS,
    PRNG_TYPE_CODES,
    SKIP_MODES,
    TIME_OF_DAY,
)
from winopt.contracts.errors import UserError, in_file
from winopt.contracts.survivors import (
    INT32_MAX,
    INT32_MIN,
    NO_INT,
    NO_RATE,
    OldSurvivor,
    Survivor,
    TRIAL_FIELDS,
    UINT64_MAX,
)
from winopt.handlers.convert.json_pieces import CHUNK_BYTES, Where, decode_in_pieces
from winopt.handlers.convert.npz_file import write_npz
from winopt.handlers.convert.heap import return_free_memory

#: the largest survivors file converted unless told otherwise (a 1M-survivor file is
#: ~0.8 GB): the daemon's `[convert] max_survivors_bytes`, `winopt convert --max-bytes`
DEFAULT_MAX_SURVIVORS_BYTES = 4 << 30
#: a conversion of a file this large hands the heap's free memory back afterwards
RETURN_MEMORY_AFTER = 64 << 20
_COLON = ord(":")


class SurvivorsInFlux(Exception):
    """The survivors file on disk is not the one the snapshot names: a write is in
    progress. Not a `UserError`: nothing is wrong, try again at the next event."""


_SURVIVOR_TYPES = typing.get_type_hints(Survivor, include_extras=True)


@dataclass(frozen=True)
class _Survivors:
    """Decoded rows, plus the fields the decoder proved equal on every row (and their
    value), which need no pass over the rows. `old`: the rows are `OldSurvivor`s (an
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
    """The survivors file as read: the sha256, size and mtime of the bytes read."""

    path: Path
    sha256: str
    size: int
    mtime_ns: int


def default_npz_path(survivors: str | os.PathLike[str]) -> Path:
    """bidirectional_survivors_binary.npz beside the survivors file."""
    return Path(survivors).with_name(NPZ_NAME)


def _too_large(path: Path, size: int, limit: int) -> UserError:
    return in_file(path, f"{size} bytes, more than the {limit} allowed for a survivors file "
                         "(raise [convert] max_survivors_bytes, or winopt convert --max-bytes)")


@contextmanager
def _open_source(path: Path, limit: int) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """The survivors file open for reading, with the stat of that open file (so size and
    mtime describe exactly what is read, even if the file is replaced meanwhile): a
    regular file of at most `limit` bytes, or one UserError line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError as exc:
        raise in_file(path, "no such file") from exc
    except OSError as exc:
        raise in_file(path, f"cannot read: {exc.strerror or exc}") from exc
    with open(fd, "rb", buffering=0) as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise in_file(path, "not a regular file")
        if st.st_size > limit:
            raise _too_large(path, st.st_size, limit)
        yield fh, st


class _Reading:
    """One pass over the open survivors file from its start: `read(n)` gives the next
    block and has the hashing thread hash it and count its `:` (hashlib and NumPy release
    the GIL, so both overlap decoding; at most one block waits, so memory stays bounded);
    `finish()` reads what is left (a pass cut short by bad data) and returns the
    `_Source`. `colons` (after `finish`) is the number of `:` in the file, which the
    duplicate-key check compares with the keys decoded."""

    def __init__(self, path: Path, fh: BinaryIO, st: os.stat_result, limit: int, pool: ThreadPoolExecutor) -> None:
        self._path, self._fh, self._st, self._limit, self._pool = path, fh, st, limit, pool
        fh.seek(0)
        self._hash = hashlib.sha256()
        self._pending: Future[None] | None = None
        self.size = 0
        self.colons = 0

    def read(self, n: int) -> bytes:
        try:
            block = self._fh.read(n)
        except OSError as exc:
            raise in_file(self._path, f"cannot read: {exc.strerror or exc}") from exc
        self.size += len(block)
        if self.size > self._limit:  # it grew while we read
            raise _too_large(self._path, self.size, self._limit)
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._absorb, block) if block else None
        return block

    def _absorb(self, block: bytes) -> None:
        """On the hashing thread: the block into the sha256 and the count of `:`."""
        self._hash.update(block)
        self.colons += int(np.count_nonzero(np.frombuffer(block, np.uint8) == _COLON))

    def finish(self) -> _Source:
        while self.read(CHUNK_BYTES):
            pass
        return _Source(self._path, self._hash.hexdigest(), self.size, self._st.st_mtime_ns)

    def line_at(self, offset: int) -> int:
        """The line of the file's byte `offset` (read again: only error lines need it)."""
        newlines, done = 0, 0
        while done < offset:
            block = os.pread(self._fh.fileno(), min(CHUNK_BYTES, offset - done), done)
            if not block:
                break
            newlines += block.count(b"\n")
            done += len(block)
        return newlines + 1


class _Columns:
    """The NPZ's arrays of a file decoded piece by piece (`take` is the pieces' decoder):
    per array the pieces' arrays in order, never joined (`handlers.npz_file` writes them
    as one), what an old-pipeline file left to defaults over all its pieces, and the keys
    the decoded rows account for (`keys`, for the duplicate-key check)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pieces: dict[str, list[np.ndarray]] = {name: [] for name in NPZ_ARRAYS}
        self.count = 0
        self.keys = 0
        self.seen = _Defaults(0)

    def take(self, data: bytes, where: Where) -> int:
        """Decode one piece (a JSON list of whole entries) and keep its arrays; all or
        nothing, so a piece that raises leaves no trace."""
        survivors = parse_survivors(self.path, data, where)
        missing = sum(self.seen.counts.values())
        arrays, _ = survivor_arrays(self.path, survivors, where, self.seen)
        keys = _keys_filled(survivors, sum(self.seen.counts.values()) - missing)
        for name, array in arrays.items():
            self.pieces[name].append(array)
        self.count += len(survivors.rows)
        self.keys += keys
        return len(survivors.rows)

    def dtypes(self) -> dict[str, np.dtype]:
        """Each array's dtype: seeds uint64 when any piece needed it, else uint32."""
        wide = any(piece.dtype == np.uint64 for piece in self.pieces["seeds"])
        out = {name: np.dtype(dtype) for name, (dtype, _) in NPZ_ARRAYS.items() if name != "seeds"}
        return {"seeds": np.dtype(np.uint64 if wide else np.uint32), **out}

    def warnings(self) -> list[str]:
        self.seen.total = self.count
        return self.seen.line()

    def clear(self) -> None:
        """Drop the arrays now (a traceback may keep this object alive a while)."""
        self.pieces = {}


def parse_survivors(path: Path, data: bytes, where: Where = Where()) -> _Survivors:
    """Decode and type-check a survivors list (the whole file, or a piece of it that
    starts at `where`); UserError naming the file's first bad entry (or line).

    winopt's format first (fast, strict); a list that is not, as an old-pipeline file
    (lenient, the old converter's defaults). An error is the old-pipeline decoder's: it
    accepts everything the strict one does, so its complaint is about truly bad input,
    not about a field an old file never had. (Keys written twice: `_check_keys`.)"""
    survivors = _decode_one_trial(data)
    if survivors is not None:
        return survivors
    try:
        return _Survivors(_STRICT.decode(data), {})
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        raise in_file(path, f"not valid JSON ({_where_in_text(str(exc), data, where)})") from exc
    try:
        return _Survivors(_OLD.decode(data), {}, old=True)
    except msgspec.ValidationError as exc:
        raise in_file(path, _describe_validation(str(exc), where)) from exc
    except msgspec.DecodeError as exc:  # valid up to an entry the strict decoder refused
        raise in_file(path, f"not valid JSON ({_where_in_text(str(exc), data, where)})") from exc


def _keys_filled(survivors: _Survivors, defaulted: int) -> int:
    """How many keys of the text the decoded rows account for: the fields they hold
    (optional ones only where present), not the keys the decoder skipped. `defaulted`:
    of an old-pipeline file's counted fields (`_Defaults`), how many these rows lacked."""
    rows = survivors.rows
    present = lambda name, marker: len(rows) - list(map(attrgetter(name), rows)).count(marker)  # noqa: E731
    if not survivors.old:
        return len(rows) * _REQUIRED_KEYS + present("time_of_day", None)
    uncounted = sum(present(name, msgspec.UNSET) for name in _OLD_UNCOUNTED)
    return len(rows) * (1 + _OLD_COUNTED) - defaulted + uncounted  # 1: the seed, always there


def _check_keys(path: Path, fh: BinaryIO, columns: _Columns, colons: int) -> None:
    """Refuse an entry that holds a key twice: the decoder silently kept the last value.
    Every key is followed by a `:`, so when the file holds no more `:` than the keys the
    decoder filled, no key was there twice. Otherwise (unknown keys, a `:` inside a
    string, or a key twice) the file is read again, a piece at a time, to tell which."""
    if colons == columns.keys:
        return
    fh.seek(0)
    decode_in_pieces(fh.read, lambda data, where: _no_key_twice(path, data, where))


def _no_key_twice(path: Path, data: bytes, where: Where) -> int:
    """The entries of a piece, or UserError naming the first entry with a key twice."""
    try:
        entries = msgspec.json.decode(data, type=list[dict[str, msgspec.Raw]])
    except msgspec.MsgspecError as exc:  # it decoded a moment ago: rewritten in place meanwhile
        raise in_file(path, f"changed while it was read ({exc}); convert again") from None
    if data.count(b":") == sum(map(len, entries)):
        return len(entries)  # every `:` a key, each once
    for i, pairs in enumerate(json.loads(data, object_pairs_hook=list)):
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            twice = next(key for j, key in enumerate(keys) if key in keys[:j])
            raise in_file(path, f"entry {where.entry + i}: key {twice!r} appears twice "
                                "(JSON readers disagree on which value counts)")
    return len(entries)  # no key twice: the other `:` are inside strings


def _decode_one_trial(data: bytes) -> _Survivors | None:
    """The fast path for what `winopt optimize` writes, one trial's survivors: the trial's
    fields are declared as the first row's value (`_constant_type`), so the decoder checks
    that every row repeats them, and they need no column pass (~1/3 less time on 100k
    rows). None when the file is anything else (mixed trials, bad input, integral counts
    written as floats, an old-pipeline file): the general decoders then handle it and word
    any error. The decoder is made once per trial (every piece of a file shares it)."""
    first = _first_row(data)
    if first is None:
        return None
    constants = {k: first[k] for k in TRIAL_FIELDS}
    try:
        decoder = _trial_decoder(tuple((k, type(v), v) for k, v in constants.items()))
        return _Survivors(decoder.decode(data), constants)
    except (msgspec.MsgspecError, TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=32)
def _trial_decoder(constants: tuple[tuple[str, type, Any], ...]) -> msgspec.json.Decoder:
    """A decoder of rows whose trial fields hold these (name, type, value) constants."""
    values = {name: value for name, _, value in constants}
    fields: list[tuple[Any, ...]] = []
    for name in Survivor.__struct_fields__:
        kind = _constant_type(values[name]) if name in values else _SURVIVOR_TYPES[name]
        fields.append((name, kind, None) if name == "time_of_day" else (name, kind))
    row = msgspec.defstruct("_TrialRow", fields, gc=False, kw_only=True)
    return msgspec.json.Decoder(list[row])


def _constant_type(value: int | float) -> Any:
    """The type that admits only `value`: `Literal[n]` for an integer written as one (no
    Python object per row at all), else a float bounded above and below by it (the overlap
    ratios, 1.0 and 0.0 included; the decoder compares each row's value in C). A row that
    writes the same number another way (3 for 3.0) leaves the fast path, no more."""
    if type(value) is int and -(2**63) <= value < 2**63:
        return Literal[value]
    return Annotated[float, msgspec.Meta(ge=value, le=value)]


def _first_row(data: bytes) -> dict[str, Any] | None:
    """The first object of the list, decoded on its own: checked as a `Survivor`, returned
    as written (an int stays an int, 1.0 a float). None if that is not possible."""
    start = data.find(b"{")
    end = data.find(b"}", start)
    if start < 0 or end < 0:
        return None
    text = data[start : end + 1]
    try:
        msgspec.json.Decoder(Survivor).decode(text)
        row = msgspec.json.decode(text)
    except msgspec.MsgspecError:
        return None
    return row if isinstance(row, dict) else None


def _where_in_text(message: str, data: bytes, where: Where = Where()) -> str:
    """msgspec's "... (byte 1234)" -> "... at line 56", which an editor can go to."""
    match = re.search(r"\(byte (\d+)\)", message)
    if not match:
        return message
    line = where.line(data, int(match[1]))
    return f"{message[: match.start()].rstrip()} at line {line}"


def _describe_validation(message: str, where: Where = Where()) -> str:
    """msgspec's "Expected `int`, got `str` - at `$[3].seed`" -> "entry 3, seed: expected
    `int`, got `str`" (entries counted from 0, as in the file's list)."""
    text, _, at = message.partition(" - at `")
    text = text[:1].lower() + text[1:]
    at = at.rstrip("`")
    if not at or at == "$":
        return "not a list of survivor objects: " + text if "array" in text else text
    index, _, field = at[2:].partition("]")
    field = field.lstrip(".")
    if text.startswith("invalid enum value") and field in _NAMED_CODES:
        what, codes = _NAMED_CODES[field]
        text = f"unknown {what} {text.split(' ', 3)[3]} (known: {', '.join(codes)})"
    return f"entry {where.entry + int(index)}{', ' + field if field else ''}: {text}"


#: survivor fields that hold a name, with what to call an unknown one and the known names
_NAMED_CODES: dict[str, tuple[str, tuple[str, ...]]] = {
    "prng_type": ("PRNG family", (*PRNG_TYPE_CODES, f"NAME{HYBRID_SUFFIX} of one of them")),
    "skip_mode": ("skip mode", tuple(SKIP_MODES)),
    "time_of_day": ("time of day", TIME_OF_DAY),
}


def survivor_arrays(
    path: Path, survivors: _Survivors, where: Where = Where(), seen: _Defaults | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """One array per NPZ field (SPEC §3), in NPZ_ARRAYS order, all of length len(rows),
    and the warning line of an old-pipeline file (what it left to defaults), if any. For
    a piece of a file (`where`), what was defaulted adds up in `seen`, the file's."""
    if survivors.old:
        return _old_arrays(path, survivors.rows, where, seen)
    rows, n = survivors.rows, len(survivors.rows)
    arrays: dict[str, np.ndarray] = {"seeds": _seed_array(path, rows, where)}
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


def _seed_array(path: Path, items: list[Any], where: Where = Where()) -> np.ndarray:
    """Seeds as uint32 when every seed < 2**32, else uint64; exact (no float round trip)."""
    try:
        seeds = np.fromiter(map(attrgetter("seed"), items), np.uint64, len(items))
    except OverflowError:
        index = next(i for i, s in enumerate(items) if s.seed > UINT64_MAX)
        raise in_file(path, f"entry {where.entry + index}, seed: {items[index].seed} exceeds 2**64-1") from None
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

#: the decoders of a survivors list: winopt's (strict) and the old pipeline's (lenient)
_STRICT = msgspec.json.Decoder(list[Survivor])
_OLD = msgspec.json.Decoder(list[OldSurvivor])
#: keys every strict row has (time_of_day is optional)
_REQUIRED_KEYS = len(Survivor.__struct_fields__) - 1
#: the old row's keys `_Defaults` does not count as missing or present (`_keys_filled`)
_OLD_UNCOUNTED = ("prng_base", "sessions", "time_of_day")
#: the old row's keys it does count: all but the seed and those
_OLD_COUNTED = len(OldSurvivor.__struct_fields__) - 1 - len(_OLD_UNCOUNTED)


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


_OLD_FIELD_ORDER = tuple(OldSurvivor.__struct_fields__)


def _old_arrays(
    path: Path, rows: list[Any], where: Where = Where(), seen: _Defaults | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The NPZ arrays of an old-pipeline file (or piece: `where`, with the file's `seen`),
    with the old converter's values (see the section comment), and the warning line
    naming what was defaulted (of these rows alone when no `seen` is given)."""
    seen = seen if seen is not None else _Defaults(len(rows))
    columns: dict[str, np.ndarray] = {"seeds": _seed_array(path, rows, where)}
    for name, (dtype, key) in NPZ_ARRAYS.items():
        if dtype == "int32" and key not in ("skip", "skip_range"):
            columns[name] = _old_ints(rows, key, seen)
        elif dtype == "float32" and key not in ("forward_match_rate", "reverse_match_rate"):
            columns[name] = _old_floats(rows, key, seen)
    columns["skip"] = _old_skips(rows, columns["skip_min"], seen)
    columns["forward_matches"], columns["reverse_matches"] = _old_rates(rows, seen)
    columns["skip_range"] = _old_skip_ranges(path, rows, seen, where)
    columns["skip_mode"] = _old_skip_modes(rows, seen)
    columns["prng_type"] = _old_families(path, rows, seen, where)
    arrays = {name: columns[name] for name in NPZ_ARRAYS}
    return arrays, seen.line()


def _column(rows: list[Any], key: str, dtype: Any) -> np.ndarray:
    return np.fromiter(map(attrgetter(key), rows), dtype, len(rows))


def _old_ints(rows: list[Any], key: str, seen: _Defaults) -> np.ndarray:
    """An int32 field, 0 where missing."""
    values = _column(rows, key, np.int64)
    missing = values == NO_INT
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
    missing = values == NO_INT
    seen.add("skip", missing.sum())
    return np.where(missing, skip_min, values).astype(np.int32)


def _old_rates(rows: list[Any], seen: _Defaults) -> tuple[np.ndarray, np.ndarray]:
    """The two match rates: each from its own key, else the other's, else 0.0."""
    fwd = _column(rows, "forward_match_rate", np.float64)
    rev = _column(rows, "reverse_match_rate", np.float64)
    no_fwd, no_rev = fwd == NO_RATE, rev == NO_RATE
    seen.add("forward_match_rate", no_fwd.sum())
    seen.add("reverse_match_rate", no_rev.sum())
    fwd_out = np.where(no_fwd, np.where(no_rev, 0.0, rev), fwd)
    rev_out = np.where(no_rev, np.where(no_fwd, 0.0, fwd), rev)
    return fwd_out.astype(np.float32), rev_out.astype(np.float32)


def _old_skip_ranges(path: Path, rows: list[Any], seen: _Defaults, where: Where = Where()) -> np.ndarray:
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
        raise in_file(path, f"entry {where.entry + i}, skip_range: {values[i]!r} gives {parsed[i]}, past int32")
    return np.fromiter((v or 0 for v in parsed), np.int32, len(parsed))


def _past_int32(value: int | None) -> bool:
    return value is not None and not INT32_MIN <= value <= INT32_MAX


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


def _old_families(path: Path, rows: list[Any], seen: _Defaults, where: Where = Where()) -> np.ndarray:
    """`prng_type` codes: the name from `prng_type`, else `prng_base`, else java_lcg; a
    `_hybrid` name gets its base family's code (noted for the warning line)."""
    names = list(map(attrgetter("prng_type"), rows))
    missing = [i for i, name in enumerate(names) if name is msgspec.UNSET]
    seen.add("prng_type", len(missing))
    for i in missing:
        names[i] = _old_base_name(path, where.entry + i, rows[i].prng_base)
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


def build_meta(
    source: _Source, count: int, dtypes: dict[str, np.dtype], npz_sha256: str, npz_size: int, warnings: list[str]
) -> NpzMeta:
    """bidirectional_survivors_binary.meta.json (SPEC §3): what was converted, from what.

    `encodings` holds the code tables as the old converter's meta laid them out
    (`encodings.prng_type`, `encodings.skip_mode`), every code listed, so that a reader on
    the rigs learns codes its own table lacks (the rigs' loader knows 0-11), plus each
    array's dtype."""
    mtime = datetime.fromtimestamp(source.mtime_ns / 1e9, timezone.utc).astimezone()
    return NpzMeta(
        count=count,
        source=NpzSource(name=source.path.name, path=str(source.path.absolute()), sha256=source.sha256,
                         size=source.size, mtime=mtime.isoformat(), mtime_ns=source.mtime_ns),
        npz_sha256=npz_sha256,
        npz_size=npz_size,
        encodings=NpzEncodings(prng_type=dict(PRNG_TYPE_CODES), skip_mode=dict(SKIP_MODES),
                               dtypes={name: dtype.name for name, dtype in dtypes.items()}),
        warnings=list(warnings),
        converted_at=now_iso(),
        converter=f"winopt {__version__}",
    )


def _npz_matches_meta(npz: Path, meta: NpzMeta) -> bool:
    """The NPZ on disk is the one the meta describes (a crash between the two renames
    leaves a new NPZ beside an old meta: that pair must count as stale)."""
    try:
        if os.stat(npz).st_size != meta.npz_size:
            return False
        return sha256_file(npz) == meta.npz_sha256
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
    if meta is None or not meta.current or not _npz_matches_meta(npz, meta):
        return True
    try:
        if os.stat(survivors).st_size != meta.source.size:
            return True
        return sha256_file(survivors) != meta.source.sha256
    except OSError:
        return True


def convert(
    survivors: str | os.PathLike[str],
    npz: str | os.PathLike[str] | None = None,
    *,
    if_stale: bool = False,
    expected_sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_SURVIVORS_BYTES,
) -> ConvertResult:
    """Convert `survivors` to the NPZ and its meta, under the NPZ's lock.

    `if_stale`: do nothing (converted=False) when the meta already describes this source.
    `expected_sha256`: raise SurvivorsInFlux when the file read is not that one.
    `max_bytes`: a larger file is refused unread.
    Bad input raises UserError naming the file and the first bad entry; the existing NPZ
    and meta are then untouched. After a large file, converted or not, the heap's free
    memory goes back to the system.
    """
    survivors = Path(survivors)
    npz = Path(npz) if npz is not None else default_npz_path(survivors)
    if not npz.parent.is_dir():
        raise in_file(npz, "output directory does not exist")
    size = 0
    try:
        with lock_for(npz), _open_source(survivors, max_bytes) as (fh, st):
            size = st.st_size
            with ThreadPoolExecutor(1, thread_name_prefix="winopt-sha256") as pool:
                return _convert_open(survivors, fh, st, npz, if_stale, expected_sha256, max_bytes, pool)
    finally:
        if size >= RETURN_MEMORY_AFTER:
            return_free_memory()


def _convert_open(
    path: Path, fh: BinaryIO, st: os.stat_result, npz: Path, if_stale: bool, expected_sha256: str | None,
    max_bytes: int, pool: ThreadPoolExecutor,
) -> ConvertResult:
    """`convert` with the lock held and the survivors file open."""
    meta_path = npz_meta_path(npz)
    if if_stale:  # the NPZ is often up to date: hash first, decode only when needed
        source = _Reading(path, fh, st, max_bytes, pool).finish()
        _check_expected(source, expected_sha256)
        meta = read_npz_meta(meta_path)
        if _describes(meta, source) and _npz_matches_meta(npz, meta):
            return ConvertResult(False, npz, meta_path, meta.count, msgspec.to_builtins(meta), list(meta.warnings))
    reading = _Reading(path, fh, st, max_bytes, pool)
    columns = _Columns(path)
    try:
        failure = None
        try:
            decode_in_pieces(reading.read, columns.take, line_at=reading.line_at)
        except UserError as exc:  # the sha256 first: a file in flux explains a parse error better
            failure = exc.with_traceback(None)
        source = reading.finish()
        _check_expected(source, expected_sha256)
        if failure is not None:
            raise failure
        _check_keys(path, fh, columns, reading.colons)
        dtypes, warnings = columns.dtypes(), columns.warnings()
        publish_atomic(npz, lambda out: write_npz(out, columns.pieces, dtypes))
        meta = build_meta(source, columns.count, dtypes, sha256_file(npz), npz.stat().st_size, warnings)
    finally:
        columns.clear()  # now, not when a traceback that holds this frame goes
    publish_bytes(meta_path, dump_json(msgspec.to_builtins(meta)))
    return ConvertResult(True, npz, meta_path, meta.count, msgspec.to_builtins(meta), warnings)


def _check_expected(source: _Source, expected_sha256: str | None) -> None:
    if expected_sha256 is not None and source.sha256 != expected_sha256:
        raise SurvivorsInFlux(
            f"{source.path}: sha256 {source.sha256[:12]} is not the {expected_sha256[:12]} "
            "the snapshot names (a write is in progress)"
        )


def _describes(meta: NpzMeta | None, source: _Source) -> bool:
    """The meta was made from exactly these bytes, by this NPZ schema."""
    return meta is not None and meta.current and meta.source.sha256 == source.sha256


__all__ = [
    "ConvertResult",
    "SurvivorsInFlux",
    "convert",
    "default_npz_path",
    "is_stale",
]
