"""bidirectional_survivors_binary.meta.json (SPEC §3): what an NPZ was converted from.

The converter writes it beside each NPZ; the converter (is it stale?), the daemon (status,
rsync) and the rigs read it. Written and read through one Struct, so the two sides cannot
drift; a meta that does not decode (missing, torn by hand, another schema) reads as None,
which to every reader means the same: rebuild the NPZ.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from winopt.contracts.schemas import NPZ_SCHEMA_VERSION


class NpzSource(msgspec.Struct, kw_only=True):
    """The survivors file the NPZ was made from: its identity is the sha256."""

    name: str
    path: str
    sha256: str
    size: int
    mtime: str
    mtime_ns: int


class NpzEncodings(msgspec.Struct, kw_only=True):
    """The code tables as the old converter's meta laid them out (every code, so a rig's
    reader learns codes its own table lacks), plus each array's dtype."""

    prng_type: dict[str, int]
    skip_mode: dict[str, int]
    dtypes: dict[str, str]


class NpzMeta(msgspec.Struct, kw_only=True):
    """The meta, in the order written."""

    schema_version: int = NPZ_SCHEMA_VERSION
    count: int
    source: NpzSource
    npz_sha256: str
    npz_size: int
    encodings: NpzEncodings
    warnings: list[str] = []  # what an old-pipeline file left to defaults
    converted_at: str
    converter: str

    @property
    def current(self) -> bool:
        """Of this NPZ_SCHEMA_VERSION (an older winopt's NPZ lacks arrays: rebuild it)."""
        return self.schema_version == NPZ_SCHEMA_VERSION


def npz_meta_path(npz: str | os.PathLike[str]) -> Path:
    """`STEM.meta.json` beside `STEM.npz` (bidirectional_survivors_binary.meta.json for the
    default NPZ name)."""
    npz = Path(npz)
    stem = npz.name[: -len(".npz")] if npz.name.endswith(".npz") else npz.name
    return npz.with_name(stem + ".meta.json")


def read_npz_meta(path: str | os.PathLike[str]) -> NpzMeta | None:
    """The meta, or None when it is missing, unreadable or not this layout."""
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=NpzMeta)
    except (OSError, msgspec.DecodeError):
        return None
