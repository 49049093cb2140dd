"""The directories of a state dir that the spool uses, and who may write each (issue 11).

    STATE/spool/      3770 (setgid, sticky): members of group winopt drop files here and
                      can remove or rename only their own
    STATE/accepting/  0700: files the daemon is taking, staged under their job id
    STATE/rejected/   0750: refused files beside NAME.error; the group reads them, only
                      the daemon writes
    STATE/jobs/       0755 (0750 from tmpfiles.d): the daemon's job directories

Nothing the daemon keeps lies in the spool, where any member could rename it or put a
symlink in its place, and the daemon opens each of these directories with `O_NOFOLLOW`
relative to the state dir and works relative to those descriptors, so a name swapped
behind its back is refused rather than followed. tmpfiles.d sets the modes under
systemd; `ensure_layout` creates what is missing when the daemon runs by hand, adds the
spool's sticky bit when it can, and takes group and other write access away from the
directories only the daemon may write.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from winopt.contracts.beneath import open_dir
from winopt.contracts.state_dir import ACCEPTING_DIR, JOBS_DIR, REJECTED_DIR, SPOOL_DIR

log = logging.getLogger("winopt.jobs")

#: where older versions kept their staging and refused files, inside the spool
LEGACY_DIRS = (f"{SPOOL_DIR}/.accepting", f"{SPOOL_DIR}/rejected")
#: directory -> (mode it is created with, permission bits it must not have)
LAYOUT = {
    SPOOL_DIR: (0o775, 0o002),
    ACCEPTING_DIR: (0o700, 0o077),
    REJECTED_DIR: (0o750, 0o022),
    JOBS_DIR: (0o755, 0o022),
}
_warned: set[str] = set()


def ensure_layout(state_dir: Path) -> None:
    """Create the spool's directories where missing and put their modes right (see the
    module docstring); a mode the daemon may not set (under systemd it cannot set the
    setgid bit, tmpfiles.d does) is logged once, never fatal."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = open_dir(state_dir)
    try:
        _take_write_access(state, str(state_dir), 0o022)
        for name, (mode, forbidden) in LAYOUT.items():
            try:
                os.mkdir(name, mode, dir_fd=state)
            except FileExistsError:
                pass
            fd = open_dir(name, state)
            try:
                _take_write_access(fd, str(state_dir / name), forbidden)
                if name == SPOOL_DIR:
                    _add_sticky_bit(fd, state_dir / name)
            finally:
                os.close(fd)
    finally:
        os.close(state)


def _take_write_access(fd: int, where: str, forbidden: int) -> None:
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & forbidden:
        try:
            os.fchmod(fd, mode & ~forbidden)
            log.info("%s: mode %o -> %o: only the daemon writes there", where, mode, mode & ~forbidden)
        except OSError as exc:
            _warn_once(where, f"{where}: mode {mode:o} lets others write where only the daemon should, and "
                              f"the daemon cannot change it ({exc.strerror}): chmod {mode & ~forbidden:o} {where}")


def _add_sticky_bit(fd: int, where: Path) -> None:
    """Members may remove or rename only their own files in a sticky directory."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & stat.S_ISVTX:
        return
    try:
        os.fchmod(fd, mode | stat.S_ISVTX)
    except OSError as exc:
        _warn_once(str(where), f"{where}: no sticky bit (mode {mode:o}), so members of its group can remove "
                               f"each other's files, and the daemon cannot set it ({exc.strerror}): chmod +t {where}")


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message, extra={"EVENT": "spool_layout", "PATH": key})


def warn_legacy(state_dir: Path) -> None:
    """Say once that directories an older version kept in the spool are no longer used
    (their files are the group's to clean up; the daemon never reads them again)."""
    for name in LEGACY_DIRS:
        if os.path.lexists(state_dir / name):
            _warn_once(name, f"{state_dir / name}: left by an older winopt and no longer used (staging and refused "
                             f"files are now in {state_dir / ACCEPTING_DIR} and {state_dir / REJECTED_DIR}); "
                             "take what you need from it and remove it")


@dataclass
class SpoolDirs:
    """Descriptors of the spool, accepting and rejected directories, each opened without
    following a symlink; a context manager that closes them."""

    spool: int
    accepting: int
    rejected: int

    @classmethod
    def open(cls, state_dir: Path) -> SpoolDirs:
        fds: list[int] = []
        try:
            state = open_dir(state_dir)
            fds.append(state)
            for name in (SPOOL_DIR, ACCEPTING_DIR, REJECTED_DIR):
                fds.append(open_dir(name, state))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        os.close(fds.pop(0))
        return cls(*fds)

    def __enter__(self) -> SpoolDirs:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for fd in (self.spool, self.accepting, self.rejected):
            os.close(fd)


def exists_at(dir_fd: int, name: str) -> bool:
    """Whether `name` is in `dir_fd` (a dangling symlink counts)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def free_name(dir_fd: int, name: str) -> str:
    """`name`, or `name.1`, `name.2`... before the suffix when that is taken in `dir_fd`."""
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    candidate, n = name, 0
    while exists_at(dir_fd, candidate):
        n += 1
        candidate = f"{stem}.{n}.{suffix}" if dot else f"{name}.{n}"
    return candidate
