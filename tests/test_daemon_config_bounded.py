"""Issue 11, finding 6: the daemon's config is read bounded. A config nested 5000 deep, a
FIFO or a device at the config path, or a huge file is one error line at start (exit 2,
no traceback) and a refused reload while running (RELOADING=1 ... READY=1, old config
kept, SIGTERM honoured, watchdog pings going on), against a real `winopt daemon`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_support import REPO, DaemonProcess, npz_source_sha, poll, write_trial
from notify_support import FakeSystemd
from winopt.contracts.bounded_read import toml_depth_problem
from winopt.daemon.config import MAX_CONFIG_BYTES, ConfigError, load_config

NESTED = "a = " + "[" * 5000 + "]" * 5000 + "\n"


def start_daemon(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """`winopt daemon --config CONFIG` as a person starts it; it must end on its own."""
    cmd = [sys.executable, "-m", "winopt", "daemon", "--config", str(config), "--state-dir", str(tmp_path / "state")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize("kind", ["nested", "fifo", "device", "huge"])
def test_a_bad_config_file_at_start_is_one_line_and_exit_2(tmp_path: Path, kind: str) -> None:
    config = tmp_path / "daemon.toml"
    if kind == "nested":
        config.write_text(NESTED)
    elif kind == "fifo":
        os.mkfifo(config)  # a plain open() would wait here for a writer, for ever
    elif kind == "device":
        config = Path("/dev/zero")  # endless: a plain read() would fill the memory
    else:
        config.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    proc = start_daemon(tmp_path, config)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"winopt: error: {config}: "), proc.stderr
    expected = {"nested": "nested deeper than 32 levels", "fifo": "not a regular file (a FIFO)",
                "device": "not a regular file (a character device)", "huge": "more than the"}[kind]
    assert expected in proc.stderr, proc.stderr


def test_nesting_is_counted_outside_strings_and_comments(tmp_path: Path) -> None:
    deep_text = '"' + "[" * 100 + '"'
    text = f"a = {deep_text}\nb = '{'{' * 100}'\n# {'[' * 100}\nc = [[1, 2], [3]]\n[t]\n[[u]]\n"
    assert toml_depth_problem(text, 3) is None
    assert toml_depth_problem("x = [[[[1]]]]\n", 3) == "line 1: arrays or inline tables nested deeper than 3 levels"
    path = tmp_path / "daemon.toml"
    path.write_text("x = " + "{a = " * 40 + "1" + "}" * 40 + "\n")
    with pytest.raises(ConfigError, match="nested deeper than 32 levels"):
        load_config(path)


def test_a_bad_config_on_reload_is_refused_and_the_loop_goes_on(tmp_path: Path, fake_systemd: FakeSystemd) -> None:
    """The finding, replayed: SIGHUP with a 5000-deep config killed the daemon with
    RecursionError; with a FIFO at the config path it blocked its main loop (no more
    watchdog pings, SIGTERM ignored)."""
    run = tmp_path / "run1"
    run.mkdir()
    config = tmp_path / "daemon.toml"
    good = f'watch = ["{run}"]\ndebounce = 0.1\n'
    config.write_text(good)
    env = {"NOTIFY_SOCKET": str(fake_systemd.path), "WATCHDOG_USEC": "400000"}
    d = DaemonProcess(tmp_path / "state", [], args=["--config", str(config)], env=env)
    try:
        d.start()
        fake_systemd.wait_for("READY=1")
        for bad, words in ((NESTED, "nested deeper than 32 levels"), (None, "not a regular file (a FIFO)")):
            config.unlink()
            if bad is None:
                os.mkfifo(config)
            else:
                config.write_text(bad)
            mark = len(fake_systemd.texts())
            d.proc.send_signal(signal.SIGHUP)
            reloading = fake_systemd.wait_for("RELOADING=1", mark)
            fake_systemd.wait_for("READY=1", reloading + 1)
            assert poll(lambda: f"reload failed, keeping the current config: {config}: " in d.log()
                        and words in d.log(), 10), d.log()
            pings = fake_systemd.count("WATCHDOG=1")
            assert poll(lambda: fake_systemd.count("WATCHDOG=1") >= pings + 3, 10), "watchdog pings stopped"
            assert d.alive(), d.log()
        assert "Traceback" not in d.log() and "RecursionError" not in d.log(), d.log()
        # the old config still serves: the run is watched and converted
        digest = write_trial(run, 40)
        assert poll(lambda: npz_source_sha(run) == digest, 20), d.log()
        assert d.stop(timeout=30) == 0  # SIGTERM honoured with the FIFO still in place
    finally:
        d.kill()
