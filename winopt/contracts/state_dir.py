"""The daemon's state directory (SPEC §5, §6): its folders and files, and the names that
mean something in the spool. The daemon writes here; `winopt submit`, `cancel`, `sync`,
`clean`, `jobs`, `status` and `logs` read or drop files here: they meet in this module.

    STATE/spool/          users' drop box: NAME.toml|json (a job), ID.cancel, *.sync, *.clean
    STATE/accepting/      a spool file being taken (the daemon's alone)
    STATE/rejected/       refused files, each with NAME.error saying why
    STATE/jobs/ID/        a job's directory (its run)
    STATE/status.json     the daemon's status file
    STATE/decisions.jsonl every watcher decision, one JSON line each
    STATE/daemon.jsonl    the daemon's log lines, group-readable (`winopt logs`)

A name that starts with '.' or ends with '.tmp' is a writer's temp file (see
`winopt.contracts.publish`), never a finished file, wherever it lies.
"""

from __future__ import annotations

SPOOL_DIR, ACCEPTING_DIR, REJECTED_DIR, JOBS_DIR = "spool", "accepting", "rejected", "jobs"
STATUS_NAME = "status.json"
DECISIONS_NAME = "decisions.jsonl"
LOG_NAME = "daemon.jsonl"
#: in a job's directory jobs/ID/: its record, its optimizer's pid and its log
STATE_FILE, PID_FILE, LOG_FILE = "state.json", "optimizer.pid", "optimizer.log"
#: in a finished job's directory: the daemon's end-of-job work (its shared study closed,
#: report.html) is done; a job that ended without it gets it at the daemon's next start
ENDED_MARK = ".ended"

#: a job file in the spool
JOB_SUFFIXES = (".toml", ".json")
#: `winopt cancel`'s request: spool/ID.cancel
CANCEL_SUFFIX = ".cancel"
#: `winopt sync`'s request: spool/sync-*.sync
SYNC_SUFFIX, SYNC_PREFIX = ".sync", "sync-"
#: `winopt clean`'s request: spool/*.clean
CLEAN_SUFFIX = ".clean"
#: why a file was refused, beside it in rejected/
ERROR_SUFFIX = ".error"
#: requests that other daemon handlers take from the spool (never jobs)
FOREIGN_SUFFIXES = (SYNC_SUFFIX, CLEAN_SUFFIX)


def is_temp_name(name: str) -> bool:
    """A writer's temp file (`.name.tmp`, `x.tmp`, a dotfile): never a finished file."""
    return name.startswith(".") or name.endswith(".tmp")


def is_request(name: str, suffix: str) -> bool:
    """A finished spool file of one kind (`.sync`, `.clean`, ...), not a temp file."""
    return name.endswith(suffix) and not is_temp_name(name)


def is_job_candidate(name: str) -> bool:
    """A finished spool file that is not another handler's request: a job, a cancel, or
    something to refuse."""
    return not is_temp_name(name) and not name.endswith(FOREIGN_SUFFIXES)
