"""The patient's status link (issue 17): /v/<token> and its JSON, its live stream (SSE) and
its QR, through the real app on a real database: what it shows (never a name), how long it
works (the store's clock moved, no sleeps), that it opens nothing else, and the plain-HTTP
port with TLS on."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from checkin_appliance.app import close_the_day_if_due, create_redirect_app
from checkin_appliance.config import Config
from checkin_appliance.domain import Role, format_time
from checkin_appliance.web.keys import STATUS_FEED, STORE
from tests.conftest import EVENT_TIMEOUT, Clinic, StartClinic, wait_until

STATUS_URL = re.compile(r"\Ahttp://127\.0\.0\.1:[0-9]+/v/([A-Za-z0-9_-]{22})\Z")
NAMES = ("Ann Example", "Bob Sample", "Cy Person")


def token_of(checked_in: dict[str, Any]) -> str:
    match = STATUS_URL.match(checked_in["status_url"])
    assert match, checked_in["status_url"]
    return match.group(1)


async def status(clinic: Clinic, token: str) -> tuple[int, dict[str, Any]]:
    resp = await clinic.client.get(f"/v/{token}/status")
    return resp.status, await resp.json()


async def act(clinic: Clinic, action: str, patient_id: int, **fields: Any) -> dict[str, Any]:
    resp = await clinic.client.post(
        "/api/doctors/",
        json={"action": action, "patient_id": patient_id, **fields},
        headers=clinic.headers(Role.DOCTOR),
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


class Events:
    """An SSE client on /v/<token>/events: the `data:` messages, as JSON, one at a time."""

    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp
        self.retry: int | None = None
        self.comments = 0

    async def next(self, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                line = await self.resp.content.readline()
                if not line:
                    raise EOFError("the stream ended")
                text = line.decode().rstrip("\n")
                if text.startswith("retry: "):
                    self.retry = int(text[7:])
                elif text.startswith(":"):
                    self.comments += 1
                elif text.startswith("data: "):
                    return json.loads(text[6:])

    async def ended(self, timeout: float = EVENT_TIMEOUT) -> bool:
        async with asyncio.timeout(timeout):
            while line := await self.resp.content.readline():
                assert not line.startswith(b"data: "), line
        return True


async def events(clinic: Clinic, token: str) -> Events:
    resp = await clinic.client.get(f"/v/{token}/events")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    return Events(resp)


@pytest.fixture
async def doctor_room(clinic: Clinic) -> Clinic:
    """The clinic's doctor credential calls from Room 3."""
    token = await clinic.add_credential(Role.DOCTOR, "Dr Lee", "Room 3")
    clinic.access[Role.DOCTOR] = await clinic.login(token)
    return clinic


async def test_the_check_in_answer_carries_a_status_link_of_128_bits(clinic: Clinic) -> None:
    ann = await clinic.check_in("Ann Example")
    bob = await clinic.check_in("Bob Sample")
    assert token_of(ann) != token_of(bob)
    # Only the SHA-256 is stored: the token itself is nowhere in the database.
    conn = sqlite3.connect(clinic.app[STORE].path)
    try:
        rows = conn.execute("SELECT entry_id, token_hash FROM visit_links ORDER BY 1").fetchall()
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert [r[0] for r in rows] == [ann["queue_entry_id"], bob["queue_entry_id"]]
    assert all(len(r[1]) == 32 for r in rows)
    assert token_of(ann) not in dump and token_of(bob) not in dump


async def test_the_status_shows_the_visit_and_never_a_name_or_photo(doctor_room: Clinic) -> None:
    clinic = doctor_room
    people = [await clinic.check_in(name) for name in NAMES]
    code, body = await status(clinic, token_of(people[2]))
    assert code == 200
    assert body == {
        "ticket": people[2]["ticket"],
        "line": body["line"],
        "status": "waiting",
        "place": 3,
        "room": None,
        "call_count": 0,
        "estimate": None,
    }
    assert body["line"]["prefix"] == people[2]["line"] and body["line"]["name"]
    text = json.dumps(body)
    for name in NAMES:
        assert name not in text and name.split()[0] not in text
    assert "image" not in text and "patient" not in text and "id" not in body

    # Another visit's link shows that visit, never this one.
    _, other = await status(clinic, token_of(people[0]))
    assert other["ticket"] == people[0]["ticket"] and other["place"] == 1

    await clinic.call_next()
    _, called = await status(clinic, token_of(people[0]))
    assert (called["status"], called["room"], called["place"]) == ("called", "Room 3", None)
    _, moved = await status(clinic, token_of(people[2]))
    assert moved["place"] == 2


