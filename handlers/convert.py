"""`winopt convert`: bidirectional_survivors.json -> the rigs' NPZ and its meta (SPEC §3).

The survivors file is read once; its sha256 is computed from those bytes on a second
thread while msgspec decodes them straight into typed structs, so every type and range
check happens inside the decoder and its error already names the first bad entry. The
arrays are then filled column by column in C (`np.fromiter`), with no per-field Python
loop over the rows; the fields a trial repeats on every row are checked by the decoder
and filled without a pass at all (`_decode_one_trial`).

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
import os
import re
import time
import typing
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from winopt import __version__
from winopt.contracts import lock_for, publish_bytes, publish_json, sha256_file
from winopt.contracts.schemas import (
    NPZ_ARRAYS,
    NPZ_NAME,
    NPZ_SCHEMA_VERSION,
    PRNG_CODES,
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
_UINT64_MAX = 2**64 - 1

_Count = Annotated[int, msgspec.Meta(ge=0, le=_INT32_MAX)]
_Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
_Tally = Annotated[float, msgspec.Meta(ge=0.0)]
_Family = Literal[tuple(PRNG_CODES)]  # type: ignore[valid-type]
_SkipMode = Literal[tuple(SKIP_MODES)]  # type: ignore[valid-type]
_TimeOfDay = Literal[TIME_OF_DAY]  # type: ignore[valid-type]


class SurvivorsInFlux(Exception):
    """The survivors file on disk is not the one the snapshot names: a write is in
    progress. Not a `UserError`: nothing is wrong, try again at the next event."""


class _Survivor(msgspec.Struct, gc=False, kw_only=True):
    """One object of bidirectional_survivors.json as the decoder checks it (SPEC §3).

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


#: the fields one trial's file repeats on every row (SPEC §3: the trial's window, number
#: and counts); see _decode_one_trial
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
)
_SURVIVOR_TYPES = typing.get_type_hints(_Survivor, include_extras=True)


@dataclass(frozen=True)
class _Survivors:
    """Decoded rows, plus the fields the decoder proved equal on every row (and their
    value), which need no pass over the rows."""

    rows: list[Any]
    constants: dict[str, Any]


@dataclass
class ConvertResult:
    """What `convert` did: `converted` is False when `if_stale` found the NPZ up to date."""

    converted: bool
    npz_path: Path
    meta_path: Path
    count: int
    meta: dict[str, Any]


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
    """Decode and type-check the survivors list; UserError naming the first bad entry."""
    fast = _decode_one_trial(data)
    if fast is not None:
        return fast
    try:
        return _Survivors(msgspec.json.Decoder(list[_Survivor]).decode(data), {})
    except msgspec.ValidationError as exc:
        raise in_file(path, _describe_validation(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise in_file(path, f"not valid JSON ({_where_in_text(str(exc), data)})") from exc


def _decode_one_trial(data: bytes) -> _Survivors | None:
    """The fast path for what `winopt optimize` writes, one trial's survivors: the trial's
    fields are declared `Literal[<first row's value>]`, so the decoder checks that every
    row repeats them without making a Python object per value, and they need no column
    pass (~1/3 less time on 100k rows). None when the file is anything else (mixed
    trials, bad input, non-integral counts): the general decoder then handles it and
    words any error."""
    first = _first_row(data)
    if first is None:
        return None
    constants = {k: v for k in TRIAL_FIELDS if float(v := getattr(first, k)).is_integer()}
    fields: list[tuple[Any, ...]] = []
    for name in _Survivor.__struct_fields__:
        kind = Literal[int(constants[name])] if name in constants else _SURVIVOR_TYPES[name]
        fields.append((name, kind, None) if name == "time_of_day" else (name, kind))
    try:
        row = msgspec.defstruct("_TrialRow", fields, gc=False, kw_only=True)
        return _Survivors(msgspec.json.Decoder(list[row]).decode(data), constants)
    except (msgspec.MsgspecError, TypeError, ValueError):
        return None


def _first_row(data: bytes) -> _Survivor | None:
    """The first object of the list, decoded on its own (None if that is not possible)."""
    start = data.find(b"{")
    end = data.find(b"}", start)
    if start < 0 or end < 0:
        return None
    try:
        return msgspec.json.Decoder(_Survivor).decode(data[start : end + 1])
    except msgspec.MsgspecError:
        return None


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
    "prng_type": ("PRNG family", tuple(PRNG_CODES)),
    "skip_mode": ("skip mode", tuple(SKIP_MODES)),
    "time_of_day": ("time of day", TIME_OF_DAY),
}


def survivor_arrays(path: Path, survivors: _Survivors) -> dict[str, np.ndarray]:
    """One array per NPZ field (SPEC §3), in NPZ_ARRAYS order, all of length len(rows)."""
    rows, n = survivors.rows, len(survivors.rows)
    arrays: dict[str, np.ndarray] = {"seeds": _seed_array(path, rows)}
    for name, (dtype, key) in NPZ_ARRAYS.items():
        if key in survivors.constants:
            arrays[name] = np.full(n, survivors.constants[key], dtype)
        elif key == "prng_type":
            arrays[name] = _coded(rows, key, PRNG_CODES)
        elif key == "skip_mode":
            arrays[name] = _coded(rows, key, SKIP_MODES)
        elif name != "seeds":
            arrays[name] = np.fromiter(map(attrgetter(key), rows), dtype, n)
    return arrays


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


def build_meta(source: _Source, arrays: dict[str, np.ndarray], npz: bytes) -> dict[str, Any]:
    """bidirectional_survivors_binary.meta.json (SPEC §3): what was converted, from what."""
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
            "dtypes": {name: array.dtype.name for name, array in arrays.items()},
            "codes": {"prng_type": dict(PRNG_CODES), "skip_mode": dict(SKIP_MODES)},
        },
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

    Stale when the meta is missing or unreadable, the NPZ is missing or not the one the
    meta describes, or the survivors' sha256 differs from the meta's. The size is the fast
    pre-check: a different size is stale without hashing. An equal size and mtime are not
    trusted as "fresh" (a same-size rewrite within the filesystem's timestamp granularity,
    or a copy that preserved mtime, would pass), so then the sha256 decides; hashing 60 MB
    costs ~40 ms. A missing survivors file counts as stale so that `convert` reports it.
    """
    survivors = Path(survivors)
    npz = Path(npz) if npz is not None else default_npz_path(survivors)
    meta = read_npz_meta(npz_meta_path(npz))
    if meta is None or not _npz_matches_meta(npz, meta):
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
                return ConvertResult(False, npz, meta_path, int(meta.get("count", 0)), meta)
        if isinstance(parsed, UserError):
            raise parsed
        decoded = parsed if parsed is not None else parse_survivors(survivors, source.data)
        arrays = survivor_arrays(survivors, decoded)
        blob = npz_bytes(arrays)
        meta = build_meta(source, arrays, blob)
        publish_bytes(npz, blob)
        publish_json(meta_path, meta)
    return ConvertResult(True, npz, meta_path, meta["count"], meta)


def _describes(meta: dict[str, Any] | None, source: _Source) -> bool:
    """The meta was made from exactly these bytes."""
    return meta is not None and (meta.get("source") or {}).get("sha256") == source.sha256


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
