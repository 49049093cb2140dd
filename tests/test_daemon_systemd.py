"""The sd_notify protocol end to end: a daemon process, with a datagram socket of ours
standing in for systemd as NOTIFY_SOCKET."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from daemon_support import REPO, DaemonProcess, npz_source_sha, poll, write_trial
from notify_support import FakeSystemd
from sdbox_support import until


def test_ready_status_watchdog_reload_and_stop(tmp_path: Path, fake_systemd: FakeSystemd) -> None:
    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    run1.mkdir()
    run2.mkdir()
    config = tmp_path / "daemon.toml"
    config.write_text(f'watch = ["{run1}"]\ndebounce = 0.1\n')
    env = {"NOTIFY_SOCKET": str(fake_systemd.path), "WATCHDOG_USEC": "300000"}
    d = DaemonProcess(tmp_path / "state", [], args=["--config", str(config)], env=env)
    try:
        d.start()
        # READY once watching and the first reconcile are done, with a STATUS line
        ready = fake_systemd.wait_for("READY=1")
        assert any(line.startswith("STATUS=1 runs") for line in fake_systemd.texts()[ready].split("\n"))
        # WATCHDOG=1 every WATCHDOG_USEC/2 while healthy
        assert poll(lambda: fake_systemd.count("WATCHDOG=1") >= 4, 10), fake_systemd.texts()
        pings = [t for t, m in fake_systemd.messages if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 2.0, gaps  # ~0.15 s each; generous for a loaded machine

        # STATUS follows the work
        digest = write_trial(run1, 70)
        assert poll(lambda: npz_source_sha(run1) == digest), d.log()
        assert poll(lambda: any("1 conversions" in m for m in fake_systemd.texts())), fake_systemd.texts()

        # a bad config on reload: RELOADING=1 (+MONOTONIC_USEC), then READY=1, old config kept
        config.write_text(f'watch = ["{run1}", "{run2}"]\nworkers = 0\n')
        mark = len(fake_systemd.texts())
        d.proc.send_signal(signal.SIGHUP)
        reloading = fake_systemd.wait_for("RELOADING=1", mark)
        assert fake_systemd.texts()[reloading].split("\n")[1].startswith("MONOTONIC_USEC=")
        fake_systemd.wait_for("READY=1", reloading + 1)
        assert poll(lambda: f"reload failed, keeping the current config: {config}: workers: " in d.log())
        assert d.alive() and d.status()["daemon"]["watching"] == [str(run1), str(d.state_dir / "spool")]
        digest = write_trial(run1, 75, start=3000)
        assert poll(lambda: npz_source_sha(run1) == digest), d.log()

        # a good config on reload: the new directory is watched
        config.write_text(f'watch = ["{run1}", "{run2}"]\ndebounce = 0.1\n')
        mark = len(fake_systemd.texts())
        d.proc.send_signal(signal.SIGHUP)
        reloading = fake_systemd.wait_for("RELOADING=1", mark)
        fake_systemd.wait_for("READY=1", reloading + 1)
        assert poll(lambda: d.status()["daemon"].get("watching") == [str(run1), str(run2), str(d.state_dir / "spool")]), \
            d.status()
        digest = write_trial(run2, 80)
        assert poll(lambda: npz_source_sha(run2) == digest), d.log()

        # SIGTERM: STOPPING=1, final status, exit 0
        assert d.stop() == 0
        assert fake_systemd.count("STOPPING=1") == 1
        assert d.status()["daemon"]["state"] == "stopped"
    finally:
        d.kill()


def test_no_watchdog_pings_for_another_pid(tmp_path: Path, fake_systemd: FakeSystemd) -> None:
    env = {"NOTIFY_SOCKET": str(fake_systemd.path), "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}
    d = DaemonProcess(tmp_path / "state", [], env=env)
    try:
        d.start()
        fake_systemd.wait_for("READY=1")
        assert d.stop() == 0  # the loop ran at least until the stop; pings would be every 50 ms
        assert fake_systemd.count("WATCHDOG=1") == 0
        assert fake_systemd.count("STOPPING=1") == 1
    finally:
        d.kill()


# ---------------------------------------------------------------- under a real systemd
@pytest.mark.systemd
def test_under_systemd_notify_watchdog_journal_reload_stop(box) -> None:
    winopt = REPO / ".venv" / "bin" / "winopt"
    python = REPO / ".venv" / "bin" / "python"
    unit = "winopt-daemon-test"
    box(f"mkdir -p /srv/t/run1 && systemd-run --unit={unit} -p Type=notify -p NotifyAccess=main "
        f"-p WatchdogSec=2 {winopt} daemon --state-dir /srv/t/state --watch /srv/t/run1")
    # Type=notify: systemd-run returned once READY=1 arrived
    assert box(f"systemctl is-active {unit}").strip() == "active"
    box(f"cd {REPO} && PYTHONPATH=tests {python} -c 'from daemon_support import write_trial; "
        "from pathlib import Path; write_trial(Path(\"/srv/t/run1\"), 1500, status=\"in_progress\", "
        "completed=20, total=50)'")
    box(until("grep -q bidirectional_survivors.json /srv/t/run1/bidirectional_survivors_binary.meta.json"))
    box(until(f"systemctl show {unit} -p StatusText | grep -q \"1 conversions\""))
    # the watchdog is fed: two different last-ping stamps, and the unit outlives 2 s of WatchdogSec
    first = box(f"systemctl show {unit} -p WatchdogTimestampMonotonic").strip()
    box(until(f"[ \"$(systemctl show {unit} -p WatchdogTimestampMonotonic)\" != \"{first}\" ]"))
    # journald got the structured fields
    entries = [json.loads(line) for line in box(f"journalctl -u {unit} RUN=run1 -o json --no-pager").splitlines()]
    events = {(e.get("EVENT"), e.get("ACTION")) for e in entries}
    assert ("converted", None) in events and ("decision", "wait") in events, events
    assert all(e.get("SYSLOG_IDENTIFIER") == "winopt-daemon" for e in entries)
    # SIGHUP reloads (RELOADING=1 ... READY=1 keeps the unit active)
    box(f"systemctl kill -s HUP --kill-whom=main {unit}")
    box(until(f"journalctl -u {unit} -o cat --no-pager | grep -q \"config reloaded\""))
    assert box(f"systemctl is-active {unit}").strip() == "active"
    # a clean stop: exit 0, final status written
    box(f"systemctl stop {unit}")
    shown = box(f"systemctl show {unit} -p Result -p ExecMainStatus")
    assert "Result=success" in shown and "ExecMainStatus=0" in shown, shown
    assert json.loads(box("cat /srv/t/state/status.json"))["daemon"]["state"] == "stopped"
