"""Numbered .sql migrations, shipped as package resources, applied by PRAGMA user_version."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from checkin_appliance.store.inspect import schema_version

log = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Copies of the database taken before each upgrade, in the data directory; the newest
# PRE_UPGRADE_KEEP are kept (the README's rollback puts one back as checkin.db). Beside a
# copy, photos-<its stamp>/ holds the photo files an older box kept in media/, moved there
# once the database holds them (photo_files.py): the rollback puts them back too.
PRE_UPGRADE_DIR = "pre-upgrade"
PRE_UPGRADE_KEEP = 3
_PRE_UPGRADE_NAME = re.compile(r"^checkin-schema-\d+-(\d{8}T\d{6}Z(?:-(\d+))?)\.db$")
_PHOTO_FOLDER = "photos-{stamp}"


class SchemaError(RuntimeError):
    """The database cannot be brought to this program's schema; it was left as it was."""


class NewerSchema(SchemaError):
    """The database was migrated by a newer version (a downgrade): nothing here may touch it."""


def available() -> list[tuple[int, str]]:
    """(version, sql) for every migration file, by the number in its name."""
    found: dict[int, str] = {}
    for item in resources.files("checkin_appliance.store.migrations").iterdir():
        match = _NAME.match(item.name)
        if match:
            version = int(match.group(1))
            if version in found:
                raise RuntimeError(f"two migrations claim version {version}")
            found[version] = item.read_text(encoding="utf-8")
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration numbers must run 1..n without gaps, found {versions}")
    return [(v, found[v]) for v in versions]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date, one transaction per migration; returns the version."""
    current = schema_version(conn)
    migrations = available()
    if current > len(migrations):
        raise NewerSchema(
            f"the database is at schema version {current}, newer than this program "
            f"({len(migrations)}); upgrade checkin-appliance"
        )
    if current == len(migrations):
        return current
    if current > 0:
        pre_upgrade_copy(conn, current)
    # Foreign keys off while migrating, as SQLite's way of rebuilding a table asks (a
    # migration may replace a table others point at); each one is checked before it commits.
    # The pragma is a no-op inside a transaction, so it is set around them.
    enforced = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for version, sql in migrations[current:]:
            # executescript commits first, so the transaction is spelled out inside the script.
            try:
                conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};")
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(
                        f"migration {version} leaves {len(broken)} broken reference(s)"
                    )
                conn.execute("COMMIT")
            except Exception:
                if conn.in_transaction:
                    conn.rollback()
                raise
            log.info("database schema migrated to version %d", version)
            current = version
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if enforced else 'OFF'}")
    return current


def pre_upgrade_copy(conn: sqlite3.Connection, version: int) -> Path | None:
    """A consistent copy of the database (VACUUM INTO, mode 0600) in pre-upgrade/ beside it,
    written before a migration changes anything, and only the newest few kept. Photos live
    in media/ go beside it later (photo_folder). Raises SchemaError when the copy cannot be written
    (a full disk): better a box that does not start than an upgrade with no way back."""
    cursor = conn.execute("PRAGMA database_list")
    main = dict(zip([column[0] for column in cursor.description], cursor.fetchone(), strict=True))
    cursor.close()  # VACUUM refuses to run beside an open statement
    if not main["file"]:
        return None  # an in-memory database: nothing to go back to
    db_file = Path(main["file"])
    folder = db_file.parent / PRE_UPGRADE_DIR
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = folder / f"checkin-schema-{version}-{stamp}.db"
    temp = folder / f".{target.name}.tmp"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        # Within one second, numbered after the last: the order is the order they were made.
        same_second = [n for made, n, _ in _copies(folder) if made.partition("-")[0] == stamp]
        if same_second:
            target = folder / f"checkin-schema-{version}-{stamp}-{max(same_second) + 1}.db"
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()  # left by a copy a power cut interrupted
        # Made empty first with our mode: VACUUM INTO writes into an empty file as it is.
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        conn.execute("VACUUM INTO ?", (str(temp),))
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SchemaError(
            f"cannot write the pre-upgrade copy of {db_file} in {folder} ({reason}); the "
            f"database was not changed and is still at schema version {version}: free some "
            "space on that disk and start again"
        ) from exc
    log.info("before upgrading schema %d, the database was copied to %s", version, target)
    _keep_newest(folder)
    return target


def photo_folder(db_file: Path) -> Path:
    """Where the photo files of an older box go once the database holds them: photos-<stamp>
    beside the newest pre-upgrade copy (the one its upgrade made), pruned with that copy;
    a folder of this run's time if there is no copy. Not created here."""
    folder = db_file.parent / PRE_UPGRADE_DIR
    copies = _copies(folder) if folder.is_dir() else []
    stamp = copies[-1][0] if copies else datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return folder / _PHOTO_FOLDER.format(stamp=stamp)


def _copies(folder: Path) -> list[tuple[str, int, Path]]:
    """(stamp as in the name, number within that second, path) of each copy, oldest first."""
    found = []
    for path in folder.iterdir():
        match = _PRE_UPGRADE_NAME.match(path.name)
        if match:
            number = int(match.group(2)) if match.group(2) else 1
            found.append((match.group(1), number, path))
    return sorted(found, key=lambda copy: (copy[0].partition("-")[0], copy[1]))


def _keep_newest(folder: Path) -> None:
    """The newest PRE_UPGRADE_KEEP copies, and the photo folders beside them."""
    copies = _copies(folder)
    for _, _, path in copies[:-PRE_UPGRADE_KEEP]:
        with contextlib.suppress(OSError):
            path.unlink()
    kept = {_PHOTO_FOLDER.format(stamp=stamp) for stamp, _, _ in copies[-PRE_UPGRADE_KEEP:]}
    for path in folder.glob(_PHOTO_FOLDER.format(stamp="*")):
        if path.name not in kept and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
