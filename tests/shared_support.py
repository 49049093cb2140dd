"""Shared by the shared-study tests: the session's PostgreSQL cluster, `winopt study` and
`winopt worker` subprocesses, the storage read back, and the checks every scenario ends
with (exactly N, every failed trial retried, no trial told twice, monotonic counts, the
published survivors those of the best trial)."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import FrozenTrial, TrialState

from optimize_support import (
    FAST_SPACE, MOD, read_config_or_none, reference_survivors, subprocess_env, winopt_cmd,
    write_history,
)
from pg_support import PgCluster, pg_bindir
from polling import wait_for

HEARTBEAT = 1
GRACE = 4


@pytest.fixture(scope="session")
def pg_cluster():
    """One throw-away PostgreSQL cluster for the session (each test takes a fresh database)."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed (Debian package postgresql)")
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None:
        pytest.skip("psycopg2 is not installed (the postgres extra: pip install -e '.[postgres]')")
    cluster = PgCluster(bindir)
    cluster.start()
    yield cluster
    cluster.destroy()


class Shared:
    """One scenario's study: its database, directories and processes."""

    def __init__(self, cluster: PgCluster, tmp: Path, *, trials: int, seed_count: int,
                 name: str = "shared") -> None:
        self.cluster = cluster
        self.url = cluster.new_database()
        self.tmp = tmp
        self.trials = trials
        self.seed_count = seed_count
        self.name = name
        self.draws = write_history(tmp / "h.json")
        self.out = tmp / "run"
        self.artifacts = tmp / "artifacts"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.worker_logs: list[Path] = []
        self.workers: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.counts: list[int] = []
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self._storage: Any = None

    def env(self) -> dict[str, str]:
        return {**subprocess_env(), "WINOPT_STORAGE": self.url}

    def study_argv(self) -> list[str]:
        return ["study", "--draws", str(self.draws), "--out", str(self.out), "--study", self.name,
                "--trials", str(self.trials), "--seed-count", str(self.seed_count),
                "--mod", str(MOD), "--device", "cpu", "--poll", "0.2",
                "--artifacts", str(self.artifacts), *FAST_SPACE]

    def start_study(self, log_name: str = "study.log") -> subprocess.Popen[bytes]:
        log = open(self.tmp / log_name, "ab")
        proc = subprocess.Popen(winopt_cmd(*self.study_argv()), stdout=log, stderr=subprocess.STDOUT,
                                env=self.env())
        self.procs.append(proc)
        return proc

    def start_worker(self, *extra: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp / f"worker{len(self.worker_logs)}.log"
        self.worker_logs.append(log_path)
        log = open(log_path, "ab")
        argv = ["worker", "--cores", "1", "--device", "cpu", "--heartbeat-interval", str(HEARTBEAT),
                "--grace-period", str(GRACE), "--poll", "0.2", "--once",
                "--artifacts", str(self.artifacts), *extra]
        proc = subprocess.Popen(winopt_cmd(*argv), stdout=log, stderr=subprocess.STDOUT, env=self.env())
        self.procs.append(proc)
        self.workers.append((proc, log_path))
        return proc

    def wait_open(self) -> None:
        wait_for(lambda: read_config_or_none(self.out) is not None, 60, "the first snapshot")

    # ------------------------------------------------------------------ watching
    def sample_counts(self) -> None:
        """Record completed_trials of every snapshot seen (a thread, until `stop_sampling`)."""
        def loop() -> None:
            while not self._sampling.wait(0.05):
                config = read_config_or_none(self.out)
                if config is not None and (not self.counts or self.counts[-1] != config["completed_trials"]):
                    self.counts.append(config["completed_trials"])

        self._sampler = threading.Thread(target=loop, daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> None:
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join()

    def trials_now(self) -> list[FrozenTrial]:
        """The study's trials as the storage has them now (one storage, kept: under load a
        new connection per look costs seconds)."""
        from winopt.optimizer.shared_storage import open_storage, retrying

        if self._storage is None:
            self._storage = open_storage(self.url)
        storage = self._storage
        return retrying("test: reading trials", lambda: storage.get_all_trials(
            storage.get_study_id_from_name(self.name), deepcopy=False))

    def running_trial_of(self, log_path: Path) -> int | None:
        """The trial a worker's log says it has started and not yet told."""
        started = told = None
        for line in log_path.read_text(errors="replace").splitlines():
            m = re.search(r"trial (\d+) started", line)
            if m:
                started = int(m.group(1))
            m = re.search(r"trial (\d+) told", line)
            if m:
                told = int(m.group(1))
        return started if started is not None and started != told else None

    def cleanup(self) -> None:
        self.stop_sampling()
        if self._storage is not None:
            self._storage.engine.dispose()
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
                proc.kill()
                proc.wait()

    # ------------------------------------------------------------------ the checks
    def assert_sound(self) -> dict[str, Any]:
        trials = self.trials_now()
        by_state: dict[TrialState, list[int]] = {}
        for t in trials:
            by_state.setdefault(t.state, []).append(t.number)
        finished = sorted(by_state.get(TrialState.COMPLETE, []) + by_state.get(TrialState.PRUNED, []))
        assert len(finished) == self.trials, f"exactly {self.trials} finished trials, got {by_state}"
        assert not by_state.get(TrialState.RUNNING), f"trials left running: {by_state}"
        assert not by_state.get(TrialState.WAITING), f"retries never run: {by_state}"
        # every failed trial was retried, and its retry (or the retry's retry) finished
        retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
        failed = set(by_state.get(TrialState.FAIL, []))
        assert failed <= retried, f"failed trials without a retry: {sorted(failed - retried)}"
        # no trial told twice, none told that is not finished, none finished untold (but the
        # one a worker killed with SIGKILL had just told when it died, before its log line)
        told: list[int] = []
        for log_path in self.worker_logs:
            for m in re.finditer(r"trial (\d+) told (COMPLETE|PRUNED)", log_path.read_text(errors="replace")):
                told.append(int(m.group(1)))
        assert len(told) == len(set(told)) and set(told) <= set(finished), f"told {sorted(told)}"
        killed_mid_trial = {self.running_trial_of(path) for proc, path in self.workers
                            if proc.returncode == -signal.SIGKILL}
        untold = set(finished) - set(told)
        assert untold <= killed_mid_trial, f"finished {sorted(untold)} untold"
        # the head's snapshot
        config = read_config_or_none(self.out)
        assert config is not None
        assert config["status"] == "complete" and config["completed_trials"] == self.trials
        best = max((t for t in trials if t.state == TrialState.COMPLETE),
                   key=lambda t: (t.value, -t.number))
        assert config["best_trial_number"] == best.number and config["best_value"] == best.value
        data = (self.out / "bidirectional_survivors.json").read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        assert sha == config["survivors_sha256"]
        assert data == reference_survivors(config, self.draws), "published survivors != best trial's"
        uploaded = best.user_attrs.get("survivors")
        if uploaded and uploaded.get("trial_number") == best.number:
            assert uploaded["sha256"] == sha
        assert self.counts == sorted(self.counts), f"snapshot counts went down: {self.counts}"
        return config
