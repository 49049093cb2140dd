"""Issue 11: nobody in group winopt can touch another's job, and no single file can stop
the daemon. Each finding of the issue replayed as it was found, against a real daemon
(`winopt daemon` as root, as the tests run) on a state dir laid out by the project's
tmpfiles.d entry, with real users of a throw-away group acting through setpriv; plus
the property that whatever the validator accepts, the job store can write and read back.

    finding 1  a swapped staging dir moved another's job into rejected/
    finding 2  a symlink named rejected/ planted survivors in a watched run dir
    finding 3  seed_count = 2**64 crash-looped the daemon (and tracebacked submit)
    finding 4  a re-pointed draws symlink made a queued job read (and quote) a 0600 file
    finding 5  overwriting another's pending spool file ran one's own job under their id
    finding 8  a 39 MB draws file was parsed inside the daemon
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon_support import DaemonProcess, poll
from jobs_support import toml_job, write_plain_history
from head_support import FAST, Head
from optimize_support import write_history
from winopt.contracts.schemas import NPZ_NAME, SURVIVORS_NAME
from winopt.contracts.beneath import UnsafeFile, open_beneath
from winopt.handlers.jobs.jobfile import JobError, validate_job
from winopt.handlers.jobs.store import JobStore
from winopt.handlers.jobs.spool import Spool
from winopt.handlers.jobs.ids import new_job_id

SECRET = "TOP-SECRET: root password is hunter2"


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file() and not p.name.endswith(".lock")}


# ---------------------------------------------------------------- finding 1
def test_finding_1_a_swapped_staging_dir_cannot_move_another_members_job(head: Head) -> None:
    alice, mallory = head.members.alice, head.members.mallory
    d = head.start()
    victim = head.submit(alice, head.job(2))
    assert poll(lambda: head.job_state(d, victim) == "complete", 60), d.log()
    assert d.stop() == 0
    job_dir = head.state / "jobs" / victim
    before = files_of(job_dir)
    assert {"state.json", "job.toml", "optuna.db", NPZ_NAME} <= set(before), sorted(before)

    # as the issue did it, with the daemon stopped; then against where staging lives now
    mallory.sh(f"cd {head.spool} && mv -T .accepting .x")
    mallory.sh(f"cd {head.spool} && ln -s ../jobs/{victim} .accepting")
    moved = mallory.sh(f"mv -T {head.state}/accepting {head.state}/.x")
    planted = mallory.sh(f"ln -s ../jobs/{victim} {head.state}/accepting/x@y.toml")
    assert moved.returncode != 0 and planted.returncode != 0, (moved.stderr, planted.stderr)

    d = head.start()
    assert head.job_state(d, victim) == "complete", d.status().get("jobs")
    assert files_of(job_dir) == before, "the victim's files were touched"
    rejected = head.state / "rejected"
    assert not any(p.name in before for p in rejected.iterdir()), sorted(os.listdir(rejected))
    assert d.stop() == 0


# ---------------------------------------------------------------- finding 2
def test_finding_2_a_symlink_named_rejected_plants_nothing_anywhere(head: Head) -> None:
    mallory = head.members.mallory
    run = head.root / "run"  # a watched run directory, whose survivors reach the rigs
    run.mkdir()
    d = head.start(watch=(run,))
    mallory.sh(f"cd {head.spool} && mv -T rejected .old-rejected")
    mallory.ok(f"ln -sfn {run} {head.spool}/rejected")
    planted = json.dumps([{"seed": 4242424242, "forward_match_rate": 1.0, "reverse_match_rate": 1.0}])
    head.drop(mallory, SURVIVORS_NAME, planted, mode="644")
    head.drop(mallory, "authorized_keys", "ssh-ed25519 AAAA mallory\n", mode="644")

    taken = poll(lambda: not {SURVIVORS_NAME, "authorized_keys"} & set(os.listdir(head.spool)), 20)
    assert taken, (sorted(os.listdir(head.spool)), d.log())
    assert sorted(os.listdir(run)) == [], "a member planted files in a watched run directory"
    rejected = head.state / "rejected"
    assert poll(lambda: {SURVIVORS_NAME, "authorized_keys", "rejected"} <= set(os.listdir(rejected)), 20), \
        (sorted(os.listdir(head.spool)), sorted(os.listdir(rejected)), d.log())
    assert (rejected / "rejected").is_symlink() and os.readlink(rejected / "rejected") == str(run)
    assert "not a regular file" in (rejected / "rejected.error").read_text()
    assert "expected a table of job keys" in (rejected / f"{SURVIVORS_NAME}.error").read_text()
    assert sorted(os.listdir(run)) == [] and not (run / NPZ_NAME).exists()
    # status.json is rewritten at most every status_interval: it may lag the files
    shown = poll(lambda: (r := d.status().get("rejected") or {}) and {SURVIVORS_NAME, "authorized_keys"} <= set(r)
                 and r, 10)
    assert shown, d.status()
    assert shown[SURVIVORS_NAME]["owner"] == mallory.name
    assert d.stop() == 0


# ---------------------------------------------------------------- finding 3
def test_finding_3_a_seed_count_past_2_64_is_refused_and_the_daemon_starts_again(tmp_path: Path) -> None:
    draws, state = tmp_path / "draws", tmp_path / "state"
    draws.mkdir()
    write_history(draws / "h.json")
    config = tmp_path / "daemon.toml"
    config.write_text(f'debounce = 0.1\n[jobs]\nallowed_draws_dirs = ["{draws}"]\ngrace = 0.5\n')
    huge = toml_job(draws="h.json", trials=2, **{**FAST, "prng": "xorshift64", "seed_count": 2**64})
    job = tmp_path / "huge.toml"
    job.write_text(huge.replace('"h.json"', f'"{draws / "h.json"}"'))
    d = DaemonProcess(state, [], args=["--config", str(config)], env={"WINOPT_DEVICE": "cpu"}).start()
    try:
        submitted = subprocess.run([sys.executable, "-m", "winopt", "submit", str(job), "--config", str(config),
                                    "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
        assert submitted.returncode == 2 and submitted.stderr.count("\n") == 1, submitted.stderr
        assert submitted.stderr == (f"winopt: error: {job}: seed_count: must be between 1 and {2**64 - 1}, "
                                    f"got {2**64}\n")
        (state / "spool" / ".huge.toml.tmp").write_text(huge)
        (state / "spool" / ".huge.toml.tmp").rename(state / "spool" / "huge.toml")
        # a name that is not UTF-8 must not stop the status or the store either
        odd = os.fsdecode(b"\xff\xfe odd\x1b.toml")
        (state / "spool" / odd).write_text(toml_job(draws="h.json", trials=1, **FAST))
        rejected = poll(lambda: d.status().get("rejected", {}).get("huge.toml"), 20)
        assert rejected and "seed_count: must be between 1 and 18446744073709551615" in rejected["reason"], d.log()
        jobs = poll(lambda: [j for j in (d.status().get("jobs") or {}).values() if j["state"] == "complete"], 60)
        assert jobs and jobs[0]["source"] == "\\udcff\\udcfe odd\\x1b.toml", d.status().get("jobs")
        assert not os.listdir(state / "accepting")
        assert d.stop() == 0
        d = DaemonProcess(state, [], args=["--config", str(config)], env={"WINOPT_DEVICE": "cpu"}).start()
        assert d.alive() and d.stop() == 0
    finally:
        d.kill()


def test_finding_3_recovery_goes_on_past_a_staged_file_it_cannot_finish(tmp_path: Path) -> None:
    """A staged file whose job directory cannot be made (a plain file where it goes: the
    environment, not the file) stays staged for the next scan; recovery does not raise,
    and the next staged file still becomes its job."""
    draws = tmp_path / "draws"
    draws.mkdir()
    write_plain_history(draws / "plain.json", 200)
    spool = Spool(tmp_path / "state", allowed_draws_dirs=[draws], grace=0)
    spool.ensure_layout()
    text = toml_job(draws="plain.json", trials=2)
    blocked, fine = new_job_id("blocked"), new_job_id("fine")
    (spool.accepting / f"{blocked}@a.toml").write_text(text)
    (spool.accepting / f"{fine}@b.toml").write_text(text)
    (spool.store.root / blocked).write_text("not a directory")
    result = spool.recover()
    assert [r.id for r in result.accepted] == [fine]
    assert [(e.kind, e.name) for e in result.events if e.kind != "accepted"] == [("error", f"{blocked}@a.toml")]
    assert (spool.accepting / f"{blocked}@a.toml").is_file() and result.retry_after is not None
    assert not list(spool.store.root.glob(".*.tmp")), "a half-built job directory was left"
    (spool.store.root / blocked).unlink()
    assert [r.id for r in spool.scan().accepted] == [blocked]


@st.composite
def accepted_jobs(draw: st.DrawFn) -> dict[str, Any]:
    """Job tables near every limit the validator has, valid or not."""
    near = lambda lo, hi: st.integers(lo - 2, hi + 2) | st.sampled_from([lo, hi, lo + 1, hi - 1])  # noqa: E731
    job: dict[str, Any] = {"draws": "plain.json", "trials": draw(near(1, 1_000_000))}
    for key, strategy in {
        "seed_start": near(0, 2**64 - 1), "seed_count": near(1, 2**64),
        "prng": st.sampled_from(["java_lcg", "xorshift64", "pcg32", "lcg32"]), "mod": near(2, 2**32),
        "priority": near(-1000, 1000), "name": st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", fullmatch=True),
        "forward_threshold": st.floats(0, 1) | st.lists(st.floats(0, 1), min_size=2, max_size=2),
        "window_size": near(1, 100), "offset": near(0, 1_000_000), "skip_max": near(0, 100_000),
        "time_of_day": st.sampled_from(["all", ["all"]]),
    }.items():
        if draw(st.booleans()):
            job[key] = draw(strategy)
    return job


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=accepted_jobs(), source=st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=20))
def test_finding_3_whatever_the_validator_accepts_the_store_writes_and_reads_back(
    tmp_path_factory: pytest.TempPathFactory, job: dict[str, Any], source: str
) -> None:
    root = tmp_path_factory.mktemp("store")
    draws = root / "draws"
    draws.mkdir()
    write_plain_history(draws / "plain.json", 400, mod=2)
    try:
        spec = validate_job(job, source="j.toml", allowed_draws_dirs=[draws], base_dir=draws)
    except JobError:
        return
    orjson.dumps(job)  # what `winopt submit` writes into the spool
    store = JobStore(root / "jobs")
    store.root.mkdir()
    job_id = new_job_id(spec.name or "job")
    record = store.create(job_id, b"x", ".toml", spec, source=source)
    assert store.load(job_id) == record and record.spec == spec


# ---------------------------------------------------------------- finding 4
def test_finding_4_a_queued_job_runs_on_the_draws_it_was_checked_with(head: Head) -> None:
    """The draws file of a queued job is replaced by a symlink to a 0600 file (root's:
    the daemon, root here, could read it): the job runs on the copy made when it was
    accepted, and the file's content appears nowhere."""
    alice, mallory = head.members.alice, head.members.mallory
    secret = head.root / "secret.json"
    secret.write_text(json.dumps([f"{SECRET}, and the rest of the file"]))
    secret.chmod(0o600)
    mallory.ok(f"cp {head.draws}/h.json {head.draws}/sw.json")
    head.configure(max_parallel_jobs=1)
    d = head.start()
    blocker = head.submit(alice, head.job(100_000))
    assert poll(lambda: head.job_state(d, blocker) == "running", 30), d.log()
    victim = head.submit(mallory, head.job(2, draws=str(head.draws / "sw.json")))
    assert poll(lambda: head.job_state(d, victim) == "queued", 30), d.log()
    mallory.ok(f"ln -sfn {secret} {head.draws}/sw.json")  # re-pointed while the job waits
    head.drop(alice, f"{blocker}.cancel", "")

    assert poll(lambda: head.job_state(d, victim) in ("complete", "failed"), 60), d.log()
    job_dir = head.state / "jobs" / victim
    assert head.job_state(d, victim) == "complete", d.status()["jobs"][victim]
    assert (job_dir / "draws.json").read_bytes() == (head.draws / "h.json").read_bytes()
    record = head.record(victim)
    assert (record.owner, record.owner_uid, record.spec.draws) == (mallory.name, mallory.uid, str(head.draws / "sw.json"))
    shown = subprocess.run([sys.executable, "-m", "winopt", "status", "--all", "--state-dir", str(head.state)],
                           capture_output=True, text=True, timeout=60)
    for where, text in {"state.json": (job_dir / "state.json").read_text(), "status.json": json.dumps(d.status()),
                        "optimizer.log": (job_dir / "optimizer.log").read_text(), "winopt status": shown.stdout,
                        "daemon log": d.log()}.items():
        assert "TOP-SECRET" not in text and "hunter2" not in text, where
    assert d.stop() == 0


