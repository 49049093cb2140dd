"""The shared contracts: atomic durable publish, temp sweeping, and locks (SPEC §3)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from winopt.contracts import lock_for, publish_atomic, publish_json, sweep_temps
from winopt.contracts.locks import lock_path
from winopt.contracts.publish import TEMP_PATTERN, temp_name


def test_publish_json_replaces_the_target_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    publish_json(target, {"a": 1})
    publish_json(target, {"a": 2})
    assert orjson.loads(target.read_bytes()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_failing_writer_leaves_the_old_file_byte_for_byte(tmp_path: Path) -> None:
    target = tmp_path / "survivors.json"
    publish_json(target, [1, 2, 3])
    before = target.read_bytes()

    def half_then_fail(fh) -> None:
        fh.write(b"[1, 2")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        publish_atomic(target, half_then_fail)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["survivors.json"]


def test_published_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        publish_json(tmp_path / "shared.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o664


def test_temp_names_are_hidden_unique_and_recognised(tmp_path: Path) -> None:
    target = tmp_path / "bidirectional_survivors.json"
    a, b = temp_name(target), temp_name(target)
    assert a != b and a.parent == tmp_path
    assert a.name.startswith(".") and a.name.endswith(".tmp")
    match = TEMP_PATTERN.match(a.name)
    assert match and match["name"] == target.name and int(match["pid"]) == os.getpid()


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def _age(path: Path, seconds: float) -> Path:
    """Create `path` as if last written `seconds` ago."""
    path.write_bytes(b"partial")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_sweep_removes_only_stale_temps_of_our_own_naming(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = _age(tmp_path / f".survivors.json.{dead}.0123abcd.tmp", 120)
    young = _age(tmp_path / f".config.json.{dead}.0123abce.tmp", 5)  # writer may be a pid reuse race
    live = _age(tmp_path / f".config.json.{os.getpid()}.0123abcf.tmp", 120)  # a live writer
    ancient = _age(tmp_path / f".config.json.{os.getpid()}.0123abd0.tmp", 2 * 86400)
    foreign = _age(tmp_path / ".job.toml.tmp", 3 * 86400)  # a user's spool temp: not ours
    target = tmp_path / "config.json"
    target.write_text("{}")
    removed = sweep_temps(tmp_path)
    assert sorted(removed) == sorted([stale, ancient])
    assert {p.name for p in tmp_path.iterdir()} == {young.name, live.name, foreign.name, target.name}


def test_sweep_of_a_missing_directory_is_a_no_op(tmp_path: Path) -> None:
    assert sweep_temps(tmp_path / "nowhere") == []


def test_lock_file_stays_and_is_group_writable(tmp_path: Path) -> None:
    target = tmp_path / "bidirectional_survivors_binary.npz"
    old = os.umask(0o022)
    try:
        with lock_for(target):
            assert lock_path(target).exists()
    finally:
        os.umask(old)
    assert lock_path(target).exists()  # never deleted: deleting races with a new opener
    assert stat.S_IMODE(lock_path(target).stat().st_mode) & 0o060 == 0o060
