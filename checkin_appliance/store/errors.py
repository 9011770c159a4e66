"""The store's typed errors, and which sqlite3 errors mean what."""

from __future__ import annotations

import sqlite3


class StoreUnavailable(Exception):
    """The database cannot be written (disk full, read-only, locked for too long, …)."""


class StoreDamaged(Exception):
    """The database file is corrupt: the box runs in maintenance mode and refuses writes."""


def is_corruption(exc: BaseException) -> bool:
    # sqlite3 raises the bare DatabaseError for SQLITE_CORRUPT and SQLITE_NOTADB; busy,
    # I/O and full-disk errors are OperationalError, a subclass.
    return type(exc) is sqlite3.DatabaseError


def fails_the_batch(exc: BaseException) -> bool:
    """Errors of the database itself end the whole transaction; others only their write."""
    return isinstance(exc, sqlite3.OperationalError) or is_corruption(exc)
