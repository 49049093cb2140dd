"""The bidirectional sieve: generator families, their jumps, the skip schedule, the scan
over seed chunks (NumPy or CuPy, one core or a process pool), the chance level, and a plain
reference to check it against."""
