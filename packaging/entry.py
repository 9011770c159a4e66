"""Entry point of the frozen executable: the same `checkin-appliance` command as the wheel's.

A one-file executable runs as two processes: PyInstaller's bootloader (the process systemd
started, so its main PID) unpacks the program and runs Python in a child, forwarding signals
to it. systemd's WATCHDOG_PID therefore names the bootloader; the child is the one that pings,
so it takes the watchdog over here. (The unit allows the child's notifications with
NotifyAccess=all and sends SIGTERM only to the bootloader with KillMode=mixed.)
"""

from __future__ import annotations

import os
import sys

from checkin_appliance.cli import main


def adopt_watchdog() -> None:
    """Point WATCHDOG_PID at this process when it names our bootloader parent."""
    if getattr(sys, "frozen", False) and os.environ.get("WATCHDOG_PID") == str(os.getppid()):
        os.environ["WATCHDOG_PID"] = str(os.getpid())


if __name__ == "__main__":
    adopt_watchdog()
    sys.exit(main())
