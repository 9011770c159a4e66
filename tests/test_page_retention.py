"""The retention settings on the admin page in real Chromium against the real server: the
days a photo and a name are kept are set from the settings form, and out-of-range values get
our own texts before anything is sent."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser import sign_in
from tests.serverproc import Server, http_json


async def test_the_retention_settings_are_saved_and_checked(
    browser: Browser, appliance: Server
) -> None:
    admin = await sign_in(browser, appliance, "admin", "Boss")
    await admin.goto("/admin#settings")
    photos = admin.get_by_label("Delete photos after (days)")
    names = admin.get_by_label("Delete names and answers after (days)")
    status = admin.locator("#settings-status")
    await expect(photos).to_have_value("0")  # the defaults: the night after, 30 days
    await expect(names).to_have_value("30")

    await names.fill("")
    await admin.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text("Names are kept a whole number of days from 0 to 3650.")
    await expect(names).to_be_focused()
    await names.fill("14")
    await photos.fill("4000")
    await admin.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text("Photos are kept a whole number of days from 0 to 3650.")
    await photos.fill("2")
    await admin.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text("Saved.")

    token = appliance.login(appliance.create_token("admin", "API"))
    code, settings = http_json(
        "GET", f"{appliance.base_url}/api/settings/", None, {"Authorization": f"Bearer {token}"}
    )
    assert code == 200
    assert (settings["photo_retention_days"], settings["name_retention_days"]) == (2, 14)
    await admin.reload()
    await expect(photos).to_have_value("2")
    await expect(names).to_have_value("14")
