"""`winopt completion bash|zsh`: the shell completion script (issue 12, item 6).

Written by shtab from the same parsers as `--help` (`winopt.cli.parsers`), so commands and
options complete as they are; arguments that name files or directories complete paths.
`make install` puts the bash script in /usr/share/bash-completion/completions/winopt,
where bash-completion loads it on first use; by hand:

    winopt completion bash > ~/.local/share/bash-completion/completions/winopt
    winopt completion zsh > ~/.zfunc/_winopt    # with fpath+=(~/.zfunc) before compinit
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from winopt.contracts.errors import UserError

SHELLS = ("bash", "zsh")
#: metavars and destinations that name a directory, and those that name a file
DIR_WORDS = ("DIR", "RUN_DIR", "RUN | RUN_DIR")
DIR_DESTS = ("state_dir", "out", "watch")
FILE_DESTS = ("file", "config", "draws", "rigs", "truth", "survivors", "storage_file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(script(args.shell))
    return 0


def script(shell: str) -> str:
    """The completion script for `shell`."""
    try:
        import shtab
    except ImportError:  # a dependency of winopt: only a broken install lacks it
        raise UserError("shtab is missing: reinstall winopt (pip install shtab)") from None
    from winopt.cli.parsers import full_parser

    parser = full_parser()
    _mark_paths(parser, shtab)
    return shtab.complete(parser, shell=shell)


def _mark_paths(parser: argparse.ArgumentParser, shtab: object) -> None:
    """Tell shtab which arguments complete as paths (it completes nothing by default)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_paths(sub, shtab)
        elif action.metavar in DIR_WORDS or action.dest in DIR_DESTS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif action.type is Path or action.metavar == "FILE" or action.dest in FILE_DESTS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
