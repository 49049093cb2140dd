"""`winopt status`: the daemon's status file as a table a person reads at a glance.

Reads STATE/status.json only (no NumPy, no Optuna: quick on a busy head node). `--json`
prints the file as it is, for scripts. The state dir comes from `--state-dir`, else the
config file's `state_dir`, else /var/lib/winopt.

Every string of the document (run names, job names, errors, rig targets, values copied
from run configs) is shown with its control characters escaped (`winopt.contracts.safe_text`)
before the table is laid out, so nothing in status.json can drive the terminal.

The table fits the terminal (issue 12): its width (`COLUMNS`, else the terminal's, else
80 when piped), job ids in their short form (`handlers.job_refs`), flexible columns
shortened with `~` and the notes under it wrapped; `--wide` shows everything whole, one
line per note, for wide terminals and grep.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from winopt.contracts.access import denied
from winopt.contracts.publish import pid_alive
from winopt.daemon.config import DEFAULT_STATE_DIR, default_config_path, load_config
from winopt.contracts.state_dir import STATUS_NAME
from winopt.contracts.status import decode_status
from winopt.contracts.errors import UserError
from winopt.handlers.jobs.refs import short_id
from winopt.contracts.safe_text import safe_text
from winopt.cli.table import ago, compact, fit_table, terminal_width, wrap, wrap_all
from winopt.cli.eta import HELP as ETA_HELP, eta_cell, with_eta

COLUMNS = ("RUN", "STATE", "TRIALS", "BEST", "DECISION", "NPZ AGE", "RIGS")
JOB_COLUMNS = ("JOB", "STATE", "PRIO", "TRIALS", "BEST", "DECISION", "RIGS", "SINCE")
#: finished jobs shown without --all (the newest; every active job is always shown)
FINISHED_SHOWN = 20
FINISHED = ("complete", "failed", "cancelled")
#: columns that give up characters in a narrow terminal, first to last (RUN keeps its tail)
FLEXIBLE = ("RIGS", "RUN", "DECISION")
#: columns of counts, compacted in a narrow terminal
COUNTS = ("TRIALS", "BEST")
#: runs named in one line about a rig's problem before "and N more"
RUNS_NAMED = 3
COLUMN_HELP = """\
columns:
  RUN       a watched run directory (the last components of its path)
  JOB       a spool job: the date of its id and the id's random tail (--wide: the
            whole id); winopt cancel, logs and clean take either form
  STATE     a run: in_progress, complete, interrupted, failed, error, missing;
            a job: queued, running, cancelling, interrupted (the daemon resumes
            it at its next start), complete, failed, cancelled
  PRIO      a job's priority: higher starts first
  TRIALS    trials finished / trials asked for
""" + ETA_HELP + """  BEST      the best bidirectional survivor count so far
  DECISION  the watcher's decision and its confidence (see winopt evaluate)
  NPZ AGE   time since the run's survivors were last converted for the rigs
  RIGS      rigs holding the newest NPZ / rigs it goes to; rigs retrying or
            failed are named, with their last error under the table
  SINCE     time since the job last changed state (accepted, started, ended)
ages: 42s, 7m, 3h, 2d."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = COLUMN_HELP
    parser.add_argument("run", nargs="?", metavar="JOB|DIR",
                        help="show this one run as winopt show does (a job id or its short form, or a run directory)")
    parser.add_argument("--state-dir", metavar="DIR", help="the daemon's state dir")
    parser.add_argument("--config", metavar="FILE", help="read state_dir from this daemon config")
    parser.add_argument("--json", action="store_true", help="print status.json as it is")
    parser.add_argument("--all", action="store_true",
                        help=f"list every finished job status.json tracks (default: the {FINISHED_SHOWN} newest)")
    parser.add_argument("--wide", action="store_true",
                        help="whole ids and cells, one line per note, whatever the terminal's width "
                             "(default: fit $COLUMNS or the terminal, 80 when piped)")


def run(args: argparse.Namespace) -> int:
    if args.run:  # one run: winopt show (issue 16)
        from winopt.cli import show

        return show.run(argparse.Namespace(**{**vars(args), "storage": None, "study": None}))
    path = _state_dir(args) / STATUS_NAME
    try:
        data = path.read_bytes()
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except PermissionError:
        raise UserError(f"{path}: {denied(path)}") from None
    except (OSError, ValueError) as exc:
        problem = getattr(exc, "strerror", None) or str(exc)
        raise UserError(f"daemon not running or state dir wrong: {path}: {problem}") from None
    if args.json:
        sys.stdout.write(data.decode("utf-8"))
        return 0
    try:
        decode_status(data)  # the schema's types (winopt.contracts.status)
        width = None if args.wide else terminal_width()
        table = render(doc, now=datetime.now(timezone.utc), all_jobs=args.all, width=width)
    except (AttributeError, TypeError, KeyError, ValueError, RecursionError) as exc:  # JSON, but not our layout
        raise UserError(f"{path}: not a status file this winopt can read ({type(exc).__name__}: {exc}); "
                        "try --json") from None
    print(table)
    return 0


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir)
    config = Path(args.config) if args.config else default_config_path()
    return load_config(config).state_dir if config is not None else DEFAULT_STATE_DIR