async def test_the_page_and_the_qr_code(clinic: Clinic) -> None:
    ann = await clinic.check_in("Ann Example")
    token = token_of(ann)
    page = await clinic.client.get(f"/v/{token}")
    html = await page.text()
    assert page.status == 200 and "Ann" not in html
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in page.headers
    qr = await clinic.client.get(f"/v/{token}/qr.svg")
    svg = await qr.text()
    assert qr.status == 200 and qr.headers["Content-Type"] == "image/svg+xml"
    assert svg.lstrip().startswith("<svg") and "viewBox" in svg
    assert qr.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "token",
    [
        "A" * 22,  # well formed, never made
        "short",
        "A" * 23,
        "A" * 21 + "!",
        "A" * 21 + "%2F",
    ],
)
async def test_unknown_and_malformed_links_get_one_and_the_same_404(
    clinic: Clinic, token: str
) -> None:
    await clinic.check_in("Ann Example")
    for suffix in ("/status", "/events", "/qr.svg", "/anything"):
        resp = await clinic.client.get(f"/v/{token}{suffix}")
        assert resp.status == 404
        body = await resp.json()
        assert body["code"] == "visit_link_not_found", (suffix, body)
    page = await clinic.client.get(f"/v/{token}")
    assert page.status == 404 and "text/html" in page.headers["Content-Type"]
    assert "This link has ended" in await page.text()


async def test_a_link_is_never_a_credential(clinic: Clinic) -> None:
    token = token_of(await clinic.check_in("Ann Example"))
    bearer = {"Authorization": f"Bearer {token}"}
    for path in ("/api/queue/", "/api/patients/", "/api/settings/"):
        resp = await clinic.client.get(path, headers=bearer)
        assert resp.status == 401, path
        resp = await clinic.client.get(f"{path}?token={token}")
        assert resp.status == 401, path
        resp = await clinic.client.get(path, headers={"Cookie": f"checkin_session={token}"})
        assert resp.status == 401, path
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await clinic.client.ws_connect(f"/ws/queue/?token={token}")
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await clinic.client.ws_connect("/ws/queue/", headers=bearer)
    assert refused.value.status == 401


async def test_the_estimate_is_a_range_once_the_line_has_a_pace(doctor_room: Clinic) -> None:
    """ "—" (null) while the box knows too little; once the doctor has seen a few patients
    every ten minutes, each waiting patient gets a range holding their place times ten
    minutes, and a place behind never shows less than one ahead."""
    clinic = doctor_room
    clock = [datetime.now(UTC).replace(hour=9, minute=0)]
    clinic.app[STORE].set_clock(lambda: format_time(clock[0]))
    people = [await clinic.check_in(f"Patient {n}") for n in range(8)]
    assert (await status(clinic, token_of(people[7])))[1]["estimate"] is None
    for person in people[:5]:
        resp = await clinic.call_next()
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["patient"]["id"] == person["id"], await resp.text()
        clock[0] += timedelta(minutes=10)
        await act(clinic, "start", person["id"])
        await act(clinic, "done", person["id"])
    assert (await clinic.call_next()).status == 200  # people[5] is with the doctor now
    ranges = []
    for place, person in enumerate(people[6:], 1):
        _, body = await status(clinic, token_of(person))
        assert body["place"] == place and body["estimate"] is not None, body
        low, high = body["estimate"]["low_minutes"], body["estimate"]["high_minutes"]
        assert low <= 10 * place <= high < 10 * place + 30, body["estimate"]
        ranges.append((low, high))
    assert ranges == sorted(ranges)