def test_a_member_cannot_cancel_another_members_job(head: Head) -> None:
    alice, mallory = head.members.alice, head.members.mallory
    d = head.start()
    job_id = head.submit(alice, head.job(100_000))
    assert poll(lambda: head.job_state(d, job_id) == "running", 30), d.log()
    head.drop(mallory, f"{job_id}.cancel", "")
    refused = poll(lambda: (d.status().get("rejected") or {}).get(f"{job_id}.cancel"), 20)
    assert refused and f"job {job_id} is {alice.name}'s: only its owner can cancel it" in refused["reason"], d.log()
    assert head.job_state(d, job_id) == "running" and not head.record(job_id).cancel_requested
    head.drop(alice, f"{job_id}.cancel", "")
    assert poll(lambda: head.job_state(d, job_id) == "cancelled", 60), d.log()
    assert d.stop() == 0


def test_finding_4_a_draws_file_is_opened_beneath_its_directory_never_through_a_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "draws", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    write_plain_history(root / "sub" / "h.json")
    write_plain_history(outside / "h.json")
    fd, st_ = open_beneath(root, root / "sub" / "h.json")
    os.close(fd)
    assert stat.S_ISREG(st_.st_mode)
    (root / "sub").rename(root / "real")
    (root / "sub").symlink_to(outside)  # swapped in after the path was resolved
    with pytest.raises(UnsafeFile, match="symlink"):
        open_beneath(root, root / "sub" / "h.json")
    (root / "link.json").symlink_to(outside / "h.json")
    with pytest.raises(UnsafeFile, match="symlink"):
        open_beneath(root, root / "link.json")


