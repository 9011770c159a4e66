"""The administration page in real Chromium against the real server: credentials made and
ended through the form, settings saved through the form, today's figures kept live."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser import (
    ARTIFACTS,
    sign_in,
)
from tests.serverproc import Server, http_json

NEW_PASSWORD = "kiosk pass 2026"


def api(server: Server, method: str, path: str, access: str, body: object = None):
    return http_json(
        method, f"{server.base_url}{path}", body, {"Authorization": f"Bearer {access}"}
    )


def try_login(server: Server, token: str, password: str = NEW_PASSWORD) -> tuple[int, dict]:
    return http_json(
        "POST", f"{server.base_url}/api/login/", {"token": token, "password": password}
    )


def row(page: Page, token: str):
    return page.locator(f'#credentials-body tr[data-token="{token}"]')


async def create(page: Page, role: str, label: str, room: str | None = None) -> str:
    """Fills and sends the create form; returns the token the page reveals."""
    await page.get_by_label("Role", exact=True).select_option(role)
    room_field = page.get_by_label("Room", exact=True)
    if role == "doctor":
        await expect(room_field).to_be_visible()
        await room_field.fill(room or "")
    else:
        await expect(room_field).to_be_hidden()
    await page.get_by_label("Label", exact=True).fill(label)
    await page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Create credential").click()
    reveal = page.locator("#token-reveal")
    await expect(reveal).to_be_visible()
    await expect(reveal).to_be_focused()
    await expect(reveal.get_by_role("heading")).to_have_text(f"New access token for {label}")
    token = (await page.locator("#token-reveal-token").inner_text()).strip()
    assert re.fullmatch(r"\d{8}", token), token
    return token


async def test_credentials_made_in_the_form_sign_in_and_deactivated_ones_stop(
    browser,
    appliance: Server,
) -> None:
    page = await sign_in(browser, appliance, "admin", "Manager")
    await expect(page).to_have_url(re.compile(r"/admin$"))
    await expect(page.locator("#credentials-body tr")).to_have_count(1)

    # A typo in the repeated password is caught before anything is created.
    await page.get_by_label("Label", exact=True).fill("Typo")
    await page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the password").fill(NEW_PASSWORD + "x")
    await page.get_by_role("button", name="Create credential").click()
    await expect(page.locator("#create-status")).to_have_text("The two passwords are not the same.")
    await expect(page.locator("#token-reveal")).to_be_hidden()
    # One easy to guess: the server refuses it (password_too_weak) and the page says why.
    await page.get_by_label("Password", exact=True).fill("password123")
    await page.get_by_label("Repeat the password").fill("password123")
    await page.get_by_role("button", name="Create credential").click()
    await expect(page.locator("#create-status")).to_contain_text("too easy to guess")
    await expect(page.locator("#token-reveal")).to_be_hidden()

    made: dict[str, tuple[str, str, str | None]] = {}
    for role, label, room in [
        ("form", "Kiosk 1", None),
        ("queue", "Lobby TV", None),
        ("doctor", "Dr. Lee", "Room 3"),
    ]:
        token = await create(page, role, label, room)
        assert token not in made
        # Shown once: the reveal box holds only the newest token, never an earlier one.
        reveal = page.locator("#token-reveal")
        for earlier in made:
            await expect(reveal).not_to_contain_text(earlier)
        made[token] = (role, label, room)
        status, body = try_login(appliance, token)
        assert (status, body["role"]) == (200, role)
        words = {"form": "Check-in kiosk", "queue": "Waiting-room display", "doctor": "Doctor"}
        await expect(row(page, token)).to_contain_text(words[role])
        await expect(row(page, token)).to_contain_text("Active")
    doctor_token = next(t for t, (role, _, _) in made.items() if role == "doctor")
    await expect(row(page, doctor_token).locator(".col-room")).to_have_text("Room 3")
    await expect(page.locator("#credentials-body tr")).to_have_count(4)
    await page.locator("#credentials").screenshot(path=str(ARTIFACTS / "admin-credentials.png"))

    await page.get_by_role("button", name="I have written it down").click()
    await expect(page.locator("#token-reveal")).to_be_hidden()
    await expect(page.locator("#token-reveal-token")).to_have_text("")

    # Deactivating asks first; Cancel changes nothing.
    tv = next(t for t, (role, _, _) in made.items() if role == "queue")
    dialog = page.get_by_role("dialog")
    await page.get_by_role("button", name="Deactivate Lobby TV").click()
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("heading")).to_have_text("Deactivate Lobby TV?")
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    assert try_login(appliance, tv)[0] == 200

    await page.get_by_role("button", name="Deactivate Lobby TV").click()
    await dialog.get_by_role("button", name="Yes, deactivate").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#credentials-status")).to_have_text("Lobby TV is deactivated.")
    await expect(row(page, tv)).to_contain_text("Deactivated")
    # Only "Reactivate" is left (issue 16; tests/test_page_credentials_admin.py uses it).
    await expect(row(page, tv).get_by_role("button")).to_have_count(1)
    await expect(row(page, tv).get_by_role("button")).to_have_text("Reactivate")
    status, body = try_login(appliance, tv)
    assert status == 401, body
    for token, (role, _, _) in made.items():
        if token != tv:
            assert try_login(appliance, token)[1]["role"] == role

    # The admin's own credential, the last admin too: a clear warning, and Escape backs out.
    await page.get_by_role("button", name="Deactivate Manager").click()
    await expect(dialog.locator("#confirm-self")).to_be_visible()
    await expect(dialog.locator("#confirm-self")).to_contain_text("signed in with")
    await expect(dialog.locator("#confirm-last-admin")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_role("button", name="Deactivate Manager")).to_be_visible()


async def test_settings_are_saved_from_the_form(
    browser,
    appliance: Server,
) -> None:
    reader = appliance.login(appliance.create_token("queue", "Reader"))
    page = await sign_in(browser, appliance, "admin", "Manager")
    form = page.locator("#settings-form")
    status = page.locator("#settings-status")
    await expect(form.get_by_label("Clinic name")).to_have_value("Clinic")
    await expect(form.get_by_label("First name and initial (John D.)")).to_be_checked()

    await form.get_by_label("Clinic name").fill("Riverside Family Clinic")
    await form.get_by_label("Full name (John Doe)").check()
    async with page.expect_request("**/api/settings/") as sent:
        await form.get_by_role("button", name="Save settings").click()
    assert (await sent.value).post_data_json == {
        "clinic_name": "Riverside Family Clinic",
        "display_names": "full",
    }
    await expect(status).to_have_text("Saved.")
    _, settings = api(appliance, "GET", "/api/settings/", reader)
    assert settings["clinic_name"] == "Riverside Family Clinic"
    assert settings["display_names"] == "full"
    assert settings["language"] == "en" and settings["anonymous_feed"] is False
    await expect(page.locator("[data-clinic-name]")).to_have_text("Riverside Family Clinic")

    # The anonymous feed's privacy warning turns into a clear warning when switched on.
    warning = page.locator("#anonymous-warning")
    await expect(warning).to_contain_text("anyone on the clinic's network")
    await form.get_by_label("Let devices read the live queue without signing in").check()
    await expect(warning).to_have_class(re.compile(r"alert--warn"))
    await expect(status).to_be_empty()  # "Saved." no longer describes the edited form
    await page.screenshot(path=str(ARTIFACTS / "admin-settings.png"), full_page=True)
    await form.get_by_label("Let devices read the live queue without signing in").uncheck()

    # The server's refusal is shown next to the form, and nothing changes.
    await form.get_by_label("Clinic name").fill("   ")
    await form.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text("The clinic name must be 1 to 100 characters.")
    await expect(status).to_have_class(re.compile(r"alert--error"))
    assert api(appliance, "GET", "/api/settings/", reader)[1]["clinic_name"] == (
        "Riverside Family Clinic"
    )

    # Spanish: saved, and the page speaks it at once.
    await form.get_by_label("Clinic name").fill("Riverside Family Clinic")
    await form.get_by_label("Español").check()
    await form.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text("Guardado.")
    await expect(page.get_by_role("heading", name="Ajustes")).to_be_visible()
    await expect(page.locator("html")).to_have_attribute("lang", "es")
    assert api(appliance, "GET", "/api/settings/", reader)[1]["language"] == "es"


async def test_todays_summary_follows_check_ins_and_calls(
    browser,
    appliance: Server,
) -> None:
    kiosk = appliance.login(appliance.create_token("form", "Kiosk"))
    doctor = appliance.login(appliance.create_token("doctor", "Dr. Ray"))
    page = await sign_in(browser, appliance, "admin", "Manager")
    figures = page.locator("#today-figures dd")
    await expect(figures).to_have_text(["0", "0", "0", "—"])

    for name in ("Ann Lee", "Bob Stone"):
        assert api(appliance, "POST", "/api/patients/", kiosk, {"fname": name})[0] == 201
    await expect(figures).to_have_text(["2", "0", "2", "—"])
    assert api(appliance, "POST", "/api/doctors/", doctor, {"action": "call_next"})[0] == 200
    await expect(figures).to_have_text(["2", "1", "1", "< 1 min"])
    _, stats = api(appliance, "GET", "/api/stats/today/", kiosk)
    assert (stats["checked_in"], stats["called"], stats["waiting"]) == (2, 1, 1)

    # Where each device goes, and which version this box runs.
    devices = page.locator("#devices")
    for name, href in [
        ("Check-in kiosk", "/kiosk"),
        ("Waiting-room display", "/display"),
        ("Doctor's console", "/doctor"),
    ]:
        await expect(devices.get_by_role("link", name=name)).to_have_attribute("href", href)
    _, health = http_json("GET", f"{appliance.base_url}/healthz")
    await expect(page.locator("#version")).to_contain_text(health["version"])