def render(doc: dict[str, Any], *, now: datetime, all_jobs: bool = False, width: int | None = None) -> str:
    """Header line about the daemon, one row per watched run, then one per spool job
    (a job's directory is a run too: its row is in the jobs table, not twice). With
    `width`, no line is longer: short job ids, shortened cells, wrapped notes; None
    shows everything whole."""
    doc = escaped(doc)
    lines = wrap(_header(doc.get("daemon") or {}, now), width)
    rigs = doc.get("rigs") or {}
    if rigs:
        lines += wrap("rigs: " + ", ".join(f"{name} {rig.get('target', '?')}" for name, rig in sorted(rigs.items())),
                      width)
    all_runs = doc.get("runs") or {}
    runs = {name: run for name, run in all_runs.items() if run.get("kind") != "job"}
    rows = [(*_row(name, run, now), _rigs_cell(name, rigs)) for name, run in sorted(runs.items())]
    columns, rows = with_eta(COLUMNS, rows, [eta_cell(run, now) for _, run in sorted(runs.items())], width)
    if rows:
        lines += _table(columns, rows, width)
    elif not doc.get("jobs"):
        lines.append("no runs watched")
    for name, run in sorted(all_runs.items()):
        if run.get("error"):
            lines += wrap(f"{_job_ref(name, width)}: {run['error']}", width)
    lines += _jobs_lines(doc, rigs, now, all_jobs, width)
    lines += wrap_all(_rig_problems(rigs, width), width)
    return "\n".join(lines)


def escaped(value: Any) -> Any:
    """`value` with every string in it, keys included, made safe for a terminal."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {escaped(k): escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escaped(v) for v in value]
    return value


def _table(columns: tuple[str, ...], rows: list[tuple[str, ...]], width: int | None = None) -> list[str]:
    """The rows laid out; to fit a width, large counts are compacted (`1.23M`) and the
    FLEXIBLE columns shortened."""
    if width is not None:
        counts = [i for i, name in enumerate(columns) if name in COUNTS]
        rows = [tuple(_compact_counts(c) if i in counts else c for i, c in enumerate(row)) for row in rows]
    return fit_table(columns, rows, width, flexible=FLEXIBLE, keep_tail=("RUN",))


def _compact_counts(cell: str) -> str:
    return re.sub(r"\d{6,}", lambda m: compact(int(m[0])), cell)


def _job_ref(job_id: str, width: int | None) -> str:
    """A job id as the table shows it: short when the table must fit a width."""
    return job_id if width is None else short_id(job_id)


def _jobs_lines(doc: dict[str, Any], rigs: dict[str, Any], now: datetime, all_jobs: bool,
                width: int | None = None) -> list[str]:
    """The jobs table (active jobs, then the newest finished ones), a line each about
    finished jobs not shown and not tracked (status.json keeps only `[jobs]
    finished_kept`), each failed job's reason, and a line about refused spool files."""
    jobs = doc.get("jobs") or {}
    order = sorted(jobs, key=lambda i: (jobs[i].get("accepted_at") or "", i))
    active = [i for i in order if jobs[i].get("state") not in FINISHED]
    finished = [i for i in order if jobs[i].get("state") in FINISHED]
    hidden = 0 if all_jobs else max(0, len(finished) - FINISHED_SHOWN)
    shown = active + finished[hidden:]
    lines = []
    if shown:
        runs = doc.get("runs") or {}
        rows = [_job_row(i, jobs[i], runs.get(i) or {}, rigs, now) for i in shown]
        rows = [(_job_ref(i, width), *row[1:]) for i, row in zip(shown, rows)]
        columns, rows = with_eta(JOB_COLUMNS, rows, [eta_cell(runs.get(i) or {}, now) for i in shown], width)
        lines += _table(columns, rows, width)
    if hidden:
        lines.append(f"... and {hidden} older finished jobs (winopt status --all)")
    left_out = doc.get("jobs_left_out") or 0
    if left_out:
        state_dir = (doc.get("daemon") or {}).get("state_dir") or "STATE"
        lines.append(f"... and {left_out} older finished jobs not tracked (their results stay in {state_dir}/jobs/)")
    lines += [f"{_job_ref(i, width)}: {jobs[i].get('reason')}" for i in shown if jobs[i].get("state") == "failed"]
    rejected = doc.get("rejected") or {}
    if rejected:
        name = max(rejected, key=lambda n: rejected[n].get("at") or "")
        state_dir = (doc.get("daemon") or {}).get("state_dir") or "STATE"
        lines.append(f"{len(rejected)} rejected in {state_dir}/rejected/ (latest {name}: "
                     f"{(rejected[name].get('reason') or '?').split(': ', 1)[-1]})")
    return wrap_all(lines, width)


