"""The one exception type that reaches a person.

A `UserError` carries a single line saying what failed and what to do; the CLI prints it
as `winopt: error: ...` and exits 2, never a traceback. Library code raises it (or a
subclass) for bad input: files, histories, survivors, job files, config.
"""

from __future__ import annotations

import os


class UserError(Exception):
    """Bad input or environment, explained in one line for a person."""

    exit_code = 2


def in_file(path: str | os.PathLike[str], problem: str) -> UserError:
    """A `UserError` that names the file first, the way compilers do: `FILE: problem`."""
    return UserError(f"{os.fspath(path)}: {problem}")
