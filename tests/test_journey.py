"""Unboxing to first call, in real Chromium: setup, devices, a kiosk photo, the TV, the doctor.

One test walks the whole path a clinic takes on day one, with nothing but the pages.
"""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, expect

from tests.browser import (
    LAPTOP,
    TABLET_PORTRAIT,
    TV,
    new_page,
    screenshot,
)
from tests.serverproc import SETUP_CODE, Server

ADMIN_PASSWORD = "clinic admin pw"
DEVICE_PASSWORD = "device password"


async def create_device(admin: Page, role: str, label: str, room: str | None = None) -> str:
    """Through the admin page's form; returns the token it shows once."""
    await admin.locator("#create-role").select_option(role)
    await admin.locator("#create-label").fill(label)
    if room:
        await admin.locator("#create-room").fill(room)
    await admin.locator("#create-password").fill(DEVICE_PASSWORD)
    await admin.locator("#create-confirm").fill(DEVICE_PASSWORD)
    await admin.locator("#create-submit").click()
    token_box = admin.locator("#token-reveal-token")
    await expect(token_box).to_have_text(re.compile(r"^\s*\d{8}\s*$"))
    token = (await token_box.inner_text()).strip()
    await admin.locator("#token-reveal-done").click()
    return token


async def device_page(
    browser: Browser, server: Server, token: str, viewport: dict[str, int]
) -> Page:
    _, page = await new_page(browser, server, viewport)
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login"))
    await page.get_by_label("Access token").fill(token)
    await page.get_by_label("Password").fill(DEVICE_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/login" not in url)
    return page


async def test_a_clinic_goes_from_unboxing_to_its_first_call(
    browser: Browser, appliance: Server
) -> None:
    code = appliance.wait_for_output(SETUP_CODE).group(1)

    # The manager opens the box's address: first run leads to setup.
    _, admin = await new_page(browser, appliance, LAPTOP)
    await admin.goto("/")
    await expect(admin).to_have_url(re.compile(r"/setup$"))
    await admin.get_by_label("Setup code").fill(code)
    await admin.get_by_label("New administrator password").fill(ADMIN_PASSWORD)
    await admin.get_by_label("Repeat the password").fill(ADMIN_PASSWORD)
    await admin.get_by_role("button", name="Create administrator").click()
    await expect(admin.locator("[data-admin-token]")).to_have_text(re.compile(r"\d{8}"))
    await admin.get_by_role("link", name="Continue to administration").click()
    await expect(admin).to_have_url(re.compile(r"/admin$"))

    kiosk_token = await create_device(admin, "form", "Front desk kiosk")
    tv_token = await create_device(admin, "queue", "Waiting-room TV")
    doctor_token = await create_device(admin, "doctor", "Dr. Lee", room="Room 3")

    kiosk = await device_page(browser, appliance, kiosk_token, TABLET_PORTRAIT)
    tv = await device_page(browser, appliance, tv_token, TV)
    doctor = await device_page(browser, appliance, doctor_token, LAPTOP)
    await expect(kiosk).to_have_url(re.compile(r"/kiosk$"))
    await expect(tv).to_have_url(re.compile(r"/display$"))
    await expect(doctor).to_have_url(re.compile(r"/doctor$"))
    await expect(tv.locator("#waiting-empty")).to_be_visible()

    # A patient checks in with a camera photo.
    await kiosk.get_by_label("Your full name").fill("Maria Lopez")
    await kiosk.get_by_role("button", name="Use the camera").click()
    await kiosk.get_by_role("button", name="Take photo").click()
    await kiosk.get_by_role("button", name="Check in").click()
    await expect(kiosk.get_by_text("You are next in line.")).to_be_visible()

    # The TV shows her within a second, as the privacy setting says ("Maria L.").
    await expect(tv.locator("#waiting-list")).to_contain_text("Maria L.", timeout=1000)
    await expect(tv.locator("#waiting-list")).not_to_contain_text("Lopez")
    # The doctor sees her full name and photo.
    row = doctor.get_by_role("listitem").filter(has_text="Maria Lopez")
    await expect(row).to_be_visible()
    await expect(row.locator("img")).to_have_attribute(
        "src", re.compile(r"^/media/patient_images/")
    )

    await doctor.get_by_role("button", name="Call next").click()
    await expect(doctor.get_by_text(re.compile(r"Called: Maria Lopez"))).to_be_visible()

    # The TV calls her to Room 3 and she leaves the waiting list.
    await expect(tv.locator("#called-current")).to_contain_text("Maria L.", timeout=1000)
    await expect(tv.locator("#called-current")).to_contain_text("Room 3")
    await expect(tv.locator("#waiting-list")).not_to_contain_text("Maria")
    await expect(tv.locator("#waiting-empty")).to_be_visible()
    await screenshot(tv, "journey-display-after-call")

    # And the manager's summary counts the day so far.
    await expect(admin.locator("#today-figures")).to_contain_text("1")
