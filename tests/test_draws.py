"""Draw histories (SPEC §1): every kind of bad input names the file and the first bad
entry; time_of_day selects sessions in file order; the CLI turns errors into one line and
exit 2."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from winopt.contracts.errors import UserError
from winopt.optimizer import draws as draws_module
from winopt.optimizer.draws import load_history


def day(n: int) -> str:
    return f"2024-01-{n:02d}"


def history(days: int = 10) -> list[dict[str, Any]]:
    """A valid two-session history: midday draw = 10*day, evening = 10*day + 1."""
    return [
        {"date": day(d), "session": s, "draw": 10 * d + i}
        for d in range(1, days + 1)
        for i, s in enumerate(("midday", "evening"))
    ]


def write(tmp_path: Path, content: Any, name: str = "draws.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def compact(value: Any) -> str:
    """A value as the error messages show it: compact JSON."""
    return json.dumps(value, separators=(",", ":"))


def error_of(path: Path, **kwargs: Any) -> str:
    with pytest.raises(UserError) as info:
        load_history(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


def with_entry(index: int, **changes: Any) -> list[Any]:
    entries = history()
    entries[index] = {**entries[index], **changes}
    return entries


# --- valid histories and selection ----------------------------------------------------


def test_objects_load_oldest_first_as_int64(tmp_path: Path) -> None:
    draws = load_history(write(tmp_path, history(3)))
    assert draws.dtype == np.int64
    assert draws.tolist() == [10, 11, 20, 21, 30, 31]


def test_time_of_day_selects_one_session_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, history(4))
    assert load_history(path, time_of_day="midday").tolist() == [10, 20, 30, 40]
    assert load_history(path, time_of_day="evening").tolist() == [11, 21, 31, 41]
    assert load_history(path, time_of_day="all").tolist() == [10, 11, 20, 21, 30, 31, 40, 41]


def test_days_with_one_session_are_fine(tmp_path: Path) -> None:
    entries = [
        {"date": "2024-01-01", "session": "evening", "draw": 1},
        {"date": "2024-01-02", "session": "midday", "draw": 2},
        {"date": "2024-01-05", "session": "midday", "draw": 3},
    ]
    path = write(tmp_path, entries)
    assert load_history(path).tolist() == [1, 2, 3]
    assert load_history(path, time_of_day="midday").tolist() == [2, 3]


def test_plain_list_of_ints_is_session_all(tmp_path: Path) -> None:
    assert load_history(write(tmp_path, [0, 999, 5])).tolist() == [0, 999, 5]


def test_mod_sets_the_range(tmp_path: Path) -> None:
    path = write(tmp_path, [0, 99, 5])
    assert load_history(path, mod=100).tolist() == [0, 99, 5]
    assert "entry 1: draw 99 is out of range [0, 50)" in error_of(path, mod=50)


def test_extra_keys_are_ignored(tmp_path: Path) -> None:
    entries = [{**e, "jackpot": "n/a"} for e in history(2)]
    assert load_history(write(tmp_path, entries)).tolist() == [10, 11, 20, 21]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 999), st.integers(0, 999)), min_size=1, max_size=30))
def test_selection_partitions_the_history(
    tmp_path_factory: pytest.TempPathFactory, pairs: list
) -> None:
    """midday + evening interleaved day by day is exactly `all`."""
    entries = []
    for d, (mid, eve) in enumerate(pairs):
        date = str(np.datetime64("2000-01-01") + d)
        entries += [
            {"date": date, "session": "midday", "draw": mid},
            {"date": date, "session": "evening", "draw": eve},
        ]
    path = write(tmp_path_factory.mktemp("h"), entries)
    assert load_history(path, time_of_day="midday").tolist() == [m for m, _ in pairs]
    assert load_history(path, time_of_day="evening").tolist() == [e for _, e in pairs]
    assert load_history(path).tolist() == [v for pair in pairs for v in pair]


# --- one test per kind of bad input ---------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.json").endswith("no such file")


def test_not_json(tmp_path: Path) -> None:
    assert "not valid JSON" in error_of(write(tmp_path, '[{"date": "2024-01-01",'))


def test_not_a_list(tmp_path: Path) -> None:
    assert "expected a JSON list of draws, got a JSON object" in error_of(
        write(tmp_path, {"draws": [1, 2]})
    )


def test_empty_list(tmp_path: Path) -> None:
    assert "empty" in error_of(write(tmp_path, []))


def test_entry_not_an_object(tmp_path: Path) -> None:
    entries: list[Any] = history()
    entries[3] = [day(2), "evening", 21]
    assert 'entry 3: expected an object with date, session and draw, got ["2024-01-02"' in error_of(
        write(tmp_path, entries)
    )


def test_entry_missing_a_key(tmp_path: Path) -> None:
    entries: list[Any] = history()
    del entries[6]["draw"]
    assert "entry 6: missing 'draw'" in error_of(write(tmp_path, entries))


@pytest.mark.parametrize(
    "bad", ["2024-02-30", "20240101", "2024-1-01", "01/02/2024", 20240101, None, "2024-01-01T00"]
)
def test_bad_date(tmp_path: Path, bad: Any) -> None:
    message = error_of(write(tmp_path, with_entry(5, date=bad)))
    assert f"entry 5: date {compact(bad)} is not a valid YYYY-MM-DD date" in message


@pytest.mark.parametrize("bad", [True, False, 5.0, "7", None, [1]])
def test_draw_not_an_int(tmp_path: Path, bad: Any) -> None:
    """JSON booleans are not draws even though Python's bool is an int."""
    message = error_of(write(tmp_path, with_entry(4, draw=bad)))
    assert f"entry 4: draw is not an integer: {compact(bad)}" in message


