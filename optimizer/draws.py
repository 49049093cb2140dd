"""Draw histories (SPEC §1): load, validate and select by time of day.

A history is a JSON list, oldest first, of `{"date": "YYYY-MM-DD", "session":
"midday"|"evening", "draw": int}` objects, or a plain list of ints (session "all"); the
first entry decides which. Every malformed input is reported as one line,
`FILE: entry K: problem`, for the *first* bad entry, because a person fixes a file from
the top.

Validation has two paths so that large histories load fast: whole-column checks (one
C-level pass per rule, NumPy for ranges and order) accept a good file in well under a
second per million draws; only when a column check fails does a plain per-entry scan run
to find and describe the first offender. The scan is the definition; the column checks
are a fast way to know it would find nothing.

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
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import orjson

from winopt.contracts.schemas import TIME_OF_DAY
from winopt.errors import UserError, in_file

#: sessions an object entry may name, in the order they happen within a day
SESSIONS = ("midday", "evening")
ENTRY_KEYS = ("date", "session", "draw")
_SESSION_CODE = {name: code for code, name in enumerate(SESSIONS)}
T = TypeVar("T")
#: 0001-01-01 in days since 1970 (NumPy accepts year 0, the calendar does not)
_YEAR_ONE = int(np.datetime64("0001-01-01", "D").astype(np.int64))


class _Invalid(Exception):
    """A column check failed; the per-entry scan says where and why."""


def load_history(
    path: str | os.PathLike[str], *, mod: int = 1000, time_of_day: str = "all"
) -> np.ndarray:
    """The draws of `path`, oldest first, after the `time_of_day` selection, as int64.

    Raises `UserError` naming the file and the first bad entry for any malformed input,
    and for a selection that leaves no draws.
    """
    check_selection(mod, time_of_day)
    entries = _read_list(path)
    if not entries:
        raise in_file(path, "the history is empty (expected a JSON list of draws)")
    if type(entries[0]) is int:
        draws = _validated(path, entries, mod, _plain_columns, _first_plain_problem)
        if time_of_day != "all":
            raise in_file(
                path,
                f"time_of_day {time_of_day!r} selects nothing: the history is a plain list "
                "of draws (session 'all'); use time_of_day 'all' or date/session/draw entries",
            )
        return draws
    draws, sessions = _validated(path, entries, mod, _object_columns, _first_object_problem)
    if time_of_day == "all":
        return draws
    selected = draws[sessions == _SESSION_CODE[time_of_day]]
    if selected.size == 0:
        raise in_file(path, f"no {time_of_day} draws: time_of_day={time_of_day!r} selects nothing")
    return selected


def check_selection(mod: int, time_of_day: str) -> None:
    """Reject a `mod` or `time_of_day` that no history could satisfy (no file involved)."""
    if type(mod) is not int or mod < 1:
        raise UserError(f"mod must be a positive integer, got {mod!r}")
    if time_of_day not in TIME_OF_DAY:
        raise UserError(f"time_of_day must be one of {', '.join(TIME_OF_DAY)}, got {time_of_day!r}")


def _read_list(path: str | os.PathLike[str]) -> list[Any]:
    """The parsed top-level list of `path`, or a one-line error."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise in_file(path, "no such file") from None
    except IsADirectoryError:
        raise in_file(path, "is a directory, expected a JSON draw history") from None
    except OSError as exc:
        raise in_file(path, f"cannot read: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise in_file(path, f"not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise in_file(path, f"expected a JSON list of draws, got a JSON {_json_kind(data)}")
    return data


def _validated(
    path: str | os.PathLike[str],
    entries: list[Any],
    mod: int,
    columns: Callable[[list[Any], int], T],
    first_problem: Callable[[list[Any], int], tuple[int, str]],
) -> T:
    """`columns(entries, mod)`, or the first problem as a `UserError` naming the file."""
    try:
        return columns(entries, mod)
    except _Invalid:
        index, problem = first_problem(entries, mod)
        raise in_file(path, f"entry {index}: {problem}") from None


# --- fast path: whole-column checks --------------------------------------------------


def _plain_columns(entries: list[Any], mod: int) -> np.ndarray:
    """A plain list: all ints (no bools), each in `[0, mod)`."""
    return _draw_array(entries, mod)


def _object_columns(entries: list[Any], mod: int) -> tuple[np.ndarray, np.ndarray]:
    """Objects: the draws, and each entry's session code, after every column check."""
    if set(map(type, entries)) != {dict}:
        raise _Invalid
    try:
        draws = [e["draw"] for e in entries]
        sessions = [e["session"] for e in entries]
        dates = [e["date"] for e in entries]
    except KeyError:
        raise _Invalid from None
    values = _draw_array(draws, mod)
    if set(map(type, sessions)) != {str} or not set(sessions) <= _SESSION_CODE.keys():
        raise _Invalid
    codes = (np.array(sessions) == SESSIONS[1]).astype(np.int64)
    days = _day_numbers(dates)
    if (np.diff(days * len(SESSIONS) + codes) <= 0).any():
        raise _Invalid
    return values, codes


def _draw_array(values: list[Any], mod: int) -> np.ndarray:
    """`values` as int64 when every one is an int (not a bool) in `[0, mod)`."""
    if set(map(type, values)) != {int}:
        raise _Invalid
    try:
        draws = np.array(values, dtype=np.int64)
    except OverflowError:
        raise _Invalid from None
    if ((draws < 0) | (draws >= mod)).any():
        raise _Invalid
    return draws


def _day_numbers(dates: list[Any]) -> np.ndarray:
    """Days since 1970 of strict `YYYY-MM-DD` strings, checked byte-wise, then by calendar."""
    if set(map(type, dates)) != {str} or set(map(len, dates)) != {10}:
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


# --- slow path: the first bad entry, described ---------------------------------------


def _first_plain_problem(entries: list[Any], mod: int) -> tuple[int, str]:
    for index, value in enumerate(entries):
        problem = _draw_problem(value, mod, "expected a draw (an integer) like entry 0, got")
        if problem:
            return index, problem
    raise AssertionError("column check failed but no entry is bad")


def _first_object_problem(entries: list[Any], mod: int) -> tuple[int, str]:
    previous: tuple[int, int] | None = None
    for index, entry in enumerate(entries):
        problem = _entry_problem(entry, mod)
        if problem:
            return index, problem
        when = (_date_ordinal(entry["date"]), _SESSION_CODE[entry["session"]])
        if previous is not None and when <= previous:
            before = entries[index - 1]
            verb = "repeats" if when == previous else "comes before"
            return index, (
                f"{entry['date']} {entry['session']} {verb} entry {index - 1} "
                f"({before['date']} {before['session']}): a history is oldest first, "
                "one draw per session and date"
            )
        previous = when
    raise AssertionError("column check failed but no entry is bad")


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
    try:
        return dt.date.fromisoformat(value).toordinal()
    except ValueError:
        return None


def _show(value: Any, limit: int = 60) -> str:
    """A parsed JSON value written back as JSON, cut to one short line for a message."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type, for 'expected a list, got ...' messages."""
    kinds = {dict: "object", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)
