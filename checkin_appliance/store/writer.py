"""The store's writer: one thread, one connection, group commit, commit then publish.

A write is a small synchronous function run by the one thread that owns the write
connection. Writes that arrive while a transaction is committing wait and then share the
next transaction and its fsync (group commit). The thread takes the next batch as soon as
one has committed, while the event loop hands out the results of the last. One write that
fails leaves the others alone: the batch is rolled back and run again with a savepoint per
write. An event row gets its `seq` in the same transaction as the change it records;
`on_event` is called on the event loop for each event only after that transaction has
committed, in `seq` order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from checkin_appliance import audit
from checkin_appliance.audit import AuditEntry
from checkin_appliance.domain import Actor, QueueEntry, QueueEvent, utc_now
from checkin_appliance.store.errors import (
    DiskFull,
    StoreDamaged,
    StoreUnavailable,
    fails_the_batch,
    is_corruption,
    is_disk_full,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
# The most writes one transaction takes: bounds how long a batch holds the write lock.
MAX_BATCH = 256
AUDIT_COLUMNS = "id, at, actor, action, patient_id, address, detail, prev_hash, hash"


@dataclass
class Transaction:
    """One write's view of the shared transaction (in the writer thread)."""

    conn: sqlite3.Connection
    # The audit chain's key for a given next row (made on first use); None: unkeyed.
    chain_key: Callable[[int], audit.ChainKey | None] = lambda next_row: None
    events: list[QueueEvent] = field(default_factory=list)
    now: str = field(default_factory=utc_now)  # one timestamp for everything this write does
    # Set by a write of pages nobody reads again soon (a photo's, ~15 a photo): once the
    # transaction has committed, the writer hands its page cache back (it would otherwise
    # keep up to cache_size of them, 256 KiB of the server's memory, for nothing).
    release_cache: bool = False

    def one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        # fetchall: the statement finishes, so the savepoint can be released.
        rows = self.conn.execute(sql, tuple(params)).fetchall()
        return rows[0] if rows else None

    def all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def run(self, sql: str, params: Iterable[Any] = ()) -> int:
        return self.conn.execute(sql, tuple(params)).rowcount

    def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        """The new row's id. One step, where RETURNING takes two: each step hands the GIL
        to the event loop's thread and waits to get it back."""
        row_id = self.conn.execute(sql, tuple(params)).lastrowid
        assert row_id is not None
        return row_id

    def record(self, event: str, entry: QueueEntry, from_status: str | None = None) -> None:
        """An event row: its `seq` is published once this transaction has committed. A
        transition (`from_status`) keeps the state it left in the row's detail, for replays."""
        if from_status is None:
            seq = self.insert(
                "INSERT INTO events (event, entry_id, at) VALUES (?, ?, ?)",
                (event, entry.id, self.now),
            )
        else:
            detail = {
                "status": entry.status,
                "from": from_status,
                "room": entry.room,
                "call_count": entry.call_count,
                "line_id": entry.line_id,
                "line": entry.line,
            }
            seq = self.insert(
                "INSERT INTO events (event, entry_id, at, detail) VALUES (?, ?, ?, ?)",
                (event, entry.id, self.now, json.dumps(detail)),
            )
        self.events.append(
            QueueEvent(seq=seq, event=event, at=self.now, entry=entry, from_status=from_status)
        )

    def audit(
        self,
        action: str,
        actor: Actor,
        patient_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """The next link of the audit chain, after the head as this transaction sees it."""
        head = self.one("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        last_id, prev_hash = (head["id"], head["hash"]) if head else (0, audit.GENESIS)
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
            f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.id,
                entry.at,
                entry.actor,
                entry.action,
                entry.patient_id,
                entry.address,
                entry.detail,
                prev_hash,
                entry.digest(prev_hash, self.chain_key(entry.id)),
            ),
        )


@dataclass(slots=True)
class WriteRequest:
    """What the writer thread is asked to do, in the order asked.

    In a transaction, `job(Transaction)` shares the next batch; outside one, `job()` runs
    alone after the batch before it (opening, closing, checks)."""

    job: Callable[..., Any]
    future: asyncio.Future[Any]
    in_transaction: bool


@dataclass
class _Outcome:
    value: Any = None
    error: Exception | None = None
    events: list[QueueEvent] = field(default_factory=list)