def test_finding_4_a_job_may_use_only_a_draws_file_its_owner_may_read(head: Head) -> None:
    """A 0600 file of root's in the draws directory, named by a member's job, is refused
    with its mode, never read (the daemon, root here, could read it)."""
    mallory = head.members.mallory
    (head.draws / "private.json").write_text((head.draws / "h.json").read_text())
    (head.draws / "private.json").chmod(0o600)
    d = head.start()
    head.drop(mallory, "private.toml", head.job(1, draws=str(head.draws / "private.json")))
    refused = poll(lambda: (d.status().get("rejected") or {}).get("private.toml"), 20)
    assert refused and f"{mallory.name} may not read it (mode 600, uid 0)" in refused["reason"], d.log()
    assert d.stop() == 0


# ---------------------------------------------------------------- finding 5
def test_finding_5_a_member_cannot_replace_another_members_pending_job(head: Head) -> None:
    alice, mallory = head.members.alice, head.members.mallory
    job_id = head.submit(alice, head.job(3, name="alices"))  # the daemon is not running
    pending = head.spool / f"{job_id}.toml"
    theirs = head.root / "mallorys.toml"
    theirs.write_text(head.job(7, name="mallorys"))
    os.chown(theirs, mallory.uid, -1)
    tries = {
        "overwrite": mallory.sh(f"cat {theirs} > {pending}"),
        "rename over": mallory.sh(f"cp {theirs} {head.spool}/.m.tmp && mv -f {head.spool}/.m.tmp {pending}"),
        "remove": mallory.sh(f"rm -f {pending}"),
        "rename away": mallory.sh(f"mv {pending} {head.spool}/.gone"),
    }
    assert all(done.returncode != 0 for done in tries.values()), {k: v.stderr for k, v in tries.items()}
    mallory.ok(f"rm -f {head.spool}/.m.tmp")  # her own files she may remove
    # the same id under the other suffix, made to look older: it came second all the same
    mallory.ok(f"cp {theirs} {head.spool}/.c.tmp && touch -d 2000-01-01 {head.spool}/.c.tmp"
               f" && mv {head.spool}/.c.tmp {head.spool}/{job_id}.json")

    d = head.start()
    assert poll(lambda: head.job_state(d, job_id) == "complete", 60), d.log()
    record = head.record(job_id)
    assert (record.owner, record.owner_uid, record.spec.name, record.spec.trials) == (alice.name, alice.uid, "alices", 3)
    refused = poll(lambda: (d.status().get("rejected") or {}).get(f"{job_id}.json"), 20)
    assert refused and f"job id {job_id} is claimed by spool/{job_id}.toml, which came first" in refused["reason"]
    assert refused["owner"] == mallory.name
    assert d.stop() == 0


