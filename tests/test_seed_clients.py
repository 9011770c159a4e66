"""Acceptance: clients written from the seed's websocket-events.md, with only `?token=…` added
to the URL, see PATIENT_ADDED and PATIENT_COMPLETED exactly as that document shows.

Everything runs against the real server started as a subprocess (`python -m checkin_appliance
serve`), with credentials made by the real CLI: the document's Python example (websockets
library) and its vanilla-JavaScript `QueueManager`, copied verbatim, in Debian's Chromium.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web
from PIL import Image
from playwright.async_api import async_playwright, expect
from websockets.exceptions import InvalidStatus

from tests.serverproc import Server, running

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT = 10.0  # seconds for any one wait on the server or the browser
# The seed's path, plus (ours) the query string of a signed, expiring link.
PHOTO_URL = re.compile(r"/media/patient_images/[0-9a-f]{32,}\.jpg\?exp=[0-9]{10}&sig=[0-9a-f]{64}")
# The seed's keys, then ours (extra top-level keys old clients ignore; ticket, line and
# priority since lines and tickets, issue 15).
EVENT_KEYS = {"type", "event", "patient", "seq", "id", "check_in_time", "at"} | {
    "ticket",
    "line",
    "priority",
}
PATIENT_KEYS = {"id", "fname", "status", "image"}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

# The "Vanilla JavaScript Example" class of websocket-events.md, verbatim.
QUEUE_MANAGER_JS = """\
class QueueManager {
  constructor(wsUrl) {
    this.wsUrl = wsUrl;
    this.socket = null;
    this.queue = [];
    this.connect();
  }

  connect() {
    this.socket = new WebSocket(this.wsUrl);

    this.socket.onopen = () => {
      console.log('WebSocket connected');
      this.onConnectionChange(true);
    };

    this.socket.onmessage = (event) => {
      const data = JSON.parse(event.data);
      this.handleEvent(data);
    };

    this.socket.onerror = (error) => {
      console.error('WebSocket error:', error);
    };

    this.socket.onclose = () => {
      console.log('WebSocket disconnected');
      this.onConnectionChange(false);
      // Reconnect after 3 seconds
      setTimeout(() => this.connect(), 3000);
    };
  }

  handleEvent(data) {
    switch(data.event) {
      case 'PATIENT_ADDED':
        this.addPatient(data.patient);
        break;

      case 'PATIENT_COMPLETED':
        this.removePatient(data.patient.id);
        break;
    }
  }

  addPatient(patient) {
    this.queue.push(patient);
    this.renderQueue();
  }

  updatePatientStatus(patientId, status) {
    const patient = this.queue.find(p => p.id === patientId);
    if (patient) {
      patient.status = status;
      this.renderQueue();
    }
  }

  removePatient(patientId) {
    this.queue = this.queue.filter(p => p.id !== patientId);
    this.renderQueue();
  }

  renderQueue() {
    // Implement your UI rendering logic here
    console.log('Current queue:', this.queue);
  }

  onConnectionChange(isConnected) {
    const indicator = document.getElementById('connection-status');
    if (indicator) {
      indicator.className = isConnected ? 'connected' : 'disconnected';
      indicator.textContent = isConnected ? 'Connected' : 'Disconnected';
    }
  }

  disconnect() {
    if (this.socket) {
      this.socket.close();
    }
  }
}
"""

# A page as an integrator would write it: the document's class, its renderQueue filled in,
# and its usage line with our appliance's URL plus `?token=…`.
PAGE = """\
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Waiting room</title></head>
<body>
<div id="connection-status" class="disconnected">Disconnected</div>
<ul id="queue"></ul>
<script>
QUEUE_MANAGER_JS
QueueManager.prototype.renderQueue = function () {
  const list = document.getElementById('queue');
  list.replaceChildren(...this.queue.map((patient) => {
    const item = document.createElement('li');
    item.dataset.id = String(patient.id);
    item.dataset.status = patient.status;
    item.textContent = patient.fname;
    return item;
  }));
};

// Usage
const queueManager = new QueueManager(WS_URL);
</script>
</body>
</html>
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(tmp_path) as srv:
        yield srv


