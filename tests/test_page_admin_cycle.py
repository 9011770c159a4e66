"""The call cycle on the admin page in real Chromium against the real server: the undo
window, the no-show grace and the end of the day are set from the settings form (out of
range values get our own texts), and "End the day now" closes every open visit after a
confirmation, as the API then shows."""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from tests.browser import screenshot, sign_in
from tests.serverproc import Server, http_json


def admin_api(server: Server, method: str, path: str, body: object = None):
    headers = {"Authorization": f"Bearer {server.login(server.create_token('admin', 'API'))}"}
    return http_json(method, f"{server.base_url}{path}", body, headers)


def check_in(server: Server, token: str, name: str) -> None:
    status, _ = http_json(
        "POST",
        f"{server.base_url}/api/patients/",
        {"fname": name},
        {"Authorization": f"Bearer {token}"},
    )
    assert status == 201


async def test_the_call_cycle_settings_are_saved_and_checked(
    browser: Browser, appliance: Server
) -> None:
    admin = await sign_in(browser, appliance, "admin", "Boss")
    await admin.goto("/admin#settings")
    undo = admin.get_by_label("Undo window (seconds)")
    no_show = admin.get_by_label("Mark as no-show after (minutes)")
    end = admin.get_by_label("End of the day")
    status = admin.locator("#settings-status")
    await expect(undo).to_have_value("120")  # the defaults: 2 minutes, no grace, no end
    await expect(no_show).to_have_value("")
    await expect(end).to_have_value("")
    schedule = admin.locator("#end-day-schedule")
    await expect(schedule).to_have_text("The day does not end by itself: set a time in Settings.")

    await no_show.fill("0")
    await admin.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text(
        "The no-show time must be a whole number of minutes from 1 to 240, or empty."
    )
    await expect(no_show).to_be_focused()
    await no_show.fill("10")
    await undo.fill("5000")
    await admin.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text(re.compile(r"^The undo window must be"))
    await undo.fill("60")
    await end.fill("19:30")
    await admin.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text("Saved.")
    code, settings = admin_api(appliance, "GET", "/api/settings/")
    assert code == 200
    assert (settings["undo_seconds"], settings["no_show_minutes"], settings["end_of_day"]) == (
        60,
        10,
        "19:30",
    )
    await expect(schedule).to_have_text("The day ends by itself at 19:30.")
    # Emptied: off again (null), and the page shows what the box has after a reload.
    await no_show.fill("")
    await end.fill("")
    await admin.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text("Saved.")
    _, settings = admin_api(appliance, "GET", "/api/settings/")
    assert (settings["no_show_minutes"], settings["end_of_day"]) == (None, None)
    await admin.reload()
    await expect(undo).to_have_value("60")
    await expect(no_show).to_have_value("")
    await expect(end).to_have_value("")


async def test_end_the_day_now_closes_every_open_visit(browser: Browser, appliance: Server) -> None:
    kiosk = appliance.login(appliance.create_token("form", "Kiosk"))
    for name in ("Ann Example", "Bob Example", "Cat Example"):
        check_in(appliance, kiosk, name)
    doctor = appliance.login(appliance.create_token("doctor", "Dr"))
    code, _ = http_json(
        "POST",
        f"{appliance.base_url}/api/doctors/",
        {"action": "call_next"},
        {"Authorization": f"Bearer {doctor}"},
    )
    assert code == 200

    admin = await sign_in(browser, appliance, "admin", "Boss")
    await admin.goto("/admin#today")
    waiting = admin.locator('#today-figures [data-stat="waiting"]')
    await expect(waiting).to_have_text("2")
    button = admin.get_by_role("button", name="End the day now")
    # Cancel is the default and changes nothing.
    await button.click()
    dialog = admin.locator("#end-day-dialog")
    await expect(dialog).to_be_visible()
    await expect(admin.locator("#end-day-cancel")).to_be_focused()
    await admin.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    code, queue = admin_api(appliance, "GET", "/api/queue/")
    assert code == 200 and len(queue) == 2

    await button.click()
    await screenshot(admin, "admin-end-day")
    await dialog.get_by_role("button", name="End the day").click()
    await expect(dialog).to_be_hidden()
    await expect(admin.locator("#end-day-status")).to_have_text(
        "Day ended: 3 visit(s) closed as not seen."  # two waiting and the one called
    )
    await expect(waiting).to_have_text("0")
    _, queue = admin_api(appliance, "GET", "/api/queue/")
    assert queue == []
    # Again: nobody is left.
    await button.click()
    await dialog.get_by_role("button", name="End the day").click()
    await expect(admin.locator("#end-day-status")).to_have_text("Day ended: nobody was still open.")
