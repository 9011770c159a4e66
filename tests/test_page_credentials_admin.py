"""Item 5 of issue 16 in real Chromium against the real server: the administrator edits a
credential's label, room and lines on /admin, sees each device's last contact ("online now",
"last seen … ago"), reactivates a deactivated one; and an open kiosk and wall display switch
to "signed out by the administrator" within seconds of being deactivated (or of a new
password), never to the staff sign-in form."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from datetime import UTC, datetime, timedelta

from playwright.async_api import Page, expect

from checkin_appliance.domain import format_time
from checkin_appliance.web.messages.common import MESSAGES as COMMON
from checkin_appliance.web.messages.staff import MESSAGES
from tests.browser import LAPTOP, TV, sign_in, sign_in_with
from tests.conftest import wait_until
from tests.serverproc import PASSWORD, Server, http_json

EN = MESSAGES["en"]
SIGNED_OUT = COMMON["en"]["signed_out.title"]
SWITCH_MS = 8000  # "within seconds": the feed closes at once, the page is asked for again


def row(page: Page, token: str):
    return page.locator(f'#credentials-body tr[data-token="{token}"]')


def admin_post(server: Server, admin_access: str, path: str, body: dict | None = None) -> dict:
    status, answer = http_json(
        "POST", f"{server.base_url}{path}", body or {}, {"Authorization": f"Bearer {admin_access}"}
    )
    assert status == 200, answer
    return answer


def api_admin(server: Server) -> str:
    token = server.create_token("admin", "Script admin")
    status, body = http_json(
        "POST", f"{server.base_url}/api/login/", {"token": token, "password": PASSWORD}
    )
    assert status == 200, body
    return body["access"]


def signed_in_minutes_ago(server: Server, token: str, minutes: int) -> None:
    """A session of `token` begun `minutes` ago and unused since, written as a sign-in then
    would have (in the running server's database, as test_page_credentials.py does)."""
    then = format_time(datetime.now(UTC) - timedelta(minutes=minutes))
    path = server.data_dir / "checkin.db"
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
        db.execute(
            "INSERT INTO sessions (credential_id, access_hash, access_expires, refresh_hash,"
            " refresh_expires, created_at) SELECT id, ?, ?, ?, ?, ? FROM credentials"
            " WHERE token = ?",
            (f"a{token}", then, f"r{token}", then, then, token),
        )


async def test_admin_edits_a_doctor_and_sees_last_contact_and_reactivates(
    browser, appliance: Server
) -> None:
    doctor = appliance.create_token("doctor", "Dr. Lee", room="Room 1")
    tv = appliance.create_token("queue", "Hall TV")
    spare = appliance.create_token("form", "Spare kiosk")
    old = appliance.create_token("form", "Old kiosk")
    signed_in_minutes_ago(appliance, old, 7)
    older = appliance.create_token("queue", "Old TV")
    signed_in_minutes_ago(appliance, older, 3 * 60 + 5)
    display = await sign_in_with(browser, appliance, tv, TV)  # its feed: online now
    await expect(display).to_have_url(re.compile(r"/display$"))

    page = await sign_in(browser, appliance, "admin", "Manager", viewport=LAPTOP)
    await expect(row(page, tv).locator(".credential-seen")).to_have_text(EN["admin.seen_online"])
    await expect(row(page, spare).locator(".credential-seen")).to_have_text(EN["admin.seen_never"])
    await expect(row(page, old).locator(".credential-seen")).to_have_text(
        EN["admin.seen_minutes"].replace("{n}", "7")
    )
    await expect(row(page, older).locator(".credential-seen")).to_have_text(
        EN["admin.seen_hours"].replace("{n}", "3")
    )
    await expect(row(page, doctor).locator(".credential-seen")).to_have_text(EN["admin.seen_never"])

    # Label, room and lines of the doctor, in the dialog.
    await page.get_by_role("button", name="Edit Dr. Lee").click()
    dialog = page.get_by_role("dialog", name="Edit Dr. Lee")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label(EN["admin.credential_label"]).fill("Dr. Ana Lee")
    await dialog.get_by_label(EN["admin.credential_room"]).fill("Room 9")
    await dialog.get_by_role("button", name=EN["admin.credential_save"]).click()
    await expect(dialog).to_be_hidden()
    doctor_row = row(page, doctor)
    await expect(doctor_row.locator(".col-label")).to_contain_text("Dr. Ana Lee")
    await expect(doctor_row.locator(".col-room")).to_have_text("Room 9")
    await expect(page.locator("#credentials-status")).to_have_text(
        EN["admin.credential_saved"].format(label="Dr. Ana Lee")
    )

    # A wall display: only its label is asked for.
    await page.get_by_role("button", name="Edit Hall TV").click()
    tv_dialog = page.get_by_role("dialog", name="Edit Hall TV")
    await expect(tv_dialog.locator("#credential-room-field")).to_be_hidden()
    await tv_dialog.get_by_label(EN["admin.credential_label"]).fill("Lobby TV")
    await tv_dialog.get_by_label(EN["admin.credential_label"]).press("Enter")
    await expect(tv_dialog).to_be_hidden()
    await expect(row(page, tv).locator(".col-label")).to_contain_text("Lobby TV")

    # The doctor signs in: "last seen just now" (no live feed from a script's login).
    status, _ = http_json(
        "POST", f"{appliance.base_url}/api/login/", {"token": doctor, "password": PASSWORD}
    )
    assert status == 200
    await page.reload()
    await expect(row(page, doctor).locator(".credential-seen")).to_have_text(EN["admin.seen_now"])

    # Deactivate, then reactivate from the list.
    await page.get_by_role("button", name="Deactivate Dr. Ana Lee").click()
    await page.locator("#confirm-yes").click()
    reactivate = page.get_by_role("button", name="Reactivate Dr. Ana Lee")
    await reactivate.click()
    await expect(page.locator("#credentials-status")).to_have_text(
        EN["admin.reactivated"].format(label="Dr. Ana Lee")
    )
    await expect(row(page, doctor).locator(".col-status")).to_have_text(EN["admin.active"])


async def test_kiosk_and_display_show_signed_out_when_the_admin_ends_them(
    browser, appliance: Server
) -> None:
    kiosk_token = appliance.create_token("form", "Front kiosk")
    tv_token = appliance.create_token("queue", "Hall TV")
    kiosk = await sign_in_with(browser, appliance, kiosk_token)
    display = await sign_in_with(browser, appliance, tv_token, TV)
    await expect(kiosk).to_have_url(re.compile(r"/kiosk$"))
    await expect(display).to_have_url(re.compile(r"/display$"))
    admin = api_admin(appliance)
    # Both pages' live feeds are open (the admin list says so) before the admin acts.

    def both_online() -> bool:
        _, listing = http_json(
            "GET",
            f"{appliance.base_url}/api/credentials/",
            None,
            {"Authorization": f"Bearer {admin}"},
        )
        online = {c["token"] for c in listing if c["online"]}
        return {kiosk_token, tv_token} <= online

    await wait_until(both_online)

    admin_post(appliance, admin, f"/api/credentials/{kiosk_token}/deactivate/")
    admin_post(
        appliance,
        admin,
        f"/api/credentials/{tv_token}/password/",
        {"password": "new wall tv pass 42"},
    )
    for page, path in ((kiosk, "/kiosk"), (display, "/display")):
        await expect(page.get_by_role("heading", name=SIGNED_OUT)).to_be_visible(timeout=SWITCH_MS)
        await expect(page.locator('input[type="password"]')).to_have_count(0)
        link = page.get_by_role("link", name=COMMON["en"]["signed_out.staff"])
        await expect(link).to_have_attribute("href", f"/login?next={path}")

    # Staff can still sign the display in deliberately, with its new password.
    await display.get_by_role("link", name=COMMON["en"]["signed_out.staff"]).click()
    await expect(display).to_have_url(re.compile(r"/login"))