@dataclass
class Clinic:
    server: Server
    form_access: str
    doctor_access: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def feed_url(self, access: str) -> str:
        return f"{self.server.ws_url}?token={access}"


@pytest.fixture
def clinic(server: Server) -> Clinic:
    """A kiosk (form) and a doctor credential, made with the CLI and logged in over HTTP."""
    form = server.create_token("form", "Kiosk")
    doctor = server.create_token("doctor", "Dr. Lee")
    return Clinic(server, server.login(form), server.login(doctor))


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def small_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def check_in(
    http: aiohttp.ClientSession, clinic: Clinic, fname: str, photo: bytes | None = None
) -> dict[str, Any]:
    url = f"{clinic.base_url}/api/patients/"
    if photo is None:
        request = http.post(url, json={"fname": fname}, headers=bearer(clinic.form_access))
    else:
        form = aiohttp.FormData()
        form.add_field("fname", fname)
        form.add_field("image", photo, filename="photo.jpg", content_type="image/jpeg")
        request = http.post(url, data=form, headers=bearer(clinic.form_access))
    async with request as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return body


async def call_next(http: aiohttp.ClientSession, clinic: Clinic) -> dict[str, Any]:
    async with http.post(
        f"{clinic.base_url}/api/doctors/",
        json={"action": "call_next"},
        headers=bearer(clinic.doctor_access),
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body


async def started(task: asyncio.Task[Any], ready: asyncio.Event) -> None:
    """Waits (bounded) until `ready` is set; re-raises at once if `task` failed first."""
    waiter = asyncio.ensure_future(ready.wait())
    try:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()
    assert ready.is_set()


# --- a. the document's Python example ---------------------------------------------------


async def test_python_client_from_the_document_sees_the_seed_events(clinic: Clinic) -> None:
    received: list[dict[str, Any]] = []
    connected = asyncio.Event()

    def handle_queue_update(data: dict[str, Any]) -> None:
        received.append(data)

    async def listen_to_queue() -> None:
        # websocket-events.md, "Python Example (using websockets library)"; only the URI differs.
        uri = clinic.feed_url(clinic.doctor_access)
        async with websockets.connect(uri) as websocket:
            print("Connected to WebSocket")
            connected.set()
            async for message in websocket:
                data = json.loads(message)
                print(f"Received event: {data}")
                handle_queue_update(data)
                if len(received) == 4:
                    break
            # Exactly once: nothing else follows the four events.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    extra = await websocket.recv()
                    pytest.fail(f"unexpected fifth message: {extra}")

    listener = asyncio.create_task(listen_to_queue())
    try:
        await started(listener, connected)
        async with aiohttp.ClientSession() as http:
            plain = await check_in(http, clinic, "John Doe")
            with_photo = await check_in(http, clinic, "Jane Roe", small_jpeg())
            first_call = await call_next(http, clinic)
            second_call = await call_next(http, clinic)
            async with asyncio.timeout(TIMEOUT):
                await listener

            assert [m["event"] for m in received] == [
                "PATIENT_ADDED",
                "PATIENT_ADDED",
                "PATIENT_COMPLETED",
                "PATIENT_COMPLETED",
            ], received
            for message in received:
                assert message["type"] == "send.queue.update"
                # Ours: a call also says which room (null when the doctor has none).
                extra = {"room"} if message["event"] == "PATIENT_COMPLETED" else set()
                assert set(message) == EVENT_KEYS | extra, message
                assert set(message["patient"]) == PATIENT_KEYS, message
                assert type(message["seq"]) is int
                assert type(message["id"]) is int
                assert type(message["patient"]["id"]) is int
                assert ISO_UTC.fullmatch(message["check_in_time"]), message
                assert ISO_UTC.fullmatch(message["at"]), message
            seqs = [m["seq"] for m in received]
            assert all(a < b for a, b in itertools.pairwise(seqs)), seqs

            # The seed's `patient` object, field for field.
            photo_url = with_photo["image"]
            assert plain["image"] is None
            assert isinstance(photo_url, str) and PHOTO_URL.fullmatch(photo_url), photo_url
            john = {"id": plain["id"], "fname": "John Doe", "status": "waiting", "image": None}
            jane = {
                "id": with_photo["id"],
                "fname": "Jane Roe",
                "status": "waiting",
                "image": photo_url,
            }
            assert received[0]["patient"] == john
            assert received[1]["patient"] == jane
            assert received[2]["patient"] == {**john, "status": "completed"}
            assert received[3]["patient"] == {**jane, "status": "completed"}
            # The longest-waiting patient is completed first, as the REST answers say too.
            assert first_call["patient"] == received[2]["patient"]
            assert second_call["patient"] == received[3]["patient"]

            # Our extra top-level keys: the queue entry and its check-in time.
            for message, checked_in in zip(
                received, [plain, with_photo, plain, with_photo], strict=True
            ):
                assert message["id"] == checked_in["queue_entry_id"]
                assert message["check_in_time"] == checked_in["check_in_time"]

            # The photo URL in the event is one a client can load.
            async with http.get(f"{clinic.base_url}{photo_url}") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "image/jpeg"
                stored = await resp.read()
            with Image.open(io.BytesIO(stored)) as image:
                assert image.format == "JPEG"
                assert image.size == (64, 48)
    finally:
        listener.cancel()


# --- b. the document's vanilla-JavaScript QueueManager in Chromium -----------------------


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with "
            "`make chromium` (or `apt-get install -y --no-install-recommends chromium`)."
        )
    return CHROMIUM


