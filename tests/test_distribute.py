"""Distribution to rigs with the real rsync binary, real sshd rigs (rigs.sh network
namespaces) and real processes: every publish arrives whole, one rig down never holds up
another, a broken rig escalates, and a kill -9 mid-transfer heals on the next start."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rigs_support import (
    SshRigs,
    alive,
    descendants,
    publish,
    read_rig_copy,
    read_rig_npz,
    rsync_report,
    temp_file_in,
    wait_until,
)
from winopt.cli import main
from winopt.contracts import publish_atomic, publish_json, sha256_file
from winopt.contracts.schemas import HOLDOUT_HISTORY_NAME, NPZ_META_NAME, NPZ_NAME, TRAIN_HISTORY_NAME
from winopt.contracts.errors import UserError
from winopt.handlers.rigs.distributor import Distributor, RetryPolicy
from winopt.handlers.rigs.config import Rig, rig_from_dict
from winopt.handlers.rigs.rsync import EXIT_CODES, Outcome, classify, rsync_binary, run_rsync

FAST = RetryPolicy(base=0.2, cap=2.0, config_tries=3)


# -- helpers ----------------------------------------------------------------------------


def submit(dist: Distributor, run: str, run_dir: Path, sha: str | None = None, **kw: Any) -> None:
    dist.submit(run, run_dir / NPZ_NAME, run_dir / NPZ_META_NAME, sha, **kw)


def all_synced(run: str, sha: str, rigs: list[str]) -> Callable[[dict], bool]:
    def check(snap: dict) -> bool:
        states = snap.get(run, {})
        return all(states.get(r, {}).get("state") == "synced" and states[r]["sha256"] == sha for r in rigs)

    return check


def local_rig(name: str, directory: Path, **extra: Any) -> Rig:
    return rig_from_dict(name, {"target": str(directory), **extra})


HISTORIES = (TRAIN_HISTORY_NAME, HOLDOUT_HISTORY_NAME)


def publish_histories(run_dir: Path, version: int, draws: int = 20_000) -> None:
    """The run's train/holdout histories as the optimizer publishes them; the first value
    is `version`, so a reader can tell which publish it sees (big enough that a torn copy
    would be caught)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    values = [version] + [(version * 7 + i) % 1000 for i in range(draws - 1)]
    cut = int(0.8 * draws)
    publish_json(run_dir / TRAIN_HISTORY_NAME, values[:cut])
    publish_json(run_dir / HOLDOUT_HISTORY_NAME, [version] + values[cut + 1 :])


def histories_arrived(run_dir: Path, copy: Path) -> bool:
    """Both history files of the run are on the rig, byte for byte."""
    return all((copy / name).read_bytes() == (run_dir / name).read_bytes() for name in HISTORIES)


# -- the exit-code table and the wall clock ----------------------------------------------


def test_one_table_classifies_exit_codes() -> None:
    assert classify(0)[0] is Outcome.OK
    for code in (23, 24, 10, 12, 30, 35, 255):
        assert classify(code)[0] is Outcome.RETRY, code
    for code in (1, 2, 4):
        assert classify(code)[0] is Outcome.CONFIG, code
    assert classify(99) == (Outcome.RETRY, "unexpected exit status")
    assert classify(None)[0] is Outcome.RETRY  # our own wall-clock kill
    # a retry-class code whose message says a person must act becomes a config problem
    assert classify(23, 'mkstemp "/r/.x" failed: Permission denied (13)')[0] is Outcome.CONFIG
    assert classify(255, "Host key verification failed.")[0] is Outcome.CONFIG
    assert classify(255, "ssh: connect to host 10.0.0.1 port 22: Connection refused")[0] is Outcome.RETRY
    assert all(meaning for _, meaning in EXIT_CODES.values())


def test_backoff_grows_with_jitter_and_never_passes_the_cap() -> None:
    policy, rng = RetryPolicy(base=1.0, cap=30.0, jitter=0.5), random.Random(1)
    delays = [policy.delay(n, rng) for n in range(1, 12)]
    assert all(d <= 30.0 for d in delays)
    assert all(d >= 0.5 * min(30.0, 2 ** (n - 1)) for n, d in enumerate(delays, 1))
    assert delays[-1] >= 15.0 and delays[0] <= 1.0
    assert len({round(policy.delay(3, rng), 6) for _ in range(20)}) > 1  # jitter


