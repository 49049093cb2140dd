"""One trial of a window search: the sieve for the trial's parameters (SPEC §2), what it
records on the trial, and what a snapshot needs of the best one.

The objective is the bidirectional survivor count. A trial whose window cannot be
evaluated on the history is PRUNED (an answer about the point: it counts), a stop request
makes it FAIL (it does not count, and resume runs it again).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, Trial

from winopt.contracts.schemas import WINDOW_PARAMS
from winopt.optimizer.space import SearchSpace
from winopt.optimizer.sieve.core import SieveParams, SieveResult, run_sieve

from winopt.optimizer.study import RunSettings

#: the trial user attribute the objective writes: what the sieve used and found, one dict
#: (one storage commit per trial, not one per field)
SIEVE_ATTR = "sieve"


class StopRequested(Exception):
    """Raised inside a trial when a signal asked the run to stop; the trial becomes FAIL
    (not counted) and resume runs it again."""


def sieve_params(settings: RunSettings, params: dict[str, Any]) -> SieveParams:
    """The sieve's parameters for one trial's window parameters."""
    return SieveParams(
        prng=settings.prng,
        window_size=int(params["window_size"]),
        offset=int(params["offset"]),
        skip_min=int(params["skip_min"]),
        skip_max=int(params["skip_max"]),
        forward_threshold=float(params["forward_threshold"]),
        reverse_threshold=float(params["reverse_threshold"]),
        seed_start=settings.seed_start,
        seed_count=settings.seed_count,
        mod=settings.mod,
    )


def used_params(result: SieveResult, time_of_day: str) -> dict[str, Any]:
    """The window parameters the sieve actually used (offset possibly clamped), plain types."""
    p = result.params
    return {
        "window_size": int(p.window_size), "offset": int(p.offset),
        "skip_min": int(p.skip_min), "skip_max": int(p.skip_max),
        "forward_threshold": float(p.forward_threshold),
        "reverse_threshold": float(p.reverse_threshold),
        "time_of_day": time_of_day,
    }


def sieve_attr(result: SieveResult, time_of_day: str) -> dict[str, Any]:
    """The trial's SIEVE_ATTR: lets a later run describe the trial without re-sieving."""
    chance = float(result.expected_chance_bidirectional)
    return {
        "used_params": used_params(result, time_of_day),
        "forward_count": int(result.forward_count),
        "reverse_count": int(result.reverse_count),
        "expected_chance_bidirectional": chance if math.isfinite(chance) else None,
        "notes": list(result.notes),
    }


class SieveObjective:
    """Objective = bidirectional survivor count. Keeps each trial's `SieveResult` until the
    snapshot writer takes it (`take`), so a new best's survivors are never recomputed."""

    def __init__(self, histories: dict[str, np.ndarray], settings: RunSettings,
                 space: SearchSpace, *, should_stop: Callable[[], bool] = lambda: False,
                 device: str | None = None, cores: int | None = None) -> None:
        self.histories = histories
        self.settings = settings
        self.space = space
        self.should_stop = should_stop
        self.device = device
        self.cores = cores
        self._results: dict[int, SieveResult] = {}

    def __call__(self, trial: Trial) -> float:
        self._check_stop()
        params = self.space.suggest(trial)
        draws = self.histories[params["time_of_day"]]
        if len(draws) < 2 * params["window_size"]:  # this point cannot be evaluated
            reason = (f"window_size {params['window_size']} needs {2 * params['window_size']} "
                      f"draws; time_of_day {params['time_of_day']} has {len(draws)}")
            trial.set_user_attr("infeasible", reason)
            raise optuna.TrialPruned(reason)
        result = self.sieve(params)
        trial.set_user_attr(SIEVE_ATTR, sieve_attr(result, params["time_of_day"]))
        self._results = {trial.number: result}  # only the trial in hand is kept
        return float(result.bidirectional_count)

    def sieve(self, params: dict[str, Any]) -> SieveResult:
        """Run the sieve for window parameters `params` (deterministic: resume re-runs it)."""
        draws = self.histories[params["time_of_day"]]
        return run_sieve(draws, sieve_params(self.settings, params), device=self.device,
                         cores=self.cores, progress=lambda _n: self._check_stop())

    def take(self, number: int) -> SieveResult | None:
        """The result of trial `number`, handed over once."""
        return self._results.pop(number, None)

    def _check_stop(self) -> None:
        if self.should_stop():
            raise StopRequested("stop requested by signal")


def trial_summary(trial: FrozenTrial) -> dict[str, Any]:
    """What the snapshot needs of a best trial, from its user attributes."""
    attrs = trial.user_attrs.get(SIEVE_ATTR) or {}
    params = attrs.get("used_params") or {k: trial.params.get(k) for k in WINDOW_PARAMS}
    return {
        "number": trial.number,
        "value": trial.value,
        "params": params,
        "forward_count": attrs.get("forward_count"),
        "reverse_count": attrs.get("reverse_count"),
        "expected_chance_bidirectional": attrs.get("expected_chance_bidirectional"),
        "notes": attrs.get("notes") or [],
    }
