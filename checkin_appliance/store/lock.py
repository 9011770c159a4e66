"""One process at a time owns a data directory: the server while it runs, a restore, a
standby (standby.py) or a promote."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "checkin.lock"


class DataDirInUse(Exception):
    """Another server (or a restore) holds the data directory."""


class UnsafeLockFile(DataDirInUse):
    """checkin.lock is a link, or not a plain file of its own: someone put it there.

    Run as root (restore with sudo), following a link planted by the service's user would
    create or lock any file on the box."""


@contextlib.contextmanager
def hold(data_dir: Path) -> Iterator[None]:
    """Holds `data_dir/checkin.lock` (flock, released by the kernel however we exit).

    The file itself is never deleted: deleting it would let two holders lock two files.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    unsafe = UnsafeLockFile(
        f"{path} is a link or not a plain file; remove it if you did not put it there"
    )
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise unsafe from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise unsafe
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DataDirInUse(
                f"{data_dir} is in use by another server, a restore or a standby "
                f"({LOCK_FILE} is held)"
            ) from exc
        except OSError as exc:  # a filesystem without locks: the other checks still apply
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        yield
    finally:
        os.close(fd)
