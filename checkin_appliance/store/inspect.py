"""Synchronous looks at a database file: integrity, counts, photo names, schema version.

Used where no server's store is open on the file (backup copies, restore's staging) and by
`Store.open` before it migrates. The rows here never leave as names: counts and photo
names only.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Readers wait this long for a lock (WAL recovery after a crash, a restore in progress).
BUSY_TIMEOUT = 5.0


class NotOurDatabase(Exception):
    """The file is an SQLite database without our tables."""


@dataclass(frozen=True)
class Counts:
    """What a database holds, in numbers only (never a name)."""

    patients: int
    waiting: int
    credentials: int
    photos: int

    def describe(self) -> str:
        return (
            f"{_count(self.patients, 'patient')} ({self.waiting} waiting), "
            f"{_count(self.photos, 'photo')}, {_count(self.credentials, 'credential')}"
        )


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection whose rows are read by column name."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
    db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()


def integrity_problem(db: sqlite3.Connection, *, quick: bool = False) -> str | None:
    """None when the file is sound, else what SQLite found (its first lines).

    `quick` runs quick_check: no index cross-checks, much faster on a large file."""
    check = "quick_check" if quick else "integrity_check"
    rows = [str(row[check]) for row in _rows(db, f"PRAGMA {check}(20)")]
    return None if rows == ["ok"] else "; ".join(rows[:5]) or f"{check} returned nothing"


def schema_version(db: sqlite3.Connection) -> int:
    return int(_rows(db, "PRAGMA user_version")[0]["user_version"])


def schema_problem(db: sqlite3.Connection, migrations: list[tuple[int, str]]) -> str | None:
    """None when the database's tables, indexes, triggers and views are exactly those its
    schema version's migrations create (same names, same SQL), else the first difference.

    A backup's database is code as well as data: a trigger added to it runs with the
    server's rights (it could give new admins a known password, or copy patients' names into
    a page anyone can read). The SQL text is compared as SQLite stores it, so an object
    changed in place (a column's DEFAULT, a view's body) is found as surely as a new one.
    ANALYZE's statistics tables (sqlite_stat*) only steer the planner and are not compared,
    nor are the two tables Litestream adds to a database it replicates, exactly as it makes
    them (LITESTREAM): they hold no code, and a backup or a standby's copy of a box with a
    replica has them.
    """
    version = schema_version(db)
    expected = sqlite3.connect(":memory:")
    try:
        for _, sql in migrations[:version]:
            expected.executescript(sql)
        want = _schema_objects(expected)
    finally:
        expected.close()
    have = {
        key: value for key, value in _schema_objects(db).items() if LITESTREAM.get(key) != value
    }
    for key in sorted(have.keys() | want.keys()):
        kind, name = key
        if key not in want:
            return f"an extra {kind} {name!r}"
        if key not in have:
            return f"the {kind} {name!r} is missing"
        if have[key] != want[key]:
            return f"the {kind} {name!r} is not as schema {version} defines it"
    return None


# What Litestream (0.5) creates in a database it replicates: {(type, name): (table, sql)}.
LITESTREAM = {
    ("table", "_litestream_seq"): (
        "_litestream_seq",
        "CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)",
    ),
    ("table", "_litestream_lock"): (
        "_litestream_lock",
        "CREATE TABLE _litestream_lock (id INTEGER)",
    ),
}


def _schema_objects(db: sqlite3.Connection) -> dict[tuple[str, str], tuple[str, str | None]]:
    """{(type, name): (table, sql)} of every object in sqlite_master."""
    rows = _rows(
        db,
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'",
    )
    return {(row["type"], row["name"]): (row["tbl_name"], row["sql"]) for row in rows}


def counts(db: sqlite3.Connection) -> Counts:
    try:
        (row,) = _rows(
            db,
            "SELECT (SELECT count(*) FROM patients) AS patients, "
            "(SELECT count(*) FROM queue_entries WHERE status = 'waiting') AS waiting, "
            "(SELECT count(*) FROM credentials) AS credentials, "
            "(SELECT count(DISTINCT image) FROM patients WHERE image IS NOT NULL) AS photos",
        )
    except sqlite3.OperationalError as exc:  # "no such table": not our database
        raise NotOurDatabase(str(exc)) from exc
    return Counts(row["patients"], row["waiting"], row["credentials"], row["photos"])


def photo_names(db: sqlite3.Connection) -> set[str]:
    """The stored photo names the patients' rows point at."""
    rows = _rows(db, "SELECT DISTINCT image FROM patients WHERE image IS NOT NULL")
    return {row["image"] for row in rows}


def held_photo_names(db: sqlite3.Connection) -> set[str]:
    """The photos the database itself holds (schema 17 on); none in an older one, whose
    photos were files in media/."""
    if not _rows(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'photos'"):
        return set()
    return {row["name"] for row in _rows(db, "SELECT name FROM photos")}


def copy_database(source: Path, copy: Path, *, read_only: bool = False) -> None:
    """A consistent copy of a live database: one read transaction, one backup step.

    In WAL mode a reader never blocks the server's writer, so copying in one step does not
    hold the server up. Copying in several steps would not help it, and each commit by the
    server between two steps would make SQLite restart the copy from the first page.

    `read_only`: the rescue case, a data directory SQLite cannot write in (a read-only
    mount, a dying disk), with no server running on it.
    """
    db = _connect_source(source, read_only)
    try:
        target = sqlite3.connect(copy, isolation_level=None)
        try:
            db.backup(target)
            # The copy stands alone: no -wal or -shm needed to read it from a USB stick.
            target.execute("PRAGMA journal_mode = DELETE")
        finally:
            target.close()
    finally:
        db.close()


def _connect_source(source: Path, read_only: bool) -> sqlite3.Connection:
    uri = source.resolve().as_uri()
    if not read_only:
        return sqlite3.connect(f"{uri}?mode=rw", uri=True, timeout=BUSY_TIMEOUT)
    wal = source.with_name(source.name + "-wal")
    shm = source.with_name(source.name + "-shm")
    if wal.exists() and wal.stat().st_size > 0:
        # Its commits are read through the -shm index, which needs both files as they are.
        if not shm.exists():
            raise sqlite3.OperationalError(
                f"{wal.name} holds commits not yet in {source.name}, and {shm.name} is missing: "
                "copy the whole data directory to a writable disk and back it up from there"
            )
        return sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
    # No WAL content: the file alone is the database. immutable needs no -shm and no locks,
    # which a read-only folder cannot give.
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=BUSY_TIMEOUT)


def locked_by_another(path: Path, timeout: float) -> bool:
    """True when another connection has the (WAL) database open, as far as SQLite shows.

    Taking the file exclusively (locking_mode EXCLUSIVE, then a write transaction) fails
    while any other connection has a WAL database open. If it succeeds with a WAL left by a
    crash, closing folds that WAL into the file: its content is kept, as at any start. A
    file SQLite cannot open or read counts as free (a damaged file is being replaced).
    """
    try:
        db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout, isolation_level=None
        )
    except sqlite3.Error:
        return False
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute("BEGIN EXCLUSIVE")
        db.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc) or "busy" in str(exc)
    except sqlite3.DatabaseError:
        pass
    finally:
        db.close()
    return False


def _rows(db: sqlite3.Connection, sql: str) -> list[sqlite3.Row]:
    cursor = db.cursor()  # the connection's own row_factory is left as it is
    cursor.row_factory = sqlite3.Row
    return cursor.execute(sql).fetchall()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
