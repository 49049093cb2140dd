"""Tables and notes that fit the reader's terminal (issue 12, item 4).

A person reads `winopt status`, `winopt jobs` and `winopt sync --wait` in an 80-column
terminal as often as in a wide one, so every table is laid out for a width: the
terminal's (`shutil.get_terminal_size`, which honours `COLUMNS` and falls back to 80
when stdout is a pipe), or none at all for `--wide`. Columns named flexible give up
characters first (in the order given), each shortened cell marked with `~`; the notes
under a table are wrapped, never cut, since they carry the errors.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Collection, Sequence

GAP = "  "
#: the mark of a shortened cell (ASCII: a C-locale terminal shows it too)
CUT = "~"
#: a flexible column is never made narrower than this (or its header)
MIN_FLEX = 6


def terminal_width() -> int:
    """The width to lay out for: $COLUMNS, else the terminal's, else 80."""
    return max(20, shutil.get_terminal_size((80, 24)).columns)


def shorten(text: str, width: int, *, keep_tail: bool = False) -> str:
    """`text` in at most `width` characters, `~` marking what was cut (its start when
    `keep_tail`: the end of a path says more than its beginning)."""
    if len(text) <= width:
        return text
    if width <= len(CUT):
        return CUT[:width]
    return CUT + text[-(width - len(CUT)):] if keep_tail else text[: width - len(CUT)] + CUT


def fit_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int | None = None,
    *,
    flexible: Collection[str] = (),
    keep_tail: Collection[str] = (),
) -> list[str]:
    """The header and rows, columns padded to line up; with `width`, the `flexible`
    columns are narrowed (in their order) until a line fits, and a line still too long
    is cut at `width`, so no line is ever longer."""
    widths = [max(len(str(row[i])) for row in [columns, *rows]) for i in range(len(columns))]
    if width is not None:
        _narrow(widths, columns, width, flexible)
    lines = []
    for row in [columns, *rows]:
        cells = [shorten(str(cell), w, keep_tail=name in keep_tail) for cell, w, name in zip(row, widths, columns)]
        line = GAP.join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()
        lines.append(line if width is None else shorten(line, width))
    return lines


def _narrow(widths: list[int], columns: Sequence[str], width: int, flexible: Collection[str]) -> None:
    """Take characters from the flexible columns, in the order given (the one that
    matters least first), each down to its header or MIN_FLEX, until the table fits."""
    excess = sum(widths) + len(GAP) * (len(widths) - 1) - width
    for name in flexible:
        if excess <= 0 or name not in columns:
            continue
        i = list(columns).index(name)
        give = min(excess, max(0, widths[i] - max(MIN_FLEX, len(name))))
        widths[i] -= give
        excess -= give


def ago(seconds: float) -> str:
    """'42s', '7m', '3h', '2d': an age in a few characters (whole units, rounded down)."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def wrap(line: str, width: int | None, indent: str = "  ") -> list[str]:
    """A note as lines of at most `width` characters, the continuation lines indented
    (none when `width` is None). Long words (paths, URLs) are broken rather than let a
    line run past the edge."""
    if width is None or len(line) <= width:
        return [line]
    return textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False) or [line]


def compact(n: int) -> str:
    """A count in at most 4 characters for a narrow table: exact below 100000, else
    three significant digits, rounded down (999999 is "999k", never a full "1M")."""
    if n < 100_000:
        return str(n)
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            value = n / size
            for decimals in (2, 1, 0):
                if value < 10 ** (3 - decimals):
                    text = f"{int(value * 10**decimals) / 10**decimals:.{decimals}f}"
                    return (text.rstrip("0").rstrip(".") if "." in text else text) + unit
    return str(n)


def wrap_all(lines: Sequence[str], width: int | None, indent: str = "  ") -> list[str]:
    """`wrap` over several notes."""
    return [part for line in lines for part in wrap(line, width, indent)]
