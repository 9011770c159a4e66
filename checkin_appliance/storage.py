"""Why the data directory cannot be used, in one line an operator can act on: which path, and
what is wrong with it (missing, read-only mount, not writable by this user)."""

from __future__ import annotations

import os
from pathlib import Path

from checkin_appliance.config import Config
from checkin_appliance.store.lock import LOCK_FILE

SIDE_FILES = ("-wal", "-shm")


def write_problem(config: Config) -> str | None:
    """What stops this process writing the database and its side files; None when nothing
    does (as far as can be seen without writing)."""
    data_dir = config.data_dir
    if not data_dir.is_dir():
        return f"the data directory {_shown(data_dir)} does not exist"
    if _read_only_mount(data_dir):
        return (
            f"the data directory {_shown(data_dir)} is on a read-only file system; "
            "remount it read-write (or free the disk that turned it read-only)"
        )
    if not os.access(data_dir, os.W_OK | os.X_OK):
        return f"cannot write in the data directory {_shown(data_dir)}: {_whose(data_dir)}"
    db = config.db_path
    side_files = [db.with_name(db.name + suffix) for suffix in SIDE_FILES]
    # checkin.lock left by root (a restore run with sudo) stops the service too.
    for path in [db, *side_files, data_dir / LOCK_FILE]:
        wanted = os.R_OK | os.W_OK | (os.X_OK if path.is_dir() else 0)
        if path.exists() and not os.access(path, wanted):
            return f"cannot write {_shown(path)}: {_whose(path)}"
    return None


def problem(config: Config, exc: BaseException | None = None) -> str:
    """One line for an error met opening or writing the database."""
    found = write_problem(config)
    if found is not None:
        return found
    if isinstance(exc, OSError):
        where = exc.filename or config.data_dir
        return f"cannot use {where}: {exc.strerror or exc}"
    if exc is not None:  # sqlite3's, or the store's StoreUnavailable
        return f"cannot use the database {_shown(config.db_path)}: {exc}"
    return f"cannot use the data directory {_shown(config.data_dir)}"


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _whose(path: Path) -> str:
    st = path.stat()
    return (
        f"permission denied (owner uid {st.st_uid}, mode {st.st_mode & 0o7777:04o}; this is uid "
        f"{os.geteuid()}): run the command as its owner, e.g. sudo -u checkin-appliance"
    )


def _shown(path: Path) -> str:
    return str(path.resolve())