def test_finding_5_a_file_the_group_could_write_or_with_another_name_is_refused(head: Head) -> None:
    """Either way another member (or another name) could change the job after its owner
    dropped it: the daemon refuses it, saying why."""
    alice = head.members.alice
    d = head.start()
    head.drop(alice, "open.toml", head.job(1), mode="664")
    elsewhere = head.root / "alices-own.toml"
    elsewhere.write_text(head.job(1))
    os.chown(elsewhere, alice.uid, -1)
    alice.ok(f"ln {elsewhere} {head.spool}/.linked.tmp && mv {head.spool}/.linked.tmp {head.spool}/linked.toml")
    refused = poll(lambda: {n: e for n, e in (d.status().get("rejected") or {}).items()
                            if n in ("open.toml", "linked.toml")}, 20)
    assert len(refused) == 2, (refused, d.log())
    assert "writable by others (mode 664)" in refused["open.toml"]["reason"]
    assert "it has 2 hard links" in refused["linked.toml"]["reason"]
    assert {e["owner"] for e in refused.values()} == {alice.name}
    assert not (d.status().get("jobs") or {})
    assert d.stop() == 0


# ---------------------------------------------------------------- finding 8 (the draws part)
def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


def test_finding_8_a_huge_draws_file_is_refused_from_its_size_never_parsed(tmp_path: Path) -> None:
    draws, state = tmp_path / "draws", tmp_path / "state"
    draws.mkdir()
    with open(draws / "huge.json", "w") as fh:  # 39 MB of valid draws
        fh.write("[1")
        for _ in range(39):
            fh.write(",123" * 250_000)
        fh.write("]")
    size = (draws / "huge.json").stat().st_size
    config = tmp_path / "daemon.toml"
    config.write_text(f'[jobs]\nallowed_draws_dirs = ["{draws}"]\ngrace = 0.5\n')
    d = DaemonProcess(state, [], args=["--config", str(config)]).start()
    try:
        (tmp_path / "big.toml").write_text(toml_job(draws=str(draws / "huge.json"), trials=1))
        submitted = subprocess.run([sys.executable, "-m", "winopt", "submit", str(tmp_path / "big.toml"),
                                    "--config", str(config), "--state-dir", str(state)],
                                   capture_output=True, text=True, timeout=60)
        assert submitted.returncode == 2 and submitted.stderr.count("\n") == 1, submitted.stderr
        assert "too large for a draws file" in submitted.stderr
        before = vm_hwm_kib(d.pid)
        (state / "spool" / ".big.toml.tmp").write_text(toml_job(draws="huge.json", trials=1))
        (state / "spool" / ".big.toml.tmp").rename(state / "spool" / "big.toml")
        refused = poll(lambda: (d.status().get("rejected") or {}).get("big.toml"), 20)
        assert refused, d.log()
        assert (f"{draws / 'huge.json'}: {size} bytes: too large for a draws file (the most is {16 << 20}); "
                "[jobs] max_draws_bytes") in refused["reason"]
        grew = vm_hwm_kib(d.pid) - before
        assert grew < 20_000, f"the daemon's peak memory grew by {grew} KiB"
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30) == 0
    finally:
        d.kill()


