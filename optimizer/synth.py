"""Synthetic draw histories with a planted seed (`winopt synth`, SPEC §1).

A planted history is the ground truth the sieve is tested against: draw `t` of the
planted selection is `y_{skip + t(skip+1)} mod mod`, `y_t` the raw outputs of the
generator seeded with `--seed` (the rigs' seed: its state before draw 0). So the sieve,
run with any window that fits and a seed range holding the seed, must report it at both
rates 1.0 with skip `skip`; and with skip 0 the rigs' reference `cpu_reference(seed, n)`
regenerates the planted selection.

Sessions. `--sessions` lists the sessions written per day (`midday,evening` by default,
one of them, or `none` for a plain list of ints); dates advance one day per full cycle of
sessions and within a day midday comes first. `--plant-in` says which `time_of_day`
selection holds the planted stream:
- `all` (default): every entry, in file order, is the planted stream; `--draws` entries.
- `midday` or `evening`: only that session is planted and every other session's draw is
  uniformly random (from `--rng-seed`). There are `--draws` days, so the selection has
  `--draws` draws and the file `--draws × sessions` entries. The sieve finds the state
  with `time_of_day` equal to the planted session and, with any other selection, sees
  noise: that is how a test shows the selection matters.
Everything is deterministic given the arguments (the random draws come from
`numpy.random.default_rng(rng_seed)`), and both files are published atomically.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from winopt.contracts.publish import publish_json
from winopt.contracts.errors import UserError, in_file
from winopt.optimizer.draws import SESSIONS
from winopt.optimizer.sieve.generators import FAMILIES, check_seed_range, predicted_draws

TRUTH_SUFFIX = ".truth.json"
PLANT_IN = ("all", *SESSIONS)


@dataclass(frozen=True)
class Plan:
    """What to plant and how to lay it out: the arguments of `winopt synth`."""

    prng: str
    seed: int
    skip: int
    draws: int
    mod: int = 1000
    sessions: tuple[str, ...] = SESSIONS
    plant_in: str = "all"
    rng_seed: int = 0
    start_date: str = "2020-01-01"

    def check(self) -> None:
        """Raise `UserError` for a plan no history can satisfy."""
        if self.prng not in FAMILIES:
            raise UserError(f"unknown prng {self.prng!r} (one of {', '.join(FAMILIES)})")
        if self.draws < 1:
            raise UserError(f"--draws must be at least 1, got {self.draws}")
        for name, value, low in (
            ("--skip", self.skip, 0),
            ("--seed", self.seed, 0),
            ("--mod", self.mod, 2),
            ("--rng-seed", self.rng_seed, 0),
        ):
            if value < low:
                raise UserError(f"{name} must be >= {low}, got {value}")
        problem = check_seed_range(self.prng, self.seed, 1)
        if problem:
            raise UserError(f"--seed {self.seed}: {problem}")
        if self.plant_in not in PLANT_IN:
            raise UserError(
                f"--plant-in must be one of {', '.join(PLANT_IN)}, got {self.plant_in!r}"
            )
        if self.plant_in != "all" and self.plant_in not in self.sessions:
            raise UserError(f"--plant-in {self.plant_in} needs that session in --sessions")
        try:
            start = dt.date.fromisoformat(self.start_date)
        except ValueError:
            raise UserError(f"--start-date must be YYYY-MM-DD, got {self.start_date!r}") from None
        per_day = 1 if self.plant_in != "all" else max(1, len(self.sessions))
        days = -(-self.draws // per_day)
        if self.sessions and (dt.date.max - start).days < days - 1:
            raise UserError(
                f"--start-date {self.start_date}: {days} days of draws run past year 9999"
            )


def planted_draws(prng: str, seed: int, skip: int, draws: int, mod: int) -> list[int]:
    """The planted stream: `y_{skip + t(skip+1)} mod mod` for `t = 0 .. draws-1`, in
    memory that does not grow with `skip`."""
    return predicted_draws(prng, seed, skip, draws, mod)


def build_history(plan: Plan) -> list[Any]:
    """The history entries of `plan`: objects with date/session/draw, or plain ints."""
    plan.check()
    stream = planted_draws(plan.prng, plan.seed, plan.skip, plan.draws, plan.mod)
    if not plan.sessions:
        return stream
    sessions = [s for s in SESSIONS if s in plan.sessions]
    if plan.plant_in == "all":
        values = stream
        slots = [sessions[k % len(sessions)] for k in range(len(values))]
    else:
        noise = np.random.default_rng(plan.rng_seed).integers(
            0, plan.mod, plan.draws * len(sessions)
        )
        values = noise.tolist()
        values[sessions.index(plan.plant_in) :: len(sessions)] = stream
        slots = sessions * plan.draws
    start = dt.date.fromisoformat(plan.start_date)
    per_day = len(sessions)
    return [
        {
            "date": (start + dt.timedelta(days=k // per_day)).isoformat(),
            "session": slot,
            "draw": value,
        }
        for k, (slot, value) in enumerate(zip(slots, values, strict=True))
    ]


def truth_path(history: str | os.PathLike[str]) -> Path:
    """Where the truth of `history` lives: `NAME.truth.json` beside `NAME.json`."""
    history = Path(history)
    stem = history.name[: -len(".json")] if history.name.endswith(".json") else history.name
    return history.with_name(stem + TRUTH_SUFFIX)


def truth_record(plan: Plan, history: Path, entries: int) -> dict[str, Any]:
    """What was planted, so tests and the demo can check the sieve against it."""
    record = asdict(plan)
    del record["plant_in"]  # written as time_of_day, the name the sieve knows it by
    record.update(
        sessions=list(plan.sessions),
        time_of_day=plan.plant_in,
        history=history.name,
        entries=entries,
        rule="draw t of the time_of_day selection = y_(skip+t*(skip+1)) mod mod, "
        "t = 0 .. draws-1, y_0 the first output of the generator seeded with seed",
    )
    return record


def write(plan: Plan, out: str | os.PathLike[str]) -> tuple[Path, Path, int]:
    """Publish the history at `out` and its truth beside it; returns both paths and the size."""
    out = Path(out)
    entries = build_history(plan)
    if not out.parent.is_dir():
        raise in_file(out, "output directory does not exist")
    publish_json(out, entries)
    truth = truth_path(out)
    publish_json(truth, truth_record(plan, out, len(entries)))
    return out, truth, len(entries)


def load_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A truth file written by `write` (used by the demo and tests)."""
    try:
        return orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise in_file(path, f"cannot read the truth file: {exc}") from None


