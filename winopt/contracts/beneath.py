"""Opening files that other people can name, without ever following a link they made.

The daemon reads files in places members of group winopt write (the spool, the draws
directories) with rights those members do not have. A path it checked can be swapped
for a symlink before it is opened, so every open here is relative to a directory
descriptor and refuses symlinks (`O_NOFOLLOW`: a symlink is ELOOP, never its target),
never blocks (`O_NONBLOCK`: a FIFO cannot stall a scan), and is checked with `fstat` on
the descriptor it will read: what is read is what was checked. Reads are bounded, so a
huge file costs a `stat`, never memory.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFile(Exception):
    """A file that must not be read: a symlink, not a regular file, too large. The
    message is one line for a person, without the file's name (the caller has it)."""


def open_dir(name: str | os.PathLike[str], dir_fd: int | None = None) -> int:
    """A descriptor of directory `name` (relative to `dir_fd` when given); ELOOP or
    ENOTDIR when it is a symlink or not a directory."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def open_regular(name: str, dir_fd: int | None) -> tuple[int, os.stat_result]:
    """(descriptor, its stat) of the regular file `name` in `dir_fd`; `UnsafeFile` for a
    symlink or anything that is not a regular file. The caller closes the descriptor."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile("a symlink (the daemon never follows one)") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeFile("not a regular file")
    return fd, st


def read_fd(fd: int, st: os.stat_result, limit: int, what: str = "file") -> bytes:
    """All of `fd` (of stat `st`), or `UnsafeFile` when it holds more than `limit` bytes:
    judged from the stat first, and again while reading (a file may grow meanwhile)."""
    if st.st_size > limit:
        raise UnsafeFile(f"{st.st_size} bytes: too large for a {what} (the most is {limit})")
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise UnsafeFile(f"more than {limit} bytes while read: too large for a {what} (the most is {limit})")
    return b"".join(chunks)


def read_regular(name: str, dir_fd: int | None, limit: int, what: str = "file") -> tuple[bytes, os.stat_result]:
    """(bytes, stat) of the regular file `name` in `dir_fd`, read once through one
    descriptor; `UnsafeFile` for a symlink, a non-regular file or more than `limit`."""
    fd, st = open_regular(name, dir_fd)
    try:
        return read_fd(fd, st, limit, what), st
    finally:
        os.close(fd)


def open_beneath(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """Open `path`, which must lie under directory `root` (both absolute, `path` already
    resolved), one component at a time from `root`, none of them a symlink: a link
    swapped in after `path` was resolved is refused, not followed out of `root`.
    Returns (descriptor, stat) of a regular file; the caller closes the descriptor."""
    parts = Path(path).relative_to(root).parts
    if not parts or ".." in parts:
        raise UnsafeFile("not a file under its directory")
    fd = open_dir(root)
    try:
        for part in parts[:-1]:
            try:
                inner = open_dir(part, fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeFile(f"{part!r} on its path is a symlink or not a directory") from None
                raise
            os.close(fd)
            fd = inner
        return open_regular(parts[-1], fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Owner:
    """Whose a file is (its st_uid when the daemon took it), by name and groups, so that
    what the daemon does for a file it does with that person's rights in mind."""

    uid: int
    name: str
    groups: frozenset[int]


def owner_of(uid: int) -> Owner:
    """The user `uid` with their groups (from the user database; a uid it does not know
    is named by its number and has no groups)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return Owner(uid, str(uid), frozenset())
    try:
        groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        groups = frozenset({entry.pw_gid})
    return Owner(uid, entry.pw_name, groups)


def may_read(st: os.stat_result, owner: Owner) -> bool:
    """Whether `owner` may read a file of stat `st` by its mode bits (root may read
    anything): a job may use only what its owner could read."""
    if owner.uid == 0:
        return True
    if st.st_uid == owner.uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in owner.groups:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)
