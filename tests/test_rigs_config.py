"""Rig definitions: strict validation with errors naming `rigs[NAME].KEY`, and the rsync
command line a rig turns into (atomic on the rig, non-interactive, time-limited)."""

from __future__ import annotations

from pathlib import Path

import pytest

from winopt.contracts.errors import UserError
from winopt.handlers.rigs.config import Rig, merge_rigs, parse_rig_arg, parse_rigs, parse_target, rig_from_dict
from winopt.handlers.rigs.rsync import PARTIAL_DIR, rsync_argv, ssh_command


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path]:
    key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    key.write_text("not really a key\n")
    known.write_text("")
    return key, known


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/data/rigs/", (None, None, "/data/rigs/")),
        ("/data/a:b", (None, None, "/data/a:b")),  # '/' before ':' -> local, as rsync reads it
        ("gpu1:/srv/winopt/", (None, "gpu1", "/srv/winopt/")),
        ("ops@gpu1.lab.example:/srv/winopt", ("ops", "gpu1.lab.example", "/srv/winopt")),
        ("ops@[fd00::7]:/srv/", ("ops", "fd00::7", "/srv/")),
    ],
)
def test_targets_parse_like_rsync(target: str, expected: tuple) -> None:
    assert parse_target(target) == expected


@pytest.mark.parametrize(
    "target, problem",
    [
        ("", "non-empty"),
        ("data/rigs", "must be absolute"),
        ("gpu1:srv/winopt", "must be absolute"),
        ("gpu1::module/x", "daemon targets are not supported"),
        ("rsync://gpu1/module", "daemon targets are not supported"),
        ("-oProxyCommand=x:/p", "bad host name"),
        ("bad user@gpu1:/p", "bad user name"),
        ("gpu1:/srv/../etc", "'..'"),
        ("gpu1:/srv/it's", "quotes"),
        (" /data", "spaces"),
    ],
)
def test_bad_targets_say_why(target: str, problem: str) -> None:
    with pytest.raises(UserError, match=r"^rigs\[r1\]\.target: .*" + problem.replace("(", r"\(")):
        rig_from_dict("r1", {"target": target})


def test_full_ssh_rig(key_files: tuple[Path, Path]) -> None:
    key, known = key_files
    rig = rig_from_dict(
        "gpu1",
        {
            "target": "ops@gpu1:/srv/winopt/",
            "port": 2222,
            "identity_file": str(key),
            "known_hosts": str(known),
            "bwlimit": "20M",
            "connect_timeout": 5,
            "io_timeout": 30,
            "transfer_timeout": 120.5,
        },
    )
    assert (rig.user, rig.host, rig.port, rig.bwlimit) == ("ops", "gpu1", 2222, "20M")
    assert (rig.identity_file, rig.known_hosts) == (key, known)
    assert (rig.connect_timeout, rig.io_timeout, rig.transfer_timeout) == (5.0, 30, 120.5)
    assert rig.destination("job-7") == "ops@gpu1:/srv/winopt/job-7/"


def test_layouts() -> None:
    per_run = rig_from_dict("a", {"target": "/data/rigs"})
    flat = rig_from_dict("legacy", {"target": "gpu1:/opt/step25/input/", "layout": "flat", "run": "old-run"})
    assert per_run.destination("r1") == "/data/rigs/r1/"
    assert flat.destination("old-run") == "gpu1:/opt/step25/input/"
    assert per_run.receives("anything") and flat.receives("old-run") and not flat.receives("other")
    v6 = rig_from_dict("v6", {"target": "[fd00::7]:/srv"})
    assert v6.destination("r") == "[fd00::7]:/srv/r/"


@pytest.mark.parametrize(
    "table, key, problem",
    [
        ({"target": "/d", "colour": "red"}, "colour", "unknown key"),
        ({}, "target", "missing"),
        ({"target": "/d", "port": 22}, "port", "only applies to ssh"),
        ({"target": "/d", "identity_file": "/x"}, "identity_file", "only applies to ssh"),
        ({"target": "h:/d", "port": "22"}, "port", "must be an integer"),
        ({"target": "h:/d", "port": True}, "port", "must be an integer"),
        ({"target": "h:/d", "port": 0}, "port", "out of range"),
        ({"target": "h:/d", "port": 70000}, "port", "out of range"),
        ({"target": "h:/d", "identity_file": "/nonexistent/key"}, "identity_file", "no such file"),
        ({"target": "h:/d", "known_hosts": 7}, "known_hosts", "must be a file path"),
        ({"target": "/d", "bwlimit": "fast"}, "bwlimit", "not a positive rate"),
        ({"target": "/d", "bwlimit": 0}, "bwlimit", "not a positive rate"),
        ({"target": "/d", "bwlimit": -5}, "bwlimit", "not a positive rate"),
        ({"target": "/d", "layout": "nested"}, "layout", "not one of"),
        ({"target": "/d", "layout": "flat"}, "run", "required with layout 'flat'"),
        ({"target": "/d", "layout": "flat", "run": "../x"}, "run", "run name"),
        ({"target": "/d", "run": "r1"}, "run", "only applies to layout 'flat'"),
        ({"target": "h:/d", "connect_timeout": 0}, "connect_timeout", "out of range"),
        ({"target": "/d", "io_timeout": 1.5}, "io_timeout", "must be an integer"),
        ({"target": "/d", "transfer_timeout": "1h"}, "transfer_timeout", "must be a number"),
    ],
)
def test_bad_values_name_the_key(table: dict, key: str, problem: str) -> None:
    with pytest.raises(UserError) as err:
        rig_from_dict("r1", table)
    message = str(err.value)
    assert message.startswith(f"rigs[r1].{key}: "), message
    assert problem in message and "\n" not in message


