"""The ETA column of `winopt status` (issue 16): the time left until a running run's
target, from the rate the daemon keeps in status.json (`daemon/progress.py`).

The column is shown only when some run has an ETA and the table still fits its width
with it (whole cells: the other columns are not shortened to make room); `--wide`
always has room.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from winopt.cli.table import GAP, ago

NAME = "ETA"
#: the column goes right after this one
AFTER = "TRIALS"
HELP = "  ETA       time left until a running run reaches its trials, at its recent rate\n"


def eta_cell(run: dict[str, Any], now: datetime) -> str:
    """'33m', '2h', 'due' (past its ETA), '-' (none)."""
    eta = (run.get("progress") or {}).get("eta")
    if not isinstance(eta, str) or run.get("state") not in (None, "running"):
        return "-"
    try:
        at = datetime.fromisoformat(eta)
    except ValueError:
        return "-"
    if at.tzinfo is None:
        at = at.astimezone()
    left = (at - now).total_seconds()
    return ago(left) if left >= 1 else "due"


def with_eta(columns: Sequence[str], rows: Sequence[Sequence[str]], cells: Sequence[str],
             width: int | None) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """`columns` and `rows` with the ETA column after TRIALS when some cell has an ETA
    and the widened table fits `width`; unchanged otherwise."""
    columns, rows = tuple(columns), [tuple(r) for r in rows]
    if AFTER not in columns or all(c == "-" for c in cells):
        return columns, rows
    at = columns.index(AFTER) + 1
    new_columns = columns[:at] + (NAME,) + columns[at:]
    new_rows = [r[:at] + (c,) + r[at:] for r, c in zip(rows, cells)]
    if width is not None and _natural_width(new_columns, new_rows) > width:
        return columns, rows
    return new_columns, new_rows


def _natural_width(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    widths = [max(len(str(row[i])) for row in [columns, *rows]) for i in range(len(columns))]
    return sum(widths) + len(GAP) * (len(widths) - 1)
