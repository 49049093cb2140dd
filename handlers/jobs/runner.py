"""Child-process supervision for spool jobs (SPEC §5): at most N `winopt optimize`
children, one per GPU when GPUs are listed, FIFO within priority, never two on one job.

Each child runs with its job directory as `--out` and as working directory, its stdout
and stderr appended to `optimizer.log` there, in a session of its own (so signals meant
for the daemon's terminal do not reach it: the runner stops it on purpose). Its identity
goes to `optimizer.pid` (pid, kernel start time, argv) and the job directory's lock
(`optimizer.pid.lock`, `winopt.contracts.lock_for`) is taken before it starts and handed
to it as an inherited descriptor: the kernel keeps the lock held for as long as either
the runner or the child lives. So after kill -9 of the daemon a busy lock *proves* an
orphan still runs there; `start()` finds it (pid file, checked against /proc cmdline and
start time; else a /proc scan for `--out JOBDIR`), stops it (SIGTERM: it writes
`interrupted`), and resumes the job in a child of its own. Adoption was the alternative;
stopping keeps one code path where every exit has an exit code.

Outcomes: exit 0 with snapshot `complete` → complete; a cancel request → cancelled (the
child got SIGTERM and wrote `interrupted`); `stop()` → the job stays `running` and is
resumed at the next `start()` (its Optuna storage continues the study); a SIGTERM that
winopt did not send (`systemctl stop` signals the whole cgroup) → resumed after
`restart_delay`, at most `max_interrupts` times in a row; a failure on a full disk (the
error says so, or the job's filesystem has no room left) → retried once there is room
again, at most `max_fault_retries` times in a row, after a backoff; anything else →
failed, with the snapshot's error or the log's last line.

Faults must end in a known state. An exit or a start that cannot be recorded (the state
file's write fails: a full disk) leaves the job `running` or `queued` on disk with no
child: it is retried the same way once there is room, and `resume_lost` (every
reconcile) resumes any such job the runner no longer tracks.
"""

from __future__ import annotations

import errno
import heapq
import logging
import os
import select
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout

from winopt.contracts.procs import killpg
from winopt.contracts import lock_for, publish_json
from winopt.contracts.schemas import CONFIG_NAME
from winopt.contracts.snapshot import SnapshotError, read_view
from winopt.contracts.errors import UserError
from winopt.handlers.jobs.jobfile import optimize_argv
from winopt.contracts.state_dir import LOG_FILE, PID_FILE
from winopt.handlers.jobs.store import JobRecord, JobStore
from winopt.handlers.jobs.spool import JobEvent, ScanResult
from winopt.contracts.clock import now_iso

log = logging.getLogger("winopt.jobs")

#: environment the daemon has that a child must not inherit: the notify socket would let
#: a child speak for the daemon to systemd, and the journal stream is not its stdout
DAEMON_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                   "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM")
Command = Callable[[JobRecord, Path], list[str]]
#: seconds between retries of a job whose lock an unknown process holds
BLOCKED_RETRY = 30.0
#: what an error says when the disk was full (SQLite, ENOSPC, EDQUOT as strerror and name)
DISK_FULL_SIGNS = ("database or disk is full", "No space left on device", "Disk quota exceeded",
                   "ENOSPC", "EDQUOT")
#: free bytes a job's filesystem needs before a job that failed on a full disk runs again
MIN_ROOM_BYTES = 1 << 20
#: seconds between two looks at a full disk while a job waits for room
ROOM_POLL = 5.0


def default_command(record: JobRecord, job_dir: Path) -> list[str]:
    """`python -m winopt optimize ... --out JOBDIR` for the job's spec, on the copy of
    its draws file made when it was accepted (never the path a user may re-point)."""
    draws = job_dir / record.draws_file if record.draws_file else None
    return optimize_argv(record.spec, job_dir, draws=draws)


# ---------------------------------------------------------------------------- outcomes


def decide_outcome(rc: int, status: str | None, error: str | None, *, cancel: bool, stopping: bool) -> tuple[str, str]:
    """What a child's exit means for its job: (state, reason).

    state is complete | cancelled | failed, or `running` (stopped with the runner: resume
    at next start) or `interrupted` (signalled from outside: resume soon)."""
    if rc == 0 and status == "complete":
        return "complete", "optimizer finished (exit 0, snapshot complete)"
    if cancel:
        return "cancelled", f"cancelled on request ({describe_exit(rc)}, snapshot {status or 'missing'})"
    if stopping:
        return "running", f"stopped with the daemon ({describe_exit(rc)}); resumes at next start"
    if status == "interrupted":
        return "interrupted", f"interrupted by a signal winopt did not send ({describe_exit(rc)})"
    if rc == 0:
        return "failed", f"optimizer exited 0 but its snapshot status is {status or 'missing'}"
    return "failed", describe_exit(rc) + (f": {error}" if error else "")


