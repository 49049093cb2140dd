"""Issue 11, finding 9 (and `winopt status | head`, finding 10): nothing raw reaches a
terminal or a log line. A spool file named with `\\e]0;...\\a\\e[2J\\n`, a watched run whose
directory and config hold control characters: the daemon's log lines, journald's
MESSAGE and fields, `winopt status` and error lines show them escaped (`\\x1b`, `\\n`),
and a newline in a name never makes a log line of its own."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from daemon_support import REPO, DaemonProcess, poll, snapshot
from notify_support import FakeSystemd
from jobs_support import toml_job
from optimize_support import MOD, write_history
from winopt.contracts.publish import publish_json
from winopt.contracts.schemas import CONFIG_NAME
from winopt.daemon import journal, notify
from winopt.cli.status import render
from winopt.contracts.safe_text import safe_text

#: what a hostile name holds: set the terminal's title, clear the screen, start a new line
#: that reads like a log line of the daemon's own
HOSTILE = "x\x1b]0;owned\x07\x1b[2J\n12:00:00 INFO    FORGED line"
#: any control character but the newline that ends a line (C0, DEL, C1)
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def winopt(*argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winopt", *argv], capture_output=True, text=True,
                          timeout=60, cwd=REPO, **kwargs)


def forged(text: str) -> list[str]:
    """Lines that start with the forged text: a name that became a line of its own."""
    return [line for line in text.splitlines() if line.startswith("12:00:00 INFO    FORGED")]


def test_control_characters_in_names_reach_no_log_line_and_no_terminal(tmp_path: Path) -> None:
    """The finding, replayed against a real daemon: a spool file (one refused, one
    accepted as a job) and a watched run, all named with escape sequences and a newline."""
    draws = tmp_path / "draws"
    draws.mkdir()
    write_history(draws / "h.json")
    run = tmp_path / ("run" + HOSTILE)
    run.mkdir()
    publish_json(run / CONFIG_NAME, snapshot(0, status="in_progress", completed="\x1b[2J3", total=HOSTILE))
    config = tmp_path / "daemon.toml"
    config.write_text(f'debounce = 0.1\nwatch = ["{run}"]\n'.replace("\x1b", "\\u001b").replace("\x07", "\\u0007")
                      .replace("\n12:00", "\\n12:00")
                      + f'[jobs]\nallowed_draws_dirs = ["{draws}"]\ngrace = 0.5\n')
    d = DaemonProcess(tmp_path / "state", [], args=["--config", str(config)], env={"WINOPT_DEVICE": "cpu"})
    try:
        d.start()
        spool = tmp_path / "state" / "spool"
        good = toml_job(draws="h.json", trials=1, mod=MOD, seed_count=200, strategy="random", window_size=3,
                        offset=5, skip_min=0, skip_max=3, forward_threshold=0.2, reverse_threshold=0.2)
        for name, text in ((f"bad{HOSTILE}.toml", "trials = = 2\n"), (f"good{HOSTILE}.toml", good)):
            (spool / f".{len(name)}.tmp").write_text(text)
            (spool / f".{len(name)}.tmp").rename(spool / name)
        assert poll(lambda: d.status().get("rejected") and any(
            j.get("state") == "complete" for j in (d.status().get("jobs") or {}).values()), 60), d.log()
        assert poll(lambda: "rejected" in d.log() and "accepted from spool/good" in d.log(), 10), d.log()
        log_text = d.log()
        assert not RAW.search(log_text), [line for line in log_text.splitlines() if RAW.search(line)][:3]
        assert not forged(log_text), forged(log_text)
        assert "spool/bad" + safe_text(HOSTILE) + ".toml: rejected" in log_text
        assert "accepted from spool/good" + safe_text(HOSTILE) + ".toml" in log_text

        shown = winopt("status", "--state-dir", str(tmp_path / "state"))
        assert shown.returncode == 0, shown.stderr
        assert not RAW.search(shown.stdout), shown.stdout
        assert not forged(shown.stdout), shown.stdout
        wide = winopt("status", "--wide", "--state-dir", str(tmp_path / "state")).stdout  # cells whole
        assert not RAW.search(wide) and not forged(wide), wide
        assert "\\x1b[2J" in wide and "run" + safe_text(HOSTILE)[:10] in wide
    finally:
        d.kill()


def test_the_journal_gets_escaped_messages_and_fields(tmp_path: Path) -> None:
    """Through the logging machinery (handler filters included), as the daemon logs."""
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        sent: list[tuple[str, dict]] = []
        handler = journal.make_handler({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream,
                                       sender=lambda MESSAGE, **kw: sent.append((MESSAGE, kw)))
        logger = logging.getLogger("winopt.test_escaping.journal")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.warning("job %s: accepted from spool/%s", "j1", HOSTILE, extra={"PATH": f"spool/{HOSTILE}"})
            try:
                raise ValueError(HOSTILE)
            except ValueError:
                logger.exception("spool: cannot process %s", HOSTILE)
        finally:
            logger.removeHandler(handler)
    (message, fields), (failure, failure_fields) = sent
    assert message == f"job j1: accepted from spool/{safe_text(HOSTILE)}"
    assert fields["PATH"] == f"spool/{safe_text(HOSTILE)}" and "CODE_ARGS" not in fields
    assert not RAW.search(failure) and not forged(failure), failure
    assert not RAW.search(failure_fields["EXCEPTION_TEXT"]), failure_fields["EXCEPTION_TEXT"]


def test_stderr_lines_for_journald_stay_one_line_per_record() -> None:
    """Without systemd-python: `<N>` lines that journald reads one by one."""
    stream = io.StringIO()
    handler = journal.make_handler({}, stream)
    handler.setFormatter(journal.PriorityPrefixFormatter("%(message)s"))
    logger = logging.getLogger("winopt.test_escaping.stderr")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("spool/%s: rejected", HOSTILE)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == f"<3>spool/{safe_text(HOSTILE)}: rejected\n"


def test_the_status_table_escapes_every_string() -> None:
    doc = {
        "daemon": {"pid": 1, "state": "running\x1b[2J", "counters": {}},
        "runs": {HOSTILE: {"state": "error", "error": f"boom {HOSTILE}",
                           "snapshot": {"completed_trials": "\x1b]0;t\x07", "total_trials": 5, "best": HOSTILE}}},
        "jobs": {"j1": {"state": "failed", "reason": HOSTILE, "name": HOSTILE, "accepted_at": "x"}},
        "rejected": {HOSTILE: {"reason": HOSTILE, "at": "2024-01-01T00:00:00+00:00"}},
        "rigs": {"r\x1b": {"target": HOSTILE, "runs": {HOSTILE: {"state": "failed", "last_error": HOSTILE}}}},
    }
    text = render(doc, now=datetime.now(timezone.utc))
    assert not RAW.search(text) and not forged(text), text
    assert safe_text(HOSTILE) in text


def test_error_lines_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / f"survivors{HOSTILE}.json"
    path.write_text("[1, 2")
    proc = winopt("convert", str(path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert not RAW.search(proc.stderr) and safe_text(str(path)) in proc.stderr, proc.stderr


def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`winopt status | head -1`: the reader is gone before (or while) we write. Before:
    `winopt: error: Broken pipe` (or Python's "Exception ignored" lines), exit 2."""
    runs = {f"run{i:04d}": {"state": "running", "snapshot": {"completed_trials": i, "total_trials": 9999}}
            for i in range(3000)}  # more than a pipe's buffer: the write itself hits EPIPE
    (tmp_path / "status.json").write_text(json.dumps({"daemon": {"pid": 1, "state": "stopped"}, "runs": runs}))
    for args in (["status"], ["status", "--json"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader went away
        proc = subprocess.run([sys.executable, "-m", "winopt", *args, "--state-dir", str(tmp_path)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO)
        os.close(write_end)
        assert proc.stderr == "" and proc.returncode == 141, (args, proc.returncode, proc.stderr)
    head = subprocess.run(f"{sys.executable} -m winopt status --state-dir {tmp_path} | head -1",
                          shell=True, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert head.stdout.startswith("daemon pid 1") and head.stderr == "", head.stderr


def test_a_status_line_cannot_add_assignments_of_its_own(fake_systemd: FakeSystemd, monkeypatch) -> None:
    """STATUS= text naming a file: a newline in it must not send systemd a READY=1."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(fake_systemd.path))
    assert notify.notify("STATUS=reload failed: /etc/x\nREADY=1: nested")
    fake_systemd.wait_for("STATUS=reload failed: /etc/x\\nREADY=1: nested")
    assert fake_systemd.count("READY=1") == 0
