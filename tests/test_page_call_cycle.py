"""The doctor console's call cycle in real Chromium against the real server (issue 16): the
current call with recall, no-show, back to the queue and undo (the wall display announces a
recall again); a transfer from one console to another line's; the box going down during a
call (the call is sent again with its key and lands once); per-row cancel and transfer; and
the call panel staying in view beside a long list, with a long name readable in full."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.browser import LAPTOP, TABLET_PORTRAIT, TV, screenshot, sign_in, sign_in_with
from tests.serverproc import Server
from tests.test_page_display import BLOCKED_AUDIO, box_cannot_speak, restarted

ROOM = "Room 3"
ANNOUNCED_MS = 15000  # chime, the box's answer, the voice, then the recall's turn
DOWN_SECONDS = 20  # how long the box stays stopped during a call (the outage)
BACK_MS = 30000  # a restart, the feed's reconnect backoff and the retry's own backoff


class Clinic:
    """The rest of the clinic over the real API: a kiosk, an administrator, a reader."""

    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.kiosk = self.bearer("form", "Kiosk")
        self.admin = self.bearer("admin", "Boss")

    def bearer(self, role: str, label: str, room: str | None = None) -> dict[str, str]:
        token = self.server.create_token(role, label, room=room)
        return {"Authorization": f"Bearer {self.server.login(token)}"}

    async def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        url = f"{self.server.base_url}{path}"
        async with self.http.request(method, url, json=body, headers=headers) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def check_in(self, fname: str, line: str | None = None) -> dict[str, Any]:
        body = {"fname": fname, **({"line": line} if line else {})}
        return await self.call("POST", "/api/patients/", self.kiosk, body)

    async def queue(self) -> list[tuple[str, int | None]]:
        """(ticket, place) of everyone waiting, in check-in order, as the box says."""
        items = await self.call("GET", "/api/queue/", self.admin)
        return [(item["ticket"], item.get("place")) for item in items]

    async def waiting_tickets(self) -> list[str]:
        return [ticket for ticket, _ in await self.queue()]

    async def add_line(self, prefix: str, name: str) -> None:
        await self.call("POST", "/api/lines/", self.admin, {"prefix": prefix, "name": {"en": name}})

    async def settings(self, key: str, value: str) -> None:
        result = await self.server.cli_async("settings", "set", key, value)
        assert result.returncode == 0, result.stderr


@pytest.fixture
async def clinic(appliance: Server) -> AsyncIterator[Clinic]:
    async with aiohttp.ClientSession() as http:
        yield Clinic(appliance, http)


class Console:
    """A doctor's console page and, over the API with the same credential, what the box
    says is its open call."""

    def __init__(self, page: Page, clinic: Clinic, token: str) -> None:
        self.page = page
        self.clinic = clinic
        self.headers = {"Authorization": f"Bearer {clinic.server.login(token)}"}

    @property
    def panel(self):
        return self.page.locator("#current-call")

    @property
    def result(self):
        return self.page.locator("#call-result")

    def rows(self):
        return self.page.locator("#queue-list > li")

    def row(self, ticket: str):
        return self.rows().filter(has=self.page.locator(".patient__ticket", has_text=ticket))

    def button(self, name: str):
        return self.page.get_by_role("button", name=name, exact=True)

    async def current(self) -> dict[str, Any] | None:
        return (await self.clinic.call("GET", "/api/doctors/current/", self.headers))["current"]


async def open_console(
    browser: Browser,
    clinic: Clinic,
    label: str,
    *,
    room: str = ROOM,
    lines: list[str] | None = None,
    viewport: dict[str, int] = LAPTOP,
) -> Console:
    token = clinic.server.create_token("doctor", label, room=room)
    if lines is not None:
        await clinic.call("PATCH", f"/api/credentials/{token}/", clinic.admin, {"lines": lines})
    page = await sign_in_with(browser, clinic.server, token, viewport)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    SCRIPT_ERRORS.append(errors)
    await expect(page.locator("#queue-loading")).to_be_hidden()
    return Console(page, clinic, token)


SCRIPT_ERRORS: list[list[str]] = []


@pytest.fixture(autouse=True)
def no_script_errors():
    """Whatever a test checks, the console's script must never have thrown."""
    SCRIPT_ERRORS.clear()
    yield
    thrown = [error for errors in SCRIPT_ERRORS for error in errors]
    SCRIPT_ERRORS.clear()
    assert not thrown, thrown


