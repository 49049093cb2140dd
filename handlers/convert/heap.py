"""Handing the heap's free memory back to the system after a large, short-lived job.

glibc's malloc keeps freed blocks below its mmap threshold (128 KiB: every small array
and Python object) in its heap for reuse, so a daemon that once converted a large file
would keep that much resident for ever, even after the conversion was aborted (issue 11
saw 237 MB stay). `malloc_trim(0)` returns the free pages of every arena; it is called
through ctypes, on glibc only (elsewhere, e.g. musl, this is a no-op), after conversions
of large files only (it walks the heap: milliseconds, not worth it for small ones).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this interpreter runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


def return_free_memory() -> bool:
    """Give the heap's free pages back to the system; whether any were (False off glibc)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
