"""Fixtures several test modules share: pytest registers what this module holds, so a
test names a fixture as an argument and imports only the helpers it calls."""

from head_support import head  # noqa: F401 - a head node's state dir with members (function scope)
from members_support import members  # noqa: F401 - users in a group, acting as members (function scope)
from notify_support import fake_systemd  # noqa: F401 - a NOTIFY_SOCKET the daemon talks to (function scope)
from rigs_support import ssh_rigs  # noqa: F401 - session scope: one pair of sshd rigs per test session
from sdbox_support import box  # noqa: F401 - a booted systemd in a box (function scope)
