"""The daemon's side of distribution (SPEC §5 "Distribute"): every NPZ a run publishes goes
to every rig, status.json says where each rig stands, and `winopt sync` requests dropped
into the spool force a resync.

The transfers themselves (one queue and worker per rig, newest version only, backoff,
rsync under a wall clock) are `handlers.distribute.Distributor`; this module connects it:

* `on_npz` is WatchedRuns' hook, called after every conversion check of a run that has an
  NPZ (a new publish, and every run at start and reconcile: the start-up check that
  brings a rig which missed updates while the daemon was down to the newest NPZ;
  resubmitting an unchanged NPZ costs nothing).
* status.json's `rigs` section: per rig its target and, per run, the Distributor's state
  (`synced` with the sha256 the rig has, `pending`, `retrying` with attempts, next try and
  the last error, `failed`). Only this section: a run's own entry belongs to WatchedRuns,
  so a run removed there never comes back as a ghost from a late rig callback.
* `spool/sync-<RUN or all>.<random>.sync` (`winopt sync [RUN]`): a request is taken
  (unlinked) and the run, or every run, is checked again on every rig, backoff forgotten.

Run names become directory names on the rigs; a daemon name that is not one safe path
component (`a/out`, when two watched directories end in `out`) is sent as `a-out`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from winopt.daemon.handler import SYNC_KIND, Quiet
from winopt.contracts.state_dir import SPOOL_DIR, SYNC_PREFIX, SYNC_SUFFIX, is_request
from winopt.daemon.status import StatusBook
from winopt.contracts.errors import UserError
from winopt.contracts.beneath import UnsafeFile, read_regular
from winopt.handlers.rigs.distributor import Distributor, RetryPolicy
from winopt.handlers.rigs.config import Rig

log = logging.getLogger(__name__)

SECTION = "rigs"
#: the one queue target of sync requests: every request file is taken by one scan
REQUESTS = "sync-requests"
#: a request is a small JSON object; anything bigger is not one
MAX_REQUEST_BYTES = 4096


@dataclass(frozen=True)
class SyncRequest:
    """One `winopt sync` request: the run to check again (None: every run)."""

    run: str | None
    requested_by: str = "unknown"


def rig_run_name(run: str) -> str:
    """The directory a daemon run gets on the rigs: one safe path component."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", run).lstrip(".-")
    return safe or "run"


def request_name(run: str | None, token: str) -> str:
    """`sync-<RUN or all>.<token>.sync`: readable in `ls`, unique per request."""
    return f"{SYNC_PREFIX}{rig_run_name(run) if run is not None else 'all'}.{token}{SYNC_SUFFIX}"


def read_request(path: Path) -> SyncRequest:
    """A request file's content (`{"run": NAME|null, ...}`); an empty file asks by its
    name alone (`sync-all.*.sync` every run, `sync-NAME.*.sync` run NAME)."""
    try:  # members drop these: never through a symlink, never blocked by a FIFO
        data, _ = read_regular(str(path), None, MAX_REQUEST_BYTES, "sync request")
    except UnsafeFile as exc:
        raise UserError(f"{path}: {exc}") from None
    if not data.strip():
        stem = path.name.removeprefix(SYNC_PREFIX).removesuffix(SYNC_SUFFIX).rpartition(".")[0]
        return SyncRequest(None if stem in ("", "all") else stem)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or not (doc.get("run") is None or isinstance(doc.get("run"), str)):
        raise UserError(f'{path}: expected {{"run": NAME or null}}')
    return SyncRequest(doc.get("run"), str(doc.get("requested_by") or "unknown"))


def retry_policy(settings: Any) -> RetryPolicy:
    """The `RetryPolicy` of a `[distribution]` table (config.DistributionConfig)."""
    return RetryPolicy(base=settings.retry_base, cap=settings.retry_cap, factor=settings.retry_factor,
                       jitter=settings.retry_jitter, config_tries=settings.config_tries)


