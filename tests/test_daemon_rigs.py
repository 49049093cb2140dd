"""The daemon distributing to rigs, end to end: a real `winopt daemon` process, real inotify,
the real rsync binary into local directories and into sshd rigs (rigs.sh), `winopt sync`
and `winopt status` as a person runs them, signals as systemd sends them."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon_support import REPO, DaemonProcess, npz_source_sha, poll, write_trial
from rigs_support import SshRigs, alive, descendants, publish, wait_until
from sdbox_support import until
from winopt.contracts import sha256_file
from winopt.contracts.schemas import HOLDOUT_HISTORY_NAME, NPZ_META_NAME, NPZ_NAME, TRAIN_HISTORY_NAME
from winopt.daemon.config import ConfigError, DaemonConfig, DistributionConfig, load_config, resolve_config
from winopt.daemon.adapters.rigs import REQUESTS, RigDistribution, read_request, request_name, rig_run_name
from winopt.daemon.status import StatusBook
from winopt.contracts.errors import UserError
from winopt.handlers.rigs.config import KEYS, rig_from_dict
from winopt.optimizer.histories import publish_histories

#: quick retries, so a rig that comes back converges within seconds
FAST = {"retry_base": 0.2, "retry_cap": 2.0}


# ---------------------------------------------------------------- helpers
def write_config(path: Path, watch: list[Path], rigs: dict[str, dict[str, Any]],
                 **distribution: Any) -> Path:
    """A daemon config: these watched runs, these `[rigs.NAME]` tables (JSON values are
    valid TOML values), quick debounce and retries."""
    lines = [f"watch = {json.dumps([str(w) for w in watch])}", "debounce = 0.1", "max_delay = 1.0",
             "[distribution]", *(f"{k} = {json.dumps(v)}" for k, v in {**FAST, **distribution}.items())]
    for name, table in rigs.items():
        lines += [f"[rigs.{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def npz_sha(run: Path) -> str | None:
    """The sha256 of the run's published NPZ, from its meta."""
    try:
        return json.loads((run / NPZ_META_NAME).read_text()).get("npz_sha256")
    except (OSError, ValueError):
        return None


def publish_trial(run: Path, n: int, trial: int) -> str:
    """A new best as the optimizer writes it; returns the sha256 of the NPZ the daemon
    makes of it (once it has)."""
    digest = write_trial(run, n, start=1000 * (trial + 1), trial=trial)
    assert poll(lambda: npz_source_sha(run) == digest), f"{run}: no NPZ of trial {trial}"
    sha = npz_sha(run)
    assert sha
    return sha


def rig_states(d: DaemonProcess, run: str) -> dict[str, dict[str, Any]]:
    """{rig: state} of `run`, from status.json's `rigs` section."""
    rigs = d.status().get("rigs") or {}
    return {rig: (entry.get("runs") or {})[run] for rig, entry in rigs.items() if run in (entry.get("runs") or {})}


