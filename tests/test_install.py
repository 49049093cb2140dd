"""The Makefile's promises to a fresh host, and the reload check (issue 12, items 1, 9, 10).

- `make demo` installs what the demo needs and no more; `make test` what the tests need.
- `make install` on a host without network and without WHEELHOUSE stops within seconds
  with one line pointing at `make wheelhouse`, and leaves nothing installed; a venv it
  began is removed when filling it fails. (That `make wheelhouse` works with an empty pip
  cache is shown by tests/test_service.py, whose wheelhouse is built with the cache off.)
- `winopt daemon --check-config` answers as a reload would, and the unit runs it before
  it signals the daemon.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from daemon_support import REPO
from winopt.cli import main

UNIT_FILE = REPO / "systemd" / "winopt-daemon.service"


# ---------------------------------------------------------------- item 10: make demo / test
def dry_run(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run from scratch (a venv that does not exist yet); `make -n`
    still runs the recursive `deps` make, itself dry."""
    proc = subprocess.run(["make", "-n", "-C", str(REPO), "--no-print-directory", target, f"VENV={tmp_path}/venv"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def packages_checked(script: str) -> list[str]:
    """The Debian packages the `deps` script would check for (and install when missing)."""
    lists = re.findall(r"for p in ([^;]*); do dpkg-query", script)
    assert lists, script
    return [p for found in lists for p in found.split()]


def test_make_demo_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    script = dry_run("demo", tmp_path)
    assert packages_checked(script) == ["python3-venv"]
    installs = [line for line in script.splitlines() if "pip install" in line]
    assert installs and all("[" not in line for line in installs), installs  # no extras
    assert any(line.endswith("pip install -q -e .") for line in installs), installs
    assert "winopt demo --out demo-out" in script


def test_make_test_installs_what_the_tests_need(tmp_path: Path) -> None:
    script = dry_run("test", tmp_path)
    assert {"rsync", "openssh-server", "iproute2", "gcc", "python3-dev", "libsystemd-dev", "chromium",
            "postgresql"} <= set(packages_checked(script))
    assert "pip install -q -e '.[test,systemd,postgres,report,dashboard,s3]'" in script


def test_readme_opens_with_make_demo_and_make_test() -> None:
    block = (REPO / "README.md").read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in block.splitlines()] == [["make", "demo"], ["make", "test"]]


# ---------------------------------------------------------------- item 9: the reload check
def check_config(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    config = tmp_path / "daemon.toml"
    config.write_text(text)
    code = main(["daemon", "--config", str(config), "--check-config"])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_refuses_a_misspelt_key_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check_config("debounse = 5\n", tmp_path, capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"winopt: error: {tmp_path}/daemon.toml: debounse: unknown key (known: ")
    assert len(err.splitlines()) == 1


def test_check_config_refuses_what_a_reload_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # each value fine alone, the whole [decisions] table not: checked as the reload checks it
    code, _, err = check_config("[decisions]\nproceed_min = 5000\nproceed_mid = 1000\n", tmp_path, capsys)
    assert code == 2 and err.startswith(f"winopt: error: {tmp_path}/daemon.toml: decisions") and "\n" == err[-1]


def test_check_config_passes_the_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["daemon", "--config", str(REPO / "etc" / "daemon.toml"), "--check-config"])
    out, err = capsys.readouterr()
    assert code == 0 and err == "" and out.startswith(f"winopt: {REPO}/etc/daemon.toml: config OK (")


def test_the_unit_checks_the_config_before_it_signals_a_reload() -> None:
    lines = [line for line in UNIT_FILE.read_text().splitlines() if not line.startswith("#")]
    start = next(line for line in lines if line.startswith("ExecStart="))
    reloads = [line for line in lines if line.startswith("ExecReload=")]
    assert reloads == [start.replace("ExecStart=", "ExecReload=") + " --check-config",
                       "ExecReload=/bin/kill -HUP $MAINPID"]


# ---------------------------------------------------------------- item 1: install offline
#: a fresh host: no pip config, no extra indexes or find-links, no cache
FRESH_PIP = "env PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1"
LEFT_BEHIND = ("/opt/winopt", "/etc/systemd/system/winopt-daemon.service", "/etc/winopt", "/usr/local/bin/winopt",
               "/etc/sysusers.d/winopt.conf", "/etc/tmpfiles.d/winopt.conf")


def nothing_installed(box) -> None:  # noqa: ANN001 - the sdbox_support fixture
    assert box(" ; ".join(f"[ -e {p} ] && echo {p}" for p in LEFT_BEHIND) + " ; getent passwd winopt ; true") == ""
    assert box("ls -d /tmp/winopt-* 2>/dev/null; true") == ""  # temp build dirs removed


@pytest.mark.systemd
def test_install_without_network_or_wheelhouse_fails_fast_in_one_line(box) -> None:
    assert box("ip -brief link | grep -v '^lo ' ; true") == ""  # the box has loopback only
    begin = time.monotonic()
    out = box(f"{FRESH_PIP} make -C {REPO} --no-print-directory install 2>&1; echo rc=$?", timeout=120)
    took = time.monotonic() - begin
    lines = out.splitlines()
    assert lines[-1] != "rc=0" and took < 30, (took, out)
    said = [line for line in lines if "error" in line.lower()]
    assert said[0].startswith("make install: error: cannot reach the package index within 5 s"), out
    assert "run 'make wheelhouse WHEELHOUSE=DIR', copy DIR here and run 'sudo make install WHEELHOUSE=DIR'" in said[0]
    assert said[1:] == [line for line in lines if line.startswith("make: *** ")], out  # make's own, nothing else
    assert "Traceback" not in out and "Retrying" not in out, out
    nothing_installed(box)


@pytest.mark.systemd
def test_install_removes_the_venv_it_began_when_filling_it_fails(box) -> None:
    # a wheelhouse whose winopt wheel needs a package the wheelhouse lacks
    box("mkdir -p /srv/wh && cd /srv/wh && python3 - <<'EOF'\n"
        "import zipfile\n"
        "info = 'winopt-0.1.0.dist-info/'\n"
        "with zipfile.ZipFile('winopt-0.1.0-py3-none-any.whl', 'w') as whl:\n"
        "    whl.writestr(info + 'METADATA', 'Metadata-Version: 2.1\\nName: winopt\\nVersion: 0.1.0\\n'\n"
        "                 'Requires-Dist: not-in-this-wheelhouse\\nProvides-Extra: systemd\\n')\n"
        "    whl.writestr(info + 'WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\n'\n"
        "                 'Tag: py3-none-any\\n')\n"
        "    whl.writestr(info + 'RECORD', info + 'METADATA,,\\n' + info + 'WHEEL,,\\n' + info + 'RECORD,,\\n')\n"
        "EOF")
    out = box(f"{FRESH_PIP} make -C {REPO} --no-print-directory install WHEELHOUSE=/srv/wh 2>&1; echo rc=$?",
              timeout=120)
    assert out.splitlines()[-1] != "rc=0" and "not-in-this-wheelhouse" in out, out
    nothing_installed(box)
    # and a wheelhouse without winopt is one line saying how to make one
    box("mkdir -p /srv/empty")
    out = box(f"make -C {REPO} --no-print-directory install WHEELHOUSE=/srv/empty 2>&1; echo rc=$?")
    assert out.splitlines()[0] == ("make install: error: /srv/empty: no winopt wheel there: make the wheelhouse with "
                                   "'make wheelhouse WHEELHOUSE=/srv/empty' on a connected host with the same "
                                   "Debian release"), out
    nothing_installed(box)