def test_bwlimit_forms() -> None:
    assert rig_from_dict("a", {"target": "/d", "bwlimit": 5000}).bwlimit == "5000"
    assert rig_from_dict("a", {"target": "/d", "bwlimit": "1.5m"}).bwlimit == "1.5m"


def test_relative_key_files_resolve_against_the_config_directory(key_files: tuple[Path, Path]) -> None:
    key, _ = key_files
    rig = rig_from_dict("a", {"target": "h:/d", "identity_file": key.name}, base_dir=key.parent)
    assert rig.identity_file == key


def test_parse_rigs_names_the_file_and_checks_the_shape(tmp_path: Path) -> None:
    rigs = parse_rigs({"a": {"target": "/d"}, "b": {"target": "h:/d/"}})
    assert sorted(rigs) == ["a", "b"] and rigs["b"].is_ssh and not rigs["a"].is_ssh
    config = tmp_path / "daemon.toml"
    with pytest.raises(UserError, match=r"^.*daemon\.toml: rigs\[b\]\.port: must be an integer"):
        parse_rigs({"a": {"target": "/d"}, "b": {"target": "h:/d", "port": "x"}}, source=config)
    with pytest.raises(UserError, match=r"^rigs: must be a table"):
        parse_rigs(["a"])
    with pytest.raises(UserError, match=r"^rigs\[a\]: must be a table"):
        parse_rigs({"a": "/d"})
    with pytest.raises(UserError, match=r"^rigs\[bad name\]: rig names"):
        parse_rigs({"bad name": {"target": "/d"}})


def test_rig_arguments() -> None:
    rig = parse_rig_arg("gpu1=ops@gpu1:/srv/winopt/")
    assert (rig.name, rig.host, rig.layout) == ("gpu1", "gpu1", "per-run")
    for text in ("gpu1", "=/d", "gpu1=", ""):
        with pytest.raises(UserError, match=r"^--rig .*expected NAME=TARGET"):
            parse_rig_arg(text)
    with pytest.raises(UserError, match=r"^rigs\[g\]\.target: path 'rel' must be absolute"):
        parse_rig_arg("g=rel")
    with pytest.raises(UserError, match=r"already defined"):
        merge_rigs({"gpu1": rig}, [parse_rig_arg("gpu1=/other")])
    assert sorted(merge_rigs({"gpu1": rig}, [parse_rig_arg("gpu2=/other")])) == ["gpu1", "gpu2"]


def test_run_names_are_one_safe_path_component() -> None:
    rig = rig_from_dict("a", {"target": "/d"})
    for bad in ("..", ".hidden", "a/b", "-rf", ""):
        with pytest.raises(UserError, match="run name"):
            rig.destination(bad)


def test_rsync_command_line_keeps_the_rig_copy_atomic(key_files: tuple[Path, Path]) -> None:
    key, known = key_files
    rig = Rig(
        name="g", target="ops@g:/srv/", path="/srv/", host="g", user="ops", port=2222,
        identity_file=key, known_hosts=known, bwlimit="20M", connect_timeout=7, io_timeout=45,
    )  # fmt: skip
    argv = rsync_argv(rig, "/runs/r1/x.npz", rig.destination("r1"))
    assert "--inplace" not in argv and not any(a.startswith("--append") for a in argv)
    assert f"--partial-dir={PARTIAL_DIR}" in argv and "--timeout=45" in argv
    assert "--checksum" in argv  # never trust size+mtime: republishes can share both
    assert "--times" in argv and "--mkpath" in argv and "--bwlimit=20M" in argv
    assert argv[-3:] == ["--", "/runs/r1/x.npz", "ops@g:/srv/r1/"]
    ssh = argv[argv.index("-e") + 1]
    for part in (
        "BatchMode=yes", "ConnectTimeout=7", "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={known}", "-p 2222", f"-i {key}",
    ):  # fmt: skip
        assert part in ssh, (part, ssh)
    assert "StrictHostKeyChecking=no" not in ssh


def test_local_rigs_need_no_ssh_and_spaces_survive_ssh_splitting(tmp_path: Path) -> None:
    local = rig_from_dict("a", {"target": "/data/rigs"})
    assert "-e" not in rsync_argv(local, "/x.npz", local.destination("r"))
    spaced = tmp_path / "my keys" / "id"
    spaced.parent.mkdir()
    spaced.write_text("k")
    rig = rig_from_dict("b", {"target": "h:/d", "identity_file": str(spaced)})
    assert f'-i "{spaced}"' in ssh_command(rig)
