"""The rigs that receive NPZ files (SPEC §5 "Distribute"), validated strictly.

A rig is a name and a target: a local directory, or `[user@]host:/path/` reached with rsync
over ssh. The daemon config holds `[rigs.NAME]` tables and `winopt daemon|sync --rig
NAME=TARGET` adds rigs from the command line; both come through here so a typo fails at
start (or at reload) with one line naming the key, `rigs[NAME].KEY: problem`, instead of
a transfer failing later on a machine nobody is watching.

Layouts: `per-run` (default) puts each run in `TARGET/<run>/`; `flat` puts the files of the
one run named by `run` straight into TARGET, where a legacy Step 2.5 already looks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from winopt.contracts.errors import UserError, in_file
from winopt.contracts.strict import SchemaError, convert

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*\Z")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]\Z")
_BWLIMIT = re.compile(r"[0-9]+(\.[0-9]+)?[KMGkmg]?\Z")
#: characters that rsync's `-e` splitting or a remote shell would misread in a path
_UNSAFE_PATH = re.compile(r"[\x00-\x1f'\"\\`$]")

SSH_ONLY = ("port", "identity_file", "known_hosts", "connect_timeout")
#: rigs keep their wording for numbers out of range
PHRASES = {"range": "{value} is out of range {low}..{high}",
           "missing": "missing (a local directory or [user@]host:/path/)"}


class RigTable(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A `[rigs.NAME]` table as written (etc/daemon.toml documents each key); `rig_from_dict`
    checks what types and ranges cannot say."""

    target: str  # a local directory or [user@]host:/path/
    layout: Literal["per-run", "flat"] = "per-run"  # TARGET/<run>/, or TARGET itself for the one `run`
    run: str | None = None
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None  # None: ssh's own
    identity_file: Any = None  # files, resolved and checked by rig_from_dict
    known_hosts: Any = None
    bwlimit: Any = None  # rsync --bwlimit: KiB/s, or with a unit such as '20M'
    connect_timeout: Annotated[int, Meta(ge=1, le=600)] = 10  # seconds for the ssh connection
    io_timeout: Annotated[int, Meta(ge=1, le=86400)] = 60  # rsync --timeout: seconds without data
    transfer_timeout: Annotated[float, Meta(ge=1, le=7 * 86400)] = 900.0  # wall-clock seconds of one rsync


KEYS = RigTable.__struct_fields__


class RigError(UserError):
    """A rig definition that cannot work, named by rig and key."""


@dataclass(frozen=True)
class Rig:
    """One validated rig: where files go and how to get them there."""

    name: str
    target: str
    path: str
    host: str | None = None
    user: str | None = None
    layout: str = "per-run"
    run: str | None = None
    port: int | None = None
    identity_file: Path | None = None
    known_hosts: Path | None = None
    bwlimit: str | None = None
    connect_timeout: float = 10.0
    io_timeout: int = 60
    transfer_timeout: float = 900.0

    @property
    def is_ssh(self) -> bool:
        return self.host is not None

    def receives(self, run: str) -> bool:
        """Whether `run` goes to this rig when a job names no rigs (flat rigs take one run)."""
        return self.layout == "per-run" or run == self.run

    def directory(self, run: str) -> str:
        """The directory (on the rig) that receives `run`'s files, with a trailing slash."""
        check_run_name(run)
        base = self.path.rstrip("/")
        return f"{base}/" if self.layout == "flat" else f"{base}/{run}/"

    def destination(self, run: str) -> str:
        """The rsync destination argument for `run`: `[user@]host:/dir/` or `/dir/`."""
        directory = self.directory(run)
        if not self.is_ssh:
            return directory
        login = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{login}{host}:{directory}"


def check_run_name(run: str) -> str:
    """A run name becomes a directory on every rig: one safe path component, nothing more."""
    if not isinstance(run, str) or not _NAME.match(run) or run in (".", ".."):
        raise UserError(f"run name {run!r}: use letters, digits, '_', '.', '-' (not starting with '.' or '-')")
    return run


def parse_target(target: str) -> tuple[str | None, str | None, str]:
    """Split `[user@]host:/path` (ssh) or `/path` (local) into (user, host, path).

    rsync's own rule decides: a ':' before the first '/' means a remote host. Daemon
    targets (`host::module`, `rsync://`) and relative paths are refused: a daemon must not
    depend on its working directory or on a remote login's home."""
    if not isinstance(target, str) or not target.strip():
        raise ValueError("must be a non-empty string")
    if target != target.strip():
        raise ValueError("has leading or trailing spaces")
    slash = target.find("/")
    colon = _host_colon(target)
    if target.startswith("rsync://") or (colon >= 0 and target[colon + 1 : colon + 2] == ":"):
        raise ValueError("rsync daemon targets are not supported; use host:/path over ssh")
    if colon < 0 or (0 <= slash < colon):
        return None, None, _check_path(target)
    login, path = target[:colon], target[colon + 1 :]
    user, _, host = login.rpartition("@")
    if user and not _USER.match(user):
        raise ValueError(f"bad user name {user!r}")
    if not (_HOST.match(host) or _IPV6.match(host)):
        raise ValueError(f"bad host name {host!r}")
    return user or None, host.strip("[]"), _check_path(path)


