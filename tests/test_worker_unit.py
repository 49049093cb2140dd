"""winopt-worker@.service (issue 15): hardened like the daemon's unit, the storage's
credentials outside it (EnvironmentFile=, 0640 root:winopt), installed by `make install`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


from daemon_support import REPO
from units_support import offline_exposure

UNIT_FILE = REPO / "systemd" / "winopt-worker@.service"
ENV_FILE = REPO / "etc" / "worker.env"


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            found.setdefault(m.group(1), []).append(m.group(2))
    return found


def test_the_unit_runs_one_worker_per_gpu_with_credentials_outside_it() -> None:
    unit = directives(UNIT_FILE.read_text())
    assert unit["ExecStart"] == ["/opt/winopt/bin/winopt worker"]  # no URL, no password
    assert unit["EnvironmentFile"] == ["/etc/winopt/worker.env"]  # not optional ('-')
    assert any("CUDA_VISIBLE_DEVICES=%i" in e for e in unit["Environment"])
    assert unit["User"] == ["winopt"] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"] and unit["CapabilityBoundingSet"] == [""]
    # the example env file sets nothing (a password must never ship), only says what to set
    assert all(line.startswith("#") or not line.strip() for line in ENV_FILE.read_text().splitlines())


def test_make_install_installs_the_worker_unit_and_a_private_env_file(tmp_path: Path) -> None:
    proc = subprocess.run(["make", "-n", "-C", str(REPO), "--no-print-directory", "install",
                           f"UNITDIR={tmp_path}/units", f"CONFDIR={tmp_path}/etc"],
                          capture_output=True, text=True, timeout=60)
    script = proc.stdout
    assert f"systemd/winopt-worker@.service {tmp_path}/units/winopt-worker@.service" in script, script
    assert f"install -D -m 0640 -g winopt etc/worker.env {tmp_path}/etc/worker.env" in script, script


def test_worker_unit_security_exposure_is_at_most_2_5() -> None:
    score, report = offline_exposure(UNIT_FILE)
    assert score <= 2.5, report
