"""winopt: crash-proof window optimization and the daemon that ships its results.

The installed package joins four source folders: `winopt` (the CLI in `winopt.cli`, the
shared file contracts in `winopt.contracts`), `winopt.optimizer`, `winopt.handlers` and
`winopt.daemon`. Imports point down: cli -> daemon -> handlers -> optimizer -> contracts.
"""

__version__ = "0.1.0"