def _job_row(job_id: str, job: dict[str, Any], run: dict[str, Any], rigs: dict[str, Any], now: datetime) -> tuple[str, ...]:
    _, _, trials, best, decided, _ = _row(job_id, run, now)
    if trials == "-":
        trials = f"-/{job.get('trials', '-')}"
    history = job.get("history") or []
    since = _age(history[-1]["at"], now) if history and history[-1].get("at") else "-"
    state = str(job.get("state", "-"))
    if job.get("cancel_requested") and state == "running":
        state = "cancelling"
    return (job_id, state, str(job.get("priority", 0)), trials, best, decided, _rigs_cell(job_id, rigs), since)


def _header(daemon: dict[str, Any], now: datetime) -> str:
    pid = daemon.get("pid")
    state = daemon.get("state", "unknown")
    if state not in ("stopped",) and isinstance(pid, int) and not pid_alive(pid):
        state = f"not running (last state {state})"
    text = f"daemon pid {pid} {state}"
    if state == "stopped" and daemon.get("stopped_at"):
        text += f" {_age(daemon['stopped_at'], now)} ago"
    elif daemon.get("started_at"):
        text += f", up {_age(daemon['started_at'], now)}"
    counters = daemon.get("counters") or {}
    text += f", {counters.get('conversions', 0)} conversions"
    if daemon.get("observer_alive") is False and state == "running":
        text += ", WATCHER DOWN"
    missing = daemon.get("missing") or []
    if missing:
        text += f", {len(missing)} directories missing"
    return text


def _row(name: str, run: dict[str, Any], now: datetime) -> tuple[str, ...]:
    snap = run.get("snapshot") or {}
    done, total = snap.get("completed_trials"), snap.get("total_trials")
    trials = f"{done if done is not None else '-'}/{total if total is not None else '-'}" if snap else "-"
    best = snap.get("best")
    decision = run.get("decision") or {}
    action = decision.get("action")
    decided = f"{action} {decision.get('confidence', 0):.2f}" if action else "-"
    npz = run.get("npz") or {}
    npz_age = _age(npz["converted_at"], now) if npz.get("converted_at") else "-"
    return (name, str(run.get("state", "-")), trials, "-" if best is None else str(best), decided, npz_age)


def _rigs_cell(run: str, rigs: dict[str, Any]) -> str:
    """Where `run`'s NPZ stands on the rigs: `2/2 synced`, `1/2 synced, b retrying`."""
    states = {rig: ((entry.get("runs") or {}).get(run) or {}).get("state") for rig, entry in sorted(rigs.items())}
    states = {rig: state for rig, state in states.items() if state}
    if not states:
        return "-"
    synced = sum(state == "synced" for state in states.values())
    others = [f"{rig} {state}" for rig, state in states.items() if state != "synced"]
    return ", ".join([f"{synced}/{len(states)} synced", *others])


def _rig_problems(rigs: dict[str, Any], width: int | None = None) -> list[str]:
    """One line per rig and problem (retrying or failed, with its last error), naming
    the runs that have it: a rig that is down fails every run alike."""
    lines = []
    for rig, entry in sorted(rigs.items()):
        problems: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
        for run, state in sorted((entry.get("runs") or {}).items()):
            if state.get("state") in ("retrying", "failed") and state.get("last_error"):
                problems.setdefault((state["state"], state["last_error"]), []).append((run, state))
        for (kind, error), runs in problems.items():
            state = runs[0][1]
            named = ", ".join(_job_ref(run, width) for run, _ in runs[:RUNS_NAMED])
            more = f" and {len(runs) - RUNS_NAMED} more" if len(runs) > RUNS_NAMED else ""
            when = f", next try {state['next_try'][11:19]}" if state.get("next_try") else ""
            lines.append(f"rig {rig}: {named}{more} {kind} (attempt {state.get('attempts', '?')}{when}): {error}")
    return lines


def _age(iso: str, now: datetime) -> str:
    """'42s', '7m', '3h', '2d' since `iso`."""
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return ago((now - then).total_seconds())

