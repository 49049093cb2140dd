"""Distribute each run's newest NPZ and meta to every rig, and know where each rig stands.

`Distributor` keeps one `RigQueue` per rig, each served by its own worker thread, so a rig
that is down or slow never delays another; a semaphore bounds how many rsyncs run at once.
A queue holds, per run, only the newest version: submitting version 7 while version 5 is
still pending replaces it. Failures back off exponentially with jitter up to a cap; a
configuration failure (see `winopt.handlers.rigs.rsync.EXIT_CODES`) is marked `failed` after a
few tries and is then retried only once per cap, so a fixed permission heals on its own.

One transfer sends the NPZ first and the meta last, so a reader that sees the new meta
finds the new NPZ. The meta is copied aside *before* the NPZ is sent: the converter
publishes the NPZ before the meta, so the NPZ that reaches the rig is never older than
the meta that follows it, even while a new conversion races with the transfer.

The run's `train_history.json` and `holdout_history.json` (SPEC §3: the rigs' Steps 2.5/3
read them), when they lie beside the NPZ, go in the NPZ's rsync: one connection, each file
renamed into place whole, all before the meta, and, like the NPZ, sent only when their
content differs from the rig's. A run directory without them (an old run) sends the NPZ
and the meta alone.

The daemon's integration (SPEC §5):

* after each NPZ publish: ``distributor.submit(run, npz, meta, sha256, rigs=job_rigs)``;
* at start, for every run with an NPZ: the same ``submit``. That is the cheap check of
  every rig: rsync compares checksums and sends nothing to a rig already up to date;
* ``winopt sync [RUN]`` and SIGHUP: ``resync(run)`` / ``update_rigs(new_rigs)``;
* ``on_change(run, rig, state)`` fires on every state change (write status.json there),
  ``snapshot()`` gives the whole picture, ``stop(timeout)`` at shutdown.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winopt.contracts.procs import killpg
from winopt.contracts.clock import now_iso
from winopt.contracts.schemas import HOLDOUT_HISTORY_NAME, TRAIN_HISTORY_NAME
from winopt.contracts.errors import UserError, in_file
from winopt.handlers.rigs.config import Rig, check_run_name
from winopt.handlers.rigs.rsync import (
    KILL_GRACE,
    Outcome,
    RsyncResult,
    rsync_argv,
    rsync_binary,
    run_rsync,
    send_file,
    with_fix,
)

log = logging.getLogger("winopt.distribute")

STATES = ("pending", "retrying", "failed", "synced")
#: files of a run that travel with its NPZ when they lie beside it (written once per run)
COMPANIONS = (TRAIN_HISTORY_NAME, HOLDOUT_HISTORY_NAME)
OnChange = Callable[[str, str, dict[str, Any]], None]
Identity = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; `config_tries` CONFIG failures → failed."""

    base: float = 2.0
    cap: float = 300.0
    factor: float = 2.0
    jitter: float = 0.5  # each delay is scaled by a uniform factor in [1 - jitter, 1]
    config_tries: int = 3

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds before try number `attempts + 1`; never more than `cap`."""
        raw = min(self.cap, self.base * self.factor ** max(0, attempts - 1))
        return raw * rng.uniform(1.0 - self.jitter, 1.0)


@dataclass(frozen=True)
class Version:
    """One published NPZ (and its meta) of a run. `identity` tells a republish apart."""

    npz: Path
    meta: Path
    sha256: str
    identity: Identity


@dataclass
class Entry:
    """One run on one rig: what the rig should have, what it has, how trying went."""

    run: str
    wanted: Version
    state: str = "pending"
    sha256: str | None = None  # what the rig has, as far as we know
    attempts: int = 0  # consecutive failures
    transfers: int = 0  # transfers started, ever
    due: float = 0.0  # monotonic time of the next try
    generation: int = 0  # bumped by every submit, to spot one during a transfer
    in_flight: bool = False
    last_error: str | None = None
    last_exit: int | None = None
    last_success: str | None = None
    last_duration_s: float | None = None
    last_sent: list[str] = field(default_factory=list)


@dataclass
class RigQueue:
    """The entries of one rig, served in due order by the rig's own worker thread."""

    rig: Rig
    entries: dict[str, Entry] = field(default_factory=dict)
    removed: bool = False
    thread: threading.Thread | None = None
    proc: subprocess.Popen | None = None  # the rsync in flight, for stop()

    def next_due(self, now: float) -> tuple[Entry | None, float | None]:
        """The entry to send now, else None and the seconds until one is due."""
        waiting = [e for e in self.entries.values() if e.state != "synced" and not e.in_flight]
        if not waiting:
            return None, None
        first = min(waiting, key=lambda e: e.due)
        return (first, None) if first.due <= now else (None, first.due - now)


