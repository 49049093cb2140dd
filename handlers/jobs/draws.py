"""A job's draws file: read once, size-limited, and kept, so a job runs on what was checked.

The daemon reads a job's draws file with its own rights, in a directory members of group
winopt write. Were it checked at acceptance and opened again by the optimizer later, a
symlink re-pointed in between would make the job read (and quote in its error) a file its
owner may not read. So the daemon opens it once, component by component beneath the
allowed directory it resolved to, never through a symlink (`beneath.open_beneath`),
reads at most `[jobs] max_draws_bytes` through that descriptor (a larger file is refused
from its `stat`, never parsed), checks that the job's owner may read it, validates those
bytes and copies them into the job's directory, where the optimizer reads them.

`winopt submit` runs with the user's own rights and reads the file plainly, with the same
size limit.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from winopt.contracts.errors import UserError
from winopt.contracts.beneath import Owner, UnsafeFile, may_read, open_beneath, read_fd

#: a draw history larger than this is refused unless `[jobs] max_draws_bytes` says more:
#: decades of twice-daily draws are about a megabyte, and parsing costs ~12x the file's
#: size in memory inside the daemon
DEFAULT_MAX_DRAWS_BYTES = 16 << 20
#: the job directory's copy of its draws file, which the optimizer reads
DRAWS_COPY = "draws.json"
WHAT = "draws file"
_LENGTHS_KEPT = 64
_lengths: OrderedDict[tuple[bytes, int, str], int] = OrderedDict()


def read_draws(path: Path, *, limit: int = DEFAULT_MAX_DRAWS_BYTES) -> bytes:
    """The draws file's bytes, read with the caller's own rights (`winopt submit`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{path}: not a regular file")
        return read_fd(fd, st, limit, WHAT)
    except UnsafeFile as exc:
        raise UserError(f"{path}: {exc}") from None
    finally:
        os.close(fd)


def read_draws_beneath(
    path: Path, allowed_dirs: Sequence[str | os.PathLike[str]], *, limit: int, owner: Owner | None
) -> bytes:
    """The bytes of `path` (resolved, under one of `allowed_dirs`), opened beneath that
    directory without following any symlink, at most `limit` of them, and only when
    `owner` (the job's owner; None: no check) may read the file."""
    root = next((r for r in map(os.path.realpath, allowed_dirs) if _is_under(path, r)), None)
    if root is None:
        raise UserError(f"{path}: not under an allowed draws directory")
    try:
        fd, st = open_beneath(root, path)
    except UnsafeFile as exc:
        raise UserError(f"{path}: {exc}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if owner is not None and not may_read(st, owner):
            raise UserError(f"{path}: {owner.name} may not read it (mode {stat.S_IMODE(st.st_mode):o}, "
                            f"uid {st.st_uid}): a job can use only a draws file its owner can read")
        return read_fd(fd, st, limit, WHAT)
    except UnsafeFile as exc:
        raise UserError(f"{path}: {exc}; [jobs] max_draws_bytes") from None
    finally:
        os.close(fd)


def history_length(data: bytes, source: str, *, mod: int, time_of_day: str) -> int:
    """Draws in the selection of the history `data`; cached by content, so that 150 jobs
    on one history parse it once (and a changed file is parsed again)."""
    from winopt.optimizer.draws import parse_history  # NumPy: only when a job is checked

    key = (hashlib.sha256(data).digest(), mod, time_of_day)
    if key in _lengths:
        _lengths.move_to_end(key)
        return _lengths[key]
    try:
        count = len(parse_history(data, source, mod=mod, time_of_day=time_of_day))
    except UserError:
        raise
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{source}: cannot load the draw history: {type(exc).__name__}") from None
    _lengths[key] = count
    while len(_lengths) > _LENGTHS_KEPT:
        _lengths.popitem(last=False)
    return count


def _is_under(path: Path, real_root: str) -> bool:
    try:
        return os.path.commonpath([str(path), real_root]) == real_root
    except ValueError:
        return False
