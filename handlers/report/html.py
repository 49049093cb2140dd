"""`winopt report`: one self-contained HTML file about a run (issue 16).

Built with Optuna's visualization module and plotly, the optional extra `winopt[report]`:
the optimization history with its best so far, each trial's bidirectional count against
the chance expectation it had, parameter importances, slice and parallel-coordinate
plots, and the best trial's survivors (skip histogram, forward and reverse rates). plotly.js
is written into the page once, so it opens offline: nothing is fetched. A plot the study
cannot give yet (importances need two finished trials that differ) is a line saying why,
not a failed report. Published atomically: a reader never sees half a page.
"""

from __future__ import annotations

import html
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna.visualization as vis
import orjson
import plotly.graph_objects as go
import plotly.offline

from winopt.contracts.publish import publish_bytes
from winopt.contracts.schemas import SURVIVORS_NAME
from winopt.handlers.report.trials import TrialFacts, best_trial, finished, trial_facts

REPORT_NAME = "report.html"
#: survivors plotted at most (a sample of a larger file, evenly spaced, says so)
MAX_SURVIVORS_PLOTTED = 100_000
#: survivors files read at most (bytes); a larger one is left out with a line saying so
MAX_SURVIVORS_BYTES = 512 << 20
def build_report(run_dir: Path, study: Any, snapshot: dict[str, Any] | None, *, title: str) -> bytes:
    """The report's bytes for `study` (an optuna.Study) of the run in `run_dir`."""
    trials = trial_facts(study)
    sections = [
        ("history", "Optimization history (best so far)", _optuna_plot("plot_optimization_history", study)),
        ("chance", "Bidirectional count against the chance expectation, per trial", _chance_figure(trials)),
        ("importances", "Parameter importances", _optuna_plot("plot_param_importances", study)),
        ("slice", "Slice plot", _optuna_plot("plot_slice", study)),
        ("parallel", "Parallel coordinates", _optuna_plot("plot_parallel_coordinate", study)),
    ]
    sections += _survivor_sections(run_dir, snapshot, best_trial(trials))
    body = [f"<h1>{_e(title)}</h1>", _summary(snapshot, trials)]
    for anchor, heading, content in sections:
        body.append(f'<section id="{anchor}"><h2>{_e(heading)}</h2>')
        if isinstance(content, str):
            body.append(f'<p class="missing">{_e(content)}</p>')
        else:
            body.append(content.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{anchor}",
                                        config={"displaylogo": False}))
        body.append("</section>")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em}section{margin-bottom:2em}"
        ".missing{color:#a00}table{border-collapse:collapse}td{padding:0 1em 0 0}</style>"
        f"<script type=\"text/javascript\">{plotly.offline.get_plotlyjs()}</script>"
        "</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    return page.encode("utf-8")


def write_report(path: Path, data: bytes) -> None:
    publish_bytes(path, data, mode=0o664)


def _e(text: Any) -> str:
    return html.escape(str(text))