class RigDistribution(Quiet):
    """Runs' NPZ files to the rigs, the `rigs` status section, and sync requests.

    Its handler parts for the daemon: `route` (a changed file -> REQUESTS for a sync
    request), `work` (take the requests), `dirs` (the spool), `targets` (a reconcile also
    forgets runs the daemon no longer has)."""

    kind = SYNC_KIND

    def __init__(self, book: StatusBook, state_dir: Path, rigs: Mapping[str, Rig], settings: Any) -> None:
        self._book = book
        self._spool = state_dir / SPOOL_DIR
        self._lock = threading.Lock()
        self._rigs: dict[str, Rig] = dict(rigs)
        self._runs: dict[str, str] = {}  # name on the rigs -> daemon run name
        self._warned: set[tuple[str, ...]] = set()  # problems already logged (once each, not per check)
        self._stopped = False
        self._spool.mkdir(mode=0o775, parents=True, exist_ok=True)
        self._dist = Distributor(self._rigs, on_change=self._changed, max_parallel=settings.max_parallel,
                                 policy=retry_policy(settings))
        for rig in self._rigs.values():
            self._book.update_entry(SECTION, rig.name, **_rig_fields(rig), runs={})
        if self._rigs:
            log.info("distributing to %d rig(s): %s", len(self._rigs),
                     ", ".join(f"{r.name} ({r.target})" for r in self._rigs.values()), extra={"EVENT": "rigs"})

    # ------------------------------------------------------------ WatchedRuns' hook
    def on_npz(self, run: str, npz: Path, meta: Path, sha256: str | None,
               rigs: Iterable[str] | None = None) -> None:
        """`run` has this NPZ now: make it what every selected rig should have."""
        safe = rig_run_name(run)
        with self._lock:
            if self._stopped:
                return
            owner = self._runs.setdefault(safe, run)
            subset = None if rigs is None else [r for r in rigs if r in self._rigs]
            missing = [] if rigs is None else [r for r in rigs if r not in self._rigs]
            clash = owner != run and self._first_time("clash", run, owner)
            missing_news = bool(missing) and self._first_time("missing", run, *missing)
        fields = {"RUN": run, "EVENT": "distribute_error"}
        if owner != run:
            if clash:
                log.error("run %s: not distributed: run %s already goes to the rigs as %s/", run, owner, safe,
                          extra=fields)
            return
        if missing_news:
            log.warning("run %s: rig(s) %s not configured (any more); sending to the others", run,
                        ", ".join(missing), extra=fields)
        try:
            self._dist.submit(safe, npz, meta, sha256, rigs=subset)
        except UserError as exc:  # the NPZ went away meanwhile, a flat rig of another run
            log.warning("run %s: not distributed: %s", run, exc, extra=fields)
        except RuntimeError:  # stopped meanwhile
            pass

    def _first_time(self, *problem: str) -> bool:
        """Whether `problem` is new (with our lock held): each is logged once, not at every check."""
        if problem in self._warned:
            return False
        self._warned.add(problem)
        return True

    # ------------------------------------------------------------ handler parts
    def route(self, path: Path) -> str | None:
        """A sync request dropped into the spool (temp names are not requests yet)."""
        name = path.name
        if path.parent == self._spool and is_request(name, SYNC_SUFFIX):
            return REQUESTS
        return None

    def watched_dirs(self) -> list[Path]:
        return [self._spool]

    def targets(self) -> list[str]:
        """At each reconcile: forget runs the daemon dropped, look for requests."""
        self._forget_gone_runs()
        return [REQUESTS]

    def work(self, target: str, reasons: frozenset[str]) -> None:
        """Take every sync request in the spool (unlink, then resync)."""
        try:
            paths = sorted(p for p in self._spool.glob(f"*{SYNC_SUFFIX}") if is_request(p.name, SYNC_SUFFIX))
        except OSError as exc:
            log.error("%s: cannot list sync requests: %s", self._spool, exc, extra={"EVENT": "sync_request"})
            return
        for path in paths:
            try:
                request = read_request(path)
            except FileNotFoundError:
                continue
            except (OSError, UserError) as exc:
                log.error("sync request refused and removed: %s", exc, extra={"PATH": str(path), "EVENT": "sync_request"})
                path.unlink(missing_ok=True)
                continue
            # Taken before it is acted on: a crash in between loses only a check that the
            # next start makes anyway.
            path.unlink(missing_ok=True)
            self.resync(request.run, requested_by=request.requested_by)

    # ------------------------------------------------------------ actions
    def resync(self, run: str | None = None, *, requested_by: str = "daemon") -> None:
        """Check `run` (every run) on every rig now, forgetting backoff and failures."""
        fields = {"EVENT": "sync_request", **({"RUN": run} if run else {})}
        if run is None:
            log.info("sync requested by %s: every run on every rig", requested_by, extra=fields)
            self._dist.resync()
            return
        safe = rig_run_name(run)
        with self._lock:
            known = self._runs.get(safe) == run
            names = sorted(self._runs.values())
        if not known:
            log.warning("sync requested by %s for run %s: it has no NPZ to send (runs with one: %s)",
                        requested_by, run, ", ".join(names) or "none", extra=fields)
            return
        log.info("sync requested by %s: run %s on every rig", requested_by, run, extra=fields)
        self._dist.resync(safe)

    def reload(self, rigs: Mapping[str, Rig], settings: Any) -> None:
        """SIGHUP: take the new rig list and settings (new rigs get every run, removed
        ones stop after the transfer in hand, changed ones are checked again)."""
        try:
            self._dist.update_rigs(rigs)
        except UserError as exc:  # rsync missing for the first rig
            log.error("reload: rigs unchanged: %s", exc, extra={"EVENT": "reload_failed"})
            return
        self._dist.configure(policy=retry_policy(settings), max_parallel=settings.max_parallel)
        with self._lock:
            old, self._rigs = self._rigs, dict(rigs)
            for name in set(old) - set(rigs):
                self._book.remove_entry(SECTION, name)
            snap = self._dist.snapshot()
            for rig in self._rigs.values():
                self._book.update_entry(SECTION, rig.name, **_rig_fields(rig), runs=self._runs_on(rig.name, snap))
        added = sorted(set(rigs) - set(old))
        removed = sorted(set(old) - set(rigs))
        changed = sorted(n for n in set(rigs) & set(old) if rigs[n] != old[n])
        if added or removed or changed:
            log.info("rigs reloaded: added %s; removed %s; changed %s", ", ".join(added) or "none",
                     ", ".join(removed) or "none", ", ".join(changed) or "none", extra={"EVENT": "rigs"})

    def stop(self, timeout: float = 0.0) -> bool:
        """Stop distributing: transfers in flight are ended at once (SIGTERM, then
        SIGKILL); the rigs keep their last whole copy, and the next start checks them."""
        with self._lock:
            self._stopped = True
        return self._dist.stop(timeout)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{daemon run name: {rig: state}}."""
        with self._lock:
            names = dict(self._runs)
        return {names.get(safe, safe): states for safe, states in self._dist.snapshot().items()}

    # ------------------------------------------------------------ status
    def _changed(self, safe: str, rig: str, _state: dict[str, Any]) -> None:
        """Distributor callback (any thread, outside its lock). The rig's whole entry is
        re-read under our lock: callbacks from two threads may arrive out of order, but
        the last write is always of the latest state."""
        with self._lock:
            if rig in self._rigs:
                self._book.update_entry(SECTION, rig, runs=self._runs_on(rig, self._dist.snapshot()))

    def _runs_on(self, rig: str, snap: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """{daemon run name: state} of one rig (with our lock held)."""
        return {self._runs.get(safe, safe): states[rig] for safe, states in snap.items() if rig in states}

    def _forget_gone_runs(self) -> None:
        """Runs no longer in status.json's `runs` (a watched directory dropped from the
        config, a job removed) stop being distributed; rig copies stay."""
        known = set(self._book.snapshot().get("runs") or {})
        with self._lock:
            gone = {safe: name for safe, name in self._runs.items() if name not in known}
            if not gone:
                return
            for safe in gone:
                del self._runs[safe]
                self._dist.forget(safe)
            snap = self._dist.snapshot()
            for rig in self._rigs:
                self._book.update_entry(SECTION, rig, runs=self._runs_on(rig, snap))
        log.info("no longer distributing %s (not watched any more)", ", ".join(sorted(gone.values())),
                 extra={"EVENT": "rigs"})


def _rig_fields(rig: Rig) -> dict[str, Any]:
    """What status.json says about a rig itself."""
    return {"target": rig.target, "transport": "ssh" if rig.is_ssh else "local", "layout": rig.layout,
            "run": rig.run}

