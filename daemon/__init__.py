"""The daemon's event loop: config, watching, coalescing, scheduling, status, systemd."""
