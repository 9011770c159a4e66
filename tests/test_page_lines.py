"""Lines on the patient-facing pages in real Chromium against the real server: the kiosk's
choice of line, the ticket it gives and where the TV shows it; the TV's columns, its pages
through a long list, its "A-012 → Room 3" after a call, tickets for names that read alike,
and letters big enough to read from across the room."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import TABLET_PORTRAIT, TV, screenshot, sign_in
from tests.serverproc import Server

ROOM = "Room 3"
SMALL_TV = {"width": 1280, "height": 720}
PAGE_TURN_MS = 1000  # ?page_seconds=1


class Clinic:
    """The rest of the clinic over the real API: an admin, a kiosk and a doctor in Room 3."""

    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.admin = self.bearer(server.create_token("admin", "Front office"))
        self.kiosk = self.bearer(server.create_token("form", "Desk kiosk"))
        self.doctor_token = server.create_token("doctor", "Dr. Lee", room=ROOM)
        self.doctor = self.bearer(self.doctor_token)

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.login(token)}"}

    async def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        url = f"{self.server.base_url}{path}"
        async with self.http.request(method, url, json=body, headers=headers) as resp:
            assert resp.status < 300, (path, resp.status, await resp.text())
            return await resp.json()

    async def add_line(self, prefix: str, en: str, es: str, colour: str, icon: str) -> None:
        body = {"prefix": prefix, "name": {"en": en, "es": es}, "colour": colour, "icon": icon}
        await self.call("POST", "/api/lines/", self.admin, body)

    async def doctor_serves(self, *prefixes: str) -> None:
        path = f"/api/credentials/{self.doctor_token}/"
        await self.call("PATCH", path, self.admin, {"lines": list(prefixes)})

    async def check_in(self, fname: str, line: str | None = None) -> dict[str, Any]:
        body = {"fname": fname} | ({"line": line} if line else {})
        return await self.call("POST", "/api/patients/", self.kiosk, body)

    async def call_next(self) -> dict[str, Any]:
        return await self.call("POST", "/api/doctors/", self.doctor, {"action": "call_next"})

    async def settings(self, changes: dict[str, Any]) -> None:
        await self.call("PATCH", "/api/settings/", self.admin, changes)


@pytest.fixture
async def clinic(appliance: Server) -> AsyncIterator[Clinic]:
    async with aiohttp.ClientSession() as http:
        yield Clinic(appliance, http)


async def open_display(
    browser: Browser, server: Server, query: str = "", viewport: dict[str, int] = TV
) -> Page:
    page = watched(await sign_in(browser, server, "queue", "TV", viewport=viewport))
    await page.goto(f"/display{query}")
    await expect(page.locator("body")).not_to_have_class(re.compile(r"is-loading"))
    return page


def column(page: Page, prefix: str):
    return page.locator(f'.column[data-line="{prefix}"]')


SCRIPT_ERRORS: dict[int, list[str]] = {}


def watched(page: Page) -> Page:
    errors = SCRIPT_ERRORS.setdefault(id(page), [])
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def no_script_errors(*pages: Page) -> None:
    for page in pages:
        assert not SCRIPT_ERRORS.get(id(page)), SCRIPT_ERRORS[id(page)]


# --- kiosk -> ticket -> TV column -> doctor's call ------------------------------------------


async def test_a_patient_chooses_a_line_gets_a_ticket_and_the_tv_shows_it_in_its_column(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    await clinic.add_line("N", "Nurse", "Enfermería", "#c2185b", "nurse")
    await clinic.settings({"priority_question": True})
    await clinic.check_in("Early Bird", "N")  # N-001: the patient will be N-002, second
    tv = await open_display(browser, appliance, "?lines=A,N")
    await expect(page_columns := tv.locator(".column")).to_have_count(2)
    await expect(page_columns.locator(".column__name")).to_have_text(["Doctor", "Nurse"])

    kiosk = watched(await sign_in(browser, appliance, "form", "Kiosk 1", viewport=TABLET_PORTRAIT))
    await expect(kiosk).to_have_url(re.compile(r"/kiosk$"))
    choose = kiosk.get_by_role("heading", name="What are you here for?")
    await expect(choose).to_be_visible()
    await expect(kiosk.locator("#fname")).to_be_hidden()  # the line comes first
    await expect(kiosk.locator(".line-choice")).to_have_count(2)
    await expect(kiosk.locator(".line-choice svg")).to_have_count(2)  # each with its icon
    await screenshot(kiosk, "kiosk-lines")
    # In the patient's language.
    await kiosk.get_by_role("button", name="Español").click()
    await expect(kiosk.get_by_role("button", name="Enfermería")).to_be_visible()
    await kiosk.get_by_role("button", name="English").click()
    await kiosk.get_by_role("button", name="Nurse").click()

    await expect(kiosk.locator("#chosen-line-name")).to_have_text("Nurse")
    await expect(kiosk.locator("#fname")).to_be_focused()
    await kiosk.locator("#fname").fill("Maria Lopez")
    question = kiosk.get_by_role("group", name=re.compile(r"Do you need priority\?"))
    await expect(question).to_contain_text("elderly, pregnant, disability")
    await question.get_by_text("No", exact=True).click()
    async with kiosk.expect_request(
        lambda r: r.url.endswith("/api/patients/") and r.method == "POST"
    ) as sent:
        await kiosk.get_by_role("button", name="Check in").click()
    form = (await sent.value).post_data or ""
    assert 'name="line"\r\n\r\nN\r\n' in form, form
    assert 'name="priority"\r\n\r\nnormal\r\n' in form, form

    ticket = kiosk.locator("#ticket")
    await expect(ticket).to_have_text("N-002")
    size = await ticket.evaluate("el => parseFloat(getComputedStyle(el).fontSize)")
    assert size >= 80, size  # LARGE: the biggest thing on the screen
    await expect(kiosk.locator("#tv-preview")).to_contain_text("N-002")
    await expect(kiosk.locator("#tv-name")).to_have_text("Maria L.")  # as the TV shows it
    await expect(kiosk.locator("#position")).to_have_text("You are number 2 in line for Nurse.")
    await screenshot(kiosk, "kiosk-ticket")

    nurse = column(tv, "N").get_by_role("listitem")
    await expect(nurse.locator(".waiting__ticket")).to_have_text(["N-001", "N-002"])
    await expect(nurse.nth(1)).to_contain_text("Maria L.")
    await expect(column(tv, "A").get_by_role("listitem")).to_have_count(0)
    await screenshot(tv, "display-columns")

    # A doctor who serves only the nurse's line, in Room 3, calls: the TV says where to go.
    await clinic.check_in("Adam Doe", "A")
    await clinic.doctor_serves("N")
    called = await clinic.call_next()
    assert called["patient"]["fname"] == "Early Bird"
    called = await clinic.call_next()
    assert called["patient"]["fname"] == "Maria Lopez"
    await expect(tv.locator("#called-current")).to_contain_text(f"N-002 → {ROOM}")
    await expect(nurse).to_have_count(0)
    await expect(column(tv, "A").get_by_role("listitem")).to_have_count(1)
    no_script_errors(tv, kiosk)


async def test_with_one_line_the_kiosk_asks_no_line_and_the_tv_has_no_columns(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    kiosk = watched(await sign_in(browser, appliance, "form", "Kiosk 1", viewport=TABLET_PORTRAIT))
    await expect(kiosk.locator("#fname")).to_be_visible()
    await expect(kiosk.locator("#line-screen")).to_be_hidden()
    await expect(kiosk.locator("#priority-question")).to_be_hidden()  # the setting is off
    await kiosk.locator("#fname").fill("Solo Patient")
    await kiosk.get_by_role("button", name="Check in").click()
    await expect(kiosk.locator("#ticket")).to_have_text("A-001")
    await expect(kiosk.locator("#position")).to_have_text("You are next in line.")

    tv = await open_display(browser, appliance)
    await expect(tv.locator(".column")).to_have_count(0)
    await expect(tv.locator("#waiting-list .waiting__ticket")).to_have_text(["A-001"])
    await expect(tv.locator("#waiting-list .waiting__name")).to_have_text(["Solo P."])
    no_script_errors(tv, kiosk)


# --- the TV: paging, calls, look-alike names, legibility -------------------------------------


async def test_a_long_list_pages_so_everyone_is_on_screen_within_one_round(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    for n in range(30):
        await clinic.check_in(f"Patient {chr(65 + n // 26)}{chr(97 + n % 26)}zz")
    tickets = {f"A-{n:03d}" for n in range(1, 31)}
    tv = await open_display(browser, appliance, "?page_seconds=1&show=ticket", SMALL_TV)
    mark = tv.locator(".waiting__page")
    await expect(mark).to_have_text(re.compile(r"^1/\d+$"))
    pages = int((await mark.inner_text()).split("/")[1])
    assert pages >= 2

    # Watch one full round (plus a page) and collect every ticket that was really visible.
    seen: set[str] = set()
    marks: list[str] = []
    for _ in range(pages + 1):
        text = await mark.inner_text()
        marks.append(text)
        shown = await tv.locator("#waiting-list .waiting__ticket").evaluate_all(
            """nodes => nodes.filter(n => {
                 const box = n.getBoundingClientRect();
                 return box.height > 0 && box.top >= 0 && box.bottom <= innerHeight;
               }).map(n => n.textContent)"""
        )
        seen |= set(shown)
        await expect(mark).not_to_have_text(text, timeout=PAGE_TURN_MS * 3)
    assert seen == tickets, sorted(tickets - seen)
    assert f"1/{pages}" in marks and f"{pages}/{pages}" in marks, marks
    assert await tv.evaluate("() => document.documentElement.scrollHeight <= innerHeight")
    assert not await tv.locator(".waiting__name").count()  # ticket only: no names at all
    no_script_errors(tv)


async def test_names_that_read_alike_show_their_tickets_even_in_name_mode(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    await clinic.check_in("Axe Thompson")
    await clinic.check_in("Bea Lund")
    await clinic.check_in("Axe Turner")
    tv = await open_display(browser, appliance, "?show=name")
    rows = tv.locator("#waiting-list").get_by_role("listitem")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_contain_text("A-001")
    await expect(rows.nth(0)).to_contain_text("Axe T.")
    await expect(rows.nth(2)).to_contain_text("A-003")
    await expect(rows.nth(2)).to_contain_text("Axe T.")
    await expect(rows.nth(1).locator(".waiting__ticket")).to_have_count(0)  # unique: name only
    await expect(rows.nth(1)).to_have_text(re.compile(r"Bea L\.$"))

    # One of them called: the other still waits, and the two still differ by ticket.
    await clinic.call_next()
    await expect(tv.locator("#called-current")).to_contain_text(f"A-001 → {ROOM}")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_contain_text("A-003")
    no_script_errors(tv)


async def test_waiting_names_and_tickets_are_legible_from_across_the_room(
    browser: Browser, appliance: Server, clinic: Clinic
) -> None:
    await clinic.check_in("Helen Hart")
    for viewport in (TV, SMALL_TV):
        tv = await open_display(browser, appliance, viewport=viewport)
        for selector in ("#waiting-list .waiting__name", "#waiting-list .waiting__ticket"):
            # The capital H's real height in the font the page uses, against the screen's.
            share = await tv.locator(selector).first.evaluate(
                """el => {
                     const ctx = document.createElement("canvas").getContext("2d");
                     const style = getComputedStyle(el);
                     ctx.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
                     return ctx.measureText("H").actualBoundingBoxAscent / innerHeight;
                   }"""
            )
            assert share >= 0.034, (viewport, selector, share)
        no_script_errors(tv)