def test_wall_clock_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    procs: list[subprocess.Popen] = []
    # the "remote shell" never answers: only the wall clock can end this transfer
    argv = [rsync_binary(), "-e", "sh -c \"sleep 60\"", "--", str(source), "nohost:/x/"]
    result = run_rsync(argv, timeout=0.5, started=procs.append)
    assert result.returncode is None and result.outcome is Outcome.RETRY
    assert "wall-clock timeout" in result.error and result.duration < 5

    def group_gone() -> bool:
        try:
            os.killpg(procs[0].pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(group_gone, 5, "rsync and its `sleep` to be gone")


# -- local-directory rigs ------------------------------------------------------------------


def test_local_rigs_get_every_publish_and_readers_never_see_a_torn_copy(tmp_path: Path) -> None:
    run_dir, rigs_dir = tmp_path / "run", tmp_path / "rigs"
    # A transfer that stalls (once in CI, one rsync of 400 sat idle for 25 s) is what the
    # rig's clocks are for: short ones here, so such a stall is killed and sent again
    # well inside the test's deadline instead of failing it.
    clocks = {"transfer_timeout": 8, "io_timeout": 4}
    rigs = [local_rig("a", rigs_dir / "a", **clocks), local_rig("b", rigs_dir / "b", **clocks)]
    copies = [rigs_dir / "a" / "r1", rigs_dir / "b" / "r1"]
    reads, errors, stop = [0], [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for copy in copies:
                try:
                    meta_version, npz_version = read_rig_copy(copy)
                except FileNotFoundError:
                    continue  # before the first sync
                except Exception as exc:  # noqa: BLE001 - any failure is a torn read
                    errors.append(f"{copy}: {exc!r}")
                    continue
                if npz_version < meta_version:
                    errors.append(f"{copy}: meta {meta_version} arrived before NPZ {npz_version}")
                reads[0] += 1

    dist = Distributor(rigs, policy=FAST)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(1, 101):
            sha = publish(run_dir, version)  # same size every time: mtime must tell them apart
            submit(dist, "r1", run_dir, sha)
            assert dist.wait_for(all_synced("r1", sha, ["a", "b"]), 60), (dist.snapshot(), rsync_report())
            for copy in copies:
                assert sha256_file(copy / NPZ_NAME) == sha, f"version {version} missing on {copy}"
    finally:
        stop.set()
        thread.join()
        assert dist.stop(5)
    assert errors == []
    assert reads[0] > 0
    assert (copies[0] / NPZ_META_NAME).read_bytes() == (run_dir / NPZ_META_NAME).read_bytes()


def test_the_histories_travel_with_the_npz_and_old_runs_send_without_them(tmp_path: Path) -> None:
    """SPEC §3: train/holdout histories beside the NPZ reach every rig with it, once: an
    unchanged history is not sent again. A run without them (an old run) still syncs."""
    run_dir, old_dir = tmp_path / "run", tmp_path / "old"
    rigs = [local_rig("a", tmp_path / "a"), local_rig("b", tmp_path / "b")]
    dist = Distributor(rigs, policy=FAST)
    try:
        publish_histories(run_dir, 1)
        sha = publish(run_dir, 1)
        submit(dist, "r1", run_dir, sha)
        old_sha = publish(old_dir, 5)
        submit(dist, "old", old_dir, old_sha)
        assert dist.wait_for(lambda s: all_synced("r1", sha, ["a", "b"])(s) and all_synced("old", old_sha, ["a", "b"])(s),
                             20), dist.snapshot()
        for rig in ("a", "b"):
            copy = tmp_path / rig / "r1"
            assert histories_arrived(run_dir, copy) and read_rig_copy(copy) == (1, 1)
            assert sorted(dist.snapshot()["r1"][rig]["last_sent"]) == sorted([NPZ_NAME, NPZ_META_NAME, *HISTORIES])
            assert sorted(p.name for p in (tmp_path / rig / "old").iterdir()) == sorted([NPZ_NAME, NPZ_META_NAME])

        sha = publish(run_dir, 2)  # a new best: the histories are unchanged
        submit(dist, "r1", run_dir, sha)
        assert dist.wait_for(all_synced("r1", sha, ["a", "b"]), 20), dist.snapshot()
        assert sorted(dist.snapshot()["r1"]["a"]["last_sent"]) == sorted([NPZ_NAME, NPZ_META_NAME])
        assert read_rig_copy(tmp_path / "a" / "r1") == (2, 2)
    finally:
        assert dist.stop(5)


def test_histories_arrive_whole_and_before_their_meta(tmp_path: Path) -> None:
    """A reader on the rig never sees a torn history, and a meta it sees never comes from a
    publish newer than the histories beside it (they go in the NPZ's rsync, before it)."""
    run_dir, copy = tmp_path / "run", tmp_path / "a" / "r1"
    dist = Distributor([local_rig("a", tmp_path / "a", transfer_timeout=8, io_timeout=4)], policy=FAST)
    reads, errors, stop = [0], [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                meta_version = json.loads((copy / NPZ_META_NAME).read_text())["version"]
                versions = [json.loads((copy / name).read_bytes())[0] for name in HISTORIES]
            except FileNotFoundError:
                continue  # before the first sync
            except Exception as exc:  # noqa: BLE001 - any failure is a torn read
                errors.append(repr(exc))
                continue
            if min(versions) < meta_version:
                errors.append(f"meta {meta_version} arrived before histories {versions}")
            reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(1, 31):
            publish_histories(run_dir, version)
            sha = publish(run_dir, version)
            submit(dist, "r1", run_dir, sha)
            assert dist.wait_for(all_synced("r1", sha, ["a"]), 60), (dist.snapshot(), rsync_report())
            assert histories_arrived(run_dir, copy)
    finally:
        stop.set()
        thread.join()
        assert dist.stop(5)
    assert errors == [] and reads[0] > 0


def test_start_check_is_cheap_when_rigs_are_up_to_date(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rigs = [local_rig("a", tmp_path / "a"), local_rig("b", tmp_path / "b")]
    sha = publish(run_dir, 1)
    first = Distributor(rigs)
    submit(first, "r1", run_dir, sha)
    assert first.wait_settled(20) and first.stop(5)
    inode = (tmp_path / "a" / "r1" / NPZ_NAME).stat().st_ino

    fresh = Distributor(rigs)  # a daemon restart: check every rig against the newest NPZ
    submit(fresh, "r1", run_dir)  # sha256 computed when not given
    assert fresh.wait_for(all_synced("r1", sha, ["a", "b"]), 20)
    snap = fresh.snapshot()["r1"]
    assert fresh.stop(5)
    assert snap["a"]["last_sent"] == [] and snap["b"]["last_sent"] == []
    assert (tmp_path / "a" / "r1" / NPZ_NAME).stat().st_ino == inode  # not rewritten


def test_same_size_and_mtime_but_new_content_still_arrives(tmp_path: Path) -> None:
    run_dir, rig_dir = tmp_path / "run", tmp_path / "a" / "r1"
    run_dir.mkdir()
    npz, meta = run_dir / NPZ_NAME, run_dir / NPZ_META_NAME
    dist = Distributor([local_rig("a", tmp_path / "a")], policy=FAST)
    try:
        for version in (1, 2):
            publish_atomic(npz, lambda fh: fh.write(random.Random(version).randbytes(4096)))
            publish_json(meta, {"version": version})
            os.utime(npz, ns=(10**18, 10**18))  # same size, same mtime: only content differs
            os.utime(meta, ns=(10**18, 10**18))
            sha = sha256_file(npz)
            dist.submit("r1", npz, meta, sha)
            assert dist.wait_for(all_synced("r1", sha, ["a"]), 20)
            assert sha256_file(rig_dir / NPZ_NAME) == sha
            assert json.loads((rig_dir / NPZ_META_NAME).read_text())["version"] == version
    finally:
        assert dist.stop(5)


def test_only_the_newest_version_is_pending(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    slow = local_rig("slow", tmp_path / "slow", bwlimit=1000)  # ~1.5 s per version
    dist = Distributor([slow], policy=FAST)
    try:
        submit(dist, "r1", run_dir, publish(run_dir, 1, megabytes=1.5))
        assert dist.wait_for(lambda s: s["r1"]["slow"]["in_flight"], 10)
        for version in range(2, 7):
            newest = publish(run_dir, version, megabytes=1.5)
            submit(dist, "r1", run_dir, newest)
        assert dist.wait_for(all_synced("r1", newest, ["slow"]), 30), dist.snapshot()
        transfers = dist.snapshot()["r1"]["slow"]["transfers"]
    finally:
        assert dist.stop(5)
    assert transfers <= 3, f"{transfers} transfers for 6 versions: old versions were queued"
    assert read_rig_copy(tmp_path / "slow" / "r1") == (6, 6)


@pytest.mark.parametrize("how", ["under_a_regular_file", "immutable_directory"])
def test_unwritable_rig_escalates_and_others_are_unaffected(tmp_path: Path, how: str) -> None:
    run_dir = tmp_path / "run"
    if how == "under_a_regular_file":
        (tmp_path / "plain").write_text("a file, not a directory\n")
        bad, code = local_rig("bad", tmp_path / "plain" / "rigs"), 11  # mkdir: Not a directory
    else:
        (tmp_path / "frozen").mkdir()
        if subprocess.run(["chattr", "+i", str(tmp_path / "frozen")], capture_output=True).returncode:
            pytest.skip("chattr +i is not supported on this filesystem")
        bad, code = local_rig("bad", tmp_path / "frozen", layout="flat", run="r1"), 23  # mkstemp: EPERM
    good = [local_rig("a", tmp_path / "a"), local_rig("b", tmp_path / "b")]
    dist = Distributor([*good, bad], policy=FAST)
    try:
        sha = publish(run_dir, 1)
        submit(dist, "r1", run_dir, sha)
        assert dist.wait_for(lambda s: s["r1"]["bad"]["state"] == "failed", 20), dist.snapshot()
        snap = dist.snapshot()["r1"]
    finally:
        assert dist.stop(5)
        subprocess.run(["chattr", "-i", str(tmp_path / "frozen")], capture_output=True)
    assert all_synced("r1", sha, ["a", "b"])({"r1": snap})
    assert snap["bad"]["attempts"] == FAST.config_tries and snap["bad"]["last_exit"] == code
    assert any(m in snap["bad"]["last_error"] for m in ("Not a directory", "Operation not permitted"))
    assert snap["bad"]["next_try"] is not None  # failed rigs are still re-tried, once per cap


def test_stop_kills_a_transfer_in_flight_and_leaves_the_rig_copy_whole(tmp_path: Path) -> None:
    run_dir, rig_dir = tmp_path / "run", tmp_path / "slow" / "r1"
    before = descendants(os.getpid())  # the session's own children (an sshd restarted by a rig test)
    dist = Distributor([local_rig("slow", tmp_path / "slow", bwlimit=300)])
    submit(dist, "r1", run_dir, publish(run_dir, 1, megabytes=3))  # ~10 s at 300 KiB/s
    wait_until(lambda: temp_file_in(rig_dir), 10, "the transfer to start")
    transfers = descendants(os.getpid()) - before
    assert transfers, "no rsync running"
    begin = time.monotonic()
    assert dist.stop(timeout=0.3)
    assert time.monotonic() - begin < 5
    assert not (rig_dir / NPZ_NAME).exists()  # no partial file under the real name
    # rsync's own forked receiver got the same SIGTERM; it may take a moment to exit
    wait_until(lambda: not any(alive(pid) for pid in transfers | (descendants(os.getpid()) - before)), 5,
               "the transfer's processes to end")


def test_subsets_flat_rigs_and_reloaded_rigs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    flat = local_rig("legacy", tmp_path / "legacy", layout="flat", run="old")
    dist = Distributor([local_rig("a", tmp_path / "a"), flat], policy=FAST)
    try:
        sha = publish(run_dir, 1)
        with pytest.raises(UserError, match=r"unknown rig\(s\) nope"):
            submit(dist, "new", run_dir, sha, rigs=["a", "nope"])
        with pytest.raises(UserError, match="flat and receives only run old"):
            submit(dist, "new", run_dir, sha, rigs=["legacy"])
        submit(dist, "new", run_dir, sha)  # default rigs: the flat one is not among them
        submit(dist, "old", run_dir, sha)
        assert dist.wait_settled(20)
        assert sorted(dist.snapshot()["new"]) == ["a"]
        assert sha256_file(tmp_path / "legacy" / NPZ_NAME) == sha  # flat: straight into TARGET
        dist.update_rigs([local_rig("a", tmp_path / "a"), flat, local_rig("c", tmp_path / "c")])
        assert dist.wait_for(all_synced("new", sha, ["a", "c"]), 20)  # a new rig gets every run
        dist.update_rigs([local_rig("c", tmp_path / "c2")])  # c moved: it is sent again
        assert dist.wait_for(all_synced("new", sha, ["c"]), 20)
        assert set(dist.snapshot()["new"]) == {"c"}
        assert sha256_file(tmp_path / "c2" / "new" / NPZ_NAME) == sha
        dist.resync("new")
        assert dist.wait_for(lambda s: s["new"]["c"]["transfers"] == 3 and not s["new"]["c"]["in_flight"], 20)
        assert dist.snapshot()["new"]["c"]["last_sent"] == []  # resync of an up-to-date rig: nothing sent
    finally:
        assert dist.stop(5)


def test_on_change_reports_states_and_survives_a_failing_callback(tmp_path: Path) -> None:
    seen: list[tuple[str, str, str]] = []

    def callback(run: str, rig: str, state: dict) -> None:
        seen.append((run, rig, state["state"]))
        raise RuntimeError("a buggy status writer")

    run_dir = tmp_path / "run"
    dist = Distributor([local_rig("a", tmp_path / "a")], on_change=callback)
    try:
        sha = publish(run_dir, 1)
        submit(dist, "r1", run_dir, sha)
        assert dist.wait_for(all_synced("r1", sha, ["a"]), 20)
        sha = publish(run_dir, 2)
        submit(dist, "r1", run_dir, sha)  # the worker survived the callback's exceptions
        assert dist.wait_for(all_synced("r1", sha, ["a"]), 20)
    finally:
        assert dist.stop(5)
    assert ("r1", "a", "pending") in seen and seen.count(("r1", "a", "synced")) >= 2


def test_sync_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "job-1"
    publish_histories(run_dir, 3)
    sha = publish(run_dir, 3)
    rigs_file = tmp_path / "rigs.toml"
    rigs_file.write_text(f'[rigs.b]\ntarget = "{tmp_path / "b"}"\n')
    assert main(["sync", str(run_dir), "--rig", f"a={tmp_path / 'a'}", "--rigs", str(rigs_file), "--json"]) == 0
    states = json.loads(capsys.readouterr().out)
    assert {r: s["sha256"] for r, s in states.items()} == {"a": sha, "b": sha}
    assert read_rig_copy(tmp_path / "a" / "job-1") == (3, 3)
    assert histories_arrived(run_dir, tmp_path / "a" / "job-1") and histories_arrived(run_dir, tmp_path / "b" / "job-1")

    (tmp_path / "plain").write_text("")
    assert main(["sync", str(run_dir), "--rig", f"x={tmp_path / 'plain' / 'd'}", "--timeout", "3"]) == 1
    assert "failed" in capsys.readouterr().out
    assert main(["sync", str(run_dir), "--rig", "a=relative/dir"]) == 2
    assert capsys.readouterr().err.strip() == "winopt: error: rigs[a].target: path 'relative/dir' must be absolute"
    assert main(["sync", str(tmp_path / "empty"), "--rig", f"a={tmp_path}"]) == 2
    assert f"{tmp_path / 'empty' / NPZ_NAME}: no such file" in capsys.readouterr().err


# -- ssh rigs (rigs.sh) --------------------------------------------------------------------


def test_ssh_rigs_one_down_the_other_stays_synced_then_it_converges(ssh_rigs: SshRigs, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rigs = [ssh_rigs.rig(1, "down-up"), ssh_rigs.rig(2, "down-up")]
    dist = Distributor(rigs, policy=FAST)
    try:
        publish_histories(run_dir, 1)
        sha1 = publish(run_dir, 1)
        submit(dist, "r1", run_dir, sha1)
        assert dist.wait_for(all_synced("r1", sha1, ["ssh1", "ssh2"]), 30), dist.snapshot()
        for i in (1, 2):
            assert read_rig_copy(ssh_rigs.data(i, "down-up") / "r1") == (1, 1)
            assert histories_arrived(run_dir, ssh_rigs.data(i, "down-up") / "r1")  # one rsync, over ssh

        ssh_rigs.stop_sshd(1)
        sha2 = publish(run_dir, 2)
        submit(dist, "r1", run_dir, sha2)

        def rig1_retrying(snap: dict) -> bool:
            return snap["r1"]["ssh1"]["state"] == "retrying" and snap["r1"]["ssh1"]["attempts"] >= 2

        assert dist.wait_for(lambda s: all_synced("r1", sha2, ["ssh2"])(s) and rig1_retrying(s), 30)
        down = dist.snapshot()["r1"]["ssh1"]
        # rsync exits 255 or 12 for a refused ssh connection, whichever of its ends notices first
        assert "Connection refused" in down["last_error"] and down["last_exit"] in (12, 255)
        assert down["sha256"] == sha1 and down["next_try"] is not None
        assert read_rig_copy(ssh_rigs.data(1, "down-up") / "r1") == (1, 1)  # old copy intact

        ssh_rigs.start_sshd(1)
        back = time.monotonic()
        assert dist.wait_for(all_synced("r1", sha2, ["ssh1", "ssh2"]), FAST.cap + 20), dist.snapshot()
        took = time.monotonic() - back
    finally:
        assert dist.stop(5)
        if not ssh_rigs.listening(1):
            ssh_rigs.start_sshd(1)
    # the next try comes at most one cap after the rig is back, plus one transfer
    assert took <= FAST.cap + 5, f"converged {took:.1f} s after the rig came back"
    assert read_rig_copy(ssh_rigs.data(1, "down-up") / "r1") == (2, 2)


def test_misconfigured_ssh_rigs_escalate_and_others_are_unaffected(ssh_rigs: SshRigs, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    ssh_rigs.data(2, "bad").mkdir(parents=True)
    (ssh_rigs.data(2, "bad") / "plain").write_text("a file\n")
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    rigs = [
        ssh_rigs.rig(1, "ok"),
        ssh_rigs.rig(2, "bad/plain/under", name="unwritable"),
        ssh_rigs.rig(2, "ok", name="unknown-key", known_hosts=str(empty_known_hosts)),
    ]
    dist = Distributor(rigs, policy=FAST)
    try:
        sha = publish(run_dir, 1)
        submit(dist, "r1", run_dir, sha)
        assert dist.wait_for(
            lambda s: all(s["r1"][r]["state"] == "failed" for r in ("unwritable", "unknown-key")), 60
        ), dist.snapshot()
        snap = dist.snapshot()["r1"]
    finally:
        assert dist.stop(5)
    assert snap["ssh1"]["state"] == "synced" and snap["ssh1"]["sha256"] == sha
    assert "Not a directory" in snap["unwritable"]["last_error"]
    unverified = snap["unknown-key"]["last_error"]
    assert "strict checking" in unverified or "Host key verification failed" in unverified
    assert not (ssh_rigs.data(2, "ok") / "r1").exists()  # an unverified host got nothing


def _kill_9_rigs(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict[str, dict], dict[str, Path]]:
    """Rig tables (slow) and where each rig's copy of run r1 lands: 2 local, 2 ssh if possible."""
    tables = {n: {"target": str(tmp_path / n), "bwlimit": 2000} for n in ("local1", "local2")}
    copies = {n: tmp_path / n / "r1" for n in tables}
    try:
        ssh: SshRigs = request.getfixturevalue("ssh_rigs")
    except pytest.skip.Exception:
        return tables, copies
    for i in (1, 2):
        rig = ssh.rig(i, tmp_path.name)  # the rigs live for the session: a directory per test
        tables[rig.name] = {
            "target": rig.target, "known_hosts": str(rig.known_hosts),
            "identity_file": str(rig.identity_file), "bwlimit": 2000,
        }  # fmt: skip
        copies[rig.name] = ssh.data(i, tmp_path.name) / "r1"
    return tables, copies


def _kill_9_round(tmp_path: Path, tables: dict, copies: dict[str, Path], version: int, extra: float) -> None:
    """`winopt sync` of a new 8 MB version, SIGKILLed `extra` s after every rig's transfer
    started; then a fresh Distributor must bring every rig to the (even newer) version."""
    run_dir, rigs_file = tmp_path / "run", tmp_path / "rigs.toml"
    lines = []
    for name, table in tables.items():  # JSON strings and numbers are valid TOML values
        lines += [f"[rigs.{name}]", *(f"{key} = {json.dumps(value)}" for key, value in table.items())]
    rigs_file.write_text("\n".join(lines) + "\n")
    publish(run_dir, version, megabytes=8)  # ~4 s per rig at 2000 KiB/s
    proc = subprocess.Popen(
        [sys.executable, "-m", "winopt", "sync", str(run_dir), "--run", "r1", "--rigs", str(rigs_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: all(temp_file_in(c) for c in copies.values()), 30, "every transfer to start")
        time.sleep(extra)  # not synchronisation: a chosen moment to kill at
        children = descendants(proc.pid)
        assert children or extra > 0, "no rsync running under winopt sync"
    finally:
        proc.kill()
        proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in children), 10, "orphaned rsyncs to die (PDEATHSIG)")
    if version == 1 and extra == 0:  # killed as the transfers began: nothing landed yet
        assert not any((copy / NPZ_NAME).exists() for copy in copies.values())
    for copy in copies.values():
        if (copy / NPZ_META_NAME).exists():  # an older complete copy, or this one: never torn
            meta_version, npz_version = read_rig_copy(copy)
            assert meta_version <= npz_version <= version, (copy, meta_version, npz_version, version, extra)
        elif (copy / NPZ_NAME).exists():  # the very first transfer, killed between NPZ and meta
            assert read_rig_npz(copy) == version == 1, (copy, version, extra)
        # neither: killed before the first NPZ landed (the meta never lands before it)

    newest_version = version + 1
    newest = publish(run_dir, newest_version, megabytes=8)
    fast = {n: rig_from_dict(n, {k: v for k, v in t.items() if k != "bwlimit"}) for n, t in tables.items()}
    fresh = Distributor(fast, policy=FAST)
    try:
        submit(fresh, "r1", run_dir)
        assert fresh.wait_for(all_synced("r1", newest, list(fast)), 60), fresh.snapshot()
    finally:
        assert fresh.stop(5)
    for copy in copies.values():
        assert hashlib.sha256((copy / NPZ_NAME).read_bytes()).hexdigest() == newest
        assert read_rig_copy(copy) == (newest_version, newest_version)


def test_kill_9_mid_transfer_then_a_fresh_distributor_converges(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    tables, copies = _kill_9_rigs(tmp_path, request)
    _kill_9_round(tmp_path, tables, copies, version=1, extra=0.0)


@pytest.mark.stress
def test_stress_kill_9_at_random_moments(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    tables, copies = _kill_9_rigs(tmp_path, request)
    rng = random.Random(os.getpid())
    for round_ in range(6):  # kill early, mid-NPZ, between NPZ and meta, after: all must heal
        _kill_9_round(tmp_path, tables, copies, version=2 * round_ + 1, extra=rng.uniform(0.0, 4.5))


def test_a_transfer_that_cannot_start_is_a_retried_failure_not_a_dead_rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rsync gone from PATH after start (a package upgrade, a broken PATH): the rig's
    worker must record a failure and keep serving, not die with the entry in flight."""
    run_dir = tmp_path / "run"
    dist = Distributor([local_rig("a", tmp_path / "a")], policy=FAST)
    try:
        sha = publish(run_dir, 1)
        monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
        submit(dist, "r1", run_dir, sha)
        assert dist.wait_for(lambda s: s["r1"]["a"]["attempts"] >= 1 and not s["r1"]["a"]["in_flight"], 10), \
            dist.snapshot()
        assert "rsync" in dist.snapshot()["r1"]["a"]["last_error"]
        monkeypatch.undo()  # rsync is back: the same worker converges
        assert dist.wait_for(all_synced("r1", sha, ["a"]), 20), dist.snapshot()
    finally:
        assert dist.stop(5)
