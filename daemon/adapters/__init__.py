"""One adapter per feature: what the daemon's loop calls for runs, spool jobs and rigs."""
