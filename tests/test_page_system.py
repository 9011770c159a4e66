"""/admin's System section in real Chromium against the real server: it shows the figures
GET /api/system/ gives, and a text per warning code (issue 19, item 17)."""

from __future__ import annotations

import json
import re

from playwright.async_api import expect

from checkin_appliance import system
from tests.browser import sign_in
from tests.serverproc import Server, http_json


def gb(value: int) -> str:
    """system.js's size() in English for the sizes here."""
    return f"{value / 1e9:,.1f} GB" if value >= 1e9 else f"{value / 1e6:,.0f} MB"


async def test_the_system_section_shows_what_the_api_gives(browser, appliance: Server) -> None:
    system.record_backup(
        appliance.data_dir,
        ok=True,
        where="/media/usb/checkin-backup.tar.age",
        size_bytes=12_345_678,
    )
    page = await sign_in(browser, appliance, "admin", "Manager")
    await expect(page).to_have_url(re.compile(r"/admin$"))
    access = appliance.login(appliance.create_token("admin", "Reader"))
    status, body = http_json(
        "GET", f"{appliance.base_url}/api/system/", None, {"Authorization": f"Bearer {access}"}
    )
    assert status == 200, body

    section = page.locator("#system")
    await section.scroll_into_view_if_needed()

    def figure(name: str):
        return section.locator(f'[data-system="{name}"]')

    await expect(figure("version")).to_have_text(body["version"])
    await expect(figure("clock")).to_contain_text(f"({body['clock']['time_zone']})")
    await expect(figure("disk")).to_contain_text(f"free of {gb(body['disk']['total_bytes'])}")
    await expect(figure("database")).to_contain_text(gb(body["database"]["db_bytes"]))
    await expect(figure("health")).to_contain_text("Sound (checked in")
    await expect(figure("certificate")).to_have_text("None: plain HTTP")
    await expect(figure("backup")).to_have_text(
        re.compile(r"^\d+ min ago, 12 MB, to /media/usb/checkin-backup\.tar\.age$")
    )
    assert body["warnings"] == [], json.dumps(body["warnings"])  # a fresh backup, no TLS
    await expect(section.locator("#system-warnings li")).to_have_count(0)

    # A failed backup: the API's warning, and the page's own text for its code.
    system.record_backup(appliance.data_dir, ok=False, where="/media/usb/", error="no stick")
    await page.reload()
    await expect(section.locator('#system-warnings li[data-code="backup_failed"]')).to_have_text(
        "The last backup failed."
    )
    await expect(figure("backup")).to_contain_text("Failed")
    await expect(figure("backup")).to_contain_text("no stick")
