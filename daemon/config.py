"""The daemon's configuration: one TOML file, strictly validated, plus command-line overrides.

Strict because a daemon that silently ignores a misspelt key (`debounse = 5`) runs for
months with a setting nobody chose. Every problem becomes one `ConfigError` line naming the
file and the key; at start the daemon exits 2 with it, at reload (SIGHUP) it keeps the
config it has and logs the line. The schema is a table per section so that the next
handlers (spool jobs, rigs) add their keys without touching the validator.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winopt.contracts.bounded_read import load_toml
from winopt.contracts.errors import UserError

DEFAULT_CONFIG_PATH = Path("/etc/winopt/daemon.toml")
DEFAULT_STATE_DIR = Path("/var/lib/winopt")
LOG_LEVELS = ("debug", "info", "warning", "error")
#: a config is a page or two of TOML: anything bigger, or nested deeper, is not one (and
#: reading it must not cost the daemon its memory or, as RecursionError, its life)
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32


class ConfigError(UserError):
    """A configuration problem, one line naming the file and the key."""


@dataclass(frozen=True)
class JobsConfig:
    """`[jobs]`: the spool and its job runner (daemon/jobs.py)."""

    max_parallel_jobs: int = 1
    gpus: tuple[int | str, ...] = ()
    #: where job draws files may live; None: STATE/draws (see `DaemonConfig.draws_dirs`)
    allowed_draws_dirs: tuple[Path, ...] | None = None
    #: seconds a spool file written in place must rest before it is read
    grace: float = 2.0
    #: seconds a stopped or cancelled optimizer gets after SIGTERM before SIGKILL
    stop_timeout: float = 60.0
    #: finished jobs status.json keeps (the newest): it is rewritten on every change, so
    #: months of jobs must not make each rewrite megabytes (their directories stay)
    finished_kept: int = 100
    #: the largest draws file a job may name: the daemon parses it to check the job, so
    #: a huge one would cost it memory (issue 11); 16 MiB is decades of draws many times
    max_draws_bytes: int = 16 << 20
    #: seconds after which finished jobs, refused files and rotated decision logs are
    #: removed (daemon/adapters/clean.py); None: kept for ever
    keep: float | None = None


@dataclass(frozen=True)
class DistributionConfig:
    """`[distribution]`: how NPZ files reach the rigs (daemon/distribution.py)."""

    #: rsync transfers at once, over all rigs (each rig still sends one at a time)
    max_parallel: int = 4
    #: a failed transfer is tried again after retry_base * retry_factor**(n-1) seconds,
    #: never more than retry_cap, each delay shortened by up to retry_jitter (a fraction)
    retry_base: float = 2.0
    retry_cap: float = 300.0
    retry_factor: float = 2.0
    retry_jitter: float = 0.5
    #: configuration failures (rsync exit 1, 2, 4; permission denied; unknown host key)
    #: after this many tries mark the rig `failed`; it is then tried once per retry_cap
    config_tries: int = 3


@dataclass(frozen=True)
class ConvertConfig:
    """`[convert]`: how survivors become the rigs' NPZ (handlers/convert.py)."""

    #: a larger survivors file is not read: its run keeps its NPZ and escalates
    max_survivors_bytes: int = 4 << 30


@dataclass(frozen=True)
class DaemonConfig:
    """Everything the daemon reads from its config file, after validation and overrides."""

    state_dir: Path = DEFAULT_STATE_DIR
    watch: tuple[Path, ...] = ()
    debounce: float = 0.5
    max_delay: float = 5.0
    workers: int = 2
    reconcile_interval: float = 300.0
    decide_interval: float = 60.0
    status_interval: float = 0.25
    log_level: str = "info"
    thresholds: Mapping[str, float] = field(default_factory=dict)
    jobs: JobsConfig = JobsConfig()
    #: rig name -> `handlers.rigs.Rig`, validated by the distribution handler's own parser
    rigs: Mapping[str, Any] = field(default_factory=dict)
    distribution: DistributionConfig = DistributionConfig()
    convert: ConvertConfig = ConvertConfig()
    source: Path | None = None

    def make_thresholds(self) -> Any:
        """The `handlers.evaluate.Thresholds` these `[decisions]` values describe (that
        handler owns their names, types and limits; `stall_after` may be "2h")."""
        from winopt.handlers.evaluate.rules import Thresholds

        return Thresholds.from_mapping(self.thresholds)

    def draws_dirs(self) -> tuple[Path, ...]:
        """Where job draws files may live: `[jobs] allowed_draws_dirs`, else STATE/draws
        (inside the state dir, which the service can always read)."""
        if self.jobs.allowed_draws_dirs is not None:
            return self.jobs.allowed_draws_dirs
        return (self.state_dir / "draws",)


