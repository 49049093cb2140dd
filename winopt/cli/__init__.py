"""The `winopt` command: one table of subcommands, each imported only when it runs.

Every command is a module of this package, providing `add_arguments(parser)` and
`run(args) -> int`; it sits above everything else and may use any layer below. Importing
lazily keeps `winopt status` and `winopt submit` quick (no NumPy/Optuna import).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from winopt import __version__
from winopt.contracts.errors import UserError
from winopt.contracts.safe_text import safe_text

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("winopt.cli.synth", "write a synthetic draw history with a planted state"),
    "sieve": ("winopt.cli.sieve", "run the bidirectional sieve once"),
    "optimize": ("winopt.cli.optimize", "run (or resume) an Optuna window search"),
    "worker": ("winopt.cli.worker", "run trials of every open study in a shared storage (one per GPU)"),
    "study": ("winopt.cli.study", "open a study to the workers of a shared storage and publish its snapshot"),
    "convert": ("winopt.cli.convert", "convert survivors JSON to the rigs' NPZ"),
    "evaluate": ("winopt.cli.evaluate", "print the watcher decision for a run"),
    "submit": ("winopt.cli.submit", "validate a job file and drop it into the spool"),
    "cancel": ("winopt.cli.cancel", "ask the daemon to cancel a job"),
    "jobs": ("winopt.cli.jobs", "list the spool's jobs (--rejected: refused files, with why)"),
    "clean": ("winopt.cli.clean", "remove finished jobs, refused files and rotated decision logs"),
    "sync": ("winopt.cli.sync", "force a resync of NPZ files to the rigs"),
    "daemon": ("winopt.cli.daemon", "run the daemon (normally via systemd)"),
    "status": ("winopt.cli.status", "show the daemon's status file"),
    "show": ("winopt.cli.show", "one run on one screen: progress, ETA, best against chance, notes, decision, NPZ, rigs"),
    "report": ("winopt.cli.report", "write a run's self-contained HTML report (plots; needs winopt[report])"),
    "dashboard": ("winopt.cli.dashboard", "serve Optuna's dashboard on a run's storage (needs winopt[dashboard])"),
    "logs": ("winopt.cli.logs", "show the daemon's log lines (a job's, with its output), without root"),
    "demo": ("winopt.cli.demo", "run the bundled demo"),
    "man": ("winopt.cli.man", "print a man page made from the commands' options (--out DIR: all of them)"),
    "completion": ("winopt.cli.completion", "print the shell completion script (bash or zsh)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="winopt",
        description="Crash-proof window optimization for PRNG sieves.",
        epilog="Run 'winopt COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"winopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


#: exit status when the reader of our output went away (`winopt status | head`): what a
#: shell reports for a program killed by SIGPIPE (128 + 13), without the noise
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command, and map errors to exit codes; every error line is escaped
    (`safe_text`: names may hold control characters). A reader that closes the pipe
    early is not an error: the command stops quietly (SIGPIPE's exit status, no message).
    SIGPIPE itself stays ignored, as Python sets it: the daemon, which also runs through
    here, must get EPIPE from a dead rsync pipe, not die of it."""
    try:
        status = _run(argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here for short output
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return status


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's own flush at exit finds no
    closed pipe to complain about."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _run(argv: list[str] | None) -> int:
    """Parse, import the one command module needed, run it, and map errors to exit codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"winopt {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"winopt: error: {safe_text(exc)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        raise  # not an error: see main
    except OSError as exc:  # a path the user gave: missing directory, no permission, disk full
        where = f"{exc.filename}: " if exc.filename else ""
        problem = exc.strerror or str(exc)
        if isinstance(exc, PermissionError) and exc.filename:
            from winopt.contracts.access import denied

            problem = denied(exc.filename)
        print(f"winopt: error: {safe_text(where)}{safe_text(problem)}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
