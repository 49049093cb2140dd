"""The work per event, one subpackage per feature (convert, evaluate, rigs, jobs); each is
usable and testable without the daemon, and none imports another."""
