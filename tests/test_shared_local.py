"""Shared studies without a server (issue 15): `winopt study` and `winopt worker` on a SQLite
storage (a file lock stands in for PostgreSQL's advisory lock), one pair of workers
serving two open studies at once, and the errors a person meets first."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest

from optimize_support import FAST_SPACE, MOD, read_config, reference_survivors, subprocess_env, winopt_cmd, write_history
from winopt.optimizer.shared_storage import is_transient, safe_url
from winopt.optimizer.shared_study import OPEN_ATTR, SHARED_ATTR, SharedSpec


def test_worker_without_a_storage_says_where_to_give_it(tmp_path: Path) -> None:
    env = {k: v for k, v in subprocess_env().items() if k != "WINOPT_STORAGE"}
    proc = subprocess.run(winopt_cmd("worker", "--once"), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no storage: give --storage URL or set WINOPT_STORAGE" in proc.stderr


def test_worker_refuses_grace_shorter_than_heartbeat() -> None:
    proc = subprocess.run(winopt_cmd("worker", "--storage", "sqlite:////nonexistent/x.db",
                                     "--heartbeat-interval", "10", "--grace-period", "5"),
                          env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--grace-period 5 must be longer" in proc.stderr


def test_safe_url_hides_the_password() -> None:
    assert safe_url("postgresql://winopt:s3cret@head/winopt") == "postgresql://winopt@head/winopt"
    assert "s3cret" not in safe_url("postgresql+psycopg2://u:s3cret@h:5432/d")


def test_a_wrapped_connection_error_is_transient() -> None:
    import sqlalchemy.exc

    inner = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    try:
        try:
            raise inner
        except Exception as exc:
            raise optuna.exceptions.StorageInternalError("commit failed") from exc
    except optuna.exceptions.StorageInternalError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(ValueError("Cannot tell a FAIL trial."))


@pytest.mark.parametrize("trials", [(7, 5)])
def test_two_workers_serve_two_open_studies_on_sqlite(tmp_path: Path, trials: tuple[int, int]) -> None:
    draws = write_history(tmp_path / "h.json")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**subprocess_env(), "WINOPT_STORAGE": url}
    heads = []
    for name, n in zip(("a", "b"), trials):
        argv = winopt_cmd("study", "--draws", str(draws), "--out", str(tmp_path / name), "--trials", str(n),
                          "--seed-count", "20000", "--mod", str(MOD), "--device", "cpu", "--poll", "0.2",
                          "--artifacts", str(tmp_path / "art"), *FAST_SPACE)
        heads.append(subprocess.Popen(argv, env=env, stdout=open(tmp_path / f"{name}.log", "wb"),
                                      stderr=subprocess.STDOUT))
    storage = optuna.storages.RDBStorage(url)
    from polling import wait_for

    wait_for(lambda: sum(s.user_attrs.get(OPEN_ATTR) is True for s in storage.get_all_studies()) == 2
             if (tmp_path / "shared.db").exists() else False, 60, "both studies open")
    workers = [subprocess.Popen(winopt_cmd("worker", "--cores", "1", "--device", "cpu", "--once", "--poll", "0.2",
                                           "--heartbeat-interval", "1", "--grace-period", "4",
                                           "--artifacts", str(tmp_path / "art")),
                                env=env, stdout=open(tmp_path / f"w{i}.log", "wb"), stderr=subprocess.STDOUT)
               for i in range(2)]
    for w in workers:
        assert w.wait(timeout=120) == 0
    for h in heads:
        assert h.wait(timeout=60) == 0
    for name, n in zip(("a", "b"), trials):
        study = optuna.load_study(study_name=name, storage=storage)
        finished = [t for t in study.trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]
        assert len(finished) == n
        assert study.user_attrs[OPEN_ATTR] is False  # closed at the target
        spec = SharedSpec.from_attrs(study.user_attrs)
        assert spec is not None and spec.target == n and spec.space.describe() == study.user_attrs[SHARED_ATTR]["space"]
        config = read_config(tmp_path / name)
        assert config["status"] == "complete" and config["completed_trials"] == n
        assert (tmp_path / name / "bidirectional_survivors.json").read_bytes() == reference_survivors(config, draws)
        assert (tmp_path / name / "train_history.json").is_file()


def test_a_rigs_job_runs_winopt_study_and_a_bad_workers_value_is_refused(tmp_path: Path) -> None:
    from winopt.handlers.jobs.jobfile import JobError, JobSpec, optimize_argv, validate_job

    draws = write_history(tmp_path / "h.json")
    base = {"draws": str(draws), "trials": 5, "mod": MOD}
    local = validate_job(base, source="j.toml", allowed_draws_dirs=[tmp_path])
    assert local.workers == "local" and optimize_argv(local, tmp_path / "out")[3] == "optimize"
    rigs = validate_job({**base, "workers": "rigs"}, source="j.toml", allowed_draws_dirs=[tmp_path])
    argv = optimize_argv(rigs, tmp_path / "out")
    assert argv[3] == "study" and "--storage" not in argv  # the URL travels in the environment
    assert JobSpec.from_dict(rigs.to_dict()) == rigs
    # a state file written before the key existed still loads, as a local job
    old = {k: v for k, v in local.to_dict().items() if k != "workers"}
    assert JobSpec.from_dict(old).workers == "local"
    with pytest.raises(JobError, match="workers: must be one of local, rigs"):
        validate_job({**base, "workers": "gpus"}, source="j.toml", allowed_draws_dirs=[tmp_path])


def test_a_rigs_job_on_a_daemon_without_a_storage_is_refused_when_dropped(tmp_path: Path) -> None:
    """A `workers = "rigs"` job on a daemon with no storage could only fail when it ran:
    the daemon refuses it at once, beside a reason that says what to set; with a storage
    (`WINOPT_STORAGE` in the daemon's environment) the same file is taken."""
    from daemon_support import DaemonProcess, stop_all
    from polling import wait_for
    from jobs_support import toml_job

    (tmp_path / "draws").mkdir()
    draws = write_history(tmp_path / "draws" / "h.json")
    for storage, taken in ((None, False), (f"sqlite:///{tmp_path / 's.db'}", True)):
        state = tmp_path / ("with" if storage else "without")
        config = tmp_path / f"{state.name}.toml"
        config.write_text(f'state_dir = "{state}"\n[jobs]\nallowed_draws_dirs = ["{draws.parent}"]\n')
        env = {"WINOPT_STORAGE": storage} if storage else {}
        daemon = DaemonProcess(state, [], args=["--config", str(config)], env=env)
        if not storage:
            daemon.env.pop("WINOPT_STORAGE", None)
        try:
            daemon.start()
            (state / "spool" / ".j.tmp").write_text(toml_job(draws=str(draws), trials=2, workers="rigs"))
            (state / "spool" / ".j.tmp").rename(state / "spool" / "j.toml")
            if taken:
                wait_for(lambda: daemon.status().get("jobs"), 30, "the job taken")
                assert not (state / "rejected" / "j.toml.error").exists()
            else:
                error = wait_for(lambda: (state / "rejected" / "j.toml.error").is_file()
                                 and (state / "rejected" / "j.toml.error").read_text(), 30, "the refusal")
                assert error.startswith('spool/j.toml: workers: "rigs" needs a shared storage'), error
                assert "[optuna] storage" in error and not daemon.status().get("jobs")
        finally:
            stop_all([daemon])


def head_and_one_worker(draws: Path, out: Path, env: dict[str, str],
                        head_log: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`winopt study` of 4 trials into `out`, served by one `winopt worker --once`; both
    exit 0 and the snapshot says complete. The worker's run and the final snapshot."""
    from polling import wait_for

    head = subprocess.Popen(winopt_cmd("study", "--draws", str(draws), "--out", str(out), "--trials", "4",
                                       "--seed-count", "20000", "--mod", str(MOD), "--device", "cpu",
                                       "--poll", "0.2", *FAST_SPACE),
                            env=env, stdout=open(head_log, "wb"), stderr=subprocess.STDOUT)
    wait_for(lambda: (out / "optimal_window_config.json").exists(), 60, "the first snapshot")
    worker = subprocess.run(winopt_cmd("worker", "--cores", "1", "--device", "cpu", "--once", "--poll", "0.2"),
                            env=env, capture_output=True, text=True, timeout=120)
    assert worker.returncode == 0, worker.stderr
    assert head.wait(timeout=60) == 0
    config = read_config(out)
    assert config["status"] == "complete" and config["completed_trials"] == 4
    return worker, config


def test_without_artifacts_the_head_re_runs_the_best_trials_sieve(tmp_path: Path) -> None:
    """A worker with no artifact store uploads nothing; the head node re-runs the sieve for
    each new best (deterministic), and the published survivors are the best trial's."""
    draws = write_history(tmp_path / "h.json")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {k: v for k, v in subprocess_env().items() if k != "WINOPT_ARTIFACTS"}
    env["WINOPT_STORAGE"] = url
    out = tmp_path / "run"
    worker, config = head_and_one_worker(draws, out, env, tmp_path / "study.log")
    assert "survivors uploaded" not in worker.stderr
    assert "re-running its sieve" in (tmp_path / "study.log").read_text()
    assert (out / "bidirectional_survivors.json").read_bytes() == reference_survivors(config, draws)


def test_survivors_travel_through_an_s3_bucket(tmp_path: Path) -> None:
    """`--artifacts s3://BUCKET` (Optuna's Boto3ArtifactStore) for rigs that share no
    filesystem, against a real S3 endpoint on loopback (moto's server; boto3 reads the
    endpoint and keys from AWS_* as on a rig): each new best goes up to the bucket, the
    head node takes the best trial's survivors from it (no re-run of the sieve), and the
    objects are the published bytes, compressed."""
    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    import zlib

    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        aws = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "rig",
               "AWS_SECRET_ACCESS_KEY": "s3cret", "AWS_DEFAULT_REGION": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="rig", aws_secret_access_key="s3cret")
        s3.create_bucket(Bucket="winopt-artifacts")
        draws = write_history(tmp_path / "h.json")
        env = {**subprocess_env(), **aws, "WINOPT_STORAGE": f"sqlite:///{tmp_path / 'shared.db'}",
               "WINOPT_ARTIFACTS": "s3://winopt-artifacts"}
        out = tmp_path / "run"
        worker, config = head_and_one_worker(draws, out, env, tmp_path / "study.log")
        assert "survivors uploaded" in worker.stderr
        assert "re-running its sieve" not in (tmp_path / "study.log").read_text()
        published = (out / "bidirectional_survivors.json").read_bytes()
        assert published == reference_survivors(config, draws)
        objects = [o["Key"] for o in s3.list_objects_v2(Bucket="winopt-artifacts").get("Contents", [])]
        bodies = [zlib.decompress(s3.get_object(Bucket="winopt-artifacts", Key=k)["Body"].read())
                  for k in objects]
        assert published in bodies, f"{len(objects)} objects, none the published survivors"
    finally:
        server.stop()


def test_a_bad_artifact_store_is_one_line_at_start(tmp_path: Path) -> None:
    for given, problem in (("s3://bucket/prefix", "give a bucket alone (s3://BUCKET)"),
                           ("http://x/y", "give a directory or s3://BUCKET")):
        proc = subprocess.run(winopt_cmd("worker", "--storage", f"sqlite:///{tmp_path / 's.db'}",
                                         "--artifacts", given, "--once"),
                              env=subprocess_env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and problem in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_rigs_job_that_ends_has_its_study_closed_by_the_daemon(tmp_path: Path, monkeypatch) -> None:
    """Only a running `winopt study` closed its study (at the target, or cancelled while
    it ran): a rigs job cancelled between runs, failed or killed left it open, and the
    workers served it first forever. The daemon's end-of-job thread closes it with
    `winopt study --close ID` (a study not there: nothing to close)."""
    import numpy as np

    from winopt.daemon.reports import JobReports
    from winopt.optimizer.shared_storage import open_storage
    from winopt.optimizer.shared_study import open_for_workers
    from winopt.optimizer.study import RunSettings
    from winopt.optimizer.space import SearchSpace

    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url)
    spec = SharedSpec(RunSettings("java_lcg", 0, 10, MOD, "x"), SearchSpace(), 3, "random",
                      {"all": np.arange(100) % MOD})
    open_for_workers(storage, "20261202-job-abcd", spec)
    monkeypatch.setenv("WINOPT_STORAGE", url)
    monkeypatch.setenv("PYTHONPATH", subprocess_env().get("PYTHONPATH", ""))
    reports = JobReports()
    job_dir = tmp_path / "20261202-job-abcd"
    job_dir.mkdir()
    reports.request("20261202-job-abcd", job_dir, close_study=True)
    from polling import wait_for

    def is_open() -> bool:
        return optuna.load_study(study_name="20261202-job-abcd", storage=url).user_attrs[OPEN_ATTR]

    try:
        wait_for(lambda: not is_open(), 60, "the study closed")
    finally:
        reports.stop()
    gone = subprocess.run(winopt_cmd("study", "--close", "no-such-job"), capture_output=True, text=True,
                          env={**subprocess_env(), "WINOPT_STORAGE": url}, timeout=60)
    assert gone.returncode == 0 and "is not there" in gone.stderr, gone.stderr
    missing = subprocess.run(winopt_cmd("study", "--out", str(tmp_path / "o")), capture_output=True,
                             text=True, env={**subprocess_env(), "WINOPT_STORAGE": url}, timeout=60)
    assert missing.returncode == 2 and "required: --draws, --trials" in missing.stderr, missing.stderr


def test_a_failed_trial_whose_retry_was_lost_is_queued_at_the_next_claim(tmp_path: Path) -> None:
    """Failing a trial and queueing its retry are two commits: a connection lost between
    them left a failed trial with no retry. The next claim queues it, and runs it first."""
    import numpy as np

    from winopt.optimizer.shared_storage import open_storage
    from winopt.optimizer.shared_study import claim_trial, open_for_workers
    from winopt.optimizer.study import RunSettings
    from winopt.optimizer.space import SearchSpace

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=2)
    spec = SharedSpec(RunSettings("java_lcg", 0, 10, MOD, "x"), SearchSpace(), 2, "random",
                      {"all": np.arange(100) % MOD})
    study = open_for_workers(storage, "s", spec)
    first = claim_trial(study, storage, 2)
    assert first is not None
    storage.set_trial_state_values(first._trial_id, state=optuna.trial.TrialState.FAIL)  # no retry
    retry = claim_trial(study, storage, 2)
    assert retry is not None
    assert storage.get_trial(retry._trial_id).system_attrs.get("retry_history") == [first.number]
    assert claim_trial(study, storage, 2) is not None and claim_trial(study, storage, 2) is None
    assert len(storage.get_all_trials(study._study_id)) == 3  # queued once, not at every claim


