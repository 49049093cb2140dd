"""`winopt evaluate`: the watcher decision for a run (SPEC §4).

A decision says what to do next with a run: `proceed` (hand the NPZ to Step 2.5), `wait`
(running, look again later), `retry` (resume or rerun it) or `escalate` (a person must
look). `evaluate` reads the run's snapshot; `decide` is the same rule table on a snapshot
already in hand; `decision_for_bad_survivors` covers a survivors file that fails to
convert. The daemon calls them on worker threads: they share nothing and print nothing.

Rules, first match wins (every number is a `Thresholds` field, thresholds.py):
- config missing -> retry 0.0 "output file not yet created";
- unreadable, not a JSON object, unknown status, or a used field of the wrong type ->
  escalate 0.0;
- no `status` (pre-winopt file) -> treated as complete, with a warning;
- significance (in_progress and complete runs with a best >= 1, before the count rules):
  the Poisson tail P(X >= best) with mean expected_chance_bidirectional below
  `significance` is a finding chance does not explain: complete -> proceed 0.95,
  in_progress -> wait 0.8, the tail probability in the reasoning. A planted seed found
  alone (1 survivor where chance expects 1e-14) is a proceed, not a retry;
- in_progress: no update for more than `stall_after` -> retry 0.3 "stalled"; else
  significant (above) -> wait; else best > `promising` -> wait 0.7; else more than
  `halfway` of the trials done -> retry 0.4; else wait 0.5;
- complete: significant (above) -> proceed; best > `proceed_high` -> proceed 0.95; > `proceed_mid` -> proceed 0.80; >=
  `proceed_min` -> proceed 0.60; 1 .. proceed_min-1 -> retry 0.4; 0 -> escalate 0.9;
- interrupted / failed -> retry 0.3 (rerunning the same command resumes), with the error.

"At chance level" (a warning, any status): 1 <= best <= `chance_factor` x
expected_chance_bidirectional. A best of 0 is never "at chance": nothing was found, which
the rules above already judge, and a warning would only blur that.

The best count, and "none yet" before any successful trial, are the snapshot reader's
(`winopt.contracts.snapshot`), shared with the daemon's status.
Timestamps without an offset (what the pre-winopt writer produced) are local time.

`winopt evaluate` exits 0 for every decision (a decision is not an error); with
`--exit-code` it exits proceed 0, wait 3, retry 4, escalate 5, for scripts that branch on
it (1 and 2 keep meaning crash and bad input).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from winopt.contracts.schemas import CONFIG_NAME, config_path, read_snapshot
from winopt.contracts.errors import UserError
from winopt.contracts.snapshot import SnapshotError, SnapshotView, view
from winopt.handlers.evaluate.thresholds import Thresholds

ACTIONS = ("proceed", "wait", "retry", "escalate")

#: `winopt evaluate --exit-code`: the exit status per action (1 and 2 stay errors)
EXIT_CODES = {"proceed": 0, "wait": 3, "retry": 4, "escalate": 5}

#: who resumes an interrupted or failed run, in its decision's reasoning
RESUMER = "running the same command again"
#: ... for a spool job the daemon runs (it resumes them by itself)
DAEMON_RESUMER = "the daemon"

# --- the decision ------------------------------------------------------------------------


def evaluate(
    target: str | os.PathLike[str],
    thresholds: Thresholds = Thresholds(),
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The SPEC §4 decision for a run directory or a config file."""
    now = _aware(now if now is not None else datetime.now(timezone.utc))
    path = config_path(target)
    try:
        raw = read_snapshot(path)
        mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    except FileNotFoundError:
        # A directory that does not exist either may be a run not started yet, or a typo:
        # the decision stays the SPEC's, the warning lets a person tell the two apart.
        warnings = [] if path.name == CONFIG_NAME and path.parent.is_dir() else [f"{path} does not exist"]
        return _decision("retry", 0.0, f"{path}: output file not yet created", path, now,
                         rule="missing", warnings=warnings)
    except UserError as exc:
        return _decision("escalate", 0.0, f"{exc}", path, now, rule="unreadable")
    return decide(raw, thresholds, now=now, path=path, file_mtime=mtime)


