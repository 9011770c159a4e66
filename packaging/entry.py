"""Entry point of the frozen executable: the same `checkin-appliance` command as the wheel's.

The one-folder build the .deb installs is one process: nothing to adopt. The one-file download
runs as two: PyInstaller's bootloader (the process a supervisor started, so its main PID)
unpacks the program and runs Python in a child, forwarding signals to it. A WATCHDOG_PID naming
the bootloader is then taken over by the child, the one that pings (a unit running the one-file
build needs NotifyAccess=all and KillMode=mixed, as our unit did before the .deb carried the
folder).
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
