"""`winopt convert SURVIVORS.json`: one survivors file to the rigs' NPZ, by hand."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from winopt.contracts.errors import in_file
from winopt.contracts.safe_text import safe_text
from winopt.handlers.convert.to_npz import DEFAULT_MAX_SURVIVORS_BYTES, NPZ_NAME, convert

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`winopt convert SURVIVORS.json [-o OUT.npz] [--if-stale]`."""
    parser.add_argument("survivors", type=Path, help="bidirectional_survivors.json to convert")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help=f"NPZ to write (default: {NPZ_NAME} beside SURVIVORS; the meta goes beside it)",
    )
    parser.add_argument(
        "--if-stale",
        action="store_true",
        help="convert only when the meta's source sha256 differs from SURVIVORS' "
        "(prints 'up to date' otherwise)",
    )
    parser.add_argument(
        "--max-bytes",
        type=byte_size,
        default=DEFAULT_MAX_SURVIVORS_BYTES,
        metavar="SIZE",
        help="refuse a survivors file larger than SIZE (bytes, or with K, M, G, T: 1024-based; "
        "default 4G)",
    )


def byte_size(text: str) -> int:
    """A size for people: `4294967296`, `4G`, `4GiB`, `512M`, `64k` (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:([kKmMgGtT])(?:i?B)?)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (bytes, or a number with K, M, G or T)")
    power = " kmgt".index(match[2].lower()) if match[2] else 0
    return int(match[1]) << (10 * power)


def run(args: argparse.Namespace) -> int:
    """Convert and print one line: count, NPZ path, sha256 prefix and time taken."""
    start = time.perf_counter()
    try:
        result = convert(args.survivors, args.output, if_stale=args.if_stale, max_bytes=args.max_bytes)
    except OSError as exc:  # output side: permissions, full disk, ...
        raise in_file(
            exc.filename or args.output or args.survivors, exc.strerror or str(exc)
        ) from exc
    sha = str(result.meta.get("npz_sha256", ""))[:12]
    if result.converted:
        for warning in result.warnings:
            print(f"winopt: warning: {safe_text(args.survivors)}: {warning}", file=sys.stderr)
    if not result.converted:
        print(f"up to date: {result.npz_path} ({result.count} survivors, sha256 {sha})")
        return 0
    ms = (time.perf_counter() - start) * 1000
    print(f"converted {result.count} survivors -> {result.npz_path} (sha256 {sha}, {ms:.0f} ms)")
    return 0