def decide(
    raw: Mapping[str, Any],
    thresholds: Thresholds = Thresholds(),
    *,
    now: datetime | None = None,
    path: str | os.PathLike[str] | None = None,
    file_mtime: datetime | None = None,
    resumer: str = RESUMER,
) -> dict[str, Any]:
    """The SPEC §4 decision for a snapshot already read (a dict from `read_snapshot`).

    `file_mtime` stands in for a missing or unparseable `last_updated` in the stall rule;
    `resumer` says who resumes an interrupted run (the daemon, for its own jobs)."""
    now = _aware(now if now is not None else datetime.now(timezone.utc))
    try:
        snap = view(raw)
    except SnapshotError as exc:
        return _decision("escalate", 0.0, f"{path}: {exc}", path, now, rule="malformed")
    warnings: list[str] = []
    if not snap.status_given:
        warnings.append("no status field (pre-winopt file): treated as complete")
    action, confidence, reasoning, rule = _apply_rules(snap, thresholds, now, file_mtime, warnings,
                                                       resumer)  # fmt: skip
    if _at_chance(snap.best, snap.expected, thresholds.chance_factor):
        warnings.append(
            f"at chance level: best {snap.best} <= {thresholds.chance_factor:g} x expected "
            f"{snap.expected:.3g} bidirectional survivors from random draws"
        )
    return _decision(
        action, confidence, reasoning, path, now, rule=rule, warnings=warnings, snap=snap
    )


