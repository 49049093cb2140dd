"""A rig error a person must fix says, in the same line, what to do (issue 12, item 2).

A local rig that the service's sandbox keeps read-only (rsync: "Read-only file system
(30)") needs the target in ReadWritePaths= of a drop-in and a restart; one that the
service's user may not write ("Permission denied (13)") needs a chown. The lines below
are rsync 3's and ssh's own; the box test makes a real sandboxed service (user winopt,
ProtectSystem=strict) meet both and checks that following the second hint heals the rig.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon_support import REPO
from polling import poll
from sdbox_support import until
from winopt.handlers.rigs.config import parse_rig_arg
from winopt.handlers.rigs.rsync import RsyncResult, fix_for, running_unit

LOCAL = parse_rig_arg("copy=/srv/rig-copy/")
SSH = parse_rig_arg("far=rig@rig1.example:/data/winopt/")
EROFS_MKDIR = 'rsync: [Receiver] mkdir "/srv/rig-copy/r1/" failed: Read-only file system (30)'
EROFS_MKSTEMP = 'rsync: [receiver] mkstemp "/srv/rig-copy/r1/.x.npz.KhRxAC" failed: Read-only file system (30)'
EACCES_MKDIR = 'rsync: [Receiver] mkdir "/srv/rig-copy/r1/" failed: Permission denied (13)'
EACCES_MKSTEMP = 'rsync: [receiver] mkstemp "/srv/rig-copy/r1/.x.npz.9uxmkN" failed: Permission denied (13)'


@pytest.mark.parametrize("line", [EROFS_MKDIR, EROFS_MKSTEMP])
def test_a_read_only_local_rig_under_systemd_says_drop_in_and_restart(line: str) -> None:
    fix = fix_for(LOCAL, line, unit="winopt-daemon.service")
    assert "ReadWritePaths=/srv/rig-copy " in fix
    assert "/etc/systemd/system/winopt-daemon.service.d/" in fix
    assert "systemctl daemon-reload && systemctl restart winopt-daemon " in fix
    assert "a reload does not apply it" in fix and "\n" not in fix


def test_a_read_only_local_rig_outside_systemd_says_read_only() -> None:
    fix = fix_for(LOCAL, EROFS_MKDIR, unit="")
    assert fix == "/srv/rig-copy is on a read-only file system: give the rig a writable target"


@pytest.mark.parametrize("line", [EACCES_MKDIR, EACCES_MKSTEMP])
def test_an_unwritable_local_rig_says_chown_to_the_daemons_user(line: str) -> None:
    import grp
    import os
    import pwd

    user, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    assert fix_for(LOCAL, line, unit="winopt-daemon.service") == (
        f"let user {user} write /srv/rig-copy: chown -R {user}:{group} /srv/rig-copy")


def test_ssh_rigs_name_the_key_the_host_key_or_the_remote_path() -> None:
    assert "to rig@rig1.example's ~/.ssh/authorized_keys" in fix_for(
        SSH, "rig@rig1.example: Permission denied (publickey).")
    assert "ssh-keyscan rig1.example >> " in fix_for(SSH, "Host key verification failed.")
    remote = fix_for(SSH, 'rsync: [Receiver] mkdir "/data/winopt/r1/" failed: Permission denied (13)')
    assert remote.startswith("let rig@rig1.example write /data/winopt/ on rig1.example")


@pytest.mark.parametrize("line", [
    "ssh: connect to host rig1.example port 22: Connection refused",
    "rsync: connection unexpectedly closed (0 bytes received so far) [sender]",
    "wall-clock timeout: killed after 900 s",
])  # fmt: skip
def test_transient_failures_carry_no_fix(line: str) -> None:
    assert fix_for(SSH, line) == "" and fix_for(LOCAL, line, unit="x.service") == ""


def test_the_fix_is_in_the_same_line_as_the_error() -> None:
    result = RsyncResult(argv=[], returncode=23, duration=0.1, error=EACCES_MKSTEMP,
                         meaning="partial transfer due to error", fix="let user winopt write /srv/rig-copy")
    assert result.describe() == (f"exit 23 (partial transfer due to error): {EACCES_MKSTEMP}; "
                                 "to fix: let user winopt write /srv/rig-copy")


def test_outside_a_service_no_unit_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    assert running_unit() == ""


# ---------------------------------------------------------------- a sandboxed service
@pytest.mark.systemd
def test_a_sandboxed_service_says_how_to_fix_each_local_rig(box) -> None:
    """User winopt, ProtectSystem=strict: a rig outside ReadWritePaths= fails read-only, a
    root-owned one inside fails permission denied; each status line says what to do, and the
    chown it names heals the second."""
    winopt, python, unit = REPO / ".venv" / "bin" / "winopt", REPO / ".venv" / "bin" / "python", "winopt-rig-hints"
    # the box's own user winopt; the dev venv's Python lives under /root (0700 on this host)
    box("useradd --system --user-group winopt && chmod 711 /root"
        " && install -d -o winopt -g winopt /srv/t/state /srv/t/run1 /srv/t/ro && install -d -m 755 /srv/t/denied")
    box("printf '[distribution]\\nretry_base = 0.2\\nretry_cap = 1\\nconfig_tries = 1\\n' > /srv/t/daemon.toml")
    box(f"systemd-run --unit={unit} -p Type=notify -p NotifyAccess=main -p User=winopt -p Group=winopt"
        " -p ProtectSystem=strict -p Environment=TMPDIR=/srv/t/state -p 'ReadWritePaths=/srv/t/state /srv/t/run1 /srv/t/denied'"
        f" {winopt} daemon --config /srv/t/daemon.toml --state-dir /srv/t/state --watch /srv/t/run1"
        " --rig ro=/srv/t/ro --rig denied=/srv/t/denied")
    box(f"cd {REPO} && PYTHONPATH=tests {python} -c 'from daemon_support import write_trial; "
        "from pathlib import Path; write_trial(Path(\"/srv/t/run1\"), 120)' && chown -R winopt:winopt /srv/t/run1")

    def rig_states() -> dict[str, Any]:
        text = box("cat /srv/t/state/status.json 2>/dev/null || echo '{}'")
        rigs = json.loads(text).get("rigs") or {}
        return {name: (rig.get("runs") or {}).get("run1") or {} for name, rig in rigs.items()}

    def both_failed() -> dict[str, Any] | None:
        states = rig_states()
        ok = all((states.get(r) or {}).get("last_error") for r in ("ro", "denied"))
        return states if ok else None

    states = poll(both_failed, 30, 0.2)
    assert states, box(f"journalctl -u {unit} --no-pager | tail -n 30")
    read_only, denied = states["ro"]["last_error"], states["denied"]["last_error"]
    assert "Read-only file system (30); to fix: " in read_only, read_only
    assert "install -d -o winopt -g winopt /srv/t/ro, add ReadWritePaths=/srv/t/ro in a drop-in in " \
           f"/etc/systemd/system/{unit}.service.d/, then systemctl daemon-reload && systemctl restart {unit} " \
           "(a reload does not apply it)" in read_only, read_only
    assert "Permission denied (13); to fix: let user winopt write /srv/t/denied: " \
           "chown -R winopt:winopt /srv/t/denied" in denied, denied
    # the journal line of the failed transfer carries the same fix
    journal = box(f"journalctl -u {unit} RIG=denied -o cat --no-pager")
    assert "to fix: let user winopt write /srv/t/denied" in journal, journal

    box("chown -R winopt:winopt /srv/t/denied")  # what the hint says
    healed = poll(lambda: rig_states().get("denied", {}).get("state") == "synced", 30, 0.2)
    assert healed, rig_states()
    box(until("[ -s /srv/t/denied/run1/bidirectional_survivors_binary.npz ]"))
    assert rig_states()["ro"]["state"] in ("retrying", "failed")
    box(f"systemctl stop {unit}")
