"""The daemon: its event loop and what only a daemon has (watching, coalescing, systemd
notify, the journal, the status writer, its config), with one adapter per feature."""
