"""The doctor's console in real Chromium against the real server: the live list, Call next by
keyboard, a per-patient Call, what a doctor sees when someone else was quicker."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageDraw
from playwright.async_api import Page, Route, expect

from tests.browser import (
    LAPTOP,
    screenshot,
    sign_in,
)
from tests.serverproc import Server

ROOM = "Room 3"


class Desk:
    """The other people at the clinic, over the real API: a kiosk and a second doctor."""

    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.kiosk = {"Authorization": f"Bearer {server.login(server.create_token('form', 'K'))}"}
        doctor = server.login(server.create_token("doctor", "Dr. Other"))
        self.other_doctor = {"Authorization": f"Bearer {doctor}"}

    async def check_in(self, fname: str, photo: bytes | None = None) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("fname", fname)
        if photo is not None:
            form.add_field("image", photo, filename="face.jpg", content_type="image/jpeg")
        url = f"{self.server.base_url}/api/patients/"
        async with self.http.post(url, data=form, headers=self.kiosk) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()

    async def queue_names(self) -> list[str]:
        url = f"{self.server.base_url}/api/queue/"
        # As a doctor: the kiosk's own read of the queue gets only the wall display's view.
        async with self.http.get(url, headers=self.other_doctor) as resp:
            assert resp.status == 200
            return [item["patient"]["fname"] for item in await resp.json()]

    async def other_doctor_calls_next(self) -> int:
        url = f"{self.server.base_url}/api/doctors/"
        body = {"action": "call_next"}
        async with self.http.post(url, json=body, headers=self.other_doctor) as resp:
            return resp.status


@pytest.fixture
async def desk(appliance: Server) -> AsyncIterator[Desk]:
    async with aiohttp.ClientSession() as http:
        yield Desk(appliance, http)


def face_jpeg(colour: tuple[int, int, int]) -> bytes:
    """A small portrait-like JPEG: a head and shoulders on a coloured background."""
    image = Image.new("RGB", (240, 240), colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse((75, 40, 165, 140), fill=(236, 200, 170))
    draw.ellipse((40, 150, 200, 320), fill=(60, 70, 90))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def rows(page: Page):
    return page.locator("#queue-list > li")


def result(page: Page):
    return page.locator("#call-result")


def figure(page: Page, stat: str):
    return page.locator(f'#today [data-stat="{stat}"]')


async def open_console(browser, appliance: Server) -> Page:
    page = await sign_in(browser, appliance, "doctor", "Dr. Lee", room=ROOM)
    await expect(page).to_have_url(re.compile(r"/doctor$"))
    await expect(page.locator("#queue-loading")).to_be_hidden()
    return page


async def blur(page: Page) -> None:
    """Nothing focused: keys go to the page itself, as after a click on empty space."""
    await page.evaluate("document.activeElement && document.activeElement.blur()")


async def test_patients_appear_live_and_the_keyboard_calls_them_in_order(
    browser,
    appliance: Server,
    desk: Desk,
) -> None:
    page = await open_console(browser, appliance)
    await expect(page.get_by_text("Nobody is waiting", exact=True)).to_be_visible()
    await expect(page.get_by_text(f"Calls go to {ROOM}")).to_be_visible()

    await desk.check_in("Ann Lee")
    await desk.check_in("Bob Stone")
    await expect(rows(page).locator(".patient__name")).to_have_text(["Ann Lee", "Bob Stone"])
    await expect(rows(page).locator(".patient__wait")).to_have_text(["just now", "just now"])
    await expect(page.get_by_text("Nobody is waiting", exact=True)).to_be_hidden()
    await expect(page.locator("#next-up")).to_have_text("Next: Ann Lee")

    # Keyboard only: Tab to the big button, Enter (past each row's name, priority and Call).
    call_next = page.get_by_role("button", name="Call next")
    await blur(page)
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await call_next.evaluate("b => b === document.activeElement"):
            break
    await expect(call_next).to_be_focused()
    await page.keyboard.press("Enter")

    await expect(result(page)).to_have_text(re.compile(r"Called: Ann Lee → Room 3"))
    assert await desk.queue_names() == ["Bob Stone"]
    await expect(rows(page).locator(".patient__name")).to_have_text(["Bob Stone"])
    recent = page.locator("#recent-list > li")
    await expect(recent.first).to_contain_text("Ann Lee")
    await expect(recent.first).to_contain_text(ROOM)
    await expect(figure(page, "called")).to_have_text("1")
    await expect(figure(page, "checked_in")).to_have_text("2")
    await expect(figure(page, "waiting")).to_have_text("1")
    await expect(call_next).to_be_focused()  # the keyboard user keeps their place

    # Space anywhere on the page (nothing focused) calls the next one too.
    await blur(page)
    await page.keyboard.press("Space")
    await expect(result(page)).to_have_text(re.compile(r"Called: Bob Stone → Room 3"))
    assert await desk.queue_names() == []
    await expect(page.get_by_text("Nobody is waiting", exact=True)).to_be_visible()
    await expect(call_next).to_be_disabled()
    await expect(recent.locator(".recent__name")).to_have_text(["Bob Stone", "Ann Lee"])
    await expect(figure(page, "called")).to_have_text("2")
    await expect(figure(page, "waiting")).to_have_text("0")

    # Space in an empty waiting room calls nobody and says nothing alarming.
    await blur(page)
    await page.keyboard.press("Space")
    await expect(result(page)).to_have_text(re.compile(r"Called: Bob Stone"))
    await expect(page.locator(".call-result--error")).to_have_count(0)


async def test_a_chosen_patient_is_called_and_one_press_calls_one_patient(
    browser,
    appliance: Server,
    desk: Desk,
) -> None:
    page = await open_console(browser, appliance)
    for name in ("Ann Lee", "Bob Stone", "Cleo Park", "Dan Ruiz"):
        await desk.check_in(name)
    await expect(rows(page)).to_have_count(4)

    await page.get_by_role("button", name="Call Bob Stone").focus()
    await page.keyboard.press("Enter")
    await expect(result(page)).to_have_text(re.compile(r"Called: Bob Stone → Room 3"))
    # The keyboard user lands on the row that took Bob's place.
    await expect(page.get_by_role("button", name="Call Cleo Park")).to_be_focused()
    assert await desk.queue_names() == ["Ann Lee", "Cleo Park", "Dan Ruiz"]
    await expect(rows(page).locator(".patient__name")).to_have_text(
        ["Ann Lee", "Cleo Park", "Dan Ruiz"]
    )

    # While a call is on its way, more presses (keys and clicks) call nobody else.
    held: list[Route] = []
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        held.append(route)
        await release.wait()
        await route.continue_()

    await page.route("**/api/doctors/", hold)
    call_next = page.locator("#call-next")
    await call_next.focus()
    await page.keyboard.press("Enter")
    await expect(call_next).to_be_disabled()
    await expect(call_next).to_have_text("Calling…")
    await blur(page)
    await page.keyboard.press("Space")
    await page.keyboard.press("Enter")
    await call_next.click(force=True)
    await page.get_by_role("button", name="Call Dan Ruiz").click(force=True)
    assert len(held) == 1
    release.set()
    await expect(result(page)).to_have_text(re.compile(r"Called: Ann Lee"))
    await expect(call_next).to_be_enabled()
    assert len(held) == 1
    assert await desk.queue_names() == ["Cleo Park", "Dan Ruiz"]
    await page.unroute("**/api/doctors/")


async def test_someone_else_calling_first_is_news_not_an_error(
    browser,
    appliance: Server,
    desk: Desk,
) -> None:
    page = await open_console(browser, appliance)
    await desk.check_in("Ann Lee")
    await expect(rows(page)).to_have_count(1)

    # The other doctor's call lands just before ours reaches the server: a real race.
    async def other_doctor_first(route: Route) -> None:
        assert await desk.other_doctor_calls_next() == 200
        await route.continue_()

    await page.route("**/api/doctors/", other_doctor_first)
    await page.get_by_role("button", name="Call next").click()
    kind = page.locator(".call-result--info")
    await expect(kind).to_have_text(re.compile(r"Someone else has just called the last patient"))
    await expect(page.locator(".call-result--error")).to_have_count(0)
    await expect(page.get_by_text("Nobody is waiting", exact=True)).to_be_visible()
    # The other doctor's call is in the recent list all the same.
    await expect(page.locator("#recent-list .recent__name")).to_have_text(["Ann Lee"])
    await expect(figure(page, "called")).to_have_text("1")


async def test_waiting_times_move_on_and_the_console_at_laptop_size(
    browser,
    appliance: Server,
    desk: Desk,
) -> None:
    page = await open_console(browser, appliance)
    await page.clock.install()
    await page.reload()
    await expect(page.get_by_text("Nobody is waiting", exact=True)).to_be_visible()

    people = [
        ("María José García", face_jpeg((180, 210, 230))),
        ("Tom Okafor", None),
        ("Priya Raman", face_jpeg((215, 200, 235))),
        ("Jonathan Whitfield-Brown", face_jpeg((200, 225, 200))),
        ("Lena Vogel", None),
    ]
    for name, photo in people:
        await desk.check_in(name, photo)
    await expect(rows(page)).to_have_count(len(people))
    await expect(rows(page).locator("img.patient__photo")).to_have_count(3)
    await expect(rows(page).first.locator(".patient__wait")).to_have_text("just now")

    await page.clock.fast_forward("12:00")  # the 30-second refresh runs; no reload
    await expect(rows(page).locator(".patient__wait")).to_have_text(["12 min"] * len(people))

    await page.get_by_role("button", name="Call next").click()
    await expect(result(page)).to_have_text(re.compile(r"Called: María José García → Room 3"))
    await expect(rows(page)).to_have_count(len(people) - 1)
    await expect(figure(page, "median_wait_seconds")).to_have_text(re.compile(r"\d+ min"))
    await expect(page.locator("#recent-list img.recent__photo")).to_have_count(1)
    await blur(page)
    await page.mouse.move(5, 760)  # no hover effect in the picture
    assert page.viewport_size == LAPTOP
    await screenshot(page, "doctor-laptop")


async def test_the_console_follows_the_clinic_settings_without_a_reload(
    browser,
    appliance: Server,
    desk: Desk,
) -> None:
    page = await open_console(browser, appliance)
    await desk.check_in("Ann Lee")
    await expect(rows(page)).to_have_count(1)
    admin = appliance.login(appliance.create_token("admin", "Boss"))
    url = f"{appliance.base_url}/api/settings/"
    change = {"language": "es", "clinic_name": "Clínica Norte"}
    headers = {"Authorization": f"Bearer {admin}"}
    async with desk.http.patch(url, json=change, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    await expect(page.get_by_role("button", name="Llamar al siguiente")).to_be_visible()
    await expect(page.get_by_role("button", name="Llamar a Ann Lee")).to_be_visible()
    await expect(page.locator("[data-clinic-name]")).to_have_text("Clínica Norte")
    await expect(page.locator("html")).to_have_attribute("lang", "es")
    await expect(page).to_have_title(re.compile(r"Consola del médico · Clínica Norte"))


async def test_names_are_bidi_isolated_so_a_right_to_left_name_reorders_nothing(
    browser,
    appliance: Server,
    desk: Desk,
) -> None:
    """A Hebrew name before "→ Room 3" would otherwise pull the arrow and the room into its
    right-to-left run; each name sits in its own isolated run (issue 13, item 11)."""
    page = await open_console(browser, appliance)
    await desk.check_in("דוד לוי")
    await desk.check_in("Ann Lee")
    names = rows(page).locator(".patient__name")
    await expect(names).to_have_text(["דוד לוי", "Ann Lee"])
    for index in range(2):
        bidi = await names.nth(index).evaluate("n => getComputedStyle(n).unicodeBidi")
        assert bidi == "isolate"
    await expect(page.locator("#next-up")).to_have_text("Next: דוד לוי")
    await expect(page.locator("#next-up bdi")).to_have_text("דוד לוי")

    await page.get_by_role("button", name="Call next").click()
    await expect(result(page)).to_have_text(re.compile(r"Called: דוד לוי → Room 3"))
    await expect(result(page).locator("bdi")).to_have_text("דוד לוי")
    recent = page.locator("#recent-list .recent__name").first
    assert await recent.evaluate("n => getComputedStyle(n).unicodeBidi") == "isolate"