def disk_full(error: BaseException | str | None) -> bool:
    """Whether an error (an exception or the text an optimizer left) is a full disk."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return error is not None and any(sign in str(error) for sign in DISK_FULL_SIGNS)


def has_room(path: Path, need: int = MIN_ROOM_BYTES) -> bool:
    """Whether the filesystem of `path` has `need` bytes free for us (True when that
    cannot be told: the job's own start then says what is wrong)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return True
    return st.f_bavail * st.f_frsize >= need


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


def snapshot_state(job_dir: Path) -> tuple[str | None, str | None]:
    """The snapshot's (status, error); (None, None) when there is none yet."""
    try:
        _, snap = read_view(job_dir / CONFIG_NAME)
    except (FileNotFoundError, UserError, SnapshotError):
        return None, None
    return (snap.status if snap.status_given else None), snap.error or None


def last_log_line(job_dir: Path, limit: int = 300) -> str | None:
    """The last non-empty line of the job's log (the optimizer's `winopt: error: ...`)."""
    try:
        with open(job_dir / LOG_FILE, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln and not ln.startswith("===")]
    return lines[-1][:limit] if lines else None


# ---------------------------------------------------------------------------- /proc identity


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat):
    with the pid, an identity that pid reuse cannot fake."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def proc_cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return [part.decode(errors="surrogateescape") for part in raw.split(b"\0")[:-1]]


def runs_job(pid: int, job_dir: Path) -> bool:
    """Whether process `pid` is an optimizer whose `--out` is `job_dir`."""
    argv = proc_cmdline(pid) or []
    target = str(job_dir)
    return any(a == "--out" and b == target for a, b in zip(argv, argv[1:]))


def find_job_processes(job_dir: Path) -> list[int]:
    """Live optimizers of `job_dir`: the pid file's process when /proc confirms it (same
    start time, `--out JOBDIR` in its cmdline), else any process /proc shows with it."""
    try:
        info = orjson.loads((job_dir / PID_FILE).read_bytes())
        pid, started = int(info["pid"]), info.get("start_time")
        if proc_start_time(pid) == started and runs_job(pid, job_dir):
            return [pid]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return [pid for pid in pids if pid != os.getpid() and runs_job(pid, job_dir)]


def terminate(pids: Iterable[int], timeout: float) -> None:
    """SIGTERM each process, wait up to `timeout` for all to exit, SIGKILL the rest.
    Works for processes that are not our children (pidfds: no pid-reuse race)."""
    fds = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        fds.append(fd)
        _pidfd_signal(fd, signal.SIGTERM)
    try:
        alive = _wait_pidfds(fds, timeout)
        for fd in alive:
            _pidfd_signal(fd, signal.SIGKILL)
        _wait_pidfds(alive, 10.0)
    finally:
        for fd in fds:
            os.close(fd)


def _pidfd_signal(fd: int, sig: int) -> None:
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        pass


def _wait_pidfds(fds: list[int], timeout: float) -> list[int]:
    """The pidfds whose process is still alive after up to `timeout` seconds."""
    alive = list(fds)
    deadline = time.monotonic() + timeout
    while alive:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(alive, [], [], left)
        alive = [fd for fd in alive if fd not in ready]
    return alive


# ---------------------------------------------------------------------------- the runner


@dataclass
class _Child:
    job_id: str
    proc: subprocess.Popen[bytes]
    lock: FileLock
    gpu: str | None
    cancelling: bool = False
    killer: threading.Timer | None = None
    #: a `workers = "rigs"` job's `winopt study`: it publishes what the workers do, so it
    #: takes no slot and no GPU of this machine
    publisher: bool = False


