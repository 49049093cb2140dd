"""Spool job files (SPEC §5): the format, its strict validator, and the `winopt optimize`
argv a valid job becomes.

A job is declarative: a draws file, a PRNG, a trial count, a seed range, a strategy and
search bounds. It can never name a command or a storage URL, and its draws file must lie
under one of the directories the daemon allows, because the daemon runs it with its own
rights. Every problem is one `JobError` line naming the file and the key, so a person who
dropped a bad file reads `rejected/NAME.error` and knows what to fix.

Format (TOML or JSON, by extension; `winopt submit --example` prints `winopt/job.example.toml`):

    draws = "pick3.json"          # required; relative paths: see `resolve_draws`
    trials = 50                   # required, 1 .. 1,000,000
    prng = "java_lcg"             # a family of SPEC §1 (default java_lcg)
    seed_start = 0                # optional; seed range [seed_start, seed_start+seed_count)
    seed_count = 1000000          # optional, at most 2**64 - 1
    strategy = "bayesian"         # or "random"
    mod = 1000                    # optional, draws lie in [0, mod)
    time_of_day = "all"           # or a list: ["midday", "evening"]
    window_size = [4, 12]         # each window parameter: a fixed value or [lo, hi]
    offset = 0
    skip_min = [0, 5]
    skip_max = [10, 100]
    forward_threshold = [0.2, 0.5]
    reverse_threshold = 0.3
    name = "pick3-midday"         # optional; letters, digits, '.', '_', '-'
    rigs = ["rig1", "rig2"]       # optional; names of configured rigs
    priority = 0                  # optional; higher runs first, FIFO within a priority
    cores = 4                     # optional; CPU cores its sieve uses (default: all)
    workers = "local"             # or "rigs": a study in the daemon's shared storage, run by
                                  # every `winopt worker` (SPEC §7); the daemon publishes it
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from collections.abc import Callable
from pathlib import Path
from typing import Any

from winopt.contracts.job import DEFAULT_PRNG, JobSpec
from winopt.optimizer.space import LIMITS, format_bounds, skips_that_cannot_hold
from winopt.contracts.schemas import PRNG_CODES, TIME_OF_DAY
from winopt.contracts.errors import UserError
from winopt.contracts.state_dir import JOB_SUFFIXES
from winopt.handlers.jobs.draws import DEFAULT_MAX_DRAWS_BYTES, history_length, read_draws
from winopt.optimizer.sieve.generators import check_seed_range

#: suffix -> parser name; anything else in the spool is not a job file
#: a job file larger than this is not a job (a mistaken copy of a draw history, say)
MAX_JOB_BYTES = 64 * 1024
STRATEGIES = ("bayesian", "random")
WORKERS = ("local", "rigs")
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
MAX_TRIALS = 1_000_000
MAX_PRIORITY = 1000
MAX_RIGS = 64
SEED_LIMIT = 1 << 64
#: the most seeds a job may sieve: 2**64 seeds would pass the range check, but a job's
#: state file is JSON written by orjson, whose integers stop at 2**64 - 1, and a value
#: the validator accepts must be one the job store can write (issue 11)
MAX_SEED_COUNT = SEED_LIMIT - 1
#: (resolved draws path) -> the file's bytes; raises UserError naming the file
DrawsReader = Callable[[Path], bytes]

REQUIRED = ("draws", "trials")
KEYS = (
    "draws", "trials", "prng", "seed_start", "seed_count", "strategy", "mod",
    "time_of_day", *LIMITS, "name", "rigs", "priority", "cores", "workers",
)
#: the most cores a job may ask for (more than a machine has is capped at run time)
MAX_CORES = 4096
#: keys people may try, with the reason they are refused
REFUSED = {
    "command": "a job cannot name a command (it always runs `winopt optimize`)",
    "cmd": "a job cannot name a command (it always runs `winopt optimize`)",
    "argv": "a job cannot name a command (it always runs `winopt optimize`)",
    "storage": "a job's Optuna storage is always the SQLite file in its job directory",
    "out": "a job's output directory is always its job directory",
}


class JobError(UserError):
    """A job file problem: one line naming the file and, when there is one, the key."""

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


# ---------------------------------------------------------------------------- parsing


def parse_job_bytes(data: bytes, source: str, suffix: str) -> dict[str, Any]:
    """The job file's top-level table, or a `JobError` saying why it is not one."""
    if suffix not in JOB_SUFFIXES:
        raise JobError(source, None, f"not a job file (expected a name ending in {' or '.join(JOB_SUFFIXES)})")
    if len(data) > MAX_JOB_BYTES:
        raise JobError(source, None, f"more than {MAX_JOB_BYTES} bytes: too large for a job file")
    try:
        text = data.decode("utf-8")
        raw = tomllib.loads(text) if suffix == ".toml" else json.loads(text, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise JobError(source, None, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise JobError(source, None, f"not valid TOML: {exc}") from None
    except (json.JSONDecodeError, _DuplicateKey) as exc:
        raise JobError(source, None, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise JobError(source, None, "nested too deeply to be a job file") from None
    if not isinstance(raw, dict):
        raise JobError(source, None, f"expected a table of job keys, got {_kind(raw)}")
    return raw


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects with a key twice are ambiguous (TOML already refuses them)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"key {key!r} appears twice")
        out[key] = value
    return out


def load_job(
    path: str | os.PathLike[str],
    *,
    allowed_draws_dirs: Sequence[str | os.PathLike[str]] | None,
    base_dir: str | os.PathLike[str] | None = None,
    known_rigs: Sequence[str] | None = None,
) -> JobSpec:
    """Read, parse and validate the job file at `path` (see `validate_job`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JobError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    raw = parse_job_bytes(data, str(path), path.suffix)
    return validate_job(raw, source=str(path), allowed_draws_dirs=allowed_draws_dirs,
                        base_dir=base_dir, known_rigs=known_rigs)


# ---------------------------------------------------------------------------- validation


def validate_job(
    raw: Any,
    *,
    source: str,
    allowed_draws_dirs: Sequence[str | os.PathLike[str]] | None,
    base_dir: str | os.PathLike[str] | None = None,
    known_rigs: Sequence[str] | None = None,
    read: DrawsReader | None = None,
    shared_storage: bool | None = None,
) -> JobSpec:
    """Check every key of a parsed job and return the `JobSpec` it describes.

    `allowed_draws_dirs`: the draws file must resolve (symlinks followed) to a path under
    one of these; None skips that check (only `winopt submit` without a daemon config does
    that: the daemon always passes its list). `base_dir`: where a relative draws path is
    taken from (see `resolve_draws`). `known_rigs`: when given, every rig named must be
    one of them. `shared_storage`: when False, `workers = "rigs"` is refused (the daemon
    has no storage to open the study in; None: not checked). `read`: how the draws file's bytes are read (default: plainly, with the
    caller's rights, at most `DEFAULT_MAX_DRAWS_BYTES`; the daemon reads beneath its
    allowed directory and keeps the bytes it checked). Raises `JobError` (never anything
    else) for any problem.
    """
    if not isinstance(raw, dict):
        raise JobError(source, None, f"expected a table of job keys, got {_kind(raw)}")
    for key in raw:
        if not isinstance(key, str) or key not in KEYS:
            reason = REFUSED.get(key) if isinstance(key, str) else None
            raise JobError(source, _key_text(key), reason or f"unknown key (allowed: {', '.join(KEYS)})")
    for key in REQUIRED:
        if key not in raw:
            raise JobError(source, key, "missing (every job needs draws and trials)")
    values = _scalars(raw, source)
    if values.get("workers") == "rigs" and shared_storage is False:
        raise JobError(source, "workers", '"rigs" needs a shared storage and this daemon has none: '
                       'set [optuna] storage in daemon.toml and restart it, or use workers = "local"')
    bounds = {k: _bound(k, raw[k], source) for k in LIMITS if k in raw}
    _cross_check_bounds(bounds, source)
    tod = _time_of_day(raw["time_of_day"], source) if "time_of_day" in raw else None
    rigs = _rigs(raw.get("rigs", []), source, known_rigs)
    draws = resolve_draws(raw["draws"], source, allowed_draws_dirs, base_dir)
    try:
        data = (read or _read_plainly)(draws)
    except UserError as exc:
        raise JobError(source, "draws", str(exc)) from None
    check_draws(data, draws, source, mod=values.get("mod") or 1000, time_of_day=tod,
                min_window=bounds.get("window_size", (LIMITS["window_size"][1],))[0])
    return JobSpec(draws=str(draws), time_of_day=tod, bounds=bounds, rigs=rigs, **values)


def _scalars(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The single-valued keys, each checked for type and range."""
    out: dict[str, Any] = {"trials": _int(raw, "trials", 1, MAX_TRIALS, source)}
    for key, choices in (("prng", tuple(PRNG_CODES)), ("strategy", STRATEGIES)):
        if key in raw:
            out[key] = _choice(raw[key], key, choices, source)
    if "seed_start" in raw:
        out["seed_start"] = _int(raw, "seed_start", 0, SEED_LIMIT - 1, source)
    if "seed_count" in raw:
        out["seed_count"] = _int(raw, "seed_count", 1, MAX_SEED_COUNT, source)
    if out.get("seed_start", 0) + out.get("seed_count", 0) > SEED_LIMIT:
        raise JobError(source, "seed_count", "seed_start + seed_count passes 2**64")
    problem = check_seed_range(out.get("prng", DEFAULT_PRNG), out.get("seed_start", 0),
                               out.get("seed_count", 1))  # fmt: skip
    if problem:
        raise JobError(source, "seed_count" if "seed_count" in out else "seed_start", problem)
    if "mod" in raw:
        out["mod"] = _int(raw, "mod", 2, 1 << 32, source)
    if "priority" in raw:
        out["priority"] = _int(raw, "priority", -MAX_PRIORITY, MAX_PRIORITY, source)
    if "cores" in raw:
        out["cores"] = _int(raw, "cores", 1, MAX_CORES, source)
    if "name" in raw:
        out["name"] = check_name(raw["name"], "name", source)
    if "workers" in raw:
        out["workers"] = _choice(raw["workers"], "workers", WORKERS, source)
    return out


def _int(raw: Mapping[str, Any], key: str, lo: int, hi: int, source: str) -> int:
    value = raw[key]
    if type(value) is not int:
        raise JobError(source, key, f"must be an integer, got {_kind(value)}")
    if not lo <= value <= hi:
        raise JobError(source, key, f"must be between {lo} and {hi}, got {value}")
    return value


def _choice(value: Any, key: str, choices: Sequence[str], source: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise JobError(source, key, f"must be one of {', '.join(choices)}, got {_kind(value)}")
    return value


def check_name(value: Any, key: str, source: str) -> str:
    """A job or rig name: 1-64 of letters, digits, '.', '_', '-', not starting with '.' or
    '-' (so it is safe in a file name, a log line and a job id)."""
    if not isinstance(value, str):
        raise JobError(source, key, f"must be a string, got {_kind(value)}")
    if not NAME_RE.fullmatch(value):
        raise JobError(source, key, f"{_show(value)} is not a name: use 1-64 letters, digits, "
                       "'.', '_' or '-', not starting with '.' or '-'")
    return value


def _bound(key: str, value: Any, source: str) -> tuple[Any, Any]:
    """A fixed value or a `[lo, hi]` range of window parameter `key`, as `(lo, hi)`."""
    if isinstance(value, list):
        if len(value) != 2:
            raise JobError(source, key, f"a range is [lo, hi] (two values), got {len(value)} values")
        lo, hi = (_bound_value(key, v, source) for v in value)
        if lo > hi:
            raise JobError(source, key, f"range [{lo}, {hi}] is empty: lo is above hi")
        return lo, hi
    v = _bound_value(key, value, source)
    return v, v


def _bound_value(key: str, value: Any, source: str) -> Any:
    kind, lo, hi = LIMITS[key]
    if kind is int:
        if type(value) is not int:
            raise JobError(source, key, f"must be an integer or [lo, hi], got {_kind(value)}")
        if not lo <= value <= hi:
            raise JobError(source, key, f"{value} is outside {int(lo)}..{int(hi)}")
        return value
    if type(value) not in (int, float) or not math.isfinite(value):
        raise JobError(source, key, f"must be a number or [lo, hi], got {_kind(value)}")
    if not lo < value <= hi:
        raise JobError(source, key, f"{value} is outside (0, 1]: a threshold is a match rate")
    return float(value)


def _cross_check_bounds(bounds: Mapping[str, tuple[Any, Any]], source: str) -> None:
    """skip_max must be able to reach every skip_min (the optimizer draws skip_max >=
    skip_min), so the highest skip_max must be at least the highest skip_min."""
    if skips := skips_that_cannot_hold(dict(bounds)):
        skip_min_hi, skip_max_hi = skips
        key = "skip_max" if "skip_max" in bounds else "skip_min"
        raise JobError(source, key, f"highest skip_max {skip_max_hi} is below the highest "
                       f"skip_min {skip_min_hi}: that range cannot hold")


def _time_of_day(value: Any, source: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise JobError(source, "time_of_day", "an empty list selects nothing")
    for item in items:
        _choice(item, "time_of_day", TIME_OF_DAY, source)
    if len(set(items)) != len(items):
        raise JobError(source, "time_of_day", "lists a value twice")
    return tuple(items)


def _rigs(value: Any, source: str, known: Sequence[str] | None) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise JobError(source, "rigs", f"must be a list of rig names, got {_kind(value)}")
    if len(value) > MAX_RIGS:
        raise JobError(source, "rigs", f"{len(value)} rigs is more than {MAX_RIGS}")
    names = tuple(check_name(v, "rigs", source) for v in value)
    if len(set(names)) != len(names):
        raise JobError(source, "rigs", "lists a rig twice")
    unknown = [n for n in names if known is not None and n not in known]
    if unknown:
        raise JobError(source, "rigs", f"unknown rig {unknown[0]!r} (configured: {', '.join(known or []) or 'none'})")
    return names


# ---------------------------------------------------------------------------- draws file


def resolve_draws(
    value: Any,
    source: str,
    allowed_dirs: Sequence[str | os.PathLike[str]] | None,
    base_dir: str | os.PathLike[str] | None,
) -> Path:
    """The draws path, absolute with symlinks resolved, checked against `allowed_dirs`.

    A relative path is taken from `base_dir`. The daemon passes its first allowed draws
    directory (a job dropped into the spool says `draws = "pick3.json"` and means the
    file in the draws directory); `winopt submit` passes the current directory and writes
    the absolute path into the spool. With no `base_dir` a relative path is an error.
    """
    if not isinstance(value, str) or not value:
        raise JobError(source, "draws", f"must be a path string, got {_kind(value)}")
    if not value.isprintable():
        raise JobError(source, "draws", f"{_show(value)} contains control characters")
    path = Path(value)
    if not path.is_absolute():
        if base_dir is None:
            raise JobError(source, "draws", f"{value!r} is relative and there is no base directory: give an absolute path")
        path = Path(base_dir) / path
    try:
        resolved = Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:
        raise JobError(source, "draws", f"{path}: cannot resolve: {exc}") from None
    if allowed_dirs is not None and not any(_is_under(resolved, d) for d in allowed_dirs):
        roots = ", ".join(map(str, allowed_dirs)) or "none configured"
        raise JobError(source, "draws", f"{resolved} is not under an allowed draws directory ({roots})")
    return resolved


def _is_under(path: Path, root: str | os.PathLike[str]) -> bool:
    real_root = os.path.realpath(root)
    try:
        return os.path.commonpath([str(path), real_root]) == real_root
    except ValueError:
        return False


def check_draws(
    data: bytes, path: Path, source: str, *, mod: int, time_of_day: tuple[str, ...] | None, min_window: int
) -> None:
    """The draws file's bytes load for every time-of-day selection the job names, and
    each selection holds the smallest window (2 * window_size draws)."""
    for tod in time_of_day or ("all",):
        try:
            count = history_length(data, str(path), mod=mod, time_of_day=tod)
        except UserError as exc:
            raise JobError(source, "draws", str(exc)) from None
        if count < 2 * min_window:
            key = "window_size" if min_window > 1 else "draws"
            raise JobError(source, key, f"{path} has {count} draws for time_of_day {tod!r}, "
                           f"fewer than 2 * window_size = {2 * min_window}: no window fits")


def _read_plainly(path: Path) -> bytes:
    return read_draws(path, limit=DEFAULT_MAX_DRAWS_BYTES)


# ---------------------------------------------------------------------------- argv


def optimize_argv(
    spec: JobSpec, out_dir: str | os.PathLike[str], *, python: str | None = None,
    draws: str | os.PathLike[str] | None = None,
) -> list[str]:
    """The `winopt optimize` command line of a job: a list, never a shell string.

    The study name and storage are the optimizer's defaults for `--out` (the job
    directory's name, which is the job id, and SQLite in it), so running the same argv
    again resumes the study. `draws`: the copy of the draws file the daemon checked (in
    the job directory), which the optimizer reads instead of `spec.draws`."""
    command = "study" if spec.workers == "rigs" else "optimize"  # rigs: the shared storage's workers
    argv = [python or sys.executable, "-m", "winopt", command,
            "--draws", os.fspath(draws or spec.draws), "--out", os.fspath(out_dir),
            "--trials", str(spec.trials), "--prng", spec.prng, "--strategy", spec.strategy]
    for key in ("seed_start", "seed_count", "mod", "cores"):
        value = getattr(spec, key)
        if value is not None:
            argv += [_option(key), str(value)]
    for key, (lo, hi) in spec.bounds.items():
        argv += [_option(key), format_bounds(lo, hi)]
    if spec.time_of_day:
        argv += ["--time-of-day", ",".join(spec.time_of_day)]
    return argv


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


# ---------------------------------------------------------------------------- messages


def _kind(value: Any) -> str:
    """A value for a message: its type name and a short repr."""
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
             dict: "table", type(None): "null"}
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} {_show(value)}"


def _show(value: Any, limit: int = 40) -> str:
    """A short excerpt of a value for a message (repr: control characters escaped)."""
    try:
        text = repr(value)
    except RecursionError:
        text = "..."
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_text(key: Any) -> str:
    """A key as it appears in a one-line message: as written when it is short and
    printable, else its repr (which escapes newlines and control characters)."""
    if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 40:
        return key
    return _show(key)
