"""`winopt show JOB|DIR`: one run on one screen (issue 16).

What a person asks of a search while it runs and after: how far (trials done of the
target, the rate in trials per hour and the ETA), what it found (the best count with its
window, against the chance expectation, and whether chance explains it: the same Poisson
tail the decisions use), why (the notes of the best and the last trial: an offset
clamped, a window that did not fit, one session searched), what the watcher decided and
why, and where the result is (the NPZ and each rig's copy). Every line fits 80 columns
(or $COLUMNS); `--json` prints the same facts for scripts.

Rate and ETA are the daemon's (status.json, measured from snapshots over time) when it
tracks the run, else measured here from the trials' own start and end times.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from winopt.cli.runref import RunRef, add_run_arguments, resolve_run
from winopt.contracts.publish import pid_alive
from winopt.contracts.schemas import CONFIG_NAME
from winopt.contracts.snapshot import BEST_KEYS, SnapshotView, view_known
from winopt.daemon.adapters.runs import UNJUDGED_JOB_STATES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the facts as one JSON object")


def run(args: argparse.Namespace) -> int:
    from winopt.cli.table import terminal_width

    ref = resolve_run(args)
    facts = gather(ref, storage=args.storage, study=args.study, now=datetime.now(timezone.utc))
    if args.json:
        print(dumps(facts))
    else:
        print("\n".join(render(facts, width=min(terminal_width(), 80))))
    return 0


def dumps(facts: dict[str, Any]) -> str:
    """The facts as indented JSON; an int wider than 64 bits (orjson's limit: a snapshot
    may hold one) is written whole by the standard library instead of failing."""
    try:
        return orjson.dumps(facts, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return json.dumps(facts, indent=2, ensure_ascii=False, default=str)


# ---------------------------------------------------------------- the facts
def gather(ref: RunRef, *, storage: str | None, study: str | None, now: datetime) -> dict[str, Any]:
    """Everything `show` says, as plain JSON values.

    The snapshot is read as the watcher reads it (`view_known`: an old file without a
    status is complete, its best is `bidirectional_count`; a field of the wrong type is
    unknown). status.json's word (state, rate and ETA, decision) is taken only while it is
    current (`_daemon_current`): a stopped daemon's entry describes a run as it was."""
    from winopt.handlers.evaluate.rules import Thresholds, evaluate, poisson_tail
    from winopt.handlers.report.trials import (best_trial, finished, job_spec, job_state, pace,
                                               read_snapshot_or_none)

    snapshot = read_snapshot_or_none(ref.run_dir)
    snap, bad_fields = view_known(snapshot) if snapshot is not None else (None, ())
    trials, study_error = _trials(ref, snapshot, storage, study)
    current = _daemon_current(ref, snapshot)
    entry = ref.entry if current else {}
    done = snap.completed if snap is not None else None
    if done is None:
        done = len(finished(trials)) if trials else None
    total = snap.total if snap is not None else None
    # a spool job that has written nothing yet: its state.json says its state and target
    job = job_state(ref.run_dir) if snapshot is None else {}
    if job:
        wanted = job_spec(ref.run_dir, job).get("trials")
        total = wanted if type(wanted) is int else None
    job_now = (ref.job.get("state") if current else None) or job.get("state")
    if snapshot is None and job_now == "queued":  # nothing run, so nothing missing
        done, study_error = 0, None
    if current:
        state = ref.job.get("state") or entry.get("state") or _state(snap)
    else:
        state = _state(snap) if snap is not None else job_now or ref.job.get("state") or "waiting"

    progress = entry.get("progress") or {}
    rate, eta, rate_from = progress.get("rate_per_hour"), progress.get("eta"), "daemon"
    if rate is None:
        rate, eta, rate_from = pace(trials), None, "trials"
        if rate and snap is not None and snap.status == "in_progress" and total is not None and done is not None:
            eta = (now + timedelta(hours=max(0, total - done) / rate)).astimezone().isoformat(timespec="seconds")
    if snap is None or snap.status != "in_progress":
        eta = None

    best = best_trial(trials)
    best_count = snap.best if snap is not None else None
    if best_count is None and best is not None:
        best_count = int(best.value)
    expected = snap.expected if snap is not None else None
    if best is not None and _number(best.expected) is not None:
        expected = best.expected
    significance = Thresholds().significance
    tail = poisson_tail(best_count, float(expected)) if best_count and expected is not None else None
    if current and ref.entry:  # the daemon's (none for a queued or cancelled job)
        decision = ref.entry.get("decision")
    elif job_now in UNJUDGED_JOB_STATES:
        decision = None
    else:
        decision = evaluate(ref.run_dir, Thresholds())
    last = max((t for t in trials if t.state in ("COMPLETE", "PRUNED", "FAIL")), key=lambda t: t.number, default=None)
    return {
        "run": ref.name,
        "dir": str(ref.run_dir),
        "job_id": ref.job_id,
        "state": state,
        "completed_trials": done,
        "total_trials": total,
        "rate_per_hour": rate,
        "rate_from": rate_from if rate is not None else None,
        "eta": eta,
        "best": None if best_count is None else {
            "count": best_count,
            "trial": best.number if best is not None else _whole((snapshot or {}).get("best_trial_number")),
            "params": best.params if best is not None else _snapshot_params(snapshot or {}),
            "expected_chance_bidirectional": expected,
            "poisson_tail": tail,
            "significant": tail is not None and tail < significance,
            "significance": significance,
        },
        "best_unknown": best_count is None and any(key in BEST_KEYS for key in bad_fields),
        "best_trial": best.to_dict() if best is not None else None,
        "last_trial": last.to_dict() if last is not None else None,
        "decision": decision,
        "npz": entry.get("npz") or _npz(ref),
        "rigs": ref.rigs(),
        "study_error": study_error,
        "snapshot_error": (f"{CONFIG_NAME}: {', '.join(bad_fields)}: wrong type, shown as unknown"
                           if bad_fields else None),
        "error": (snap.error if snap is not None else None) or entry.get("error"),
    }


