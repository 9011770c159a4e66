"""Reading the original CheckIn's SQLite database (../shared/contract/original-database.md).

Opened read-only through a `file:…?mode=ro` URI: nothing here can change it. Columns are read
by name, and a column an older version of the original did not have reads as NULL.
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkin_appliance.intake import ANSWER_KEYS

# The tables that make a database the original's.
REQUIRED_TABLES = ("management_accesstoken", "management_patient", "management_queueentry")

# The intake fields of management_patient beyond the name and the photo, in the order of
# the original's form (original-intake.md §5.1): the questions of intake.py's catalogue.
INTAKE_FIELDS = ANSWER_KEYS


class NotAnOriginalDatabase(Exception):
    """The file is not a SQLite database, or lacks the original's tables."""


@dataclass(frozen=True, slots=True)
class OriginalCredential:
    id: int
    token: Any  # text in every database the original wrote; read as stored
    password: Any
    role: Any
    is_active: bool
    created_at: Any


@dataclass(frozen=True, slots=True)
class OriginalQueueEntry:
    id: int
    status: Any
    check_in_time: Any
    called_at: Any
    check_out_time: Any


@dataclass(frozen=True, slots=True)
class OriginalPatient:
    id: int
    fname: Any
    image: Any
    created_at: Any
    answers: dict[str, Any] = field(default_factory=dict)  # INTAKE_FIELDS as stored
    entry: OriginalQueueEntry | None = None


@dataclass(frozen=True, slots=True)
class OriginalData:
    credentials: list[OriginalCredential]
    patients: list[OriginalPatient]
    orphan_entries: int  # queue entries whose patient row does not exist


@contextlib.contextmanager
def open_read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """The original's database, read-only; NotAnOriginalDatabase if it is not one."""
    if not path.is_file():
        raise NotAnOriginalDatabase(f"{path} is not a file")
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise NotAnOriginalDatabase(f"{path} cannot be opened: {exc}") from exc
    conn.row_factory = sqlite3.Row
    try:
        try:
            tables = {
                row["name"]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            raise NotAnOriginalDatabase(f"{path} is not a SQLite database ({exc})") from exc
        missing = [table for table in REQUIRED_TABLES if table not in tables]
        if missing:
            raise NotAnOriginalDatabase(
                f"{path} is not a CheckIn database: it has no {', '.join(missing)} table"
            )
        yield conn
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}


def _value(row: sqlite3.Row, columns: set[str], name: str) -> Any:
    return row[name] if name in columns else None


def read(conn: sqlite3.Connection) -> OriginalData:
    """Every credential, patient and queue entry, in id order."""
    cred_columns = _columns(conn, "management_accesstoken")
    credentials = [
        OriginalCredential(
            id=row["id"],
            token=row["token"],
            password=_value(row, cred_columns, "password"),
            role=_value(row, cred_columns, "role"),
            is_active=bool(_value(row, cred_columns, "is_active")),
            created_at=_value(row, cred_columns, "created_at"),
        )
        for row in conn.execute("SELECT * FROM management_accesstoken ORDER BY id")
    ]
    entry_columns = _columns(conn, "management_queueentry")
    entries: dict[int, OriginalQueueEntry] = {}
    for row in conn.execute("SELECT * FROM management_queueentry ORDER BY id"):
        entries.setdefault(
            row["patient_id"],
            OriginalQueueEntry(
                id=row["id"],
                status=row["status"],
                check_in_time=_value(row, entry_columns, "check_in_time"),
                called_at=_value(row, entry_columns, "called_at"),
                check_out_time=_value(row, entry_columns, "check_out_time"),
            ),
        )
    patient_columns = _columns(conn, "management_patient")
    patients = []
    for row in conn.execute("SELECT * FROM management_patient ORDER BY id"):
        patients.append(
            OriginalPatient(
                id=row["id"],
                fname=_value(row, patient_columns, "fname"),
                image=_value(row, patient_columns, "image"),
                created_at=_value(row, patient_columns, "created_at"),
                answers={name: _value(row, patient_columns, name) for name in INTAKE_FIELDS},
                entry=entries.pop(row["id"], None),
            )
        )
    return OriginalData(credentials, patients, orphan_entries=len(entries))


def read_file(path: Path) -> OriginalData:
    """open_read_only and read, in one go (for a worker thread)."""
    with open_read_only(path) as conn:
        return read(conn)