async def menu_choice(console: Console, menu: str, item: str) -> None:
    await console.button(menu).click()
    await console.button(item).click()


# --- 1. call, recall, no-show, back to the queue, undo ------------------------------------


async def test_a_call_through_recall_no_show_back_to_queue_and_undo(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    await clinic.settings("announce_voice", "true")
    tv = await sign_in(browser, appliance, "queue", "TV", viewport=TV)
    await tv.context.add_init_script(BLOCKED_AUDIO)
    spoken: list[str] = []  # the speech the TV asked the box for, each request once

    async def speech(route: Route) -> None:
        spoken.append(route.request.url)
        await box_cannot_speak(route)  # then the TV's own voice says it (soundLog.spoken)

    await tv.route(re.compile(r"/api/speech/call/"), speech)
    await tv.reload()
    await tv.get_by_role("button", name="Tap to enable sound").click()

    doctor = await open_console(browser, clinic, "Dr. Lee")
    ann = await clinic.check_in("Ann Lee")
    await clinic.check_in("Bob Stone")
    await expect(doctor.rows()).to_have_count(2)
    await expect(doctor.panel).to_be_hidden()

    await doctor.button("Call next").click()
    panel = doctor.panel
    await expect(panel.locator(".current-call__ticket")).to_have_text("A-001")
    await expect(panel.locator(".current-call__name")).to_have_text("Ann Lee")
    await expect(panel.locator(".current-call__state")).to_have_text("Called")
    await expect(panel.locator(".current-call__meta")).to_contain_text(ROOM)
    await expect(panel.locator(".current-call__meta")).to_contain_text("calls: 1")
    await expect(doctor.page.locator("#undo-text")).to_have_text("Called A-001")
    assert await clinic.waiting_tickets() == ["A-002"]
    assert (await doctor.current())["call_count"] == 1

    # Recall: the box counts it, the panel says so, the TV announces the patient again.
    await doctor.button("Recall A-001 Ann Lee").click()
    await expect(panel.locator(".current-call__meta")).to_contain_text("calls: 2")
    await expect(doctor.result).to_contain_text("Recalled A-001")
    await expect(doctor.page.locator("#undo-text")).to_have_text("Recalled A-001")
    assert (await doctor.current())["call_count"] == 2
    await tv.wait_for_function("() => window.soundLog.spoken.length === 2", timeout=ANNOUNCED_MS)
    entry = f"entry={ann['queue_entry_id']}"
    assert len(spoken) == 2 and all(entry in url for url in spoken), spoken
    texts = [said["text"] for said in await tv.evaluate("window.soundLog.spoken")]
    assert texts == ["Ann L., please go to Room 3."] * 2

    # No-show: the panel keeps the visit, in its no-show state, with what may follow.
    await doctor.button("No-show: A-001 Ann Lee did not come").click()
    await expect(panel.locator(".current-call__state")).to_have_text("No-show")
    await expect(doctor.button("Recall A-001 Ann Lee")).to_have_count(0)
    await expect(doctor.button("Done with A-001 Ann Lee")).to_have_count(0)
    await expect(doctor.button("Close the no-show of A-001 Ann Lee")).to_be_visible()
    await expect(doctor.page.locator("#undo-text")).to_have_text("A-001 marked no-show")
    assert (await doctor.current())["status"] == "no_show"
    assert await clinic.waiting_tickets() == ["A-002"]

    # Back to the front of the queue: off the panel, first in the list and in the box's order.
    await menu_choice(
        doctor,
        "Put A-001 Ann Lee back in the queue",
        "Put A-001 Ann Lee back at the front of the queue",
    )
    await expect(panel).to_be_hidden()
    await expect(doctor.rows().locator(".patient__ticket")).to_have_text(["A-001", "A-002"])
    await expect(doctor.row("A-001").locator(".patient__place")).to_have_text("1")
    assert sorted(await clinic.queue()) == [("A-001", 1), ("A-002", 2)]
    assert await doctor.current() is None
    undo = doctor.page.locator("#undo-bar")
    await expect(undo).to_contain_text("A-001 back at the front of the queue")

    # Undo: the no-show again, on the panel, in the list and in the box.
    await undo.get_by_role("button", name="Undo: A-001 back at the front of the queue").click()
    await expect(panel.locator(".current-call__state")).to_have_text("No-show")
    await expect(panel.locator(".current-call__ticket")).to_have_text("A-001")
    await expect(doctor.rows().locator(".patient__ticket")).to_have_text(["A-002"])
    await expect(doctor.result).to_contain_text("Undone: A-001 back at the front of the queue")
    await expect(undo).to_be_hidden()
    assert await clinic.waiting_tickets() == ["A-002"]
    assert (await doctor.current())["status"] == "no_show"

    # The console finds its open call again after a reload; once closed, it stays closed.
    await doctor.page.reload()
    await expect(panel.locator(".current-call__state")).to_have_text("No-show")
    await expect(panel.locator(".current-call__meta")).to_contain_text("calls: 2")
    await doctor.button("Close the no-show of A-001 Ann Lee").click()
    await expect(panel).to_be_hidden()
    await expect(doctor.button("Call next")).to_be_focused()
    await doctor.page.reload()
    await expect(doctor.rows()).to_have_count(1)
    await expect(panel).to_be_hidden()
    assert (await doctor.current())["status"] == "no_show"  # closed here, still a no-show


# --- 2. a transfer from the nurse to the lab ------------------------------------------------


async def test_a_patient_transferred_by_the_nurse_waits_in_the_lab_console(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    await clinic.add_line("N", "Nurse")
    await clinic.add_line("L", "Lab")
    nurse = await open_console(browser, clinic, "Nurse", room="Nurse room", lines=["N"])
    lab = await open_console(browser, clinic, "Lab", room="Lab 1", lines=["L"])
    tv = await sign_in(browser, appliance, "queue", "TV", viewport=TV)
    ann = await clinic.check_in("Ann Lee", line="N")
    await clinic.check_in("Lena Vogel", line="L")
    await expect(nurse.rows().locator(".patient__ticket")).to_have_text(["N-001"])
    await expect(lab.rows().locator(".patient__ticket")).to_have_text(["L-001"])

    await nurse.button("Call next").click()
    await expect(nurse.panel.locator(".current-call__ticket")).to_have_text("N-001")
    await menu_choice(
        nurse, "Transfer N-001 Ann Lee to another line", "Transfer N-001 Ann Lee to L · Lab"
    )
    await expect(nurse.panel).to_be_hidden()
    await expect(nurse.result).to_contain_text("N-001 transferred to L · Lab")
    await expect(nurse.rows()).to_have_count(0)
    assert await nurse.current() is None

    # The lab's console: the same ticket, waiting, after the lab's own patient.
    await expect(lab.rows().locator(".patient__ticket")).to_have_text(["L-001", "N-001"])
    await expect(lab.row("N-001").locator(".patient__name")).to_have_text("Ann Lee")
    await expect(lab.row("N-001").locator(".line-chip")).to_contain_text("Lab")
    items = await clinic.call("GET", "/api/queue/?lines=L", clinic.admin)
    # Listed in check-in order; the places say the call order.
    assert sorted((i["place"], i["ticket"], i["line"]) for i in items) == [
        (1, "L-001", "L"),
        (2, "N-001", "L"),
    ]

    # The TV: in the lab's column, waiting, next after L-001.
    lab_column = tv.locator('section.column[data-line="L"] .waiting__item')
    await expect(lab_column.locator(".waiting__ticket")).to_have_text(["L-001", "N-001"])
    await expect(tv.locator('section.column[data-line="N"] .waiting__item')).to_have_count(0)

    # The lab calls next twice: its own patient, then the transferred one.
    await lab.button("Call next").click()
    await expect(lab.panel.locator(".current-call__ticket")).to_have_text("L-001")
    await lab.button("Done with L-001 Lena Vogel").click()
    await expect(lab.panel).to_be_hidden()
    await lab.button("Call next").click()
    await expect(lab.panel.locator(".current-call__ticket")).to_have_text("N-001")
    await expect(lab.panel.locator(".current-call__meta")).to_contain_text("Lab 1")
    assert (await lab.current())["line"] == "L"

    # Someone else moves the call (as the box's own no-show timer will): the panel follows.
    body = {"action": "no_show", "patient_id": ann["id"]}
    await clinic.call("POST", "/api/doctors/", clinic.admin, body)
    await expect(lab.panel.locator(".current-call__state")).to_have_text("No-show")
    await expect(lab.button("Close the no-show of N-001 Ann Lee")).to_be_visible()
    body = {"action": "requeue", "patient_id": ann["id"], "position": "back"}
    await clinic.call("POST", "/api/doctors/", clinic.admin, body)
    await expect(lab.panel).to_be_hidden()
    await expect(lab.rows().locator(".patient__ticket")).to_have_text(["N-001"])


# --- 3. the box down during a call ----------------------------------------------------------


async def test_a_call_during_an_outage_is_sent_again_and_lands_exactly_once(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    doctor = await open_console(browser, clinic, "Dr. Lee")
    await clinic.check_in("Ann Lee")
    await clinic.check_in("Bob Stone")
    await expect(doctor.rows()).to_have_count(2)

    # The first press reaches the box, which records the call and then dies before the
    # console hears back: the worst case, since sending it again must not call Bob too.
    attempts: list[str | None] = []
    down_at: list[float] = []

    async def box_dies_after_the_call(route: Route) -> None:
        attempts.append(route.request.headers.get("idempotency-key"))
        if len(attempts) == 1:
            response = await route.fetch()
            assert response.status == 200
            await asyncio.to_thread(appliance.stop)
            down_at.append(time.monotonic())
            await route.abort("connectionreset")
        else:
            await route.continue_()  # refused while the box is down

    await doctor.page.route("**/api/doctors/", box_dies_after_the_call)
    await doctor.button("Call next").click()
    await expect(doctor.result).to_contain_text("Not confirmed yet")
    await expect(doctor.result).to_contain_text("No need to press again")
    offline = doctor.page.locator("#offline-line")
    await expect(offline).to_have_text("The box cannot be reached: actions are paused.")
    call_next = doctor.page.locator("#call-next")
    await expect(call_next).to_be_disabled()
    await expect(call_next).to_have_text("Calling…")
    await expect(doctor.button("Call Bob Stone")).to_be_disabled()
    # Sent again by itself while the box stays down for 20 s, every time with the same key,
    # and the console keeps saying so.
    async with asyncio.timeout(DOWN_SECONDS + 10):
        while len(attempts) < 4 or time.monotonic() - down_at[0] < DOWN_SECONDS:
            await asyncio.sleep(0.1)
    assert len(set(attempts)) == 1 and attempts[0], attempts
    await expect(doctor.result).to_contain_text("Not confirmed yet")
    await expect(offline).to_be_visible()
    await expect(call_next).to_be_disabled()

    with restarted(appliance):
        await expect(doctor.result).to_contain_text("Called: Ann Lee → Room 3", timeout=BACK_MS)
        await expect(doctor.result).to_contain_text("Sent when the box came back at")
        await expect(offline).to_be_hidden(timeout=BACK_MS)
        await expect(doctor.panel.locator(".current-call__ticket")).to_have_text("A-001")
        await expect(doctor.rows().locator(".patient__ticket")).to_have_text(["A-002"])
        assert len(set(attempts)) == 1
        # Exactly one call: Bob still waits, Ann was called once.
        assert await clinic.waiting_tickets() == ["A-002"]
        current = await doctor.current()
        assert (current["ticket"], current["call_count"]) == ("A-001", 1)
        stats = await clinic.call("GET", "/api/stats/today/", clinic.admin)
        assert stats["called"] == 1
        await expect(call_next).to_have_text("Call next")
        await expect(call_next).to_be_enabled()


# --- 4. per-row cancel and transfer ---------------------------------------------------------


async def test_rows_cancel_with_a_reason_transfer_and_an_undone_cancel_comes_back_in_place(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    await clinic.add_line("L", "Lab")
    doctor = await open_console(browser, clinic, "Dr. Lee")
    for name in ("Ann Lee", "Bob Stone", "Cleo Park"):
        await clinic.check_in(name)
    tickets = doctor.rows().locator(".patient__ticket")
    await expect(tickets).to_have_text(["A-001", "A-002", "A-003"])

    # Cancel asks why; "Keep waiting" changes nothing.
    await menu_choice(doctor, "More actions for A-002 Bob Stone", "Cancel A-002 Bob Stone…")
    dialog = doctor.page.locator("#cancel-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#cancel-title")).to_have_text("Cancel A-002?")
    await dialog.get_by_role("button", name="Keep waiting").click()
    await expect(dialog).to_be_hidden()
    assert await clinic.waiting_tickets() == ["A-001", "A-002", "A-003"]

    await menu_choice(doctor, "More actions for A-002 Bob Stone", "Cancel A-002 Bob Stone…")
    await dialog.get_by_role("button", name="They left").click()
    await expect(tickets).to_have_text(["A-001", "A-003"])
    await expect(doctor.result).to_contain_text("A-002 cancelled: left")
    assert await clinic.waiting_tickets() == ["A-001", "A-003"]
    # The keyboard stays on the list: the row that took Bob's place.
    await expect(doctor.row("A-003").locator(".patient__more .menu__button")).to_be_focused()

    # Undo: Bob is back between Ann and Cleo, in his old place.
    await doctor.page.get_by_role("button", name="Undo: A-002 cancelled: left").click()
    await expect(tickets).to_have_text(["A-001", "A-002", "A-003"])
    await expect(doctor.row("A-002").locator(".patient__place")).to_have_text("2")
    assert await clinic.queue() == [("A-001", 1), ("A-002", 2), ("A-003", 3)]

    # Transfer from the row: Cleo keeps her ticket and waits in the lab's line.
    await menu_choice(
        doctor, "More actions for A-003 Cleo Park", "Transfer A-003 Cleo Park to L · Lab"
    )
    await expect(doctor.row("A-003").locator(".line-chip")).to_contain_text("Lab")
    await expect(doctor.result).to_contain_text("A-003 transferred to L · Lab")
    items = await clinic.call("GET", "/api/queue/", clinic.admin)
    assert [(i["ticket"], i["line"]) for i in items] == [
        ("A-001", "A"),
        ("A-002", "A"),
        ("A-003", "L"),
    ]

    # A cancel by request, said as such.
    await menu_choice(doctor, "More actions for A-001 Ann Lee", "Cancel A-001 Ann Lee…")
    await dialog.get_by_role("button", name="At their request").click()
    await expect(doctor.result).to_contain_text("A-001 cancelled at their request")
    await expect(tickets).to_have_text(["A-002", "A-003"])
    assert await clinic.waiting_tickets() == ["A-002", "A-003"]


# --- 5. the panel beside a long list, a long name in full ----------------------------------

LONG_NAME = "Maximiliana Guadalupe Fernández-Castellanos de la Torre Ruiz"


async def test_the_call_panel_stays_in_view_and_a_long_name_reads_in_full(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    assert len(LONG_NAME) == 60
    doctor = await open_console(browser, clinic, "Dr. Lee")
    page = doctor.page
    await clinic.check_in(LONG_NAME)
    for n in range(2, 41):
        await clinic.check_in(f"Patient Number {n}")
    await expect(doctor.rows()).to_have_count(40)
    first = doctor.row("A-001").locator(".patient__name")
    await expect(first).to_have_attribute("title", LONG_NAME)

    await doctor.button("Call next").click()
    name = doctor.panel.locator(".current-call__name")
    await expect(name).to_have_text(LONG_NAME)
    # Wrapped, never cut: nothing overflows its box, and the box sits inside the panel.
    fits = await name.evaluate(
        "n => { const b = n.querySelector('button'); const p = n.closest('.current-call');"
        " const r = b.getBoundingClientRect(), q = p.getBoundingClientRect();"
        " return b.scrollWidth <= b.clientWidth + 1 && r.left >= q.left && r.right <= q.right"
        " && r.height > parseFloat(getComputedStyle(b).lineHeight) * 1.5; }"
    )
    assert fits

    # Scroll to the end of the list: Call next and the current call are still on screen.
    await doctor.rows().last.scroll_into_view_if_needed()
    assert await page.evaluate("window.scrollY") > 200
    height = LAPTOP["height"]
    for locator in (doctor.button("Call next"), doctor.panel.locator(".current-call__actions")):
        box = await locator.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= height, box
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.mouse.move(5, height - 5)
    await screenshot(page, "doctor-call-cycle-laptop")

    # A tablet upright: one column, the call panel first, nothing wider than the screen.
    tablet = await open_console(browser, clinic, "Dr. Tab", viewport=TABLET_PORTRAIT)
    await expect(tablet.rows()).to_have_count(39)
    side = await tablet.page.locator(".call-panel").bounding_box()
    queue = await tablet.page.locator(".doctor__queue").bounding_box()
    assert side and queue and side["y"] < queue["y"]
    assert await tablet.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await screenshot(tablet.page, "doctor-call-cycle-tablet")
