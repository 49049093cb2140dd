"""Evaluate: the watcher decision (proceed, wait, retry, escalate) for a run's snapshot."""