def _trials(ref: RunRef, snapshot: dict[str, Any] | None, storage: str | None,
            study: str | None) -> tuple[list[Any], str | None]:
    """The study's trials, or none and the one line saying why (the snapshot still says most)."""
    from winopt.handlers.report.trials import load_study, storage_url, study_name, trial_facts

    try:
        url = storage_url(ref.run_dir, storage, ref.shared_storage)
        return trial_facts(load_study(url, study_name(ref.run_dir, snapshot, study))), None
    except Exception as exc:  # noqa: BLE001 - say why the trials are missing, show the rest
        return [], str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _daemon_current(ref: RunRef, snapshot: dict[str, Any] | None) -> bool:
    """Whether status.json's entry for the run is current: the daemon that wrote it still
    runs (as `winopt status` checks it), and it has seen the end of a run that ended. A
    stopped or killed daemon leaves the state, ETA and decision of a run as it was; a
    running one's entry may lag a running search by a write or two (it is rewritten at
    most every `status_interval`) and is still its word on the run's pace and decision."""
    from winopt.daemon.adapters.runs import snapshot_summary

    daemon = (ref.status or {}).get("daemon") or {}
    pid = daemon.get("pid")
    if daemon.get("state") == "stopped" or type(pid) is not int or pid <= 0 or not pid_alive(pid):
        return False
    ended = snapshot is not None and snapshot.get("status") not in (None, "in_progress")
    return not (ended and ref.entry and ref.entry.get("snapshot") != snapshot_summary(snapshot))


def _state(snap: SnapshotView | None) -> str:
    """One word, as the daemon's `run_state` says it (no status: an old file, complete)."""
    if snap is None:
        return "waiting"
    return {"in_progress": "running"}.get(snap.status, snap.status)


