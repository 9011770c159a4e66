"""Before a migration changes a database, a copy of it is written in pre-upgrade/ (the last
three kept); the README's rollback puts one back as checkin.db. A copy that cannot be written
(a full disk) stops the migration with the database untouched."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkin_appliance.store import Store
from checkin_appliance.store.schema import (
    PRE_UPGRADE_DIR,
    SchemaError,
    available,
    photo_folder,
    pre_upgrade_copy,
)

OLD_SCHEMA = 14


def old_database(path: Path, version: int = OLD_SCHEMA) -> None:
    """A database as the release whose newest migration was `version` left it, with one
    credential in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for number, sql in available()[:version]:
            conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
        conn.execute(
            "INSERT INTO credentials (token, role, label, password_hash, created_at) "
            "VALUES ('12345678', 'admin', 'Front desk', 'x', '2026-01-01T00:00:00Z')"
        )
    finally:
        conn.close()


def open_and_close(path: Path) -> None:
    async def run() -> None:
        store = Store(path)
        await store.open()
        await store.close()

    asyncio.run(run())


def version_and_labels(path: Path) -> tuple[int, list[str]]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        labels = [row[0] for row in conn.execute("SELECT label FROM credentials")]
        return conn.execute("PRAGMA user_version").fetchone()[0], labels
    finally:
        conn.close()


def test_an_upgrade_keeps_a_copy_the_rollback_opens(tmp_path: Path) -> None:
    db = tmp_path / "checkin.db"
    old_database(db)
    open_and_close(db)
    assert version_and_labels(db) == (len(available()), ["Front desk"])

    copies = list((tmp_path / PRE_UPGRADE_DIR).iterdir())
    assert len(copies) == 1, copies
    copy = copies[0]
    assert copy.name.startswith(f"checkin-schema-{OLD_SCHEMA}-") and copy.suffix == ".db"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600

    # The README's rollback: service stopped, the copy back as checkin.db (its -wal and -shm
    # belong to the newer file), the older package installed. The older program finds its
    # own schema and the clinic's data.
    for side in ("checkin.db-wal", "checkin.db-shm"):
        (tmp_path / side).unlink(missing_ok=True)
    shutil.copy2(copy, db)
    assert version_and_labels(db) == (OLD_SCHEMA, ["Front desk"])


def test_a_current_or_new_database_gets_no_copy(tmp_path: Path) -> None:
    db = tmp_path / "checkin.db"
    open_and_close(db)  # new and empty: nothing to go back to
    open_and_close(db)  # already current: nothing migrates
    assert not (tmp_path / PRE_UPGRADE_DIR).exists()


def test_only_the_newest_three_copies_are_kept_with_their_photo_folders(tmp_path: Path) -> None:
    db = tmp_path / "checkin.db"
    old_database(db)
    made: list[Path] = []
    folders: list[Path] = []
    conn = sqlite3.connect(db)
    try:
        for _ in range(5):
            copy = pre_upgrade_copy(conn, OLD_SCHEMA)
            assert copy is not None
            made.append(copy)
            # Where an older box's photo files go once that upgrade moved them in.
            folder = photo_folder(db)
            folder.mkdir()
            (folder / f"{len(made):032x}.jpg").write_bytes(b"a photo file")
            folders.append(folder)
    finally:
        conn.close()
    # Each folder is named after its copy (within one second too: -2, -3, ...).
    for copy, folder in zip(made, folders, strict=True):
        stamp = copy.name.removeprefix(f"checkin-schema-{OLD_SCHEMA}-").removesuffix(".db")
        assert folder.name == f"photos-{stamp}"
    kept = sorted(p.name for p in (tmp_path / PRE_UPGRADE_DIR).iterdir())
    assert kept == sorted(p.name for p in made[-3:] + folders[-3:])


@contextlib.contextmanager
def tiny_disk(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        timeout=10,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], timeout=10, check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (root)")
def test_no_room_for_the_copy_stops_the_upgrade_with_the_database_untouched(
    tmp_path: Path,
) -> None:
    with tiny_disk(tmp_path / "disk", "4m") as disk:
        db = disk / "checkin.db"
        old_database(db)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # Fill the disk to less than one database's size free.
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with contextlib.suppress(OSError):
            (disk / "filler").write_bytes(b"\0" * max(free - 32 * 1024, 0))
        before = hashlib.sha256(db.read_bytes()).hexdigest()

        with pytest.raises(SchemaError, match="cannot write the pre-upgrade copy") as refused:
            open_and_close(db)
        message = str(refused.value)
        assert str(db) in message and f"still at schema version {OLD_SCHEMA}" in message
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before
        assert version_and_labels(db) == (OLD_SCHEMA, ["Front desk"])
        assert list((disk / PRE_UPGRADE_DIR).iterdir()) == []  # no half-written copy
