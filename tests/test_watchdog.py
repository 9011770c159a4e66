"""The systemd watchdog pings only while the event loop and the database writer both work."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checkin_appliance.app import create_app
from checkin_appliance.config import Config
from checkin_appliance.store.writer import Transaction
from checkin_appliance.web import api
from checkin_appliance.web.keys import STORE

INTERVAL = 0.5  # WATCHDOG_USEC=1000000: a ping every half second


async def pings_within(sock: socket.socket, seconds: float) -> list[str]:
    """The WATCHDOG=1 datagrams that arrive within `seconds`."""
    loop = asyncio.get_running_loop()
    got: list[str] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = (await loop.sock_recv(sock, 4096)).decode()
                if message == "WATCHDOG=1":
                    got.append(message)
    except TimeoutError:
        pass
    return got


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's notify socket, as the unit's WatchdogSec=1 would set it (a ping every 0.5 s)."""
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    with sock:
        yield sock


async def test_a_wedged_writer_stops_the_pings_and_a_free_one_resumes_them(
    aiohttp_client: Any, config: Config, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await aiohttp_client(create_app(config))
    release = threading.Event()
    try:
        assert len(await pings_within(listener, 3 * INTERVAL)) >= 2

        def wedge(tx: Transaction) -> None:
            release.wait(30)  # a writer stuck in a write, e.g. on a hung disk

        stuck = asyncio.ensure_future(client.app[STORE].write(wedge))
        await pings_within(listener, INTERVAL)  # one already on its way may still arrive
        assert await pings_within(listener, 4 * INTERVAL) == []
        # The loop itself turned meanwhile (it ran this test): the writer stopped the pings.
        # A monitor asking /healthz meanwhile gets its answer, not a hang.
        monkeypatch.setattr(api, "HEALTH_WRITE_TIMEOUT", 0.5)
        resp = await asyncio.wait_for(client.get("/healthz"), 5)
        assert resp.status == 503, await resp.text()
        assert (await resp.json())["code"] == "database_unavailable"

        release.set()
        await asyncio.wait_for(stuck, 5)
        assert len(await pings_within(listener, 3 * INTERVAL)) >= 2
    finally:
        release.set()


async def test_a_long_statement_keeps_the_pings_going(
    aiohttp_client: Any, config: Config, listener: socket.socket
) -> None:
    """A writer busy inside one long statement (a VACUUM of a big database after a purge)
    makes progress: the service must not be restarted in the middle of it."""
    client = await aiohttp_client(create_app(config))
    store = client.app[STORE]
    stop = threading.Event()

    def long_statement(tx: Transaction) -> None:
        # A statement that runs until told to stop (bounded: 30 s at most).
        deadline = time.monotonic() + 30
        tx.conn.create_function(
            "go_on", 0, lambda: not stop.is_set() and time.monotonic() < deadline
        )
        tx.conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE go_on()) "
            "SELECT count(*) FROM n"
        ).fetchone()

    try:
        assert len(await pings_within(listener, 3 * INTERVAL)) >= 2
        busy = asyncio.ensure_future(store.write(long_statement))
        await pings_within(listener, INTERVAL)
        # Round trips cannot pass the statement, yet the pings go on.
        assert len(await pings_within(listener, 4 * INTERVAL)) >= 3
        assert not busy.done()
        stop.set()
        await asyncio.wait_for(busy, 10)
    finally:
        stop.set()
