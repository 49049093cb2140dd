"""A JSON list too big to hold whole, decoded piece by piece: each piece a run of whole
entries of the list, made a valid JSON list of its own (`[` + entries + `]`).

Why: a survivors file holds ~800 bytes of text per entry, its NPZ ~90 bytes of arrays.
Decoding the whole text at once costs the text plus every decoded row, 15 times the
arrays; decoding a megabyte at a time costs the arrays plus about one piece.

Where to cut: after the comma that ends an entry, at depth 0 of the list and outside any
string. A likely place is found cheaply, near the end of what was read: `},` followed by
a newline (a string cannot hold a raw newline, so that comma is outside strings) or by
`{` / ` {`. A likely cut is proved right by its piece decoding: a piece that decodes has
balanced brackets and closed strings, so its last comma was between two entries. When
it does not decode (a nested object ended there, or the data is bad), the exact place is
found by a scan that tracks strings and depth (NumPy, over the piece only), and that
piece decides: it decodes, or its error is the file's error. Errors name the file's own
entry index and line (`Where`), so they read as if the file had been decoded whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from winopt.contracts.errors import UserError

#: bytes read at a time (and so, about, the text held at a time)
CHUNK_BYTES = 1 << 20
#: how far from the end of the text read a likely cut is looked for first
_TAIL = 1 << 16
#: `}` `,` then a byte no string can hold raw, or the next entry's `{`
_LIKELY = (b"},\n", b"},\r", b"},{", b"}, {")

_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_MARKS = np.zeros(256, bool)  # the bytes that matter to depth: , [ ] { }
_DEPTH = np.zeros(256, np.int8)  # what each does to the depth
for _char, _step in ((",", 0), ("[", 1), ("{", 1), ("]", -1), ("}", -1)):
    _MARKS[ord(_char)], _DEPTH[ord(_char)] = True, _step


@dataclass(frozen=True)
class Where:
    """Where a piece lies in the file, for error lines: the index of its first entry in
    the file's list, the file offset of the piece's byte 0 (a piece's own `[` counts as
    the comma it replaces), and how to turn a file offset into a line number (None: the
    piece is the whole file, count in it). Lines are counted only when an error needs one."""

    entry: int = 0
    offset: int = 0
    line_at: Callable[[int], int] | None = field(default=None, compare=False)

    def line(self, data: bytes, position: int) -> int:
        """The file line of byte `position` of the piece `data`."""
        if self.line_at is None:
            return data.count(b"\n", 0, position) + 1
        return self.line_at(self.offset + position)


#: decodes one piece (a JSON list), raising UserError for bad data; returns its entries
Decode = Callable[[bytes, Where], int]


def decode_in_pieces(
    read: Callable[[int], bytes], decode: Decode, *, line_at: Callable[[int], int] | None = None,
    chunk: int = CHUNK_BYTES,
) -> int:
    """Feed `decode` the list that `read(n)` returns the bytes of (b"" at the end), a
    piece of about `chunk` bytes at a time; returns the number of entries. A file that
    fits in one chunk, or is not a list at all, is one piece: the whole text. `line_at`
    (file offset -> line) is handed to `decode` in each `Where`, for its error lines."""
    buf, eof, want = bytearray(), False, chunk  # bytearray: cut from the front, grown at the end, in place
    head, where = b"", Where(line_at=line_at)  # head: "[" for every piece but the first
    start = None  # where entries may begin in buf
    consumed = 0  # file offset of buf[0]
    while True:
        while not eof and len(buf) < want:
            more = read(chunk)
            eof = not more
            buf += more
        if start is None:
            start = _list_start(buf)
            if start is None:  # not a list (or nothing): the decoder words the error
                return decode(bytes(buf), where)
        if eof:
            return where.entry + decode(b"".join((head, buf)), where)
        taken = _take_piece(buf, start, head, where, decode)
        if taken is None:  # no comma between entries yet: one entry longer than the buffer
            want = len(buf) + chunk
            continue
        cut, count = taken
        consumed += cut + 1
        where = Where(where.entry + count, consumed - 1, line_at)  # the "[" stands where the comma was
        del buf[: cut + 1]
        head, start, want = b"[", 0, chunk


def _take_piece(buf: bytearray, start: int, head: bytes, where: Where, decode: Decode) -> tuple[int, int] | None:
    """Decode the entries of `buf` up to its last comma between entries; (that comma's
    index, entries decoded), or None when there is no such comma yet."""
    likely = _likely_cut(buf, start)
    failure: UserError | None = None
    if likely is not None:
        try:
            return likely, decode(_piece(head, buf, likely), where)
        except UserError as exc:
            failure = exc
    exact = _exact_cut(buf, start)
    if exact is None:
        return None
    if exact == likely and failure is not None:
        raise failure  # the cut was right: the data is wrong
    return exact, decode(_piece(head, buf, exact), where)


def _piece(head: bytes, buf: bytearray, cut: int) -> bytes:
    """`head + buf[:cut] + b"]"`, copied once."""
    with memoryview(buf) as view:
        return b"".join((head, view[:cut], b"]"))


def _list_start(buf: bytes | bytearray) -> int | None:
    """The index just after the list's opening `[` (after leading whitespace), or None."""
    text = buf.lstrip()
    if not text.startswith(b"["):
        return None
    return len(buf) - len(text) + 1


def _likely_cut(buf: bytes | bytearray, start: int) -> int | None:
    """The index of a comma that likely ends an entry, as late in `buf` as can be found
    cheaply (in its last _TAIL bytes first), or None."""
    for low in (max(start, len(buf) - _TAIL), start):
        found = max(buf.rfind(pattern, low) for pattern in _LIKELY)
        if found >= 0:
            return found + 1
        if low == start:
            break
    return None


def _exact_cut(buf: bytes | bytearray, start: int) -> int | None:
    """The index of the last comma of `buf` that ends an entry (depth 0, outside strings),
    given that an entry may begin at `start`; None when there is none. Only the quotes
    and the five structural bytes are looked at, as arrays; a backslash before a quote
    (rare in these files) is looked at one by one."""
    data = np.frombuffer(buf, np.uint8)[start:]
    quotes = np.flatnonzero(data == _QUOTE)
    after_backslash = quotes[quotes > 0]
    after_backslash = after_backslash[data[after_backslash - 1] == _BACKSLASH]
    if len(after_backslash):
        escaped = [q for q in after_backslash.tolist() if _backslashes_before(buf, start + q) % 2]
        quotes = np.setdiff1d(quotes, np.array(escaped, dtype=quotes.dtype))
    marks = np.flatnonzero(_MARKS[data])
    marks = marks[np.searchsorted(quotes, marks) % 2 == 0]  # an even number of quotes before: outside
    kinds = data[marks]
    depth = np.cumsum(_DEPTH[kinds], dtype=np.int32)  # depth after each mark (the list's own is 0)
    commas = marks[(kinds == _COMMA) & (depth == 0)]
    closed = np.flatnonzero(depth < 0)  # the list's own "]": nothing after it is an entry
    if len(closed):
        commas = commas[commas < marks[closed[0]]]
    return start + int(commas[-1]) if len(commas) else None


def _backslashes_before(buf: bytes | bytearray, index: int) -> int:
    count = 0
    while index - count - 1 >= 0 and buf[index - count - 1] == _BACKSLASH:
        count += 1
    return count
