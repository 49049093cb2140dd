"""Telling systemd how the daemon is doing: the sd_notify protocol (sd_notify(3)).

https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html : a service of
`Type=notify` sends newline-separated `KEY=VALUE` assignments (READY=1, STATUS=...,
WATCHDOG=1, RELOADING=1 with MONOTONIC_USEC, STOPPING=1) as one datagram to the AF_UNIX
socket named by `$NOTIFY_SOCKET` (a leading '@' means the Linux abstract namespace).
systemd-python's `systemd.daemon.notify` (libsystemd itself) is used when importable;
otherwise the datagram is sent here. Outside systemd there is no socket and every call is
a no-op, so the same daemon runs by hand. A failed notification is logged at debug level
and never raised: losing a status line must not hurt the service.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

from winopt.contracts.safe_text import safe_text

log = logging.getLogger(__name__)

try:  # libsystemd through systemd-python, when installed
    from systemd.daemon import notify as _libsystemd_notify
except ImportError:  # pragma: no cover - exercised where systemd-python is absent
    _libsystemd_notify = None


def notify(*assignments: str) -> bool:
    """Send `assignments` (e.g. "READY=1", "STATUS=...") as one notification.

    Returns whether a message was sent; never raises. Each assignment is one line of the
    datagram, so text in it (a STATUS naming a file) is escaped: a newline there would
    otherwise add an assignment of its own (a READY=1 or WATCHDOG=1 nobody meant)."""
    message = "\n".join(safe_text(a) for a in assignments)
    try:
        if _libsystemd_notify is not None:
            return bool(_libsystemd_notify(message))
        return send_datagram(message)
    except Exception as exc:  # a notification must never take the daemon down
        log.debug("sd_notify %r failed: %s", message, exc)
        return False


def send_datagram(message: str, env: Mapping[str, str] = os.environ) -> bool:
    """The protocol itself, without libsystemd: one datagram to `$NOTIFY_SOCKET`.

    Returns False when there is no socket to talk to (not under systemd)."""
    address = env.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    elif not address.startswith("/"):
        return False  # unset, or a kind (vsock) this fallback does not speak
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode("utf-8"))
    return True


def reloading() -> bool:
    """RELOADING=1 with the MONOTONIC_USEC that `Type=notify-reload` requires."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def status_line(text: str) -> bool:
    """STATUS=: one line (newlines would start new assignments)."""
    return notify("STATUS=" + " ".join(text.split()))


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when systemd does
    not watch this process (unset, malformed, or WATCHDOG_PID naming another process)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
        pid = env.get("WATCHDOG_PID")
        if pid is not None and pid != "" and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None