async def test_the_calls_an_estimate_reads_carry_the_class_and_a_return(
    doctor_room: Clinic,
) -> None:
    """Through the real store: each call with the called patient's class, and a no-show put
    back in line and called again is a return (it can go ahead of those who came before)."""
    clinic = doctor_room
    store = clinic.app[STORE]
    clock = [datetime.now(UTC).replace(hour=9, minute=0)]
    store.set_clock(lambda: format_time(clock[0]))
    ann = await clinic.check_in("Ann Example")
    bob = await clinic.check_in("Bob Sample")
    await act(clinic, "set_priority", bob["id"], priority="priority")
    called = await (await clinic.call_next()).json()
    assert called["patient"]["id"] == bob["id"]  # priority first
    clock[0] += timedelta(minutes=3)
    await act(clinic, "no_show", bob["id"])
    clock[0] += timedelta(minutes=10)
    await act(clinic, "requeue", bob["id"], position="front")
    assert (await (await clinic.call_next()).json())["patient"]["id"] == bob["id"]
    clock[0] += timedelta(minutes=10)
    await act(clinic, "done", bob["id"])
    assert (await (await clinic.call_next()).json())["patient"]["id"] == ann["id"]
    day = (format_time(clock[0] - timedelta(hours=2)), format_time(clock[0] + timedelta(hours=1)))
    (calls,) = (await store.calls_between([day])).values()
    assert [(c.priority, c.repeat) for c in calls] == [
        ("priority", False),
        ("priority", True),
        ("normal", False),
    ]
    assert [c.ended_at is not None for c in calls] == [True, True, False]


@pytest.mark.parametrize("ending", ["done", "cancel", "no_show", "end_of_day"])
async def test_the_link_works_until_30_minutes_after_the_visit_ended(
    doctor_room: Clinic, ending: str
) -> None:
    clinic = doctor_room
    now = datetime.now(UTC)
    clock = [now]
    clinic.app[STORE].set_clock(lambda: format_time(clock[0]))
    ann = await clinic.check_in("Ann Example")
    token = token_of(ann)
    clock[0] += timedelta(hours=3)  # a long wait: an open visit's link keeps working
    assert (await status(clinic, token))[0] == 200
    if ending == "cancel":
        await act(clinic, "cancel", ann["id"], reason="left")
    elif ending == "end_of_day":
        await clinic.client.patch(
            "/api/settings/", json={"end_of_day": "00:00"}, headers=clinic.headers(Role.ADMIN)
        )
        # The box's timer, a day later: every visit still open is closed as not seen.
        clock[0] += timedelta(days=1)
        assert await close_the_day_if_due(clinic.app) == 1
    else:
        await clinic.call_next()
        if ending == "done":
            await act(clinic, "start", ann["id"])
        await act(clinic, ending, ann["id"])
    code, body = await status(clinic, token)
    final = {"done": "done", "cancel": "cancelled", "no_show": "no_show"}
    assert (code, body["status"]) == (200, final.get(ending, "not_seen"))
    clock[0] += timedelta(minutes=29, seconds=59)
    assert (await status(clinic, token))[0] == 200
    clock[0] += timedelta(seconds=1)
    code, body = await status(clinic, token)
    assert (code, body["code"]) == (404, "visit_link_not_found")
    assert (await clinic.client.get(f"/v/{token}")).status == 404
    assert (await clinic.client.get(f"/v/{token}/events")).status == 404


async def test_the_stream_follows_the_visit_live(doctor_room: Clinic) -> None:
    clinic = doctor_room
    ann, bob, cy = [await clinic.check_in(name) for name in NAMES]
    feed = await events(clinic, token_of(cy))
    first = await feed.next()
    assert feed.retry is not None and feed.retry > 0
    assert (first["status"], first["place"]) == ("waiting", 3)

    await clinic.call_next()  # Ann
    assert (await feed.next())["place"] == 2
    await clinic.call_next()  # Bob
    assert (await feed.next())["place"] == 1
    await clinic.check_in("Dee Later")  # behind Cy: Cy's status did not change, nothing sent
    await clinic.call_next()  # Cy
    called = await feed.next()
    assert (called["status"], called["room"], called["call_count"]) == ("called", "Room 3", 1)
    await act(clinic, "recall", cy["id"])
    recalled = await feed.next()
    assert (recalled["status"], recalled["call_count"]) == ("called", 2)
    await act(clinic, "start", cy["id"])
    assert (await feed.next())["status"] == "in_service"
    for name in NAMES:
        assert name not in json.dumps(recalled)
    assert ann["id"] != bob["id"]