def test_a_chain_that_had_all_its_retries_is_not_retried_again(tmp_path: Path) -> None:
    """A trial failed `max_retry` times in a row (its chain exhausted) gets no further
    retry, at this claim or any later one: the next claims ask new trials."""
    import numpy as np

    from winopt.optimizer.shared_storage import open_storage
    from winopt.optimizer.shared_study import claim_trial, open_for_workers, queue_missing_retries
    from winopt.optimizer.study import RunSettings
    from winopt.optimizer.space import SearchSpace

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=2,
                           max_retry=2)
    spec = SharedSpec(RunSettings("java_lcg", 0, 10, MOD, "x"), SearchSpace(), 9, "random",
                      {"all": np.arange(100) % MOD})
    study = open_for_workers(storage, "s", spec)
    chain = []
    for _ in range(3):  # the first try and its two retries all fail
        trial = claim_trial(study, storage, 9)
        assert trial is not None
        chain.append(trial.number)
        storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
    history = storage.get_trial(study.trials[chain[-1]]._trial_id).system_attrs["retry_history"]
    assert history == chain[:2]
    assert queue_missing_retries(study, storage) == []
    fresh = claim_trial(study, storage, 9)
    assert fresh is not None and "retry_history" not in storage.get_trial(fresh._trial_id).system_attrs
    assert queue_missing_retries(study, storage) == [] and len(study.trials) == 4