async def serve_page(html: str) -> web.AppRunner:
    """The integrator's page, from its own loopback port (not the appliance's)."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_queue_manager_from_the_document_renders_the_queue(
    clinic: Clinic, chromium: str
) -> None:
    html = PAGE.replace("QUEUE_MANAGER_JS", QUEUE_MANAGER_JS).replace(
        # A staff credential: the kiosk's (form) feed now gets the wall display's short names.
        "WS_URL",
        json.dumps(clinic.feed_url(clinic.doctor_access)),
    )
    runner = await serve_page(html)
    host, port = runner.addresses[0][:2]
    console: list[str] = []
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=CHROMIUM_ARGS, timeout=TIMEOUT * 3000
            )
            try:
                page = await browser.new_page()
                page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
                await page.goto(f"http://{host}:{port}/", timeout=TIMEOUT * 1000)
                wait_ms = TIMEOUT * 1000

                status = page.locator("#connection-status")
                await expect(status, f"never connected; console: {console}").to_have_text(
                    "Connected", timeout=wait_ms
                )
                await expect(status).to_have_class("connected")

                async with aiohttp.ClientSession() as http:
                    ann = await check_in(http, clinic, "Ann Lee")
                    bob = await check_in(http, clinic, "Bob Stone")
                    items = page.locator("#queue li")
                    await expect(items, f"console: {console}").to_have_text(
                        ["Ann Lee", "Bob Stone"], timeout=wait_ms
                    )
                    ids = [await item.get_attribute("data-id") for item in await items.all()]
                    assert ids == [str(ann["id"]), str(bob["id"])]

                    called = await call_next(http, clinic)
                    assert called["patient"]["id"] == ann["id"]
                    await expect(items, f"console: {console}").to_have_text(
                        ["Bob Stone"], timeout=wait_ms
                    )
                    await expect(items).to_have_attribute("data-id", str(bob["id"]))
                    await expect(status).to_have_text("Connected")
            finally:
                await browser.close()
    finally:
        await runner.cleanup()


# --- c. no token, no feed -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "detail", "code"),
    [
        ("", "Authentication credentials were not provided.", "not_authenticated"),
        (
            "?token=not-a-session",
            "Authentication credentials were invalid or expired.",
            "token_not_valid",
        ),
    ],
)
async def test_feed_refuses_a_client_without_a_valid_token(
    server: Server, query: str, detail: str, code: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(TIMEOUT), websockets.connect(server.ws_url + query):
            pass
    response = refused.value.response
    assert response.status_code == 401
    expected: dict[str, object] = {"detail": detail, "code": code}
    if code == "token_not_valid":  # the original's list too (issue 14)
        expected["messages"] = [
            {
                "token_class": "AccessToken",
                "token_type": "access",
                "message": "Token is invalid or expired",
            }
        ]
    assert json.loads(response.body) == expected