def _snapshot_params(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The best window as the snapshot gives it: `best_params`, else the old pipeline's
    flat window fields."""
    from winopt.contracts.schemas import WINDOW_PARAMS

    params = snapshot.get("best_params")
    if isinstance(params, dict):
        return params
    return {k: snapshot[k] for k in WINDOW_PARAMS if isinstance(snapshot.get(k), (int, float, str))}


def _whole(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _number(value: Any) -> float | None:
    """A finite number >= 0 (not a bool), else None: an attribute of the wrong type is unknown."""
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _npz(ref: RunRef) -> dict[str, Any] | None:
    """The NPZ as the daemon's status entry describes it (read here: no daemon tracks it)."""
    from winopt.contracts.schemas import NPZ_NAME
    from winopt.daemon.adapters.runs import npz_summary

    return npz_summary(ref.run_dir / NPZ_NAME)


# ---------------------------------------------------------------- the screen
def render(facts: dict[str, Any], *, width: int = 80, now: datetime | None = None) -> list[str]:
    """The facts as lines of at most `width` characters, every string escaped."""
    from winopt.cli.status import escaped
    from winopt.cli.table import wrap

    f = escaped(facts)
    now = now or datetime.now(timezone.utc)
    out: list[str] = []

    def line(label: str, text: str) -> None:
        for i, part in enumerate(wrap(f"{label:<9}{text}", width, indent=" " * 9)):
            out.append(part if i == 0 else part)

    job = f" (job {f['job_id']})" if f.get("job_id") else ""
    line("run", f"{f['dir']}{job}")
    trials = f"{_n(f['completed_trials'])}/{_n(f['total_trials'])}"
    rate = _rate(f.get("rate_per_hour"))
    line("state", f"{f['state']}, trials {trials}, rate {rate}, ETA {_eta(f.get('eta'), now)}")
    best = f.get("best")
    if best is None:
        line("best", "unknown (the snapshot's best count has the wrong type)" if f.get("best_unknown")
             else "no successful trial yet")
    else:
        line("best", f"{best['count']} bidirectional survivor{'' if best['count'] == 1 else 's'} "
                     f"(trial {_n(best['trial'])})")
        params = best.get("params") or {}
        line("window", ", ".join(f"{k} {_v(v)}" for k, v in params.items()) or "-")
        expected = best.get("expected_chance_bidirectional")
        if expected is None:
            line("chance", "no chance expectation recorded")
        else:
            tail = best.get("poisson_tail")
            verdict = ("significant: chance does not explain it" if best.get("significant")
                       else "not significant: chance explains it")
            if best["count"] == 0:
                line("chance", f"expects {expected:.3g}; none found, nothing beyond chance")
            else:
                line("chance", f"expects {expected:.3g}; P(>= {best['count']}) = {_g(tail)} vs "
                               f"{best['significance']:g}, {verdict}")
    label = "notes"
    for key, which in (("best_trial", "best"), ("last_trial", "last")):
        t = f.get(key)
        if t is not None:
            notes = "; ".join(t.get("notes") or []) or "none"
            state = "" if t["state"] == "COMPLETE" else f" ({t['state'].lower()})"
            line(label, f"{which} trial {t['number']}{state}: {notes}")
            label = ""
    d = f.get("decision") or {}
    if d.get("action"):
        line("decision", f"{d['action']} {d.get('confidence', 0):.2f}: {d.get('reasoning', '')}")
        for warning in d.get("warnings") or []:
            line("", f"warning: {warning}")
    else:
        line("decision", "none (a queued or cancelled job is not judged)")
    npz = f.get("npz")
    if npz:
        count = npz.get("count")
        line("npz", f"{_n(count)} seed{'' if count == 1 else 's'}, sha256 {str(npz.get('sha256') or '-')[:12]}, "
                    f"converted {_when(npz.get('converted_at'), now)}")
    else:
        line("npz", "none yet")
    rigs = f.get("rigs") or {}
    for i, (rig, r) in enumerate(rigs.items()):
        text = f"{rig} {r.get('destination') or r.get('target') or ''}: {r.get('state', '?')}"
        if r.get("sha256"):
            newest = npz and r["sha256"] == npz.get("sha256")
            text += f", holds {str(r['sha256'])[:12]} ({'the newest' if newest else 'not the newest'})"
        if r.get("last_success"):
            text += f", last sent {_when(r['last_success'], now)}"
        if r.get("state") in ("retrying", "failed") and r.get("last_error"):
            text += f", attempt {r.get('attempts', '?')}: {r['last_error']}"
        line("rigs" if i == 0 else "", text)
    if not rigs:
        line("rigs", "none (or no daemon tracks this run)")
    for key, label in (("error", "error"), ("snapshot_error", "snapshot"), ("study_error", "trials")):
        if f.get(key):
            line(label, str(f[key]))
    return out


def _rate(rate: Any) -> str:
    """'1,234 trials/h', '2.5 trials/h'; '-' before one is known."""
    if not isinstance(rate, (int, float)) or rate <= 0:
        return "-"
    return f"{rate:,.0f} trials/h" if rate >= 10 else f"{rate:.2g} trials/h"


def _n(value: Any) -> str:
    return "-" if value is None else str(value)


def _v(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _g(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def _eta(eta: str | None, now: datetime) -> str:
    """'in 33m (22:41)'; '-' without one."""
    from winopt.cli.table import ago

    if not eta:
        return "-"
    try:
        at = datetime.fromisoformat(eta)
    except ValueError:
        return "?"
    left = (at - now).total_seconds()
    local = at.astimezone()
    clock = local.strftime("%H:%M") if left < 86400 else local.strftime("%m-%d %H:%M")
    return f"in {ago(left)} ({clock})" if left > 0 else f"due ({clock})"


def _when(iso: Any, now: datetime) -> str:
    from winopt.cli.table import ago

    try:
        then = datetime.fromisoformat(str(iso))
    except ValueError:
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return f"{ago((now - then).total_seconds())} ago"
