"""train_history.json and holdout_history.json (SPEC §3): the whole history, every session
in file order, split 80/20, written by `winopt optimize` before its first snapshot, and
rewritten only when their content changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from winopt.cli import main
from winopt.contracts.publish import publish_json
from winopt.contracts.schemas import CONFIG_NAME, HOLDOUT_HISTORY_NAME, TRAIN_HISTORY_NAME
from winopt.contracts.errors import UserError
from winopt.optimizer import snapshot as snapshot_module
from winopt.optimizer.histories import load_split, publish_histories, split_history

from optimize_support import MOD, optimize_argv, read_config


def odd_history(path: Path, days: int = 60) -> list[dict]:
    """`days` days of midday and evening draws plus one last midday: an odd count (121),
    whose draws are distinct from their neighbours' so any reordering shows."""
    start = dt.date(2022, 3, 1)
    entries = [
        {"date": (start + dt.timedelta(days=i // 2)).isoformat(),
         "session": ("midday", "evening")[i % 2], "draw": (i * 37 + 11) % MOD}
        for i in range(2 * days + 1)
    ]
    publish_json(path, entries)
    return entries


def read_list(path: Path) -> list[int]:
    values = orjson.loads(path.read_bytes())
    assert isinstance(values, list) and all(type(v) is int for v in values), path
    return values


def file_id(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_split_is_the_first_int_0_8_n_draws() -> None:
    for n in range(0, 400):
        train, holdout = split_history(range(n))
        assert len(train) == int(0.8 * n) == (4 * n) // 5  # never one short by rounding
        assert train + holdout == list(range(n))


def test_whole_history_every_session_in_file_order(tmp_path: Path) -> None:
    entries = odd_history(tmp_path / "draws.json")
    train, holdout = load_split(tmp_path / "draws.json", MOD)
    assert len(entries) == 121 and (len(train), len(holdout)) == (96, 25)
    assert train + holdout == [e["draw"] for e in entries]
    assert {e["session"] for e in entries[:96]} == {"midday", "evening"}


def test_optimize_writes_them_before_the_first_snapshot_and_once(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    draws, out = tmp_path / "draws.json", tmp_path / "run"
    entries = odd_history(draws)
    real_write = snapshot_module.SnapshotWriter.write
    seen: list[bool] = []

    def write(self: snapshot_module.SnapshotWriter) -> bool:
        seen.append((out / TRAIN_HISTORY_NAME).is_file() and (out / HOLDOUT_HISTORY_NAME).is_file())
        return real_write(self)

    monkeypatch.setattr(snapshot_module.SnapshotWriter, "write", write)
    # the search sees evening draws only: the files still hold the whole history
    assert main(optimize_argv(draws, out, 2, "--time-of-day", "evening")) == 0
    assert seen and all(seen), "a snapshot was written before the history files"
    values = [e["draw"] for e in entries]
    assert read_list(out / TRAIN_HISTORY_NAME) == values[:96]
    assert read_list(out / HOLDOUT_HISTORY_NAME) == values[96:]
    assert read_config(out)["sessions"] == ["evening"]

    before = {name: file_id(out / name) for name in (TRAIN_HISTORY_NAME, HOLDOUT_HISTORY_NAME)}
    assert main(optimize_argv(draws, out, 3, "--time-of-day", "evening")) == 0  # a resume
    assert read_config(out)["completed_trials"] == 3
    assert {name: file_id(out / name) for name in before} == before  # not rewritten


def test_rewritten_only_when_the_content_differs(tmp_path: Path) -> None:
    assert publish_histories(tmp_path, ([1, 2, 3], [4])) == [tmp_path / TRAIN_HISTORY_NAME,
                                                             tmp_path / HOLDOUT_HISTORY_NAME]
    train_id = file_id(tmp_path / TRAIN_HISTORY_NAME)
    assert publish_histories(tmp_path, ([1, 2, 3], [4])) == []
    assert publish_histories(tmp_path, ([1, 2, 3], [5])) == [tmp_path / HOLDOUT_HISTORY_NAME]
    assert file_id(tmp_path / TRAIN_HISTORY_NAME) == train_id
    assert read_list(tmp_path / HOLDOUT_HISTORY_NAME) == [5]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp left


def test_an_unwritable_history_name_fails_the_run_naming_the_file(tmp_path: Path) -> None:
    draws, out = tmp_path / "draws.json", tmp_path / "run"
    odd_history(draws)
    (out / TRAIN_HISTORY_NAME).mkdir(parents=True)  # a directory squats on the name
    with pytest.raises(UserError, match=rf"{TRAIN_HISTORY_NAME}: cannot"):
        publish_histories(out, ([1], [2]))
    assert main(optimize_argv(draws, out, 2)) == 2
    config = read_config(out)
    assert config["status"] == "failed" and TRAIN_HISTORY_NAME in config["error"]
    assert (out / CONFIG_NAME).is_file()
