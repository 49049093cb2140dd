"""One rsync transfer to one rig: the command line, the run under a wall clock, and what
its exit status means.

The command line keeps the rig copy atomic and the daemon unattended: rsync writes a
temp file beside the target and renames it (never `--inplace`), a broken transfer leaves
its pieces in `.rsync-partial/` instead of over the old file, ssh never prompts
(BatchMode) and only talks to hosts whose key is already known, and every stage has a
timeout: ssh's ConnectTimeout, rsync's `--timeout` for a stalled stream, and a wall clock
around the whole process (its process group is killed) for everything else.

`EXIT_CODES` is the one table that decides retry versus escalate; `fix_for` turns the
failures a person must fix (a path the service may not write, a key the rig does not know)
into the one thing to do, appended to the same error line.
"""

from __future__ import annotations

import enum
import grp
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from winopt.contracts.procs import killpg
from winopt.contracts.errors import UserError
from winopt.handlers.rigs.config import Rig

PARTIAL_DIR = ".rsync-partial"
#: seconds between SIGTERM and SIGKILL when a transfer overruns its wall clock
KILL_GRACE = 2.0


class Outcome(enum.StrEnum):
    """What to do after a transfer."""

    OK = "ok"
    RETRY = "retry"  # transient: try again with backoff
    CONFIG = "config"  # a person must fix something: escalate after a few tries


#: rsync(1) EXIT VALUES (plus ssh's 255): the one place that classifies them.
EXIT_CODES: dict[int, tuple[Outcome, str]] = {
    0: (Outcome.OK, "success"),
    1: (Outcome.CONFIG, "syntax or usage error"),
    2: (Outcome.CONFIG, "protocol incompatibility"),
    3: (Outcome.RETRY, "errors selecting input/output files, dirs"),
    4: (Outcome.CONFIG, "requested action not supported"),
    5: (Outcome.RETRY, "error starting client-server protocol"),
    10: (Outcome.RETRY, "error in socket I/O"),
    11: (Outcome.RETRY, "error in file I/O"),
    12: (Outcome.RETRY, "error in rsync protocol data stream"),
    20: (Outcome.RETRY, "received SIGUSR1 or SIGINT"),
    23: (Outcome.RETRY, "partial transfer due to error"),
    24: (Outcome.RETRY, "partial transfer due to vanished source files"),
    30: (Outcome.RETRY, "timeout in data send/receive"),
    35: (Outcome.RETRY, "timeout waiting for daemon connection"),
    255: (Outcome.RETRY, "ssh connection failed"),
}
#: any code not in the table
OTHER = (Outcome.RETRY, "unexpected exit status")

#: Messages that turn a retry-class failure into a configuration problem: the rig's
#: directory cannot be written, or ssh refuses our key or their host key. Retrying these
#: every few seconds only fills the journal; a person must act.
CONFIG_MESSAGES = (
    "Permission denied",
    "Operation not permitted",
    "Read-only file system",
    "Not a directory",
    "Host key verification failed",
    "you have requested strict checking",
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
)


def classify(returncode: int | None, stderr: str = "") -> tuple[Outcome, str]:
    """(outcome, meaning) for an exit status; `None` is our own wall-clock kill."""
    if returncode is None:
        return Outcome.RETRY, "wall-clock timeout"
    outcome, meaning = EXIT_CODES.get(returncode, OTHER)
    if outcome is Outcome.RETRY and any(m in stderr for m in CONFIG_MESSAGES):
        return Outcome.CONFIG, meaning
    return outcome, meaning


def rsync_binary() -> str:
    """The rsync on PATH, or a clear error (the Debian package is `rsync`)."""
    found = shutil.which("rsync")
    if not found:
        raise UserError("rsync: not found on PATH (install the 'rsync' package)")
    return found


