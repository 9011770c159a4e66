"""Files written into the data directory by root (sudo restore, a command or a server run as
root) are given to the data directory's owner, so the service, running as that user, can
still use them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def give_to_data_dir_owner(data_dir: Path) -> None:
    """As root, chown everything in `data_dir` that root owns to the data directory's owner
    (its stat uid and gid); modes are kept. Links are changed, never followed. Nothing to do
    when not root, or when root owns the data directory.

    The whole tree, not a list of names: whatever a release adds there (keys, tls/,
    pre-upgrade/) would otherwise stop the service the day root first writes it."""
    if os.geteuid() != 0:
        return
    try:
        owner = data_dir.stat()
    except OSError:
        return
    if owner.st_uid == 0:
        return
    for folder, dirs, files in os.walk(data_dir):  # never into a linked folder
        for name in (*dirs, *files):
            _chown(Path(folder, name), owner.st_uid, owner.st_gid)


def _chown(path: Path, uid: int, gid: int) -> None:
    with contextlib.suppress(FileNotFoundError):  # a -shm that SQLite removed meanwhile
        if os.lstat(path).st_uid == 0:
            os.chown(path, uid, gid, follow_symlinks=False)
