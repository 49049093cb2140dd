"""Job ids, and file names as messages and rejected/ may show them.

A job id is `UTCTIME-NAME-RANDOM` (`20250131T235959Z-sweep-1a2b3c`): sortable by creation
time, safe in paths and log fields, and unique however many jobs share a name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
from pathlib import Path



#: 20250131T235959Z-NAME-1a2b3c: sortable by creation time, safe in paths and log fields
JOB_ID_RE = re.compile(r"\d{8}T\d{6}Z-[A-Za-z0-9_][A-Za-z0-9._-]{0,39}-[0-9a-f]{6}")
#: a file name's limit in bytes (Linux NAME_MAX)
NAME_MAX = 255



def new_job_id(name: str, now: dt.datetime | None = None) -> str:
    """`UTCTIME-NAME-RANDOM`: sorts by creation time; the random part keeps two jobs with
    one name in one second apart."""
    when = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return f"{when:%Y%m%dT%H%M%SZ}-{id_name(name)}-{secrets.token_hex(3)}"


def id_name(text: str) -> str:
    """The name part of an id: `text` with anything but letters, digits, '.', '_', '-'
    turned into '-', at most 40 characters, 'job' when nothing is left."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip(".-")[:40]
    return safe or "job"


def is_job_id(text: str) -> bool:
    return JOB_ID_RE.fullmatch(text) is not None


def printable(name: str) -> str:
    """A file name as it may appear in a one-line message (control characters escaped)."""
    return name if name.isprintable() else repr(name)[1:-1]



def fit_name(name: str, limit: int) -> str:
    """`name`, or when it is longer than `limit` bytes a shortened form that keeps its
    suffix and stays unique (a hash of the whole name), so prefixes and `.error` fit."""
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix) <= 16 else ""
    digest = hashlib.sha256(raw).hexdigest()[:12]
    head = raw[: limit - len(os.fsencode(suffix)) - len(digest) - 1].decode("utf-8", errors="ignore")
    return f"{head}~{digest}{suffix}"
