"""Job ids as people see and type them (issue 12, item 4).

A job id (`20250131T235959Z-name-1a2b3c`) is too long for an 80-column table, so tables
show its short form: the date it was made and its random tail (`0131-1a2b3c`), which
tells jobs apart as well as the whole id does. Whatever a table shows, a person can type
back: `winopt cancel`, `logs` and `clean` take the whole id, the short form, or a unique
tail or start of the id, looked up among the job directories.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from winopt.contracts.access import denied
from winopt.contracts.errors import UserError
from winopt.handlers.jobs.ids import is_job_id

#: characters of a tail or start that select a job (fewer would match too many by chance)
MIN_REF = 4
#: what a reference to a job may hold: the characters of an id
REF_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def short_id(job_id: str) -> str:
    """`0131-1a2b3c` for `20250131T235959Z-name-1a2b3c` (anything else unchanged)."""
    if not is_job_id(job_id):
        return job_id
    return f"{job_id[4:8]}-{job_id.rsplit('-', 1)[1]}"


def matches(job_id: str, text: str) -> bool:
    """Whether `text` names `job_id`: the id, its short form, or a tail or start of it
    at least MIN_REF characters long."""
    if text in (job_id, short_id(job_id)):
        return True
    return len(text) >= MIN_REF and (job_id.endswith(text) or job_id.startswith(text))


def resolve_job_id(text: str, jobs_dir: Path) -> str:
    """The one job id `text` names among the directories in `jobs_dir`; a whole id is
    taken as it is (the job may still be in the spool). One-line errors say what to do."""
    if is_job_id(text):
        return text
    if not REF_RE.fullmatch(text):
        raise UserError(f"{text!r} is not a job id (like 20250131T235959Z-name-1a2b3c, or its short form "
                        "0131-1a2b3c)")
    try:
        ids = [n for n in os.listdir(jobs_dir) if is_job_id(n)]
    except PermissionError:
        raise UserError(f"{jobs_dir}: {denied(jobs_dir)}") from None
    except FileNotFoundError:
        ids = []
    found = sorted(i for i in ids if matches(i, text))
    if not found:
        raise UserError(f"no job {text!r} in {jobs_dir} (winopt jobs lists them; give the id or its short form)")
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise UserError(f"{text!r} names {len(found)} jobs ({shown}): give more of the id")
    return found[0]
