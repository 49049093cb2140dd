"""An installed host has the job reference, man pages and completion (issue 12, item 6).

- `winopt submit --example` prints the commented job format, which the wheel carries as
  package data (checked in a wheel built here by pip, as `make wheelhouse` builds it);
  `winopt submit --help` points at it, not at a source-tree path.
- `make install-docs` (which `make install` runs) writes a man page per command, made
  from its argparse definitions, and the bash completion script; the pages render
  without a groff warning and list every option `--help` lists; the completion
  completes commands, options and choices in a real bash.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from daemon_support import REPO
from winopt.cli import COMMANDS

EXAMPLE = REPO / "winopt" / "job.example.toml"


def winopt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winopt", *args], capture_output=True, text=True, timeout=120,
                          cwd="/")


def test_submit_example_prints_the_commented_job_format() -> None:
    shown = winopt("submit", "--example")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == EXAMPLE.read_text() and "# Required. The draw history" in shown.stdout
    helped = winopt("submit", "--help").stdout
    assert "--example" in helped and "job.example.toml" not in helped and " etc/" not in helped
    bare = winopt("submit")
    assert bare.returncode == 2
    assert bare.stderr == "winopt: error: give the job file to submit (winopt submit --example prints the format)\n"


def test_the_wheel_carries_the_example_job(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("winopt-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("winopt/job.example.toml") == EXAMPLE.read_bytes()
        requires = zf.read(next(n for n in zf.namelist() if n.endswith("/METADATA"))).decode()
    assert re.search(r"^Requires-Dist: shtab", requires, re.M), "the completion's library must be installed too"


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make install-docs` writes, into a throw-away prefix."""
    root = tmp_path_factory.mktemp("docs")
    made = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", "install-docs",
                           f"WINOPT_BIN={REPO / '.venv' / 'bin' / 'winopt'}", f"MANDIR={root / 'man' / 'man1'}",
                           f"BASHCOMPDIR={root / 'completions'}"], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    return root


def test_install_docs_writes_a_man_page_per_command(docs: Path) -> None:
    pages = sorted(p.name for p in (docs / "man" / "man1").iterdir())
    assert pages == sorted(["winopt.1", *(f"winopt-{name}.1" for name in COMMANDS)])
    found = subprocess.run(["man", "-w", "winopt-status"], capture_output=True, text=True,
                           env={"MANPATH": str(docs / "man"), "PATH": "/usr/bin:/bin"})
    assert found.stdout.strip() == str(docs / "man" / "man1" / "winopt-status.1"), found.stderr


@pytest.mark.parametrize("name", ["status", "submit", "sync", "daemon"])
def test_a_man_page_renders_cleanly_and_lists_every_option(docs: Path, name: str) -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    page = docs / "man" / "man1" / f"winopt-{name}.1"
    rendered = subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(page)], capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    assert rendered.returncode == 0 and rendered.stderr == "", rendered.stderr
    text = re.sub(r".\x08", "", rendered.stdout).replace("\u2010", "-").replace("\u2212", "-")
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", winopt(name, "--help").stdout))
    assert options and options <= set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)), options
    if name == "status":
        assert "SINCE" in text and "time since the job last changed state" in text


def test_bash_completes_commands_options_and_choices(docs: Path) -> None:
    script = docs / "completions" / "winopt"
    probe = f'''source {script}
complete -p winopt
c() {{ COMP_LINE="$1"; read -ra COMP_WORDS <<< "$1"; [ "${{1: -1}}" = " " ] && COMP_WORDS+=("")
  COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_POINT=${{#COMP_LINE}}; COMPREPLY=()
  _shtab_winopt winopt "${{COMP_WORDS[-1]}}" "${{COMP_WORDS[-2]}}"; echo "${{COMPREPLY[*]}}"; }}
c "winopt sta"; c "winopt status --wi"; c "winopt completion "; c "winopt submit --exa"
'''
    done = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["complete -o bashdefault -F _shtab_winopt winopt", "status", "--wide",
                                        "bash zsh", "--example"], done.stdout


def test_install_runs_install_docs_and_uninstall_removes_what_it_wrote() -> None:
    makefile = (REPO / "Makefile").read_text()
    install = makefile[makefile.index("\ninstall:"):makefile.index("\nuninstall:")]
    assert "$(MAKE) --no-print-directory install-docs" in install
    assert "MANDIR ?= /usr/local/share/man/man1" in makefile
    assert "BASHCOMPDIR ?= /usr/share/bash-completion/completions" in makefile
    dry = subprocess.run(["make", "-n", "-C", str(REPO), "--no-print-directory", "uninstall"],
                         capture_output=True, text=True, timeout=60)
    assert ("rm -f /usr/local/share/man/man1/winopt.1 /usr/local/share/man/man1/winopt-*.1 "
            "/usr/share/bash-completion/completions/winopt") in dry.stdout, dry.stdout