@pytest.mark.parametrize("bad", [True, 5.0, "7", {"draw": 7}])
def test_plain_draw_not_an_int(tmp_path: Path, bad: Any) -> None:
    message = error_of(write(tmp_path, [1, 2, bad, 4]))
    assert f"entry 2: expected a draw (an integer) like entry 0, got {compact(bad)}" in message


@pytest.mark.parametrize("bad", [1000, -1, 2**64 - 1])
def test_draw_out_of_range(tmp_path: Path, bad: int) -> None:
    assert f"entry 17: draw {bad} is out of range [0, 1000)" in error_of(
        write(tmp_path, with_entry(17, draw=bad))
    )
    assert f"entry 1: draw {bad} is out of range [0, 1000)" in error_of(
        write(tmp_path, [5, bad, 7], "plain.json")
    )


@pytest.mark.parametrize("bad", ["night", "Midday", "all", 1, None])
def test_unknown_session(tmp_path: Path, bad: Any) -> None:
    assert f"entry 7: unknown session {compact(bad)}" in error_of(
        write(tmp_path, with_entry(7, session=bad))
    )


def test_empty_after_selection(tmp_path: Path) -> None:
    evenings = [e for e in history() if e["session"] == "evening"]
    assert "no midday draws" in error_of(write(tmp_path, evenings), time_of_day="midday")


def test_plain_list_has_no_sessions_to_select(tmp_path: Path) -> None:
    assert "plain list" in error_of(write(tmp_path, [1, 2, 3]), time_of_day="evening")


def test_out_of_order(tmp_path: Path) -> None:
    entries = history()
    entries[8], entries[9] = entries[9], entries[8]  # evening before midday of the same day
    assert "entry 9: 2024-01-05 midday comes before entry 8 (2024-01-05 evening)" in error_of(
        write(tmp_path, entries)
    )
    entries = history()
    entries[12] = {**entries[12], "date": day(1)}
    assert "entry 12: 2024-01-01 midday comes before entry 11" in error_of(
        write(tmp_path, entries, "back.json")
    )


def test_duplicate_session(tmp_path: Path) -> None:
    entries = history()
    entries.insert(5, dict(entries[4]))
    assert "entry 5: 2024-01-03 midday repeats entry 4" in error_of(write(tmp_path, entries))


def test_first_bad_entry_wins_across_kinds(tmp_path: Path) -> None:
    """An early bad date is reported before a later out-of-range draw."""
    entries = history()
    entries[2] = {**entries[2], "date": "yesterday"}
    entries[9] = {**entries[9], "draw": 5000}
    assert "entry 2: date" in error_of(write(tmp_path, entries))


def test_bad_mod_and_selection_need_no_file(tmp_path: Path) -> None:
    path = write(tmp_path, [1, 2])
    with pytest.raises(UserError, match="mod must be a positive integer"):
        load_history(path, mod=0)
    with pytest.raises(UserError, match="time_of_day must be one of"):
        load_history(path, time_of_day="night")


# --- through the CLI: one line, exit 2, no traceback -----------------------------------


def test_cli_reports_bad_history_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, with_entry(17, draw=1000))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "winopt",
            "sieve",
            "--draws",
            str(path),
            "--prng",
            "java_lcg",
            "--window-size",
            "4",
            "--offset",
            "0",
            "--skip-min",
            "0",
            "--skip-max",
            "1",
            "--forward-threshold",
            "0.5",
            "--reverse-threshold",
            "0.5",
            "--seed-start",
            "0",
            "--seed-count",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"winopt: error: {path}: entry 17: draw 1000 is out of range [0, 1000)\n"
    assert proc.stdout == ""


# --- the fast path never disagrees with the scan that defines a valid history ----------

ENTRY_VALUES = st.one_of(
    st.integers(-2, 1001),
    st.sampled_from([True, None, 2.0, "5", 2**63, 2**64 - 1]),
)
DATES = st.one_of(
    st.dates(min_value=dt.date(1999, 12, 30), max_value=dt.date(2000, 1, 3)).map(str),
    st.sampled_from(["2000-02-30", "2000-1-01", "0000-01-01", "２０００-01-01", "2000-01-01T0", 7]),
)
ENTRIES = st.fixed_dictionaries(
    {
        "date": DATES,
        "session": st.sampled_from(["midday", "evening", "night", 0]),
        "draw": ENTRY_VALUES,
    }
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(ENTRIES, max_size=6),
        st.lists(ENTRY_VALUES, max_size=6),
        st.lists(st.integers(0, 999)),
    )
)
def test_fast_path_agrees_with_the_scan(entries: list[Any]) -> None:
    """Whatever the fast path accepts, the entry-by-entry scan accepts with equal columns;
    whatever it rejects, load_history still answers (the scan's verdict, never a crash)."""
    data = json.dumps(entries, ensure_ascii=False).encode()
    try:
        fast = draws_module._fast_columns(data, 1000)
    except draws_module._Invalid:
        fast = None
    try:
        scanned = draws_module._scanned_columns(data, 1000)
    except draws_module._Problem:
        assert fast is None
        event("rejected")
        return
    event("accepted by the fast path" if fast is not None else "accepted by the scan only")
    if fast is not None:
        assert np.array_equal(fast[0], scanned[0])
        assert (fast[1] is None) == (scanned[1] is None)
        assert fast[1] is None or np.array_equal(fast[1], scanned[1])
