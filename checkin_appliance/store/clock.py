"""The store's side of a clock jump: the newest time already written, and restating the
times of live sessions and open visits taken on the old clock (clock.py decides)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from checkin_appliance import audit
from checkin_appliance.clock import Jump
from checkin_appliance.domain import Actor, format_time, parse_time
from checkin_appliance.store.database import Store
from checkin_appliance.store.writer import Transaction

# A visit still in these states has times on the old clock that its durations will be
# measured against; finished visits keep theirs (all on one clock, their durations right).
OPEN_STATUSES = ("waiting", "called", "in_service")
VISIT_TIMES = (
    "check_in_time",
    "called_at",
    "completed_at",
    "updated_at",
    "queue_time",
    "first_called_at",
    "service_from",
)
_OPEN = "status IN (" + ", ".join(f"'{status}'" for status in OPEN_STATUSES) + ")"


@dataclass(frozen=True, slots=True)
class Restated:
    sessions: int
    visits: int


async def newest_stored_time(store: Store) -> datetime | None:
    """The newest time the box already wrote (the audit trail's and the event log's last
    rows): a clock behind it is wrong."""
    (row,) = await store.reader.execute_fetchall(
        "SELECT (SELECT at FROM audit_log ORDER BY id DESC LIMIT 1) AS audit,"
        " (SELECT at FROM events ORDER BY seq DESC LIMIT 1) AS event"
    )
    times = [parse_time(row[name]) for name in ("audit", "event") if row[name]]
    return max(times, default=None)


def _moved(column: str) -> str:
    """SQL: `column` moved by ?1 seconds (NULL stays NULL)."""
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {column}, ?1 || ' seconds')"


def _shift(column: str) -> str:
    """SQL: a time recorded on the old clock (at or before ?2, what it said when the jump was
    seen) moved by ?1 seconds; one recorded on the new clock meanwhile left alone."""
    return f"CASE WHEN {column} <= ?2 THEN {_moved(column)} ELSE {column} END"


async def restate_for_jump(store: Store, jump: Jump, actor: Actor) -> Restated:
    """One transaction: the expiries of sessions live on the old clock (access, refresh,
    absolute end, retired refresh tokens) and the times of open visits (and their moves)
    move by the jump, so nobody is signed out by a clock set forward, no session lives on
    after a clock set back, and a visit that straddles the correction keeps its true wait.
    Recorded in clock_jumps and the audit trail (counts only)."""
    seconds = f"{jump.delta.total_seconds():+.3f}"
    old_now = format_time(jump.before)
    params = (seconds, old_now)

    def job(tx: Transaction) -> Restated:
        # Sessions created on the old clock whose refresh had not ended by it.
        live = (
            "SELECT id FROM sessions WHERE revoked_at IS NULL AND created_at <= ?2"
            " AND refresh_expires > ?2 AND (ends_at IS NULL OR ends_at > ?2)"
        )
        # Their expiries are times to come on the old clock: all of them move.
        tx.run(
            f"UPDATE retired_refresh_tokens SET expires = {_moved('expires')}"
            f" WHERE session_id IN ({live})",
            params,
        )
        sessions = tx.run(
            f"UPDATE sessions SET ends_at = {_moved('ends_at')},"
            f" refresh_expires = {_moved('refresh_expires')},"
            # Never past the (moved) absolute end: a slide written on the new clock in the
            # seconds before the jump was seen would otherwise move twice.
            f" access_expires = min({_moved('access_expires')},"
            f" coalesce({_moved('ends_at')}, {_moved('access_expires')}))"
            f" WHERE id IN ({live})",
            params,
        )
        tx.run(
            f"UPDATE visit_transitions SET at = {_shift('at')}"
            f" WHERE entry_id IN (SELECT id FROM queue_entries WHERE {_OPEN})",
            params,
        )
        visits = tx.run(
            "UPDATE queue_entries SET "
            + ", ".join(f"{column} = {_shift(column)}" for column in VISIT_TIMES)
            + f" WHERE {_OPEN}",
            params,
        )
        tx.run(
            "INSERT INTO clock_jumps (detected_at, seconds, sessions, visits) VALUES (?, ?, ?, ?)",
            (tx.now, jump.delta.total_seconds(), sessions, visits),
        )
        tx.audit(
            audit.CLOCK_JUMP,
            actor,
            detail={
                "seconds": round(jump.delta.total_seconds(), 3),
                "sessions": sessions,
                "visits": visits,
            },
        )
        return Restated(sessions, visits)

    return await store.write(job)


def clock_jumps(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every recorded jump, oldest first (support, tests)."""
    return conn.execute("SELECT * FROM clock_jumps ORDER BY id").fetchall()
