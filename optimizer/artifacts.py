"""Where a shared study's survivors travel (SPEC §7): one of Optuna's artifact stores,
named by one string that the worker, the head node's publisher and the daemon's config
all use.

- a directory (`/srv/winopt/artifacts`): `FileSystemArtifactStore`, for a path every
  machine mounts (NFS);
- `s3://BUCKET`: `Boto3ArtifactStore`, for rigs that share no filesystem (AWS S3, MinIO,
  Ceph). boto3 finds the endpoint and the credentials as every AWS tool does, in the
  environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), so
  no secret is on a command line.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore

from winopt.contracts.errors import UserError

S3_PREFIX = "s3://"


def check_artifacts(where: str, flag: str = "--artifacts") -> str:
    """`where` when winopt can use it, else a one-line `UserError` saying what to do: at
    start, so that a worker does not fail at its first new best."""
    if where.startswith(S3_PREFIX):
        bucket = where[len(S3_PREFIX):]
        if not bucket or "/" in bucket.rstrip("/"):
            raise UserError(f"{flag} {where}: give a bucket alone (s3://BUCKET); Optuna names "
                            "the objects in it")
        if importlib.util.find_spec("boto3") is None:
            raise UserError(f"{flag} {where}: an S3 artifact store needs boto3: install "
                            "winopt[s3] (pip install 'winopt[s3]')")
    elif "://" in where:
        raise UserError(f"{flag} {where}: give a directory or s3://BUCKET")
    return where


def artifact_store(where: str, *, create: bool = False) -> Any:
    """The Optuna artifact store `where` names (see `check_artifacts`); `create`: make the
    directory of a file-system store (a worker's first upload)."""
    if where.startswith(S3_PREFIX):
        return Boto3ArtifactStore(where[len(S3_PREFIX):].rstrip("/"))
    if create:
        Path(where).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(where)
