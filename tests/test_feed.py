"""/ws/queue/: the seed's event shape, exactly-once fan-out, replay, privacy and eviction."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError, web

from checkin_appliance.config import Config
from checkin_appliance.domain import Audience, QueueEntry, QueueEvent, Role
from checkin_appliance.hub import Frame, Hub
from checkin_appliance.web.feed import text_frame
from checkin_appliance.web.keys import HUB, STORE
from tests.conftest import (
    Clinic,
    StartClinic,
    messages,
    next_message,
    raw_ws_client,
    wait_until,
)

SEED_KEYS = {"type", "event", "patient"}
OUR_KEYS = {"seq", "id", "check_in_time", "at", "ticket", "line", "priority"}


async def test_events_have_the_seed_shape_plus_our_keys(clinic: Clinic) -> None:
    ws = await clinic.subscribe(Role.DOCTOR)
    added = await clinic.check_in("John Doe")
    called = await clinic.call_next()
    assert called.status == 200
    first, second = await messages(ws, 2)
    assert set(first) == SEED_KEYS | OUR_KEYS
    assert first["type"] == "send.queue.update"
    assert first["event"] == "PATIENT_ADDED"
    assert first["patient"] == {
        "id": added["id"],
        "fname": "John Doe",
        "status": "waiting",
        "image": None,
    }
    assert list(first["patient"]) == ["id", "fname", "status", "image"]
    assert first["id"] == added["queue_entry_id"]
    assert first["check_in_time"] == added["check_in_time"]
    assert set(second) == SEED_KEYS | OUR_KEYS | {"room"}
    assert second["event"] == "PATIENT_COMPLETED"
    assert second["patient"] == {
        "id": added["id"],
        "fname": "John Doe",
        "status": "completed",
        "image": None,
    }
    assert second["seq"] == first["seq"] + 1
    assert second["at"] >= first["at"]


async def test_twenty_subscribers_each_see_every_event_once_in_order(clinic: Clinic) -> None:
    sockets = [await clinic.subscribe(Role.QUEUE) for _ in range(20)]
    await asyncio.gather(*(clinic.check_in(f"Patient {i} Test") for i in range(15)))
    for _ in range(5):
        assert (await clinic.call_next()).status == 200
    seen = await asyncio.gather(*(messages(ws, 20) for ws in sockets))
    reference = [m["seq"] for m in seen[0]]
    assert reference == sorted(reference) and len(set(reference)) == 20
    for stream in seen:
        assert [m["seq"] for m in stream] == reference
        assert [m["event"] for m in stream].count("PATIENT_ADDED") == 15
    # Nothing more arrives: no duplicates.
    for ws in sockets:
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.2)


async def test_wall_display_gets_reduced_names_and_no_photo(clinic: Clinic) -> None:
    display = await clinic.subscribe(Role.QUEUE)
    kiosk = await clinic.subscribe(Role.FORM)  # faces the patients: a display's view too
    staff = await clinic.subscribe(Role.DOCTOR)
    await clinic.check_in("Mary Ann Smith")
    shown, at_kiosk = await next_message(display), await next_message(kiosk)
    full = await next_message(staff)
    assert shown["patient"]["fname"] == at_kiosk["patient"]["fname"] == "Mary S."
    assert full["patient"]["fname"] == "Mary Ann Smith"
    assert shown["seq"] == at_kiosk["seq"] == full["seq"]


async def test_privacy_settings_apply_to_the_feed_at_once(clinic: Clinic) -> None:
    display = await clinic.subscribe(Role.QUEUE)
    resp = await clinic.client.patch(
        "/api/settings/", json={"display_names": "full"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    await clinic.check_in("Mary Ann Smith")
    assert (await next_message(display))["patient"]["fname"] == "Mary Ann Smith"


# --- snapshot and replay ----------------------------------------------------------------


async def test_snapshot_then_live_events_without_gap_or_duplicate(clinic: Clinic) -> None:
    for i in range(3):
        await clinic.check_in(f"Early Bird{i}")
    # Writes keep landing while subscribers connect: each must see a consistent cut.
    writer = asyncio.ensure_future(
        asyncio.gather(*(clinic.check_in(f"Late Comer{i}") for i in range(10)))
    )
    sockets = [await clinic.subscribe(Role.DOCTOR, "snapshot=1") for _ in range(5)]
    await writer
    for ws in sockets:
        snapshot = await next_message(ws)
        assert snapshot["type"] == "send.queue.update"
        assert snapshot["event"] == "QUEUE_SNAPSHOT"
        names = [item["patient"]["fname"] for item in snapshot["queue"]]
        live: list[dict[str, Any]] = []
        while len(names) + len(live) < 13:
            live.append(await next_message(ws))
        assert [m["seq"] for m in live] == list(
            range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(live))
        )
        names += [m["patient"]["fname"] for m in live]
        assert sorted(names) == sorted(
            [f"Early Bird{i}" for i in range(3)] + [f"Late Comer{i}" for i in range(10)]
        )


async def test_snapshot_items_match_the_rest_queue(clinic: Clinic) -> None:
    await clinic.check_in("John Doe")
    ws = await clinic.subscribe(Role.QUEUE, "snapshot=1")
    snapshot = await next_message(ws)
    rest = await (await clinic.client.get("/api/queue/", headers=clinic.headers(Role.QUEUE))).json()
    assert snapshot["queue"] == rest
    assert rest[0]["patient"]["fname"] == "John D."


async def test_since_replays_what_was_missed_across_a_restart(
    clinic: Clinic, start_clinic: StartClinic
) -> None:
    ws = await clinic.subscribe(Role.DOCTOR)
    await clinic.check_in("Seen Before")
    last_seen = (await next_message(ws))["seq"]
    await ws.close()
    # Missed while the display was offline:
    await clinic.check_in("Missed One")
    assert (await clinic.call_next()).status == 200
    tokens = dict(clinic.tokens)
    await clinic.client.close()

    again = await start_clinic(tokens=tokens)
    await again.check_in("Missed Two")  # after the restart, before the reconnect
    ws = await again.subscribe(Role.DOCTOR, f"since={last_seen}")
    replayed = await messages(ws, 3)
    assert [m["seq"] for m in replayed] == [last_seen + 1, last_seen + 2, last_seen + 3]
    assert [(m["event"], m["patient"]["fname"]) for m in replayed] == [
        ("PATIENT_ADDED", "Missed One"),
        ("PATIENT_COMPLETED", "Seen Before"),
        ("PATIENT_ADDED", "Missed Two"),
    ]
    await again.check_in("Live Now")
    live = await next_message(ws)
    assert live["seq"] == last_seen + 4 and live["patient"]["fname"] == "Live Now"
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive(timeout=0.2)


async def test_since_with_concurrent_writes_has_no_gap(clinic: Clinic) -> None:
    for i in range(5):
        await clinic.check_in(f"Before {i}")
    writer = asyncio.ensure_future(
        asyncio.gather(*(clinic.check_in(f"During {i}") for i in range(20)))
    )
    ws = await clinic.subscribe(Role.DOCTOR, "since=2")
    await writer
    got = await messages(ws, 23)
    assert [m["seq"] for m in got] == list(range(3, 26))


async def test_since_older_than_the_log_sends_a_snapshot(clinic: Clinic) -> None:
    for i in range(8):
        await clinic.check_in(f"Patient {i}")
    removed = await clinic.app[STORE].prune_events(keep=3, before="9999-01-01T00:00:00.000Z")
    assert removed == 5
    ws = await clinic.subscribe(Role.DOCTOR, "since=1")
    first = await next_message(ws)
    assert first["event"] == "QUEUE_SNAPSHOT"
    assert first["seq"] == 8 and len(first["queue"]) == 8
    # Still replayable: the oldest kept event is 6, so since=5 replays 6..8.
    ws2 = await clinic.subscribe(Role.DOCTOR, "since=5")
    assert [m["seq"] for m in await messages(ws2, 3)] == [6, 7, 8]


async def test_since_ahead_of_the_log_sends_a_snapshot(clinic: Clinic) -> None:
    await clinic.check_in("Only One")
    ws = await clinic.subscribe(Role.DOCTOR, "since=500")
    first = await next_message(ws)
    assert first["event"] == "QUEUE_SNAPSHOT" and first["seq"] == 1


@pytest.mark.parametrize("query", ["since=-1", "since=abc", "since=1.5", "since=" + "9" * 30])
async def test_bad_since_is_400_before_the_handshake(clinic: Clinic, query: str) -> None:
    with pytest.raises(WSServerHandshakeError) as info:
        await clinic.subscribe(Role.QUEUE, query)
    assert info.value.status == 400


# --- who may subscribe ------------------------------------------------------------------


async def test_anonymous_and_bad_tokens_are_refused_with_401(clinic: Clinic) -> None:
    for url in ("/ws/queue/", "/ws/queue/?token=wrong"):
        resp = await clinic.client.get(
            url,
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert resp.status == 401
        assert "detail" in await resp.json()


async def test_anonymous_feed_when_the_operator_enables_it(clinic: Clinic) -> None:
    with pytest.raises(WSServerHandshakeError):
        await clinic.subscribe(None)
    await clinic.client.patch(
        "/api/settings/", json={"anonymous_feed": True}, headers=clinic.headers(Role.ADMIN)
    )
    ws = await clinic.subscribe(None)
    await clinic.check_in("John Doe")
    assert (await next_message(ws))["patient"]["fname"] == "John D."


async def test_turning_the_anonymous_feed_off_closes_open_anonymous_feeds_at_once(
    clinic: Clinic,
) -> None:
    """Not at the next minute's look at the store: the check-in right after the admin's
    change must not reach the token-less feed (issue 13, item 12)."""
    admin = clinic.headers(Role.ADMIN)
    await clinic.client.patch("/api/settings/", json={"anonymous_feed": True}, headers=admin)
    anonymous = await clinic.subscribe(None)
    staff = await clinic.subscribe(Role.QUEUE)
    resp = await clinic.client.patch(
        "/api/settings/", json={"anonymous_feed": False}, headers=admin
    )
    assert resp.status == 200
    await clinic.check_in("After Off")
    msg = await anonymous.receive(timeout=3)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 4403)
    assert (await next_message(staff))["event"] == "PATIENT_ADDED"  # tokens keep their feed


async def test_cookie_feed_needs_our_origin(clinic: Clinic) -> None:
    cookie = {"Cookie": f"checkin_session={clinic.access[Role.QUEUE]}"}
    origin = f"http://{clinic.client.host}:{clinic.client.port}"
    ws = await clinic.client.ws_connect("/ws/queue/", headers={**cookie, "Origin": origin})
    await clinic.check_in("John Doe")
    assert (await next_message(ws))["event"] == "PATIENT_ADDED"
    with pytest.raises(WSServerHandshakeError) as info:
        await clinic.client.ws_connect(
            "/ws/queue/", headers={**cookie, "Origin": "http://evil.example"}
        )
    assert info.value.status == 403


async def test_deactivating_a_credential_closes_its_feeds_with_4403(clinic: Clinic) -> None:
    token = await clinic.add_credential(Role.QUEUE, "TV 2")
    victim = await clinic.client.ws_connect(f"/ws/queue/?token={await clinic.login(token)}")
    bystander = await clinic.subscribe(Role.QUEUE)
    resp = await clinic.client.post(
        f"/api/credentials/{token}/deactivate/", headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    msg = await victim.receive(timeout=3)
    assert msg.type is WSMsgType.CLOSE and victim.close_code == 4403
    await clinic.check_in("Still Flowing")
    assert (await next_message(bystander))["event"] == "PATIENT_ADDED"


async def test_logout_closes_that_sessions_feed(clinic: Clinic) -> None:
    ws = await clinic.subscribe(Role.FORM)
    await clinic.client.post("/api/logout/", headers=clinic.headers(Role.FORM))
    msg = await ws.receive(timeout=3)
    assert msg.type is WSMsgType.CLOSE and ws.close_code == 4403


# --- a socket's life --------------------------------------------------------------------


async def test_client_messages_are_ignored_and_big_frames_close(clinic: Clinic) -> None:
    ws = await clinic.subscribe(Role.QUEUE)
    await ws.send_str("hello")
    await clinic.check_in("John Doe")
    assert (await next_message(ws))["event"] == "PATIENT_ADDED"
    await ws.send_str("x" * 100_000)
    msg = await ws.receive(timeout=3)
    assert msg.type is WSMsgType.CLOSE and ws.close_code == 1009


async def test_heartbeat_drops_a_peer_that_stops_answering(
    start_clinic: StartClinic, config: Config
) -> None:
    clinic = await start_clinic(dataclasses.replace(config, heartbeat=0.2))
    ws = await clinic.client.ws_connect(
        f"/ws/queue/?token={clinic.access[Role.QUEUE]}", autoping=False
    )
    async with asyncio.timeout(5):
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            assert msg.type is WSMsgType.PING
    await wait_until(lambda: len(clinic.app[HUB]) == 0)


async def test_shutdown_closes_feeds_with_going_away(clinic: Clinic) -> None:
    ws = await clinic.subscribe(Role.QUEUE)
    closing = asyncio.create_task(ws.receive(timeout=5))
    await clinic.client.server.close()
    msg = await closing
    # The code the server sent; the client's own reply may then find the socket gone.
    assert msg.type is WSMsgType.CLOSE and msg.data == 1001


async def test_a_stalled_subscriber_is_dropped_and_the_others_keep_up(
    start_clinic: StartClinic, config: Config
) -> None:
    clinic = await start_clinic(dataclasses.replace(config, feed_queue_size=16))
    hub = clinic.app[HUB]
    healthy = await clinic.subscribe(Role.DOCTOR)
    stalled = await asyncio.to_thread(
        raw_ws_client, clinic.client.port, f"/ws/queue/?token={clinic.access[Role.DOCTOR]}"
    )
    try:
        await wait_until(lambda: len(hub) == 2)
        entry = QueueEntry(1, 1, "x" * 10_000, None, "waiting", "2026-01-01T00:00:00.000Z")
        received = 0
        # Publish 10 KB events straight into the hub until the stalled peer is dropped.
        for seq in range(1, 2001):
            hub.publish(QueueEvent(seq, "PATIENT_ADDED", "2026-01-01T00:00:00.000Z", entry))
            msg = json.loads((await healthy.receive(timeout=5)).data)
            assert msg["seq"] == seq
            received += 1
            if len(hub) == 1:
                break
        assert len(hub) == 1, "the stalled subscriber was never dropped"
        assert received < 2000
        # The healthy one keeps receiving afterwards, and the feed still serves newcomers.
        hub.publish(QueueEvent(seq + 1, "PATIENT_ADDED", "2026-01-01T00:00:00.000Z", entry))
        assert (await next_message(healthy))["seq"] == seq + 1
        newcomer = await clinic.subscribe(Role.QUEUE, "snapshot=1")
        assert (await next_message(newcomer))["event"] == "QUEUE_SNAPSHOT"
    finally:
        stalled.close()


async def test_snapshot_carries_todays_recent_calls_with_rooms(clinic: Clinic) -> None:
    token = await clinic.add_credential(Role.DOCTOR, "Dr. Lee", room="Room 3")
    access = await clinic.login(token)
    for name in ("Ann Lee", "Bo Chen", "Cy Diaz"):
        await clinic.check_in(name)
    for _ in range(2):
        resp = await clinic.client.post(
            "/api/doctors/",
            json={"action": "call_next"},
            headers={"Authorization": f"Bearer {access}"},
        )
        assert resp.status == 200
    ws = await clinic.subscribe(Role.QUEUE, "snapshot=1")
    snapshot = await next_message(ws)
    assert [item["patient"]["fname"] for item in snapshot["queue"]] == ["Cy D."]
    assert [(c["patient"]["fname"], c["room"]) for c in snapshot["called"]] == [
        ("Bo C.", "Room 3"),
        ("Ann L.", "Room 3"),
    ]
    assert all(c["status"] == "completed" and c["called_at"] for c in snapshot["called"])


async def test_replayed_events_show_the_entry_as_each_event_left_it(clinic: Clinic) -> None:
    token = await clinic.add_credential(Role.DOCTOR, "Dr. Lee", room="Room 3")
    access = await clinic.login(token)
    await clinic.check_in("Ann Lee")
    await clinic.client.post(
        "/api/doctors/", json={"action": "call_next"}, headers={"Authorization": f"Bearer {access}"}
    )
    ws = await clinic.subscribe(Role.DOCTOR, "since=0")
    added, completed = await messages(ws, 2)
    assert added["patient"]["status"] == "waiting" and "room" not in added
    assert completed["patient"]["status"] == "completed" and completed["room"] == "Room 3"


async def test_staff_can_ask_for_the_wall_display_view_but_not_the_reverse(clinic: Clinic) -> None:
    admin_preview = await clinic.subscribe(Role.ADMIN, "view=display")
    display_asking = await clinic.subscribe(Role.QUEUE, "view=staff")
    await clinic.check_in("Mary Ann Smith")
    assert (await next_message(admin_preview))["patient"]["fname"] == "Mary S."
    assert (await next_message(display_asking))["patient"]["fname"] == "Mary S."


@pytest.mark.parametrize("size", [5, 125, 126, 65535, 65536, 200_000])
async def test_frames_of_every_length_form_reach_a_real_client(
    aiohttp_client: Any, size: int
) -> None:
    """A frame delivered to a subscriber arrives whole, whichever length form it needs."""
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8, exactly `size` bytes
    hub = Hub()

    async def no_backlog() -> int:
        return 0

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        sub = hub.subscribe(ws, Audience.DISPLAY)
        hub.start_writer(sub, no_backlog)
        assert sub.deliver(Frame.of(1, text))
        try:
            async for _ in ws:  # until the client has it and closes
                pass
        finally:
            hub.unsubscribe(sub)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/", max_msg_size=0)
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT and json.loads(msg.data) == text
    await ws.close()


@pytest.mark.parametrize("size", [5, 125, 126, 65535, 65536, 200_000])
async def test_frames_written_straight_to_sockets_parse_in_a_real_client(
    aiohttp_client: Any, size: int
) -> None:
    """The fast path writes its own frames past aiohttp's writer: every length form must parse."""
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8, exactly `size` bytes

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        request.transport.write(text_frame(Frame.of(1, text).data))
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/", max_msg_size=0)
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT and json.loads(msg.data) == text
