"""Files written into the data directory by root (sudo restore, a command run as root) are
given to the data directory's owner, so the service, running as that user, can still use
them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

# What a command or a restore may create at the top of the data directory; a folder is
# given over with everything in it.
DATA_DIR_ENTRIES = (
    "checkin.db",
    "checkin.db-wal",
    "checkin.db-shm",
    "checkin.lock",
    "audit.key",
    "media",
    "tls",
    "pre-upgrade",
)


def give_to_data_dir_owner(data_dir: Path, names: Iterable[str] = DATA_DIR_ENTRIES) -> None:
    """As root, chown every listed entry (and, for a folder, what is inside it) that root owns
    to the owner of `data_dir` (its stat uid and gid); modes are kept. Links are changed, never
    followed. Nothing to do when not root, or when root owns the data directory."""
    if os.geteuid() != 0:
        return
    try:
        owner = data_dir.stat()
    except OSError:
        return
    if owner.st_uid == 0 and owner.st_gid == 0:
        return
    for name in names:
        top = data_dir / name
        if not os.path.lexists(top):
            continue
        paths = [top]
        if top.is_dir() and not top.is_symlink():
            paths += top.rglob("*")
        for path in paths:
            _chown(path, owner.st_uid, owner.st_gid)


def _chown(path: Path, uid: int, gid: int) -> None:
    with contextlib.suppress(FileNotFoundError):  # a -shm that SQLite removed meanwhile
        st = os.lstat(path)
        if st.st_uid == 0 and (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid, follow_symlinks=False)
