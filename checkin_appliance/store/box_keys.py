"""The store's side of the box's keys (box_keys.py): the one row that carries them."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from checkin_appliance.store import inspect
from checkin_appliance.store.database import Store
from checkin_appliance.store.writer import Transaction


@dataclass(frozen=True, slots=True)
class StoredKeys:
    hostname: str
    sealed: bytes  # an age file (passphrase) holding box_keys.gather()'s plain text
    digest: str  # SHA-256 of that plain text and the passphrase, hex
    sealed_at: str


_COLUMNS = "hostname, sealed, digest, sealed_at"


def _stored(row: sqlite3.Row | None) -> StoredKeys | None:
    if row is None:
        return None
    return StoredKeys(row["hostname"], bytes(row["sealed"]), row["digest"], row["sealed_at"])


async def stored_keys(store: Store) -> StoredKeys | None:
    rows = await store.reader.execute_fetchall(f"SELECT {_COLUMNS} FROM box_keys WHERE id = 1")
    return _stored(next(iter(rows), None))


async def save_keys(store: Store, hostname: str, sealed: bytes, digest: str) -> str:
    """Replaces the row; returns its sealed_at."""

    def job(tx: Transaction) -> str:
        tx.run(
            "INSERT INTO box_keys (id, hostname, sealed, digest, sealed_at) "
            "VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname,"
            " sealed = excluded.sealed, digest = excluded.digest, sealed_at = excluded.sealed_at",
            (hostname, sealed, digest, tx.now),
        )
        return tx.now

    return await store.write(job)


async def save_hostname(store: Store, hostname: str) -> None:
    """The box was renamed; the keys are as they were."""
    await store.write(
        lambda tx: tx.run("UPDATE box_keys SET hostname = ? WHERE id = 1", (hostname,))
    )


def read_keys(db_path: Path) -> StoredKeys | None:
    """The row of a database no store has open (promote reads the standby's copy)."""
    with inspect.read_only(db_path) as db:
        try:
            row = db.execute(f"SELECT {_COLUMNS} FROM box_keys WHERE id = 1").fetchone()
        except sqlite3.OperationalError:  # a schema from before box_keys
            return None
    return _stored(row)
