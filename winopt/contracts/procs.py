"""Processes winopt starts and watches: the one way to signal a child's group, and the
/proc scan that tells whether a file is still being written."""

from __future__ import annotations

import os
import subprocess


def killpg(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process group `proc` leads (children are started with
    `start_new_session=True`: an optimizer and its workers, rsync and its ssh) unless it
    has been waited for (its pid, and so the group's id, may be reused then); a group
    already gone is no error. Not `poll()`: a leader that exited while its group lives
    on (an ssh holding rsync's pipes) must still be reached."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def files_open_for_writing(directory: str | os.PathLike[str]) -> set[str]:
    """Paths in `directory` that a process visible in /proc holds open for writing (best
    effort: without privileges other users' descriptors cannot be read, which is not an
    error). One pass over /proc, however many files are waiting."""
    prefix = os.path.realpath(directory) + os.sep
    found: set[str] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if not target.startswith(prefix) or target in found:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                    flags = next(int(line.split()[1], 8) for line in fh if line.startswith("flags:"))
            except (OSError, StopIteration, ValueError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                found.add(target)
    return found
