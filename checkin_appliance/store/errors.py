"""The store's typed errors, and which sqlite3 errors mean what."""

from __future__ import annotations

import errno
import sqlite3


class StoreUnavailable(Exception):
    """The database cannot be written (disk full, read-only, locked for too long, …)."""


class DiskFull(StoreUnavailable):
    """The disk (or the filesystem's quota) has no room for the write; nothing was committed."""


class StoreDamaged(Exception):
    """The database file is corrupt: the box runs in maintenance mode and refuses writes."""


def is_corruption(exc: BaseException) -> bool:
    # sqlite3 raises the bare DatabaseError for SQLITE_CORRUPT and SQLITE_NOTADB; busy,
    # I/O and full-disk errors are OperationalError, a subclass.
    return type(exc) is sqlite3.DatabaseError


def fails_the_batch(exc: BaseException) -> bool:
    """Errors of the database itself end the whole transaction; others only their write."""
    return isinstance(exc, sqlite3.OperationalError) or is_corruption(exc)


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full") or a file write's ENOSPC/EDQUOT."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
