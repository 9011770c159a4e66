"""The store: one writer connection (BEGIN IMMEDIATE, serialised), one reader connection.

An event row gets its `seq` in the same transaction as the change it records; `on_event`
is called for each event only after that transaction has committed, in `seq` order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from checkin_appliance.domain import (
    EVENT_STATUS,
    PATIENT_ADDED,
    PATIENT_COMPLETED,
    Credential,
    QueueEntry,
    QueueEvent,
    Role,
    Session,
    utc_now,
)
from checkin_appliance.store.schema import migrate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
# Below this size the full integrity_check at start takes well under a second on the box.
FULL_CHECK_MAX_BYTES = 50 * 1024 * 1024

_ENTRY_COLUMNS = (
    "e.id, e.patient_id, p.fname, p.image, e.status, e.check_in_time, e.called_at, e.room"
)
_ENTRY_FROM = "queue_entries e JOIN patients p ON p.id = e.patient_id"
_CREDENTIAL_COLUMNS = "c.id, c.token, c.role, c.label, c.room, c.active, c.created_at"


class StoreUnavailable(Exception):
    """The database cannot be written (disk full, read-only, locked for too long, …)."""


class StoreDamaged(Exception):
    """The database file is corrupt: the box runs in maintenance mode and refuses writes."""


def _is_corruption(exc: BaseException) -> bool:
    # sqlite3 raises the bare DatabaseError for SQLITE_CORRUPT and SQLITE_NOTADB; busy,
    # I/O and full-disk errors are OperationalError, a subclass.
    return type(exc) is sqlite3.DatabaseError


def _entry(row: Iterable[Any]) -> QueueEntry:
    return QueueEntry(*row)


def _credential(row: Any) -> Credential:
    id_, token, role, label, room, active, created_at = row
    return Credential(id_, token, Role(role), label, room, bool(active), created_at)


@dataclass
class _Tx:
    conn: aiosqlite.Connection
    events: list[QueueEvent] = field(default_factory=list)

    async def one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        async with self.conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def record(self, event: str, entry: QueueEntry) -> None:
        at = utc_now()
        row = await self.one(
            "INSERT INTO events (event, entry_id, at) VALUES (?, ?, ?) RETURNING seq",
            (event, entry.id, at),
        )
        self.events.append(QueueEvent(seq=row[0], event=event, at=at, entry=entry))


class Store:
    def __init__(self, path: Path, on_event: Callable[[QueueEvent], None] | None = None) -> None:
        self.path = path
        self.on_event = on_event
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        # Set at open when the integrity check fails (or later on a corruption error):
        # every write raises StoreDamaged, reads are attempted as they come.
        self.damaged = False

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Opens, checks and migrates; a corrupt file opens in maintenance mode, not a crash."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.damaged = False
        try:
            try:
                self._writer = await self._connect()
                await self._writer.execute("PRAGMA journal_mode = WAL")
                problem = await self._check_integrity()
                if problem is None:
                    await migrate(self._writer)
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise
                problem = str(exc)
            if problem is not None:
                self._enter_maintenance(problem)
                if self._writer is not None:
                    await self._writer.close()
                    self._writer = None
            self._reader = await self._connect(tolerant=self.damaged)
        except BaseException:
            await self.close()
            raise

    async def _check_integrity(self) -> str | None:
        """None when the file is sound, else what SQLite found (first lines)."""
        assert self._writer is not None
        size = self.path.stat().st_size if self.path.exists() else 0
        check = "integrity_check" if size < FULL_CHECK_MAX_BYTES else "quick_check"
        async with self._writer.execute(f"PRAGMA {check}(20)") as cur:
            rows = [str(row[0]) for row in await cur.fetchall()]
        return None if rows == ["ok"] else "; ".join(rows[:5]) or f"{check} returned nothing"

    def _enter_maintenance(self, problem: str) -> None:
        if self.damaged:
            return
        self.damaged = True
        log.error(
            "the database %s is damaged (%s); starting in maintenance mode: writes are "
            "refused. To restore: stop the service, put the latest backup of the data directory in "
            "its place (see the README), and start it again; keep the damaged file for "
            "support.",
            self.path,
            problem,
        )

    async def _connect(self, *, tolerant: bool = False) -> aiosqlite.Connection:
        """A configured connection; `tolerant` keeps it even if the file cannot be read."""
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            for pragma in (
                f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
                "PRAGMA synchronous = FULL",
                "PRAGMA foreign_keys = ON",
            ):
                try:
                    await conn.execute(pragma)
                except sqlite3.DatabaseError:
                    if not tolerant:
                        raise
        except BaseException:
            await conn.close()
            raise
        return conn

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    @property
    def reader(self) -> aiosqlite.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[_Tx]:
        if self.damaged:
            raise StoreDamaged("the database is damaged")
        assert self._writer is not None, "store is not open"
        async with self._write_lock:
            tx = _Tx(self._writer)
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc
            except sqlite3.DatabaseError as exc:
                raise self._damage(exc) from exc
            try:
                yield tx
                await self._writer.execute("COMMIT")
            except BaseException as exc:
                if self._writer.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self._writer.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreUnavailable(str(exc)) from exc
                if _is_corruption(exc):
                    raise self._damage(exc) from exc
                raise
            # Published while the lock is held, so listeners see events in seq order.
            if self.on_event is not None:
                for event in tx.events:
                    self.on_event(event)

    def _damage(self, exc: sqlite3.DatabaseError) -> StoreDamaged:
        self._enter_maintenance(str(exc))
        return StoreDamaged(str(exc))

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        try:
            return list(await self.reader.execute_fetchall(sql, tuple(params)))
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):
                raise self._damage(exc) from exc
            if self.damaged:
                # e.g. "no such table" on a file too broken to have been migrated.
                raise StoreDamaged(str(exc)) from exc
            raise

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    # --- health ----------------------------------------------------------------------

    async def write_probe(self) -> None:
        """A real committed write: proves the disk and the lock work."""
        async with self._write() as tx:
            await tx.conn.execute(
                "INSERT INTO health (id, at) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (utc_now(),),
            )

    async def data_version(self) -> int:
        """Changes when another connection (the CLI, our writer) commits."""
        row = await self._one("PRAGMA data_version")
        return int(row[0])

    # --- credentials -----------------------------------------------------------------

    async def create_credential(
        self,
        token_factory: Callable[[], str],
        role: Role,
        label: str,
        room: str | None,
        password_hash: str,
        *,
        only_if_no_admin: bool = False,
    ) -> Credential | None:
        """A new credential with a fresh unique token; None if `only_if_no_admin` and one exists."""
        async with self._write() as tx:
            if only_if_no_admin:
                row = await tx.one(
                    "SELECT count(*) FROM credentials WHERE role = 'admin' AND active = 1"
                )
                if row[0]:
                    return None
            for _ in range(20):
                token = token_factory()
                exists = await tx.one("SELECT 1 FROM credentials WHERE token = ?", (token,))
                if not exists:
                    break
            else:
                raise RuntimeError("could not find an unused credential token")
            row = await tx.one(
                "INSERT INTO credentials (token, role, label, room, password_hash, created_at) "
                f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {_CREDENTIAL_COLUMNS.replace('c.', '')}",
                (token, role.value, label, room, password_hash, utc_now()),
            )
            return _credential(row)

    async def has_admin(self) -> bool:
        row = await self._one("SELECT 1 FROM credentials WHERE role = 'admin' AND active = 1")
        return row is not None

    async def credential_for_login(self, token: str) -> tuple[Credential, str] | None:
        row = await self._one(
            f"SELECT {_CREDENTIAL_COLUMNS}, c.password_hash FROM credentials c WHERE c.token = ?",
            (token,),
        )
        return (_credential(row[:7]), row[7]) if row else None

    async def list_credentials(self) -> list[Credential]:
        rows = await self._all(f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials c ORDER BY c.id")
        return [_credential(row) for row in rows]

    async def deactivate_credential(self, token: str) -> Credential | None:
        """Deactivates and revokes every session; None when no such token exists."""
        async with self._write() as tx:
            now = utc_now()
            row = await tx.one(
                "UPDATE credentials SET active = 0, deactivated_at = coalesce(deactivated_at, ?) "
                "WHERE token = ? RETURNING id, token, role, label, room, active, created_at",
                (now, token),
            )
            if row is None:
                return None
            await tx.conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE credential_id = ? AND revoked_at IS NULL",
                (now, row[0]),
            )
            return _credential(row)

    # --- sessions --------------------------------------------------------------------

    async def create_session(
        self,
        credential_id: int,
        access_hash: str,
        access_expires: str,
        refresh_hash: str,
        refresh_expires: str,
    ) -> int:
        async with self._write() as tx:
            row = await tx.one(
                "INSERT INTO sessions (credential_id, access_hash, access_expires, refresh_hash,"
                " refresh_expires, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    credential_id,
                    access_hash,
                    access_expires,
                    refresh_hash,
                    refresh_expires,
                    utc_now(),
                ),
            )
            return int(row[0])

    async def session_by_access(self, access_hash: str, now: str) -> Session | None:
        row = await self._one(
            f"SELECT s.id, s.access_expires, {_CREDENTIAL_COLUMNS} FROM sessions s "
            "JOIN credentials c ON c.id = s.credential_id "
            "WHERE s.access_hash = ? AND s.revoked_at IS NULL AND s.access_expires > ? "
            "AND c.active = 1",
            (access_hash, now),
        )
        return Session(row[0], _credential(row[2:]), row[1]) if row else None

    async def extend_session(self, session_id: int, access_expires: str) -> None:
        if self.damaged:
            return  # sliding expiry is best effort; reads keep working in maintenance mode
        async with self._write() as tx:
            await tx.conn.execute(
                "UPDATE sessions SET access_expires = ? WHERE id = ? AND revoked_at IS NULL",
                (access_expires, session_id),
            )

    async def refresh_session(
        self, refresh_hash: str, new_access_hash: str, access_expires: str, now: str
    ) -> Session | None:
        async with self._write() as tx:
            row = await tx.one(
                "UPDATE sessions SET access_hash = ?, access_expires = ? "
                "WHERE refresh_hash = ? AND revoked_at IS NULL AND refresh_expires > ? "
                "AND credential_id IN (SELECT id FROM credentials WHERE active = 1) "
                "RETURNING id, credential_id",
                (new_access_hash, access_expires, refresh_hash, now),
            )
            if row is None:
                return None
            cred = await tx.one(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials c WHERE c.id = ?", (row[1],)
            )
            return Session(row[0], _credential(cred))

    async def revoke_session(self, session_id: int) -> None:
        async with self._write() as tx:
            await tx.conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (utc_now(), session_id),
            )

    async def live_sessions(self, session_ids: Iterable[int]) -> set[int]:
        """Which of these sessions are still valid (not revoked, credential active)."""
        ids = list(session_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = await self._all(
            f"SELECT s.id FROM sessions s JOIN credentials c ON c.id = s.credential_id "
            f"WHERE s.id IN ({marks}) AND s.revoked_at IS NULL AND c.active = 1",
            ids,
        )
        return {row[0] for row in rows}

    # --- the queue -------------------------------------------------------------------

    async def check_in(
        self,
        fname: str,
        image: str | None,
        by: int | None,
        idempotency_key: str | None = None,
    ) -> tuple[QueueEntry, int, bool]:
        """A new patient at the end of the queue: (entry, 1-based position, replayed).

        With an idempotency key the credential already used, nothing is written and the
        first check-in is returned with replayed=True (the caller discards its photo).
        """
        async with self._write() as tx:
            if idempotency_key is not None:
                row = await tx.one(
                    f"SELECT {_ENTRY_COLUMNS}, k.position FROM idempotency_keys k "
                    "JOIN queue_entries e ON e.id = k.entry_id "
                    "JOIN patients p ON p.id = e.patient_id "
                    "WHERE k.credential_id = ? AND k.key = ?",
                    (by, idempotency_key),
                )
                if row is not None:
                    first = _entry(row[:-1])
                    # The answer the kiosk missed: the patient as they were checked in.
                    as_checked_in = QueueEntry(*row[:4], "waiting", first.check_in_time)
                    return as_checked_in, int(row[-1]), True
            now = utc_now()
            (patient_id,) = await tx.one(
                "INSERT INTO patients (fname, image, created_at) VALUES (?, ?, ?) RETURNING id",
                (fname, image, now),
            )
            (entry_id,) = await tx.one(
                "INSERT INTO queue_entries (patient_id, status, check_in_time, checked_in_by) "
                "VALUES (?, 'waiting', ?, ?) RETURNING id",
                (patient_id, now, by),
            )
            (position,) = await tx.one(
                "SELECT count(*) FROM queue_entries WHERE status = 'waiting' AND id <= ?",
                (entry_id,),
            )
            if idempotency_key is not None:
                await tx.conn.execute(
                    "INSERT INTO idempotency_keys (credential_id, key, entry_id, position,"
                    " created_at) VALUES (?, ?, ?, ?, ?)",
                    (by, idempotency_key, entry_id, position, now),
                )
            entry = QueueEntry(entry_id, patient_id, fname, image, "waiting", now)
            await tx.record(PATIENT_ADDED, entry)
            return entry, int(position), False

    async def complete(
        self, patient_id: int | None, by: int | None, room: str | None = None
    ) -> QueueEntry | None:
        """Completes the given patient's waiting entry, or the longest-waiting one if None."""
        async with self._write() as tx:
            where = "e.status = 'waiting'"
            params: tuple[Any, ...] = ()
            if patient_id is not None:
                where += " AND e.patient_id = ?"
                params = (patient_id,)
            row = await tx.one(
                f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} WHERE {where} ORDER BY e.id LIMIT 1",
                params,
            )
            if row is None:
                return None
            now = utc_now()
            await tx.conn.execute(
                "UPDATE queue_entries SET status = 'completed', called_at = ?, completed_at = ?,"
                " called_by = ?, room = ? WHERE id = ?",
                (now, now, by, room, row[0]),
            )
            entry = QueueEntry(*row[:4], "completed", row[5], now, room)
            await tx.record(PATIENT_COMPLETED, entry)
            return entry

    async def snapshot(
        self, called_since: str | None = None, called_limit: int = 6
    ) -> tuple[int, list[QueueEntry], list[QueueEntry]]:
        """(last seq, the waiting queue, calls since `called_since` newest first).

        One statement, so all three agree: a call is either in the list or after the seq.
        """
        rows = await self._all(
            "SELECT m.seq, 'w', w.* FROM (SELECT coalesce(max(seq), 0) AS seq FROM events) m "
            f"LEFT JOIN (SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} "
            "WHERE e.status = 'waiting') w ON 1 "
            "UNION ALL "
            f"SELECT NULL, 'c', c.* FROM (SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} "
            "WHERE e.status = 'completed' AND e.completed_at >= ?1 "
            "ORDER BY e.completed_at DESC, e.id DESC LIMIT ?2) c",
            (called_since if called_since is not None else "9999", called_limit),
        )
        seq = next(int(row[0]) for row in rows if row[1] == "w")
        waiting = sorted(
            (_entry(row[2:]) for row in rows if row[1] == "w" and row[2] is not None),
            key=lambda entry: entry.id,
        )
        called = sorted(
            (_entry(row[2:]) for row in rows if row[1] == "c"),
            key=lambda entry: (entry.called_at or "", entry.id),
            reverse=True,
        )
        return seq, waiting, called

    async def waiting(self) -> list[QueueEntry]:
        return (await self.snapshot())[1]

    async def day_figures(self, start: str, end: str) -> tuple[int, int, int, list[float]]:
        """(checked in, called, waiting now, wait seconds of each call) between start and end."""
        row = await self._one(
            "SELECT (SELECT count(*) FROM queue_entries WHERE check_in_time >= ?1 "
            "AND check_in_time < ?2), (SELECT count(*) FROM queue_entries "
            "WHERE completed_at >= ?1 AND completed_at < ?2), "
            "(SELECT count(*) FROM queue_entries WHERE status = 'waiting')",
            (start, end),
        )
        waits = await self._all(
            "SELECT (julianday(completed_at) - julianday(check_in_time)) * 86400.0 "
            "FROM queue_entries WHERE completed_at >= ? AND completed_at < ?",
            (start, end),
        )
        return int(row[0]), int(row[1]), int(row[2]), [float(w[0]) for w in waits]

    async def prune_idempotency_keys(self, before: str) -> int:
        async with self._write() as tx:
            cur = await tx.conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?", (before,)
            )
            return cur.rowcount

    async def event_log_bounds(self) -> tuple[int, int]:
        """(oldest kept seq, last seq); (0, 0) when the log is empty."""
        row = await self._one("SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM events")
        return int(row[0]), int(row[1])

    async def events_after(self, seq: int, limit: int = 500) -> list[QueueEvent]:
        rows = await self._all(
            f"SELECT ev.seq, ev.event, ev.at, {_ENTRY_COLUMNS} FROM events ev "
            "JOIN queue_entries e ON e.id = ev.entry_id JOIN patients p ON p.id = e.patient_id "
            "WHERE ev.seq > ? ORDER BY ev.seq LIMIT ?",
            (seq, limit),
        )
        events = []
        for s, kind, at, entry_id, pid, fname, image, _status, checked_in, called, room in rows:
            # The entry as this event left it, not as it is now.
            if kind == PATIENT_ADDED:
                called = room = None
            entry = QueueEntry(
                entry_id, pid, fname, image, EVENT_STATUS[kind], checked_in, called, room
            )
            events.append(QueueEvent(seq=s, event=kind, at=at, entry=entry))
        return events

    async def prune_events(self, keep: int, before: str) -> int:
        """Drops events older than `before` that are not among the last `keep`."""
        async with self._write() as tx:
            cur = await tx.conn.execute(
                "DELETE FROM events WHERE at < ? AND seq <= (SELECT max(seq) FROM events) - ?",
                (before, keep),
            )
            return cur.rowcount

    async def photo_names(self) -> set[str]:
        rows = await self._all("SELECT image FROM patients WHERE image IS NOT NULL")
        return {row[0] for row in rows}

    # --- settings --------------------------------------------------------------------

    async def load_settings(self) -> dict[str, str]:
        """Raw JSON texts by key; the domain decides what they mean."""
        rows = await self._all("SELECT key, value FROM settings")
        return {key: value for key, value in rows}

    async def save_settings(self, values: dict[str, str]) -> None:
        async with self._write() as tx:
            await tx.conn.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )
