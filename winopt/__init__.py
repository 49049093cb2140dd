"""winopt: crash-proof window optimization and the daemon that ships its results.

The installed package joins four source folders: `winopt` (CLI, errors and the shared
file contracts), `winopt.optimizer`, `winopt.handlers` and `winopt.daemon`.
"""

__version__ = "0.1.0"
