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
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from checkin_appliance import audit, calibration, errors, lines
from checkin_appliance.audit import AuditEntry
from checkin_appliance.domain import (
    EVENT_STATUS,
    PATIENT_ADDED,
    PATIENT_COMPLETED,
    PATIENT_RECALLED,
    PATIENT_STATUS,
    PATIENT_UPDATED,
    Actor,
    Conflict,
    Credential,
    InvalidInput,
    NewPhoto,
    NotFound,
    Patient,
    QueueEntry,
    QueueEvent,
    Role,
    Session,
    StoredPhoto,
    format_time,
    idempotency_key_reused,
    parse_time,
    transition_target,
)
from checkin_appliance.estimates import Call
from checkin_appliance.lines import SECONDS_SQL, ByLine, Line, line_from_row
from checkin_appliance.retention import Purged
from checkin_appliance.store import inspect
from checkin_appliance.store.errors import StoreDamaged, StoreUnavailable, is_corruption
from checkin_appliance.store.schema import migrate
from checkin_appliance.store.writer import AUDIT_COLUMNS, Transaction, Writer

__all__ = ["Store", "StoreDamaged", "StoreUnavailable", "Transaction", "read_audit_log"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
# Below this size the full integrity_check at start takes well under a second on the box.
FULL_CHECK_MAX_BYTES = 50 * 1024 * 1024
# SQLite virtual-machine steps between two progress reports of the write connection (a few
# milliseconds of work): the watchdog tells a long VACUUM from a wedged writer by them.
PROGRESS_STEPS = 100_000
PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    # Freed space is zeroed: a purged name leaves no copy in the file's free pages or cells
    # (retention.py; the purge then VACUUMs and truncates the WAL).
    "PRAGMA secure_delete = ON",
    # 256 KiB of page cache per connection, not SQLite's 2 MiB: the queue's reads touch a
    # few index pages, and the OS's page cache serves the rest of a big file. Measured at
    # the 200-subscriber peak: SQLite's memory 723 KB instead of 1308 KB, throughput the same.
    "PRAGMA cache_size = -256",
)

_ENTRY_COLUMNS = (
    "e.id, e.patient_id, p.fname, p.image, e.status, e.check_in_time, e.called_at, e.room,"
    " e.line_id, l.prefix AS line, e.ticket, e.priority, e.call_count"
)
_ENTRY_FROM = (
    "queue_entries e JOIN patients p ON p.id = e.patient_id JOIN lines l ON l.id = e.line_id"
)
_CREDENTIAL_COLUMNS = (
    "c.id, c.token, c.role, c.label, c.room, c.active, c.created_at, c.imported, "
    "c.password_reset_required"
)
# The prefixes of the lines credential `c` serves, comma-separated (NULL: none listed).
_CREDENTIAL_LINES = (
    "(SELECT group_concat(l.prefix, ',') FROM (SELECT l.prefix FROM credential_lines cl "
    "JOIN lines l ON l.id = cl.line_id WHERE cl.credential_id = c.id ORDER BY l.position, l.id)"
    " l) AS lines"
)
_LINE_COLUMNS = "id, prefix, name, colour, icon, active, hours, call_rule, position, created_at"

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


def take_ticket(tx: Transaction, line_id: int, day: str) -> int:
    """The next ticket number of a line's local day, raised in the caller's transaction: never
    given twice, and taken back if that transaction rolls back."""
    counter = tx.one(
        "INSERT INTO ticket_counters (line_id, day, last) VALUES (?, ?, 1) "
        "ON CONFLICT (line_id, day) DO UPDATE SET last = last + 1 RETURNING last",
        (line_id, day),
    )
    assert counter is not None  # RETURNING of an upsert
    return int(counter["last"])


def put_photo(tx: Transaction, photo: NewPhoto) -> None:
    """A photo's JPEG under its name, in the caller's transaction: the one that writes the
    patient's row naming it (the photo_blobs migration's triggers delete it with that name).

    Its bytes go straight into the row's pages (incremental blob I/O): bound as a parameter,
    SQLite would copy them, and the cached statement keep that copy until its next use."""
    row_id = tx.insert(
        "INSERT INTO photos (name, created_at, data) VALUES (?, ?, zeroblob(?))",
        (photo.name, tx.now, len(photo.jpeg)),
    )
    with tx.conn.blobopen("photos", "data", row_id) as blob:
        blob.write(photo.jpeg)
    tx.release_cache = True


def _waiting_entry(tx: Transaction, patient_id: int) -> sqlite3.Row | None:
    """A patient's waiting visit (_ENTRY_COLUMNS and queue_time), or None."""
    return tx.one(
        f"SELECT {_ENTRY_COLUMNS}, e.queue_time FROM {_ENTRY_FROM} "
        "WHERE e.status = 'waiting' AND e.patient_id = ? ORDER BY e.id LIMIT 1",
        (patient_id,),
    )


# A visit's row as an undo restores it: every column a transition may change.
_STATE_COLUMNS = (
    "status",
    "line_id",
    "room",
    "called_at",
    "completed_at",
    "called_by",
    "call_class",
    "call_seq",
    "call_count",
    "queue_time",
    "updated_at",
    "priority",
    "first_called_at",
    "service_from",
    "done_at",
)
_OPEN = "('waiting', 'called', 'in_service')"


def _row_state(tx: Transaction, entry_id: int) -> dict[str, Any]:
    row = tx.one(f"SELECT {', '.join(_STATE_COLUMNS)} FROM queue_entries WHERE id = ?", (entry_id,))
    assert row is not None  # the caller read the entry in this transaction
    return {name: row[name] for name in _STATE_COLUMNS}


def _log_transition(
    tx: Transaction,
    actor: Actor,
    action: str,
    previous: dict[str, Any],
    entry: QueueEntry,
    room: str | None,
) -> int:
    """A row of visit_transitions: who, when, what, from and to, and the row before it. The
    move's own UPDATE of the visit also keeps the times the statistics read (migration 0015:
    first_called_at, service_from, done_at), which an undo puts back with the rest."""
    return tx.insert(
        "INSERT INTO visit_transitions (entry_id, at, credential_id, action, from_status,"
        " to_status, from_line, to_line, room, previous) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.id,
            tx.now,
            actor.credential_id,
            action,
            previous["status"],
            entry.status,
            previous["line_id"],
            entry.line_id,
            room,
            json.dumps(previous),
        ),
    )


def _timed_move(
    tx: Transaction, actor: Actor, row: sqlite3.Row, to_status: str, action: str
) -> QueueEntry:
    """A move the box makes by the clock (end of day, no-show grace): the state, its event
    and its visit_transitions row; the caller writes the audit."""
    previous = _row_state(tx, row["id"])
    entry = dataclasses.replace(_entry(row), status=to_status)
    tx.run(
        "UPDATE queue_entries SET status = ?, updated_at = ? WHERE id = ?",
        (to_status, tx.now, entry.id),
    )
    tx.record(PATIENT_STATUS, entry, row["status"])
    _log_transition(tx, actor, action, previous, entry, entry.room)
    return entry


def _event_of(from_status: str, to_status: str, action: str) -> str:
    """The event a transition publishes (domain.PATIENT_STATUS's comment)."""
    if to_status == "waiting":
        return PATIENT_UPDATED if from_status == "waiting" else PATIENT_ADDED
    if action == "recall":
        return PATIENT_RECALLED
    return PATIENT_STATUS


def _offset(text: str, seconds: float) -> str:
    return format_time(parse_time(text) + timedelta(seconds=seconds))


def _entry(row: sqlite3.Row) -> QueueEntry:
    """A row with the _ENTRY_COLUMNS names."""
    return _record(QueueEntry, row)


