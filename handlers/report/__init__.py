"""A run seen as a whole (issue 16): its trials with their notes, its pace, and the
self-contained HTML report (`winopt report`, and the daemon's report.html of a job)."""