def synced(d: DaemonProcess, run: str, sha: str, rigs: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        states = rig_states(d, run)
        return all(states.get(r, {}).get("state") == "synced" and states[r].get("sha256") == sha for r in rigs)

    return check


def copy_shas(directory: Path) -> tuple[str, str] | None:
    """(sha256 of the NPZ, sha256 its meta names) of a rig copy, after loading every array
    as Step 2.5 would (None: no copy yet)."""
    try:
        meta = json.loads((directory / NPZ_META_NAME).read_text())
        with np.load(directory / NPZ_NAME, allow_pickle=False) as npz:
            assert all(npz[name] is not None for name in npz.files)
        return sha256_file(directory / NPZ_NAME), meta["npz_sha256"]
    except FileNotFoundError:
        return None


def copy_sha(directory: Path) -> str | None:
    """The sha256 of a whole rig copy whose meta names its NPZ."""
    shas = copy_shas(directory)
    if shas is None:
        return None
    assert shas[0] == shas[1], f"{directory}: the meta names another NPZ"
    return shas[0]


def transfer_started(directory: Path) -> bool:
    """rsync's temp file for the NPZ (`.NAME.XXXXXX`) is there: a transfer is in flight
    (a small file's data is written at its end, so the size says nothing)."""
    try:
        return any(p.name.startswith(f".{NPZ_NAME}.") for p in directory.iterdir())
    except FileNotFoundError:
        return False


def winopt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winopt", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def transfer_lines(d: DaemonProcess, rig: str, run: str) -> list[float]:
    """The durations of the daemon's one-line-per-transfer log lines for `rig` and `run`."""
    pattern = re.compile(rf"rig {re.escape(rig)}: run {re.escape(run)} (?:sent .+|already up to date) in "
                         r"(\d+\.\d+) s")
    return [float(m.group(1)) for m in pattern.finditer(d.log())]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons on tmp_path/state with a config (killed at the end, whatever happens)."""
    started: list[DaemonProcess] = []

    def start(config: Path, *, args: tuple[str, ...] = (), ready: bool = True) -> DaemonProcess:
        d = DaemonProcess(tmp_path / "state", [], args=["--config", str(config), *args])
        started.append(d)
        return d.start(ready=ready)

    yield start
    for d in started:
        d.kill()


@pytest.fixture
def run1(tmp_path: Path) -> Path:
    run = tmp_path / "run1"
    run.mkdir()
    return run


# ---------------------------------------------------------------- config
def test_distribution_config_is_strict_and_documented(tmp_path: Path) -> None:
    assert load_config(REPO / "etc" / "daemon.toml").distribution == DistributionConfig()
    for bad, problem in [
        ("[distribution]\nretries = 3\n", "distribution.retries: unknown key"),
        ("[distribution]\nmax_parallel = 0\n", "distribution.max_parallel: must be between 1 and 256, got 0"),
        ("[distribution]\nretry_jitter = 1.5\n", "distribution.retry_jitter: must be between 0 and 1"),
        ("[distribution]\nretry_base = 10\nretry_cap = 5\n", "distribution.retry_cap: must be >= retry_base"),
        ('[rigs.a]\ntarget = "rel/dir"\n', "rigs[a].target: path 'rel/dir' must be absolute"),
    ]:
        path = tmp_path / "daemon.toml"
        path.write_text(bad)
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert str(caught.value).startswith(f"{path}: ") and problem in str(caught.value), str(caught.value)
    # the documented [rigs.NAME] keys, uncommented, are all accepted
    text = (REPO / "etc" / "daemon.toml").read_text()
    documented = re.findall(r"^# (\w+) = ", text.partition("# [rigs.rig1]")[2], re.M)
    assert sorted(documented) == sorted(KEYS)
    # --rig adds to the config's rigs; a name the config has already is an error
    path = write_config(tmp_path / "rigs.toml", [], {"a": {"target": str(tmp_path / "a")}})
    config = resolve_config(str(path), rigs=[f"b={tmp_path / 'b'}"])
    assert sorted(config.rigs) == ["a", "b"] and config.rigs["b"].path == str(tmp_path / "b")
    with pytest.raises(ConfigError, match="a rig named 'a' is already defined"):
        resolve_config(str(path), rigs=[f"a={tmp_path}"])
    assert DaemonConfig().rigs == {}


def test_sync_requests_and_rig_names() -> None:
    assert rig_run_name("a/out") == "a-out" and rig_run_name("20250131T235959Z-x-1a2b3c") == "20250131T235959Z-x-1a2b3c"
    assert request_name(None, "ab12") == "sync-all.ab12.sync" and request_name("a/out", "x") == "sync-a-out.x.sync"


def test_bad_sync_requests(tmp_path: Path) -> None:
    empty = tmp_path / "sync-run7.0a1b.sync"
    empty.write_text("")  # `touch` works too: the name says which run
    assert read_request(empty).run == "run7"
    (tmp_path / "sync-all.ff.sync").write_text("")
    assert read_request(tmp_path / "sync-all.ff.sync").run is None
    bad = tmp_path / "sync-x.1.sync"
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match=r"sync-x\.1\.sync: expected"):
        read_request(bad)


def test_job_rig_subsets_odd_run_names_and_forgotten_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """RigDistribution in-process, with a real StatusBook and real rsync: a job's rig list
    is honoured (a rig it names that is gone is skipped, said once), `a/out` lands in
    `a-out/`, and a run the daemon dropped stops being distributed."""
    book = StatusBook(tmp_path / "state")
    (tmp_path / "state").mkdir()
    rigs = {n: rig_from_dict(n, {"target": str(tmp_path / f"rig-{n}")}) for n in ("a", "b")}
    dist = RigDistribution(book, tmp_path / "state", rigs, DistributionConfig(**FAST))
    run_dir = tmp_path / "run"
    sha = publish(run_dir, 1)
    npz, meta = run_dir / NPZ_NAME, run_dir / NPZ_META_NAME

    def rig_runs() -> dict[str, dict[str, Any]]:
        return {rig: entry["runs"] for rig, entry in book.snapshot()["rigs"].items()}

    try:
        for run in ("a/out", "job1"):
            book.update_run(run, kind="watched")
        dist.on_npz("a/out", npz, meta, sha)
        dist.on_npz("job1", npz, meta, sha, ("b", "gone"))
        assert poll(lambda: all(r.get("a/out", {}).get("state") == "synced" for r in rig_runs().values())
                    and rig_runs()["b"].get("job1", {}).get("state") == "synced"), rig_runs()
        assert "job1" not in rig_runs()["a"]  # the job asked for b only
        dist.on_npz("job1", npz, meta, sha, ("b", "gone"))  # the next check: not said again
        assert caplog.text.count("rig(s) gone not configured") == 1
        assert copy_sha(tmp_path / "rig-a" / "a-out") == sha and copy_sha(tmp_path / "rig-b" / "job1") == sha
        assert not (tmp_path / "rig-a" / "job1").exists()

        book.remove_run("job1")
        assert dist.targets() == [REQUESTS]  # a reconcile forgets runs the daemon dropped
        assert "job1" not in rig_runs()["b"] and "job1" not in dist.snapshot()
        dist.on_npz("a/out", npz, meta, sha)  # unchanged: nothing to send again
        assert dist.snapshot()["a/out"]["a"]["transfers"] == 1
    finally:
        assert dist.stop(5)


# ---------------------------------------------------------------- local-directory rigs
def test_every_publish_reaches_both_local_rigs_and_status_shows_each(tmp_path: Path, run1: Path, daemons) -> None:
    (tmp_path / "plain").write_text("a file where the rig's directory should be\n")
    rigs = {"a": {"target": str(tmp_path / "rig-a")}, "b": {"target": str(tmp_path / "rig-b")},
            "bad": {"target": str(tmp_path / "plain" / "rig")}}
    d = daemons(write_config(tmp_path / "daemon.toml", [run1], rigs))
    publish_histories(run1, (list(range(80)), list(range(80, 100))))  # as `winopt optimize` does
    for trial in range(3):
        sha = publish_trial(run1, 60 + trial, trial)
        assert poll(synced(d, "run1", sha, ["a", "b"])), rig_states(d, "run1")  # bad holds no one up
        for rig in ("a", "b"):
            copy = tmp_path / f"rig-{rig}" / "run1"
            assert copy_sha(copy) == sha  # the rig copy loads whole and is this publish
            assert (copy / NPZ_META_NAME).read_bytes() == (run1 / NPZ_META_NAME).read_bytes()
            for name in (TRAIN_HISTORY_NAME, HOLDOUT_HISTORY_NAME):  # SPEC §3: sent with the NPZ
                assert (copy / name).read_bytes() == (run1 / name).read_bytes(), (rig, name)
    states = rig_states(d, "run1")
    assert states["a"]["last_error"] is None and states["a"]["last_success"] and states["a"]["attempts"] == 0
    assert d.status()["rigs"]["a"]["target"] == str(tmp_path / "rig-a")
    # the unwritable rig: classified as a configuration problem and escalated (failed, error line)
    assert poll(lambda: rig_states(d, "run1")["bad"]["state"] == "failed"), rig_states(d, "run1")
    bad = rig_states(d, "run1")["bad"]
    assert "Not a directory" in bad["last_error"] and bad["sha256"] is None
    assert re.search(r"ERROR +rig bad: run run1 failed \(attempt 3\): .*Not a directory", d.log()), d.log()
    # one log line (the journal's MESSAGE) per transfer, with the rig and the duration
    for rig in ("a", "b"):
        durations = transfer_lines(d, rig, "run1")
        assert len(durations) == states[rig]["transfers"] >= 3 and all(t < 30 for t in durations)

    shown = winopt("status", "--state-dir", str(d.state_dir), "--wide")
    assert shown.returncode == 0, shown.stderr
    header, row = [line for line in shown.stdout.splitlines() if line.startswith(("RUN ", "run1 "))]
    assert header.split()[-1] == "RIGS" and row.endswith("2/3 synced, bad failed")
    assert re.search(r"^rig bad: run1 failed \(attempt \d+(, next try [\d:]+)?\): .*Not a directory", shown.stdout,
                     re.M), shown.stdout
    assert d.stop() == 0


def test_winopt_sync_and_sighup_through_the_running_daemon(tmp_path: Path, run1: Path, daemons) -> None:
    config = write_config(tmp_path / "daemon.toml", [run1], {"b": {"target": str(tmp_path / "rig-b")}})
    d = daemons(config, args=("--rig", f"a={tmp_path / 'rig-a'}"))  # --rig adds to the config's
    sha = publish_trial(run1, 70, 0)
    assert poll(synced(d, "run1", sha, ["a", "b"])), rig_states(d, "run1")

    # a rig wiped by hand: only a forced resync notices
    for f in (NPZ_NAME, NPZ_META_NAME):
        (tmp_path / "rig-a" / "run1" / f).unlink()
    out = winopt("sync", "run1", "--state-dir", str(d.state_dir), "--wait", "--timeout", "30")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^a +synced +" + sha[:12], out.stdout, re.M), out.stdout
    assert copy_sha(tmp_path / "rig-a" / "run1") == sha
    assert "sync requested by" in d.log() and not list((d.state_dir / "spool").glob("*.sync"))
    out = winopt("sync", "nope", "--state-dir", str(d.state_dir))
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"winopt: error: no run 'nope' in {d.state_dir}/status.json (runs: run1)"]

    # SIGHUP with a changed rig list: b removed, c added (a, from --rig, stays)
    write_config(config, [run1], {"c": {"target": str(tmp_path / "rig-c")}})
    d.proc.send_signal(signal.SIGHUP)
    assert poll(synced(d, "run1", sha, ["a", "c"])), d.log()
    assert sorted(d.status()["rigs"]) == ["a", "c"] and copy_sha(tmp_path / "rig-c" / "run1") == sha
    assert "rigs reloaded: added c; removed b; changed none" in d.log()
    sha2 = publish_trial(run1, 71, 1)
    assert poll(synced(d, "run1", sha2, ["a", "c"])), rig_states(d, "run1")
    assert copy_sha(tmp_path / "rig-b" / "run1") == sha  # a removed rig gets no more
    assert d.stop() == 0


# ---------------------------------------------------------------- ssh rigs
def test_ssh_rig_down_retries_with_the_error_then_converges(ssh_rigs: SshRigs, tmp_path: Path, run1: Path,
                                                            daemons) -> None:
    sub = tmp_path.name  # the rigs live for the session: a directory per test
    rigs = {"ssh1": ssh_rigs.table(1, sub), "ssh2": ssh_rigs.table(2, sub)}
    d = daemons(write_config(tmp_path / "daemon.toml", [run1], rigs))
    sha1 = publish_trial(run1, 80, 0)
    assert poll(synced(d, "run1", sha1, ["ssh1", "ssh2"]), 30), rig_states(d, "run1")
    try:
        ssh_rigs.stop_sshd(1)
        sha2 = publish_trial(run1, 81, 1)

        def one_down() -> dict | None:
            """ssh1's entry once it waits for its next try (none is set while the rig is
            being tried again, so the entry is taken from the very read that matched)."""
            states = rig_states(d, "run1")
            down = states["ssh1"]
            waiting = down["state"] == "retrying" and down["attempts"] >= 2 and down["next_try"]
            return down if waiting and synced(d, "run1", sha2, ["ssh2"])() else None

        down = poll(one_down, 30)
        assert down, rig_states(d, "run1")
        assert "Connection refused" in down["last_error"] and down["sha256"] == sha1 and down["next_try"]
        assert copy_sha(ssh_rigs.data(1, sub) / "run1") == sha1  # the old copy stays whole
        shown = winopt("status", "--state-dir", str(d.state_dir), "--wide").stdout
        assert "1/2 synced, ssh1 retrying" in shown
        # (no next try while the rig is being tried again)
        assert re.search(r"^rig ssh1: run1 retrying \(attempt \d+(, next try [\d:]+)?\): .*Connection refused",
                         shown, re.M), shown
    finally:
        ssh_rigs.start_sshd(1)
    back = time.monotonic()
    assert poll(synced(d, "run1", sha2, ["ssh1", "ssh2"]), FAST["retry_cap"] + 20), rig_states(d, "run1")
    assert time.monotonic() - back <= FAST["retry_cap"] + 10
    assert copy_sha(ssh_rigs.data(1, sub) / "run1") == sha2
    assert d.stop() == 0


# ---------------------------------------------------------------- signals mid-transfer
def test_kill_9_mid_transfer_then_the_start_check_converges(tmp_path: Path, run1: Path, daemons) -> None:
    rigs = {"fast": {"target": str(tmp_path / "fast")},
            "slow": {"target": str(tmp_path / "slow"), "bwlimit": 4}}  # ~3 s for this NPZ
    config = write_config(tmp_path / "daemon.toml", [run1], rigs)
    d = daemons(config)
    sha = publish_trial(run1, 5000, 0)
    wait_until(lambda: transfer_started(tmp_path / "slow" / "run1"), 20, "the slow transfer to start")
    children = descendants(d.pid)
    assert children, "no rsync under the daemon"
    d.kill()  # SIGKILL
    wait_until(lambda: not any(alive(pid) for pid in children), 10, "the daemon's rsyncs to die with it")
    assert not (tmp_path / "slow" / "run1" / NPZ_NAME).exists()  # nothing torn under the real name

    d2 = daemons(config)  # no new publish: only the start-up check can bring the slow rig up
    assert poll(synced(d2, "run1", sha, ["fast", "slow"]), 30), rig_states(d2, "run1")
    assert d2.counter("conversions") == 0
    assert copy_sha(tmp_path / "slow" / "run1") == sha and copy_sha(tmp_path / "fast" / "run1") == sha
    assert d2.stop() == 0


def test_sigterm_mid_transfer_stops_it_and_exits_0(tmp_path: Path, run1: Path, daemons) -> None:
    rigs = {"slow": {"target": str(tmp_path / "slow"), "bwlimit": 1}}  # ~10 s for this NPZ
    d = daemons(write_config(tmp_path / "daemon.toml", [run1], rigs))
    publish_trial(run1, 2000, 0)
    wait_until(lambda: transfer_started(tmp_path / "slow" / "run1"), 20, "the transfer to start")
    children = descendants(d.pid)
    assert children, "no rsync under the daemon"
    begin = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    assert time.monotonic() - begin < 8, "the daemon waited for the transfer instead of stopping it"
    assert not any(alive(pid) for pid in children)
    assert not (tmp_path / "slow" / "run1" / NPZ_NAME).exists()
    assert re.search(r"rig slow: run run1 transfer stopped after \d+\.\d+ s", d.log()), d.log()
    assert d.status()["daemon"]["state"] == "stopped"


@pytest.mark.stress
def test_stress_kill_9_at_random_moments_then_every_rig_converges(tmp_path: Path, run1: Path, daemons,
                                                                  request: pytest.FixtureRequest) -> None:
    rigs = {"fast": {"target": str(tmp_path / "fast")}, "slow": {"target": str(tmp_path / "slow"), "bwlimit": 4}}
    copies = {name: tmp_path / name / "run1" for name in rigs}
    try:
        ssh: SshRigs | None = request.getfixturevalue("ssh_rigs")
    except pytest.skip.Exception:
        ssh = None
    if ssh is not None:
        for i in (1, 2):
            rigs[f"ssh{i}"] = ssh.table(i, tmp_path.name, bwlimit=4)
            copies[f"ssh{i}"] = ssh.data(i, tmp_path.name) / "run1"
    config = write_config(tmp_path / "daemon.toml", [run1], rigs)
    rng, published = random.Random(os.getpid()), []
    for round_ in range(5):  # kill early, mid-NPZ, between NPZ and meta, after: every rig must heal
        d = daemons(config)
        sha = publish_trial(run1, 5000, round_)
        published.append(sha)
        wait_until(lambda: transfer_started(copies["slow"]), 20, "the slow transfer to start")
        time.sleep(rng.uniform(0.0, 3.5))  # not synchronisation: a chosen moment to kill at
        children = descendants(d.pid)
        d.kill()
        wait_until(lambda: not any(alive(pid) for pid in children), 10, "the daemon's rsyncs to die with it")
        for copy in copies.values():  # absent, or whole, with a meta never newer than its NPZ
            shas = copy_shas(copy)
            assert shas is None or published.index(shas[1]) <= published.index(shas[0]), (copy, shas)
        d2 = daemons(config)
        assert poll(synced(d2, "run1", sha, list(rigs)), 60), rig_states(d2, "run1")
        assert all(copy_sha(copy) == sha for copy in copies.values())
        assert d2.stop() == 0


# ---------------------------------------------------------------- the journal
@pytest.mark.systemd
def test_each_transfer_is_one_journal_entry_with_rig_and_duration(box) -> None:
    """Under a real systemd and journald: the transfer lines carry RIG, RUN and DURATION_S,
    and `systemctl status` (STATUS=) counts the synced rig copies."""
    winopt_bin, python = REPO / ".venv" / "bin" / "winopt", REPO / ".venv" / "bin" / "python"
    unit = "winopt-rigs-test"
    box(f"mkdir -p /srv/t/run1 && systemd-run --unit={unit} -p Type=notify -p NotifyAccess=main {winopt_bin} "
        "daemon --state-dir /srv/t/state --watch /srv/t/run1 --rig a=/srv/t/rig-a --rig b=/srv/t/rig-b")
    box(f"cd {REPO} && PYTHONPATH=tests {python} -c 'from daemon_support import write_trial; "
        "from pathlib import Path; write_trial(Path(\"/srv/t/run1\"), 120)'")
    box(until(" && ".join(f"[ -e /srv/t/rig-{r}/run1/{NPZ_META_NAME} ]" for r in "ab")))

    def entries() -> list[dict[str, Any]]:
        text = box(f"journalctl -u {unit} EVENT=rsync -o json --no-pager")
        return [json.loads(line) for line in text.splitlines()]

    found = poll(lambda: len(entries()) >= 2 and entries())
    assert found, box(f"journalctl -u {unit} --no-pager")
    status = box(until("grep -q synced /srv/t/state/status.json") + " && cat /srv/t/state/status.json")
    rigs = json.loads(status[status.index("{"):])["rigs"]
    for rig in ("a", "b"):
        mine = [e for e in found if e.get("RIG") == rig]
        assert len(mine) == rigs[rig]["runs"]["run1"]["transfers"], found  # one entry per transfer
        for entry in mine:
            assert entry["RUN"] == "run1" and entry["RIG_STATE"] == "synced"
            assert float(entry["DURATION_S"]) >= 0 and entry["SYSLOG_IDENTIFIER"] == "winopt-daemon"
            assert entry["MESSAGE"].startswith(f"rig {rig}: run run1 sent ")
            said = re.search(r" in (\d+\.\d\d) s ", entry["MESSAGE"])  # the line's rounding may differ
            assert said and abs(float(said[1]) - float(entry["DURATION_S"])) <= 0.01, entry
    box(until(f"systemctl show {unit} -p StatusText | grep -q \"rig copies: 2/2 synced\""))  # systemctl status
    box(f"systemctl stop {unit}")
    assert box(f"journalctl -u {unit} EVENT=stopped -o cat --no-pager").strip() == "stopped"
