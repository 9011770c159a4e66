"""The store's group commit: writes queued together share a transaction, yet each keeps its
own outcome, and events reach subscribers after the commit, in order.

The writer thread is held on a gate so that the writes under test are all queued before it
takes the next batch: they then share one transaction, whatever the machine's timing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from checkin_appliance import audit
from checkin_appliance.domain import CLI, Actor, QueueEvent
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
    # foreign key. That write must leave nothing behind, and take nobody else with it.
    stranger = Actor(999, "127.0.0.1")
    async with Gate(store):
        first = [store.check_in(f"patient {n}", None, CLI) for n in range(10)]
        broken = asyncio.ensure_future(store.check_in("nobody", None, stranger))
        last = [store.check_in(f"late {n}", None, CLI) for n in range(5)]
        done = asyncio.ensure_future(asyncio.gather(*first, *last))
        await asyncio.sleep(0)  # every write reaches the queue
    with pytest.raises(sqlite3.IntegrityError):
        await asyncio.wait_for(broken, TIMEOUT)
    results = await asyncio.wait_for(done, TIMEOUT)

    names = [*(f"patient {n}" for n in range(10)), *(f"late {n}" for n in range(5))]
    assert [position for _, position, _ in results] == list(range(1, 16))
    assert [entry.fname for entry in await store.waiting()] == names
    assert [event.seq for event in published] == list(range(1, 16))
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM patients").fetchone() == (15,)
    # The failed write's audit row went with it; the chain still verifies.
    verdict = audit.verify(read_audit_log(store.path))
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