def decision_for_bad_survivors(
    path: str | os.PathLike[str], reason: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """Escalate: the run's survivors file exists but does not convert (SPEC §5, Convert).
    `reason` is the converter's message (a leading "PATH: " is dropped)."""
    now = _aware(now if now is not None else datetime.now(timezone.utc))
    prefix = f"{os.fspath(path)}: "
    reason = reason[len(prefix) :] if reason.startswith(prefix) else reason
    reasoning = (
        f"{path}: survivors file does not convert ({reason}); the previous NPZ stays in place."
    )
    return _decision("escalate", 0.0, reasoning, path, now, rule="bad_survivors")


def _apply_rules(
    snap: SnapshotView, t: Thresholds, now: datetime, file_mtime: datetime | None, warnings: list[str],
    resumer: str = "running the same command again",
) -> tuple[str, float, str, str]:
    """(action, confidence, reasoning, rule name) for a readable snapshot."""
    if snap.status == "in_progress":
        return _in_progress(snap, t, now, file_mtime, warnings)
    if snap.status == "complete":
        return _complete(snap, t, warnings)
    error = f": {snap.error}" if snap.error else " (no error recorded)"
    return (
        "retry",
        t.confidence_ended,
        f"Run {snap.status} after {_trials(snap)}, best {_best(snap)}{error}; "
        f"{resumer} resumes it.",
        snap.status,
    )


def _in_progress(
    snap: SnapshotView, t: Thresholds, now: datetime, file_mtime: datetime | None, warnings: list[str]
) -> tuple[str, float, str, str]:
    """The in_progress rules: stalled, promising, poor past halfway, early."""
    updated = _updated_at(snap.last_updated, file_mtime, warnings)
    if updated is not None:
        age = (now - updated).total_seconds()
        if age < -300:
            warnings.append(f"last update {updated.isoformat()} is in the future (clock skew?)")
        if age > t.stall_after:
            return (
                "retry",
                t.confidence_stalled,
                f"In progress but stalled: no update for {_span(age)} "
                f"(more than {_span(t.stall_after)})"
                f" after {_trials(snap)}, best {_best(snap)}; resume the run.",
                "stalled",
            )
    tail = _significant(snap, t)
    if tail is not None:
        return (
            "wait",
            t.confidence_significant_running,
            f"In progress: {_trials(snap)}, best {snap.best} where chance expects "
            f"{snap.expected:.3g} (Poisson tail {tail:.3g} < {t.significance:g}): a finding "
            "chance does not explain; let it run.",
            "significant_running",
        )
    best = snap.best or 0
    if best > t.promising:
        return (
            "wait",
            t.confidence_promising,
            f"In progress: {_trials(snap)}, best {best} > {t.promising}: let it run.",
            "promising",
        )
    if snap.total and snap.completed is not None and snap.completed > t.halfway * snap.total:
        return (
            "retry",
            t.confidence_poor,
            f"In progress: {_trials(snap)} (more than {t.halfway:.0%}) and best only {_best(snap)} "
            f"(<= {t.promising}): retry with other bounds.",
            "poor",
        )
    return (
        "wait",
        t.confidence_early,
        f"In progress: {_trials(snap)}, best {_best(snap)} so far: too early to judge.",
        "early",
    )


def _complete(snap: SnapshotView, t: Thresholds, warnings: list[str]) -> tuple[str, float, str, str]:
    """The complete tiers."""
    if snap.best is None:
        warnings.append("no best count in the file: counted as 0")
    best = snap.best or 0
    done = f"Complete after {_trials(snap)}: best {best} bidirectional survivors"
    tail = _significant(snap, t)
    if tail is not None:
        return (
            "proceed",
            t.confidence_significant,
            f"{done} where chance expects {snap.expected:.3g} (Poisson tail {tail:.3g} < "
            f"{t.significance:g}): a finding chance does not explain.",
            "complete_significant",
        )
    if best > t.proceed_high:
        return ("proceed", t.confidence_high, f"{done} (> {t.proceed_high}).", "complete_high")
    if best > t.proceed_mid:
        return ("proceed", t.confidence_mid, f"{done} (> {t.proceed_mid}).", "complete_mid")
    if best >= t.proceed_min:
        return ("proceed", t.confidence_min, f"{done} (>= {t.proceed_min}).", "complete_min")
    if best >= 1:
        return (
            "retry",
            t.confidence_few,
            f"{done}, fewer than {t.proceed_min}: retry with other bounds.",
            "complete_few",
        )
    return (
        "escalate",
        t.confidence_zero,
        f"{done}: nothing survived, a person should look at the inputs.",
        "complete_zero",
    )


def _significant(snap: SnapshotView, t: Thresholds) -> float | None:
    """The Poisson tail of a best >= 1 when it is below `t.significance`, else None."""
    if snap.best is None or snap.best < 1 or snap.expected is None:
        return None
    tail = poisson_tail(snap.best, snap.expected)
    return tail if tail < t.significance else None


def poisson_tail(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean), accurate when tiny: the terms from k upward are
    summed (each is the one before times mean / j, so they shrink once j > mean), starting
    from the k-th term computed in logs; when k is at or below the mean, 1 - P(X < k), its
    terms summed from k - 1 downward (each the one before times j / mean). Either way only
    the terms that matter are visited, a few times sqrt(mean) at most, so a count in the
    billions costs milliseconds, not minutes."""
    if k <= 0:
        return 1.0
    if mean <= 0.0:
        return 0.0
    if mean >= k:
        return max(0.0, 1.0 - _terms(k - 1, mean, down=True))
    return min(1.0, _terms(k, mean, down=False))


def _terms(start: int, mean: float, *, down: bool) -> float:
    """The Poisson(mean) probabilities from `start` up (or down to 0), until they no longer
    change the sum."""
    term = math.exp(start * math.log(mean) - mean - math.lgamma(start + 1))
    total, j = 0.0, start
    while term > total * 1e-17 and term > 0.0:
        total += term
        if down:
            if j == 0:
                break
            term *= j / mean
            j -= 1
        else:
            j += 1
            term *= mean / j
    return total


def _at_chance(best: int | None, expected: float | None, factor: float) -> bool:
    """1 <= best <= factor x expected (see the module docstring for why 0 is excluded)."""
    return best is not None and expected is not None and 1 <= best <= factor * expected


def _updated_at(
    text: str | None, file_mtime: datetime | None, warnings: list[str]
) -> datetime | None:
    """When the snapshot was last written: `last_updated`, else the file's mtime."""
    if text is not None:
        try:
            return _aware(datetime.fromisoformat(text))
        except ValueError:
            warnings.append(f"last_updated {text!r} is not an ISO 8601 time: used the file's mtime")
    elif file_mtime is not None:
        warnings.append("no last_updated: used the file's mtime for the stall check")
    return _aware(file_mtime) if file_mtime is not None else None


def _aware(moment: datetime) -> datetime:
    """Naive times are local time (as the pre-winopt writer's datetime.now())."""
    return moment if moment.tzinfo is not None else moment.astimezone()


def _trials(snap: SnapshotView) -> str:
    done = "?" if snap.completed is None else snap.completed
    return f"{done}/{snap.total if snap.total is not None else '?'} trials"


def _best(snap: SnapshotView) -> str:
    return "none yet" if snap.best is None else str(snap.best)


def _span(seconds: float) -> str:
    """90061 -> "1d 1h 1m"; short spans in minutes or seconds."""
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return " ".join(parts) if parts else f"{rest}s"


def _decision(
    action: str,
    confidence: float,
    reasoning: str,
    path: str | os.PathLike[str] | None,
    now: datetime,
    *,
    rule: str,
    warnings: list[str] | None = None,
    snap: SnapshotView | None = None,
) -> dict[str, Any]:
    """The decision dict (SPEC §4): plain JSON types only."""
    return {
        "action": action,
        "confidence": confidence,
        "reasoning": reasoning,
        "warnings": list(warnings or ()),
        "evaluated_at": now.isoformat(timespec="seconds"),
        "rule": rule,
        "path": None if path is None else os.fspath(path),
        "status": snap.status if snap else None,
        "completed_trials": snap.completed if snap else None,
        "total_trials": snap.total if snap else None,
        "best_bidirectional_count": snap.best if snap else None,
        "expected_chance_bidirectional": snap.expected if snap else None,
        "last_updated": snap.last_updated if snap else None,
        "error": snap.error if snap else None,
    }


def format_decision(decision: Mapping[str, Any]) -> str:
    """One readable line: "retry (0.30): reasoning [warning: ...]"."""
    line = f"{decision['action']} ({decision['confidence']:.2f}): {decision['reasoning']}"
    for warning in decision.get("warnings") or ():
        line += f" [warning: {warning}]"
    return line