# ---------------------------------------------------------------- checks
Check = Callable[[Any], str | None]  # returns the problem, or None when the value is fine


def _number(minimum: float, *, strict: bool = False) -> Check:
    """A real number (int or float, not bool) >= minimum (> minimum when strict)."""

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {_show(value)}"
        if not math.isfinite(value):
            return f"must be finite, got {value}"
        if value < minimum or (strict and value == minimum):
            return f"must be {'>' if strict else '>='} {minimum:g}, got {value}"
        return None

    return check


def _integer(minimum: int, maximum: int = 1 << 20) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {_show(value)}"
        if not minimum <= value <= maximum:
            return f"must be between {minimum} and {maximum}, got {value}"
        return None

    return check


def _absolute_path(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be a path string, got {_show(value)}"
    if not os.path.isabs(value):
        return f"must be an absolute path, got {value!r}"
    return None


def _path_list(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"must be a list of absolute paths, got {_show(value)}"
    for i, item in enumerate(value):
        problem = _absolute_path(item)
        if problem:
            return f"[{i}] {problem}"
    return None


def _log_level(value: Any) -> str | None:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        return f"must be one of {', '.join(LOG_LEVELS)}, got {_show(value)}"
    return None


def _gpu_list(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"must be a list of GPU ids, got {_show(value)}"
    for i, item in enumerate(value):
        ok_int = isinstance(item, int) and not isinstance(item, bool) and item >= 0
        if not (ok_int or (isinstance(item, str) and item.strip())):
            return f"[{i}] must be a GPU index >= 0 or a GPU id string, got {_show(item)}"
    if len(set(map(str, value))) != len(value):
        return "lists a GPU twice"
    return None


def _keep(value: Any) -> str | None:
    """`[jobs] keep`: a duration ("30d", "12h") or seconds, more than 0."""
    problem = None if isinstance(value, str) else _number(0, strict=True)(value)
    if problem is None and isinstance(value, str):
        try:
            if _seconds(value) <= 0:
                problem = f"must be more than 0, got {value!r}"
        except UserError:
            problem = f"must be a duration like \"30d\", \"12h\" or seconds, got {value!r}"
    return problem


def _seconds(value: Any) -> float:
    from winopt.handlers.evaluate.rules import parse_duration

    return parse_duration(value) if isinstance(value, str) else float(value)


def _fraction(value: Any) -> str | None:
    problem = _number(0)(value)
    if problem is None and value > 1:
        return f"must be between 0 and 1, got {value}"
    return problem


def _show(value: Any) -> str:
    kind = {bool: "boolean", str: "string", list: "array", dict: "table"}.get(type(value))
    return f"{kind} {value!r}" if kind else repr(value)


# ---------------------------------------------------------------- schema
#: top-level key -> check; sections are validated by their own tables below
TOP_KEYS: dict[str, Check] = {
    "state_dir": _absolute_path,
    "watch": _path_list,
    "debounce": _number(0),
    "max_delay": _number(0, strict=True),
    "workers": _integer(1, 64),
    "reconcile_interval": _number(1),
    "decide_interval": _number(1),
    "status_interval": _number(0),
    "log_level": _log_level,
}
JOBS_KEYS: dict[str, Check] = {
    "max_parallel_jobs": _integer(1, 1024),
    "allowed_draws_dirs": _path_list,
    "grace": _number(0),
    "stop_timeout": _number(0, strict=True),
    "gpus": _gpu_list,
    "finished_kept": _integer(0),
    "max_draws_bytes": _integer(1024, 1 << 32),
    "keep": _keep,
}
DISTRIBUTION_KEYS: dict[str, Check] = {
    "max_parallel": _integer(1, 256),
    "retry_base": _number(0, strict=True),
    "retry_cap": _number(0, strict=True),
    "retry_factor": _number(1),
    "retry_jitter": _fraction,
    "config_tries": _integer(1, 1000),
}
CONVERT_KEYS: dict[str, Check] = {
    "max_survivors_bytes": _integer(1, 1 << 50),
}
SECTIONS = ("decisions", "jobs", "rigs", "distribution", "convert")


def _check_table(table: Mapping[str, Any], keys: Mapping[str, Check], where: str, source: str) -> None:
    """Reject unknown keys and values that fail their check, naming `where.key`."""
    for key, value in table.items():
        name = f"{where}{key}"
        if key not in keys:
            known = ", ".join(sorted(keys))
            raise ConfigError(f"{source}: {name}: unknown key (known: {known})")
        problem = keys[key](value)
        if problem:
            raise ConfigError(f"{source}: {name}: {problem}")


def _check_thresholds(table: Mapping[str, Any], source: str) -> None:
    """`[decisions]` keys are `handlers.evaluate.Thresholds` fields, checked one by one by
    that class (it owns their types and limits) so the error names the key."""
    from winopt.handlers.evaluate.rules import Thresholds

    known = [f.name for f in dataclasses.fields(Thresholds)]
    for key, value in table.items():  # each value alone; the tiers' order is checked on the whole table
        where = f"{source}: decisions.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(known)})")
        try:
            Thresholds.check_field(key, value)
        except UserError as exc:
            raise ConfigError(f"{where}: {str(exc).removeprefix(f'threshold {key}: ')}") from None


def _section(raw: Mapping[str, Any], name: str, source: str) -> Any:
    value = raw.get(name)
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{source}: {name}: must be a table [{name}], got {_show(value)}")
    return value


def _rigs(raw: Any, source: str) -> Mapping[str, Any]:
    """`[rigs.NAME]` tables, validated by the distribution handler (it owns their keys)."""
    if raw is None:
        return {}
    from winopt.handlers.rigs.config import parse_rigs

    try:
        return parse_rigs(raw, source=source, base_dir=Path(source).parent)
    except UserError as exc:
        raise ConfigError(str(exc)) from None


def parse_config(raw: Mapping[str, Any], source: str) -> DaemonConfig:
    """Validate a parsed TOML document and build the `DaemonConfig` it describes."""
    top = {k: v for k, v in raw.items() if k not in SECTIONS}
    _check_table(top, TOP_KEYS, "", source)
    decisions = _section(raw, "decisions", source) or {}
    _check_thresholds(decisions, source)
    jobs = _section(raw, "jobs", source) or {}
    _check_table(jobs, JOBS_KEYS, "jobs.", source)
    values: dict[str, Any] = dict(top)
    if "state_dir" in values:
        values["state_dir"] = Path(values["state_dir"])
    values["watch"] = tuple(Path(p) for p in values.get("watch", ()))
    if "log_level" in values:
        values["log_level"] = values["log_level"].lower()
    values["thresholds"] = dict(decisions)
    values["jobs"] = JobsConfig(
        max_parallel_jobs=jobs.get("max_parallel_jobs", 1), gpus=tuple(jobs.get("gpus", ())),
        allowed_draws_dirs=tuple(map(Path, jobs["allowed_draws_dirs"])) if "allowed_draws_dirs" in jobs else None,
        grace=float(jobs.get("grace", 2.0)), stop_timeout=float(jobs.get("stop_timeout", 60.0)),
        finished_kept=jobs.get("finished_kept", JobsConfig.finished_kept),
        max_draws_bytes=jobs.get("max_draws_bytes", JobsConfig.max_draws_bytes),
        keep=_seconds(jobs["keep"]) if "keep" in jobs else None,
    )
    values["rigs"] = _rigs(raw.get("rigs"), source)
    distribution = _section(raw, "distribution", source) or {}
    _check_table(distribution, DISTRIBUTION_KEYS, "distribution.", source)
    values["distribution"] = DistributionConfig(**distribution)
    convert = _section(raw, "convert", source) or {}
    _check_table(convert, CONVERT_KEYS, "convert.", source)
    values["convert"] = ConvertConfig(**convert)
    config = DaemonConfig(**values)
    _cross_checks(config, source)
    return config


def _cross_checks(config: DaemonConfig, source: str) -> None:
    """Checks that involve more than one key."""
    if config.max_delay < config.debounce:
        raise ConfigError(
            f"{source}: max_delay: must be >= debounce ({config.debounce:g}), got {config.max_delay:g}"
        )
    if len(set(config.watch)) != len(config.watch):
        raise ConfigError(f"{source}: watch: lists a directory twice")
    if config.distribution.retry_cap < config.distribution.retry_base:
        raise ConfigError(f"{source}: distribution.retry_cap: must be >= retry_base "
                          f"({config.distribution.retry_base:g}), got {config.distribution.retry_cap:g}")
    try:
        config.make_thresholds()
    except UserError as exc:
        raise ConfigError(f"{source}: decisions: {exc}") from None


def load_config(path: Path) -> DaemonConfig:
    """Read and validate the TOML file at `path`: a regular file only (a FIFO or device
    there is refused at once, never waited on: reloads run on the daemon's main loop), at
    most MAX_CONFIG_BYTES, nested at most MAX_CONFIG_DEPTH deep."""
    try:
        raw = load_toml(path, max_bytes=MAX_CONFIG_BYTES, max_depth=MAX_CONFIG_DEPTH, what="config file")
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    return dataclasses.replace(parse_config(raw, str(path)), source=path)


def with_overrides(
    config: DaemonConfig,
    *,
    state_dir: str | None = None,
    watch: list[str] | None = None,
    log_level: str | None = None,
    rigs: list[str] | None = None,
) -> DaemonConfig:
    """Apply command-line flags: they win over the file; `--watch` adds to the file's list,
    `--rig NAME=TARGET` to its rigs (a name the file has is an error, not an override).

    Relative paths on the command line are taken from the current directory, as a person
    typing them expects."""
    changes: dict[str, Any] = {}
    if state_dir:
        changes["state_dir"] = Path(state_dir).absolute()
    if watch:
        extra = [Path(w).absolute() for w in watch]
        changes["watch"] = tuple(dict.fromkeys([*config.watch, *extra]))
    if log_level:
        problem = _log_level(log_level)
        if problem:
            raise ConfigError(f"--log-level: {problem}")
        changes["log_level"] = log_level.lower()
    if rigs:
        from winopt.handlers.rigs.config import merge_rigs, parse_rig_arg

        try:
            changes["rigs"] = merge_rigs(config.rigs, [parse_rig_arg(text) for text in rigs])
        except UserError as exc:
            raise ConfigError(str(exc)) from None
    return dataclasses.replace(config, **changes)


def default_config_path() -> Path | None:
    """/etc/winopt/daemon.toml unless it is missing. A file we may not even stat (a user
    outside group winopt) still counts, so that loading it says so in one line instead of
    silently falling back to the defaults (or raising a traceback from `Path.exists`)."""
    try:
        DEFAULT_CONFIG_PATH.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        pass
    return DEFAULT_CONFIG_PATH


def resolve_config(
    config_path: str | None,
    *,
    state_dir: str | None = None,
    watch: list[str] | None = None,
    log_level: str | None = None,
    rigs: list[str] | None = None,
) -> DaemonConfig:
    """The config the daemon runs with: the file (when given or present at the default
    path, else the defaults) with the command-line flags applied."""
    path = Path(config_path).absolute() if config_path is not None else default_config_path()
    base = load_config(path) if path is not None else DaemonConfig()
    return with_overrides(base, state_dir=state_dir, watch=watch, log_level=log_level, rigs=rigs)


def run_names(dirs: tuple[Path, ...]) -> dict[Path, str]:
    """A short unique name per watched directory: its last path components, as few as
    make it unique (`out` alone, `a/out` and `b/out` when two end in `out`)."""
    names: dict[Path, str] = {}
    for d in dirs:
        parts = d.parts
        for k in range(1, len(parts) + 1):
            candidate = "/".join(parts[-k:]).lstrip("/") or "/"
            clash = [o for o in dirs if o != d and "/".join(o.parts[-k:]).lstrip("/") == candidate]
            if not clash:
                names[d] = candidate
                break
        else:
            names[d] = str(d)
    return names
