"""Rigs for tests: real local directories, real sshd "remote hosts" (`rigs.sh`: one network
namespace each, with its own address, host key and authorized key), and the process and
file checks the distribution tests make. `ssh_rigs` is a session fixture (registered in
conftest.py): one pair of sshd rigs serves every test that asks for it, each test using
its own directory on them."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polling import wait_for
from winopt.contracts import publish_atomic, publish_json, sha256_file
from winopt.contracts.schemas import NPZ_META_NAME, NPZ_NAME
from winopt.handlers.rigs.config import Rig, rig_from_dict

REPO = Path(__file__).resolve().parents[1]
RIGS_SH = Path(os.environ.get("WINOPT_RIGS_SH", REPO.parent / "shared" / "tools" / "rigs.sh"))


def publish(run_dir: Path, version: int, *, megabytes: float = 0.0) -> str:
    """Publish NPZ then meta the way the converter does; return the NPZ's sha256.

    `megabytes` adds incompressible padding so a transfer takes measurable time."""
    run_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.arange(1000, dtype=np.uint64) * np.uint64(version)
    pad = np.random.default_rng(version).integers(0, 2**63, int(megabytes * 2**17), dtype=np.int64)
    npz = run_dir / NPZ_NAME
    publish_atomic(npz, lambda fh: np.savez_compressed(fh, seeds=seeds, version=np.int64(version), pad=pad))
    sha = sha256_file(npz)
    publish_json(run_dir / NPZ_META_NAME, {"version": version, "npz_sha256": sha})
    return sha


def read_rig_copy(directory: Path) -> tuple[int, int]:
    """(meta version, NPZ version) of a rig copy, read the way Step 2.5 would: meta first."""
    meta_version = json.loads((directory / NPZ_META_NAME).read_text())["version"]
    return meta_version, read_rig_npz(directory)


def read_rig_npz(directory: Path) -> int:
    """The version of a rig's NPZ, checked whole."""
    with np.load(directory / NPZ_NAME, allow_pickle=False) as npz:
        version = int(npz["version"])
        assert np.array_equal(npz["seeds"], np.arange(1000, dtype=np.uint64) * np.uint64(version))
    return version


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def rsync_report() -> list[str]:
    """Each live rsync (and setpriv) process: pid, state, kernel wait channel and command
    line, so a failed wait in CI says where a stalled transfer sat."""
    lines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            name = Path(argv[0].decode(errors="replace")).name
            if name not in ("rsync", "setpriv", "ssh"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = (entry / "wchan").read_text()
        except (OSError, IndexError):
            continue
        lines.append(f"{entry.name} {state} {wchan} {b' '.join(argv).decode(errors='replace')}")
    return lines


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout` s."""
    wait_for(condition, timeout, what)


def temp_file_in(directory: Path) -> bool:
    """rsync's own temp file for the NPZ (`.NAME.XXXXXX`) exists and has data."""
    try:
        return any(p.name.startswith(f".{NPZ_NAME}.") and p.stat().st_size > 0 for p in directory.iterdir())
    except FileNotFoundError:
        return False


@dataclass
class SshRigs:
    """Two sshd "remote hosts" from rigs.sh, each in its own network namespace."""

    dir: Path
    addrs: list[str]
    namespaces: list[str]
    sshd_pids: list[int]
    restarted: list[subprocess.Popen] = field(default_factory=list)

    def data(self, i: int, sub: str) -> Path:
        return self.dir / f"rig{i}" / "data" / sub

    def table(self, i: int, sub: str, **extra: Any) -> dict[str, Any]:
        """A `[rigs.NAME]` table for rig i, files landing under its data dir `sub`."""
        return {
            "target": f"root@{self.addrs[i - 1]}:{self.data(i, sub)}/",
            "known_hosts": str(self.dir / "known_hosts"),
            "identity_file": str(self.dir / "client_key"),
            "connect_timeout": 5,
            **extra,
        }

    def rig(self, i: int, sub: str, name: str | None = None, **extra: Any) -> Rig:
        return rig_from_dict(name or f"ssh{i}", self.table(i, sub, **extra))

    def listening(self, i: int) -> bool:
        try:
            with socket.create_connection((self.addrs[i - 1], 22), timeout=0.5):
                return True
        except OSError:
            return False

    def stop_sshd(self, i: int) -> None:
        os.kill(self.sshd_pids[i - 1], signal.SIGTERM)
        wait_until(lambda: not self.listening(i), 10, f"rig{i}'s sshd to stop")

    def start_sshd(self, i: int) -> None:
        """Start rig i's sshd again exactly as rigs.sh does (same config, same namespace)."""
        config = self.dir / f"rig{i}" / "sshd_config"
        ns = self.namespaces[i - 1]
        with open(self.dir / f"rig{i}" / "sshd.log", "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, "/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.restarted.append(proc)
        self.sshd_pids[i - 1] = proc.pid
        with open(self.dir / "pids", "a") as pids:  # so `rigs.sh down` kills it too
            pids.write(f"{proc.pid} sshd {ns}\n")
        wait_until(lambda: self.listening(i), 10, f"rig{i}'s sshd to listen")


def netns_usable() -> str | None:
    """Why network namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "rigs.sh needs root (network namespaces)"
    if not shutil.which("ip") or not Path("/usr/sbin/sshd").exists():
        return "needs iproute2 and openssh-server (make deps)"
    probe = f"winopt-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"no network namespaces here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture(scope="session")
def ssh_rigs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshRigs]:
    reason = netns_usable()
    if reason:
        pytest.skip(reason)
    assert RIGS_SH.is_file(), f"{RIGS_SH} is missing (set WINOPT_RIGS_SH)"
    base = tmp_path_factory.mktemp("sshrigs")
    for attempt in range(5):  # other test sessions may hold a subnet: pick another
        directory = base / f"try{attempt}"
        net = f"10.{random.randint(150, 250)}"
        up = subprocess.run(
            [str(RIGS_SH), "up", str(directory), "--count", "2", "--net", net],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if up.returncode == 0:
            break
        assert "already" in up.stderr, f"rigs.sh up failed: {up.stderr}"
    else:
        pytest.fail(f"rigs.sh up: no free subnet after 5 tries: {up.stderr}")
    rigs = SshRigs(directory, [], [], [])
    try:
        for line in (directory / "rigs").read_text().splitlines():
            ns, _veth, addr = line.split()
            rigs.namespaces.append(ns)
            rigs.addrs.append(addr)
        for line in (directory / "pids").read_text().splitlines():
            rigs.sshd_pids.append(int(line.split()[0]))
        yield rigs
    finally:
        subprocess.run([str(RIGS_SH), "down", str(directory)], capture_output=True, timeout=120)
        for proc in rigs.restarted:
            proc.wait(timeout=10)
