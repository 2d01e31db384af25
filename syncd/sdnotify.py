"""sd_notify(3) over `$NOTIFY_SOCKET`.

Own ~20 lines instead of a dependency: the `sdnotify` package (last release 2017) swallows
every error, and systemd-python needs a compiler and libsystemd headers; the protocol is a
single datagram of `KEY=VALUE` lines.
"""

from __future__ import annotations

import os
import socket


def notify(*lines: str) -> bool:
    """Send one message; False when not running under a notify-socket supervisor."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode("utf-8"))
    except OSError:
        return False
    return True


def watchdog_period() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), None when no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 / 2 if value > 0 else None
