"""The log: one line per record on stderr, cheap enough for an access line per request.

Under systemd, stderr is the journal's stream (JOURNAL_STREAM names it): the journal stamps
every line itself and reads a `<N>` prefix as the line's priority, so `journalctl -p
warning` works. Elsewhere each line starts with the local time.
"""

from __future__ import annotations

import logging
import os
import sys
from types import TracebackType
from typing import TextIO

# syslog priorities (sd-daemon(3)) by logging level.
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def to_journal(stream: TextIO) -> bool:
    """True when `stream` is the journal's stream: JOURNAL_STREAM is its "device:inode"."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


class JournalFormatter(logging.Formatter):
    """ "<6>INFO name: message": the priority for the journal, which adds the time."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        # The journal reads each line on its own: a traceback's lines keep the record's
        # priority, so `journalctl -p err` shows why a start failed, last line included.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


# Elsewhere: "2026-11-26 10:47:24,531 INFO name: message", logging's own local time.
TIME_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str | int) -> None:
    """The root logger writes to stderr at `level`."""
    # The Logging HOWTO's "Optimization": no line names its thread or process, so neither
    # is looked up.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JournalFormatter() if to_journal(sys.stderr) else logging.Formatter(TIME_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # An exception nothing caught is logged (at CRITICAL, with its priority under systemd)
    # instead of printed bare, so a failing start says why at error priority.
    sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("checkin_appliance").critical(
        "stopped by an unexpected error", exc_info=(kind, value, tb)
    )
