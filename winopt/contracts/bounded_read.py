"""Reading a file that someone else may have put there, with limits: a regular file only,
opened without blocking, at most so many bytes, and (TOML) nested at most so deep.

Why each limit: a FIFO or a device at the path would block a plain `open`/`read` for ever
(the daemon reads its config on its main loop, which also feeds the systemd watchdog and
honours SIGTERM), a huge file would be read whole into memory, and Python's TOML parser
recurses once per level of `[[[...]]]`, so 5000 levels raise RecursionError instead of a
parse error. The depth is checked here without recursion, before the parser sees the
text; a RecursionError from the parser is still caught as a last resort.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from typing import Any

from winopt.contracts.access import denied
from winopt.contracts.errors import in_file

#: what a file type is called in an error line
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket"}

#: TOML tokens that can hold a bracket without nesting anything: strings (basic, literal,
#: multi-line) and comments; and the brackets themselves
_TOML_TOKENS = re.compile(
    r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]',
    re.DOTALL,
)
_OPEN, _CLOSE = frozenset("[{"), frozenset("]}")


def read_regular_file(path: str | os.PathLike[str], max_bytes: int, *, what: str = "file") -> bytes:
    """The bytes of the regular file at `path`, at most `max_bytes` of them.

    Opened with O_NONBLOCK, so a FIFO or device is refused at once (fstat) rather than
    waited on; UserError naming the file for anything that is not a readable regular
    file of at most `max_bytes`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise in_file(path, f"{what} not found") from None
    except PermissionError:  # a user outside group winopt: say which group lets them in
        raise in_file(path, denied(path)) from None
    except OSError as exc:
        raise in_file(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a plain file")
            raise in_file(path, f"not a regular file ({kind}); give the path of the {what} itself")
        if st.st_size > max_bytes:
            raise in_file(path, f"{st.st_size} bytes, more than the {max_bytes} a {what} may have")
        chunks, left = [], max_bytes + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise in_file(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:  # it grew while we read
        raise in_file(path, f"more than the {max_bytes} bytes a {what} may have")
    return data


def toml_depth_problem(text: str, max_depth: int) -> str | None:
    """Why `text` nests arrays or inline tables deeper than `max_depth`, or None.

    Counts brackets outside strings and comments, iteratively (table headers `[a]` and
    `[[a]]` open and close on their line, so they never add up)."""
    depth = 0
    for match in _TOML_TOKENS.finditer(text):
        token = match.group()
        if token in _OPEN:
            depth += 1
            if depth > max_depth:
                line = text.count("\n", 0, match.start()) + 1
                return f"line {line}: arrays or inline tables nested deeper than {max_depth} levels"
        elif token in _CLOSE:
            depth = max(0, depth - 1)
    return None


def load_toml(path: str | os.PathLike[str], *, max_bytes: int, max_depth: int, what: str = "file") -> dict[str, Any]:
    """A TOML file read with `read_regular_file`'s limits and a nesting limit; one
    UserError line naming the file for every way it can be wrong."""
    data = read_regular_file(path, max_bytes, what=what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise in_file(path, f"not UTF-8 text (byte {exc.start})") from None
    problem = toml_depth_problem(text, max_depth)
    if problem:
        raise in_file(path, f"not a usable TOML file: {problem}")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise in_file(path, f"not valid TOML: {exc}") from None
    except RecursionError:  # the depth check above should make this unreachable
        raise in_file(path, "not a usable TOML file: nested too deeply") from None

