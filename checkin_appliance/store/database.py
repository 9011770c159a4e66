"""The store: lifecycle and one method per query; writes go through the writer thread.

Writes are small synchronous jobs run in one transaction by `writer.Writer` (group commit,
commit then publish). Reads go through aiosqlite's own thread. Every row is read by column
name (sqlite3.Row).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from checkin_appliance import audit
from checkin_appliance.audit import AuditEntry
from checkin_appliance.domain import (
    EVENT_STATUS,
    PATIENT_ADDED,
    PATIENT_COMPLETED,
    Actor,
    Credential,
    Patient,
    QueueEntry,
    QueueEvent,
    Role,
    Session,
    idempotency_key_reused,
)
from checkin_appliance.store import inspect
from checkin_appliance.store.errors import StoreDamaged, StoreUnavailable, is_corruption
from checkin_appliance.store.schema import migrate
from checkin_appliance.store.writer import AUDIT_COLUMNS, Transaction, Writer

__all__ = ["Store", "StoreDamaged", "StoreUnavailable", "Transaction", "read_audit_log"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
# Below this size the full integrity_check at start takes well under a second on the box.
FULL_CHECK_MAX_BYTES = 50 * 1024 * 1024
PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
)

_ENTRY_COLUMNS = (
    "e.id, e.patient_id, p.fname, p.image, e.status, e.check_in_time, e.called_at, e.room"
)
_ENTRY_FROM = "queue_entries e JOIN patients p ON p.id = e.patient_id"
_CREDENTIAL_COLUMNS = (
    "c.id, c.token, c.role, c.label, c.room, c.active, c.created_at, c.imported, "
    "c.password_reset_required"
)

T = TypeVar("T")


def _live_session(now: str) -> str:
    """SQL: session `s` is not revoked nor past its end, and its credential `c` is active."""
    return f"s.revoked_at IS NULL AND (s.ends_at IS NULL OR s.ends_at > {now}) AND c.active = 1"


def _end_sessions(tx: Transaction, credential_id: int, now: str) -> None:
    """Every live session of a credential ends now (deactivated, or a new password)."""
    tx.run(
        "UPDATE sessions SET revoked_at = ? WHERE credential_id = ? AND revoked_at IS NULL",
        (now, credential_id),
    )


def _entry(row: sqlite3.Row) -> QueueEntry:
    """A row with the _ENTRY_COLUMNS names."""
    return _record(QueueEntry, row)


def _credential(row: sqlite3.Row) -> Credential:
    """A row with the _CREDENTIAL_COLUMNS names."""
    return Credential(
        id=row["id"],
        token=row["token"],
        role=Role(row["role"]),
        label=row["label"],
        room=row["room"],
        active=bool(row["active"]),
        created_at=row["created_at"],
        imported=bool(row["imported"]),
        password_reset_required=bool(row["password_reset_required"]),
    )


def _audit_entry(row: sqlite3.Row) -> AuditEntry:
    """A row with the AUDIT_COLUMNS names."""
    return _record(AuditEntry, row)


R = TypeVar("R")


def _record(kind: type[R], row: sqlite3.Row) -> R:
    """A dataclass whose fields are the row's columns of the same names."""
    return kind(**{name: row[name] for name in _field_names(kind)})


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(kind))