def _summary(snapshot: dict[str, Any] | None, trials: list[TrialFacts]) -> str:
    snap = snapshot or {}
    best = best_trial(trials)
    rows = [
        ("status", snap.get("status", "-")),
        ("trials", f"{len(finished(trials))} / {snap.get('total_trials', '-')}"),
        ("prng", snap.get("prng_type", "-")),
        ("seeds", f"{snap.get('seed_start', '-')} + {snap.get('seed_count', '-')}"),
        ("best", "-" if best is None else f"{best.value:g} survivor{'' if best.value == 1 else 's'} "
                                          f"(trial {best.number}, chance expects {_num(best.expected)})"),
        ("best window", "-" if best is None else ", ".join(f"{k} {v}" for k, v in best.params.items())),
        ("written", datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")),
    ]
    cells = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table id="summary">{cells}</table>'


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _none_complete(pruned: int) -> str:
    """Why a plot of complete trials has nothing to draw."""
    if pruned:
        return f"no complete trial: all {pruned} finished trial{'' if pruned == 1 else 's'} were pruned"
    return "no finished trial yet"


def _optuna_plot(name: str, study: Any) -> Any:
    """An optuna.visualization figure, or the line saying why there is none."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        return _none_complete(sum(t.state.name == "PRUNED" for t in trials))
    if name == "plot_param_importances" and len({t.value for t in complete}) < 2:
        return "needs two finished trials with different counts"  # else Optuna draws equal bars
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(vis, name)(study)
    except Exception as exc:  # noqa: BLE001 - one plot the study cannot give never costs the report
        return f"not available for this study: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _chance_figure(trials: list[TrialFacts]) -> Any:
    """Counts and chance expectations per trial on a log axis (a count of 0 cannot be
    drawn there: it is listed in the hover of its expectation)."""
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    if not done:
        return _none_complete(sum(t.state == "PRUNED" for t in trials))
    fig = go.Figure()
    shown = [t for t in done if t.value > 0]
    fig.add_trace(go.Scatter(x=[t.number for t in shown], y=[t.value for t in shown], mode="markers",
                             name="bidirectional count",
                             text=["; ".join(t.notes) for t in shown], hovertemplate="trial %{x}: %{y}<br>%{text}"))
    expected = [t for t in done if t.expected is not None and t.expected > 0]
    fig.add_trace(go.Scatter(x=[t.number for t in expected], y=[t.expected for t in expected], mode="markers",
                             marker={"symbol": "x"}, name="chance expectation",
                             text=[f"count {t.value:g}" for t in expected],
                             hovertemplate="trial %{x}: chance %{y:.3g}<br>%{text}"))
    fig.update_layout(xaxis_title="trial", yaxis_title="survivors", yaxis_type="log")
    return fig


def _survivor_sections(run_dir: Path, snapshot: dict[str, Any] | None,
                       best: TrialFacts | None) -> list[tuple[str, str, Any]]:
    """The best trial's survivors: a skip histogram and the two rates."""
    path = run_dir / SURVIVORS_NAME
    which = f"trial {best.number}" if best is not None else "best trial"
    try:
        size = path.stat().st_size
        if size > MAX_SURVIVORS_BYTES:
            why: str | None = f"{path.name} is {size >> 20} MiB, more than the report reads"
        else:
            records = orjson.loads(path.read_bytes())
            why = None if isinstance(records, list) else f"{path.name} is not a list"
    except FileNotFoundError:
        why = f"no {path.name} yet"
    except (OSError, ValueError) as exc:
        why = f"{path.name}: {exc}"
    if why is not None:
        return [("skips", f"Survivors of the {which}", why)]
    records = [r for r in records if isinstance(r, dict)]
    if not records:
        return [("skips", f"Survivors of the {which}", "the best trial has no survivors")]
    note = ""
    if len(records) > MAX_SURVIVORS_PLOTTED:
        step = len(records) / MAX_SURVIVORS_PLOTTED
        records = [records[int(i * step)] for i in range(MAX_SURVIVORS_PLOTTED)]
        note = f" (a sample of {MAX_SURVIVORS_PLOTTED})"
    skips = go.Figure(go.Histogram(x=[r.get("skip") for r in records], name="skip"))
    skips.update_layout(xaxis_title="skip", yaxis_title="survivors", bargap=0.05)
    rates = go.Figure()
    rates.add_trace(go.Histogram(x=[r.get("forward_match_rate") for r in records], name="forward rate", opacity=0.6))
    rates.add_trace(go.Histogram(x=[r.get("reverse_match_rate") for r in records], name="reverse rate", opacity=0.6))
    rates.update_layout(barmode="overlay", xaxis_title="match rate", yaxis_title="survivors")
    count = len(records)
    return [
        ("skips", f"Survivors of the {which}{note}: skip ({count} seeds)", skips),
        ("rates", f"Survivors of the {which}{note}: forward and reverse match rates", rates),
    ]
