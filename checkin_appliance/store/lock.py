"""One process at a time owns a data directory: the server while it runs, or a restore."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "checkin.lock"


class DataDirInUse(Exception):
    """Another server (or a restore) holds the data directory."""


@contextlib.contextmanager
def hold(data_dir: Path) -> Iterator[None]:
    """Holds `data_dir/checkin.lock` (flock, released by the kernel however we exit).

    The file itself is never deleted: deleting it would let two holders lock two files.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DataDirInUse(
                f"{data_dir} is in use by another server or a restore ({LOCK_FILE} is held)"
            ) from exc
        except OSError as exc:  # a filesystem without locks: the other checks still apply
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        yield
    finally:
        os.close(fd)
