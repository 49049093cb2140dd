"""train_history.json and holdout_history.json (SPEC §3): the draws the rigs' Steps 2.5/3
score survivors against, as the old pipeline's Step 1 wrote them.

Both are flat JSON lists of ints: the draw values of the *whole* history file, every
session in file order (not the run's time_of_day selection: the rigs regenerate from the
seed and need every draw), cut at `int(0.8 * N)`: the first part trains, the rest is the
holdout.

Written once per run, before the first snapshot, so a config on disk always has them
beside it. A resume (or a second study in the same directory) rewrites a file only when its
content differs from what is on disk: an unchanged file keeps its inode and mtime, so the
rigs' rsync (which compares checksums) sends nothing again, and a reader never sees it
replaced for no reason. Each file is published atomically (`publish_bytes`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from winopt.contracts.publish import dump_json, publish_bytes
from winopt.contracts.schemas import HOLDOUT_HISTORY_NAME, TRAIN_HISTORY_NAME
from winopt.contracts.errors import in_file
from winopt.optimizer.draws import load_history

#: the training share of the history (the old Step 1's split)
TRAIN_FRACTION = 0.8


def split_history(draws: Sequence[int]) -> tuple[list[int], list[int]]:
    """(training draws, holdout draws): the first `int(0.8 * N)` draws, then the rest, as
    plain ints. `int(0.8 * N)` is computed as the old pipeline did, in floating point;
    float(0.8) is slightly above 4/5, so it is never one short of the exact 4N/5."""
    values = [int(v) for v in draws]
    cut = int(TRAIN_FRACTION * len(values))
    return values[:cut], values[cut:]


def load_split(draws_file: str | os.PathLike[str], mod: int) -> tuple[list[int], list[int]]:
    """The (training, holdout) split of `draws_file`'s whole history, every session."""
    return split_history(load_history(draws_file, mod=mod, time_of_day="all"))


def publish_histories(out_dir: str | os.PathLike[str],
                      split: tuple[list[int], list[int]]) -> list[Path]:
    """Publish train_history.json and holdout_history.json of `split` in `out_dir`; return
    the paths actually (re)written (none when both already held this content)."""
    out = Path(out_dir)
    written = []
    for name, values in zip((TRAIN_HISTORY_NAME, HOLDOUT_HISTORY_NAME), split, strict=True):
        if _publish_if_changed(out / name, dump_json(values)):
            written.append(out / name)
    return written


def _publish_if_changed(target: Path, data: bytes) -> bool:
    """Publish `data` at `target` unless the file already holds exactly these bytes."""
    try:
        if target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:  # a directory squatting on the name, no permission: say which file
        raise in_file(target, f"cannot read: {exc.strerror or exc}") from None
    try:
        publish_bytes(target, data)
    except OSError as exc:
        raise in_file(target, f"cannot write: {exc.strerror or exc}") from None
    return True
