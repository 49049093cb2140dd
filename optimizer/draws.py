"""Draw histories (SPEC §1): load, validate and select by time of day.

A history is a JSON list, oldest first, of `{"date": "YYYY-MM-DD", "session":
"midday"|"evening", "draw": int}` objects, or a plain list of ints (session "all"); the
first entry decides which. Every malformed input is reported as one line,
`FILE: entry K: problem`, for the *first* bad entry, because a person fixes a file from
the top.

Two paths, so that large histories load fast and errors still read well:
- fast: msgspec decodes straight into typed entries (draws must be JSON integers, never
  booleans; sessions one of the two names; dates strings), then NumPy checks whole
  columns (ranges, calendar dates, order). A million draws load in a fraction of a
  second.
- scan: when anything in the fast path objects, the file is parsed again with orjson and
  walked entry by entry; the first entry with a problem is described. The scan is the
  definition of a valid history; if it finds nothing wrong it returns the draws itself,
  so the fast path can only ever be faster, never stricter.

Rules beyond the field types: dates are real calendar dates written `YYYY-MM-DD`, and
entries are strictly chronological — dates never go back, and within one date the midday
draw comes before the evening one, each at most once. A shuffled or duplicated history
would silently break the pivot model, so it is an error. Keys other than date, session
and draw are ignored (old exports carry extra columns).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
import orjson

from winopt.contracts.schemas import TIME_OF_DAY
from winopt.contracts.errors import UserError, in_file

#: sessions an object entry may name, in the order they happen within a day
SESSIONS = ("midday", "evening")
ENTRY_KEYS = ("date", "session", "draw")
_SESSION_CODE = {name: code for code, name in enumerate(SESSIONS)}
#: 0001-01-01 in days since 1970 (NumPy accepts year 0, the calendar does not)
_YEAR_ONE = int(np.datetime64("0001-01-01", "D").astype(np.int64))
#: (draws, session code per draw, or None for a plain list of ints)
Columns = tuple[np.ndarray, "np.ndarray | None"]


class _Entry(msgspec.Struct, gc=False):
    """One object entry as the fast path decodes it."""

    date: str
    session: Literal["midday", "evening"]
    draw: int


_DECODE_OBJECTS = msgspec.json.Decoder(list[_Entry])
_DECODE_PLAIN = msgspec.json.Decoder(list[int])


class _Invalid(Exception):
    """A fast-path check failed; the scan says where and why."""


class _Problem(Exception):
    """The scan found what is wrong with the file (message without the file name)."""


def load_history(
    path: str | os.PathLike[str], *, mod: int = 1000, time_of_day: str = "all"
) -> np.ndarray:
    """The draws of `path`, oldest first, after the `time_of_day` selection, as int64.

    Raises `UserError` naming the file and the first bad entry for any malformed input,
    and for a selection that leaves no draws.
    """
    check_selection(mod, time_of_day)
    return parse_history(_read_bytes(path), path, mod=mod, time_of_day=time_of_day)


def parse_history(
    data: bytes, source: str | os.PathLike[str], *, mod: int = 1000, time_of_day: str = "all"
) -> np.ndarray:
    """`load_history` on bytes already read (the daemon reads a job's draws file once,
    through a descriptor, and validates and keeps exactly those bytes); errors name
    `source`."""
    check_selection(mod, time_of_day)
    try:
        draws, sessions = _fast_columns(data, mod)
    except _Invalid:
        try:
            draws, sessions = _scanned_columns(data, mod)
        except _Problem as exc:
            raise in_file(source, str(exc)) from None
    return _select(source, draws, sessions, time_of_day)


def check_selection(mod: int, time_of_day: str) -> None:
    """Reject a `mod` or `time_of_day` that no history could satisfy (no file involved)."""
    if type(mod) is not int or mod < 1:
        raise UserError(f"mod must be a positive integer, got {mod!r}")
    if time_of_day not in TIME_OF_DAY:
        raise UserError(f"time_of_day must be one of {', '.join(TIME_OF_DAY)}, got {time_of_day!r}")


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise in_file(path, "no such file") from None
    except IsADirectoryError:
        raise in_file(path, "is a directory, expected a JSON draw history") from None
    except OSError as exc:
        raise in_file(path, f"cannot read: {exc.strerror or exc}") from None


def _select(
    path: str | os.PathLike[str], draws: np.ndarray, sessions: np.ndarray | None, time_of_day: str
) -> np.ndarray:
    """The draws of one session, or all of them."""
    if time_of_day == "all":
        return draws
    if sessions is None:
        raise in_file(
            path,
            f"time_of_day {time_of_day!r} selects nothing: the history is a plain list of draws "
            "(session 'all'); use time_of_day 'all' or date/session/draw entries",
        )
    selected = draws[sessions == _SESSION_CODE[time_of_day]]
    if selected.size == 0:
        raise in_file(path, f"no {time_of_day} draws: time_of_day={time_of_day!r} selects nothing")
    return selected


# --- fast path: typed decoding, then whole-column checks -------------------------------


def _fast_columns(data: bytes, mod: int) -> Columns:
    """Objects or plain ints, decoded and checked column-wise; `_Invalid` on any doubt."""
    try:
        entries = _DECODE_OBJECTS.decode(data)
    except msgspec.MsgspecError:
        entries = None
    if entries:
        draws = _draw_array([e.draw for e in entries], mod)
        codes = np.fromiter((e.session == "evening" for e in entries), np.int64, len(entries))
        days = _day_numbers([e.date for e in entries])
        if (np.diff(days * len(SESSIONS) + codes) <= 0).any():
            raise _Invalid
        return draws, codes
    try:
        plain = _DECODE_PLAIN.decode(data)
    except msgspec.MsgspecError:
        raise _Invalid from None
    if not plain:
        raise _Invalid
    return _draw_array(plain, mod), None


def _draw_array(values: list[int], mod: int) -> np.ndarray:
    """`values` (ints, as decoded) as int64, each in `[0, mod)`."""
    try:
        draws = np.array(values, dtype=np.int64)
    except OverflowError:
        raise _Invalid from None
    if ((draws < 0) | (draws >= mod)).any():
        raise _Invalid
    return draws


def _day_numbers(dates: list[str]) -> np.ndarray:
    """Days since 1970 of strict `YYYY-MM-DD` strings, checked byte-wise, then by calendar."""
    if set(map(len, dates)) != {10}:
        raise _Invalid
    try:
        text = np.array(dates, dtype="S10")
        days = text.astype("datetime64[D]").astype(np.int64)
    except (UnicodeEncodeError, ValueError):
        raise _Invalid from None
    chars = text.view(np.uint8).reshape(-1, 10)
    digits = chars[:, [0, 1, 2, 3, 5, 6, 8, 9]]
    if not (
        ((digits >= ord("0")) & (digits <= ord("9"))).all()
        and (chars[:, [4, 7]] == ord("-")).all()
        and (days >= _YEAR_ONE).all()
    ):
        raise _Invalid
    return days


# --- the scan: the definition, and the first bad entry described ------------------------


def _scanned_columns(data: bytes, mod: int) -> Columns:
    """Parse with orjson and check entry by entry; `_Problem` names the first bad one."""
    try:
        entries = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _Problem(f"not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise _Problem(f"expected a JSON list of draws, got a JSON {_json_kind(entries)}")
    if not entries:
        raise _Problem("the history is empty (expected a JSON list of draws)")
    if type(entries[0]) is int:
        for index, value in enumerate(entries):
            _raise_at(
                index, _draw_problem(value, mod, "expected a draw (an integer) like entry 0, got")
            )
        return np.array(entries, dtype=np.int64), None
    previous: tuple[int, int] | None = None
    for index, entry in enumerate(entries):
        _raise_at(index, _entry_problem(entry, mod))
        when = (_date_ordinal(entry["date"]) or 0, _SESSION_CODE[entry["session"]])
        if previous is not None and when <= previous:
            before = entries[index - 1]
            verb = "repeats" if when == previous else "comes before"
            _raise_at(
                index,
                f"{entry['date']} {entry['session']} {verb} entry {index - 1} "
                f"({before['date']} {before['session']}): a history is oldest first, "
                "one draw per session and date",
            )
        previous = when
    draws = np.array([e["draw"] for e in entries], dtype=np.int64)
    return draws, np.array([_SESSION_CODE[e["session"]] for e in entries], dtype=np.int64)


def _raise_at(index: int, problem: str | None) -> None:
    if problem:
        raise _Problem(f"entry {index}: {problem}")


def _entry_problem(entry: Any, mod: int) -> str | None:
    """What is wrong with one object entry on its own, if anything."""
    if not isinstance(entry, dict):
        return f"expected an object with date, session and draw, got {_show(entry)}"
    missing = [key for key in ENTRY_KEYS if key not in entry]
    if missing:
        return f"missing {', '.join(map(repr, missing))} in {_show(entry)}"
    problem = _draw_problem(entry["draw"], mod, "draw is not an integer:")
    if problem:
        return problem
    session = entry["session"]
    if not isinstance(session, str) or session not in _SESSION_CODE:
        return f"unknown session {_show(session)} (expected {' or '.join(map(repr, SESSIONS))})"
    if _date_ordinal(entry["date"]) is None:
        return f"date {_show(entry['date'])} is not a valid YYYY-MM-DD date"
    return None


def _draw_problem(value: Any, mod: int, not_int: str) -> str | None:
    """What is wrong with one draw value, if anything (bools are not draws)."""
    if type(value) is not int:
        return f"{not_int} {_show(value)}"
    if not 0 <= value < mod:
        return f"draw {value} is out of range [0, {mod})"
    return None


def _date_ordinal(value: Any) -> int | None:
    """The ordinal of a strict `YYYY-MM-DD` string, else None."""
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-" or value[7] != "-":
        return None
    if not (value[:4] + value[5:7] + value[8:]).isdigit() or not value.isascii():
        return None
    try:
        return dt.date.fromisoformat(value).toordinal()
    except ValueError:
        return None


def _show(value: Any, limit: int = 40) -> str:
    """A parsed JSON value written back as JSON (control characters escaped), cut to a
    short excerpt: a message may quote a bad value, never a file's content at length."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type, for 'expected a list, got ...' messages."""
    kinds = {dict: "object", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)
