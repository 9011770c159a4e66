"""The store: one writer thread with group commit, one reader connection.

A write is a small synchronous function run by the one thread that owns the write
connection. Writes that arrive while a transaction is committing wait and then share the
next transaction and its fsync (group commit). The thread takes the next batch as soon as
one has committed, while the event loop hands out the results of the last. One write that
fails leaves the others alone: the batch is rolled back and run again with a savepoint per
write. An event row gets its `seq` in the same transaction as the change it records;
`on_event` is called on the event loop for each event only after that transaction has
committed, in `seq` order. Reads go through aiosqlite's own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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
PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
)

_ENTRY_COLUMNS = (
    "e.id, e.patient_id, p.fname, p.image, e.status, e.check_in_time, e.called_at, e.room"
)
_ENTRY_FROM = "queue_entries e JOIN patients p ON p.id = e.patient_id"
_CREDENTIAL_COLUMNS = "c.id, c.token, c.role, c.label, c.room, c.active, c.created_at"
_AUDIT_COLUMNS = "id, at, actor, action, patient_id, address, detail, prev_hash, hash"

T = TypeVar("T")
# The most writes one transaction takes: bounds how long a batch holds the write lock.
MAX_BATCH = 256


class StoreUnavailable(Exception):
    """The database cannot be written (disk full, read-only, locked for too long, …)."""


class StoreDamaged(Exception):
    """The database file is corrupt: the box runs in maintenance mode and refuses writes."""


def _is_corruption(exc: BaseException) -> bool:
    # sqlite3 raises the bare DatabaseError for SQLITE_CORRUPT and SQLITE_NOTADB; busy,
    # I/O and full-disk errors are OperationalError, a subclass.
    return type(exc) is sqlite3.DatabaseError


def _fails_the_batch(exc: BaseException) -> bool:
    """Errors of the database itself end the whole transaction; others only their write."""
    return isinstance(exc, sqlite3.OperationalError) or _is_corruption(exc)


def _live_session(now: str) -> str:
    """SQL: session `s` is not revoked nor past its end, and its credential `c` is active."""
    return f"s.revoked_at IS NULL AND (s.ends_at IS NULL OR s.ends_at > {now}) AND c.active = 1"


def _entry(row: Iterable[Any]) -> QueueEntry:
    return QueueEntry(*row)


def _credential(row: Any) -> Credential:
    id_, token, role, label, room, active, created_at = row
    return Credential(id_, token, Role(role), label, room, bool(active), created_at)


def _integrity_problem(conn: sqlite3.Connection, path: Path) -> str | None:
    """None when the file is sound, else what SQLite found (first lines)."""
    size = path.stat().st_size if path.exists() else 0
    check = "integrity_check" if size < FULL_CHECK_MAX_BYTES else "quick_check"
    rows = [str(row[0]) for row in conn.execute(f"PRAGMA {check}(20)").fetchall()]
    return None if rows == ["ok"] else "; ".join(rows[:5]) or f"{check} returned nothing"


@dataclass
class _Tx:
    """One write's view of the shared transaction (in the writer thread)."""

    conn: sqlite3.Connection
    # What the writer knows without asking, until another process writes (None: ask).
    audit_head: tuple[int, str] | None = None  # the audit chain's last (id, hash)
    waiting: int | None = None  # how many patients wait
    events: list[QueueEvent] = field(default_factory=list)
    now: str = field(default_factory=utc_now)  # one timestamp for everything this write does

    def one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        # fetchall: the statement finishes, so the savepoint can be released.
        rows = self.conn.execute(sql, tuple(params)).fetchall()
        return rows[0] if rows else None

    def run(self, sql: str, params: Iterable[Any] = ()) -> int:
        return self.conn.execute(sql, tuple(params)).rowcount

    def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        """The new row's id. One step, where RETURNING takes two: each step hands the GIL
        to the event loop's thread and waits to get it back."""
        row_id = self.conn.execute(sql, tuple(params)).lastrowid
        assert row_id is not None
        return row_id

    def waiting_count(self) -> int:
        if self.waiting is None:
            sql = "SELECT count(*) FROM queue_entries WHERE status = 'waiting'"
            (self.waiting,) = self.one(sql)
        return self.waiting

    def record(self, event: str, entry: QueueEntry) -> None:
        seq = self.insert(
            "INSERT INTO events (event, entry_id, at) VALUES (?, ?, ?)", (event, entry.id, self.now)
        )
        self.events.append(QueueEvent(seq=seq, event=event, at=self.now, entry=entry))

    def audit(
        self,
        action: str,
        actor: Actor,
        patient_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        if self.audit_head is None:
            last = self.one("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            self.audit_head = (last[0], last[1]) if last else (0, audit.GENESIS)
        last_id, prev_hash = self.audit_head
        entry = AuditEntry(
            last_id + 1,
            self.now,
            actor.credential_id,
            action,
            patient_id,
            actor.address,
            audit.encode_detail(detail),
        )
        self.run(
            f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.id,
                entry.at,
                entry.actor,
                entry.action,
                entry.patient_id,
                entry.address,
                entry.detail,
                prev_hash,
                digest := entry.digest(prev_hash),
            ),
        )
        self.audit_head = (entry.id, digest)


@dataclass
class _Outcome:
    value: Any = None
    error: Exception | None = None
    events: list[QueueEvent] = field(default_factory=list)


_Job = Callable[[_Tx], Any]
_Item = tuple[Callable[[Any], Any], asyncio.Future[Any], bool]


class Store:
    def __init__(self, path: Path, on_event: Callable[[QueueEvent], None] | None = None) -> None:
        self.path = path
        self.on_event = on_event
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # What the writer thread is to do, in order: (job, future, in_transaction), or None
        # to stop.
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._writer: sqlite3.Connection | None = None  # used only in the writer thread
        self._reader: aiosqlite.Connection | None = None
        # Writer thread only: the audit chain's head and the waiting count as our writes
        # left them, valid while no other connection (the CLI) has committed since (PRAGMA
        # data_version).
        self._audit_head: tuple[int, str] | None = None
        self._waiting: int | None = None
        self._seen_version = -1
        # Set at open when the integrity check fails (or later on a corruption error):
        # every write raises StoreDamaged, reads are attempted as they come.
        self.damaged = False

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Opens, checks and migrates; a corrupt file opens in maintenance mode, not a crash."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.damaged = False
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve_writes, name="store-writer", daemon=True)
        self._thread.start()
        try:
            problem = await self._in_writer_thread(self._open_writer)
            if problem is not None:
                self._enter_maintenance(problem)
            self._reader = await self._connect_reader(tolerant=self.damaged)
        except BaseException:
            await self.close()
            raise

    def _open_writer(self) -> str | None:
        """In the writer thread: connect, check, migrate; what is wrong, or None."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            try:
                for pragma in PRAGMAS:
                    conn.execute(pragma)
                conn.execute("PRAGMA journal_mode = WAL")
                problem = _integrity_problem(conn, self.path)
                if problem is None:
                    migrate(conn)
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise
                problem = str(exc)
        except BaseException:
            conn.close()
            raise
        if problem is None:
            self._writer = conn
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
        if self._thread is not None:
            if self._writer is not None:
                await self._in_writer_thread(self._writer.close)
            self._queue.put(None)
            self._thread.join()
        self._reader = self._writer = self._thread = None

    async def _in_writer_thread(self, fn: Callable[[], T]) -> T:
        """Runs `fn` in the writer thread, outside any transaction, after what is queued."""
        assert self._thread is not None, "store is not open"
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((lambda _conn: fn(), future, False))
        return await future

    async def run_in_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `fn(connection)` on the writer's connection, outside any transaction, after
        the writes already queued (checks and tests: what that connection sees and is)."""
        writer = self._writer
        assert writer is not None, "store is not open"
        return await self._in_writer_thread(lambda: fn(writer))

    @property
    def reader(self) -> aiosqlite.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    # --- writing: group commit ---------------------------------------------------------

    async def write(self, job: Callable[[_Tx], T]) -> T:
        """Runs `job` in the next transaction; returns once that transaction has committed."""
        if self.damaged:
            raise StoreDamaged("the database is damaged")
        assert self._writer is not None, "store is not open"
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((job, future, True))
        return await future

    def _serve_writes(self) -> None:
        """The writer thread: runs what is queued in order; writes queued together share
        one transaction."""
        items = self._queue
        stop = False
        while not stop:
            batch: list[_Item] = []
            item = items.get()
            while True:
                if item is None:
                    stop = True
                    break
                if not item[2]:  # a call outside the transaction: after the batch before it
                    self._commit_and_settle(batch)
                    batch = []
                    self._call(item)
                else:
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = items.get_nowait()
                except queue.Empty:
                    break
            self._commit_and_settle(batch)

    def _call(self, item: _Item) -> None:
        fn, future, _ = item
        try:
            value = fn(None)
        except BaseException as exc:  # handed to the caller; the thread goes on
            self._settle(future.set_exception, future, exc)
        else:
            self._settle(future.set_result, future, value)

    def _settle(self, how: Callable[..., None], future: asyncio.Future[Any], *args: Any) -> None:
        """In the writer thread: `how(*args)` on the loop, unless the caller gave up."""

        def settle() -> None:
            if not future.done():
                how(*args)

        self._call_soon(settle)

    def _call_soon(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(fn)

    def _commit_and_settle(self, batch: list[_Item]) -> None:
        # A write whose caller gave up before it started is not run.
        batch = [item for item in batch if not item[1].done()]
        if not batch:
            return
        try:
            outcomes, failure = self._commit([job for job, _, _ in batch])
        except BaseException as exc:  # a bug in a write: its batch fails, the thread goes on
            outcomes, failure = [], exc
        self._call_soon(lambda: self._deliver(batch, outcomes, failure))

    def _deliver(
        self, batch: list[_Item], outcomes: list[_Outcome], failure: BaseException | None
    ) -> None:
        """On the loop: the events of a committed batch, then each caller's answer."""
        if failure is not None:
            error = self._translate(failure)
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
            self._publish(outcome.events)
            if future.done():
                continue
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.value)

    def _commit(self, jobs: list[_Job]) -> tuple[list[_Outcome], BaseException | None]:
        """In the writer thread: all `jobs` in one transaction.

        Without savepoints first; if one of several jobs fails, everything is rolled back and
        run again with a savepoint per job, so that job fails alone."""
        if len(jobs) > 1:
            outcomes, failure = self._transaction(jobs, savepoints=False)
            if failure is not None or all(outcome.error is None for outcome in outcomes):
                return outcomes, failure
        return self._transaction(jobs, savepoints=len(jobs) > 1)

    def _transaction(
        self, jobs: list[_Job], *, savepoints: bool
    ) -> tuple[list[_Outcome], BaseException | None]:
        conn = self._writer
        assert conn is not None
        outcomes: list[_Outcome] = []
        head, waiting = self._audit_head, self._waiting
        try:
            conn.execute("BEGIN IMMEDIATE")
            (version,) = conn.execute("PRAGMA data_version").fetchone()
            if version != self._seen_version:  # someone else wrote: look them up again
                self._seen_version, head, waiting = version, None, None
            for job in jobs:
                if savepoints:
                    conn.execute("SAVEPOINT job")
                tx = _Tx(conn, head, waiting)
                try:
                    value = job(tx)
                except Exception as exc:
                    if _fails_the_batch(exc):
                        raise
                    outcomes.append(_Outcome(error=exc))  # its audit row goes with it
                    if not savepoints:  # the caller runs the batch again, with savepoints
                        conn.execute("ROLLBACK")
                        return outcomes, None
                    conn.execute("ROLLBACK TO job")
                else:
                    outcomes.append(_Outcome(value, events=tx.events))
                    head, waiting = tx.audit_head, tx.waiting
                if savepoints:
                    conn.execute("RELEASE job")
            if conn.in_transaction:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._audit_head = self._waiting = None
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [], exc
        self._audit_head, self._waiting = head, waiting
        return outcomes, None

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, sqlite3.OperationalError):
            return StoreUnavailable(str(exc))
        if isinstance(exc, sqlite3.DatabaseError) and _is_corruption(exc):
            return self._damage(exc)
        return exc

    def _publish(self, events: list[QueueEvent]) -> None:
        if self.on_event is None:
            return
        for event in events:
            try:
                self.on_event(event)
            except Exception:
                log.exception("publishing event %d failed", event.seq)

    # --- reading ---------------------------------------------------------------------

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
        """A real committed write: proves the disk and the writer work."""

        def job(tx: _Tx) -> None:
            tx.run(
                "INSERT INTO health (id, at) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (tx.now,),
            )

        await self.write(job)

    async def outside_version(self) -> int:
        """Changes when another process (the CLI) commits. Read on the writer's own
        connection, so our writes leave it alone: under load it stays quiet."""
        writer = self._writer
        assert writer is not None, "store is not open"

        def read() -> int:
            return int(writer.execute("PRAGMA data_version").fetchone()[0])

        try:
            return await self._in_writer_thread(read)
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):
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

        def job(tx: _Tx) -> Credential | None:
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
            credential = _credential(
                tx.one(
                    "INSERT INTO credentials (token, role, label, room, password_hash, created_at)"
                    f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {_CREDENTIAL_COLUMNS.replace('c.', '')}",
                    (token, role.value, label, room, password_hash, tx.now),
                )
            )
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
        return (_credential(row[:7]), row[7]) if row else None

    async def list_credentials(self) -> list[Credential]:
        rows = await self._all(f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials c ORDER BY c.id")
        return [_credential(row) for row in rows]

    async def deactivate_credential(self, token: str, *, actor: Actor) -> Credential | None:
        """Deactivates and revokes every session; None when no such token exists."""

        def job(tx: _Tx) -> Credential | None:
            now = tx.now
            row = tx.one(
                "UPDATE credentials SET active = 0, deactivated_at = coalesce(deactivated_at, ?) "
                "WHERE token = ? RETURNING id, token, role, label, room, active, created_at",
                (now, token),
            )
            if row is None:
                return None
            tx.run(
                "UPDATE sessions SET revoked_at = ? WHERE credential_id = ? AND revoked_at IS NULL",
                (now, row[0]),
            )
            tx.audit(audit.CREDENTIAL_DEACTIVATED, actor, detail={"credential": row[0]})
            return _credential(row)

        return await self.write(job)

    async def record_audit(
        self, action: str, actor: Actor, detail: dict[str, Any] | None = None
    ) -> None:
        """An audit row on its own (a failed login, a backup)."""
        await self.write(lambda tx: tx.audit(action, actor, detail=detail))

    async def audit_entries(self, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        rows = await self._all(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [AuditEntry(*row) for row in rows]

    async def audit_head(self) -> audit.Verdict:
        """The newest row: how many there are and the chain's head hash (not verified)."""
        row = await self._one("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        return audit.Verdict(row[0], row[1]) if row else audit.Verdict(0, audit.GENESIS)

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

        def job(tx: _Tx) -> int:
            (session_id,) = tx.one(
                "INSERT INTO sessions (credential_id, access_hash, access_expires, refresh_hash,"
                " refresh_expires, ends_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (credential_id, *access, *refresh, ends_at, tx.now),
            )
            tx.audit(audit.LOGIN, actor, detail=detail)
            return int(session_id)

        return await self.write(job)

    async def session_by_access(self, access_hash: str, now: str) -> Session | None:
        row = await self._one(
            f"SELECT s.id, s.access_expires, {_CREDENTIAL_COLUMNS} FROM sessions s "
            "JOIN credentials c ON c.id = s.credential_id "
            f"WHERE s.access_hash = ?1 AND s.access_expires > ?2 AND {_live_session('?2')}",
            (access_hash, now),
        )
        return Session(row[0], _credential(row[2:]), row[1]) if row else None

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
        self, refresh_hash: str, new_access_hash: str, access_expires: str, now: str
    ) -> Session | None:
        def job(tx: _Tx) -> Session | None:
            row = tx.one(
                "UPDATE sessions SET access_hash = ?1, "
                "access_expires = min(?2, coalesce(ends_at, ?2)) "
                "WHERE refresh_hash = ?3 AND revoked_at IS NULL AND refresh_expires > ?4 "
                "AND (ends_at IS NULL OR ends_at > ?4) "
                "AND credential_id IN (SELECT id FROM credentials WHERE active = 1) "
                "RETURNING id, credential_id",
                (new_access_hash, access_expires, refresh_hash, now),
            )
            if row is None:
                return None
            cred = tx.one(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials c WHERE c.id = ?", (row[1],)
            )
            return Session(row[0], _credential(cred))

        return await self.write(job)

    async def revoke_session(self, session_id: int, *, actor: Actor) -> None:
        """Ends a session (logout)."""

        def job(tx: _Tx) -> None:
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
        return {row[0] for row in rows}

    # --- the queue -------------------------------------------------------------------

    async def check_in(
        self,
        fname: str,
        image: str | None,
        actor: Actor,
        idempotency_key: str | None = None,
    ) -> tuple[QueueEntry, int, bool]:
        """A new patient at the end of the queue: (entry, 1-based position, replayed).

        With an idempotency key the credential already used, nothing is written and the
        first check-in is returned with replayed=True (the caller discards its photo).
        """
        by = actor.credential_id

        def job(tx: _Tx) -> tuple[QueueEntry, int, bool]:
            if idempotency_key is not None:
                row = tx.one(
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
            now = tx.now
            ahead = tx.waiting_count()  # the new entry's id is the highest: it queues last
            patient_id = tx.insert(
                "INSERT INTO patients (fname, image, created_at) VALUES (?, ?, ?)",
                (fname, image, now),
            )
            entry_id = tx.insert(
                "INSERT INTO queue_entries (patient_id, status, check_in_time, checked_in_by) "
                "VALUES (?, 'waiting', ?, ?)",
                (patient_id, now, by),
            )
            position = tx.waiting = ahead + 1
            if idempotency_key is not None:
                tx.run(
                    "INSERT INTO idempotency_keys (credential_id, key, entry_id, position,"
                    " created_at) VALUES (?, ?, ?, ?, ?)",
                    (by, idempotency_key, entry_id, position, now),
                )
            entry = QueueEntry(entry_id, patient_id, fname, image, "waiting", now)
            tx.record(PATIENT_ADDED, entry)
            tx.audit(audit.CHECK_IN, actor, patient_id)
            return entry, int(position), False

        return await self.write(job)

    async def complete(
        self, patient_id: int | None, actor: Actor, room: str | None = None
    ) -> QueueEntry | None:
        """Completes the given patient's waiting entry, or the longest-waiting one if None."""

        def job(tx: _Tx) -> QueueEntry | None:
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
                (now, now, actor.credential_id, room, row[0]),
            )
            if tx.waiting is not None:
                tx.waiting -= 1
            entry = QueueEntry(*row[:4], "completed", row[5], now, room)
            tx.record(PATIENT_COMPLETED, entry)
            action = audit.CALL if patient_id is None else audit.COMPLETE
            tx.audit(action, actor, entry.patient_id, {"room": room} if room else None)
            return entry

        return await self.write(job)

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
        return await self.write(
            lambda tx: tx.run("DELETE FROM idempotency_keys WHERE created_at < ?", (before,))
        )

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
        return await self.write(
            lambda tx: tx.run(
                "DELETE FROM events WHERE at < ? AND seq <= (SELECT max(seq) FROM events) - ?",
                (before, keep),
            )
        )

    async def photo_names(self) -> set[str]:
        rows = await self._all("SELECT image FROM patients WHERE image IS NOT NULL")
        return {row[0] for row in rows}

    # --- settings --------------------------------------------------------------------

    async def load_settings(self) -> dict[str, str]:
        """Raw JSON texts by key; the domain decides what they mean."""
        rows = await self._all("SELECT key, value FROM settings")
        return {key: value for key, value in rows}

    async def save_settings(self, values: dict[str, str], *, actor: Actor) -> None:
        def job(tx: _Tx) -> None:
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
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        yield from (
            AuditEntry(*row)
            for row in conn.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY id")
        )
    finally:
        conn.close()
