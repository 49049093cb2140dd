"""The daemon's config file (/etc/winopt/daemon.toml, documented in etc/daemon.toml) as
msgspec Structs: every key, its type, limits and default, in one place. Strict, because a
daemon that ignores a misspelt key (`debounse = 5`) runs for months with a setting nobody
chose. `[decisions]` and `[rigs.NAME]` stay tables here: their keys belong to the decision
rules and to the rigs, which check them one by one so that an error names the threshold or
the rig; `winopt.daemon.config` does that, the checks across keys, and the flags.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from winopt.contracts.errors import UserError
from winopt.contracts.strict import FLOAT_MAX, convert, parse_duration, shown
from winopt.contracts.urls import safe_url

DEFAULT_STATE_DIR = Path("/var/lib/winopt")
LOG_LEVELS = ("debug", "info", "warning", "error")

Seconds = Annotated[float, Meta(ge=0, le=FLOAT_MAX)]
PositiveSeconds = Annotated[float, Meta(gt=0, le=FLOAT_MAX)]
LogLevel = Annotated[str, Meta(pattern=f"(?i)^({'|'.join(LOG_LEVELS)})$", description=f"one of {', '.join(LOG_LEVELS)}")]
GpuId = Annotated[
    Annotated[int, Meta(ge=0)] | Annotated[str, Meta(pattern=r"\S")],
    Meta(description="a GPU index >= 0 or a GPU id string"),
]
#: Path fields are absolute paths, checked by `_dec_hook`
Paths = Annotated[tuple[Path, ...], Meta(description="a list of absolute paths")]


class Duration(float):
    """Seconds, more than 0, given as a number or as a duration such as "30d" or "12h"."""


class _Table(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A config table: unknown keys are errors, values are checked on conversion only."""


class JobsConfig(_Table):
    """`[jobs]`: the spool and its job runner (daemon.adapters.jobs)."""

    max_parallel_jobs: Annotated[int, Meta(ge=1, le=1024)] = 1
    gpus: Annotated[tuple[GpuId, ...], Meta(description="a list of GPU ids")] = ()
    #: where job draws files may live; None: STATE/draws (see `DaemonConfig.draws_dirs`)
    allowed_draws_dirs: Paths | None = None
    #: seconds a spool file written in place must rest before it is read
    grace: Seconds = 2.0
    #: seconds a stopped or cancelled optimizer gets after SIGTERM before SIGKILL
    stop_timeout: PositiveSeconds = 60.0
    #: finished jobs status.json keeps (the newest): it is rewritten on every change, so
    #: months of jobs must not make each rewrite megabytes (their directories stay)
    finished_kept: Annotated[int, Meta(ge=0, le=1 << 20)] = 100
    #: the largest draws file a job may name: the daemon parses it to check the job, so
    #: a huge one would cost it memory (issue 11); 16 MiB is decades of draws many times
    max_draws_bytes: Annotated[int, Meta(ge=1024, le=1 << 32)] = 16 << 20
    #: seconds after which finished jobs, refused files and rotated decision logs are
    #: removed (daemon/adapters/clean.py); None: kept for ever
    keep: Duration | None = None


class DistributionConfig(_Table):
    """`[distribution]`: how NPZ files reach the rigs (daemon.adapters.rigs)."""

    #: rsync transfers at once, over all rigs (each rig still sends one at a time)
    max_parallel: Annotated[int, Meta(ge=1, le=256)] = 4
    #: a failed transfer is tried again after retry_base * retry_factor**(n-1) seconds,
    #: never more than retry_cap, each delay shortened by up to retry_jitter (a fraction)
    retry_base: PositiveSeconds = 2.0
    retry_cap: PositiveSeconds = 300.0
    retry_factor: Annotated[float, Meta(ge=1, le=FLOAT_MAX)] = 2.0
    retry_jitter: Annotated[float, Meta(ge=0, le=1)] = 0.5
    #: configuration failures (rsync exit 1, 2, 4; permission denied; unknown host key)
    #: after this many tries mark the rig `failed`; it is then tried once per retry_cap
    config_tries: Annotated[int, Meta(ge=1, le=1000)] = 3


class ConvertConfig(_Table):
    """`[convert]`: how survivors become the rigs' NPZ (handlers.convert)."""

    #: a larger survivors file is not read: its run keeps its NPZ and escalates
    max_survivors_bytes: Annotated[int, Meta(ge=1, le=1 << 50)] = 4 << 30


StorageUrl = Annotated[str, Meta(pattern=r"^(postgresql(\+\w+)?://|sqlite:///)",
                                  description="a postgresql://... or sqlite:///... URL")]


class OptunaConfig(_Table):
    """`[optuna]`: the shared study storage (SPEC §7) `workers = "rigs"` jobs open their
    studies in, and the artifact store (a directory every machine mounts, or s3://BUCKET). It holds a password:
    its repr (a reload logs changed values) shows the URL without it."""

    storage: StorageUrl | None = None
    artifacts: Annotated[str, Meta(pattern=r"^(/|s3://[^/]+/?$)",
                                   description="an absolute path or s3://BUCKET")] | None = None

    def __repr__(self) -> str:
        shown_url = safe_url(self.storage) if self.storage else self.storage
        return f"OptunaConfig(storage={shown_url!r}, artifacts={self.artifacts!r})"


class DaemonFile(_Table):
    """The whole file. `winopt.daemon.config.DaemonConfig` adds where it was read from."""

    state_dir: Path = DEFAULT_STATE_DIR
    watch: Paths = ()
    debounce: Seconds = 0.5
    max_delay: PositiveSeconds = 5.0
    workers: Annotated[int, Meta(ge=1, le=64)] = 2
    reconcile_interval: Annotated[float, Meta(ge=1, le=FLOAT_MAX)] = 300.0
    decide_interval: Annotated[float, Meta(ge=1, le=FLOAT_MAX)] = 60.0
    status_interval: Seconds = 0.25
    log_level: LogLevel = "info"
    #: `[decisions]`: threshold name -> value, as `handlers.evaluate.thresholds` reads them
    thresholds: dict[str, Any] = msgspec.field(default_factory=dict, name="decisions")
    jobs: JobsConfig = JobsConfig()
    #: `[rigs.NAME]` tables; `winopt.daemon.config` turns each into a `handlers.rigs.Rig`
    rigs: dict[str, Any] = msgspec.field(default_factory=dict)
    distribution: DistributionConfig = DistributionConfig()
    convert: ConvertConfig = ConvertConfig()
    optuna: OptunaConfig = OptunaConfig()


def parse_file(raw: Any) -> DaemonFile:
    """`raw` (a parsed TOML document) as a DaemonFile; SchemaError names the key."""
    return convert(raw, DaemonFile, dec_hook=_dec_hook)


def _dec_hook(kind: type, value: Any) -> Any:
    """Paths are absolute path strings; a Duration is seconds or "30d"."""
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise TypeError(f"must be a path string, got {shown(value)}")
        if not value.startswith("/"):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return Path(value)
    if kind is Duration:
        if isinstance(value, str):
            try:
                value = parse_duration(value)
            except UserError:
                raise ValueError(f'must be a duration like "30d", "12h" or seconds, got {value!r}') from None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"must be a number, got {shown(value)}")
        if not 0 < value <= FLOAT_MAX:
            raise ValueError(f"must be {'> 0' if value <= 0 else 'finite'}, got {value}")
        return Duration(value)
    raise NotImplementedError(kind)