# ---------------------------------------------------------------- what submit drops, the limit's key
def test_submit_drops_a_file_nobody_else_may_change_under_a_name_that_was_never_a_temp(tmp_path: Path) -> None:
    """0640, and the temp name it was written under does not show the id (nobody learns
    the id before the file that claims it is in place)."""
    draws, state = tmp_path / "draws", tmp_path / "state"
    draws.mkdir()
    write_plain_history(draws / "plain.json")
    Spool(state, allowed_draws_dirs=[draws]).ensure_layout()
    (tmp_path / "j.toml").write_text(toml_job(draws=str(draws / "plain.json"), trials=1))
    config = tmp_path / "daemon.toml"
    config.write_text(f'[jobs]\nallowed_draws_dirs = ["{draws}"]\n')
    trace = tmp_path / "trace"
    argv = [sys.executable, "-m", "winopt", "submit", str(tmp_path / "j.toml"), "--config", str(config),
            "--state-dir", str(state)]
    if shutil.which("strace"):  # to see the names it creates in the spool
        argv = ["strace", "-f", "-qq", "-e", "trace=openat", "-o", str(trace), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert stat.S_IMODE((state / "spool" / f"{job_id}.json").stat().st_mode) == 0o640
    if trace.exists():
        created = [ln for ln in trace.read_text().splitlines() if "O_CREAT" in ln and "/spool/" in ln]
        assert created and not any(job_id in ln for ln in created), created


@pytest.mark.parametrize(("value", "ok"), [(1023, False), (1024, True), (2**32, True), (2**32 + 1, False),
                                           ("16M", False), (16 << 20, True)])
def test_max_draws_bytes_is_validated(value: Any, ok: bool) -> None:
    from winopt.daemon.config import ConfigError, parse_config

    raw = {"jobs": {"max_draws_bytes": value}}
    if ok:
        assert parse_config(raw, "d.toml").jobs.max_draws_bytes == value
    else:
        with pytest.raises(ConfigError, match="d.toml: jobs.max_draws_bytes: must be"):
            parse_config(raw, "d.toml")
