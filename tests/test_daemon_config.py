"""Daemon config: strict validation with one line naming the file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from msgspec.structs import fields

from winopt.daemon.config import (
    ConfigError,
    DaemonConfig,
    load_config,
    resolve_config,
    run_names,
    with_overrides,
)

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "daemon.toml"
    path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


def test_documented_default_config_loads_and_matches_the_code_defaults() -> None:
    config = load_config(REPO / "etc" / "daemon.toml")
    defaults = DaemonConfig()
    for name in ("state_dir", "debounce", "max_delay", "workers", "reconcile_interval",
                 "decide_interval", "status_interval", "log_level", "jobs"):
        assert getattr(config, name) == getattr(defaults, name), name
    assert config.watch == ()


def test_documented_thresholds_are_the_real_defaults(tmp_path: Path) -> None:
    """Uncommenting every `# key = value` of [decisions] changes nothing."""
    from winopt.handlers.evaluate.thresholds import Thresholds

    text = (REPO / "etc" / "daemon.toml").read_text()
    head, _, tail = text.partition("\n[decisions]")
    section, _, rest = tail.partition("\n[jobs]")
    lines = [re.sub(r"^# (\w+ = )", r"\1", line) for line in section.splitlines()]
    assert sum(1 for line in lines if " = " in line and not line.startswith("#")) == len(fields(Thresholds))
    config = load_config(write(tmp_path, head + "\n[decisions]" + "\n".join(lines) + "\n[jobs]" + rest))
    assert config.make_thresholds() == Thresholds()


def test_values_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, """
state_dir = "/srv/winopt"
watch = ["/data/a/out", "/data/b/out"]
debounce = 2
workers = 4
log_level = "DEBUG"
[decisions]
stall_after = "10m"
promising = 500
[jobs]
max_parallel_jobs = 3
gpus = [0, 1]
finished_kept = 0
""")
    config = load_config(path)
    assert config.state_dir == Path("/srv/winopt")
    assert config.watch == (Path("/data/a/out"), Path("/data/b/out"))
    assert config.debounce == 2 and config.workers == 4 and config.log_level == "debug"
    assert config.jobs.max_parallel_jobs == 3 and config.jobs.gpus == (0, 1)
    assert config.jobs.finished_kept == 0 and DaemonConfig().jobs.finished_kept == 100
    assert config.make_thresholds().stall_after == 600 and config.make_thresholds().promising == 500
    assert config.source == path


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("debounse = 1", "debounse", "unknown key"),
        ("[decisions]\nstall_afterr = 5", "decisions.stall_afterr", "unknown key"),
        ("[jobs]\nmax_parallel = 2", "jobs.max_parallel", "unknown key"),
        ("[spool]\nx = 1", "spool", "unknown key"),
        ("workers = \"4\"", "workers", "must be an integer"),
        ("workers = 2.5", "workers", "must be an integer"),
        ("debounce = true", "debounce", "must be a number"),
        ("watch = \"/data/out\"", "watch", "must be a list"),
        ("state_dir = 5", "state_dir", "must be a path"),
        ("[decisions]\nstall_after = \"soon\"", "decisions.stall_after", "bad duration"),
        ("[decisions]\npromising = \"many\"", "decisions.promising", "whole number"),
        ("decisions = 3", "decisions", "must be a table"),
        ("[jobs]\ngpus = [0, true]", "jobs.gpus", "GPU"),
        ("[jobs]\nfinished_kept = \"100\"", "jobs.finished_kept", "must be an integer"),
        ("[jobs]\nfinished_kept = 2.5", "jobs.finished_kept", "must be an integer"),
        ("[jobs]\nfinished_kept = true", "jobs.finished_kept", "must be an integer"),
    ],
)
def test_unknown_keys_and_wrong_types_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    message = error_for(tmp_path, text)
    assert f": {key}: " in message or f": {key}[" in message, message
    assert problem in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("workers = 0", "workers"),
        ("debounce = -1", "debounce"),
        ("reconcile_interval = 0", "reconcile_interval"),
        ("debounce = 10\nmax_delay = 5", "max_delay"),
        ("watch = [\"relative/dir\"]", "watch"),
        ("state_dir = \"var/lib\"", "state_dir"),
        ("watch = [\"/a\", \"/a\"]", "watch"),
        ("log_level = \"loud\"", "log_level"),
        ("debounce = nan", "debounce"),
        ("[decisions]\nstall_after = -5", "decisions.stall_after"),
        ("[decisions]\nconfidence_high = 1.5", "decisions.confidence_high"),
        ("[decisions]\nproceed_min = 5000\nproceed_mid = 2000", "decisions"),
        ("[jobs]\nmax_parallel_jobs = 0", "jobs.max_parallel_jobs"),
        ("[jobs]\ngpus = [0, 0]", "jobs.gpus"),
        ("[jobs]\nfinished_kept = -1", "jobs.finished_kept"),
    ],
)
def test_impossible_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    message = error_for(tmp_path, text)
    assert f": {key}" in message, message


def test_rigs_are_validated_by_the_distribution_handler(tmp_path: Path) -> None:
    ok = load_config(write(tmp_path, f'[rigs.rig1]\ntarget = "{tmp_path}/rig1"\n'))
    assert list(ok.rigs) == ["rig1"]
    message = error_for(tmp_path, f'[rigs.rig1]\ntarget = "{tmp_path}/rig1"\nflavour = 3\n')
    assert "rigs[rig1].flavour" in message


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid TOML" in error_for(tmp_path, "workers = = 2")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_flags_override_the_file_and_watch_adds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'state_dir = "/srv/a"\nwatch = ["/data/x"]\nlog_level = "info"\n')
    monkeypatch.chdir(tmp_path)
    config = resolve_config(str(path), state_dir="state", watch=["runs/r1"], log_level="debug")
    assert config.state_dir == tmp_path / "state"
    assert config.watch == (Path("/data/x"), tmp_path / "runs/r1")
    assert config.log_level == "debug"
    with pytest.raises(ConfigError, match="--log-level"):
        with_overrides(config, log_level="chatty")


def test_without_a_file_the_defaults_serve(tmp_path: Path) -> None:
    config = resolve_config(None, state_dir=str(tmp_path), watch=[str(tmp_path / "r")])
    assert config.source is None or config.source == Path("/etc/winopt/daemon.toml")
    assert config.state_dir == tmp_path


def test_run_names_are_short_and_unique() -> None:
    dirs = (Path("/data/a/out"), Path("/data/b/out"), Path("/srv/run7"))
    assert run_names(dirs) == {dirs[0]: "a/out", dirs[1]: "b/out", dirs[2]: "run7"}


def test_raised_proceed_tiers_are_judged_together_not_one_by_one(tmp_path: Path) -> None:
    """Each [decisions] value is checked alone and the tiers' order on the whole table, so
    raising both tiers is fine while an inverted order is still an error naming the table."""
    config = load_config(write(tmp_path, "[decisions]\nproceed_min = 2000\nproceed_mid = 5000\n"))
    thresholds = config.make_thresholds()
    assert (thresholds.proceed_min, thresholds.proceed_mid) == (2000, 5000)
    message = error_for(tmp_path, "[decisions]\nproceed_min = 5000\nproceed_mid = 2000\n")
    assert "proceed" in message
