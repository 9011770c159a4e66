"""The kiosk on a box whose disk is full (issue 19, item 9): one try, no retry loop, and a
text the patient understands and staff can act on."""

from __future__ import annotations

import json

from playwright.async_api import Route, expect

from tests.serverproc import Server
from tests.test_page_kiosk import name_field, open_kiosk

DISK_FULL = {"error": "The box's disk is full; nothing was stored.", "code": "disk_full"}


async def test_a_full_disk_is_told_at_once_and_not_retried(browser, appliance: Server) -> None:
    page = await open_kiosk(browser, appliance)
    tries: list[str] = []

    async def full(route: Route) -> None:
        tries.append(route.request.method)
        await route.fulfill(status=507, content_type="application/json", body=json.dumps(DISK_FULL))

    await page.route("**/api/patients/", full)
    await name_field(page).fill("Noor Khan")
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#form-message")).to_have_text(
        "We could not check you in: the check-in box has run out of storage space. Please "
        "tell the front desk. (Staff: see System in Administration.)"
    )
    await expect(page.locator("#send-status")).to_have_text("")
    await expect(name_field(page)).to_have_value("Noor Khan")
    assert tries == ["POST"]
