"""The search space of a window search (SPEC §2): one definition, used by `winopt
optimize` (its options, and the Optuna trial's suggestions) and by the job-file checks.

Each window parameter has default bounds (the existing pipeline's), hard limits (what any
bound may be), and one text form `LOW:HIGH` or `VALUE` (`format_bounds`/`parse_bounds`):
the options a person types and the command line the daemon builds for a spool job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from winopt.contracts.errors import UserError
from winopt.contracts.schemas import TIME_OF_DAY

if TYPE_CHECKING:  # annotations only: job checks (`winopt submit`) need no Optuna
    import optuna
    from optuna.trial import FrozenTrial, Trial

#: SPEC §2 defaults of the existing pipeline. skip_max's lower end is raised per trial to
#: the skip_min drawn, as `max(skip_min, 10)`.
DEFAULT_BOUNDS: dict[str, tuple[Any, Any]] = {
    "window_size": (2, 50),
    "offset": (0, 100),
    "skip_min": (0, 10),
    "skip_max": (10, 250),
    "forward_threshold": (0.15, 0.60),
    "reverse_threshold": (0.15, 0.60),
}
INT_PARAMS = ("window_size", "offset", "skip_min", "skip_max")
FLOAT_PARAMS = ("forward_threshold", "reverse_threshold")
#: window parameter -> (type, lowest allowed, highest allowed): what any bound may be
#: (a threshold is a match rate in (0, 1]; a window holds at least one draw)
LIMITS: dict[str, tuple[type, float, float]] = {
    "window_size": (int, 1, 10_000),
    "offset": (int, 0, 1_000_000),
    "skip_min": (int, 0, 100_000),
    "skip_max": (int, 0, 100_000),
    "forward_threshold": (float, 0.0, 1.0),
    "reverse_threshold": (float, 0.0, 1.0),
}


def format_bounds(low: Any, high: Any) -> str:
    """The text form `parse_bounds` reads: `8` (fixed) or `4:12`."""
    return str(low) if low == high else f"{low}:{high}"


def skips_that_cannot_hold(bounds: dict[str, tuple[Any, Any]]) -> tuple[Any, Any] | None:
    """(highest skip_min, highest skip_max) when skip_max cannot reach every skip_min
    drawn (the optimizer draws skip_max >= skip_min), else None; bounds not given are the
    defaults."""
    skip_min_high = bounds.get("skip_min", DEFAULT_BOUNDS["skip_min"])[1]
    skip_max_high = bounds.get("skip_max", DEFAULT_BOUNDS["skip_max"])[1]
    return (skip_min_high, skip_max_high) if skip_max_high < skip_min_high else None


def parse_bounds(name: str, text: str) -> tuple[Any, Any]:
    """`"8"` (fixed) or `"4:12"` (narrowed) for parameter `name`, as numbers.

    Raises a one-line `UserError` naming the option for anything else."""
    kind = int if name in INT_PARAMS else float
    parts = text.split(":")
    try:
        if len(parts) == 1:
            low = high = kind(parts[0])
        elif len(parts) == 2:
            low, high = kind(parts[0]), kind(parts[1])
        else:
            raise ValueError
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise UserError(
            f"--{name.replace('_', '-')} {text!r}: expected {noun} or LOW:HIGH"
        ) from None
    return low, high


def parse_time_of_day(text: str) -> tuple[str, ...]:
    """A comma list of time-of-day selections, e.g. `midday` or `all,evening`."""
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [t for t in chosen if t not in TIME_OF_DAY]
    if not chosen or unknown:
        raise UserError(
            f"--time-of-day {text!r}: expected a comma list of {', '.join(TIME_OF_DAY)}"
        )
    # one order whatever the user wrote: the choices are part of the study (see below)
    return tuple(t for t in TIME_OF_DAY if t in chosen)


def check_time_of_day_choices(study: optuna.Study, trials: Iterable[FrozenTrial],
                              space: SearchSpace, where: str) -> None:
    """Refuse a resume whose time_of_day choices differ from the study's: Optuna cannot
    change a categorical parameter's choices within a study (every later trial would fail
    with "CategoricalDistribution does not support dynamic value space")."""
    stored = next((t.distributions["time_of_day"] for t in trials
                   if "time_of_day" in t.distributions), None)
    if stored is None or tuple(stored.choices) == tuple(space.time_of_day):
        return
    raise UserError(
        f"{where}: study {study.study_name!r} samples time_of_day from "
        f"{','.join(map(str, stored.choices))}, not {','.join(space.time_of_day)}; Optuna cannot "
        "change a categorical's choices within a study: resume with --time-of-day "
        f"{','.join(map(str, stored.choices))}, or use a new --out/--study"
    )


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of every window parameter; `low == high` fixes a parameter."""

    bounds: dict[str, tuple[Any, Any]] = field(default_factory=lambda: dict(DEFAULT_BOUNDS))
    time_of_day: tuple[str, ...] = TIME_OF_DAY
    #: True when time_of_day came from the user (then an empty selection is an error)
    time_of_day_given: bool = False

    def with_bounds(self, **given: tuple[Any, Any]) -> SearchSpace:
        """A copy with some bounds replaced (None values are ignored)."""
        bounds = dict(self.bounds)
        bounds.update({k: v for k, v in given.items() if v is not None})
        return replace(self, bounds=bounds)

    def validate(self) -> None:
        """One clear line for the first impossible bound."""
        for name, (low, high) in self.bounds.items():
            opt = f"--{name.replace('_', '-')}"
            if low > high:
                raise UserError(f"{opt} {low}:{high}: the low end is above the high end")
            if name in FLOAT_PARAMS and not (0 < low and high <= 1):
                raise UserError(f"{opt} {low}:{high}: thresholds lie in (0, 1]")
            if name in INT_PARAMS and low < LIMITS[name][1]:
                raise UserError(f"{opt} {low}:{high}: must be at least {LIMITS[name][1]}")
        if skips := skips_that_cannot_hold(self.bounds):
            skip_min_high, skip_max_high = skips
            raise UserError(
                f"--skip-max upper bound {skip_max_high} is below --skip-min's upper bound "
                f"{skip_min_high}: every skip_min drawn needs a skip_max >= it"
            )

    def suggest(self, trial: Trial) -> dict[str, Any]:
        """The trial's parameters, in WINDOW_PARAMS order (define-by-run: skip_max's lower
        end follows the skip_min drawn)."""
        b = self.bounds
        params: dict[str, Any] = {
            "window_size": trial.suggest_int("window_size", *b["window_size"]),
            "offset": trial.suggest_int("offset", *b["offset"]),
            "skip_min": trial.suggest_int("skip_min", *b["skip_min"]),
        }
        low, high = b["skip_max"]
        params["skip_max"] = trial.suggest_int("skip_max", max(low, params["skip_min"]), high)
        for name in FLOAT_PARAMS:
            params[name] = trial.suggest_float(name, *b[name])
        params["time_of_day"] = trial.suggest_categorical("time_of_day", self.time_of_day)
        return params

    def describe(self) -> dict[str, Any]:
        """Plain JSON form (for logs and the study's attributes)."""
        return {**{k: list(v) for k, v in self.bounds.items()},
                "time_of_day": list(self.time_of_day)}
