"""Cost of taking job files from the spool, against the floor of durable writes.

Accepting a file reads it once through a descriptor, renames it into `accepting/`,
validates it (the draw history is read once, parsed once and cached), builds the job
directory under a temp name (three atomic publishes: the job bytes, the draws copy and
state.json), renames it into place and unlinks the staged file, with the fsyncs that
make each step durable: 10 per file, so on a disk where fsync dominates expect about 5x
the reference's 2. The reference, measured in the same run on the
same filesystem, is one atomic publish (write, fsync, rename, fsync dir) per file: the
least a crash-safe spool could do. Also timed: a scan that finds every file still
inside its grace period (what the daemon pays for an early event), and the one /proc
pass per scan that finds files held open for writing.

    .venv/bin/python bench/spool.py [--files 300] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from winopt.contracts import publish_bytes
from winopt.handlers.jobs.spool import Spool
from winopt.contracts.procs import files_open_for_writing

JOB = 'draws = "history.json"\ntrials = 20\nwindow_size = [2, 30]\nname = "bench"\n'


def make_spool(root: Path, grace: float) -> Spool:
    draws = root / "draws"
    draws.mkdir(parents=True)
    (draws / "history.json").write_text(json.dumps([(i * 37) % 1000 for i in range(2000)]))
    spool = Spool(root / "state", allowed_draws_dirs=[draws], grace=grace)
    spool.ensure_layout()
    return spool


def drop(spool: Spool, files: int) -> set[str]:
    names = {f"job{i:04d}.toml" for i in range(files)}
    for name in names:
        (spool.dir / name).write_text(JOB)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--dir", default=None, help="where to make the temp state dirs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        ref_dir = root / "reference"
        ref_dir.mkdir()
        t0 = time.perf_counter()
        for i in range(args.files):
            publish_bytes(ref_dir / f"job{i:04d}.toml", JOB.encode())
        reference = time.perf_counter() - t0

        spool = make_spool(root / "a", grace=0)
        names = drop(spool, args.files)
        t0 = time.perf_counter()
        result = spool.scan(renamed=names)
        accept = time.perf_counter() - t0
        assert len(result.accepted) == args.files, result.events[:3]

        waiting = make_spool(root / "b", grace=3600)
        drop(waiting, args.files)
        t0 = time.perf_counter()
        deferred = waiting.scan()
        idle = time.perf_counter() - t0
        assert not deferred.accepted and deferred.retry_after

        t0 = time.perf_counter()
        files_open_for_writing(waiting.dir)
        proc_pass = time.perf_counter() - t0

    per = 1000 / args.files
    print(f"files: {args.files}")
    print(f"reference (one atomic publish per file): {reference * per:8.3f} ms/file")
    print(f"accept (validate + stage + job dir)    : {accept * per:8.3f} ms/file   "
          f"ratio {accept / reference:5.2f}x reference")
    print(f"scan with every file in its grace      : {idle * per:8.3f} ms/file   "
          f"ratio {idle / reference:5.2f}x reference")
    print(f"one /proc pass (open-for-writing check): {proc_pass * 1000:8.3f} ms")


if __name__ == "__main__":
    main()