def ssh_command(rig: Rig) -> str:
    """The `-e` value: non-interactive ssh that verifies the host key and cannot hang."""
    parts = [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={int(rig.connect_timeout)}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip
    if rig.known_hosts:
        parts += ["-o", f"UserKnownHostsFile={_quote(str(rig.known_hosts))}"]
    if rig.port:
        parts += ["-p", str(rig.port)]
    if rig.identity_file:
        parts += ["-i", _quote(str(rig.identity_file)), "-o", "IdentitiesOnly=yes"]
    return " ".join(parts)


def _quote(text: str) -> str:
    """rsync splits `-e` on spaces and honours quotes (rigs.py refuses quote characters)."""
    return f'"{text}"' if " " in text else text


def rsync_argv(rig: Rig, source: str | os.PathLike[str], destination: str) -> list[str]:
    """rsync's argv to send one file into the rig directory `destination` (trailing '/')."""
    argv = [
        rsync_binary(),
        # Compare content, not size+mtime: two publishes within one timestamp tick (or one
        # second, rsync's default window) can share size and mtime. Cheap: rsync hashes
        # both sides only when sizes match, and then sends nothing if they agree.
        "--checksum",
        "--times",
        "--mkpath",
        f"--partial-dir={PARTIAL_DIR}",
        f"--timeout={rig.io_timeout}",
        "--out-format=%n",  # one stdout line per file actually sent
    ]
    if rig.bwlimit:
        argv.append(f"--bwlimit={rig.bwlimit}")
    if rig.is_ssh:
        argv += ["-e", ssh_command(rig)]
    return [*argv, "--", os.fspath(source), destination]


@dataclass
class RsyncResult:
    """What one rsync run did."""

    argv: list[str]
    returncode: int | None  # None: killed by our wall clock
    duration: float
    sent: list[str] = field(default_factory=list)
    last_line: str = ""  # last stderr line, as rsync left it
    error: str = ""  # the most telling stderr line, for status and the journal
    outcome: Outcome = Outcome.OK
    meaning: str = ""
    fix: str = ""  # what a person does about it (`fix_for`), or ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def describe(self) -> str:
        """One line for a status field: code, meaning and the telling stderr line."""
        code = "timeout" if self.returncode is None else f"exit {self.returncode}"
        text = f"{code} ({self.meaning}): {self.error}" if self.error else f"{code} ({self.meaning})"
        return f"{text}; to fix: {self.fix}" if self.fix else text


def run_rsync(
    argv: Sequence[str],
    *,
    timeout: float,
    started: Callable[[subprocess.Popen], None] | None = None,
) -> RsyncResult:
    """Run rsync in its own process group under a wall clock; never raises for its failure.

    `started(proc)` lets the caller register the process so a stop can kill it. Where
    util-linux's setpriv exists the child gets PDEATHSIG=KILL, so a daemon killed with -9
    does not leave transfers running behind it."""
    argv = [*_deathsig_prefix(), *argv]
    begin = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        process_group=0,
    )
    if started:
        started(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        out, err = _kill_group(proc)
        code = None
        err += f"\nwall-clock timeout: killed after {timeout:g} s"
    return _result(list(argv), code, time.monotonic() - begin, out, err)


def _deathsig_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def _kill_group(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM the transfer's process group (rsync and its ssh), SIGKILL after a grace."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        killpg(proc, sig)
        try:
            return proc.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return "", ""  # pragma: no cover - communicate(timeout=None) returns


def _result(argv: list[str], code: int | None, duration: float, out: str, err: str) -> RsyncResult:
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    outcome, meaning = classify(code, err)
    return RsyncResult(
        argv=argv,
        returncode=code,
        duration=duration,
        sent=[line for line in out.splitlines() if line.strip()],
        last_line=lines[-1] if lines else "",
        error=_telling_line(lines),
        outcome=outcome,
        meaning=meaning,
    )


def _telling_line(lines: list[str]) -> str:
    """The first cause rather than rsync's closing summary ("rsync error: ... (code N)")."""
    for line in lines:
        if not line.startswith(("rsync error:", "Warning:")):
            return line
    return lines[-1] if lines else ""


def send_file(
    rig: Rig,
    source: str | os.PathLike[str],
    run: str,
    *,
    started: Callable[[subprocess.Popen], None] | None = None,
) -> RsyncResult:
    """Send `source` into `run`'s directory on `rig` (temp-then-rename on the rig)."""
    argv = rsync_argv(rig, Path(source), rig.destination(run))
    return with_fix(rig, run_rsync(argv, timeout=rig.transfer_timeout, started=started))


def with_fix(rig: Rig, result: RsyncResult) -> RsyncResult:
    """`result` with its `fix` filled in for `rig` (see `fix_for`)."""
    if not result.ok:
        result.fix = fix_for(rig, result.error)
    return result


def fix_for(rig: Rig, error: str, *, unit: str | None = None) -> str:
    """What a person does about a transfer that failed with the stderr line `error`, as one
    clause ('' when it is nothing a person must fix). `unit` is the systemd service this
    process runs in (found from /proc/self/cgroup when not given): under it, a read-only
    local path is one the unit's ReadWritePaths= does not list, which a drop-in and a
    restart fix (a reload does not change the service's mounts)."""
    user, group = _me()
    if rig.is_ssh:
        login = f"{rig.user}@{rig.host}" if rig.user else rig.host
        if "Host key verification failed" in error or "REMOTE HOST IDENTIFICATION" in error:
            known = rig.known_hosts or f"{_home()}/.ssh/known_hosts"
            port = f"-p {rig.port} " if rig.port else ""
            return f"check the rig's host key and add it for user {user}: ssh-keyscan {port}{rig.host} >> {known}"
        if "Permission denied (publickey" in error or "Permission denied, please try again" in error:
            key = f"{rig.identity_file}.pub" if rig.identity_file else f"{_home()}/.ssh/id_ed25519.pub"
            return f"add user {user}'s public key ({key}) to {login}'s ~/.ssh/authorized_keys"
        if "Read-only file system" in error:
            return f"{rig.path} on {rig.host} is on a read-only file system: give the rig a writable target"
        if "Permission denied" in error:
            return f"let {login} write {rig.path} on {rig.host} (chown it to {rig.user or 'that user'} there)"
        return ""
    path = rig.path.rstrip("/") or "/"
    if "Read-only file system" in error:
        unit = unit if unit is not None else running_unit()
        if unit:
            return (f"the service writes only where ReadWritePaths= lets it: install -d -o {user} -g {group} "
                    f"{path}, add ReadWritePaths={path} in a drop-in in /etc/systemd/system/{unit}.d/, then "
                    f"systemctl daemon-reload && systemctl restart {unit.removesuffix('.service')} "
                    "(a reload does not apply it)")
        return f"{path} is on a read-only file system: give the rig a writable target"
    if "Permission denied" in error or "Operation not permitted" in error:
        return f"let user {user} write {path}: chown -R {user}:{group} {path}"
    return ""


def running_unit() -> str:
    """The systemd service this process runs in ('' outside one): the last part of its
    cgroup path, when systemd started it (INVOCATION_ID)."""
    if not os.environ.get("INVOCATION_ID"):
        return ""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        name = line.rpartition("/")[2]
        if name.endswith(".service"):
            return name
    return ""


def _me() -> tuple[str, str]:
    """This process's user and group names (the service's: winopt)."""
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    try:
        group = grp.getgrgid(os.getegid()).gr_name
    except KeyError:
        group = str(os.getegid())
    return user, group


def _home() -> str:
    return os.environ.get("HOME") or os.path.expanduser("~")
