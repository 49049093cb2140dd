"""`python -m winopt` is the `winopt` command."""

from winopt.cli import main

# guarded: a forkserver/spawn child re-importing the parent's main module must not run it
if __name__ == "__main__":
    raise SystemExit(main())
