"""The sd_notify protocol: tell systemd we are ready, still alive, or stopping.

One datagram to $NOTIFY_SOCKET per message; without that variable (not under systemd,
or in a container) every call is a no-op. No dependency needed.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Sends e.g. "READY=1"; True if systemd was told."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # Linux abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 1_000_000 / 2, 0.5)
    except ValueError:
        return None