def _credential(row: sqlite3.Row, with_lines: bool = False) -> Credential:
    """A row with the _CREDENTIAL_COLUMNS names (and _CREDENTIAL_LINES if `with_lines`)."""
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
        lines=tuple(row["lines"].split(",")) if with_lines and row["lines"] else (),
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

    def __init__(
        self,
        path: Path,
        on_event: Callable[[QueueEvent], None] | None = None,
        *,
        checkpoint: str = "TRUNCATE",
    ) -> None:
        """`on_event` is called on the loop for each event after its transaction committed,
        in seq order. `checkpoint`: compact()'s mode; PASSIVE while Litestream replicates (it
        resets the WAL itself, and a TRUNCATE would wait on its read lock)."""
        self.path = path
        self.checkpoint = checkpoint
        self._writer = Writer(on_event, on_corruption=self._enter_maintenance)
        self._reader: aiosqlite.Connection | None = None
        # Set at open when the integrity check fails (or later on a corruption error):
        # every write raises StoreDamaged, reads are attempted as they come.
        self.damaged = False
        self._line_cache: list[Line] | None = None  # _lines: every line, between changes

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
            # A heartbeat from inside long statements; ordinary writes run far fewer steps.
            conn.set_progress_handler(self._writer.note_progress, PROGRESS_STEPS)
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

    def set_clock(self, clock: Callable[[], str]) -> None:
        """Tests only: every transaction's `now` from `clock` (UTC timestamps as stored)."""
        self._writer.clock = clock

    def now(self) -> str:
        """Now, by the clock the writes use (the places in line are predicted for it)."""
        return self._writer.clock()

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

    async def _on_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` in the reader's own thread, after the reads queued before it: for
        what aiosqlite has no call for (incremental blob I/O). Its `_execute` and `_conn`
        are private, but have been there since aiosqlite 0.17."""
        reader = self.reader
        return await reader._execute(lambda: fn(reader._conn))

    # --- writing and reading -------------------------------------------------------------

    async def write(self, job: Callable[[Transaction], T]) -> T:
        """Runs `job` in the next transaction; returns once that transaction has committed."""
        if self.damaged:
            raise StoreDamaged("the database is damaged")
        return await self._writer.write(job)

    def _damage(self, exc: sqlite3.DatabaseError) -> StoreDamaged:
        self._enter_maintenance(str(exc))
        return StoreDamaged(str(exc))

    async def _checked(self, pending: Awaitable[T]) -> T:
        """What `pending` gives; a corrupt file's error enters maintenance (StoreDamaged)."""
        try:
            return await pending
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise self._damage(exc) from exc
            raise

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

    def writer_progressed_within(self, seconds: float) -> bool:
        """True when a statement on the write connection reported progress in the last
        `seconds`: busy with a long one (a VACUUM of a big file), not wedged."""
        return time.monotonic() - self._writer.progressed_at < seconds

    async def writer_round_trip(self) -> None:
        """Returns once the writer thread has run a trivial job after what is queued: the
        watchdog's proof that it is alive (in maintenance mode too: no write, no connection)."""
        await self._writer.call(lambda: None)

    async def outside_version(self) -> int:
        """Changes when another process (the CLI) commits. Read on the writer's own
        connection, so our writes leave it alone: under load it stays quiet."""

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA data_version").fetchone()["data_version"])

        return await self._checked(self.run_in_writer(read))

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

    async def has_foreign_tokens(self) -> bool:
        """Whether an imported credential has a token of another shape than our 8 digits."""
        row = await self._one(
            "SELECT 1 AS found FROM credentials WHERE imported = 1 AND NOT "
            "(length(token) = 8 AND token NOT GLOB '*[^0-9]*') LIMIT 1"
        )
        return row is not None

    async def served_lines(self, credential_id: int) -> tuple[str, ...]:
        """The prefixes of the lines a credential serves (none: every line)."""
        rows = await self._all(
            "SELECT l.prefix FROM credential_lines cl JOIN lines l ON l.id = cl.line_id "
            "WHERE cl.credential_id = ? ORDER BY l.position, l.id",
            (credential_id,),
        )
        return tuple(row["prefix"] for row in rows)

    async def list_credentials(self) -> list[Credential]:
        rows = await self._all(
            f"SELECT {_CREDENTIAL_COLUMNS}, {_CREDENTIAL_LINES} FROM credentials c ORDER BY c.id"
        )
        return [_credential(row, with_lines=True) for row in rows]

    async def change_credential(
        self, token: str, changes: dict[str, Any], *, actor: Actor
    ) -> Credential | None:
        """A credential's label, room and/or served lines (prefixes; [] = every line); None
        when no such token. An unknown prefix: InvalidInput (line_not_found)."""

        def job(tx: Transaction) -> Credential | None:
            row = tx.one("SELECT id FROM credentials WHERE token = ?", (token,))
            if row is None:
                return None
            credential_id = row["id"]
            if "room" in changes:
                tx.run(
                    "UPDATE credentials SET room = ? WHERE id = ?", (changes["room"], credential_id)
                )
            if "label" in changes:
                tx.run(
                    "UPDATE credentials SET label = ? WHERE id = ?",
                    (changes["label"], credential_id),
                )
            if "lines" in changes:
                ids = []
                for prefix in changes["lines"]:
                    line = tx.one("SELECT id FROM lines WHERE prefix = ?", (prefix,))
                    if line is None:
                        raise InvalidInput(
                            "lines names a line that does not exist.", errors.LINE_UNKNOWN
                        )
                    ids.append(line["id"])
                tx.run("DELETE FROM credential_lines WHERE credential_id = ?", (credential_id,))
                tx.conn.executemany(
                    "INSERT OR IGNORE INTO credential_lines (credential_id, line_id) VALUES (?, ?)",
                    [(credential_id, line_id) for line_id in ids],
                )
            tx.audit(
                audit.CREDENTIAL_CHANGED, actor, detail={"credential": credential_id, **changes}
            )
            updated = tx.one(
                f"SELECT {_CREDENTIAL_COLUMNS}, {_CREDENTIAL_LINES} FROM credentials c "
                "WHERE c.id = ?",
                (credential_id,),
            )
            assert updated is not None
            return _credential(updated, with_lines=True)

        return await self.write(job)

    async def deactivate_credential(self, token: str, *, actor: Actor) -> Credential | None:
        """Deactivates and revokes every session; None when no such token exists."""
        return await self._change_credential_ending_sessions(
            token,
            "active = 0, deactivated_at = coalesce(deactivated_at, ?)",
            lambda now: (now,),
            audit.CREDENTIAL_DEACTIVATED,
            actor,
        )

    async def reactivate_credential(self, token: str, *, actor: Actor) -> Credential | None:
        """An inactive credential works again (audited); its old sessions stay ended, so the
        device signs in again. Active already: unchanged, no audit row. None: no such token."""

        def job(tx: Transaction) -> Credential | None:
            row = tx.one("SELECT id, active FROM credentials WHERE token = ?", (token,))
            if row is None:
                return None
            if not row["active"]:
                tx.run(
                    "UPDATE credentials SET active = 1, deactivated_at = NULL WHERE id = ?",
                    (row["id"],),
                )
                tx.audit(audit.CREDENTIAL_REACTIVATED, actor, detail={"credential": row["id"]})
            updated = tx.one(
                f"SELECT {_CREDENTIAL_COLUMNS}, {_CREDENTIAL_LINES} FROM credentials c "
                "WHERE c.id = ?",
                (row["id"],),
            )
            assert updated is not None
            return _credential(updated, with_lines=True)

        return await self.write(job)

    async def last_activity(self) -> dict[int, tuple[str, str | None, str | None]]:
        """Per credential, from its sessions (no column of its own): (newest sign-in, newest
        access expiry of a page session, of an API session). A page session's access expiry
        moves on when the page is used (extend_session), an API session's on each refresh;
        Access turns them into a last contact. An API session ends with its refresh token
        (ends_at = refresh_expires, set once at sign-in); a page session never does."""
        rows = await self._all(
            "SELECT credential_id, max(created_at) AS signed_in, "
            "max(CASE WHEN ends_at IS refresh_expires THEN NULL ELSE access_expires END) "
            "AS page_until, "
            "max(CASE WHEN ends_at IS refresh_expires THEN access_expires END) AS api_until "
            "FROM sessions GROUP BY credential_id"
        )
        return {
            row["credential_id"]: (row["signed_in"], row["page_until"], row["api_until"])
            for row in rows
        }

    async def ended_by_admin(self, access_hash: str) -> bool:
        """Whether the session of this access secret ended because an administrator
        deactivated its credential or set its password (the page then says so, instead of
        offering the sign-in form). The password change's audit row has the revocation's
        time (one transaction)."""
        row = await self._one(
            "SELECT s.credential_id, s.revoked_at, c.active FROM sessions s "
            "JOIN credentials c ON c.id = s.credential_id WHERE s.access_hash = ?",
            (access_hash,),
        )
        if row is None:
            return False
        if not row["active"]:
            return True
        if row["revoked_at"] is None:
            return False
        changed = await self._one(
            "SELECT 1 AS found FROM audit_log WHERE at = ? AND action = ? "
            "AND json_extract(detail, '$.credential') = ? LIMIT 1",
            (row["revoked_at"], audit.PASSWORD_CHANGED, row["credential_id"]),
        )
        return changed is not None

    async def set_password(
        self, token: str, password_hash: str, *, actor: Actor
    ) -> Credential | None:
        """A new password: the reset flag is cleared and every session of the credential
        ends; None when no such token exists."""
        return await self._change_credential_ending_sessions(
            token,
            "password_hash = ?, password_reset_required = 0",
            lambda now: (password_hash,),
            audit.PASSWORD_CHANGED,
            actor,
        )

    async def _change_credential_ending_sessions(
        self,
        token: str,
        assignments: str,
        values: Callable[[str], tuple[Any, ...]],
        action: str,
        actor: Actor,
    ) -> Credential | None:
        """One change of a credential (`assignments`, its values from the transaction's
        time) that ends its sessions, with its audit row; None when no such token exists."""

        def job(tx: Transaction) -> Credential | None:
            now = tx.now
            row = tx.one(
                f"UPDATE credentials SET {assignments} WHERE token = ? "
                f"RETURNING {_CREDENTIAL_COLUMNS.replace('c.', '')}",
                (*values(now), token),
            )
            if row is None:
                return None
            credential = _credential(row)
            _end_sessions(tx, credential.id, now)
            tx.audit(action, actor, detail={"credential": credential.id})
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

    async def audit_page(self, query: audit.AuditQuery) -> list[AuditEntry]:
        """The audit rows `query` selects, newest first: at most `query.limit`, all with an id
        below `query.before` (the previous page's last) when it is given."""
        where, params = ["1"], []
        if query.system:
            where.append("actor IS NULL")
        elif query.actors:
            where.append(f"actor IN ({', '.join('?' * len(query.actors))})")
            params.extend(query.actors)
        if query.action is not None:
            where.append("action = ?")
            params.append(query.action)
        if query.start is not None:
            where.append("at >= ?")
            params.append(query.start)
        if query.end is not None:
            where.append("at < ?")
            params.append(query.end)
        if query.before is not None:
            where.append("id < ?")
            params.append(query.before)
        rows = await self._all(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {' AND '.join(where)}"
            " ORDER BY id DESC LIMIT ?",
            (*params, query.limit),
        )
        return [_audit_entry(row) for row in rows]

    async def prune_audit(self, before: str, actor: Actor) -> int:
        """The audit trail's retention: rows older than `before` go, oldest first, in one
        transaction with an `audit_pruned` row written first (the newest row stays, so the
        chain goes on from it) that names the first row kept, for verify. How many went;
        nothing and no row when none is that old."""

        def job(tx: Transaction) -> int:
            ends = tx.one("SELECT min(id) AS first, max(id) AS last FROM audit_log")
            kept = tx.one("SELECT min(id) AS id FROM audit_log WHERE at >= ?", (before,))
            if ends is None or ends["first"] is None or kept is None:
                return 0
            # A prefix by id (the chain's order): with nothing newer than `before`, the
            # first row kept is the audit_pruned row itself.
            kept_from = ends["last"] + 1 if kept["id"] is None else kept["id"]
            removed = kept_from - ends["first"]
            if removed <= 0:
                return 0
            tx.audit(
                audit.AUDIT_PRUNED,
                actor,
                detail={"before": before, "removed": removed, "kept_from": kept_from},
            )
            return tx.run("DELETE FROM audit_log WHERE id < ?", (kept_from,))

        return await self.write(job)

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
        photo: NewPhoto | None,
        actor: Actor,
        idempotency_key: str | None = None,
        body_sha256: str | None = None,
        intake: str | None = None,
        line: str | int | None = None,
        priority: str = "normal",
        time_zone: str = "UTC",
        link_hash: bytes | None = None,
    ) -> tuple[QueueEntry, int, bool]:
        """A new patient in a line: (entry, 1-based place in that line's call order, replayed).
        `photo` is stored in the same transaction as the patient's row that names it.
        `intake`: the intake form's other answers as JSON (patients.intake). `line`: a prefix
        or an id (lines.line_selector), None for the default line; the ticket is numbered in
        the line's local day (`time_zone`), by a counter raised in this same transaction.

        With an idempotency key the credential already used, nothing is written (nor the
        photo) and the first check-in is returned with replayed=True; if that first check-in
        had another body (`body_sha256`), Conflict instead.

        `link_hash`: the SHA-256 of the visit's status link (visit_links). A replay stores
        the new one in place of the first: only the hash was kept, so the kiosk that missed
        the first answer can only be given a new link, and the first one stops working.
        """
        by = actor.credential_id
        image = photo.name if photo is not None else None

        def job(tx: Transaction) -> tuple[QueueEntry, int, bool]:
            if idempotency_key is not None:
                row = tx.one(
                    f"SELECT {_ENTRY_COLUMNS}, k.position, k.body_sha256 FROM idempotency_keys k "
                    "JOIN queue_entries e ON e.id = k.entry_id "
                    "JOIN patients p ON p.id = e.patient_id JOIN lines l ON l.id = e.line_id "
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
                    if link_hash is not None:
                        tx.run(
                            "INSERT INTO visit_links (entry_id, token_hash, created_at)"
                            " VALUES (?, ?, ?) ON CONFLICT (entry_id) DO UPDATE SET"
                            " token_hash = excluded.token_hash, created_at = excluded.created_at",
                            (row["id"], link_hash, tx.now),
                        )
                    return as_checked_in, int(row["position"]), True
            now = tx.now
            chosen = lines.choose_line(self._lines(tx), line, now, time_zone)
            day = lines.clinic_day(now, time_zone)
            number = take_ticket(tx, chosen.id, day)
            ticket = lines.ticket_text(chosen.prefix, number)
            patient_id = tx.insert(
                "INSERT INTO patients (fname, image, created_at, intake) VALUES (?, ?, ?, ?)",
                (fname, image, now, intake),
            )
            if photo is not None:
                put_photo(tx, photo)
            entry_id = tx.insert(
                "INSERT INTO queue_entries (patient_id, status, check_in_time, checked_in_by,"
                " line_id, ticket_day, ticket_number, ticket, priority, queue_time)"
                " VALUES (?, 'waiting', ?, ?, ?, ?, ?, ?, ?, ?)",
                (patient_id, now, by, chosen.id, day, number, ticket, priority, now),
            )
            counts = self._counts(tx, chosen.id, lines.aged_cutoff(chosen.call_rule, now))
            # The line's streak matters only while priority and normal patients both wait.
            both = counts.priority and counts.normal
            position = lines.newcomer_place(
                counts, priority, chosen.call_rule, self._history(tx, chosen.id) if both else ()
            )
            if link_hash is not None:
                tx.run(
                    "INSERT INTO visit_links (entry_id, token_hash, created_at) VALUES (?, ?, ?)",
                    (entry_id, link_hash, now),
                )
            if idempotency_key is not None:
                tx.run(
                    "INSERT INTO idempotency_keys (credential_id, key, entry_id, position,"
                    " created_at, body_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                    (by, idempotency_key, entry_id, position, now, body_sha256),
                )
            entry = QueueEntry(
                entry_id,
                patient_id,
                fname,
                image,
                "waiting",
                now,
                line_id=chosen.id,
                line=chosen.prefix,
                ticket=ticket,
                priority=priority,
            )
            tx.record(PATIENT_ADDED, entry)
            tx.audit(audit.CHECK_IN, actor, patient_id)
            return entry, position, False

        return await self.write(job)

    async def complete(
        self,
        patient_id: int | None,
        actor: Actor,
        room: str | None = None,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> QueueEntry | None:
        """Completes the given patient's waiting entry (the override), or, if None, the next
        by the call order across the lines the actor's credential serves (every line when it
        lists none): lines.next_across."""

        def job(tx: Transaction) -> QueueEntry | None:
            replay = self._replay(tx, actor, idempotency_key, fingerprint)
            if replay is not None:  # the call the console did not hear back about
                return replay[0]
            now = tx.now
            if patient_id is not None:
                row = _waiting_entry(tx, patient_id)
                if row is None:
                    return None
                line = tx.one("SELECT call_rule FROM lines WHERE id = ?", (row["line_id"],))
                rule = json.loads(line["call_rule"]) if line and line["call_rule"] else None
                chosen = lines.waiting(row["id"], row["priority"], lines.seconds(row["queue_time"]))
            else:
                served = [
                    r["line_id"]
                    for r in tx.all(
                        "SELECT line_id FROM credential_lines WHERE credential_id = ?",
                        (actor.credential_id,),
                    )
                ]
                by_line = self._heads(tx, served or None)
                rules = {ln.id: ln.call_rule for ln in self._lines(tx) if ln.id in by_line}
                # A streak decides only between priority and normal patients both waiting.
                histories = {
                    line_id: self._history(tx, line_id)
                    for line_id, people in by_line.items()
                    if {p.priority for p in people} >= {"priority", "normal"}
                }
                picked = lines.next_across(by_line, rules, histories, now)
                if picked is None:
                    return None
                line_id, chosen = picked
                rule = rules.get(line_id)
                row = tx.one(
                    f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} WHERE e.id = ?", (chosen.entry_id,)
                )
                assert row is not None  # read in this transaction
            previous = _row_state(tx, row["id"])
            entry = dataclasses.replace(
                _entry(row), status="called", called_at=now, room=room, call_count=1
            )
            tx.record(PATIENT_COMPLETED, entry, "waiting")
            tx.run(
                "UPDATE queue_entries SET status = 'called', called_at = ?, completed_at = ?,"
                " called_by = ?, room = ?, call_class = ?, call_count = 1, call_seq = ?,"
                " updated_at = ?, first_called_at = coalesce(first_called_at, ?),"
                " service_from = ? WHERE id = ?",
                (
                    now,
                    now,
                    actor.credential_id,
                    room,
                    lines.call_class(chosen, rule, now),
                    tx.events[-1].seq,
                    now,
                    now,  # the first call that stands (migration 0015)
                    now,  # the doctor's time on it starts
                    row["id"],
                ),
            )
            action = audit.CALL if patient_id is None else audit.COMPLETE
            _log_transition(tx, actor, action, previous, entry, room)
            tx.audit(
                action,
                actor,
                entry.patient_id,
                {"from": "waiting", "to": "called", **({"room": room} if room else {})},
            )
            self._remember(tx, actor, idempotency_key, fingerprint, entry, "waiting")
            return entry

        return await self.write(job)

    async def set_priority(
        self, patient_id: int, priority: str, actor: Actor
    ) -> tuple[QueueEntry, bool] | None:
        """A waiting patient's priority class: (entry, changed); None if not waiting. A
        change is one PATIENT_UPDATED event (only opted-in feeds see it) and an audit row."""

        def job(tx: Transaction) -> tuple[QueueEntry, bool] | None:
            row = _waiting_entry(tx, patient_id)
            if row is None:
                return None
            entry = dataclasses.replace(_entry(row), priority=priority)
            if row["priority"] == priority:
                return entry, False
            tx.run("UPDATE queue_entries SET priority = ? WHERE id = ?", (priority, entry.id))
            tx.record(PATIENT_UPDATED, entry)
            tx.audit(
                audit.PRIORITY_CHANGED,
                actor,
                entry.patient_id,
                {"from": row["priority"], "to": priority},
            )
            return entry, True

        return await self.write(job)

    async def transition(
        self,
        patient_id: int,
        action: str,
        actor: Actor,
        *,
        room: str | None = None,
        position: str | None = None,
        reason: str | None = None,
        line: str | int | None = None,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> tuple[QueueEntry, str, bool]:
        """One of domain.TRANSITIONS on the patient's latest visit, in one transaction with
        its event, its visit_transitions row and its audit row: (entry, from, replayed).

        requeue: `position` front (first of its class in its line) or back (last); cancel:
        `reason`; transfer: `line` (prefix or id, active, another line when it waits). A key
        the credential used before returns the first answer (replayed) and changes nothing."""

        def job(tx: Transaction) -> tuple[QueueEntry, str, bool]:
            replay = self._replay(tx, actor, idempotency_key, fingerprint)
            if replay is not None:
                return replay
            now = tx.now
            row = tx.one(
                f"SELECT {_ENTRY_COLUMNS}, e.queue_time FROM {_ENTRY_FROM} "
                "WHERE e.patient_id = ? ORDER BY e.id DESC LIMIT 1",
                (patient_id,),
            )
            if row is None:
                raise NotFound("No visit for that patient.", errors.VISIT_NOT_FOUND)
            from_status = row["status"]
            to_status = transition_target(action, from_status)
            previous = _row_state(tx, row["id"])
            entry = dataclasses.replace(_entry(row), status=to_status)
            changes: dict[str, Any] = {"status": to_status, "updated_at": now}
            detail: dict[str, Any] = {}
            if action == "recall":
                entry = dataclasses.replace(
                    entry, call_count=row["call_count"] + 1, room=room or row["room"]
                )
                changes.update(call_count=entry.call_count, room=entry.room)
            elif action == "requeue":
                changes["queue_time"] = self._queue_place(tx, row["line_id"], position, now)
                detail["position"] = position
            elif action == "cancel":
                detail["reason"] = reason
            elif action == "transfer":
                target = self._transfer_line(tx, line)
                if target.id == row["line_id"] and from_status == "waiting":
                    raise Conflict(
                        "The patient already waits in that line.", errors.TRANSITION_NOT_ALLOWED
                    )
                changes.update(line_id=target.id, queue_time=now)
                entry = dataclasses.replace(entry, line_id=target.id, line=target.prefix)
                detail.update(from_line=row["line"], to_line=target.prefix)
            # The statistics' times (migration 0015): where the doctor's time on it starts, and
            # when it was done.
            if to_status in ("called", "in_service"):
                changes["service_from"] = now
            if action == audit.DONE:
                changes["done_at"] = now
            assignments = ", ".join(f"{name} = ?" for name in changes)  # _STATE_COLUMNS only
            tx.run(
                f"UPDATE queue_entries SET {assignments} WHERE id = ?",
                (*changes.values(), entry.id),
            )
            tx.record(_event_of(from_status, to_status, action), entry, from_status)
            _log_transition(tx, actor, action, previous, entry, entry.room)
            tx.audit(
                action,
                actor,
                entry.patient_id,
                {"from": from_status, "to": to_status, **detail},
            )
            self._remember(tx, actor, idempotency_key, fingerprint, entry, from_status)
            return entry, from_status, False

        return await self.write(job)

    async def undo(
        self,
        actor: Actor,
        undo_seconds: int,
        patient_id: int | None = None,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> tuple[QueueEntry, str, bool]:
        """Undoes the credential's last action (a call or a transition) if it was at most
        `undo_seconds` ago and nobody changed the visit since: the row as it was before it,
        exactly. (entry, from, replayed); Conflict nothing_to_undo, undo_expired or
        undo_superseded. With `patient_id`, only an action on that patient is undone."""

        def job(tx: Transaction) -> tuple[QueueEntry, str, bool]:
            replay = self._replay(tx, actor, idempotency_key, fingerprint)
            if replay is not None:
                return replay
            last = tx.one(
                "SELECT t.id, t.entry_id, t.at, t.action, t.previous, t.undone_by, e.patient_id "
                "FROM visit_transitions t JOIN queue_entries e ON e.id = t.entry_id "
                "WHERE t.credential_id IS ? ORDER BY t.id DESC LIMIT 1",
                (actor.credential_id,),
            )
            if (
                last is None
                or last["action"] in (audit.UNDO, audit.END_OF_DAY)
                or last["undone_by"] is not None
                or (patient_id is not None and last["patient_id"] != patient_id)
            ):
                raise Conflict("There is no action of yours to undo.", errors.NOTHING_TO_UNDO)
            if lines.seconds(tx.now) - lines.seconds(last["at"]) > undo_seconds:
                raise Conflict("That action is too old to undo.", errors.UNDO_EXPIRED)
            later = tx.one(
                "SELECT id FROM visit_transitions WHERE entry_id = ? AND id > ? LIMIT 1",
                (last["entry_id"], last["id"]),
            )
            if later is not None:
                raise Conflict(
                    "The visit changed after that action; it cannot be undone.",
                    errors.UNDO_SUPERSEDED,
                )
            current = _row_state(tx, last["entry_id"])
            restored = json.loads(last["previous"])
            assignments = ", ".join(f"{name} = ?" for name in _STATE_COLUMNS)
            tx.run(
                f"UPDATE queue_entries SET {assignments} WHERE id = ?",
                # A move logged before schema 15 has no times in its row: they stay as they are.
                (*(restored.get(name, current[name]) for name in _STATE_COLUMNS), last["entry_id"]),
            )
            row = tx.one(
                f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} WHERE e.id = ?", (last["entry_id"],)
            )
            assert row is not None
            entry = _entry(row)
            from_status = current["status"]
            tx.record(_event_of(from_status, entry.status, audit.UNDO), entry, from_status)
            undo_id = _log_transition(tx, actor, audit.UNDO, current, entry, entry.room)
            tx.run("UPDATE visit_transitions SET undone_by = ? WHERE id = ?", (undo_id, last["id"]))
            tx.audit(
                audit.UNDO,
                actor,
                entry.patient_id,
                {"undid": last["action"], "from": from_status, "to": entry.status},
            )
            self._remember(tx, actor, idempotency_key, fingerprint, entry, from_status)
            return entry, from_status, False

        return await self.write(job)

    async def end_of_day(self, actor: Actor, checked_in_before: str | None = None) -> int:
        """Every open visit (waiting, called, in service; checked in before
        `checked_in_before` if given) is closed as not seen: an event each, one audit row.
        Nothing is deleted. Returns how many were closed (no write when none)."""
        before = "" if checked_in_before is None else " AND e.check_in_time < ?"
        params = () if checked_in_before is None else (checked_in_before,)

        def job(tx: Transaction) -> int:
            rows = tx.all(
                f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} "
                f"WHERE e.status IN {_OPEN}{before} ORDER BY e.id",
                params,
            )
            for row in rows:
                _timed_move(tx, actor, row, "not_seen", audit.END_OF_DAY)
            if rows:
                counts: dict[str, int] = {}
                for row in rows:
                    counts[row["status"]] = counts.get(row["status"], 0) + 1
                tx.audit(audit.END_OF_DAY, actor, detail={"closed": len(rows), **counts})
            return len(rows)

        if checked_in_before is not None:
            waiting = await self._one(
                f"SELECT count(*) AS n FROM queue_entries e WHERE e.status IN {_OPEN}{before}",
                params,
            )
            if waiting is None or waiting["n"] == 0:
                return 0
        return await self.write(job)

    async def no_show_overdue(self, actor: Actor, idle_since: str, day_start: str) -> int:
        """Every visit called and left untouched since `idle_since` (its last transition: the
        call, a recall or an undo; none before `day_start`, so a day without an end of day
        is left alone) becomes a no-show: one transaction, an event, a visit_transitions
        row and an audit row each, as a doctor's tap. Returns how many (no write when none).
        Visits called before schema 8 have no transition and are never touched."""
        overdue = (
            f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} "
            "JOIN visit_transitions t ON t.id = (SELECT max(id) FROM visit_transitions "
            "WHERE entry_id = e.id) "
            "WHERE e.status = 'called' AND t.at >= ? AND t.at <= ? ORDER BY e.id"
        )
        params = (day_start, idle_since)

        def job(tx: Transaction) -> int:
            rows = tx.all(overdue, params)
            for row in rows:
                entry = _timed_move(tx, actor, row, "no_show", audit.NO_SHOW)
                tx.audit(
                    audit.NO_SHOW,
                    actor,
                    entry.patient_id,
                    {"from": "called", "to": "no_show", "idle_since": idle_since},
                )
            return len(rows)

        if await self._one(overdue, params) is None:
            return 0
        return await self.write(job)

    @staticmethod
    def _replay(
        tx: Transaction, actor: Actor, key: str | None, fingerprint: str | None
    ) -> tuple[QueueEntry, str, bool] | None:
        """The first answer to a doctor's action retried with its Idempotency-Key, or None."""
        if key is None:
            return None
        row = tx.one(
            "SELECT body_sha256, answer FROM idempotency_keys WHERE credential_id IS ? AND key = ?",
            (actor.credential_id, key),
        )
        if row is None:
            return None
        if row["answer"] is None or row["body_sha256"] != fingerprint:
            raise idempotency_key_reused("action")
        answer = json.loads(row["answer"])
        from_status = answer.pop("from")
        return QueueEntry(**answer), from_status, True

    @staticmethod
    def _remember(
        tx: Transaction,
        actor: Actor,
        key: str | None,
        fingerprint: str | None,
        entry: QueueEntry,
        from_status: str,
    ) -> None:
        if key is None or actor.credential_id is None:
            return
        answer = {**dataclasses.asdict(entry), "from": from_status}
        tx.run(
            "INSERT INTO idempotency_keys (credential_id, key, entry_id, position, created_at,"
            " body_sha256, answer) VALUES (?, ?, ?, 0, ?, ?, ?)",
            (actor.credential_id, key, entry.id, tx.now, fingerprint, json.dumps(answer)),
        )

    def _queue_place(self, tx: Transaction, line_id: int, position: str | None, now: str) -> str:
        """The queue_time of a visit put back: front, just before everyone waiting in the line
        (first of its class, and aged as long as the longest waiter); back: now."""
        if position != "front":
            return now
        first = tx.one(
            "SELECT min(queue_time) AS t FROM queue_entries "
            "WHERE status = 'waiting' AND line_id = ?",
            (line_id,),
        )
        if first is None or first["t"] is None or first["t"] > now:
            return now
        return _offset(first["t"], -0.001)

    def _transfer_line(self, tx: Transaction, selector: str | int | None) -> Line:
        for candidate in self._lines(tx):
            if selector in (candidate.id, candidate.prefix):
                if not candidate.active:
                    raise Conflict("That line is not active.", errors.TRANSITION_NOT_ALLOWED)
                return candidate
        raise NotFound("No line has that prefix or id.", errors.LINE_NOT_FOUND)

    # --- lines -----------------------------------------------------------------------

    def _lines(self, tx: Transaction) -> list[Line]:
        """Every line, in order. Kept between writes (only this process changes lines, and
        each change forgets them): every check-in and call reads them, and reading and
        parsing them each time cost make bench's check-in cells about 5 %."""
        if self._line_cache is None:
            rows = tx.all(f"SELECT {_LINE_COLUMNS} FROM lines ORDER BY position, id")
            self._line_cache = [line_from_row(row) for row in rows]
        return self._line_cache

    async def _write_lines(self, job: Callable[[Transaction], T]) -> T:
        """A change of lines: the kept lines are forgotten in the transaction and once it
        ended, committed or not."""

        def forgetting(tx: Transaction) -> T:
            self._line_cache = None
            return job(tx)

        try:
            return await self.write(forgetting)
        finally:
            self._line_cache = None

    def _heads(self, tx: Transaction, line_ids: list[int] | None) -> ByLine:
        """The oldest waiting patient of each class in each of these lines (None: every
        line), by line: all ordering.next_up needs (it takes the oldest urgent, else the
        oldest aged, who is the oldest non-urgent, else the oldest of the class whose turn it
        is), read in one statement instead of every waiting patient: one seek on the
        waiting index per line and class (a correlated form took ten times as long)."""
        if line_ids is None:
            line_ids = [line.id for line in self._lines(tx)]
        one = (
            f"SELECT * FROM (SELECT line_id, id, priority, {SECONDS_SQL.format('queue_time')}"
            " FROM queue_entries WHERE status = 'waiting' AND line_id = ? AND priority = '{}'"
            " ORDER BY queue_time, id LIMIT 1)"
        )
        sql = " UNION ALL ".join(one.format(p) for _ in line_ids for p in lines.PRIORITIES)
        cursor = tx.conn.cursor()
        cursor.row_factory = None  # plain tuples: this runs on every call
        rows = cursor.execute(
            sql, [line_id for line_id in line_ids for _ in lines.PRIORITIES]
        ).fetchall()
        by_line: ByLine = {}
        for line_id, entry_id, priority, at in rows:
            by_line.setdefault(line_id, []).append(lines.waiting(entry_id, priority, at))
        return by_line

    @staticmethod
    def _counts(tx: Transaction, line_id: int, aged_before: str | None) -> lines.Counts:
        """A line's waiting patients by class (aged: checked in at or before `aged_before`).

        One range count per class and age on the waiting index, not one pass testing every
        row: 3.6 times faster at 3,000 waiting (make bench's check-in cells lost 15-28 %
        to the one-pass form)."""
        count = (
            "(SELECT count(*) FROM queue_entries WHERE status = 'waiting' AND line_id = ?2"
            " AND priority = '{}'{})"
        )
        aged, fresh = " AND queue_time <= ?1", " AND queue_time > ?1"
        row = tx.one(
            f"SELECT {count.format('urgent', '')} AS urgent, "
            f"{count.format('priority', aged)} + {count.format('normal', aged)} AS aged, "
            f"{count.format('priority', fresh)} AS priority, "
            f"{count.format('normal', fresh)} AS normal",
            # No ageing: a cutoff no timestamp reaches.
            (aged_before if aged_before is not None else "", line_id),
        )
        assert row is not None  # aggregates make one row
        return lines.Counts(row["urgent"], row["aged"], row["priority"], row["normal"])

    @staticmethod
    def _history(tx: Transaction, line_id: int) -> list[str]:
        """The classes of a line's recent calls, newest last (its interleave streak)."""
        cursor = tx.conn.cursor()
        cursor.row_factory = None  # plain tuples: a check-in or a call may read it
        rows = cursor.execute(
            "SELECT call_class FROM queue_entries WHERE line_id = ? AND call_seq IS NOT NULL "
            "ORDER BY call_seq DESC LIMIT ?",
            (line_id, lines.HISTORY),
        ).fetchall()
        return [row[0] for row in reversed(rows)]

    async def list_lines(self) -> list[Line]:
        rows = await self._all(f"SELECT {_LINE_COLUMNS} FROM lines ORDER BY position, id")
        return [line_from_row(row) for row in rows]

    async def call_context(
        self,
    ) -> tuple[ByLine, dict[int, dict[str, Any] | None], dict[int, list[str]]]:
        """What the waiting patients' places need, read together: (waiting, each line's call
        rule, each line's recent call classes newest last)."""
        rows = await self._all(
            f"SELECT 'w' AS kind, id, line_id, priority, {SECONDS_SQL.format('queue_time')}"
            " AS check_in_time, NULL AS rule "
            "FROM queue_entries WHERE status = 'waiting' "
            "UNION ALL SELECT 'l', NULL, id, NULL, NULL, call_rule FROM lines "
            "UNION ALL SELECT 'h', h.call_seq, h.line_id, h.call_class, NULL, NULL FROM "
            "lines l JOIN queue_entries h ON h.id IN (SELECT id FROM queue_entries "
            "WHERE line_id = l.id AND call_seq IS NOT NULL "
            f"ORDER BY call_seq DESC LIMIT {lines.HISTORY})"
        )
        by_line: ByLine = {}
        rules: dict[int, dict[str, Any] | None] = {}
        recent: dict[int, list[tuple[int, str]]] = {}
        for row in rows:
            if row["kind"] == "w":
                by_line.setdefault(row["line_id"], []).append(
                    lines.waiting(row["id"], row["priority"], row["check_in_time"])
                )
            elif row["kind"] == "l":
                rules[row["line_id"]] = json.loads(row["rule"]) if row["rule"] else None
            else:
                recent.setdefault(row["line_id"], []).append((row["id"], row["priority"]))
        histories = {k: [c for _, c in sorted(v)] for k, v in recent.items()}
        return by_line, rules, histories

    async def create_line(self, fields: dict[str, Any], *, actor: Actor) -> Line:
        """A new line (fields checked by lines.checked_fields); last by position unless given."""

        def job(tx: Transaction) -> Line:
            count = tx.one("SELECT count(*) AS n, coalesce(max(position), 0) AS last FROM lines")
            assert count is not None
            if count["n"] >= lines.MAX_LINES:
                raise Conflict(f"A box has at most {lines.MAX_LINES} lines.", errors.TOO_MANY_LINES)
            self._prefix_free(tx, fields["prefix"], None)
            line_id = tx.insert(
                "INSERT INTO lines (prefix, name, colour, icon, active, hours, call_rule,"
                " position, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fields["prefix"],
                    json.dumps(fields["name"], ensure_ascii=False),
                    fields.get("colour", "#1f6feb"),
                    fields.get("icon"),
                    int(fields.get("active", True)),
                    _json_or_null(fields.get("hours")),
                    _json_or_null(fields.get("call_rule")),
                    fields.get("position", count["last"] + 1),
                    tx.now,
                ),
            )
            tx.audit(audit.LINE_CREATED, actor, detail={"line": line_id, **fields})
            return self._line(tx, line_id)

        return await self._write_lines(job)

    async def change_line(self, line_id: int, fields: dict[str, Any], *, actor: Actor) -> Line:
        """Changes a line's fields; NotFound, LINE_PREFIX_TAKEN, or LINE_LAST_ACTIVE when it
        would leave no active line."""

        def job(tx: Transaction) -> Line:
            current = tx.one("SELECT id, active FROM lines WHERE id = ?", (line_id,))
            if current is None:
                raise NotFound("No line has that id.", errors.LINE_NOT_FOUND)
            if "prefix" in fields:
                self._prefix_free(tx, fields["prefix"], line_id)
            if fields.get("active") is False and current["active"]:
                others = tx.one(
                    "SELECT count(*) AS n FROM lines WHERE active = 1 AND id != ?", (line_id,)
                )
                if others is not None and others["n"] == 0:
                    raise Conflict(
                        "The only active line cannot be deactivated.", errors.LINE_LAST_ACTIVE
                    )
            stored = {
                key: (
                    json.dumps(value, ensure_ascii=False)
                    if key == "name"
                    else _json_or_null(value)
                    if key in ("hours", "call_rule")
                    else int(value)
                    if key == "active"
                    else value
                )
                for key, value in fields.items()
            }
            assignments = ", ".join(f"{key} = ?" for key in stored)  # keys: lines.FIELDS only
            tx.run(f"UPDATE lines SET {assignments} WHERE id = ?", (*stored.values(), line_id))
            tx.audit(audit.LINE_CHANGED, actor, detail={"line": line_id, **fields})
            return self._line(tx, line_id)

        return await self._write_lines(job)

    @staticmethod
    def _prefix_free(tx: Transaction, prefix: str, line_id: int | None) -> None:
        taken = tx.one("SELECT id FROM lines WHERE prefix = ?", (prefix,))
        if taken is not None and taken["id"] != line_id:
            raise Conflict("Another line has that prefix.", errors.LINE_PREFIX_TAKEN)

    @staticmethod
    def _line(tx: Transaction, line_id: int) -> Line:
        row = tx.one(f"SELECT {_LINE_COLUMNS} FROM lines WHERE id = ?", (line_id,))
        assert row is not None
        return line_from_row(row)

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
            "WHERE e.completed_at >= ?1 "
            "AND e.status IN ('called', 'in_service', 'done', 'no_show') "
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

    async def entry(self, entry_id: int) -> QueueEntry | None:
        """One queue entry by its id, whatever its state (a read, no transition)."""
        row = await self._one(
            f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} WHERE e.id = ?", (entry_id,)
        )
        return None if row is None else _entry(row)

    async def visit_by_link(self, link_hash: bytes) -> tuple[QueueEntry, str] | None:
        """The visit a status link opens and the time of its last change (check-in or the
        last transition), or None for a hash no link has."""
        row = await self._one(
            f"SELECT {_ENTRY_COLUMNS}, coalesce(e.updated_at, e.check_in_time) AS changed_at"
            f" FROM {_ENTRY_FROM} JOIN visit_links v ON v.entry_id = e.id WHERE v.token_hash = ?",
            (link_hash,),
        )
        if row is None:
            return None
        return _entry(row), row["changed_at"]

    async def visits_checked_in(
        self, start: str, end: str
    ) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
        """The visits checked in between `start` and `end` (UTC), oldest first, with the
        patient's name and intake answers (either may be gone: NULL or "", after a purge), the
        line they are in now and the label of the credential that called them; and every
        transition of those visits (undone ones and undos included), by visit, oldest first,
        with each credential's label and the lines by prefix. Read for the records (history,
        exports), never for the queue: the check-in range is a scan (a day's visits are few)."""
        visits = await self._all(
            "SELECT e.id, e.patient_id, p.fname, p.intake, e.status, e.check_in_time, e.ticket,"
            " e.priority, e.room, e.call_count, l.prefix AS line, c.label AS doctor "
            "FROM queue_entries e LEFT JOIN patients p ON p.id = e.patient_id"
            " JOIN lines l ON l.id = e.line_id LEFT JOIN credentials c ON c.id = e.called_by "
            "WHERE e.check_in_time >= ? AND e.check_in_time < ? ORDER BY e.check_in_time, e.id",
            (start, end),
        )
        transitions = await self._all(
            "SELECT t.id, t.entry_id, t.at, t.action, t.from_status, t.to_status,"
            " fl.prefix AS from_line, tl.prefix AS to_line, t.room, t.undone_by,"
            " c.label AS by_label "
            "FROM queue_entries e JOIN visit_transitions t ON t.entry_id = e.id"
            " JOIN lines fl ON fl.id = t.from_line JOIN lines tl ON tl.id = t.to_line"
            " LEFT JOIN credentials c ON c.id = t.credential_id "
            "WHERE e.check_in_time >= ? AND e.check_in_time < ? ORDER BY t.entry_id, t.id",
            (start, end),
        )
        return visits, transitions

    async def open_call(self, credential_id: int) -> QueueEntry | None:
        """The visit this credential called last, while it is still theirs to finish (called,
        in service or a no-show); None once it is done, back in a queue or called by another."""
        row = await self._one(
            f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_FROM} WHERE e.called_by = ? "
            "ORDER BY e.called_at DESC, e.id DESC LIMIT 1",
            (credential_id,),
        )
        if row is None or row["status"] not in ("called", "in_service", "no_show"):
            return None
        return _entry(row)

    async def calls_between(self, windows: Sequence[tuple[str, str]]) -> dict[int, list[Call]]:
        """Each line's calls (call next, or a chosen patient) made in any of `windows` (UTC
        start, end), oldest first, with when each visit left the doctor who called it (None:
        still called or in service), the patient's class, and whether the visit had been
        called before (put back in line, a no-show who came back). Undone calls are left
        out; a recall is the same call."""
        if not windows:
            return {}
        within = " OR ".join("(t.at >= ? AND t.at < ?)" for _ in windows)
        # The span of all windows first: the index is read over four weeks, not over every
        # call ever made (an OR of ranges alone is a scan of the whole index).
        span = (min(start for start, _ in windows), max(end for _, end in windows))
        rows = await self._all(
            f"SELECT t.to_line AS line_id, {SECONDS_SQL.format('t.at')} AS at,"
            " t.credential_id AS by, (SELECT "
            f"{SECONDS_SQL.format('min(u.at)')} FROM visit_transitions u"
            " WHERE u.entry_id = t.entry_id AND u.id > t.id"
            " AND u.to_status NOT IN ('called', 'in_service')) AS ended_at,"
            " e.priority, EXISTS (SELECT 1 FROM visit_transitions b"
            " WHERE b.entry_id = t.entry_id AND b.id < t.id"
            " AND b.action IN ('call', 'complete') AND b.undone_by IS NULL) AS repeat"
            " FROM visit_transitions t JOIN queue_entries e ON e.id = t.entry_id"
            " WHERE t.action IN ('call', 'complete')"
            f" AND t.at >= ? AND t.at < ? AND t.undone_by IS NULL AND ({within})"
            " ORDER BY t.at, t.id",
            (*span, *(bound for window in windows for bound in window)),
        )
        calls: dict[int, list[Call]] = {}
        for row in rows:
            calls.setdefault(row["line_id"], []).append(
                lines.call(
                    row["at"], row["by"], row["ended_at"], row["priority"], bool(row["repeat"])
                )
            )
        return calls

    async def record_shown(self, shown: Sequence[tuple[int, int, str, int, int, int]]) -> None:
        """Ranges shown to patients: (entry_id, line_id, when, place, low, high minutes)."""
        await self.write(
            lambda tx: tx.conn.executemany(
                "INSERT INTO wait_estimates (entry_id, line_id, given_at, place, low_minutes,"
                " high_minutes) VALUES (?, ?, ?, ?, ?, ?)",
                shown,
            )
        )

    async def shown_between(self, start: str, end: str) -> list[calibration.Shown]:
        """Every range shown between start and end, with the wait until the visit's call: the
        first time it left the waiting line after being shown, when that was a call from the
        same line (an undone call does not count; the call after it does)."""
        rows = await self._all(
            "SELECT w.line_id, w.low_minutes, w.high_minutes,"
            " w.id = (SELECT min(f.id) FROM wait_estimates f WHERE f.entry_id = w.entry_id)"
            " AS first, t.action IN ('call', 'complete') AND t.to_line = w.line_id AS called,"
            f" {SECONDS_SQL.format('t.at')} - {SECONDS_SQL.format('w.given_at')} AS waited"
            " FROM wait_estimates w LEFT JOIN visit_transitions t ON t.id = ("
            "SELECT min(u.id) FROM visit_transitions u WHERE u.entry_id = w.entry_id"
            " AND u.at >= w.given_at AND u.from_status = 'waiting' AND u.undone_by IS NULL)"
            " WHERE w.given_at >= ? AND w.given_at < ? ORDER BY w.id",
            (start, end),
        )
        return [
            calibration.Shown(
                row["line_id"],
                row["low_minutes"],
                row["high_minutes"],
                bool(row["first"]),
                max(row["waited"], 0.0) if row["called"] else None,
            )
            for row in rows
        ]

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

    # --- statistics (insight.py): visits checked in between start and end, optionally of
    # one line and one calling credential; aggregated here, never a patient's name.

    @staticmethod
    def _visits_in(line_id: int | None, doctor_id: int | None) -> tuple[str, list[Any]]:
        sql = "e.check_in_time >= ? AND e.check_in_time < ?"
        params: list[Any] = []
        if line_id is not None:
            sql += " AND e.line_id = ?"
            params.append(line_id)
        if doctor_id is not None:
            sql += " AND e.called_by = ?"
            params.append(doctor_id)
        return sql, params

    async def arrival_quarters(
        self, start: str, end: str, line_id: int | None = None, doctor_id: int | None = None
    ) -> list[tuple[int, int]]:
        """Check-ins per UTC quarter hour (epoch seconds // 900, count): insight.heat_map
        turns them into the clinic's weekday and hour."""
        where, params = self._visits_in(line_id, doctor_id)
        rows = await self._all(
            "SELECT CAST(strftime('%s', e.check_in_time) AS INTEGER) / 900 AS quarter,"
            f" count(*) AS n FROM queue_entries e WHERE {where} GROUP BY quarter",
            (start, end, *params),
        )
        return [(row["quarter"], row["n"]) for row in rows]

    async def outcome_counts(
        self, start: str, end: str, line_id: int | None = None, doctor_id: int | None = None
    ) -> list[sqlite3.Row]:
        """Visits by line, calling credential (NULL: never called) and state now: line_id,
        doctor, status, n."""
        where, params = self._visits_in(line_id, doctor_id)
        return await self._all(
            "SELECT e.line_id, e.called_by AS doctor, e.status, count(*) AS n"
            f" FROM queue_entries e WHERE {where} GROUP BY e.line_id, e.called_by, e.status",
            (start, end, *params),
        )

    async def visit_time_buckets(
        self,
        start: str,
        end: str,
        line_id: int | None = None,
        doctor_id: int | None = None,
        bucket_seconds: int = 10,
    ) -> list[sqlite3.Row]:
        """Called visits counted by kind, line_id, doctor (the credential whose call the
        visit ended with) and bucket (the duration in whole `bucket_seconds`, rounded down;
        a negative one, from a clock set back, is 0), as n. Kind `waiting`: check-in to the
        first call (an undone call is not one); `service`: the start of service, or the last
        call when it was not started, to done (done visits only). Read from the times each
        visit keeps beside its moves (first_called_at, service_from, done_at: migration 0015,
        _log_transition), not from the moves: a year is one pass over 51,000 visits by the
        check-in index, not a join of 160,000 moves (bench.stats: 263 -> 121 ms). Counted
        here, not one row per visit: a few thousand groups."""
        where, params = self._visits_in(line_id, doctor_id)
        # insight.bucket's rule, half a millisecond included (julianday's float error).
        bucket = "max(0, CAST(({} + 0.0005) / ? AS INTEGER))"
        return await self._all(
            "WITH v AS MATERIALIZED (SELECT e.line_id, e.called_by AS doctor,"
            " (julianday(e.first_called_at) - julianday(e.check_in_time)) * 86400.0 AS waited,"
            " CASE WHEN e.status = 'done' THEN (julianday(e.done_at)"
            " - julianday(e.service_from)) * 86400.0 END AS served"
            f" FROM queue_entries e WHERE {where} AND e.called_by IS NOT NULL"
            " AND e.first_called_at IS NOT NULL)"
            f" SELECT 'waiting' AS kind, line_id, doctor, {bucket.format('waited')} AS bucket,"
            " count(*) AS n FROM v GROUP BY line_id, doctor, bucket"
            f" UNION ALL SELECT 'service', line_id, doctor, {bucket.format('served')} AS bucket,"
            " count(*) FROM v WHERE served IS NOT NULL GROUP BY line_id, doctor, bucket",
            (start, end, *params, bucket_seconds, bucket_seconds),
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
            f"SELECT ev.seq, ev.event, ev.at, ev.detail, {_ENTRY_COLUMNS} FROM events ev "
            "JOIN queue_entries e ON e.id = ev.entry_id JOIN patients p ON p.id = e.patient_id "
            "JOIN lines l ON l.id = e.line_id WHERE ev.seq > ? ORDER BY ev.seq LIMIT ?",
            (seq, limit),
        )
        events = []
        for row in rows:
            kind = row["event"]
            # The entry as this event left it, not as it is now.
            if row["detail"] is not None:  # a transition: its own facts
                facts = json.loads(row["detail"])
                entry = dataclasses.replace(
                    _entry(row),
                    status=facts["status"],
                    room=facts["room"],
                    call_count=facts["call_count"],
                    line_id=facts["line_id"],
                    line=facts["line"],
                )
                from_status = facts["from"]
            else:
                added = kind != PATIENT_COMPLETED  # still waiting after it
                entry = dataclasses.replace(
                    _entry(row),
                    status=EVENT_STATUS[kind],
                    called_at=None if added else row["called_at"],
                    room=None if added else row["room"],
                )
                from_status = None
            events.append(
                QueueEvent(
                    seq=row["seq"],
                    event=kind,
                    at=row["at"],
                    entry=entry,
                    from_status=from_status,
                )
            )
        return events

    async def prune_events(self, keep: int, before: str) -> int:
        """Drops events older than `before` that are not among the last `keep`."""
        return await self.write(
            lambda tx: tx.run(
                "DELETE FROM events WHERE at < ? AND seq <= (SELECT max(seq) FROM events) - ?",
                (before, keep),
            )
        )

    async def purge_identities(
        self, names_before: str, photos_before: str, actor: Actor, *, quiet: bool = False
    ) -> Purged:
        """The retention purge's one transaction, for patients whose visits are all closed:
        those checked in before `names_before` lose their name, intake answers and photo
        (the row stays, blank, with purged_at: their visits' statistics keep it); those
        before `photos_before` lose their photo. Their visits' idempotency keys go too (the
        stored answer holds the name; the body's hash can be guessed back from a name), and
        the event log's head up to the last event of a blanked patient (never the newest
        event: seq goes on from it, and replay then finds a gap and sends a snapshot). One
        audit row, counts only (`quiet`: none when nothing was purged). The photos' bytes go
        with their names (the photo_blobs migration's triggers); the caller compacts the file."""
        closed = (
            "NOT EXISTS (SELECT 1 FROM queue_entries q WHERE q.patient_id = p.id"
            f" AND q.status IN {_OPEN})"
        )
        names = f"p.purged_at IS NULL AND p.created_at < ?1 AND {closed}"
        photos = f"p.image IS NOT NULL AND p.created_at < ?2 AND {closed}"
        both = (names_before, photos_before)

        def job(tx: Transaction) -> Purged:
            images = tx.one(
                "SELECT count(*) AS n FROM patients p WHERE p.image IS NOT NULL"
                f" AND (({names}) OR ({photos}))",
                both,
            )
            assert images is not None  # count(*) always answers
            keys = tx.run(
                "DELETE FROM idempotency_keys WHERE entry_id IN (SELECT e.id FROM queue_entries"
                f" e JOIN patients p ON p.id = e.patient_id WHERE ({names}) OR ({photos}))",
                both,
            )
            last = tx.one(
                "SELECT max(ev.seq) AS seq FROM events ev JOIN queue_entries e ON"
                f" e.id = ev.entry_id JOIN patients p ON p.id = e.patient_id WHERE {names}",
                (names_before,),
            )
            events = 0
            if last is not None and last["seq"] is not None:
                events = tx.run(
                    "DELETE FROM events WHERE seq <= ? AND seq < (SELECT max(seq) FROM events)",
                    (last["seq"],),
                )
            blanked = tx.run(
                "UPDATE patients AS p SET fname = '', intake = NULL, image = NULL,"
                f" purged_at = ?3 WHERE {names}",
                (*both, tx.now),
            )
            tx.run(f"UPDATE patients AS p SET image = NULL WHERE {photos}", both)
            purged = Purged(
                names=blanked,
                photos=images["n"],
                events=events,
                idempotency_keys=keys,
                names_before=names_before,
                photos_before=photos_before,
            )
            if purged.anything or not quiet:
                tx.audit(audit.PURGE, actor, detail=purged.counts())
            return purged

        return await self.write(job)

    async def compact(self) -> bool:
        """After a purge: VACUUM rewrites the file (no page keeps the old bytes, whatever was
        freed before secure_delete was on), then a TRUNCATE checkpoint moves the new pages
        into the file and empties the WAL. False when a reader held the WAL (it is then
        emptied at a later checkpoint; the purge's next run tries again)."""

        def job(conn: sqlite3.Connection) -> bool:
            try:
                conn.execute("VACUUM")
                row = conn.execute(f"PRAGMA wal_checkpoint({self.checkpoint})").fetchone()
            except sqlite3.OperationalError as exc:  # another process held the lock too long
                log.warning("compacting after the purge failed (%s); freed space is zeroed", exc)
                return False
            return int(row["busy"]) == 0

        return await self.run_in_writer(job)

    # --- photos ----------------------------------------------------------------------

    async def photo_names(self) -> set[str]:
        """The photo names the patients' rows point at."""
        rows = await self._all("SELECT image FROM patients WHERE image IS NOT NULL")
        return {row["image"] for row in rows}

    async def photo(self, name: str) -> StoredPhoto | None:
        """A stored photo's id, size and time, without its bytes (photo_bytes reads them)."""
        row = await self._one(
            "SELECT id, length(data) AS size, created_at FROM photos WHERE name = ?", (name,)
        )
        return StoredPhoto(row["id"], row["size"], row["created_at"]) if row else None

    async def photo_bytes(self, photo_id: int, offset: int, size: int) -> bytes | None:
        """`size` bytes (fewer at the end) of a photo from `offset`, read by SQLite's
        incremental blob I/O on the reader's connection: no more than that is ever in
        memory, and the read transaction ends before this returns. None when the photo is
        gone (purged since `photo` found it)."""

        def read(conn: sqlite3.Connection) -> bytes | None:
            try:
                with conn.blobopen("photos", "data", photo_id, readonly=True) as blob:
                    blob.seek(offset)
                    return blob.read(size)
            except sqlite3.OperationalError as exc:
                if "no such rowid" in str(exc):
                    return None
                raise

        return await self._checked(self._on_reader(read))

    async def add_photos(self, found: Sequence[tuple[str, str, bytes]]) -> int:
        """Photos (name, created_at, JPEG) whose files an older box kept, in one transaction;
        one already stored is left as it is (a move a crash interrupted runs again). Returns
        how many were added."""

        def job(tx: Transaction) -> int:
            tx.release_cache = True  # pages of photos only
            return sum(
                tx.run(
                    "INSERT INTO photos (name, created_at, data) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    photo,
                )
                for photo in found
            )

        return await self.write(job)

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


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def read_audit_log(path: Path) -> Iterator[AuditEntry]:
    """Every audit row in id order, read-only (for `audit verify`, even with the server up)."""
    with inspect.read_only(path) as conn:
        yield from (
            _audit_entry(row)
            for row in conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY id")
        )
