"""A person outside group winopt is told to ask for it (issue 12, item 8).

In a booted box laid out as `make install` lays out a host (/etc/winopt/daemon.toml 0640
root:winopt, /var/lib/winopt 0750 and its setgid spool), throwaway users run the dev venv's
`winopt`: one never in the group, one added to it after their login began (setpriv with
the groups their session started with), and one who logged in again (runuser)."""

from __future__ import annotations

import pytest

from daemon_support import REPO

WINOPT = REPO / ".venv" / "bin" / "winopt"
CONFIG = "/etc/winopt/daemon.toml"
LAYOUT = (
    "groupadd --system winopt && useradd -m carol && useradd -m dave"
    " && chmod 711 /root"  # the dev venv's Python lives under /root (0700 on this host)
    f" && install -d -m 0755 -g winopt /etc/winopt && install -m 0640 -g winopt {REPO}/etc/daemon.toml {CONFIG}"
    " && install -d -m 0750 -g winopt /var/lib/winopt && install -d -m 2770 -g winopt /var/lib/winopt/spool"
    f" && install -m 0644 {REPO}/etc/job.example.toml /home/carol/job.toml"
)


def as_user(user: str, command: str, *, old_login: bool = False) -> str:
    """`command` as `user`, its exit status and stderr on stdout: a fresh login (runuser), or
    with `old_login` the groups a login had before the user was added to winopt."""
    if old_login:
        run = f"setpriv --reuid={user} --regid={user} --clear-groups"
    else:
        run = f"runuser -u {user} --"
    return f"cd /tmp && {run} {WINOPT} {command} 2>&1 >/dev/null; echo \"rc=$?\""


def ask_for_the_group(user: str, path: str, by: str = "") -> str:
    blocker = f" (by {by})" if by else ""
    return (f"winopt: error: {path}: permission denied{blocker}: ask an administrator to add you to group winopt "
            f"(sudo usermod -aG winopt {user}), then log in again\nrc=2\n")


@pytest.mark.systemd
def test_outside_group_winopt_status_submit_and_cancel_say_ask_for_it(box) -> None:
    box(LAYOUT)
    for command in ("status", "submit /home/carol/job.toml", "cancel 20250131T235959Z-x-1a2b3c"):
        assert box(as_user("carol", command)) == ask_for_the_group("carol", CONFIG), command
    # without the config (flags only) the state dir is the first thing that refuses
    assert box(as_user("carol", "status --state-dir /var/lib/winopt")) == ask_for_the_group(
        "carol", "/var/lib/winopt/status.json", by="/var/lib/winopt")


@pytest.mark.systemd
def test_added_to_the_group_during_a_login_says_log_in_again(box) -> None:
    box(LAYOUT + " && usermod -aG winopt dave")
    stale = box(as_user("dave", "status", old_login=True))
    assert stale == (f"winopt: error: {CONFIG}: permission denied: you are in group winopt, but this login began "
                     "before you were added: log in again (or run 'newgrp winopt')\nrc=2\n")
    fresh = box(as_user("dave", "status"))  # a new login has the group: on to the status file
    assert "permission denied" not in fresh and "daemon not running" in fresh, fresh
