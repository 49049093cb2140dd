"""Members of a throw-away `winopt` group, for the tests of what one member can do to
another's jobs (issue 11): real users made with useradd and removed afterwards, acting
through `setpriv` (their own uid, their groups), and a state dir laid out the way
systemd/winopt.tmpfiles lays out /var/lib/winopt (owner root, the test group for winopt).

Members act with shell tools (cp, mv, ln, install), and run `winopt` itself through the
system's /usr/bin/python3 over this venv's packages (`Member.winopt`): the test
interpreter may live where other users cannot run it (under /root)."""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TMPFILES = REPO / "systemd" / "winopt.tmpfiles"
SERVICE_STATE = "/var/lib/winopt"
SYSTEM_PYTHON = Path("/usr/bin/python3")
#: `winopt` for a member: the system's Python with this venv's packages (winopt among them)
MEMBER_WINOPT = ("import site, sys; site.addsitedir({site!r}); sys.argv[0] = 'winopt'; "
                 "from winopt.cli import main; sys.exit(main())")


@dataclass(frozen=True)
class Member:
    """A user in the test group; `sh` runs a shell script as them."""

    name: str
    uid: int

    def sh(self, script: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["setpriv", f"--reuid={self.name}", f"--regid={self.name}", "--init-groups",
                               "--", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                              cwd=cwd, env={"PATH": "/usr/bin:/bin", "HOME": "/", "LC_ALL": "C"})

    def ok(self, script: str) -> str:
        done = self.sh(script)
        assert done.returncode == 0, f"as {self.name}: {script}\n{done.stderr}"
        return done.stdout

    def winopt(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`winopt ARGS` as this member (their uid, their groups), from a directory
        everyone may enter."""
        if not _system_python_fits():
            pytest.skip(f"{SYSTEM_PYTHON}, which a member can run, is missing or not Python "
                        f"{sys.version_info.major}.{sys.version_info.minor} (this venv's packages)")
        _let_members_reach(Path(sysconfig.get_paths()["purelib"]))
        _let_members_reach(REPO)
        code = MEMBER_WINOPT.format(site=sysconfig.get_paths()["purelib"])
        return subprocess.run(["setpriv", f"--reuid={self.name}", f"--regid={self.name}", "--init-groups", "--",
                               str(SYSTEM_PYTHON), "-I", "-c", code, *args], capture_output=True, text=True,
                              timeout=120, cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": "/", "LC_ALL": "C.UTF-8",
                                                         **(env or {})})


@functools.cache
def _let_members_reach(path: Path) -> None:
    """Let other users traverse every folder down to `path` (o+x, never o+r): a checkout
    in a private folder (`mktemp -d` makes 0700 ones) would hide this venv's packages and
    winopt's sources from the members' Python."""
    for folder in reversed(path.parents):
        mode = folder.stat().st_mode
        if not mode & 0o001:
            os.chmod(folder, mode | 0o001)


@functools.cache
def _system_python_fits() -> bool:
    """Whether the system's Python can load this venv's compiled packages (same X.Y)."""
    try:
        out = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return False
    return out.strip() == str(sys.version_info[:2])


@dataclass(frozen=True)
class Members:
    """The group (its name stands for `winopt`), two members, and a directory every user
    may enter (pytest's own temp dirs are root's alone)."""

    group: str
    gid: int
    alice: Member
    mallory: Member
    root: Path


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


@pytest.fixture
def members() -> Iterator[Members]:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "userdel", "groupadd", "setpriv")):
        pytest.skip("needs root and useradd/setpriv to act as members of a group")
    tag = secrets.token_hex(3)
    group, names = f"wo{tag}", {"alice": f"woa{tag}", "mallory": f"wom{tag}"}
    made: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="winopt-members-", dir="/tmp"))
    try:
        _run("groupadd", group)
        for name in names.values():
            _run("useradd", "--no-create-home", "--user-group", "--groups", group,
                 "--shell", "/usr/sbin/nologin", name)
            made.append(name)
        os.chmod(root, 0o755)
        import grp
        import pwd

        people = {k: Member(v, pwd.getpwnam(v).pw_uid) for k, v in names.items()}
        yield Members(group, grp.getgrnam(group).gr_gid, people["alice"], people["mallory"], root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for name in made:
            subprocess.run(["userdel", name], capture_output=True, timeout=60)
            subprocess.run(["groupdel", name], capture_output=True, timeout=60)  # if userdel left it
        subprocess.run(["groupdel", group], capture_output=True, timeout=60)


def install_layout(state: Path, gid: int) -> dict[str, tuple[int, int]]:
    """Create `state` the way systemd/winopt.tmpfiles creates /var/lib/winopt (user
    winopt -> root, group winopt -> `gid`); returns each directory's (mode, gid)."""
    made: dict[str, tuple[int, int]] = {}
    for line in TMPFILES.read_text().splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] != "d" or not fields[1].startswith(SERVICE_STATE):
            continue
        path = Path(str(state) + fields[1][len(SERVICE_STATE):])
        mode = int(fields[2], 8)
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 0, gid if fields[4] == "winopt" else 0)
        os.chmod(path, mode)  # after chown, which may clear the setgid bit
        made[str(path.relative_to(state.parent))] = (mode, gid)
    return made