def test_an_open_study_this_winopt_cannot_read_is_passed_over(tmp_path: Path) -> None:
    """A study opened by a newer head node (or by hand) must not stop the workers: it is
    passed over with a warning and the other open studies are served."""
    import numpy as np

    from winopt.optimizer.shared_storage import open_storage
    from winopt.optimizer.shared_study import open_for_workers, open_studies
    from winopt.optimizer.study import SETTINGS_ATTR, RunSettings
    from winopt.optimizer.space import SearchSpace

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    spec = SharedSpec(RunSettings("java_lcg", 0, 10, MOD, "x"), SearchSpace(), 2, "random",
                      {"all": np.arange(100) % MOD})
    newer = open_for_workers(storage, "newer", spec)
    newer.set_user_attr(SETTINGS_ATTR, {**newer.user_attrs[SETTINGS_ATTR], "sieve_version": 2})
    open_for_workers(storage, "good", spec)
    closed = open_for_workers(storage, "closed", spec)
    closed.set_user_attr(OPEN_ATTR, False)
    cache: dict = {}
    assert [s.name for s in open_studies(storage, cache)] == ["good"]
    # a poll reads only which studies are open: no study's attributes (and draws) again
    read: list[int] = []
    real = storage.get_study_user_attrs
    storage.get_study_user_attrs = lambda sid: read.append(sid) or real(sid)  # type: ignore[method-assign]
    assert [s.name for s in open_studies(storage, cache)] == ["good"]  # and again, from the cache
    assert read == []
    newer.set_user_attr("winopt_spec_sha256", "changed")  # its spec changed: read again
    open_studies(storage, cache)
    assert read == [newer._study_id]


