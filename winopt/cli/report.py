"""`winopt report JOB|DIR [-o report.html]`: one self-contained HTML file about a run
(issue 16; the page itself is `handlers.report.html`). Needs the extra winopt[report]."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from winopt.cli.runref import add_run_arguments, resolve_run
from winopt.contracts.errors import UserError

MISSING_EXTRA = "winopt report needs plotly: install winopt[report] (pip install 'winopt[report]')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("-o", "--output", metavar="FILE", default="report.html",
                        help="where to write the page (default: report.html here)")


def run(args: argparse.Namespace) -> int:
    try:  # the extra first, before anything slow: one line when it is missing
        importlib.import_module("plotly")
    except ImportError:
        raise UserError(MISSING_EXTRA) from None
    from winopt.handlers.report.html import build_report, write_report
    from winopt.handlers.report.trials import load_study, read_snapshot_or_none, storage_url, study_name

    out = Path(args.output)
    check_output(out)  # before the seconds of building a page that could not be written
    ref = resolve_run(args)
    snapshot = read_snapshot_or_none(ref.run_dir)
    study = load_study(storage_url(ref.run_dir, args.storage, ref.shared_storage), study_name(ref.run_dir, snapshot, args.study))
    data = build_report(ref.run_dir, study, snapshot, title=f"winopt run {ref.name}")
    try:
        write_report(out, data)
    except OSError as exc:  # the temp file's name means nothing to a person: the target's does
        raise UserError(f"{out}: cannot write: {exc.strerror or exc}") from None
    print(out)
    return 0


def check_output(out: Path) -> None:
    """One line, naming `-o`, when the page could not be published there: a directory, or
    a file in a directory that is missing or not writable."""
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file name (-o {out / 'report.html'})")
    parent = out.parent
    if not parent.is_dir():
        raise UserError(f"{out}: no such directory {parent}; create it or give another -o FILE")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{out}: {parent} is not writable; give another -o FILE")