def _host_colon(target: str) -> int:
    """Index of the colon ending `[user@]host` (skipping a bracketed IPv6 address), or -1."""
    at = target.find("@") + 1
    if target[at : at + 1] == "[":
        close = target.find("]", at)
        return close + 1 if close > 0 and target[close + 1 : close + 2] == ":" else -1
    return target.find(":")


def _check_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must be absolute")
    if _UNSAFE_PATH.search(path):
        raise ValueError(f"path {path!r} contains quotes, backslashes, '$' or control characters")
    if any(part == ".." for part in path.split("/")):
        raise ValueError(f"path {path!r} must not contain '..'")
    return path


def rig_from_dict(name: str, table: Mapping[str, Any], *, base_dir: Path | None = None) -> Rig:
    """Validate one `[rigs.NAME]` table. Relative file paths resolve against `base_dir`
    (the config file's directory), else the working directory."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise RigError(f"rigs[{name}]: rig names use letters, digits, '_', '.', '-'")
    if not isinstance(table, Mapping):
        raise RigError(f"rigs[{name}]: must be a table with at least 'target'")

    def bad(key: str, problem: str) -> RigError:
        return RigError(f"rigs[{name}].{key}: {problem}")

    try:
        t = convert(dict(table), RigTable, phrases=PHRASES)
    except SchemaError as exc:
        raise bad(exc.key, exc.problem) from None
    try:
        user, host, path = parse_target(t.target)
    except ValueError as exc:
        raise bad("target", str(exc)) from None
    for key in SSH_ONLY if host is None else ():
        if key in table:
            raise bad(key, "only applies to ssh targets (host:/path)")
    if t.layout == "flat":
        if t.run is None:
            raise bad("run", "required with layout 'flat' (the one run whose files land in target)")
        try:
            check_run_name(t.run)
        except UserError as exc:
            raise bad("run", str(exc)) from None
    elif t.run is not None:
        raise bad("run", "only applies to layout 'flat'")
    files = {key: _existing_file(getattr(t, key), base_dir, key, bad)
             for key in ("identity_file", "known_hosts") if getattr(t, key) is not None}  # fmt: skip
    return Rig(
        name=name, target=t.target, path=path, host=host, user=user, layout=t.layout, run=t.run, port=t.port,
        bwlimit=None if t.bwlimit is None else _bwlimit(t.bwlimit, bad), connect_timeout=float(t.connect_timeout),
        io_timeout=t.io_timeout, transfer_timeout=t.transfer_timeout, **files,
    )  # fmt: skip


def _bwlimit(value: Any, bad: Callable[[str, str], RigError]) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _BWLIMIT.match(text) or float(text.rstrip("KMGkmg")) <= 0:
        raise bad("bwlimit", f"{value!r} is not a positive rate (KiB/s, or e.g. '20M')")
    return text


def _existing_file(value: Any, base_dir: Path | None, key: str, bad: Callable[[str, str], RigError]) -> Path:
    if not isinstance(value, str) or not value:
        raise bad(key, f"must be a file path, not {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if _UNSAFE_PATH.search(str(path)):
        raise bad(key, f"{path} contains quotes, backslashes, '$' or control characters")
    if not path.is_file():
        raise bad(key, f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise bad(key, f"{path}: not readable")
    return path


def parse_rigs(
    table: Any, *, source: str | os.PathLike[str] | None = None, base_dir: Path | None = None
) -> dict[str, Rig]:
    """Validate the config's `rigs` table (NAME -> table). With `source`, errors name the
    file first (`FILE: rigs[NAME].KEY: problem`)."""
    try:
        if not isinstance(table, Mapping):
            raise RigError("rigs: must be a table of [rigs.NAME] tables")
        return {name: rig_from_dict(name, sub, base_dir=base_dir) for name, sub in table.items()}
    except RigError as exc:
        if source is None:
            raise
        raise in_file(source, str(exc)) from None


def parse_rig_arg(text: str) -> Rig:
    """`NAME=TARGET` from `--rig`: a per-run rig with default ssh settings."""
    name, sep, target = text.partition("=")
    if not sep or not name or not target:
        raise RigError(f"--rig {text!r}: expected NAME=TARGET, e.g. rig1=user@host:/data/winopt/")
    return rig_from_dict(name, {"target": target})


def merge_rigs(configured: Mapping[str, Rig], extra: list[Rig]) -> dict[str, Rig]:
    """Config rigs plus `--rig` ones; a name given twice is an error, not a silent override."""
    rigs = dict(configured)
    for rig in extra:
        if rig.name in rigs:
            raise RigError(f"--rig {rig.name}=...: a rig named {rig.name!r} is already defined")
        rigs[rig.name] = rig
    return rigs
