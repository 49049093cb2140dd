"""report.html in a job's directory when the job ends (issue 16), and the study of a
`workers = "rigs"` job closed to the workers.

A rigs job's `winopt study` closes its study at the target, or when it is cancelled while
it runs; a job that ends otherwise (cancelled before or between runs, failed, its child
killed) would leave the study open, and the workers would go on serving it first. So
whenever such a job ends, a `winopt study --close ID` child closes it (closing twice is
harmless), on this same thread: the daemon never opens the database itself.

The page is written by a `winopt report DIR -o DIR/report.html` child, one at a time on
this writer's own thread: plotting imports Optuna's visualization module and plotly and
takes seconds, which the daemon's workers and its memory should not carry. A job whose
study never started (cancelled while queued) gets no report. A `workers = "rigs"` job's
child reads the study in the shared storage (WINOPT_STORAGE, which it inherits). A host
without the `report` extra gets one journal line saying what to install, once, and no
report.

Both are done at most once per job, and at least once: a job whose work is done gets an
`ENDED_MARK` file in its directory, and at its start the daemon requests the work again
for every finished job without one (a daemon stopped in the middle of it, or as the job
ended, or one older than the mark).
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from winopt.contracts.schemas import CONFIG_NAME
from winopt.contracts.state_dir import ENDED_MARK

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
#: seconds a report may take before its child is killed (a huge study on a slow disk)
REPORT_TIMEOUT = 600.0
#: seconds closing a study may take (it waits a minute for a database that is away)
CLOSE_TIMEOUT = 120.0
_STOP = None


class JobReports:
    """Writes report.html for the job directories it is given, in order, one at a time."""

    def __init__(self, *, timeout: float = REPORT_TIMEOUT, python: str | None = None) -> None:
        self.timeout = timeout
        self.python = python or sys.executable
        self._queue: queue.Queue[tuple[str, Path, bool] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._said_missing = False

    def request(self, job_id: str, job_dir: Path, *, close_study: bool = False) -> None:
        """Write `job_dir`/report.html soon (the thread starts on first use), after closing
        the job's shared study when `close_study`."""
        with self._lock:
            if self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="job-reports", daemon=True)
                self._thread.start()
        self._queue.put((job_id, job_dir, close_study))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the report in hand (its child is terminated: the daemon is going)."""
        with self._lock:
            self._stopping = True
            child, thread = self._child, self._thread
        self._queue.put(_STOP)
        if child is not None and child.poll() is None:
            child.terminate()
        if thread is not None:
            thread.join(timeout)

    def _work(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            job_id, job_dir, close_study = item
            try:
                if close_study:
                    self._close(job_id)
                self._write(job_id, job_dir, shared=close_study)
                if not self._stopping and job_dir.is_dir():  # else cut short: done again at the next start
                    (job_dir / ENDED_MARK).touch()
            except Exception as exc:  # noqa: BLE001 - one report's failure never stops the next
                log.error("job %s: report.html not written: %s: %s", item[0], type(exc).__name__, exc,
                          extra={"JOB_ID": item[0], "EVENT": "report_failed"})

    def _close(self, job_id: str) -> None:
        """`winopt study --close ID` (the storage is in the environment the daemon exported)."""
        rc, why = self._child_run([self.python, "-m", "winopt", "study", "--close", job_id], CLOSE_TIMEOUT)
        if rc == 0:
            log.info("job %s: its study is closed to the workers", job_id,
                     extra={"JOB_ID": job_id, "EVENT": "study_closed"})
        elif not self._stopping:
            log.error("job %s: its study could not be closed to the workers: %s", job_id, why,
                      extra={"JOB_ID": job_id, "EVENT": "study_close_failed"})

    def _child_run(self, argv: list[str], timeout: float) -> tuple[int | None, str]:
        """Run one child on this thread (terminated by `stop`): its exit status (None when
        it ran past `timeout` and was killed, or the daemon is stopping) and the last line
        of its stderr."""
        with self._lock:
            if self._stopping:
                return None, "the daemon is stopping"
            self._child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE)
            child = self._child
        try:
            _, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            return None, f"{argv[3]} took more than {timeout:.0f} s"
        finally:
            with self._lock:
                self._child = None
        text = err.decode("utf-8", "replace").strip().splitlines()
        why = text[-1].removeprefix("winopt: error: ") if text else f"exit status {child.returncode}"
        return child.returncode, why

    def _write(self, job_id: str, job_dir: Path, shared: bool = False) -> None:
        """`shared`: a `workers = "rigs"` job, whose study is in the shared storage the
        daemon exported as WINOPT_STORAGE (the child inherits it and reads it there)."""
        if shared:
            if not (os.environ.get("WINOPT_STORAGE") and (job_dir / CONFIG_NAME).is_file()):
                return  # its study never published a snapshot: it never started
        elif not (job_dir / "optuna.db").is_file():
            return  # the study never started here: nothing to report
        target = job_dir / REPORT_NAME
        rc, why = self._child_run([self.python, "-m", "winopt", "report", str(job_dir), "-o", str(target)],
                                  self.timeout)
        if rc == 0:
            log.info("job %s: wrote %s", job_id, target, extra={"JOB_ID": job_id, "EVENT": "report_written",
                                                                 "PATH": str(target)})
        elif "install winopt[report]" in why:
            if not self._said_missing:
                self._said_missing = True
                log.warning("jobs get no report.html: %s", why, extra={"EVENT": "report_failed"})
        elif not self._stopping:
            log.error("job %s: report.html not written: %s", job_id, why,
                      extra={"JOB_ID": job_id, "EVENT": "report_failed"})