async def test_a_burst_of_events_costs_one_read_for_all_pages(clinic: Clinic) -> None:
    people = [await clinic.check_in(f"Patient {n} Test") for n in range(6)]
    feeds = [await events(clinic, token_of(person)) for person in people]
    for feed in feeds:
        await feed.next()
    status_feed = clinic.app[STATUS_FEED]
    before = status_feed.fan_outs
    # The end of day closes six visits in one transaction: six events, one refresh.
    resp = await clinic.client.post("/api/queue/end-of-day/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 200, await resp.text()
    for feed in feeds:
        assert (await feed.next())["status"] == "not_seen"
    assert status_feed.fan_outs - before == 1


async def test_the_stream_ends_when_the_link_does(
    start_clinic: StartClinic, config: Config
) -> None:
    # The keepalive comes every heartbeat: shortened here, so the end is seen at once.
    clinic = await start_clinic(dataclasses.replace(config, heartbeat=0.05))
    now = datetime.now(UTC)
    clock = [now]
    clinic.app[STORE].set_clock(lambda: format_time(clock[0]))
    ann = await clinic.check_in("Ann Example")
    feed = await events(clinic, token_of(ann))
    await feed.next()
    await act(clinic, "cancel", ann["id"], reason="left")
    assert (await feed.next())["status"] == "cancelled"
    clock[0] += timedelta(minutes=31)
    assert await feed.ended()
    await wait_until(lambda: len(clinic.app[STATUS_FEED]) == 0)


async def test_with_tls_on_the_plain_http_port_serves_the_status_pages(
    start_clinic: StartClinic, config: Config, aiohttp_client: Any
) -> None:
    clinic = await start_clinic()
    token = token_of(await clinic.check_in("Ann Example"))
    tls_config = Config(data_dir=config.data_dir, tls="self-signed", http_port=8080)
    plain = await aiohttp_client(create_redirect_app(tls_config, clinic.app))
    assert isinstance(plain, TestClient) and isinstance(plain.server, TestServer)

    page = await plain.get(f"/v/{token}", allow_redirects=False)
    html = await page.text()
    assert page.status == 200 and "Strict-Transport-Security" not in page.headers
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assets = re.findall(r'(?:src|href)="(/v/assets/[^"]+)"', html)
    assert any("visit.js" in a for a in assets) and any("visit.css" in a for a in assets)
    for asset in assets:
        resp = await plain.get(asset, allow_redirects=False)
        assert resp.status == 200, asset
    module = await plain.get("/v/assets/js/page.js", allow_redirects=False)
    assert module.status == 200  # what visit.js imports, beside it
    resp = await plain.get(f"/v/{token}/status", allow_redirects=False)
    assert resp.status == 200 and (await resp.json())["status"] == "waiting"
    resp = await plain.get(f"/v/{token}/qr.svg", allow_redirects=False)
    assert resp.status == 200
    resp = await plain.get(f"/v/{token}/events", allow_redirects=False)
    assert resp.status == 200
    assert (await Events(resp).next())["status"] == "waiting"
    resp.close()
    # Everything else still goes to HTTPS.
    for path in ("/kiosk", "/api/queue/", "/static/js/visit.js"):
        resp = await plain.get(path, allow_redirects=False)
        assert resp.status == 301 and resp.headers["Location"].startswith("https://"), path


async def test_status_link_base_chooses_where_the_qr_points(clinic: Clinic) -> None:
    admin = clinic.headers(Role.ADMIN)
    for bad in ("ftp://x", "http://x/path", "http://u@x", "http://x?q=1", "x", 3, "http://x:99999"):
        resp = await clinic.client.patch(
            "/api/settings/", json={"status_link_base": bad}, headers=admin
        )
        assert resp.status == 400, bad
        assert (await resp.json())["code"] == "setting_value_invalid"
    resp = await clinic.client.patch(
        "/api/settings/", json={"status_link_base": "http://192.168.1.10:8080"}, headers=admin
    )
    assert resp.status == 200, await resp.text()
    ann = await clinic.check_in("Ann Example")
    assert re.fullmatch(r"http://192\.168\.1\.10:8080/v/[A-Za-z0-9_-]{22}", ann["status_url"])
    # The box serves the link whatever address it was given with.
    token = ann["status_url"].rsplit("/", 1)[1]
    assert (await status(clinic, token))[0] == 200
