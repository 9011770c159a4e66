"""The live feed under stress: subscribers vanishing mid-broadcast, and a stalled one."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import os
import socket
import struct

import pytest
from aiohttp import WSMsgType

from checkin_appliance.config import Config
from checkin_appliance.domain import QueueEntry, QueueEvent, Role
from checkin_appliance.web.keys import HUB
from tests.conftest import Clinic, StartClinic, raw_ws_client, wait_until

AT = "2026-01-01T00:00:00.000Z"


def event(seq: int, name_size: int = 20) -> QueueEvent:
    return QueueEvent(
        seq, "PATIENT_ADDED", AT, QueueEntry(seq, seq, "x" * name_size, None, "waiting", AT)
    )


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_half_the_subscribers_vanish_mid_broadcast(
    clinic: Clinic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    hub = clinic.app[HUB]
    path = f"/ws/queue/?token={clinic.access[Role.QUEUE]}"
    survivors = [await clinic.subscribe(Role.QUEUE) for _ in range(50)]
    doomed = [await asyncio.to_thread(raw_ws_client, clinic.client.port, path) for _ in range(50)]
    await wait_until(lambda: len(hub) == 100)
    for seq in range(1, 201):
        hub.publish(event(seq))
        if seq == 100:
            for sock in doomed:  # gone mid-stream with a reset, no close handshake
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
        if seq % 20 == 0:
            await asyncio.sleep(0)  # let writers and readers run between bursts
    for ws in survivors:
        seqs = []
        async with asyncio.timeout(10):
            while len(seqs) < 200:
                msg = await ws.receive()
                assert msg.type is WSMsgType.TEXT
                seqs.append(json.loads(msg.data)["seq"])
        assert seqs == list(range(1, 201))
    await wait_until(lambda: len(hub) == 50)
    gc.collect()
    noisy = [
        r
        for r in caplog.records
        if "never retrieved" in r.getMessage() or r.levelno >= logging.ERROR
    ]
    assert not noisy, [r.getMessage() for r in noisy]


async def test_a_stalled_reader_costs_bounded_memory_while_2000_big_events_flow(
    start_clinic: StartClinic, config: Config
) -> None:
    clinic = await start_clinic(dataclasses.replace(config, feed_queue_size=256))
    hub = clinic.app[HUB]
    readers = [await clinic.subscribe(Role.DOCTOR) for _ in range(3)]
    stalled = await asyncio.to_thread(
        raw_ws_client, clinic.client.port, f"/ws/queue/?token={clinic.access[Role.DOCTOR]}"
    )
    try:
        await wait_until(lambda: len(hub) == 4)
        before = rss_bytes()
        counts = [0] * len(readers)

        async def drain(i: int) -> None:
            while counts[i] < 2000:
                msg = await readers[i].receive()
                assert json.loads(msg.data)["seq"] == counts[i] + 1
                counts[i] += 1

        drainers = [asyncio.ensure_future(drain(i)) for i in range(len(readers))]
        async with asyncio.timeout(10):
            for seq in range(1, 2001):
                hub.publish(event(seq, name_size=10_000))  # ~10 KB each
                if seq % 32 == 0:
                    # A busy clinic, not a flood: readers that keep up stay within 128 events.
                    await wait_until(lambda seq=seq: min(counts) >= seq - 128)
            await asyncio.gather(*drainers)
        assert counts == [2000] * len(readers)
        await wait_until(lambda: len(hub) == 3)  # the stalled one was dropped
        grown = rss_bytes() - before
        assert grown < 20 * 1024 * 1024, f"grew by {grown / 1e6:.1f} MB"
    finally:
        stalled.close()
