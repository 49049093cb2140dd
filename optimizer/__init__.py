"""Draw histories, PRNG families, the bidirectional sieve, the Optuna study and its snapshots."""
