"""A head node with members: a state dir as tmpfiles.d lays it out, shared by the tests
that act as members of group winopt (the `head` fixture, registered in conftest.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon_support import DaemonProcess, stop_all
from jobs_support import toml_job
from members_support import Member, Members, install_layout
from optimize_support import MOD, write_history
from winopt.handlers.jobs.ids import new_job_id
from winopt.handlers.jobs.runner import runs_job, terminate
from winopt.handlers.jobs.store import JobStore

#: a real optimizer run that costs well under a second of CPU per job
FAST = {"mod": MOD, "seed_count": 300, "strategy": "random", "window_size": [2, 5], "offset": [0, 30],
        "skip_min": [0, 2], "skip_max": [3, 8], "forward_threshold": [0.2, 0.5], "reverse_threshold": [0.2, 0.5]}


class Head:
    """A state dir laid out as tmpfiles.d does it (group: the members' group), its draws
    dir holding h.json, a daemon config, and daemons started on them."""

    def __init__(self, members: Members) -> None:
        self.members = members
        self.root = members.root
        self.state = self.root / "state"
        install_layout(self.state, members.gid)
        self.spool, self.draws = self.state / "spool", self.state / "draws"
        write_history(self.draws / "h.json")
        self.config = self.root / "daemon.toml"
        self.daemons: list[DaemonProcess] = []
        self.configure()

    def configure(self, **jobs: Any) -> None:
        keys = {"max_parallel_jobs": 2, "grace": 0.5, "stop_timeout": 30, **jobs}
        self.config.write_text("debounce = 0.1\nmax_delay = 1.0\n[jobs]\n"
                               + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))

    def start(self, watch: tuple[Path, ...] = ()) -> DaemonProcess:
        d = DaemonProcess(self.state, list(watch), args=["--config", str(self.config)], env={"WINOPT_DEVICE": "cpu"})
        self.daemons.append(d.start())
        return d

    def job(self, trials: int, **keys: Any) -> str:
        return toml_job(**{"draws": str(self.draws / "h.json"), "trials": trials, **FAST, **keys})

    def drop(self, who: Member, name: str, text: str, mode: str = "640") -> None:
        """`who` drops a file as `winopt submit` does: written beside, renamed in."""
        mine = self.root / f"{who.name}-{name}"
        mine.write_text(text)
        os.chown(mine, who.uid, -1)
        who.ok(f"install -m {mode} {mine} {self.spool}/.{name}.tmp && mv {self.spool}/.{name}.tmp {self.spool}/{name}")

    def submit(self, who: Member, text: str) -> str:
        """A job of `who`'s under a fresh id, as `winopt submit` names it; its id."""
        job_id = new_job_id(who.name)
        self.drop(who, f"{job_id}.toml", text)
        return job_id

    def record(self, job_id: str):
        return JobStore(self.state / "jobs").load(job_id)

    def job_state(self, d: DaemonProcess, job_id: str) -> str | None:
        return ((d.status().get("jobs") or {}).get(job_id) or {}).get("state")

    def close(self) -> None:
        stop_all(self.daemons)
        jobs = self.state / "jobs"
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        terminate([p for p in pids for j in (jobs.iterdir() if jobs.is_dir() else ()) if runs_job(p, j)], 10)


@pytest.fixture
def head(members: Members) -> Iterator[Head]:
    h = Head(members)
    yield h
    h.close()
