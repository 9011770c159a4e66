"""Numbered .sql migrations, shipped as package resources, applied by PRAGMA user_version."""

from __future__ import annotations

import logging
import re
import sqlite3
from importlib import resources

from checkin_appliance.store.inspect import schema_version

log = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class NewerSchema(RuntimeError):
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
