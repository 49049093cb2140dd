"""A `workers = "rigs"` spool job through the real daemon with a real PostgreSQL (SPEC §7,
issue 15): the job becomes a study open to `winopt worker`s, the daemon's child publishes
its snapshot into the job directory, the daemon converts it to the rigs' NPZ as for any
run, and a `kill -9` of the daemon mid-run loses nothing: restarted, it rebuilds the
snapshot from the storage and the job completes with exactly N trials."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from daemon_support import DaemonProcess, npz_source_sha
from jobs_support import toml_job
from optimize_support import MOD
from polling import wait_for
import shared_support
from shared_support import Shared
from winopt.contracts.publish import sha256_file
from winopt.contracts.schemas import NPZ_META_NAME, NPZ_NAME

JOB = {"mod": MOD, "seed_count": 400_000, "strategy": "random", "window_size": [2, 6],
       "offset": [0, 40], "skip_min": [0, 3], "skip_max": [3, 12],
       "forward_threshold": [0.15, 0.35], "reverse_threshold": [0.15, 0.35]}

pg_cluster = shared_support.pg_cluster  # the session's PostgreSQL (a fixture)


def test_rigs_job_survives_a_daemon_kill_9(pg_cluster, tmp_path: Path) -> None:
    shared = Shared(pg_cluster, tmp_path, trials=10, seed_count=JOB["seed_count"])
    state = tmp_path / "state"
    config = tmp_path / "daemon.toml"
    config.write_text(
        "debounce = 0.1\nmax_delay = 1.0\n"
        f"[jobs]\nallowed_draws_dirs = [\"{tmp_path}\"]\ngrace = 0.2\nstop_timeout = 30\n"
        f"[optuna]\nstorage = \"{shared.url}\"\nartifacts = \"{shared.artifacts}\"\n")
    daemons: list[DaemonProcess] = []

    def start_daemon() -> DaemonProcess:
        d = DaemonProcess(state, [], args=["--config", str(config)], env={"WINOPT_DEVICE": "cpu"})
        daemons.append(d.start())
        return d

    try:
        d1 = start_daemon()
        spool = state / "spool"
        (spool / ".j.tmp").write_text(toml_job(draws=str(shared.draws), trials=10, workers="rigs",
                                               name="shared-job", **JOB))
        (spool / ".j.tmp").rename(spool / "j.toml")
        job_dir = wait_for(lambda: next((state / "jobs").glob("*/optimal_window_config.json"), None),
                           60, "the rigs job's first snapshot").parent
        shared.out, shared.name = job_dir, job_dir.name
        shared.sample_counts()
        workers = [shared.start_worker() for _ in range(2)]
        wait_for(lambda: shared.counts and shared.counts[-1] >= 3, 120, "three trials published")
        os.kill(d1.pid, signal.SIGKILL)
        d1.proc.wait()
        d2 = start_daemon()
        job_id = job_dir.name
        wait_for(lambda: (d2.status().get("jobs") or {}).get(job_id, {}).get("state") == "complete",
                 180, "the job to complete after the restart")
        for w in workers:
            assert w.wait(timeout=60) == 0
        shared.stop_sampling()
        snap = shared.assert_sound()
        # conversion works exactly as for a local run: the NPZ is the published survivors'
        wait_for(lambda: npz_source_sha(job_dir) == snap["survivors_sha256"], 60,
                 "the NPZ of the final survivors")
        assert (job_dir / NPZ_META_NAME).is_file()
        assert (job_dir / NPZ_NAME).is_file()
        assert sha256_file(job_dir / "bidirectional_survivors.json") == snap["survivors_sha256"]
        assert "orphan stopped" in d2.log() or "resumed" in d2.log()
        assert d2.stop() == 0
    finally:
        for d in daemons:
            d.kill()
        shared.cleanup()


def test_cancelling_a_rigs_job_closes_its_study(pg_cluster, tmp_path: Path) -> None:
    """`winopt cancel` of a rigs job: its `winopt study` child closes the study, so no worker
    takes its trials any more (a daemon stop, by contrast, leaves it open: see above)."""
    import subprocess

    from optimize_support import subprocess_env, winopt_cmd
    from winopt.optimizer.shared_study import OPEN_ATTR

    shared = Shared(pg_cluster, tmp_path, trials=50, seed_count=1000)
    state = tmp_path / "state"
    config = tmp_path / "daemon.toml"
    config.write_text(
        f"[jobs]\nallowed_draws_dirs = [\"{tmp_path}\"]\ngrace = 0.2\nstop_timeout = 30\n"
        f"[optuna]\nstorage = \"{shared.url}\"\n")
    d = DaemonProcess(state, [], args=["--config", str(config)], env={"WINOPT_DEVICE": "cpu"}).start()
    try:
        spool = state / "spool"
        (spool / ".j.tmp").write_text(toml_job(draws=str(shared.draws), trials=50, workers="rigs", **JOB))
        (spool / ".j.tmp").rename(spool / "j.toml")
        job_dir = wait_for(lambda: next((state / "jobs").glob("*/optimal_window_config.json"), None),
                           60, "the rigs job's first snapshot").parent
        shared.name = job_dir.name

        def study_open() -> bool | None:
            from winopt.optimizer.shared_storage import open_storage

            storage = open_storage(shared.url)
            try:
                for s in storage.get_all_studies():
                    if s.study_name == shared.name:
                        return s.user_attrs.get(OPEN_ATTR)
                return None
            finally:
                storage.engine.dispose()

        assert study_open() is True
        proc = subprocess.run(winopt_cmd("cancel", "--state-dir", str(state), job_dir.name),
                              env=subprocess_env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        wait_for(lambda: (d.status().get("jobs") or {}).get(job_dir.name, {}).get("state") == "cancelled",
                 60, "the job to be cancelled")
        assert study_open() is False
        assert d.stop() == 0
    finally:
        d.kill()
        shared.cleanup()
