"""Durable files: whole or absent after a power cut (temp file, fsync, rename, fsync folder)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# Every temp file ends so; a folder's sweep at start may delete what a crash left.
TEMP_SUFFIX = ".tmp"


def write_atomically(
    path: Path, content: bytes | Callable[[BinaryIO], object], mode: int = 0o600
) -> None:
    """Puts `content` (bytes, or a function that writes into the open file) at `path`.

    The temp file sits in the same folder and is created with its final `mode`, so a key is
    never readable by others, even briefly. Order: file fsync, rename, folder fsync.
    """
    temp = path.with_name(f"{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """A rename or a new file in `directory` survives a power cut once this returns."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems (FAT on a USB stick, some network mounts) cannot sync a folder.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