@dataclass
class Attempt:
    """The outcome of one NPZ-then-meta transfer."""

    result: RsyncResult | None
    sha256: str | None = None  # the NPZ the rig now has (on success)
    version: Version | None = None  # the version actually sent
    raced: bool = False  # the NPZ was replaced mid-transfer: send again at once
    error: str | None = None  # a failure before rsync ran (meta missing, …)


def file_identity(st: os.stat_result) -> Identity:
    """Changes on every atomic republish (new inode, new ctime), not on reads."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def companions(npz: Path) -> list[Path]:
    """The COMPANIONS beside `npz` that exist now (none for an old run directory)."""
    return [path for path in (npz.with_name(name) for name in COMPANIONS) if path.is_file()]


def send_files(rig: Rig, sources: list[Path], run: str, *,
               started: Callable[[subprocess.Popen], None] | None = None) -> RsyncResult:
    """Send `sources` into `run`'s directory on `rig` in one rsync (one ssh connection, one
    wall clock); rsync renames each file into place once it is whole."""
    first, *rest = sources
    if not rest:
        return send_file(rig, first, run, started=started)
    argv = rsync_argv(rig, first, rig.destination(run))
    # rsync_argv ends [..., "--", SOURCE, DESTINATION]: the other sources join the first
    assert argv[-2] == os.fspath(first) and argv[-3] == "--", argv
    argv[-1:-1] = [os.fspath(path) for path in rest]
    return with_fix(rig, run_rsync(argv, timeout=rig.transfer_timeout, started=started))


def _hash_open_file(path: Path) -> tuple[Identity, str]:
    """Identity and sha256 of the file `path` names now, from one open descriptor."""
    with open(path, "rb") as fh:
        ident = file_identity(os.fstat(fh.fileno()))
        return ident, hashlib.file_digest(fh, "sha256").hexdigest()


class Distributor:
    """Thread-safe fan-out of run versions to rigs; see the module docstring for the API."""

    def __init__(
        self,
        rigs: Mapping[str, Rig] | Iterable[Rig],
        *,
        on_change: OnChange | None = None,
        max_parallel: int = 4,
        policy: RetryPolicy = RetryPolicy(),
        seed: int | None = None,
    ) -> None:
        self._cond = threading.Condition()
        self._max_parallel = max(1, max_parallel)
        self._slots = threading.BoundedSemaphore(self._max_parallel)
        self._policy = policy
        self._rng = random.Random(seed)
        self._on_change = on_change
        self._stopping = False
        self._queues: dict[str, RigQueue] = {}
        self._runs: dict[str, tuple[Version, tuple[str, ...] | None]] = {}
        self.update_rigs(rigs)

    # -- the API -------------------------------------------------------------------------

    def submit(
        self,
        run: str,
        npz_path: str | os.PathLike[str],
        meta_path: str | os.PathLike[str],
        sha256: str | None = None,
        rigs: Iterable[str] | None = None,
    ) -> None:
        """Make `run`'s newest version the one every selected rig should have.

        `rigs=None` selects every per-run rig plus flat rigs bound to `run`. `sha256` is
        the NPZ's (from the converter's meta); None computes it."""
        check_run_name(run)
        if self._stopping:
            raise RuntimeError("Distributor.submit after stop()")
        npz, meta = Path(npz_path).absolute(), Path(meta_path).absolute()
        try:
            ident = file_identity(os.stat(npz))
            if sha256 is None:
                ident, sha256 = _hash_open_file(npz)
        except FileNotFoundError:
            raise in_file(npz, "no such file (nothing to distribute)") from None
        version = Version(npz, meta, sha256, ident)
        subset = None if rigs is None else tuple(dict.fromkeys(rigs))
        changed: list[tuple[str, str]] = []
        with self._cond:
            self._check_subset(run, subset)
            self._runs[run] = (version, subset)
            changed = self._place(run, version, subset)
            self._cond.notify_all()
        self._emit(changed)

    def resync(self, run: str | None = None) -> None:
        """Check `run` (or every run) on every rig now, forgetting any backoff."""
        changed: list[tuple[str, str]] = []
        with self._cond:
            for queue in self._queues.values():
                changed += self._recheck(queue, run)
            self._cond.notify_all()
        self._emit(changed)

    def forget(self, run: str) -> None:
        """Stop distributing `run` (a cancelled or removed run); rig copies stay."""
        with self._cond:
            self._runs.pop(run, None)
            for queue in self._queues.values():
                queue.entries.pop(run, None)
            self._cond.notify_all()

    def update_rigs(self, rigs: Mapping[str, Rig] | Iterable[Rig]) -> None:
        """Take a new rig set (config reload): new rigs get every run, removed ones stop
        after the transfer in hand, changed settings apply from the next transfer."""
        new = dict(rigs) if isinstance(rigs, Mapping) else {r.name: r for r in rigs}
        if new:
            rsync_binary()  # fail now (at start, at reload), not at the first publish
        changed: list[tuple[str, str]] = []
        with self._cond:
            for name in set(self._queues) - set(new):
                self._queues.pop(name).removed = True
            for name, rig in new.items():
                if name in self._queues:
                    if self._queues[name].rig != rig:  # a new target may hold nothing yet
                        self._queues[name].rig = rig
                        changed += self._recheck(self._queues[name])
                    continue
                self._queues[name] = RigQueue(rig)
                self._start_worker(self._queues[name])
            for run, (version, subset) in self._runs.items():
                changed += self._place(run, version, subset)
            self._cond.notify_all()
        self._emit(changed)

    def configure(self, *, policy: RetryPolicy | None = None, max_parallel: int | None = None) -> None:
        """New retry policy and bound on parallel transfers (config reload). Delays already
        scheduled stand; transfers holding a slot of the old bound finish under it."""
        with self._cond:
            if policy is not None:
                self._policy = policy
            if max_parallel is not None and max_parallel != self._max_parallel:
                self._max_parallel = max(1, max_parallel)
                self._slots = threading.BoundedSemaphore(self._max_parallel)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{run: {rig: state}} in plain JSON types, for status.json and `winopt sync`."""
        with self._cond:
            now = time.monotonic()
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for name, queue in sorted(self._queues.items()):
                for run, entry in sorted(queue.entries.items()):
                    out.setdefault(run, {})[name] = self._describe(queue, entry, now)
            return out

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """Wait until `predicate(snapshot())` holds (re-checked on every state change)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.snapshot()), timeout)

    def wait_settled(self, timeout: float, run: str | None = None) -> bool:
        """Wait until every entry (of `run`) is synced or failed, nothing in flight."""

        def settled() -> bool:
            return all(
                not e.in_flight and e.state in ("synced", "failed")
                for q in self._queues.values()
                for e in q.entries.values()
                if run is None or e.run == run
            )

        with self._cond:
            return self._cond.wait_for(settled, timeout)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the workers; transfers still running after `timeout` get SIGTERM (rsync
        tidies its temp file away), then SIGKILL after `KILL_GRACE`.

        True when every worker ended. A stopped transfer leaves the rig's old copy intact
        (rsync renames only complete files) and counts as no failure: the next start's
        check sends it again."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads = [q.thread for q in self._queues.values() if q.thread]
        for sig, wait in ((None, timeout), (signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
            if sig is not None:
                self._signal_in_flight(sig)
            deadline = time.monotonic() + wait
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if not any(t.is_alive() for t in threads):
                return True
        return False

    # -- bookkeeping (called with the lock held) -----------------------------------------

    def _check_subset(self, run: str, subset: tuple[str, ...] | None) -> None:
        if subset is None:
            return
        unknown = [name for name in subset if name not in self._queues]
        if unknown:
            known = ", ".join(sorted(self._queues)) or "none"
            raise UserError(f"run {run}: unknown rig(s) {', '.join(unknown)} (known: {known})")
        for name in subset:
            rig = self._queues[name].rig
            if rig.layout == "flat" and rig.run != run:
                raise UserError(f"run {run}: rig {name} is flat and receives only run {rig.run}")

    def _selected(self, run: str, subset: tuple[str, ...] | None) -> set[str]:
        if subset is None:
            return {n for n, q in self._queues.items() if q.rig.receives(run)}
        return {n for n in subset if n in self._queues}

    def _place(self, run: str, version: Version, subset: tuple[str, ...] | None) -> list[tuple[str, str]]:
        """Make `version` the wanted one for `run` on the selected rigs; drop the others."""
        selected, now, changed = self._selected(run, subset), time.monotonic(), []
        for name, queue in self._queues.items():
            entry = queue.entries.get(run)
            if name not in selected:
                if entry is not None:
                    del queue.entries[run]
                continue
            if entry is None:
                queue.entries[run] = Entry(run, version, due=now)
                changed.append((run, name))
            elif entry.wanted != version:
                entry.wanted, entry.generation = version, entry.generation + 1
                if entry.state == "synced":  # a rig backing off keeps its backoff
                    entry.state, entry.due = "pending", now
                changed.append((run, name))
        return changed

    @staticmethod
    def _recheck(queue: RigQueue, run: str | None = None) -> list[tuple[str, str]]:
        """Make `run`'s (or every) entry of `queue` pending now, with no backoff."""
        now, changed = time.monotonic(), []
        for entry in queue.entries.values():
            if run is None or entry.run == run:
                entry.state, entry.attempts, entry.due = "pending", 0, now
                changed.append((entry.run, queue.rig.name))
        return changed

    def _describe(self, queue: RigQueue, entry: Entry, now: float) -> dict[str, Any]:
        backing_off = entry.state in ("retrying", "failed") and not entry.in_flight
        return {
            "state": entry.state,
            "sha256": entry.sha256,
            "wanted_sha256": entry.wanted.sha256,
            "in_flight": entry.in_flight,
            "attempts": entry.attempts,
            "transfers": entry.transfers,
            "next_try": now_iso(offset_s=max(0.0, entry.due - now)) if backing_off else None,
            "last_error": entry.last_error,
            "last_exit": entry.last_exit,
            "last_success": entry.last_success,
            "last_duration_s": entry.last_duration_s,
            "last_sent": list(entry.last_sent),
            "destination": queue.rig.destination(entry.run),
        }

    # -- the workers ---------------------------------------------------------------------

    def _start_worker(self, queue: RigQueue) -> None:
        queue.thread = threading.Thread(
            target=self._serve, args=(queue,), name=f"rig-{queue.rig.name}", daemon=True
        )
        queue.thread.start()

    def _serve(self, queue: RigQueue) -> None:
        """One rig's loop: take the entry that is due, send it, record the outcome."""
        while True:
            with self._cond:
                picked = self._take(queue)
                if picked is None:
                    return
                entry, generation, version, rig = picked
            self._emit([(entry.run, rig.name)])
            with self._slots:  # stop() may have come while this rig waited for a slot
                try:
                    attempt = None if self._stopping else self._transfer(queue, rig, entry.run, version)
                except Exception as exc:  # rsync gone, fork failed: a failed try, never a dead rig
                    attempt = Attempt(None, error=f"cannot run rsync: {exc}")
            with self._cond:
                if attempt is None:
                    entry.in_flight = False
                    self._cond.notify_all()
                    return
                changed = self._record(queue, entry, generation, attempt)
                self._cond.notify_all()
            self._emit(changed)

    def _take(self, queue: RigQueue) -> tuple[Entry, int, Version, Rig] | None:
        while not (self._stopping or queue.removed):
            entry, wait = queue.next_due(time.monotonic())
            if entry is not None:
                entry.in_flight, entry.transfers = True, entry.transfers + 1
                self._cond.notify_all()  # wakes wait_for() callers watching in_flight
                return entry, entry.generation, entry.wanted, queue.rig
            self._cond.wait(wait)
        return None

    def _transfer(self, queue: RigQueue, rig: Rig, run: str, version: Version) -> Attempt:
        """NPZ (with the run's histories) first, then the meta snapshot taken before it (see
        the module docstring)."""

        def started(proc: subprocess.Popen) -> None:
            queue.proc = proc

        with tempfile.TemporaryDirectory(prefix="winopt-sync-") as stage:
            meta_copy = Path(stage) / version.meta.name
            try:
                shutil.copy2(version.meta, meta_copy)  # keeps mtime: quick check still works
                ident, sha = self._sending(version)
            except OSError as exc:
                return Attempt(None, error=f"{exc.filename or version.npz}: {exc.strerror or exc}")
            try:
                result = send_files(rig, [version.npz, *companions(version.npz)], run, started=started)
                if not result.ok:
                    return Attempt(result)
                raced = self._identity(version.npz) != ident
                # Even after a race the meta snapshot is not newer than the NPZ just sent.
                result_meta = send_file(rig, meta_copy, run, started=started)
            finally:
                queue.proc = None
            result_meta.sent = result.sent + result_meta.sent
            result_meta.duration += result.duration
            if not result_meta.ok:
                return Attempt(result_meta)
            if raced:  # which NPZ rsync read is unknown: send again, at once
                return Attempt(result_meta, raced=True)
            return Attempt(result_meta, sha256=sha, version=Version(version.npz, version.meta, sha, ident))

    @staticmethod
    def _identity(path: Path) -> Identity | None:
        try:
            return file_identity(os.stat(path))
        except FileNotFoundError:
            return None

    @staticmethod
    def _sending(version: Version) -> tuple[Identity, str]:
        """Identity and sha256 of the NPZ about to be sent (hashing only after a republish
        that no submit has told us about yet)."""
        ident = file_identity(os.stat(version.npz))
        return (ident, version.sha256) if ident == version.identity else _hash_open_file(version.npz)

    def _record(self, queue: RigQueue, entry: Entry, generation: int, attempt: Attempt) -> list[tuple[str, str]]:
        entry.in_flight = False
        if queue.entries.get(entry.run) is not entry:
            return []  # forgotten or deselected meanwhile
        now, rig = time.monotonic(), queue.rig
        result = attempt.result
        if self._stopping and not (result is not None and result.ok):  # stop() ended it
            entry.state = "pending"
            log.info("rig %s: run %s transfer stopped after %.2f s (shutting down)", rig.name, entry.run,
                     result.duration if result else 0.0,
                     extra=_fields(rig, entry, "stopped", result.duration if result else 0.0))
            return [(entry.run, rig.name)]
        if attempt.raced:  # the rig works; the NPZ changed under rsync: again, at once
            entry.state, entry.attempts, entry.due = "pending", 0, now
            duration = result.duration if result else 0.0
            log.info("rig %s: run %s NPZ replaced during the transfer (%.2f s); sending the newest", rig.name,
                     entry.run, duration, extra=_fields(rig, entry, "pending", duration))
            return [(entry.run, rig.name)]
        if result is not None and result.ok and attempt.version is not None:
            self._succeeded(entry, generation, attempt, now)
            log.info(
                "rig %s: run %s %s in %.2f s (sha256 %s)", rig.name, entry.run,
                "sent " + ", ".join(result.sent) if result.sent else "already up to date",
                result.duration, attempt.sha256[:12],
                extra=_fields(rig, entry, "synced", result.duration),
            )  # fmt: skip
        else:
            self._failed(entry, attempt, now)
            level = logging.ERROR if entry.state == "failed" else logging.WARNING
            log.log(
                level, "rig %s: run %s %s (attempt %d): %s", rig.name, entry.run, entry.state,
                entry.attempts, entry.last_error,
                extra=_fields(rig, entry, entry.state, result.duration if result else 0.0),
            )  # fmt: skip
        return [(entry.run, rig.name)]

    def _succeeded(self, entry: Entry, generation: int, attempt: Attempt, now: float) -> None:
        assert attempt.result is not None and attempt.version is not None
        entry.sha256, entry.attempts = attempt.sha256, 0
        entry.last_success, entry.last_error, entry.last_exit = now_iso(), None, 0
        entry.last_duration_s = round(attempt.result.duration, 3)
        entry.last_sent = attempt.result.sent
        if entry.generation == generation:
            entry.wanted = attempt.version  # it may be a republish nobody submitted yet
            entry.state = "synced"
        else:
            entry.state, entry.due = "pending", now  # a newer version arrived meanwhile

    def _failed(self, entry: Entry, attempt: Attempt, now: float) -> None:
        result = attempt.result
        entry.attempts += 1
        entry.last_error = attempt.error or (result.describe() if result else "unknown error")
        entry.last_exit = result.returncode if result else None
        config = result is not None and result.outcome is Outcome.CONFIG
        if config and entry.attempts >= self._policy.config_tries:
            entry.state, entry.due = "failed", now + self._policy.cap
        else:
            entry.state = "retrying"
            entry.due = now + self._policy.delay(entry.attempts, self._rng)

    def _signal_in_flight(self, sig: int) -> None:
        """Send `sig` to the process group of every rsync in flight (rsync and its ssh)."""
        with self._cond:
            procs = [q.proc for q in self._queues.values() if q.proc is not None]
        for proc in procs:
            killpg(proc, sig)

    def _emit(self, changed: list[tuple[str, str]]) -> None:
        """Tell `on_change` (outside the lock); its errors are logged, never fatal."""
        if not self._on_change or not changed:
            return
        for run, rig in changed:
            with self._cond:
                queue = self._queues.get(rig)
                entry = queue.entries.get(run) if queue else None
                state = self._describe(queue, entry, time.monotonic()) if entry else None
            if state is None:
                continue
            try:
                self._on_change(run, rig, state)
            except Exception:  # noqa: BLE001 - a status writer bug must not stop transfers
                log.exception("on_change callback failed for run %s rig %s", run, rig)


def _fields(rig: Rig, entry: Entry, state: str, duration: float) -> dict[str, Any]:
    """Structured journal fields (uppercase, as journald wants them)."""
    return {
        "RIG": rig.name,
        "RUN": entry.run,
        "EVENT": "rsync",
        "RIG_STATE": state,
        "DURATION_S": f"{duration:.3f}",
    }
