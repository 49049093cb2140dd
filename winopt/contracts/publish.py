"""Atomic, durable publication of files (SPEC §3).

A file is written to a unique temp name in its target directory, flushed, fsynced,
renamed over the target, and then the directory is fsynced, so a reader sees either the
old file or the new one and a power cut after return cannot lose the rename. Temp names
start with '.' and end with '.tmp', which every watcher and the spool ignore.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

Writer = Callable[[BinaryIO], None]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or unlink inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_leaf(name: str) -> str:
    """A unique hidden temp name for a file `name` (its first 200 characters, so that the
    temp name stays within NAME_MAX): `.NAME.PID.HEX8.tmp`."""
    return f".{name[:200]}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def temp_name(target: Path) -> Path:
    """A unique hidden temp path beside `target` (same filesystem, so rename is atomic)."""
    return target.with_name(temp_leaf(target.name))


def stage(tmp: str | os.PathLike[str], write: Writer, mode: int = 0o666, *, dir_fd: int | None = None) -> None:
    """Create `tmp` (never through a symlink, never an existing file), fill it with
    `write(fileobj)`, flush and fsync it: the first half of every publish. On any error
    the temp file is removed."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def move_at(src_dir_fd: int, name: str, dst_dir_fd: int, new_name: str) -> None:
    """Rename `name` in one directory to `new_name` in another (descriptors: a path
    swapped for a symlink cannot redirect it) and make both directories durable."""
    os.rename(name, new_name, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
    os.fsync(src_dir_fd)
    if dst_dir_fd != src_dir_fd:
        os.fsync(dst_dir_fd)


def unlink_at(dir_fd: int, name: str) -> None:
    """Remove `name` from a directory (gone already is fine) and make that durable."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
    os.fsync(dir_fd)


def publish_at(dir_fd: int, name: str, data: bytes, mode: int = 0o644) -> None:
    """`publish_bytes` relative to a directory descriptor, never through a symlink."""
    tmp = temp_leaf(name)
    stage(tmp, lambda fh: fh.write(data), mode, dir_fd=dir_fd)
    try:
        move_at(dir_fd, tmp, dir_fd, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def append_durably(path: str | os.PathLike[str], data: bytes, mode: int = 0o664) -> None:
    """Append `data` (whole lines) to a log file and fsync it: what an append-only
    record (decisions.jsonl) needs; a short write (a full disk) is an error, not a
    half line passed over in silence."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path} ({written} of {len(data)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


#: what `temp_name` makes: .NAME.PID.HEX8.tmp
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def sweep_temps(directory: str | os.PathLike[str], *, grace: float = 60.0,
                max_age: float = 86400.0) -> list[Path]:
    """Remove the temp files that a killed writer left in `directory`; return them.

    A kill -9 between the temp write and the rename leaves a `.NAME.PID.HEX.tmp` behind
    (harmless, but a 60 MB survivors temp per crash adds up over months). One is stale when
    its writer's pid is gone and it is older than `grace`, or, whatever the pid says (pids
    are reused, writers may sit in another pid namespace), older than `max_age`: no publish
    takes that long. Only names this module makes are touched; errors are ignored, since a
    sweep is housekeeping and must never fail the caller.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_PATTERN.match(entry.name)
        if match is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if age > max_age or (age > grace and not pid_alive(int(match["pid"]))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (in our pid namespace), ours or not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def publish_atomic(target: str | os.PathLike[str], write: Writer, mode: int = 0o666, *,
                   temp_for: str | None = None) -> Path:
    """Publish the bytes that `write(fileobj)` produces at `target`, atomically and durably.

    `mode` is filtered by the umask like any created file, so a service with UMask=0002
    publishes group-writable files. On any error the temp file is removed and the old
    target is untouched. `temp_for`: name the temp file after this rather than the
    target (a spool drop whose name nobody may see before it is whole). In a sticky
    directory the rename fails rather than replace another user's file.
    """
    target = Path(target)
    tmp = temp_name(target.with_name(temp_for or target.name))
    stage(tmp, write, mode)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def publish_bytes(target: str | os.PathLike[str], data: bytes, mode: int = 0o666, *,
                  temp_for: str | None = None) -> Path:
    """Publish `data` at `target` atomically and durably."""
    return publish_atomic(target, lambda fh: fh.write(data), mode, temp_for=temp_for)


def dump_json(obj: Any) -> bytes:
    """The one JSON encoding winopt writes: UTF-8, 2-space indent, trailing newline.

    NumPy scalars and arrays are accepted (orjson serialises them natively)."""
    return orjson.dumps(
        obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
    )


def publish_json(target: str | os.PathLike[str], obj: Any, mode: int = 0o666) -> Path:
    """Publish `obj` as JSON at `target` atomically and durably."""
    return publish_bytes(target, dump_json(obj), mode)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes: the identity of a survivors file or NPZ (SPEC §3)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def publish_in_order(files: list[tuple[str | os.PathLike[str], bytes]], mode: int = 0o666) -> None:
    """Publish several files so that they change together as closely as renames allow.

    Every file is first written and fsynced under its temp name; only then are the temps
    renamed over their targets, in the order given, and the directories fsynced. A crash
    while staging changes nothing; only the microseconds between two renames can separate
    them (so a reader-facing file that names another, like a snapshot naming its
    survivors, goes last). On any error the remaining temp files are removed.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data in files:
            target = Path(target)
            tmp = temp_name(target)
            stage(tmp, lambda fh, data=data: fh.write(data), mode)
            staged.append((tmp, target))
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for directory in dict.fromkeys(target.parent for _, target in staged):
        fsync_dir(directory)
