"""The watcher, with real inotify: what counts as a changed file, what is ignored, and how
a dead observer, a removed directory and watchdog's own warnings are handled."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from daemon_support import poll
from winopt.contracts.publish import publish_json
from winopt.daemon.watch import Watcher
from winopt.contracts.state_dir import is_temp_name


class Seen:
    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def record(self, path: Path) -> None:
        with self.lock:
            self.paths.append(path)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)

    def names(self) -> list[str]:
        with self.lock:
            return [p.name for p in self.paths]


@pytest.fixture
def watched(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    seen = Seen()
    watcher = Watcher(seen.record, seen.error)
    watcher.start([run])
    yield run, seen, watcher
    watcher.stop()


def fence(run: Path, seen: Seen) -> None:
    """Events from one inotify watch arrive in order: once this marker is seen, every
    earlier event has been delivered too."""
    marker = f"fence-{time.monotonic_ns()}"
    (run / marker).write_text("x")
    assert poll(lambda: marker in seen.names()), "marker event never arrived"
    with seen.lock:
        seen.paths = [p for p in seen.paths if not p.name.startswith("fence-")]


def test_an_atomic_publish_counts_once_and_its_temp_file_never(watched) -> None:
    run, seen, _ = watched
    publish_json(run / "bidirectional_survivors.json", [1, 2, 3])
    fence(run, seen)
    assert seen.names() == ["bidirectional_survivors.json"]
    assert seen.paths[0] == run / "bidirectional_survivors.json"


def test_close_after_write_counts(watched) -> None:
    run, seen, _ = watched
    with open(run / "optimal_window_config.json", "w") as fh:
        fh.write("{")
        fh.flush()
        fence(run, seen)
        assert seen.names() == []  # still open: not a finished file
        fh.write("}")
    fence(run, seen)
    assert seen.names() == ["optimal_window_config.json"]


def test_rename_in_from_another_directory_counts_and_moving_out_does_not(watched, tmp_path: Path) -> None:
    run, seen, _ = watched
    outside = tmp_path / "elsewhere.json"
    outside.write_text("[]")
    os.rename(outside, run / "bidirectional_survivors.json")
    fence(run, seen)
    assert seen.names() == ["bidirectional_survivors.json"]
    os.rename(run / "bidirectional_survivors.json", tmp_path / "gone.json")
    fence(run, seen)
    assert seen.names() == ["bidirectional_survivors.json"]


def test_temp_names_are_ignored(watched) -> None:
    run, seen, _ = watched
    for name in (".hidden", "x.tmp", ".survivors.json.123.tmp"):
        (run / name).write_text("x")
    fence(run, seen)
    assert seen.names() == []
    assert is_temp_name(".a") and is_temp_name("b.tmp") and not is_temp_name("c.json")


def test_a_dead_observer_is_restarted_and_events_flow_again(watched) -> None:
    run, seen, watcher = watched
    watcher._observer.stop()  # noqa: SLF001 - kill the observer thread the way a crash would
    assert poll(lambda: not watcher.observer_alive())
    assert poll(lambda: any("observer thread ended" in e for e in seen.errors))
    assert watcher.check() is True
    assert watcher.observer_alive()
    publish_json(run / "optimal_window_config.json", {})
    assert poll(lambda: "optimal_window_config.json" in seen.names())


def test_a_missing_directory_is_watched_once_it_exists(tmp_path: Path) -> None:
    seen = Seen()
    watcher = Watcher(seen.record, seen.error)
    later = tmp_path / "later"
    try:
        watcher.start([later])
        assert watcher.missing == [later] and watcher.watching == []
        assert watcher.check() is True  # healthy: the observer runs, the directory is absent
        later.mkdir()
        watcher.check()
        assert watcher.watching == [later]
        publish_json(later / "optimal_window_config.json", {})
        assert poll(lambda: "optimal_window_config.json" in seen.names())
    finally:
        watcher.stop()


def test_a_removed_and_recreated_directory_is_watched_again(watched) -> None:
    run, seen, watcher = watched
    os.rmdir(run)
    assert poll(lambda: watcher.check() and watcher.missing == [run])
    run.mkdir()
    watcher.check()
    assert watcher.watching == [run]
    assert any("re-established" in e for e in seen.errors)
    publish_json(run / "optimal_window_config.json", {})
    assert poll(lambda: "optimal_window_config.json" in seen.names())


def test_watchdog_warnings_count_as_watcher_errors(watched) -> None:
    _, seen, _ = watched
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
    assert any("overflowed" in e for e in seen.errors)


def test_changing_the_watched_set(watched, tmp_path: Path) -> None:
    run, seen, watcher = watched
    other = tmp_path / "other"
    other.mkdir()
    watcher.set_dirs([other])
    assert watcher.watching == [other]
    (run / "ignored-now.json").write_text("x")
    fence(other, seen)
    assert seen.names() == []


def test_an_observer_that_cannot_be_restarted_is_reported_unhealthy(tmp_path: Path) -> None:
    """The daemon feeds the systemd watchdog only while check() is True: a watcher that
    cannot be rebuilt must say so, not run blind."""
    from winopt.daemon.watch import ReportingObserver

    made: list[int] = []

    def factory(on_exit):  # the first observer works, every later one fails to start
        made.append(1)
        if len(made) > 1:
            raise OSError(24, "inotify instance limit reached")
        return ReportingObserver(on_exit)

    seen = Seen()
    watcher = Watcher(seen.record, seen.error, observer_factory=factory)
    try:
        watcher.start([tmp_path])
        assert watcher.check() is True
        watcher._observer.stop()  # noqa: SLF001
        assert poll(lambda: not watcher.observer_alive())
        assert watcher.check() is False
        assert watcher.check() is False  # and it keeps trying, and keeps saying so
        assert len(made) == 3
    finally:
        watcher.stop()