class JobRunner:
    """Runs queued jobs as child processes and records every outcome in the job store.

    Thread-safe: `enqueue`, `cancel`, `handle_scan` may be called from any thread; one
    waiter thread per child reports its exit. `on_event(JobEvent)` is called outside the
    runner's lock, from whichever thread made the change."""

    def __init__(
        self,
        store: JobStore,
        *,
        max_parallel_jobs: int = 1,
        gpus: Sequence[int | str] = (),
        on_event: Callable[[JobEvent], None] | None = None,
        stop_timeout: float = 60.0,
        restart_delay: float = 5.0,
        max_interrupts: int = 3,
        max_fault_retries: int = 3,
        fault_retry_base: float = 5.0,
        command: Command = default_command,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if max_parallel_jobs < 1:
            raise ValueError("max_parallel_jobs must be at least 1")
        self.store = store
        self.slots = min(max_parallel_jobs, len(gpus)) if gpus else max_parallel_jobs
        self.on_event = on_event
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.max_interrupts = max_interrupts
        #: a job that failed on a full disk runs again once there is room, after
        #: fault_retry_base * 2**(n-1) seconds, at most max_fault_retries times in a row
        self.max_fault_retries = max_fault_retries
        self.fault_retry_base = fault_retry_base
        self.command = command
        self.base_env = {k: v for k, v in (os.environ if env is None else env).items()
                         if k not in DAEMON_ONLY_ENV}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._free_gpus: list[str] | None = [str(g) for g in gpus] if gpus else None
        self._gpus = {str(g) for g in gpus}
        self._heap: list[tuple[tuple[Any, ...], str]] = []
        self._publishers: set[str] = set()  # queued jobs whose child is a `winopt study`
        self._queued: dict[str, tuple[Any, ...]] = {}
        self._children: dict[str, _Child] = {}
        self._waiters: list[threading.Thread] = []
        self._timers: dict[str, threading.Timer] = {}
        self._pending: list[JobEvent] = []
        self._stopping = False
        #: job -> exits or starts in a row that could not be recorded (kept in memory: the
        #: state file is what could not be written)
        self._unrecorded: dict[str, int] = {}

    # -- public API -----------------------------------------------------------------

    def start(self) -> None:
        """Take over the store after any stop or crash: stop orphaned optimizers, cancel
        jobs whose cancel was requested meanwhile, resume running jobs, queue the rest."""
        with self._lock:
            for record in self.store.jobs():
                if not record.terminal:
                    self._recover(record)
            self._fill()
        self._flush()

    def enqueue(self, job_id: str) -> None:
        """Queue an accepted job (a no-op for one already queued, waiting to be resumed,
        running or finished)."""
        with self._lock:
            if job_id not in self._queued and job_id not in self._timers:
                self._push(self.store.load(job_id))
                self._fill()
        self._flush()

    def cancel(self, job_id: str) -> None:
        """Cancel a job: a queued one ends `cancelled` now, a running one gets SIGTERM
        (and SIGKILL after `stop_timeout`) and ends `cancelled` when it exits."""
        with self._lock:
            try:
                record = self.store.request_cancel(job_id)
            except KeyError:
                return
            child = self._children.get(job_id)
            if child is not None:
                self._signal_cancel(child)
            elif not record.terminal:
                self._queued.pop(job_id, None)
                self._publishers.discard(job_id)
                timer = self._timers.pop(job_id, None)
                if timer:
                    timer.cancel()
                self._finish_record(record, "cancelled", "cancelled on request before it ran")
            self._changed.notify_all()
        self._flush()

    def set_limits(self, max_parallel_jobs: int, gpus: Sequence[int | str] = ()) -> None:
        """Apply new limits (a config reload). More room starts queued jobs now; less
        lets the running children finish (none is stopped for it). A GPU dropped from the
        list is given to no new child; the child using it keeps it until it exits."""
        if max_parallel_jobs < 1:
            raise ValueError("max_parallel_jobs must be at least 1")
        with self._lock:
            self.slots = min(max_parallel_jobs, len(gpus)) if gpus else max_parallel_jobs
            self._gpus = {str(g) for g in gpus}
            busy = {c.gpu for c in self._children.values()}
            self._free_gpus = [str(g) for g in gpus if str(g) not in busy] if gpus else None
            self._fill()
        self._flush()

    def handle_scan(self, result: ScanResult) -> None:
        """Act on a spool scan: report its events, queue what it accepted, cancel what it
        was asked to."""
        with self._lock:
            self._pending.extend(result.events)
        for record in result.accepted:
            self.enqueue(record.id)
        for job_id in result.cancels:
            self.cancel(job_id)
        self._flush()

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM every child, wait (SIGKILL after `timeout`), leave their jobs
        `running` so the next `start()` resumes them. Queued jobs stay queued. A stopped
        runner starts nothing more: the next daemon (or reload) makes a new one."""
        timeout = self.stop_timeout if timeout is None else timeout
        with self._lock:
            self._stopping = True
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            children = list(self._children.values())
            waiters = list(self._waiters)
            for child in children:
                killpg(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("job %s: no exit %.0fs after SIGTERM; SIGKILL", child.job_id, timeout,
                            extra={"JOB_ID": child.job_id, "EVENT": "job_killed"})
                killpg(child.proc, signal.SIGKILL)
        for waiter in waiters:
            waiter.join()
        self._flush()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing runs, waits or is queued; False on timeout (tests, demo)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._children or self._queued or self._timers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def running(self) -> dict[str, int]:
        """Job id -> child pid of every running child."""
        with self._lock:
            return {job_id: c.proc.pid for job_id, c in self._children.items()}

    def queued(self) -> list[str]:
        """Queued job ids in the order they will start."""
        with self._lock:
            return [job_id for _, job_id in sorted(self._heap) if self._queued.get(job_id) is not None]

    def resume_lost(self) -> list[str]:
        """Queue again the jobs the store has as queued or running that no child runs and
        nothing here waits on (an exit or a start that could not be recorded), when their
        disk has room; a job that failed to record `max_fault_retries` times in a row is
        left for the next start. Returns their ids (the daemon calls this at reconciles)."""
        with self._lock:
            if self._stopping:
                return []
            known = {*self._children, *self._queued, *self._timers}
            lost = [r for r in self.store.jobs() if not r.terminal and r.id not in known
                    and self._unrecorded.get(r.id, 0) <= self.max_fault_retries and has_room(self.store.dir(r.id))]
            for record in lost:
                self._emit("recovered", record.id, f"{record.state} on record with no optimizer running; queued again")
                self._recover(record)
            self._fill()
        self._flush()
        return [r.id for r in lost]

    # -- queueing -------------------------------------------------------------------

    def _recover(self, record: JobRecord) -> None:
        if record.state == "running":
            job_dir = self.store.dir(record.id)
            orphans = find_job_processes(job_dir)
            if orphans:
                self._emit("orphan_stopped", record.id, f"stopping optimizer pid {orphans} left by a previous daemon")
                terminate(orphans, self.stop_timeout)
        if record.cancel_requested:
            self._finish_record(record, "cancelled", "cancelled on request while the daemon was down")
        else:
            self._push(record)

    def _push(self, record: JobRecord) -> None:
        """Queue by (resuming first, higher priority first, then acceptance order)."""
        if record.terminal or record.cancel_requested or record.id in self._children:
            return
        rank = (0 if record.state == "running" else 1, -record.priority, record.accepted_ns, record.id)
        self._queued[record.id] = rank
        if record.spec.workers == "rigs":
            self._publishers.add(record.id)
        heapq.heappush(self._heap, (rank, record.id))

    def _room(self) -> bool:
        """A slot (and a GPU, when jobs run on GPUs) for a job that runs its own trials."""
        local = sum(not child.publisher for child in self._children.values())
        return local < self.slots and (self._free_gpus is None or bool(self._free_gpus))

    def _fill(self) -> None:
        """Start queued jobs while there are free slots, in queue order; a `workers =
        "rigs"` job needs none (its trials run on the rigs), so it starts even when the
        local jobs ahead of it wait."""
        waiting: list[tuple[tuple[Any, ...], str]] = []
        while not self._stopping and self._heap:
            rank, job_id = heapq.heappop(self._heap)
            if self._queued.get(job_id) != rank:
                continue  # cancelled or re-queued since
            if job_id not in self._publishers and not self._room():
                waiting.append((rank, job_id))
                if self._publishers.isdisjoint(j for _, j in self._heap):
                    break  # only local jobs left, and no room for them
                continue
            del self._queued[job_id]
            self._publishers.discard(job_id)
            try:
                self._spawn(job_id)
            except Exception as exc:  # one broken job must not stop the others
                if disk_full(exc):  # not the job's fault: it starts once there is room
                    self._not_recorded(job_id, "could not start", exc)
                    continue
                log.exception("job %s: could not start", job_id, extra={"JOB_ID": job_id})
                self._fail_to_start(job_id, f"could not start: {exc}")
        for item in waiting:
            heapq.heappush(self._heap, item)
        self._changed.notify_all()

    def _requeue_later(self, job_id: str, delay: float, *, when_room: bool = False) -> None:
        """Queue `job_id` again after `delay` seconds; `when_room`: not before its disk has
        room (looked at every ROOM_POLL seconds after the delay)."""

        def fire() -> None:
            with self._lock:
                if self._timers.pop(job_id, None) is None or self._stopping:
                    return
                if when_room and not has_room(self.store.dir(job_id)):
                    self._requeue_later(job_id, ROOM_POLL, when_room=True)
                    return
                record = self.store.load(job_id)
                self._push(record)
                self._fill()
            self._flush()

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        self._timers[job_id] = timer
        timer.start()

    # -- children -------------------------------------------------------------------

    def _spawn(self, job_id: str) -> None:
        record = self.store.load(job_id)
        if record.terminal or record.cancel_requested:
            return
        job_dir = self.store.dir(job_id)
        fds: list[int] = []
        lock = lock_for(job_dir / PID_FILE, timeout=0, on_acquired=fds.append, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            delay = max(self.restart_delay, BLOCKED_RETRY)
            self._emit("blocked", job_id, f"another process holds {PID_FILE}.lock; retrying in {delay:g}s")
            self._requeue_later(job_id, delay)
            return
        try:
            self._start_child(record, job_dir, lock, fds[0])
        except BaseException:
            lock.release()
            raise

    def _start_child(self, record: JobRecord, job_dir: Path, lock: FileLock, lock_fd: int) -> None:
        resuming = record.state == "running"
        publisher = record.spec.workers == "rigs"
        gpu = self._free_gpus.pop(0) if self._free_gpus is not None and not publisher else None
        kind = "resumed" if resuming else "started"
        try:
            argv = self.command(record, job_dir)
            env = dict(self.base_env, PYTHONUNBUFFERED="1", WINOPT_JOB_ID=record.id)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            reason = f"attempt {record.attempts + 1}" + (f" on GPU {gpu}" if gpu is not None else "")
            record = self.store.transition(record.id, "running", f"{kind}: {reason}",
                                           attempts=record.attempts + 1, exit_code=None, error=None)
            with open(job_dir / LOG_FILE, "ab") as logfile:  # the child keeps its own copy
                logfile.write(f"=== {now_iso()} {kind} {reason}: {shlex.join(argv)}\n".encode())
                logfile.flush()
                # umask 022: what the optimizer writes in the job directory is the daemon's
                # alone (members of the group read it, none may change it)
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfile,
                                        stderr=subprocess.STDOUT, cwd=job_dir, env=env,
                                        start_new_session=True, pass_fds=(lock_fd,), umask=0o022)
        except BaseException:
            if gpu is not None and self._free_gpus is not None:
                self._free_gpus.insert(0, gpu)
            raise
        child = _Child(record.id, proc, lock, gpu, publisher=publisher)
        self._children[record.id] = child
        waiter = threading.Thread(target=self._wait, args=(child,), name=f"job-{record.id}", daemon=True)
        self._waiters.append(waiter)
        waiter.start()
        self._emit(kind, record.id, f"{reason}, pid {proc.pid}")
        try:
            publish_json(job_dir / PID_FILE, {"pid": proc.pid, "start_time": proc_start_time(proc.pid),
                                              "argv": argv, "started_at": now_iso()})
        except OSError as exc:  # the lock still marks it; start() falls back to a /proc scan
            log.warning("job %s: cannot write %s: %s", record.id, PID_FILE, exc, extra={"JOB_ID": record.id})

    def _wait(self, child: _Child) -> None:
        rc = child.proc.wait()
        with self._lock:
            try:
                self._reap(child, rc)
                self._unrecorded.pop(child.job_id, None)
            except Exception as exc:  # the job stays queued/running on disk: retried below
                self._not_recorded(child.job_id, "could not record its exit", exc)
            finally:
                self._waiters = [w for w in self._waiters if w is not threading.current_thread()]
                self._fill()
        self._flush()

    def _reap(self, child: _Child, rc: int) -> None:
        """Record a child's exit, then free its lock, GPU and slot."""
        if child.killer:
            child.killer.cancel()
        job_dir = self.store.dir(child.job_id)
        try:
            record = self.store.load(child.job_id)
            status, error = snapshot_state(job_dir)
            state, reason = decide_outcome(rc, status, error or last_log_line(job_dir),
                                           cancel=child.cancelling or record.cancel_requested,
                                           stopping=self._stopping)
            self._record_exit(record, rc, state, reason)
        finally:
            (job_dir / PID_FILE).unlink(missing_ok=True)
            child.lock.release()
            del self._children[child.job_id]
            if child.gpu is not None and self._free_gpus is not None and child.gpu in self._gpus:
                self._free_gpus.append(child.gpu)

    def _not_recorded(self, job_id: str, what: str, exc: BaseException) -> None:
        """A start or an exit whose state could not be written: the job is retried once
        its disk has room (a full disk), at most max_fault_retries times in a row; after
        that, or for any other cause, the next start (or `resume_lost`) takes it up."""
        tries = self._unrecorded[job_id] = self._unrecorded.get(job_id, 0) + 1
        if disk_full(exc) and tries <= self.max_fault_retries and not self._stopping:
            delay = self.fault_retry_base * 2 ** (tries - 1)
            log.error("job %s: %s (%s); retry %d of %d once there is room, in %gs at the earliest", job_id, what,
                      exc, tries, self.max_fault_retries, delay, extra={"JOB_ID": job_id, "EVENT": "job_fault"})
            self._requeue_later(job_id, delay, when_room=True)
            return
        log.error("job %s: %s; a later reconcile or the next start resumes it", job_id, what, exc_info=exc,
                  extra={"JOB_ID": job_id, "EVENT": "job_fault"})

    def _record_exit(self, record: JobRecord, rc: int, state: str, reason: str) -> None:
        if state == "failed" and (disk_full(reason) or not has_room(self.store.dir(record.id))):
            if record.fault_retries < self.max_fault_retries:
                self._retry_on_room(record, rc, reason)
                return
            reason = f"{reason} (a full disk, {record.fault_retries + 1} times in a row)"
        if state == "interrupted":
            if record.interrupts >= self.max_interrupts:
                state, reason = "failed", f"{reason}, {record.interrupts + 1} times in a row"
            else:
                self.store.transition(record.id, "running", f"{reason}; resuming in {self.restart_delay:g}s",
                                      exit_code=rc, interrupts=record.interrupts + 1)
                self._emit("interrupted", record.id, reason)
                self._requeue_later(record.id, self.restart_delay)
                return
        if state == "running":
            self.store.transition(record.id, "running", reason, exit_code=rc)
            self._emit("stopped", record.id, reason)
            return
        interrupts = 0 if state == "complete" else record.interrupts
        self._finish_record(record, state, reason, exit_code=rc, interrupts=interrupts,
                            fault_retries=0 if state == "complete" else record.fault_retries,
                            error=None if state == "complete" else reason)

    def _retry_on_room(self, record: JobRecord, rc: int, reason: str) -> None:
        """A child that failed on a full disk: its job stays `running` (it resumes, as
        after a stop) and is queued again once the disk has room, after a backoff."""
        tries = record.fault_retries + 1
        delay = self.fault_retry_base * 2 ** (tries - 1)
        why = (f"{reason}; on a full disk: retry {tries} of {self.max_fault_retries} once there is room, "
               f"in {delay:g}s at the earliest")
        self.store.transition(record.id, "running", why, exit_code=rc, fault_retries=tries)
        self._emit("retrying", record.id, why)
        self._requeue_later(record.id, delay, when_room=True)

    def _finish_record(self, record: JobRecord, state: str, reason: str, **changes: Any) -> None:
        self.store.transition(record.id, state, reason, **changes)
        self._emit(state, record.id, reason)

    def _fail_to_start(self, job_id: str, reason: str) -> None:
        try:
            record = self.store.load(job_id)
            if not record.terminal:
                self._finish_record(record, "failed", reason, error=reason)
        except Exception:
            log.exception("job %s: could not record the failure to start", job_id, extra={"JOB_ID": job_id})

    def _signal_cancel(self, child: _Child) -> None:
        if child.cancelling:
            return
        child.cancelling = True
        killpg(child.proc, signal.SIGTERM)
        child.killer = threading.Timer(self.stop_timeout, killpg, (child.proc, signal.SIGKILL))
        child.killer.daemon = True
        child.killer.start()

    # -- events ---------------------------------------------------------------------

    def _emit(self, kind: str, job_id: str, reason: str) -> None:
        # debug: `on_event` is where the story is told (the daemon logs it with JOB_ID)
        log.debug("job %s: %s: %s", job_id, kind, reason, extra={"JOB_ID": job_id})
        self._pending.append(JobEvent(kind, job_id, reason))

    def _flush(self) -> None:
        """Deliver queued events outside the lock (a callback may call back into us)."""
        with self._lock:
            events, self._pending = self._pending, []
        for event in events:
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception:
                    log.exception("on_event failed for %s", event)
