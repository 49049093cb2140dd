"""Every `winopt` command's argparse parser, built the way `winopt.cli` builds the one it
runs, for what needs them all at once: the man pages and the shell completion
(issue 12, item 6). Generating both from the parsers keeps them from drifting from
`--help`: a new option appears in all three or in none.

Building them imports every command module (NumPy and Optuna included), which `winopt
COMMAND` avoids; so this module is only for the man and completion commands.
"""

from __future__ import annotations

import argparse
import importlib

from winopt import __version__
from winopt.cli import COMMANDS

PROG = "winopt"
DESCRIPTION = "Crash-proof window optimization for PRNG sieves."


def command_parser(name: str) -> argparse.ArgumentParser:
    """`winopt NAME`'s parser, as `winopt.cli.main` makes it."""
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=COMMANDS[name][1])
    fill(parser, name)
    return parser


def fill(parser: argparse.ArgumentParser, name: str) -> None:
    """Add command `name`'s arguments to `parser` (its module's `add_arguments`)."""
    importlib.import_module(COMMANDS[name][0]).add_arguments(parser)


def full_parser() -> argparse.ArgumentParser:
    """The whole command line: `winopt` with every command as a subparser."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        fill(sub.add_parser(name, help=help_, description=help_), name)
    return parser
