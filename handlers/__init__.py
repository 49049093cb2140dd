"""Work done per event (convert, evaluate, distribute, jobs); each usable without the daemon."""
