"""What to tell a person whom the file system refuses one of winopt's paths.

The installed service gives access by group: `/etc/winopt/daemon.toml` is 0640 root:winopt,
`/var/lib/winopt` and its spool belong to group winopt. A bare "Permission denied" tells a
new user nothing; `denied(path)` finds which path refused them (the file, or a directory on
the way to it), and when that path's group would let them in, names the group and the
command an administrator runs, or says to log in again when the group was granted after
this login began (a process keeps the groups it started with).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

#: the group bit that grants each kind of access
_GROUP_BITS = {os.R_OK: stat.S_IRGRP, os.W_OK: stat.S_IWGRP, os.X_OK: stat.S_IXGRP}


def denied(path: str | os.PathLike[str], want: int = os.R_OK) -> str:
    """'permission denied: WHAT TO DO', for `path`, which this process may not use as `want`
    (os.R_OK, os.W_OK, os.X_OK, or'ed); callers put the path in front."""
    blocker, need, st = _refusing(Path(os.path.abspath(path)), want)
    if st is None:
        return "permission denied"
    where = "" if blocker == Path(os.path.abspath(path)) else f" (by {blocker})"
    group = _group_name(st.st_gid)
    grants = all(st.st_mode & bit for flag, bit in _GROUP_BITS.items() if need & flag)
    if grants and group is not None and st.st_uid != os.geteuid() and st.st_gid not in _my_groups():
        user = _user_name()
        if user in _members(st.st_gid):
            return (f"permission denied{where}: you are in group {group}, but this login began before "
                    f"you were added: log in again (or run 'newgrp {group}')")
        return (f"permission denied{where}: ask an administrator to add you to group {group} "
                f"(sudo usermod -aG {group} {user}), then log in again")
    owner = _user_name(st.st_uid)
    return (f"permission denied{where}: it is {stat.S_IMODE(st.st_mode):04o} {owner}:{group or st.st_gid}, "
            f"and you are {_user_name()}")


def _refusing(path: Path, want: int) -> tuple[Path, int, os.stat_result | None]:
    """(the path that refuses, the access it refuses, its stat): the deepest one this
    process can stat, which is `path` itself, or a directory on the way that it may not
    enter, or the directory in which `path` (missing) was to be made."""
    for candidate in (path, *path.parents):
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if candidate != path:  # it refused entry, or (when it lets us in) the new entry below
            need = os.W_OK | os.X_OK if os.access(candidate, os.X_OK) else os.X_OK
        elif stat.S_ISDIR(st.st_mode) and want & os.W_OK:
            need = want | os.X_OK  # writing into a directory means entering it too
        else:
            need = want
        return candidate, need, st
    return path, want, None


def _my_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}


def _members(gid: int) -> list[str]:
    try:
        return list(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return []


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def _user_name(uid: int | None = None) -> str:
    uid = os.geteuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
