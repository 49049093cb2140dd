"""`winopt status`: the daemon's status file as a table a person reads at a glance.

Reads STATE/status.json only (no NumPy, no Optuna: quick on a busy head node). `--json`
prints the file as it is, for scripts. The state dir comes from `--state-dir`, else the
config file's `state_dir`, else /var/lib/winopt.

Every string of the document (run names, job names, errors, rig targets, values copied
from run configs) is shown with its control characters escaped (`winopt.safe_text`)
before the table is laid out, so nothing in status.json can drive the terminal.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from winopt.access import denied
from winopt.contracts.publish import pid_alive
from winopt.daemon.config import DEFAULT_STATE_DIR, default_config_path, load_config
from winopt.daemon.status import STATUS_NAME
from winopt.errors import UserError
from winopt.safe_text import safe_text

COLUMNS = ("RUN", "STATE", "TRIALS", "BEST", "DECISION", "NPZ AGE", "RIGS")
JOB_COLUMNS = ("JOB", "STATE", "PRIO", "TRIALS", "BEST", "DECISION", "RIGS", "SINCE")
#: finished jobs shown without --all (the newest; every active job is always shown)
FINISHED_SHOWN = 20
FINISHED = ("complete", "failed", "cancelled")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", metavar="DIR", help="the daemon's state dir")
    parser.add_argument("--config", metavar="FILE", help="read state_dir from this daemon config")
    parser.add_argument("--json", action="store_true", help="print status.json as it is")
    parser.add_argument("--all", action="store_true",
                        help=f"list every finished job status.json tracks (default: the {FINISHED_SHOWN} newest)")


def run(args: argparse.Namespace) -> int:
    path = _state_dir(args) / STATUS_NAME
    try:
        data = path.read_bytes()
        doc = orjson.loads(data)
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
        table = render(doc, now=datetime.now(timezone.utc), all_jobs=args.all)
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


def render(doc: dict[str, Any], *, now: datetime, all_jobs: bool = False) -> str:
    """Header line about the daemon, one row per watched run, then one per spool job
    (a job's directory is a run too: its row is in the jobs table, not twice)."""
    doc = escaped(doc)
    lines = [_header(doc.get("daemon") or {}, now)]
    rigs = doc.get("rigs") or {}
    if rigs:
        lines.append("rigs: " + ", ".join(f"{name} {rig.get('target', '?')}" for name, rig in sorted(rigs.items())))
    all_runs = doc.get("runs") or {}
    runs = {name: run for name, run in all_runs.items() if run.get("kind") != "job"}
    rows = [(*_row(name, run, now), _rigs_cell(name, rigs)) for name, run in sorted(runs.items())]
    if rows:
        lines += _table(COLUMNS, rows)
    elif not doc.get("jobs"):
        lines.append("no runs watched")
    for name, run in sorted(all_runs.items()):
        if run.get("error"):
            lines.append(f"{name}: {run['error']}")
    lines += _jobs_lines(doc, rigs, now, all_jobs)
    lines += _rig_problems(rigs)
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


def _table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [columns, *rows]]


def _jobs_lines(doc: dict[str, Any], rigs: dict[str, Any], now: datetime, all_jobs: bool) -> list[str]:
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
        lines += _table(JOB_COLUMNS, [_job_row(i, jobs[i], runs.get(i) or {}, rigs, now) for i in shown])
    if hidden:
        lines.append(f"... and {hidden} older finished jobs (winopt status --all)")
    left_out = doc.get("jobs_left_out") or 0
    if left_out:
        state_dir = (doc.get("daemon") or {}).get("state_dir") or "STATE"
        lines.append(f"... and {left_out} older finished jobs not tracked (their results stay in {state_dir}/jobs/)")
    lines += [f"{i}: {jobs[i].get('reason')}" for i in shown if jobs[i].get("state") == "failed"]
    rejected = doc.get("rejected") or {}
    if rejected:
        name = max(rejected, key=lambda n: rejected[n].get("at") or "")
        state_dir = (doc.get("daemon") or {}).get("state_dir") or "STATE"
        lines.append(f"{len(rejected)} rejected in {state_dir}/rejected/ (latest {name}: "
                     f"{(rejected[name].get('reason') or '?').split(': ', 1)[-1]})")
    return lines


def _job_row(job_id: str, job: dict[str, Any], run: dict[str, Any], rigs: dict[str, Any], now: datetime) -> tuple[str, ...]:
    _, _, trials, best, decided, _ = _row(job_id, run, now)
    if trials == "-":
        trials = f"-/{job.get('trials', '-')}"
    history = job.get("history") or []
    since = _age(history[-1]["at"], now) if history and history[-1].get("at") else "-"
    state = str(job.get("state", "-")) + (" (cancelling)" if job.get("cancel_requested") and job.get("state") == "running" else "")
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


def _rig_problems(rigs: dict[str, Any]) -> list[str]:
    """One line per run and rig that is retrying or failed, with its last error."""
    lines = []
    for rig, entry in sorted(rigs.items()):
        for run, state in sorted((entry.get("runs") or {}).items()):
            if state.get("state") in ("retrying", "failed") and state.get("last_error"):
                when = f", next try {state['next_try'][11:19]}" if state.get("next_try") else ""
                lines.append(f"rig {rig}: {run} {state['state']} (attempt {state.get('attempts', '?')}{when}): "
                             f"{state['last_error']}")
    return lines


def _age(iso: str, now: datetime) -> str:
    """'42s', '7m', '3h', '2d' since `iso`."""
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

