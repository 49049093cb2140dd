"""Fixtures several test modules share (pytest registers what this module holds)."""

from rigs_support import ssh_rigs  # noqa: F401 - session scope: one pair of sshd rigs per test session
from sdbox_support import box  # noqa: F401 - a booted systemd in a box (function scope)