def test_a_password_holding_a_raw_at_sign_is_one_line_not_a_wait(tmp_path: Path) -> None:
    from winopt.contracts.urls import safe_url

    proc = subprocess.run(winopt_cmd("worker", "--storage", "postgresql://w:s3c@ret@127.0.0.1/db", "--once"),
                          env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "percent-encode" in proc.stderr, proc.stderr
    assert "s3c" not in proc.stderr and "ret" not in proc.stderr.split("percent")[0], proc.stderr
    assert safe_url("postgresql://u@h/db?sslmode=require&password=s3cret") == "postgresql://u@h/db?sslmode=require"


@pytest.mark.stress
def test_a_head_stopped_while_it_re_sieves_the_best_stops_at_once(tmp_path: Path) -> None:
    """With no artifact store the head node re-runs the best trial's sieve; a SIGTERM then
    (a daemon stop, a cancel) ends it within seconds, not after the whole sieve and the
    daemon's SIGKILL."""
    import signal
    import time

    from polling import wait_for

    draws = write_history(tmp_path / "h.json")
    env = {k: v for k, v in subprocess_env().items() if k != "WINOPT_ARTIFACTS"}
    env["WINOPT_STORAGE"] = f"sqlite:///{tmp_path / 'shared.db'}"
    out = tmp_path / "run"
    slow = ["--window-size", "6", "--offset", "0", "--skip-min", "0", "--skip-max", "12",
            "--forward-threshold", "0.15", "--reverse-threshold", "0.15"]
    head_log = tmp_path / "study.log"
    head = subprocess.Popen(winopt_cmd("study", "--draws", str(draws), "--out", str(out), "--trials", "2",
                                       "--seed-count", "30000000", "--mod", str(MOD), "--device", "cpu",
                                       "--cores", "1", "--poll", "0.2", *slow),
                            env=env, stdout=open(head_log, "wb"), stderr=subprocess.STDOUT)
    wait_for(lambda: (out / "optimal_window_config.json").exists(), 60, "the first snapshot")
    worker = subprocess.Popen(winopt_cmd("worker", "--cores", "1", "--device", "cpu", "--max-trials", "1",
                                         "--poll", "0.2"), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        assert worker.wait(timeout=300) == 0
        wait_for(lambda: "re-running its sieve" in head_log.read_text(), 60, "the head re-sieving")
        started = time.monotonic()
        head.send_signal(signal.SIGTERM)
        assert head.wait(timeout=60) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 10, head_log.read_text()
    finally:
        for proc in (head, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_storage_whose_tables_another_process_is_creating_opens_on_a_second_try(
        tmp_path: Path, monkeypatch) -> None:
    """A head node and its workers starting together on an empty database all create
    Optuna's tables: the loser saw "UNIQUE constraint failed: alembic_version" and exited
    2 (seen with a head and one worker on SQLite). Here the race is lost once, on purpose,
    the way it happened: the other process's rows in the way of our insert."""
    import sqlalchemy.exc

    import winopt.optimizer.shared_storage as shared_storage

    real = shared_storage.RDBStorage
    lost: list[bool] = []

    def racing(url: str, **kwargs: object) -> object:
        if not lost:
            lost.append(True)
            real(url, **kwargs)  # the other process wins: its tables and rows are there
            raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {},
                                                Exception("UNIQUE constraint failed: alembic_version.version_num"))
        return real(url, **kwargs)

    monkeypatch.setattr(shared_storage, "RDBStorage", racing)
    storage = shared_storage.open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert lost and storage.get_all_studies() == []


def test_a_worker_with_a_short_grace_period_fails_no_trial_of_a_patient_one(tmp_path: Path) -> None:
    """Stale means older than the grace period of the trial's own worker (recorded on the
    trial), never sooner: a worker started by hand with --grace-period 2 fails a trial of
    its kind after 2 s, and leaves alone one whose worker beats every 20 s."""
    import numpy as np

    from polling import wait_for
    from winopt.optimizer.shared_storage import open_storage
    from winopt.optimizer.shared_study import claim_trial, open_for_workers
    from winopt.optimizer.study import RunSettings
    from winopt.optimizer.space import SearchSpace

    url = f"sqlite:///{tmp_path / 's.db'}"
    patient = open_storage(url, heartbeat_interval=20, grace_period=60)
    hasty = open_storage(url, heartbeat_interval=1, grace_period=2)
    spec = SharedSpec(RunSettings("java_lcg", 0, 10, MOD, "x"), SearchSpace(), 5, "random",
                      {"all": np.arange(100) % MOD})
    study = open_for_workers(patient, "s", spec)
    slow = claim_trial(study, patient, 5)
    quick = claim_trial(optuna.load_study(study_name="s", storage=hasty), hasty, 5)
    assert slow is not None and quick is not None  # neither beats again from here

    def state(trial: optuna.Trial) -> optuna.trial.TrialState:
        return hasty.get_trial(trial._trial_id).state

    hasty_study = optuna.load_study(study_name="s", storage=hasty)
    wait_for(lambda: claim_trial(hasty_study, hasty, 5) is not None and state(quick).is_finished(),
             30, "the hasty worker's own trial failed as stale")
    assert state(quick) == optuna.trial.TrialState.FAIL
    assert state(slow) == optuna.trial.TrialState.RUNNING  # 2 s old, its worker allows 60


def test_a_trial_orphaned_between_ask_and_first_heartbeat_is_taken_over(tmp_path: Path) -> None:
    """A worker that dies (or loses the database) between its ask and its first heartbeat
    leaves a RUNNING trial Optuna never fails (no heartbeat, never stale) and that ran
    nothing. The next claim, under the same lock, takes it over: same trial, now beating,
    nothing failed; and a full study gives no more trials."""
    import numpy as np

    from winopt.optimizer.shared_storage import open_storage
    from winopt.optimizer.shared_study import claim_trial, open_for_workers
    from winopt.optimizer.study import RunSettings
    from winopt.optimizer.space import SearchSpace

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=2)
    spec = SharedSpec(RunSettings("java_lcg", 0, 10, MOD, "x"), SearchSpace(), 2, "random",
                      {"all": np.arange(100) % MOD})
    study = open_for_workers(storage, "s", spec)
    orphan = storage.create_new_trial(study._study_id)  # asked, then the worker died
    trial = claim_trial(study, storage, 2)
    assert trial is not None and trial._trial_id == orphan
    assert storage.get_trial(orphan).state == optuna.trial.TrialState.RUNNING
    assert orphan not in storage._get_stale_trial_ids(study._study_id)  # it beats now
    second = claim_trial(study, storage, 2)
    assert second is not None and second._trial_id != orphan
    assert claim_trial(study, storage, 2) is None  # 2 running = full
    assert not storage.get_all_trials(study._study_id, states=(optuna.trial.TrialState.FAIL,))


def test_daemon_optuna_section_and_storage_flag(tmp_path: Path) -> None:
    from winopt.daemon.config import ConfigError, load_config, resolve_config

    path = tmp_path / "daemon.toml"
    path.write_text('[optuna]\nstorage = "postgresql://winopt:s3cret@head/winopt"\nartifacts = "/srv/a"\n')
    config = load_config(path)
    assert (config.optuna.storage, config.optuna.artifacts) == ("postgresql://winopt:s3cret@head/winopt", "/srv/a")
    assert "s3cret" not in f"{config.optuna}"  # a reload logs a changed value: never the password
    flagged = resolve_config(str(path), storage="postgresql://other@db/w")
    assert flagged.optuna.storage == "postgresql://other@db/w" and flagged.optuna.artifacts == "/srv/a"
    for bad, problem in [('[optuna]\nstorage = "mysql://x"\n', "optuna.storage: must be a postgresql://"),
                         ('[optuna]\nartifacts = "rel"\n', "optuna.artifacts: must be an absolute path"),
                         ('[optuna]\nstudy = "x"\n', "optuna.study: unknown key")]:
        path.write_text(bad)
        with pytest.raises(ConfigError, match=problem):
            load_config(path)
