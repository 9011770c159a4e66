"""The photo files of an older box (media/patient_images/<name>), moved into the database at start.

Before issue 20 each photo was a file; the database now holds them (migration photo_blobs). At every
start, once the database is open and migrated, the server takes the files a patient's row
names into the photos table in batches, each batch one committed transaction, and ONLY AFTER
that commit moves those files out of media/ into the pre-upgrade folder, beside the database
copy the upgrade made (pre-upgrade/photos-<stamp>/, pruned with that copy), where the
README's rollback finds them. Files no row names are deleted, as the orphan sweep did, and
so are temp files a crash left. A crash at any point is safe: the next start finds the files
still in media/, inserts them again (one already stored is left as it is) and moves them.
When the folder is empty it goes, and media/ with it if nothing else is there.

A box that never had photo files finds no folder and does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from checkin_appliance import systemd
from checkin_appliance.domain import format_time
from checkin_appliance.files import TEMP_SUFFIX, fsync_directory
from checkin_appliance.photos import PHOTO_NAME
from checkin_appliance.store import DiskFull, Store, StoreUnavailable
from checkin_appliance.store.schema import photo_folder

log = logging.getLogger(__name__)

# One transaction takes at most this many files or bytes: what is read stays small, and a
# batch's commit comes soon.
BATCH_FILES = 64
BATCH_BYTES = 8 * 1024 * 1024
# A file larger than this is no photo the box wrote (an 800 px JPEG is ~50-150 KB): left
# where it is, and said so.
MAX_FILE_BYTES = 32 * 1024 * 1024
# systemd's start timeout, pushed back this far after each batch (a box with thousands of
# photos on a slow SD card), so a long first start is not taken for a hung one.
EXTEND_START_USEC = 60_000_000


@dataclass(frozen=True, slots=True)
class Moved:
    """What one start did with the photo folder: counts only."""

    moved: int = 0  # files now in the database and in the pre-upgrade folder
    removed: int = 0  # files no row named, and temp files
    left: int = 0  # files that could not be read or moved: still in media/, tried again


async def move_into_database(store: Store, photo_dir: Path) -> Moved:
    """Moves the photo files in `photo_dir` into the database (see the module's docstring)."""
    if not await asyncio.to_thread(_is_folder, photo_dir):
        return Moved()
    named = await store.photo_names()
    files, unnamed = await asyncio.to_thread(_listing, photo_dir, named)
    aside = await asyncio.to_thread(photo_folder, store.path)
    moved = 0
    problems: set[str] = set()
    refused = False  # by the database (a full disk): those photos do not load meanwhile
    for batch in _batches(files):
        found = await asyncio.to_thread(_read, photo_dir, batch, problems)
        if not found:
            continue
        try:
            await store.add_photos(found)
        except (DiskFull, StoreUnavailable) as exc:
            # The files stay where they are, whole: the next start tries again.
            problems.add(f"the database took no more: {exc}")
            refused = True
            break
        names = [name for name, _, _ in found]
        moved += await asyncio.to_thread(_move, photo_dir, aside, names, problems)
        systemd.notify(f"EXTEND_TIMEOUT_USEC={EXTEND_START_USEC}")
    left = len(files) - moved
    removed = await asyncio.to_thread(_remove, photo_dir, unnamed)
    await asyncio.to_thread(_remove_if_empty, photo_dir)
    result = Moved(moved, removed, left)
    if moved:
        log.info("moved %d photo file(s) into the database; the files are in %s", moved, aside)
    if removed:
        log.info("removed %d photo file(s) no patient's row named", removed)
    if left:
        log.log(
            logging.ERROR if refused else logging.WARNING,
            "%d photo file(s) in %s could not be moved into the database (%s); they stay "
            "there and are tried again at the next start",
            left,
            photo_dir,
            "; ".join(sorted(problems)),
        )
    return result


def _is_folder(path: Path) -> bool:
    """A real folder, not a link to one (nothing is moved out of or deleted through a link)."""
    return not path.is_symlink() and path.is_dir()


def _listing(photo_dir: Path, named: set[str]) -> tuple[list[tuple[str, int]], list[str]]:
    """([(name, size)] of the files a row names, [files to delete]): regular files only,
    never followed through a link. Names we never write are left alone."""
    files, unnamed = [], []
    with os.scandir(photo_dir) as entries:
        for entry in entries:
            if entry.name.endswith(TEMP_SUFFIX):
                unnamed.append(entry.name)
            elif PHOTO_NAME.match(entry.name):
                if entry.name not in named:
                    unnamed.append(entry.name)
                elif entry.is_file(follow_symlinks=False):
                    files.append((entry.name, entry.stat(follow_symlinks=False).st_size))
    return sorted(files), unnamed


def _batches(files: list[tuple[str, int]]) -> list[list[str]]:
    batches: list[list[str]] = []
    size = 0
    for name, file_size in files:
        if not batches or len(batches[-1]) >= BATCH_FILES or size + file_size > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(name)
        size += file_size
    return batches


def _read(photo_dir: Path, names: list[str], problems: set[str]) -> list[tuple[str, str, bytes]]:
    """(name, created_at from its modification time, bytes) of each file that can be read;
    why the others could not, into `problems` (never a name: a photo's name is its key)."""
    found = []
    for name in names:
        try:
            fd = os.open(photo_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            problems.add(f"cannot read one: {exc.strerror}")
            continue
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
                problems.add("one is not a photo the box wrote")
                continue
            data = f.read()
        created = format_time(datetime.fromtimestamp(st.st_mtime, UTC))
        found.append((name, created, data))
    return found


def _move(photo_dir: Path, aside: Path, names: list[str], problems: set[str]) -> int:
    """Renames the (committed) files into `aside`; how many went."""
    aside.parent.mkdir(mode=0o700, exist_ok=True)  # pre-upgrade/: none without a copy
    aside.mkdir(mode=0o700, exist_ok=True)
    moved = 0
    for name in names:
        try:
            os.replace(photo_dir / name, aside / name)
        except OSError as exc:
            problems.add(f"cannot move one out of media/: {exc.strerror}")
            continue
        moved += 1
    fsync_directory(aside)
    fsync_directory(photo_dir)
    return moved


def _remove(photo_dir: Path, names: list[str]) -> int:
    removed = 0
    for name in names:
        with contextlib.suppress(OSError):  # gone already, or not ours: left
            os.unlink(photo_dir / name)
            removed += 1
    return removed


def _remove_if_empty(photo_dir: Path) -> None:
    """The photo folder, and media/ above it, once nothing is left in them."""
    for folder in (photo_dir, photo_dir.parent):
        try:
            folder.rmdir()
        except OSError:  # something is still there (or it is not ours to remove)
            return
