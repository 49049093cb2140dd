"""winopt-daemon.service under a real systemd (SPEC §6, issue 7).

The unit's `systemd-analyze security` exposure is checked on the host. Everything else
runs in a throw-away booted systemd (`sdbox.sh`: its own pid, mount and network namespaces
over an overlay of this machine's root, so nothing reaches the host): `make install` from
a wheelhouse built here (the box has no network), then start/READY, groups, reload, a
group member's job converted and rsynced to a local and an ssh rig, kill -9 and the
watchdog, stop and uninstall, each read back through systemctl, /proc and the journal,
so the hardening is shown to allow what the daemon does. The wheelhouse is built with the
pip cache off, as a new host builds it; the README's local-rig recipe runs verbatim. The box tests run in the stress
pass (two or three minutes); they share one box, in order.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from units_support import exposure, offline_exposure
from daemon_support import poll
from sdbox_support import until

REPO = Path(__file__).resolve().parents[1]
UNIT_FILE = REPO / "systemd" / "winopt-daemon.service"


def find_sdbox() -> Path:
    """sdbox.sh: $WINOPT_SDBOX, else shared/tools/ beside this checkout, else beside the
    checkout this one was cloned from (a fresh clone elsewhere, as CI makes)."""
    if os.environ.get("WINOPT_SDBOX"):
        return Path(os.environ["WINOPT_SDBOX"])
    beside = REPO.parent / "shared" / "tools" / "sdbox.sh"
    if beside.is_file():
        return beside
    origin = subprocess.run(["git", "-C", str(REPO), "remote", "get-url", "origin"],
                            capture_output=True, text=True).stdout.strip()
    return Path(origin).parent / "shared" / "tools" / "sdbox.sh" if origin.startswith("/") else beside


SDBOX = find_sdbox()
MAX_EXPOSURE = 2.5

# paths inside the box
SRC = "/usr/local/src/winopt"  # the repository, bound read-only: install writes nothing there
WHEELS = "/srv/wheelhouse"
INSTALL = f"make -C {SRC} --no-print-directory install WHEELHOUSE={WHEELS}"
UNINSTALL = f"make -C {SRC} --no-print-directory uninstall"
UNIT = "winopt-daemon.service"
STATE = "/var/lib/winopt"
CONFIG = "/etc/winopt/daemon.toml"
DROPIN_DIR = f"/etc/systemd/system/{UNIT}.d"
RUN = f"{STATE}/runs/r1"  # a watched run directory (under the state dir: writable)
RIG_DIR = "/srv/winopt-rig"  # a local-directory rig, writable through a drop-in
DRAWS = f"{STATE}/draws/planted_java_lcg.json"  # in the default allowed draws directory
PLANTED = json.loads((REPO / "samples" / "planted_java_lcg.truth.json").read_text())
GOOD_CONFIG = f'''watch = ["{RUN}"]
debounce = 0.2

[rigs.local]
target = "{RIG_DIR}/"
'''
RIG_SSH_PORT = 2222  # the ssh rig's sshd, on the box's own loopback
# a job that takes seconds: long enough to be killed or stopped halfway
LONG_TRIALS, LONG_SEEDS = 10, 20_000_000

F = TypeVar("F", bound=Callable[..., Any])


def in_box(test: F) -> F:
    """A test that needs the booted box: the stress pass, marker `systemd`."""
    return pytest.mark.systemd(pytest.mark.stress(test))


# ---------------------------------------------------------------- the box
@dataclass
class Box:
    """A booted sdbox and the few questions the tests ask it."""

    dir: Path

    def sh(self, script: str, *, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `script` with bash inside the box, as root."""
        proc = subprocess.run(
            [str(SDBOX), "exec", str(self.dir), "--", "bash", "-c", script],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"in the box: {script}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def out(self, script: str) -> str:
        return self.sh(script).stdout.strip()

    def show(self, *props: str) -> dict[str, str]:
        """`systemctl show` properties of the unit."""
        text = self.out(f"systemctl show {UNIT} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in text.splitlines())

    def main_pid(self) -> int:
        return int(self.show("MainPID")["MainPID"])

    def running(self) -> dict[str, str] | None:
        """The unit's properties when it is active with a live main process, else None."""
        props = self.show("ActiveState", "SubState", "MainPID", "NRestarts", "StatusText")
        ok = props["ActiveState"] == "active" and props["SubState"] == "running" and props["MainPID"] != "0"
        return props if ok else None

    def status(self) -> dict[str, Any]:
        """The daemon's status.json."""
        return json.loads(self.out(f"cat {STATE}/status.json"))

    def cursor(self) -> str:
        """The journal's position now: `journal(after=...)` reads only what comes next."""
        return json.loads(self.out("journalctl -n 1 -o json --no-pager"))["__CURSOR"]

    def journal(self, after: str) -> list[dict[str, Any]]:
        """The unit's journal entries (its own and systemd's about it) after `after`.

        `--cursor` and dropping that one entry, because journalctl 252's `--after-cursor`
        also skips the first entry that matches `-u` when the cursor's own entry does not."""
        text = self.out(f"journalctl -u {UNIT} -o json --no-pager --cursor='{after}'")
        entries = (json.loads(line) for line in text.splitlines())
        return [e for e in entries if e["__CURSOR"] != after]

    def wait_journal(self, after: str, match: Callable[[dict[str, Any]], bool], what: str,
                     timeout: float = 30) -> dict[str, Any]:
        """The first entry after `after` for which `match` holds (waiting for it)."""
        found = poll(lambda: next((e for e in self.journal(after) if match(e)), None), timeout, 0.2)
        assert found, f"no journal entry for {what}:\n{self.story(after)}"
        return found

    def story(self, after: str = "") -> str:
        """The unit's journal as text, for failure messages."""
        since = f"--cursor='{after}'" if after else ""
        return self.sh(f"journalctl -u {UNIT} --no-pager -o short-monotonic {since} | tail -n 60",
                       check=False).stdout

    def wait_restarted(self, old_pid: int, timeout: float = 30) -> dict[str, str]:
        """Wait until systemd runs a new main process; its properties."""
        props = poll(lambda: (p := self.running()) and int(p["MainPID"]) != old_pid and p, timeout, 0.1)
        assert props, f"no new main process after {old_pid}:\n{self.story()}"
        return props


def message(entry: dict[str, Any]) -> str:
    """MESSAGE as text (the journal gives bytes-like values as lists of ints)."""
    value = entry.get("MESSAGE", "")
    return bytes(value).decode(errors="replace") if isinstance(value, list) else str(value)


def _why_no_box() -> str | None:
    """Why a box cannot be booted here, or None."""
    if os.geteuid() != 0:
        return "needs root: sdbox.sh boots systemd in new namespaces"
    for tool in ("unshare", "nsenter", "setpriv", "findmnt"):
        if not shutil.which(tool):
            return f"needs {tool} (util-linux)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs"
    probe = subprocess.run(["unshare", "--mount", "--pid", "--net", "--fork", "true"],
                           capture_output=True, text=True)
    if probe.returncode:
        return f"cannot create namespaces here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    reason = _why_no_box()
    if reason:
        pytest.skip(reason)
    assert SDBOX.is_file(), f"{SDBOX} is missing (set WINOPT_SDBOX to sdbox.sh)"
    base = tmp_path_factory.mktemp("service")
    wheelhouse = base / "wheelhouse"
    # with the pip cache off, as on a new host: a wheel cached by an earlier build must not
    # hide a build that fails from scratch (systemd-python's did, issue 12)
    made = subprocess.run(
        ["make", "-C", str(REPO), "--no-print-directory", "wheelhouse", f"WHEELHOUSE={wheelhouse}"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PIP_NO_CACHE_DIR": "1"},
    )  # fmt: skip
    assert made.returncode == 0, f"make wheelhouse failed:\n{made.stdout}{made.stderr}"
    directory = base / "box"
    up = subprocess.run(
        [str(SDBOX), "up", str(directory), "--bind-ro", f"{wheelhouse}:{WHEELS}", "--bind-ro", f"{REPO}:{SRC}"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert up.returncode == 0, f"sdbox.sh up failed:\n{up.stderr}"
    booted = Box(directory)
    try:
        yield booted
    finally:  # the box's whole journal stays beside it, for whoever reads a failure
        (base / "journal.txt").write_text(booted.sh("journalctl --no-pager", check=False).stdout)
        subprocess.run([str(SDBOX), "down", str(directory), "--timeout", "30"], capture_output=True, timeout=120)


def write_config(box: Box, text: str) -> None:
    """Replace the daemon's config, keeping its owner and mode (0640 root:winopt)."""
    box.sh(f"cat > {CONFIG} <<'EOF'\n{text}EOF")


def job_file(name: str, trials: int, seed_count: int) -> str:
    """A spool job sieving the bundled sample around its planted seed (fixed window; the
    seed is planted in every draw, so any window that fits finds it)."""
    return f'''name = "{name}"
draws = "{DRAWS}"
trials = {trials}
prng = "{PLANTED['prng']}"
strategy = "random"
seed_start = {PLANTED['seed'] - 1000}
seed_count = {seed_count}
window_size = 8
offset = {PLANTED['draws'] // 4}
skip_min = 0
skip_max = 5
forward_threshold = 0.9
reverse_threshold = 0.9
time_of_day = "all"
'''


def submit(box: Box, user: str, text: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`winopt submit` run by `user` on a job file in their home directory."""
    path = f"/home/{user}/job.toml"
    box.sh(f"runuser -u {user} -- tee {path} >/dev/null <<'EOF'\n{text}EOF")
    return box.sh(f"cd /home/{user} && runuser -u {user} -- winopt submit {path}", check=check)


def job_state(box: Box, job_id: str) -> str | None:
    """The job's state in status.json."""
    return box.status().get("jobs", {}).get(job_id, {}).get("state")


def snapshot(box: Box, job_id: str) -> dict[str, Any]:
    """The job's optimal_window_config.json ({} before its first write)."""
    text = box.sh(f"cat {STATE}/jobs/{job_id}/optimal_window_config.json", check=False).stdout
    return json.loads(text) if text else {}


def halfway(box: Box, job_id: str) -> dict[str, Any]:
    """Wait until the job's optimizer has finished a trial and has more to go; its snapshot."""
    snap = poll(lambda: (s := snapshot(box, job_id)).get("completed_trials", 0) >= 1 and s, 120, 0.1)
    assert snap, box.story()
    assert snap["status"] == "in_progress" and snap["completed_trials"] < snap["total_trials"], snap
    return snap


def wait_complete(box: Box, job_id: str, trials: int, timeout: float = 180) -> dict[str, Any]:
    """Wait for the job to complete; its final snapshot, with exactly `trials` trials."""
    assert poll(lambda: job_state(box, job_id) == "complete", timeout, 0.3), (
        f"{box.status().get('jobs', {}).get(job_id)}\n{box.story()}")
    snap = snapshot(box, job_id)
    assert snap["status"] == "complete" and snap["completed_trials"] == trials, snap
    return snap


# ---------------------------------------------------------------- host: the unit file
def test_unit_security_exposure_is_at_most_2_5() -> None:
    score, report = offline_exposure(UNIT_FILE)
    print(f"\nsystemd-analyze security --offline=true {UNIT_FILE.name}: exposure {score}")
    assert score <= MAX_EXPOSURE, report


# ---------------------------------------------------------------- box: install .. uninstall
@in_box
def test_install_twice_keeps_the_config_and_the_unit_verifies(box: Box) -> None:
    box.sh(INSTALL)
    box.sh(f"echo '# an operator was here' >> {CONFIG}")
    again = box.sh(INSTALL)  # an upgrade: same result, config untouched
    assert "start it with: systemctl enable --now winopt-daemon" in again.stdout
    assert box.out(f"tail -n 1 {CONFIG}") == "# an operator was here"

    assert box.out("winopt --version").startswith("winopt ")
    # the reference an installed host has (issue 12, item 6): the job format, man pages, completion
    assert box.out("winopt submit --example").startswith("# A winopt spool job")
    assert box.out("readlink -f $(man -w winopt-status)") == "/usr/local/share/man/man1/winopt-status.1"
    assert "--wide" in box.out("MANWIDTH=80 man winopt-status 2>/dev/null | col -b")
    assert box.out("bash -c 'source /usr/share/bash-completion/completions/winopt && complete -p winopt'") == \
        "complete -o bashdefault -F _shtab_winopt winopt"
    assert box.out("readlink -f /opt/winopt/bin/python") == box.out("readlink -f /usr/bin/python3")
    assert box.out("getent passwd winopt").split(":")[5:] == [STATE, "/usr/sbin/nologin"]
    modes = box.out(f"stat -c '%n %a %U %G' {STATE} {STATE}/spool {STATE}/accepting {STATE}/rejected "
                    f"{STATE}/draws /etc/winopt {CONFIG}")
    assert modes.splitlines() == [
        f"{STATE} 750 winopt winopt",
        f"{STATE}/spool 3770 winopt winopt",  # a drop box: members remove only their own files
        f"{STATE}/accepting 700 winopt winopt",
        f"{STATE}/rejected 750 winopt winopt",
        f"{STATE}/draws 3770 winopt winopt",
        "/etc/winopt 755 root winopt",
        f"{CONFIG} 640 root winopt",
    ]

    verify = box.sh(f"systemd-analyze verify /etc/systemd/system/{UNIT}", check=False)
    assert verify.returncode == 0 and "winopt" not in verify.stdout + verify.stderr, verify.stderr
    security = box.sh(f"systemd-analyze security --no-pager {UNIT}", check=False)
    score = exposure(security.stdout + security.stderr)
    print(f"\ninstalled unit, systemd-analyze security: exposure {score}")
    assert score <= MAX_EXPOSURE


@in_box
def test_start_returns_after_ready_and_runs_hardened_as_winopt(box: Box) -> None:
    # as the README tells an operator: a local rig directory made writable by a drop-in
    box.sh(f"install -d -o winopt -g winopt {RIG_DIR} {DROPIN_DIR}"
           f" && printf '[Service]\\nReadWritePaths={RIG_DIR}\\n' > {DROPIN_DIR}/10-rig.conf"
           " && systemctl daemon-reload")
    box.sh(f"systemctl start {UNIT}")
    # Type=notify: start returns once READY=1 arrived, with the STATUS= sent beside it
    props = box.running()
    assert props, box.story()
    assert re.match(r"\d+ runs \(\d+ with errors\), \d+ conversions", props["StatusText"]), props
    pid = int(props["MainPID"])
    assert poll(lambda: box.status()["daemon"].get("state") == "running")
    assert box.status()["daemon"]["pid"] == pid

    uid, gid = box.out("id -u winopt"), box.out("id -g winopt")
    proc_status = dict(
        line.split(":", 1) for line in box.out(f"cat /proc/{pid}/status").splitlines() if ":" in line
    )
    assert proc_status["Uid"].split() == [uid] * 4 and proc_status["Gid"].split() == [gid] * 4
    assert proc_status["NoNewPrivs"].strip() == "1"
    assert proc_status["Seccomp"].strip() == "2"  # the system call filter
    assert int(proc_status["CapEff"], 16) == 0 and int(proc_status["CapBnd"], 16) == 0
    cgroup = box.out(f"systemctl show -P ControlGroup {UNIT}")
    users = box.out(f"ps -o user= -p $(paste -sd, /sys/fs/cgroup{cgroup}/cgroup.procs)").split()
    assert users and set(users) == {"winopt"}


@in_box
def test_group_winopt_can_use_the_spool_others_cannot(box: Box) -> None:
    box.sh("id alice >/dev/null 2>&1 || useradd -m -G winopt alice; id bob >/dev/null 2>&1 || useradd -m bob;"
           " id carol >/dev/null 2>&1 || useradd -m -G winopt carol")
    wrote = box.sh(f"runuser -u alice -- sh -c 'echo x > {STATE}/spool/.alice.tmp'", check=False)
    assert wrote.returncode == 0, wrote.stderr
    assert box.out(f"stat -c '%U %G' {STATE}/spool/.alice.tmp") == "alice winopt"  # setgid spool
    # a drop box: another member can neither remove nor rename it (sticky spool)
    for attempt in (f"rm -f {STATE}/spool/.alice.tmp", f"mv {STATE}/spool/.alice.tmp {STATE}/spool/.carol.tmp"):
        refused = box.sh(f"runuser -u carol -- {attempt}", check=False)
        assert refused.returncode != 0 and "Operation not permitted" in refused.stderr, (attempt, refused.stderr)
    for private in ("accepting", "rejected", "jobs"):  # what the daemon keeps, it alone writes
        denied = box.sh(f"runuser -u carol -- touch {STATE}/{private}/x", check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, (private, denied.stderr)
    box.sh(f"runuser -u alice -- rm {STATE}/spool/.alice.tmp")
    denied = box.sh(f"runuser -u bob -- sh -c 'echo x > {STATE}/spool/.bob.tmp'", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert box.sh(f"test -e {STATE}/spool/.bob.tmp", check=False).returncode == 1

    # the status is the group's to read; an outsider gets one line, not a traceback
    shown = box.sh("runuser -u alice -- winopt status --json", check=False)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["daemon"]["state"] == "running"
    # ... and so is the daemon's story, which the journal keeps from them (issue 12, item 3)
    assert box.out(f"stat -c '%a %U %G' {STATE}/daemon.jsonl") == "640 winopt winopt"
    story = box.sh("runuser -u alice -- winopt logs -n 0", check=False)
    assert story.returncode == 0 and "ready: watching" in story.stdout, story.stderr
    refused = box.sh("runuser -u bob -- winopt status", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr == (f"winopt: error: {CONFIG}: permission denied: ask an administrator to add you to "
                              "group winopt (sudo usermod -aG winopt bob), then log in again\n")


@in_box
def test_reload_applies_a_good_config_and_keeps_it_over_a_bad_one(box: Box) -> None:
    pid = box.main_pid()
    box.sh(f"runuser -u winopt -- mkdir -p {RUN}")
    write_config(box, GOOD_CONFIG)
    mark = box.cursor()
    box.sh(f"systemctl reload {UNIT}")
    box.wait_journal(mark, lambda e: e.get("EVENT") == "reloaded", "the reload")
    assert poll(lambda: box.status()["daemon"]["watching"] == [RUN, f"{STATE}/spool"]), box.status()

    # the new config is live: a real optimizer run written there is converted
    box.sh(
        f"runuser -u winopt -- winopt optimize --draws {SRC}/samples/planted_java_lcg.json --out {RUN}"
        " --trials 2 --seed-start 271000 --seed-count 2000 --window-size 8 --offset 72"
        " --skip-min 0 --skip-max 5 --forward-threshold 0.9 --reverse-threshold 0.9 --time-of-day all"
    )
    survivors_sha = box.out(f"sha256sum {RUN}/bidirectional_survivors.json").split()[0]

    def converted() -> bool:
        meta = box.sh(f"cat {RUN}/bidirectional_survivors_binary.meta.json", check=False).stdout
        return bool(meta) and json.loads(meta)["source"]["sha256"] == survivors_sha

    assert poll(converted, 30, 0.2), box.story(mark)
    assert box.out(f"stat -c %U {RUN}/bidirectional_survivors_binary.npz") == "winopt"

    # a bad config: `systemctl reload` fails with the check's line, and nothing is signalled
    write_config(box, f'watch = ["{RUN}", "{STATE}/runs/r2"]\nbogus_key = 1\n')
    mark = box.cursor()
    reload = box.sh(f"systemctl reload {UNIT}", check=False)
    assert reload.returncode != 0, reload
    checked = box.wait_journal(mark, lambda e: "bogus_key" in message(e), "the config check's error")
    assert message(checked).startswith(f"winopt: error: {CONFIG}: bogus_key: unknown key (known: "), checked
    assert "bogus_key: unknown key" in box.out(f"systemctl status {UNIT} --no-pager -n 10 || true")
    assert not any(e.get("EVENT") in ("reload", "reload_failed", "reloaded") for e in box.journal(mark))
    assert box.running() and box.main_pid() == pid
    assert box.status()["daemon"]["watching"] == [RUN, f"{STATE}/spool"]
    # a SIGHUP that comes anyway (a file changed after the check): the daemon refuses it too
    box.sh(f"systemctl kill -s HUP --kill-whom=main {UNIT}")
    failed = box.wait_journal(mark, lambda e: e.get("EVENT") == "reload_failed", "the refused SIGHUP")
    assert f"{CONFIG}: bogus_key: unknown key" in message(failed)
    assert int(failed["PRIORITY"]) <= 3  # an error
    assert box.running() and box.main_pid() == pid
    assert box.status()["daemon"]["watching"] == [RUN, f"{STATE}/spool"]
    write_config(box, GOOD_CONFIG)
    box.sh(f"systemctl reload {UNIT}")  # a good file reloads again


@in_box
def test_a_job_from_the_group_completes_is_converted_and_reaches_the_rig(box: Box) -> None:
    box.sh(f"runuser -u alice -- cp {SRC}/samples/planted_java_lcg.json {DRAWS}")
    refused = submit(box, "bob", job_file("bobs", 3, 100_000), check=False)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    mark = box.cursor()
    job_id = submit(box, "alice", job_file("quick", 3, 100_000)).stdout.strip()
    wait_complete(box, job_id, 3)

    # the optimizer child found the planted seed; the daemon converted its survivors
    job_dir = f"{STATE}/jobs/{job_id}"
    found = json.loads(box.out(f"cat {job_dir}/bidirectional_survivors.json"))
    assert any(s["seed"] == PLANTED["seed"] and s["score"] == 1.0 for s in found), found
    survivors_sha = box.out(f"sha256sum {job_dir}/bidirectional_survivors.json").split()[0]

    def meta() -> dict[str, Any] | None:
        text = box.sh(f"cat {job_dir}/bidirectional_survivors_binary.meta.json", check=False).stdout
        doc = json.loads(text) if text else None
        return doc if doc and doc["source"]["sha256"] == survivors_sha else None

    converted = poll(meta, 30, 0.2)
    assert converted, box.story(mark)

    # ...and rsync, run by the hardened service, put the NPZ into the local rig
    rig_npz = f"{RIG_DIR}/{job_id}/bidirectional_survivors_binary.npz"
    synced = lambda: box.sh(f"sha256sum {rig_npz}", check=False).stdout.split()[:1]  # noqa: E731
    assert poll(lambda: synced() == [converted["npz_sha256"]], 60, 0.3), box.story(mark)

    # the journal tells the job's story, each line carrying its JOB_ID
    lines = box.out(f"journalctl -u {UNIT} JOB_ID={job_id} -o json --no-pager").splitlines()
    events = [json.loads(line).get("EVENT") for line in lines]
    for earlier, later in (("job_accepted", "job_started"), ("job_started", "job_complete")):
        assert earlier in events and later in events and events.index(earlier) < events.index(later), events
    assert any(e.get("RIG") == "local" for e in box.journal(mark)), box.story(mark)
    print("\n" + "\n".join(message(e) for e in box.journal(mark)))


@in_box
def test_an_ssh_rig_set_up_as_the_readme_says_gets_every_run(box: Box) -> None:
    # the rig: an sshd on the box's loopback, user rig (unlocked: sshd refuses locked ones)
    box.sh("useradd -m -p '*' rig && install -d -o rig -g rig -m 700 /home/rig/.ssh /home/rig/data"
           " && ssh-keygen -A -q && install -d -m 755 /run/sshd")
    box.sh(f"systemd-run --unit=rig-sshd -q /usr/sbin/sshd -D -e -p {RIG_SSH_PORT}"
           " -o ListenAddress=127.0.0.1 -o UsePAM=no -o PasswordAuthentication=no")
    # the README's steps, as user winopt (runuser standing in for sudo -u)
    as_winopt = "runuser -u winopt --"
    box.sh(f"{as_winopt} mkdir -p -m 700 {STATE}/.ssh"
           f" && {as_winopt} ssh-keygen -q -t ed25519 -N '' -f {STATE}/.ssh/id_ed25519")
    scan = f"ssh-keyscan -p {RIG_SSH_PORT} 127.0.0.1 2>/dev/null"
    assert poll(lambda: box.sh(scan, check=False).stdout.strip(), 20, 0.2), "the rig's sshd never answered"
    box.sh(f"{scan} | {as_winopt} tee -a {STATE}/.ssh/known_hosts >/dev/null")
    box.sh(f"install -o rig -g rig -m 600 {STATE}/.ssh/id_ed25519.pub /home/rig/.ssh/authorized_keys")
    write_config(box, GOOD_CONFIG + f'''
[rigs.remote]
target = "rig@127.0.0.1:/home/rig/data/"
port = {RIG_SSH_PORT}
''')
    mark = box.cursor()
    box.sh(f"systemctl reload {UNIT}")
    try:
        # a rig added by a reload gets every run; rsync over ssh from inside the sandbox
        expected = json.loads(box.out(f"cat {RUN}/bidirectional_survivors_binary.meta.json"))["npz_sha256"]
        copy = "/home/rig/data/r1/bidirectional_survivors_binary.npz"
        arrived = lambda: box.sh(f"sha256sum {copy}", check=False).stdout.split()[:1]  # noqa: E731
        assert poll(lambda: arrived() == [expected], 60, 0.3), box.story(mark)
        assert box.out(f"stat -c %U {copy}") == "rig"
        # the line is logged once the meta follows the NPZ (a second rsync): poll for it
        sent = poll(lambda: [e for e in box.journal(mark) if e.get("RIG") == "remote" and e.get("RUN") == "r1"],
                    30, 0.3)
        assert sent and int(sent[-1]["PRIORITY"]) >= 6, box.story(mark)  # info, not an error
    finally:
        write_config(box, GOOD_CONFIG)
        box.sh(f"systemctl reload {UNIT} && systemctl stop rig-sshd")


def readme_block(holding: str, lang: str = "sh") -> str:
    """The README's `lang` block that holds `holding`, as an operator would paste it."""
    blocks = (REPO / "README.md").read_text().split(f"```{lang}\n")[1:]
    found = [block.split("```", 1)[0] for block in blocks if holding in block.split("```", 1)[0]]
    assert len(found) == 1, f"{len(found)} README blocks hold {holding!r}"
    return found[0]


@in_box
def test_a_local_rig_set_up_as_the_readme_says_gets_every_run(box: Box) -> None:
    recipe = readme_block("ReadWritePaths=")
    target = "/srv/rig-copy"

    def copy_state() -> dict[str, Any]:
        return ((box.status().get("rigs") or {}).get("copy", {}).get("runs") or {}).get("r1") or {}

    # the rig first, as an operator might: the sandbox keeps it read-only, and the error says what to do
    write_config(box, GOOD_CONFIG + f'\n[rigs.copy]\ntarget = "{target}/"\n')
    box.sh(f"systemctl reload {UNIT}")
    try:
        failing = poll(lambda: copy_state().get("last_error"), 30, 0.2)
        assert failing and "Read-only file system (30); to fix: " in failing, box.story()
        assert f"ReadWritePaths={target} in a drop-in" in failing and "systemctl restart winopt-daemon" in failing
        # the README's recipe, verbatim (this box's root needs no sudo); it adds the rig again
        write_config(box, GOOD_CONFIG)
        box.sh('sudo() { "$@"; }\n' + recipe)
        expected = json.loads(box.out(f"cat {RUN}/bidirectional_survivors_binary.meta.json"))["npz_sha256"]
        copy = f"{target}/r1/bidirectional_survivors_binary.npz"
        arrived = lambda: box.sh(f"sha256sum {copy}", check=False).stdout.split()[:1]  # noqa: E731
        assert poll(lambda: arrived() == [expected], 60, 0.3), box.story()
        assert box.out(f"stat -c %U {copy}") == "winopt"
        assert poll(lambda: copy_state().get("state") == "synced", 30, 0.2), copy_state()
        assert box.running()
    finally:
        write_config(box, GOOD_CONFIG)
        box.sh(f"rm -f {DROPIN_DIR}/rig-copy.conf && systemctl daemon-reload && systemctl restart {UNIT}")


@in_box
def test_kill_9_systemd_restarts_the_daemon_and_the_job_completes(box: Box) -> None:
    job_id = submit(box, "alice", job_file("crash", LONG_TRIALS, LONG_SEEDS)).stdout.strip()
    halfway(box, job_id)
    before = box.running()
    assert before, box.story()
    pid, child = int(before["MainPID"]), box.status()["jobs"][job_id]["pid"]
    # the optimizer child runs as winopt under the unit's hardening, which it inherits
    child_status = box.out(f"cat /proc/{child}/status")
    assert re.search(r"^NoNewPrivs:\s+1$", child_status, re.M) and re.search(r"^Seccomp:\s+2$", child_status, re.M)
    assert box.out(f"ps -o user= -p {child}") == "winopt"

    mark = box.cursor()
    box.sh(f"kill -9 {pid}")
    after = box.wait_restarted(pid)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    box.wait_journal(mark, lambda e: "status=9/KILL" in message(e), "the SIGKILL")
    new = int(after["MainPID"])
    assert poll(lambda: box.status()["daemon"].get("pid") == new and box.status()["daemon"]["state"] == "running")
    # systemd killed the rest of the unit with it; the new daemon resumes the job
    wait_complete(box, job_id, LONG_TRIALS)
    assert any(e.get("JOB_ID") == job_id and e.get("EVENT") == "job_resumed" for e in box.journal(mark)), (
        box.story(mark))


@in_box
def test_sigstop_the_watchdog_kills_and_restarts_the_daemon(box: Box) -> None:
    box.sh(f"mkdir -p {DROPIN_DIR} && printf '[Service]\\nWatchdogSec=3s\\n' > {DROPIN_DIR}/50-test-watchdog.conf"
           f" && systemctl daemon-reload && systemctl restart {UNIT}")
    try:
        before = box.running()
        assert before and before.get("StatusText"), box.story()
        pid = int(before["MainPID"])
        # WATCHDOG=1 keeps coming (every 1.5 s): the daemon outlives a whole 3 s period
        box.sh("sleep 4")
        now = box.running()
        assert now and (now["MainPID"], now["NRestarts"]) == (before["MainPID"], before["NRestarts"])
        mark = box.cursor()
        stopped_at = time.monotonic()
        box.sh(f"kill -STOP {pid}")
        after = box.wait_restarted(pid)
        assert time.monotonic() - stopped_at >= 1.5  # pings were 1.5 s apart: not at once
        assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
        box.wait_journal(mark, lambda e: "Watchdog timeout" in message(e), "the watchdog")
    finally:
        box.sh(f"rm -f {DROPIN_DIR}/50-test-watchdog.conf && systemctl daemon-reload && systemctl restart {UNIT}")


@in_box
def test_stop_succeeds_interrupts_the_job_and_start_completes_it(box: Box) -> None:
    assert box.running(), box.story()
    job_id = submit(box, "alice", job_file("stopped", LONG_TRIALS, LONG_SEEDS)).stdout.strip()
    halfway(box, job_id)
    mark = box.cursor()
    box.sh(f"systemctl stop {UNIT}")
    props = box.show("ActiveState", "Result", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    box.wait_journal(mark, lambda e: e.get("EVENT") == "stopped", "the daemon's last words")
    assert box.status()["daemon"]["state"] == "stopped"
    # the child was told (SIGTERM), wrote "interrupted" and ended before the daemon did
    snap = snapshot(box, job_id)
    assert snap["status"] == "interrupted" and snap["completed_trials"] < LONG_TRIALS, snap
    assert job_state(box, job_id) == "interrupted"
    assert box.sh("pgrep -u winopt", check=False).returncode == 1

    box.sh(f"systemctl start {UNIT}")
    wait_complete(box, job_id, LONG_TRIALS)


@in_box
def test_several_machines_as_the_readme_says(box: Box) -> None:
    """README "Several machines" on one box standing in for the head node and a rig:
    PostgreSQL with the role and database of step 1 (the password typed at the prompt),
    the daemon's [optuna] keys of step 3, worker.env and the artifact drop-in of step 4, two
    worker units, one `workers = "rigs"` job: exactly its trials, run by both units, the
    snapshot published and converted by the head node's daemon."""
    password = "s3cret pw"  # a space: the URL and worker.env must survive one
    # step 1 as printed, with the password typed twice at createuser's prompt; for apt-get
    # (the box has no network; make test installed the package) what it does at the end:
    # start the server. No listen_addresses: the rig is this box
    started = "systemctl start postgresql && " + until("runuser -u postgres -- pg_isready -q", 60)
    step1 = readme_block("createuser --pwprompt").replace("apt-get install -y postgresql", started)
    box.sh(f"printf '%s\\n%s\\n' '{password}' '{password}' | bash -euc {shlex.quote(step1)}")
    box.sh("install -d -o winopt -g winopt /srv/winopt/artifacts")  # step 2, the head's export
    step3 = readme_block("[optuna]", lang="toml").replace("PASSWORD", password.replace(" ", "%20"))
    write_config(box, GOOD_CONFIG + step3)
    box.sh(f"systemctl restart {UNIT}")
    # step 4: worker.env as printed (the head is this box), the drop-in `systemctl edit`
    # would make, two instances
    step4 = readme_block("worker.env <<'END'")
    env = step4.split("<<'END'\n", 1)[1].split("END\n", 1)[0]
    env = env.replace("PASSWORD@10.0.0.1", f"{password.replace(' ', '%20')}@localhost")
    box.sh(f"cat > /etc/winopt/worker.env <<'END'\n{env}END")
    assert box.out("stat -c '%a %U %G' /etc/winopt/worker.env") == "640 root winopt"
    box.sh("mkdir -p /etc/systemd/system/winopt-worker@.service.d && printf '[Service]\\n"
           "ReadWritePaths=/srv/winopt/artifacts\\n' > /etc/systemd/system/winopt-worker@."
           "service.d/artifacts.conf && systemctl daemon-reload")
    enable = next(line for line in step4.splitlines() if line.startswith("systemctl enable"))
    box.sh(enable.split("#", 1)[0])
    units = ("winopt-worker@0", "winopt-worker@1")
    try:
        assert box.out("systemctl is-active winopt-worker@0 winopt-worker@1").split() == ["active"] * 2
        assert "s3cret" not in box.out("ps -eo args")  # on no command line
        # both units serving before the study opens, and trials long enough (about 1 s
        # each) that one unit alone could not finish them all before the other's next
        # look at the storage (every 5 s): both then run some
        for unit in units:
            assert poll(lambda u=unit: "serving" in box.out(f"journalctl -u {u} --no-pager"), 60, 0.3), box.story()
        job_id = submit(box, "alice", job_file("shared", 8, 10_000_000) + 'workers = "rigs"\n').stdout.strip()
        snap = wait_complete(box, job_id, 8, timeout=300)
        # the study in PostgreSQL: exactly 8 finished, run by both worker units
        states = box.out(f"runuser -u postgres -- psql -d winopt -tAc \"SELECT t.state, count(*) "
                         f"FROM trials t JOIN studies s USING (study_id) WHERE s.study_name = "
                         f"'{job_id}' GROUP BY t.state\"")
        finished = sum(int(n) for state, n in (line.split("|") for line in states.splitlines())
                       if state in ("COMPLETE", "PRUNED"))
        assert finished == 8, states
        for unit in units:
            told = box.out(f"journalctl -u {unit} --no-pager | grep -c 'study {job_id}: trial .* told'"
                           " || true")
            assert int(told or 0) >= 1, box.out(f"journalctl -u {unit} --no-pager | tail -n 20")
        # the head node published and converted it as any run
        job_dir = f"{STATE}/jobs/{job_id}"
        sha = box.out(f"sha256sum {job_dir}/bidirectional_survivors.json").split()[0]
        assert snap["survivors_sha256"] == sha
        converted = poll(lambda: json.loads(box.sh(
            f"cat {job_dir}/bidirectional_survivors_binary.meta.json", check=False).stdout or "{}"
        ).get("source", {}).get("sha256") == sha, 60, 0.3)
        assert converted, box.story()
    finally:
        box.sh("systemctl disable --now winopt-worker@0 winopt-worker@1", check=False)
        write_config(box, GOOD_CONFIG)
        box.sh(f"systemctl restart {UNIT}")


@in_box
def test_uninstall_twice_keeps_state_config_and_user(box: Box) -> None:
    box.sh(f"systemctl start {UNIT}")
    config = box.out(f"cat {CONFIG}")
    box.sh(UNINSTALL)
    box.sh(UNINSTALL)
    assert box.show("LoadState") == {"LoadState": "not-found"}
    assert box.sh("pgrep -u winopt", check=False).returncode == 1
    for path in ("/opt/winopt", "/usr/local/bin/winopt", f"/etc/systemd/system/{UNIT}",
                 "/etc/sysusers.d/winopt.conf", "/etc/tmpfiles.d/winopt.conf",
                 "/usr/local/share/man/man1/winopt.1", "/usr/local/share/man/man1/winopt-status.1",
                 "/usr/share/bash-completion/completions/winopt"):
        assert box.sh(f"test -e {path} || test -L {path}", check=False).returncode == 1, path
    assert box.out(f"cat {CONFIG}") == config
    assert box.sh(f"test -s {STATE}/status.json && test -d {STATE}/spool && test -s {RUN}/optuna.db",
                  check=False).returncode == 0
    assert box.out("id -un winopt") == "winopt"