class Writer:
    """The thread that owns the write connection and runs every request in order."""

    def __init__(
        self,
        on_event: Callable[[QueueEvent], None] | None,
        on_corruption: Callable[[str], None],
    ) -> None:
        self.on_event = on_event
        self._on_corruption = on_corruption
        # The write connection, once opened by a call in the thread; used only in the thread.
        self.conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests: queue.SimpleQueue[WriteRequest | None] = queue.SimpleQueue()
        self._audit_key: audit.ChainKey | None = None
        # Each transaction's `now`. Tests set another clock (Store.set_clock) to cross a
        # local midnight or a clock change without waiting for one.
        self.clock: Callable[[], str] = utc_now
        # time.monotonic() of the last progress SQLite reported from inside a statement
        # (note_progress): a long VACUUM is busy, not wedged, for the watchdog.
        self.progressed_at = 0.0

    def note_progress(self) -> int:
        """SQLite's progress handler (every PROGRESS_STEPS virtual-machine steps of any
        statement on the write connection): 0 lets the statement go on."""
        self.progressed_at = time.monotonic()
        return 0

    def _chain_key(self, next_row: int) -> audit.ChainKey | None:
        """In the thread: the audit key beside the database file, made on first use."""
        if self._audit_key is None:
            assert self.conn is not None
            (row,) = [r for r in self.conn.execute("PRAGMA database_list") if r[1] == "main"]
            if not row[2]:  # an in-memory database: nothing to keep a key beside
                return None
            self._audit_key = audit.load_or_create_key(Path(row[2]).parent, next_row)
        return self._audit_key

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve, name="store-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Runs what is queued, closes the connection, ends the thread."""
        if self._thread is None:
            return
        if self.conn is not None:
            await self.call(self.conn.close)
        self._requests.put(None)
        self._thread.join()
        self.conn = self._thread = None

    async def call(self, fn: Callable[[], T]) -> T:
        """Runs `fn()` in the writer thread, outside any transaction, after what is queued."""
        return await self._ask(fn, in_transaction=False)

    async def write(self, job: Callable[[Transaction], T]) -> T:
        """Runs `job` in the next transaction; returns once that transaction has committed."""
        assert self.conn is not None, "store is not open"
        return await self._ask(job, in_transaction=True)

    async def _ask(self, job: Callable[..., T], *, in_transaction: bool) -> T:
        assert self._thread is not None, "store is not open"
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._requests.put(WriteRequest(job, future, in_transaction))
        return await future

    def translate(self, exc: BaseException) -> BaseException:
        """The store's typed error for what sqlite3 raised; a corrupt file enters maintenance."""
        if is_disk_full(exc):
            return DiskFull(str(exc))
        if isinstance(exc, sqlite3.OperationalError):
            return StoreUnavailable(str(exc))
        if is_corruption(exc):
            self._on_corruption(str(exc))
            return StoreDamaged(str(exc))
        return exc

    # --- in the writer thread ------------------------------------------------------------

    def _serve(self) -> None:
        """Runs what is queued in order; requests queued together share one transaction."""
        requests = self._requests
        stop = False
        while not stop:
            batch: list[WriteRequest] = []
            request = requests.get()
            while True:
                if request is None:
                    stop = True
                    break
                if not request.in_transaction:  # after the batch before it
                    self._commit_and_settle(batch)
                    batch = []
                    self._call(request)
                else:
                    batch.append(request)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    request = requests.get_nowait()
                except queue.Empty:
                    break
            self._commit_and_settle(batch)

    def _call(self, request: WriteRequest) -> None:
        future = request.future
        try:
            value = request.job()
        except BaseException as exc:  # handed to the caller; the thread goes on
            self._settle(future.set_exception, future, exc)
        else:
            self._settle(future.set_result, future, value)

    def _settle(self, how: Callable[..., None], future: asyncio.Future[Any], *args: Any) -> None:
        """`how(*args)` on the loop, unless the caller gave up."""

        def settle() -> None:
            if not future.done():
                how(*args)

        self._call_soon(settle)

    def _call_soon(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(fn)

    def _commit_and_settle(self, batch: list[WriteRequest]) -> None:
        # A write whose caller gave up before it started is not run.
        batch = [request for request in batch if not request.future.done()]
        if not batch:
            return
        try:
            outcomes, failure = self._commit([request.job for request in batch])
        except BaseException as exc:  # a bug in a write: its batch fails, the thread goes on
            outcomes, failure = [], exc
        self._call_soon(lambda: self._deliver(batch, outcomes, failure))

    def _commit(
        self, jobs: list[Callable[[Transaction], Any]]
    ) -> tuple[list[_Outcome], BaseException | None]:
        """All `jobs` in one transaction.

        Without savepoints first; if one of several jobs fails, everything is rolled back and
        run again with a savepoint per job, so that job fails alone."""
        if len(jobs) > 1:
            outcomes, failure = self._transaction(jobs, savepoints=False)
            if failure is not None or all(outcome.error is None for outcome in outcomes):
                return outcomes, failure
        return self._transaction(jobs, savepoints=len(jobs) > 1)

    def _transaction(
        self, jobs: list[Callable[[Transaction], Any]], *, savepoints: bool
    ) -> tuple[list[_Outcome], BaseException | None]:
        conn = self.conn
        assert conn is not None
        outcomes: list[_Outcome] = []
        release_cache = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                if savepoints:
                    conn.execute("SAVEPOINT job")
                tx = Transaction(conn, self._chain_key, now=self.clock())
                try:
                    value = job(tx)
                except Exception as exc:
                    if fails_the_batch(exc):
                        raise
                    outcomes.append(_Outcome(error=exc))  # its audit row goes with it
                    if not savepoints:  # the caller runs the batch again, with savepoints
                        conn.execute("ROLLBACK")
                        return outcomes, None
                    conn.execute("ROLLBACK TO job")
                else:
                    outcomes.append(_Outcome(value, events=tx.events))
                    release_cache = release_cache or tx.release_cache
                if savepoints:
                    conn.execute("RELEASE job")
            if conn.in_transaction:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [], exc
        if release_cache:
            with contextlib.suppress(sqlite3.Error):  # committed: only memory is at stake
                conn.execute("PRAGMA shrink_memory")
        return outcomes, None

    # --- on the loop ---------------------------------------------------------------------

    def _deliver(
        self, batch: list[WriteRequest], outcomes: list[_Outcome], failure: BaseException | None
    ) -> None:
        """The events of a committed batch, then each caller's answer."""
        if failure is not None:
            error = self.translate(failure)
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        for request, outcome in zip(batch, outcomes, strict=True):
            self._publish(outcome.events)
            future = request.future
            if future.done():
                continue
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.value)

    def _publish(self, events: list[QueueEvent]) -> None:
        if self.on_event is None:
            return
        for event in events:
            try:
                self.on_event(event)
            except Exception:
                log.exception("publishing event %d failed", event.seq)
