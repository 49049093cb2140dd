"""The daemon's configuration: one TOML file, strictly validated, plus command-line overrides.

The file's schema (every key, its type, limits and default) is `winopt.contracts.daemon_config`;
this module reads the file, checks what involves more than one key, hands `[decisions]`
and `[rigs.NAME]` to the handlers that own their keys, and applies the flags. Every problem
becomes one `ConfigError` line naming the file and the key; at start the daemon exits 2
with it, at reload (SIGHUP) it keeps the config it has and logs the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from winopt.contracts.bounded_read import load_toml
from winopt.contracts.daemon_config import (DEFAULT_STATE_DIR, LOG_LEVELS, ConvertConfig, DaemonFile,
                                            DistributionConfig, JobsConfig, StorageUrl,
                                            parse_file)
from winopt.contracts.errors import UserError
from winopt.contracts.strict import SchemaError, convert, shown
from winopt.handlers.evaluate.thresholds import Thresholds
from winopt.handlers.rigs.config import merge_rigs, parse_rig_arg, parse_rigs

__all__ = [  # the schema's sections and defaults too, as the daemon's config
    "DEFAULT_CONFIG_PATH", "DEFAULT_STATE_DIR", "MAX_CONFIG_BYTES", "ConfigError", "ConvertConfig", "DaemonConfig",
    "DistributionConfig", "JobsConfig", "default_config_path", "load_config", "parse_config", "resolve_config",
    "run_names", "with_overrides",
]

DEFAULT_CONFIG_PATH = Path("/etc/winopt/daemon.toml")
#: a config is a page or two of TOML: anything bigger, or nested deeper, is not one (and
#: reading it must not cost the daemon its memory or, as RecursionError, its life)
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32


class ConfigError(UserError):
    """A configuration problem, one line naming the file and the key."""


class DaemonConfig(DaemonFile, frozen=True, kw_only=True):
    """Everything the daemon reads from its config file, after validation and overrides:
    the file's keys (`rigs` now rig name -> `handlers.rigs.Rig`) and where it was read."""

    source: Path | None = None

    def make_thresholds(self) -> Any:
        """The `handlers.evaluate.Thresholds` these `[decisions]` values describe (that
        handler owns their names, types and limits; `stall_after` may be "2h")."""
        return Thresholds.from_mapping(self.thresholds)

    def draws_dirs(self) -> tuple[Path, ...]:
        """Where job draws files may live: `[jobs] allowed_draws_dirs`, else STATE/draws
        (inside the state dir, which the service can always read)."""
        if self.jobs.allowed_draws_dirs is not None:
            return self.jobs.allowed_draws_dirs
        return (self.state_dir / "draws",)


def parse_config(raw: Any, source: str) -> DaemonConfig:
    """Validate a parsed TOML document and build the `DaemonConfig` it describes."""
    try:
        file = parse_file(raw)
    except SchemaError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _check_thresholds(file.thresholds, source)
    values = msgspec.structs.asdict(file)
    values["log_level"] = file.log_level.lower()
    values["rigs"] = _rigs(file.rigs, source)
    config = DaemonConfig(**values)
    _cross_checks(config, source)
    return config


def _check_thresholds(table: dict[str, Any], source: str) -> None:
    """`[decisions]` keys are `handlers.evaluate.Thresholds` fields, checked one by one by
    that class (it owns their types and limits) so the error names the key."""
    known = Thresholds.__struct_fields__
    for key, value in table.items():  # each value alone; the tiers' order is checked on the whole table
        where = f"{source}: decisions.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(known)})")
        try:
            Thresholds.check_field(key, value)
        except UserError as exc:
            raise ConfigError(f"{where}: {str(exc).removeprefix(f'threshold {key}: ')}") from None


def _rigs(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """`[rigs.NAME]` tables, validated by the distribution handler (it owns their keys)."""
    try:
        return parse_rigs(raw, source=source, base_dir=Path(source).parent)
    except UserError as exc:
        raise ConfigError(str(exc)) from None


def _cross_checks(config: DaemonConfig, source: str) -> None:
    """Checks that involve more than one key, or all of a list."""
    if config.max_delay < config.debounce:
        raise ConfigError(
            f"{source}: max_delay: must be >= debounce ({config.debounce:g}), got {config.max_delay:g}"
        )
    if len(set(config.watch)) != len(config.watch):
        raise ConfigError(f"{source}: watch: lists a directory twice")
    if len(set(map(str, config.jobs.gpus))) != len(config.jobs.gpus):
        raise ConfigError(f"{source}: jobs.gpus: lists a GPU twice")
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
    return msgspec.structs.replace(parse_config(raw, str(path)), source=path)


def with_overrides(
    config: DaemonConfig,
    *,
    state_dir: str | None = None,
    watch: list[str] | None = None,
    log_level: str | None = None,
    rigs: list[str] | None = None,
    storage: str | None = None,
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
        if log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"--log-level: must be one of {', '.join(LOG_LEVELS)}, got {shown(log_level)}")
        changes["log_level"] = log_level.lower()
    if rigs:
        try:
            changes["rigs"] = merge_rigs(config.rigs, [parse_rig_arg(text) for text in rigs])
        except UserError as exc:
            raise ConfigError(str(exc)) from None
    if storage:
        try:
            changes["optuna"] = msgspec.structs.replace(config.optuna, storage=convert(storage, StorageUrl))
        except SchemaError as exc:
            raise ConfigError(f"--storage: {exc.problem}") from None
    return msgspec.structs.replace(config, **changes)


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
    storage: str | None = None,
) -> DaemonConfig:
    """The config the daemon runs with: the file (when given or present at the default
    path, else the defaults) with the command-line flags applied."""
    path = Path(config_path).absolute() if config_path is not None else default_config_path()
    base = load_config(path) if path is not None else DaemonConfig()
    return with_overrides(base, state_dir=state_dir, watch=watch, log_level=log_level, rigs=rigs,
                          storage=storage)


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
