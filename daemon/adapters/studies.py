"""Shared studies inside the daemon (SPEC §7): a `workers = "rigs"` spool job runs as a
`winopt study` child (handlers.jobs.jobfile.optimize_argv), which opens the study in the
shared storage to every `winopt worker` and is the one writer of its snapshot in the job's
directory; from there the job is converted, decided and sent to the rigs like any other
run. This adapter hands that child the storage: through the environment
(`WINOPT_STORAGE`, `WINOPT_ARTIFACTS`), never on a command line that `ps` shows, since the
URL holds the database password.
"""

from __future__ import annotations

import logging
import os

from winopt.contracts.daemon_config import OptunaConfig
from winopt.contracts.urls import safe_url

log = logging.getLogger(__name__)


def export_storage(optuna: OptunaConfig) -> bool:
    """Put `[optuna] storage` and `artifacts` (or `--storage`) into the environment the
    job runner gives its children; called once at start, before any child exists (a
    change takes a restart). Whether `workers = "rigs"` jobs have a storage (from the
    config or the daemon's own `WINOPT_STORAGE`)."""
    if optuna.storage:
        os.environ["WINOPT_STORAGE"] = optuna.storage
    if optuna.artifacts:
        os.environ["WINOPT_ARTIFACTS"] = optuna.artifacts
    if os.environ.get("WINOPT_STORAGE"):
        log.info("shared studies: workers = \"rigs\" jobs open studies in %s",
                 safe_url(os.environ["WINOPT_STORAGE"]),
                 extra={"EVENT": "storage"})
        return True
    return False
