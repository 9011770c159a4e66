"""The store's group commit: writes queued together share a transaction, yet each keeps its
own outcome, and events reach subscribers after the commit, in order.

The writer thread is held on a gate so that the writes under test are all queued before it
takes the next batch: they then share one transaction, whatever the machine's timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from checkin_appliance import audit
from checkin_appliance.domain import CLI, PATIENT_ADDED, PATIENT_COMPLETED, Actor, QueueEvent
from checkin_appliance.store import Store
from checkin_appliance.store.database import read_audit_log

TIMEOUT = 10.0


@pytest.fixture
def published() -> list[QueueEvent]:
    return []


@pytest.fixture
async def store(tmp_path: Path, published: list[QueueEvent]) -> AsyncIterator[Store]:
    store = Store(tmp_path / "checkin.db", on_event=published.append)
    await store.open()
    yield store
    await store.close()


class Gate:
    """Holds the writer thread until opened: what is queued meanwhile forms one batch."""

    def __init__(self, store: Store) -> None:
        self.opened = threading.Event()
        self.waiting = threading.Event()
        self.held = asyncio.ensure_future(store.run_in_writer(self._hold))

    def _hold(self, _conn: object) -> None:
        self.waiting.set()
        self.opened.wait(TIMEOUT)

    async def __aenter__(self) -> Gate:
        await asyncio.to_thread(self.waiting.wait, TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.opened.set()
        await asyncio.wait_for(self.held, TIMEOUT)


async def trace(store: Store) -> list[str]:
    """The statements the writer's connection runs from now on."""
    statements: list[str] = []
    await store.run_in_writer(lambda conn: conn.set_trace_callback(statements.append))
    return statements


async def test_one_failing_write_fails_alone_and_the_others_commit(
    store: Store, published: list[QueueEvent]
) -> None:
    # No such credential: the patient row is written, then the queue entry breaks a
    # foreign key. That write must leave nothing behind, and take nobody else with it:
    # neither the ten committed in the same transaction before it (the first attempt runs
    # them and is rolled back) nor the five after it.
    statements = await trace(store)
    stranger = Actor(999, "127.0.0.1")
    async with Gate(store):
        first = [
            asyncio.ensure_future(store.check_in(f"patient {n}", None, CLI)) for n in range(10)
        ]
        await asyncio.sleep(0)  # queued before the broken write
        broken = asyncio.ensure_future(store.check_in("nobody", None, stranger))
        await asyncio.sleep(0)
        last = [asyncio.ensure_future(store.check_in(f"late {n}", None, CLI)) for n in range(5)]
        done = asyncio.ensure_future(asyncio.gather(*first, *last))
        await asyncio.sleep(0)  # every write reaches the queue
    with pytest.raises(sqlite3.IntegrityError):
        await asyncio.wait_for(broken, TIMEOUT)
    results = await asyncio.wait_for(done, TIMEOUT)
    # One batch: the ten ran, the eleventh failed, all was rolled back and run again.
    rollback = statements.index("ROLLBACK")
    assert [s.startswith("INSERT INTO patients") for s in statements[:rollback]].count(True) == 11
    assert statements.count("BEGIN IMMEDIATE") == 2 and statements.count("COMMIT") == 1

    names = [*(f"patient {n}" for n in range(10)), *(f"late {n}" for n in range(5))]
    assert [position for _, position, _ in results] == list(range(1, 16))
    assert [entry.fname for entry in await store.waiting()] == names
    assert [event.seq for event in published] == list(range(1, 16))
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM patients").fetchone() == (15,)
    # The failed write's audit row went with it; the chain still verifies.
    verdict = audit.verify(read_audit_log(store.path), audit.load_key(store.path.parent))
    assert verdict.ok and verdict.count == 15


async def test_writes_queued_together_share_one_transaction(store: Store) -> None:
    statements = await trace(store)
    async with Gate(store):
        writes = [store.check_in(f"patient {n}", None, CLI) for n in range(20)]
        pending = asyncio.ensure_future(asyncio.gather(*writes))
        await asyncio.sleep(0)  # let every write reach the queue
    await asyncio.wait_for(pending, TIMEOUT)
    assert statements.count("BEGIN IMMEDIATE") == statements.count("COMMIT") == 1
    assert len(await store.waiting()) == 20


