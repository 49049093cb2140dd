"""Rigs: their config, the rsync that reaches one, and the distributor that keeps every
rig's copy of every NPZ current."""