class Store:
    """The clinic's database: lifecycle and one method per query; writes go to the Writer."""

    def __init__(self, path: Path, on_event: Callable[[QueueEvent], None] | None = None) -> None:
        """`on_event` is called on the loop for each event after its transaction committed,
        in seq order."""
        self.path = path
        self._writer = Writer(on_event, on_corruption=self._enter_maintenance)
        self._reader: aiosqlite.Connection | None = None
        # Set at open when the integrity check fails (or later on a corruption error):
        # every write raises StoreDamaged, reads are attempted as they come.
        self.damaged = False

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Opens, checks and migrates; a corrupt file opens in maintenance mode, not a crash."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.damaged = False
        self._writer.start()
        try:
            problem = await self._writer.call(self._open_writer)
            if problem is not None:
                self._enter_maintenance(problem)
            self._reader = await self._connect_reader(tolerant=self.damaged)
        except BaseException:
            await self.close()
            raise

    def _open_writer(self) -> str | None:
        """In the writer thread: connect, check, migrate; what is wrong, or None."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            try:
                for pragma in PRAGMAS:
                    conn.execute(pragma)
                conn.execute("PRAGMA journal_mode = WAL")
                size = self.path.stat().st_size if self.path.exists() else 0
                problem = inspect.integrity_problem(conn, quick=size >= FULL_CHECK_MAX_BYTES)
                if problem is None:
                    migrate(conn)
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise
                problem = str(exc)
        except BaseException:
            conn.close()
            raise
        if problem is None:
            self._writer.conn = conn
        else:
            conn.close()
        return problem

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

    async def _connect_reader(self, *, tolerant: bool) -> aiosqlite.Connection:
        """A configured connection; `tolerant` keeps it even if the file cannot be read."""
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            for pragma in PRAGMAS:
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
        """Waits for the writes already queued, then closes both connections."""
        if self._reader is not None:
            await self._reader.close()
        self._reader = None
        await self._writer.stop()

    async def run_in_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `fn(connection)` on the writer's connection, outside any transaction, after
        the writes already queued (checks and tests: what that connection sees and is)."""
        conn = self._writer.conn
        assert conn is not None, "store is not open"
        return await self._writer.call(lambda: fn(conn))

    @property
    def reader(self) -> aiosqlite.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    # --- writing and reading -------------------------------------------------------------

    async def write(self, job: Callable[[Transaction], T]) -> T:
        """Runs `job` in the next transaction; returns once that transaction has committed."""
        if self.damaged:
            raise StoreDamaged("the database is damaged")
        return await self._writer.write(job)

    def _damage(self, exc: sqlite3.DatabaseError) -> StoreDamaged:
        self._enter_maintenance(str(exc))
        return StoreDamaged(str(exc))

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self.reader.execute_fetchall(sql, tuple(params)))
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise self._damage(exc) from exc
            if self.damaged:
                # e.g. "no such table" on a file too broken to have been migrated.
                raise StoreDamaged(str(exc)) from exc
            raise

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    # --- health ----------------------------------------------------------------------

    async def write_probe(self) -> None:
        """A real committed write: proves the disk and the writer work."""

        def job(tx: Transaction) -> None:
            tx.run(
                "INSERT INTO health (id, at) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (tx.now,),
            )

        await self.write(job)

    async def outside_version(self) -> int:
        """Changes when another process (the CLI) commits. Read on the writer's own
        connection, so our writes leave it alone: under load it stays quiet."""

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA data_version").fetchone()["data_version"])

        try:
            return await self.run_in_writer(read)
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise self._damage(exc) from exc
            raise

    # --- credentials -----------------------------------------------------------------

    async def create_credential(
        self,
        token_factory: Callable[[], str],
        role: Role,
        label: str,
        room: str | None,
        password_hash: str,
        *,
        actor: Actor,
        only_if_no_admin: bool = False,
    ) -> Credential | None:
        """A new credential with a fresh unique token; None if `only_if_no_admin` and one exists.

        `only_if_no_admin` is the first-run setup, recorded as such in the audit trail.
        """

        def job(tx: Transaction) -> Credential | None:
            if only_if_no_admin and tx.one(
                "SELECT 1 FROM credentials WHERE role = 'admin' AND active = 1"
            ):
                return None
            for _ in range(20):
                token = token_factory()
                if not tx.one("SELECT 1 FROM credentials WHERE token = ?", (token,)):
                    break
            else:
                raise RuntimeError("could not find an unused credential token")
            row = tx.one(
                "INSERT INTO credentials (token, role, label, room, password_hash, created_at)"
                f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {_CREDENTIAL_COLUMNS.replace('c.', '')}",
                (token, role.value, label, room, password_hash, tx.now),
            )
            assert row is not None  # RETURNING of an INSERT that did not fail
            credential = _credential(row)
            tx.audit(
                audit.SETUP if only_if_no_admin else audit.CREDENTIAL_CREATED,
                actor,
                detail={"credential": credential.id, "role": role.value, "label": label},
            )
            return credential

        return await self.write(job)

    async def has_admin(self) -> bool:
        row = await self._one("SELECT 1 FROM credentials WHERE role = 'admin' AND active = 1")
        return row is not None

    async def credential_for_login(self, token: str) -> tuple[Credential, str] | None:
        row = await self._one(
            f"SELECT {_CREDENTIAL_COLUMNS}, c.password_hash FROM credentials c WHERE c.token = ?",
            (token,),
        )
        return (_credential(row), row["password_hash"]) if row else None

    async def list_credentials(self) -> list[Credential]:
        rows = await self._all(f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials c ORDER BY c.id")
        return [_credential(row) for row in rows]

    async def deactivate_credential(self, token: str, *, actor: Actor) -> Credential | None:
        """Deactivates and revokes every session; None when no such token exists."""

        def job(tx: Transaction) -> Credential | None:
            now = tx.now
            row = tx.one(
                "UPDATE credentials SET active = 0, deactivated_at = coalesce(deactivated_at, ?) "
                f"WHERE token = ? RETURNING {_CREDENTIAL_COLUMNS.replace('c.', '')}",
                (now, token),
            )
            if row is None:
                return None
            credential = _credential(row)
            _end_sessions(tx, credential.id, now)
            tx.audit(audit.CREDENTIAL_DEACTIVATED, actor, detail={"credential": credential.id})
            return credential

        return await self.write(job)

    async def set_password(
        self, token: str, password_hash: str, *, actor: Actor
    ) -> Credential | None:
        """A new password: the reset flag is cleared and every session of the credential
        ends; None when no such token exists."""

        def job(tx: Transaction) -> Credential | None:
            now = tx.now
            row = tx.one(
                "UPDATE credentials SET password_hash = ?, password_reset_required = 0 "
                f"WHERE token = ? RETURNING {_CREDENTIAL_COLUMNS.replace('c.', '')}",
                (password_hash, token),
            )
            if row is None:
                return None
            credential = _credential(row)
            _end_sessions(tx, credential.id, now)
            tx.audit(audit.PASSWORD_CHANGED, actor, detail={"credential": credential.id})
            return credential

        return await self.write(job)

    async def record_audit(
        self,
        action: str,
        actor: Actor,
        detail: dict[str, Any] | None = None,
        patient_id: int | None = None,
    ) -> None:
        """An audit row on its own (a failed login, a backup, a look at a patient)."""
        await self.write(lambda tx: tx.audit(action, actor, patient_id, detail))

    async def audit_entries(self, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        rows = await self._all(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [_audit_entry(row) for row in rows]

    async def audit_head(self) -> audit.Verdict:
        """The newest row: how many there are and the chain's head hash (not verified)."""
        row = await self._one("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        return audit.Verdict(row["id"], row["hash"]) if row else audit.Verdict(0, audit.GENESIS)

    # --- sessions --------------------------------------------------------------------

    async def create_session(
        self,
        credential_id: int,
        access: tuple[str, str],
        refresh: tuple[str, str],
        ends_at: str | None,
        *,
        actor: Actor,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """A signed-in session: (hash, expiry) of the access and refresh secrets."""

        def job(tx: Transaction) -> int:
            session_id = tx.insert(
                "INSERT INTO sessions (credential_id, access_hash, access_expires, refresh_hash,"
                " refresh_expires, ends_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (credential_id, *access, *refresh, ends_at, tx.now),
            )
            tx.audit(audit.LOGIN, actor, detail=detail)
            return session_id

        return await self.write(job)

    async def session_by_access(self, access_hash: str, now: str) -> Session | None:
        row = await self._one(
            f"SELECT s.id AS session_id, s.access_expires, {_CREDENTIAL_COLUMNS} FROM sessions s "
            "JOIN credentials c ON c.id = s.credential_id "
            f"WHERE s.access_hash = ?1 AND s.access_expires > ?2 AND {_live_session('?2')}",
            (access_hash, now),
        )
        if row is None:
            return None
        return Session(row["session_id"], _credential(row), row["access_expires"])

    async def extend_session(self, session_id: int, access_expires: str) -> None:
        """Slides the idle expiry, never past the session's absolute end."""
        if self.damaged:
            return  # sliding expiry is best effort; reads keep working in maintenance mode
        await self.write(
            lambda tx: tx.run(
                "UPDATE sessions SET access_expires = min(?1, coalesce(ends_at, ?1)) "
                "WHERE id = ?2 AND revoked_at IS NULL",
                (access_expires, session_id),
            )
        )

    async def refresh_session(
        self,
        refresh_hash: str,
        new_access: tuple[str, str],
        new_refresh_hash: str,
        now: str,
        address: str,
    ) -> tuple[Session | None, int | None]:
        """Rotates a live refresh token: the session gets the new access (hash, expiry) and
        refresh hash, and the old refresh hash is retired. Returns (the renewed session,
        None); for a retired refresh token, ends its session and returns (None, its id)
        (the token was copied: one of the two holders is a thief); else (None, None)."""
        access_hash, access_expires = new_access

        def job(tx: Transaction) -> tuple[Session | None, int | None]:
            row = tx.one(
                "UPDATE sessions SET access_hash = ?1, "
                "access_expires = min(?2, coalesce(ends_at, ?2)), refresh_hash = ?5 "
                "WHERE refresh_hash = ?3 AND revoked_at IS NULL AND refresh_expires > ?4 "
                "AND (ends_at IS NULL OR ends_at > ?4) "
                "AND credential_id IN (SELECT id FROM credentials WHERE active = 1) "
                "RETURNING id, credential_id, refresh_expires",
                (access_hash, access_expires, refresh_hash, now, new_refresh_hash),
            )
            if row is None:
                return None, self._end_for_reuse(tx, refresh_hash, now, address)
            tx.run("DELETE FROM retired_refresh_tokens WHERE expires <= ?", (now,))
            tx.run(
                "INSERT INTO retired_refresh_tokens (refresh_hash, session_id, expires) "
                "VALUES (?, ?, ?)",
                (refresh_hash, row["id"], row["refresh_expires"]),
            )
            cred = tx.one(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials c WHERE c.id = ?",
                (row["credential_id"],),
            )
            assert cred is not None  # the UPDATE found it active
            return Session(row["id"], _credential(cred)), None

        return await self.write(job)

    @staticmethod
    def _end_for_reuse(tx: Transaction, refresh_hash: str, now: str, address: str) -> int | None:
        """Revokes the session a retired refresh token belonged to; its id, if one was."""
        row = tx.one(
            "SELECT s.id, s.credential_id FROM retired_refresh_tokens r "
            "JOIN sessions s ON s.id = r.session_id WHERE r.refresh_hash = ? AND r.expires > ?",
            (refresh_hash, now),
        )
        if row is None:
            return None
        if tx.run(
            "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (tx.now, row["id"]),
        ):
            who = Actor(row["credential_id"], address)
            tx.audit(audit.LOGOUT, who, detail={"reason": "refresh token reused"})
        return int(row["id"])

    async def revoke_session(self, session_id: int, *, actor: Actor) -> None:
        """Ends a session (logout)."""

        def job(tx: Transaction) -> None:
            if tx.run(
                "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (tx.now, session_id),
            ):
                tx.audit(audit.LOGOUT, actor)

        await self.write(job)

    async def live_sessions(self, session_ids: Iterable[int], now: str) -> set[int]:
        """Which of these sessions may still be used: not revoked, not past their end,
        their credential active. (Idle expiry does not end an open live feed: it is use.)"""
        ids = list(session_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = await self._all(
            f"SELECT s.id FROM sessions s JOIN credentials c ON c.id = s.credential_id "
            f"WHERE s.id IN ({marks}) AND {_live_session('?')}",
            [*ids, now],
        )
        return {row["id"] for row in rows}

    # --- the queue -------------------------------------------------------------------

    async def check_in(
        self,
        fname: str,
        image: str | None,
        actor: Actor,
        idempotency_key: str | None = None,
        body_sha256: str | None = None,
        intake: str | None = None,
    ) -> tuple[QueueEntry, int, bool]:
        """A new patient at the end of the queue: (entry, 1-based position, replayed).
        `intake`: the intake form's other answers as JSON (patients.intake).

        With an idempotency key the credential already used, nothing is written and the
        first check-in is returned with replayed=True (the caller discards its photo); if
        that first check-in had another body (`body_sha256`), Conflict instead.
        """
        by = actor.credential_id

        def job(tx: Transaction) -> tuple[QueueEntry, int, bool]:
            if idempotency_key is not None:
                row = tx.one(
                    f"SELECT {_ENTRY_COLUMNS}, k.position, k.body_sha256 FROM idempotency_keys k "
                    "JOIN queue_entries e ON e.id = k.entry_id "
                    "JOIN patients p ON p.id = e.patient_id "
                    "WHERE k.credential_id = ? AND k.key = ?",
                    (by, idempotency_key),
                )
                if row is not None:
                    stored = row["body_sha256"]
                    if stored is not None and stored != body_sha256:
                        raise idempotency_key_reused()
                    # The answer the kiosk missed: the patient as they were checked in.
                    as_checked_in = dataclasses.replace(
                        _entry(row), status="waiting", called_at=None, room=None
                    )
                    return as_checked_in, int(row["position"]), True
            now = tx.now
            # The new entry's id is the highest: it queues last, behind everyone waiting.
            ahead = tx.one("SELECT count(*) AS n FROM queue_entries WHERE status = 'waiting'")
            assert ahead is not None
            patient_id = tx.insert(
                "INSERT INTO patients (fname, image, created_at, intake) VALUES (?, ?, ?, ?)",
                (fname, image, now, intake),
            )
            entry_id = tx.insert(
                "INSERT INTO queue_entries (patient_id, status, check_in_time, checked_in_by) "
                "VALUES (?, 'waiting', ?, ?)",
                (patient_id, now, by),
            )
            position = int(ahead["n"]) + 1
            if idempotency_key is not None:
                tx.run(
                    "INSERT INTO idempotency_keys (credential_id, key, entry_id, position,"
                    " created_at, body_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                    (by, idempotency_key, entry_id, position, now, body_sha256),
                )
            entry = QueueEntry(entry_id, patient_id, fname, image, "waiting", now)
            tx.record(PATIENT_ADDED, entry)
            tx.audit(audit.CHECK_IN, actor, patient_id)
            return entry, position, False

        return await self.write(job)

    async def complete(
        self, patient_id: int | None, actor: Actor, room: str | None = None
    ) -> QueueEntry | None:
        """Completes the given patient's waiting entry, or the longest-waiting one if None."""

        def job(tx: Transaction) -> QueueEntry | None:
            where = "e.status = 'waiting'"
            params: tuple[Any, ...] = ()
            if patient_id is not None:
                where += " AND e.patient_id = ?"
                params = (patient_id,)
            row = tx.one(
                f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} WHERE {where} ORDER BY e.id LIMIT 1",
                params,
            )
            if row is None:
                return None
            now = tx.now
            tx.run(
                "UPDATE queue_entries SET status = 'completed', called_at = ?, completed_at = ?,"
                " called_by = ?, room = ? WHERE id = ?",
                (now, now, actor.credential_id, room, row["id"]),
            )
            entry = dataclasses.replace(_entry(row), status="completed", called_at=now, room=room)
            tx.record(PATIENT_COMPLETED, entry)
            action = audit.CALL if patient_id is None else audit.COMPLETE
            tx.audit(action, actor, entry.patient_id, {"room": room} if room else None)
            return entry

        return await self.write(job)

    async def patient(self, patient_id: int) -> Patient | None:
        """A patient with their intake answers (JSON text) and their latest visit."""
        row = await self._one(
            "SELECT p.id, p.fname, p.image, p.created_at, p.intake, e.id AS entry_id,"
            " e.status, e.check_in_time, e.called_at, e.room "
            "FROM patients p LEFT JOIN queue_entries e ON e.patient_id = p.id "
            "WHERE p.id = ? ORDER BY e.id DESC LIMIT 1",
            (patient_id,),
        )
        return None if row is None else _record(Patient, row)

    async def snapshot(
        self, called_since: str | None = None, called_limit: int = 6
    ) -> tuple[int, list[QueueEntry], list[QueueEntry]]:
        """(last seq, the waiting queue, calls since `called_since` newest first).

        One statement, so all three agree: a call is either in the list or after the seq.
        """
        rows = await self._all(
            "SELECT m.seq AS seq, 'w' AS list, w.* "
            "FROM (SELECT coalesce(max(seq), 0) AS seq FROM events) m "
            f"LEFT JOIN (SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} "
            "WHERE e.status = 'waiting') w ON 1 "
            "UNION ALL "
            f"SELECT NULL, 'c', c.* FROM (SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} "
            "WHERE e.status = 'completed' AND e.completed_at >= ?1 "
            "ORDER BY e.completed_at DESC, e.id DESC LIMIT ?2) c",
            (called_since if called_since is not None else "9999", called_limit),
        )
        seq = next(int(row["seq"]) for row in rows if row["list"] == "w")
        waiting = sorted(
            (_entry(row) for row in rows if row["list"] == "w" and row["id"] is not None),
            key=lambda entry: entry.id,
        )
        called = sorted(
            (_entry(row) for row in rows if row["list"] == "c"),
            key=lambda entry: (entry.called_at or "", entry.id),
            reverse=True,
        )
        return seq, waiting, called

    async def waiting(self) -> list[QueueEntry]:
        """The waiting queue, in check-in order."""
        rows = await self._all(
            f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} WHERE e.status = 'waiting' ORDER BY e.id"
        )
        return [_entry(row) for row in rows]

    async def day_figures(self, start: str, end: str) -> tuple[int, int, int, list[float]]:
        """(checked in, called, waiting now, wait seconds of each call) between start and end."""
        row = await self._one(
            "SELECT (SELECT count(*) FROM queue_entries WHERE check_in_time >= ?1 "
            "AND check_in_time < ?2) AS checked_in, (SELECT count(*) FROM queue_entries "
            "WHERE completed_at >= ?1 AND completed_at < ?2) AS called, "
            "(SELECT count(*) FROM queue_entries WHERE status = 'waiting') AS waiting",
            (start, end),
        )
        assert row is not None  # counts always make one row
        waits = await self._all(
            "SELECT (julianday(completed_at) - julianday(check_in_time)) * 86400.0 AS seconds "
            "FROM queue_entries WHERE completed_at >= ? AND completed_at < ?",
            (start, end),
        )
        return (
            int(row["checked_in"]),
            int(row["called"]),
            int(row["waiting"]),
            [float(wait["seconds"]) for wait in waits],
        )

    async def prune_idempotency_keys(self, before: str) -> int:
        return await self.write(
            lambda tx: tx.run("DELETE FROM idempotency_keys WHERE created_at < ?", (before,))
        )

    async def event_log_bounds(self) -> tuple[int, int]:
        """(oldest kept seq, last seq); (0, 0) when the log is empty."""
        row = await self._one(
            "SELECT coalesce(min(seq), 0) AS oldest, coalesce(max(seq), 0) AS last FROM events"
        )
        assert row is not None  # aggregates always make one row
        return int(row["oldest"]), int(row["last"])

    async def events_after(self, seq: int, limit: int = 500) -> list[QueueEvent]:
        rows = await self._all(
            f"SELECT ev.seq, ev.event, ev.at, {_ENTRY_COLUMNS} FROM events ev "
            "JOIN queue_entries e ON e.id = ev.entry_id JOIN patients p ON p.id = e.patient_id "
            "WHERE ev.seq > ? ORDER BY ev.seq LIMIT ?",
            (seq, limit),
        )
        events = []
        for row in rows:
            kind = row["event"]
            added = kind == PATIENT_ADDED
            # The entry as this event left it, not as it is now.
            entry = dataclasses.replace(
                _entry(row),
                status=EVENT_STATUS[kind],
                called_at=None if added else row["called_at"],
                room=None if added else row["room"],
            )
            events.append(QueueEvent(seq=row["seq"], event=kind, at=row["at"], entry=entry))
        return events

    async def prune_events(self, keep: int, before: str) -> int:
        """Drops events older than `before` that are not among the last `keep`."""
        return await self.write(
            lambda tx: tx.run(
                "DELETE FROM events WHERE at < ? AND seq <= (SELECT max(seq) FROM events) - ?",
                (before, keep),
            )
        )

    async def photo_names(self) -> set[str]:
        rows = await self._all("SELECT image FROM patients WHERE image IS NOT NULL")
        return {row["image"] for row in rows}

    # --- settings --------------------------------------------------------------------

    async def load_settings(self) -> dict[str, str]:
        """Raw JSON texts by key; the domain decides what they mean."""
        rows = await self._all("SELECT key, value FROM settings")
        return {row["key"]: row["value"] for row in rows}

    async def save_settings(self, values: dict[str, str], *, actor: Actor) -> None:
        def job(tx: Transaction) -> None:
            tx.conn.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )
            changes = {key: json.loads(value) for key, value in values.items()}
            tx.audit(audit.SETTINGS_CHANGED, actor, detail=changes)

        await self.write(job)


def read_audit_log(path: Path) -> Iterator[AuditEntry]:
    """Every audit row in id order, read-only (for `audit verify`, even with the server up)."""
    with inspect.read_only(path) as conn:
        yield from (
            _audit_entry(row)
            for row in conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY id")
        )
