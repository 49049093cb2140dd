"""The shared storage itself (SPEC §7): opening it for many machines (heartbeats, a retry
for each stale trial, connections checked before use), telling a database that went away
for a while from one that will never answer, waiting for the first with backoff, and a
heartbeat thread that outlives storage errors."""

from __future__ import annotations

import importlib.util
import logging
import random
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryFailedTrialCallback

from winopt.contracts.errors import UserError
from winopt.contracts.urls import safe_url

log = logging.getLogger(__name__)

#: heartbeat defaults for rigs (seconds): a dead rig's trial is failed within ~3 minutes
HEARTBEAT_INTERVAL = 20
GRACE_PERIOD = 60
#: retries of one failed trial (a chain: the retry of a retry counts); a trial that fails
#: this often is given up and its slot goes to a new one
MAX_RETRY = 5
#: first and largest pause between tries when the database is unreachable
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
#: longest a session may sit idle inside a transaction (seconds): a worker stopped
#: (SIGSTOP, a laptop lid, a hung rig) between two statements holds its row locks and the
#: ask lock; PostgreSQL ends its session after this, so the other workers go on
IDLE_TX_LIMIT = 10
#: tries to open a storage whose tables another process is creating at the same moment
SCHEMA_RACE_TRIES = 5
#: connection errors that waiting does not cure: a wrong password, database or pg_hba.conf
PERMANENT_SIGNS = ("authentication failed", "does not exist", "no pg_hba.conf entry",
                   "no password supplied", "permission denied", "invalid connection option",
                   "invalid sslmode value", "invalid port number", "invalid integer value")
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """A database error that goes away by itself (server restart, network cut), also when
    Optuna wrapped it (`StorageInternalError` from a failed commit)."""
    if any(sign in root_text(exc) for sign in PERMANENT_SIGNS):
        return False
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 8:
        if isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
            return True
        if type(cause).__name__ in ("OperationalError", "InterfaceError"):  # the driver's own
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def retrying(what: str, fn: Callable[[], T], *, stop: threading.Event | None = None,
             first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> T:
    """`fn()`, tried again with exponential backoff (and jitter) while the database is
    unreachable; any other error is raised at once. A stop request ends the wait by
    raising `Stopped`."""
    delay = first
    tries = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            tries += 1
            _trouble()
            text = root_text(exc)
            log.warning("%s: database unreachable (%s); try %d again in %.1fs", what, text, tries + 1,
                        delay)
            if stop is not None:
                if stop.wait(delay * random.uniform(0.5, 1.0)):
                    raise Stopped(what) from exc
            else:
                time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(cap, delay * 2)


def root_text(exc: BaseException) -> str:
    """The first line of the innermost error (the driver's, not Optuna's wrapper)."""
    while (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_last_trouble = -float("inf")


def since_trouble() -> float:
    """Seconds since this process last found the database out of reach."""
    return time.monotonic() - _last_trouble


def _trouble() -> None:
    global _last_trouble
    _last_trouble = time.monotonic()


class Stopped(Exception):
    """A stop was requested while waiting for the database."""


def open_storage(url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 grace_period: int = GRACE_PERIOD, max_retry: int | None = MAX_RETRY) -> RDBStorage:
    """The shared RDB storage: heartbeats, a retry for every trial failed as stale, and
    pooled connections checked before use (a database restart leaves dead ones)."""
    if not url.startswith(("postgresql", "sqlite")):
        raise UserError(f"--storage {safe_url(url)}: winopt worker supports PostgreSQL "
                        "(postgresql://...) and SQLite (sqlite:///...) storages")
    host = url.split("://", 1)[-1].partition("?")[0].partition("/")[0]
    if host.count("@") > 1:
        raise UserError(f"--storage {safe_url(url)}: the password holds '@': percent-encode "
                        "it in the URL (@ is %40, : is %3A, / is %2F)")
    url = with_driver(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("postgresql"):
            # a dead server must fail a connect within seconds, not the TCP default
            # and a server or rig gone from the network is noticed within a minute
            # and a stopped process's open transaction (row locks) ends after IDLE_TX_LIMIT
            engine_kwargs["connect_args"] = {
                "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 30,
                "keepalives_interval": 10, "keepalives_count": 3,
                "options": f"-c idle_in_transaction_session_timeout={IDLE_TX_LIMIT * 1000}"}
        for attempt in range(SCHEMA_RACE_TRIES):
            try:
                return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                  grace_period=grace_period,
                                  failed_trial_callback=RetryFailedTrialCallback(max_retry=max_retry))
            except Exception as exc:
                if is_transient(exc):
                    raise  # the caller waits for the server
                if _schema_race(exc) and attempt + 1 < SCHEMA_RACE_TRIES:
                    time.sleep(random.uniform(0.2, 1.0))  # another process is creating the tables
                    continue
                raise UserError(f"--storage {safe_url(url)}: {root_text(exc)}") from exc
    raise AssertionError("unreachable")


def _schema_race(exc: BaseException) -> bool:
    """Two processes creating Optuna's tables in an empty database at once (a head node
    and its workers starting together): the loser sees the winner's rows or tables."""
    text = root_text(exc)
    return isinstance(exc, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)) or any(
        sign in text for sign in ("UNIQUE constraint failed", "already exists", "duplicate key"))


def with_driver(url: str) -> str:
    """`postgresql://` with the driver winopt installs (psycopg2, the `postgres` extra):
    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3."""
    if url.startswith("postgresql://"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
            return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


class Heartbeat:
    """Records a trial's heartbeat every `interval` seconds until stopped. Unlike Optuna's
    own heartbeat thread, which dies at the first storage error, it logs the error and
    beats again at the next interval, so a trial survives a database restart."""

    def __init__(self, storage: RDBStorage, trial_id: int, interval: float,
                 number: int | None = None) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.name = f"trial {number}" if number is not None else f"trial id {trial_id}"
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}",
                                        daemon=True)
        self.errors = 0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
                if self.errors:
                    log.info("heartbeat of %s recorded again", self.name)
                    self.errors = 0
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                self.errors += 1
                _trouble()
                log.warning("heartbeat of %s failed (%s); beating on", self.name, root_text(exc))
