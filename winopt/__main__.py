"""`python -m winopt` is the `winopt` command."""

from winopt.cli import main

raise SystemExit(main())