async def test_a_write_given_up_before_it_started_is_not_run(
    store: Store, published: list[QueueEvent]
) -> None:
    async with Gate(store):
        kept = asyncio.ensure_future(store.check_in("kept", None, CLI))
        dropped = asyncio.ensure_future(store.check_in("dropped", None, CLI))
        await asyncio.sleep(0)
        dropped.cancel()
    await asyncio.wait_for(kept, TIMEOUT)
    assert [entry.fname for entry in await store.waiting()] == ["kept"]
    assert len(published) == 1


async def test_close_waits_for_the_writes_already_queued(tmp_path: Path) -> None:
    store = Store(tmp_path / "checkin.db")
    await store.open()
    writes = asyncio.ensure_future(
        asyncio.gather(*(store.check_in(f"patient {n}", None, CLI) for n in range(30)))
    )
    await asyncio.sleep(0)
    await asyncio.wait_for(store.close(), TIMEOUT)
    await asyncio.wait_for(writes, TIMEOUT)

    reopened = Store(tmp_path / "checkin.db")
    await reopened.open()
    try:
        assert len(await reopened.waiting()) == 30
    finally:
        await reopened.close()


# --- durability and commit-then-publish -------------------------------------------------------


async def test_the_writer_commits_with_a_full_fsync_in_wal_mode(store: Store) -> None:
    # SIGKILL keeps the page cache, so the crash tests cannot see synchronous=NORMAL: a power
    # cut can (the last transactions of a WAL database are lost). Ask the connection itself.
    def pragmas(conn: sqlite3.Connection) -> tuple[int, str]:
        synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        return synchronous, conn.execute("PRAGMA journal_mode").fetchone()[0]

    assert await store.run_in_writer(pragmas) == (2, "wal")  # 2: FULL


async def test_an_event_reaches_subscribers_only_after_its_transaction_commits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkin.db"
    seen: list[tuple[int, int]] = []

    def on_event(event: QueueEvent) -> None:
        # An independent connection sees only committed data: the event's own row, and the
        # patient it names, must already be there when a subscriber hears of it.
        with contextlib.closing(sqlite3.connect(path)) as conn:
            (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            (patients,) = conn.execute(
                "SELECT count(*) FROM patients WHERE id = ?", (event.entry.patient_id,)
            ).fetchone()
        seen.append((event.seq, last if patients else -1))

    store = Store(path, on_event=on_event)
    await store.open()
    try:
        async with Gate(store):
            writes = asyncio.ensure_future(
                asyncio.gather(*(store.check_in(f"patient {n}", None, CLI) for n in range(5)))
            )
            await asyncio.sleep(0)
        await asyncio.wait_for(writes, TIMEOUT)
        assert [seq for seq, _ in seen] == [1, 2, 3, 4, 5]
        assert all(last >= seq for seq, last in seen), seen
    finally:
        await store.close()


async def test_no_event_is_published_for_a_write_that_rolls_back(
    store: Store, published: list[QueueEvent]
) -> None:
    entry, _, _ = await store.check_in("Ann Lee", None, CLI)
    published.clear()

    def fails_after_recording(tx: Any) -> None:
        tx.record(PATIENT_COMPLETED, entry)  # the event is written, then the write fails
        raise LookupError("fails after its event")

    # Alone, and in a batch between writes that commit.
    with pytest.raises(LookupError):
        await asyncio.wait_for(store.write(fails_after_recording), TIMEOUT)
    assert published == []
    async with Gate(store):
        before = asyncio.ensure_future(store.check_in("Bob Stone", None, CLI))
        await asyncio.sleep(0)
        failing = asyncio.ensure_future(store.write(fails_after_recording))
        await asyncio.sleep(0)
        after = asyncio.ensure_future(store.check_in("Cara Diaz", None, CLI))
        await asyncio.sleep(0)
    with pytest.raises(LookupError):
        await asyncio.wait_for(failing, TIMEOUT)
    await asyncio.wait_for(asyncio.gather(before, after), TIMEOUT)
    assert [(e.event, e.entry.fname) for e in published] == [
        (PATIENT_ADDED, "Bob Stone"),
        (PATIENT_ADDED, "Cara Diaz"),
    ]
    # Nor is it in the log a reconnecting client replays.
    assert [e.event for e in await store.events_after(0)] == [PATIENT_ADDED] * 3
    assert [e.fname for e in await store.waiting()] == ["Ann Lee", "Bob Stone", "Cara Diaz"]
