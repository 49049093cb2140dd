"""Names and fields of the files winopt publishes (SPEC §3), in one place.

The optimizer writes the config snapshot and survivors JSON, the converter writes the NPZ
and its meta, the daemon and `winopt evaluate` read them all: they meet here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from winopt.contracts.errors import in_file

CONFIG_NAME = "optimal_window_config.json"
SURVIVORS_NAME = "bidirectional_survivors.json"
NPZ_NAME = "bidirectional_survivors_binary.npz"
NPZ_META_NAME = "bidirectional_survivors_binary.meta.json"
TRAIN_HISTORY_NAME = "train_history.json"  # the first int(0.8 N) draws, all sessions (SPEC §3)
HOLDOUT_HISTORY_NAME = "holdout_history.json"  # the other draws

#: version of optimal_window_config.json (additive to the pre-winopt schema). 3: the old
#: pipeline's keys (bidirectional_count, optimization_score, sessions, test_both_modes) and
#: integer counts (0, never null) before the first successful trial
CONFIG_SCHEMA_VERSION = 3
#: version of bidirectional_survivors_binary.meta.json and of the NPZ's array set. 2: the
#: seven overlap statistics in the NPZ; the meta's `encodings` laid out as the old
#: converter's (`prng_type` and `skip_mode` code tables, every code) plus `dtypes`; the
#: meta's `warnings` (what an old-pipeline file left to defaults)
NPZ_SCHEMA_VERSION = 2

#: snapshot lifecycle
STATUSES = ("in_progress", "complete", "interrupted", "failed")

#: the NPZ's `prng_type` code table (SPEC §3): every generator name a survivors file may
#: carry -> its uint8 code. The old pipeline's codes (0-11, its `_reverse` variants and randu
#: included, so old files keep their codes) and winopt's new families (12-17). Wider than
#: what winopt generates (PRNG_CODES): the rest comes only from old-pipeline files. Codes are
#: fixed forever: the rigs decode them.
PRNG_TYPE_CODES: dict[str, int] = {
    "java_lcg": 0,
    "java_lcg_reverse": 1,
    "mt19937": 2,
    "mt19937_reverse": 3,
    "xorshift128": 4,
    "xorshift128_reverse": 5,
    "lcg32": 6,
    "lcg32_reverse": 7,
    "minstd": 8,
    "minstd_reverse": 9,
    "randu": 10,
    "randu_reverse": 11,
    "xorshift32": 12,
    "xorshift64": 13,
    "pcg32": 14,
    "xoshiro256pp": 15,
    "philox4x32": 16,
    "sfc64": 17,
}

#: the old pipeline's suffix for its variable-skip runs (`java_lcg_hybrid`): coded as the
#: family before it (the rigs' loader decodes no `_hybrid` name; `skip_mode` says variable)
HYBRID_SUFFIX = "_hybrid"

#: the families winopt generates (SPEC §1) -> their NPZ codes: what `--prng` and job files
#: accept. A subset of PRNG_TYPE_CODES, kept separate so that the wider code table (for old
#: files) never widens what winopt offers to generate.
PRNG_CODES: dict[str, int] = {
    name: PRNG_TYPE_CODES[name]
    for name in ("java_lcg", "lcg32", "minstd", "xorshift32", "xorshift64", "pcg32",
                 "mt19937", "xorshift128", "xoshiro256pp", "philox4x32", "sfc64")
}

#: skip mode -> uint8 code in the NPZ (the old converter's table). winopt writes
#: "constant" only; "variable" comes from the old pipeline's hybrid runs.
SKIP_MODES: dict[str, int] = {"constant": 0, "variable": 1}

TIME_OF_DAY = ("all", "midday", "evening")

#: the trial's overlap statistics the rigs' Step 2.5 scores with (SPEC §3; old pipeline
#: definitions over the trial's forward, reverse and bidirectional seed sets F, R, B)
OVERLAP_FIELDS = (
    "intersection_count",  # |B|
    "intersection_ratio",  # |B| / |F ∪ R|
    "forward_only_count",  # |F − R|
    "reverse_only_count",  # |R − F|
    "survivor_overlap_ratio",  # |B| / |F|
    "bidirectional_selectivity",  # |F| / |R|
    "intersection_weight",  # |B| / (|F| + |R|)
)

#: NPZ array -> (dtype, survivors JSON key it comes from). `seeds` is uint32 when every
#: seed < 2**32, else uint64 (decided per file, never truncated).
NPZ_ARRAYS: dict[str, tuple[str, str]] = {
    "seeds": ("uint32|uint64", "seed"),
    "forward_matches": ("float32", "forward_match_rate"),
    "reverse_matches": ("float32", "reverse_match_rate"),
    "score": ("float32", "score"),
    "skip": ("int32", "skip"),
    "window_size": ("int32", "window_size"),
    "offset": ("int32", "offset"),
    "trial_number": ("int32", "trial_number"),
    "skip_min": ("int32", "skip_min"),
    "skip_max": ("int32", "skip_max"),
    "skip_range": ("int32", "skip_range"),
    "forward_count": ("float32", "forward_count"),
    "reverse_count": ("float32", "reverse_count"),
    "bidirectional_count": ("float32", "bidirectional_count"),
    **{name: ("float32", name) for name in OVERLAP_FIELDS},
    "skip_mode": ("uint8", "skip_mode"),
    "prng_type": ("uint8", "prng_type"),
}

#: the flattened window parameters, also the Optuna parameter names
WINDOW_PARAMS = (
    "window_size",
    "offset",
    "skip_min",
    "skip_max",
    "forward_threshold",
    "reverse_threshold",
    "time_of_day",
)

#: every key of optimal_window_config.json
CONFIG_FIELDS = (
    "schema_version",
    "status",
    "note",
    "error",
    "study_name",
    "started_at",
    "completed_at",
    "last_updated",
    "completed_trials",
    "total_trials",
    "last_trial_number",
    "last_trial_value",
    "best_trial_number",
    "best_value",
    "best_bidirectional_count",
    "best_params",
    *WINDOW_PARAMS,
    "prng_type",
    "mod",
    "seed_start",
    "seed_count",
    "forward_count",
    "reverse_count",
    "bidirectional_count",  # the old pipeline's name for the best trial's count
    "expected_chance_bidirectional",
    "survivors_file",
    "survivors_sha256",
    "survivors_count",
    # more keys of the old pipeline's config (its watcher and Steps 2-3 read them)
    "optimization_score",
    "sessions",
    "test_both_modes",
)


# --- readers shared by `winopt evaluate`, `winopt convert` and the daemon -------------------


def config_path(target: str | os.PathLike[str]) -> Path:
    """The snapshot a run is judged by: `DIR/optimal_window_config.json` for a directory,
    else `target` itself (a config file named directly)."""
    target = Path(target)
    return target / CONFIG_NAME if target.is_dir() else target


def read_snapshot(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an optimal_window_config.json (either schema) as a dict.

    A missing file raises `FileNotFoundError` (a run that has not written yet is not an
    error); anything else that is not a readable JSON object raises `UserError` naming the
    file. Field values are not checked here: the pre-winopt schema lacks most of them, and
    each reader decides how lenient to be.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise in_file(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise in_file(path, f"not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise in_file(path, f"expected a JSON object, got {_json_kind(obj)}")
    return obj




def _json_kind(obj: Any) -> str:
    """JSON's name for the type of a decoded value, for error messages."""
    names = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(obj), "a number")
