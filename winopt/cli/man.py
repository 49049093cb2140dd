"""`winopt man [COMMAND]`: man pages written from the argparse definitions (issue 12, item 6).

An installed host has no source checkout to read, so `make install` writes `winopt(1)`
and one `winopt-COMMAND(1)` per command into /usr/local/share/man/man1 (`winopt man
--out DIR`); `winopt man status | man -l -` reads one without installing it. Each page
is the command's `--help` in man(7) form: synopsis, description, every option with its
help, the parser's notes (a table's column meanings), and the pages around it. Made
from the same parsers as `--help` (`winopt.cli.parsers`), the pages cannot fall behind it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from winopt import __version__
from winopt.cli import COMMANDS
from winopt.contracts.errors import UserError

SECTION = "1"
FILES = (
    ("/etc/winopt/daemon.toml", "the daemon's config (every key documented in it)"),
    ("/var/lib/winopt/", "the daemon's state: status.json, spool/, jobs/ID/, rejected/, and daemon.jsonl, "
                         "the daemon's log for group winopt (winopt logs)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", nargs="?", metavar="COMMAND", choices=sorted(COMMANDS),
                        help="the command whose page to print (default: winopt(1), the overview)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write every page (winopt.1 and winopt-COMMAND.1) into DIR instead of printing one")


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        for name, text in all_pages().items():
            write(args.out / name, text)
        return 0
    sys.stdout.write(command_page(args.topic) if args.topic else overview_page())
    return 0


def all_pages() -> dict[str, str]:
    """File name -> page, for every page winopt has."""
    pages = {f"winopt.{SECTION}": overview_page()}
    pages.update({f"winopt-{name}.{SECTION}": command_page(name) for name in COMMANDS})
    return pages


def write(path: Path, text: str) -> None:
    """Write a page whole or not at all (a reader of the man directory never sees half)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the man page: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- pages
def overview_page() -> str:
    from winopt.cli.parsers import DESCRIPTION

    lines = _title("winopt", "crash-proof window optimization for PRNG sieves")
    lines += [".SH SYNOPSIS", ".B winopt", r"\fICOMMAND\fR [\fIOPTIONS\fR]", ".br", ".B winopt",
              r"\fICOMMAND\fR \fB\-\-help\fR", ".SH DESCRIPTION", escape(DESCRIPTION),
              "Each command has its own page, listed below, and its own \\fB\\-\\-help\\fR.", ".SH COMMANDS"]
    for name, (_, help_) in COMMANDS.items():
        lines += [".TP", rf"\fB{escape(name)}\fR", escape(help_) + f" (see \\fBwinopt\\-{escape(name)}\\fR(1))"]
    lines += _files()
    lines += _see_also([f"winopt-{name}" for name in COMMANDS])
    return "\n".join(lines) + "\n"


def command_page(name: str) -> str:
    """`winopt-NAME(1)`: the parser of `winopt NAME` in man(7) form."""
    from winopt.cli.parsers import command_parser

    parser = command_parser(name)
    lines = _title(f"winopt-{name}", COMMANDS[name][1])
    usage = parser.format_usage().removeprefix("usage: ").strip()
    lines += [".SH SYNOPSIS", ".nf", *map(escape, usage.splitlines()), ".fi"]
    lines += [".SH DESCRIPTION", escape(parser.description or "")]
    lines += _options(parser)
    if parser.epilog:
        lines += [".SH NOTES", ".nf", *map(escape, parser.epilog.splitlines()), ".fi"]
    lines += _files()
    lines += _see_also(["winopt", *(f"winopt-{other}" for other in COMMANDS if other != name)])
    return "\n".join(lines) + "\n"


def _title(page: str, summary: str) -> list[str]:
    """The .TH line (dated by SOURCE_DATE_EPOCH when set, for reproducible builds) and NAME."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    day = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch and epoch.isdigit() else dt.datetime.now()
    return [f'.TH "{page.upper()}" "{SECTION}" "{day:%Y-%m-%d}" "winopt {__version__}" "winopt manual"',
            ".SH NAME", f"{escape(page)} \\- {escape(summary)}"]


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """One .TP entry per argument, positional ones first, as `--help` words them."""
    formatter = parser._get_formatter()
    positionals = [a for a in parser._actions if not a.option_strings and a.help != argparse.SUPPRESS]
    options = [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]
    lines: list[str] = []
    for title, actions in (("ARGUMENTS", positionals), ("OPTIONS", options)):
        if not actions:
            continue
        lines.append(f".SH {title}")
        for action in actions:
            invocation = formatter._format_action_invocation(action)
            help_ = formatter._expand_help(action) if action.help else ""
            lines += [".TP", rf"\fB{escape(invocation)}\fR", escape(" ".join(help_.split()))]
    return lines


def _files() -> list[str]:
    lines = [".SH FILES"]
    for path, what in FILES:
        lines += [".TP", rf"\fI{escape(path)}\fR", escape(what)]
    return lines


def _see_also(pages: list[str]) -> list[str]:
    return [".SH SEE ALSO", ",\n".join(rf"\fB{escape(page)}\fR({SECTION})" for page in pages)]


def escape(text: str) -> str:
    """Text as roff reads it literally: backslashes and dashes escaped, and no line
    starting with a control character ('.' or "'")."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())
