"""The administration page's credentials in real Chromium against the real server: imported
credentials are marked, those flagged "needs a new password" (they cannot sign in) clearly
so, and the "Set new password" dialog sets one through POST /api/credentials/{token}/password/.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3

from playwright.async_api import Page, expect

from checkin_appliance.web.messages.staff import MESSAGES
from tests.browser import ARTIFACTS, sign_in
from tests.serverproc import PASSWORD, Server, http_json

EN = MESSAGES["en"]
ES = MESSAGES["es"]
LABEL = "Front desk tablet"
STRONG = "maple orbit lantern 7"


def try_login(server: Server, token: str, password: str) -> tuple[int, dict]:
    return http_json(
        "POST", f"{server.base_url}/api/login/", {"token": token, "password": password}
    )


def flag_as_imported(server: Server, token: str) -> None:
    """What `import-original` leaves for a credential whose password our rules refuse: set
    in the running server's database, as test_import_original.py's tests do by SQL."""
    path = server.data_dir / "checkin.db"
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
        changed = db.execute(
            "UPDATE credentials SET imported = 1, password_reset_required = 1 WHERE token = ?",
            (token,),
        ).rowcount
    assert changed == 1


def row(page: Page, token: str):
    return page.locator(f'#credentials-body tr[data-token="{token}"]')


async def test_a_flagged_credential_is_marked_and_gets_a_new_password(
    browser,
    appliance: Server,
) -> None:
    token = appliance.create_token("form", LABEL)
    flag_as_imported(appliance, token)
    plain = appliance.create_token("queue", "Lobby TV")
    status, body = try_login(appliance, token, PASSWORD)
    assert (status, body["code"]) == (403, "password_reset_required")

    page = await sign_in(browser, appliance, "admin", "Manager")
    await expect(page).to_have_url(re.compile(r"/admin$"))
    flagged = row(page, token)
    await expect(flagged.locator(".col-status")).to_contain_text(EN["admin.imported"])
    await expect(flagged.locator(".col-status")).to_contain_text(EN["admin.reset_needed"])
    await expect(page.locator("#credentials-flagged")).to_be_visible()
    await expect(page.locator("#credentials-flagged")).to_have_text(EN["admin.reset_needed_note"])
    # A credential made here is neither.
    await expect(row(page, plain).locator(".col-status")).to_have_text(EN["admin.active"])
    await page.locator("#credentials").screenshot(path=str(ARTIFACTS / "admin-flagged.png"))
    # On a laptop every row's buttons are in view, none behind a sideways scroll.
    wrap = page.locator("#credentials .table-wrap")
    widths = await wrap.evaluate("(e) => [e.scrollWidth, e.clientWidth]")
    assert widths[0] <= widths[1], f"the table scrolls sideways: {widths}"

    # The dialog: labelled by its heading, Cancel focused first, Cancel changes nothing.
    open_button = page.get_by_role("button", name=f"Set new password for {LABEL}")
    dialog = page.get_by_role("dialog", name=f"New password for {LABEL}")
    await open_button.click()
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text(token)
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(open_button).to_be_focused()  # back where the admin was
    await expect(flagged.locator(".col-status")).to_contain_text(EN["admin.reset_needed"])

    await open_button.click()
    new_password = dialog.get_by_label("New password", exact=True)
    confirm = dialog.get_by_label("Repeat the new password", exact=True)
    error = dialog.get_by_role("alert")
    # Caught in the page: too short, then two different passwords.
    await new_password.fill("short")
    await confirm.fill("short")
    await dialog.get_by_role("button", name="Set password").click()
    await expect(error).to_have_text(EN["admin.too_short"])
    await expect(new_password).to_have_attribute("aria-invalid", "true")
    await new_password.fill(STRONG)
    await confirm.fill(STRONG + "x")
    await confirm.press("Enter")  # Enter sends the form (never Cancel)
    await expect(error).to_have_text(EN["admin.mismatch"])
    await expect(dialog).to_be_visible()

    # Easy to guess: the server refuses it (password_too_weak); the page says so in its words.
    await new_password.fill("password123")
    await confirm.fill("password123")
    await dialog.get_by_role("button", name="Set password").click()
    await expect(error).to_have_text(EN["admin.error.password_too_weak"])
    await dialog.screenshot(path=str(ARTIFACTS / "admin-password-dialog.png"))
    await expect(dialog).to_be_visible()
    status, body = try_login(appliance, token, "password123")
    assert status == 401, body  # nothing was set
    await expect(dialog.get_by_role("button", name="Set password")).to_be_enabled()

    # A strong one: done, the mark is gone, and the token signs in with it.
    await new_password.fill(STRONG)
    await confirm.fill(STRONG)
    await dialog.get_by_role("button", name="Set password").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#credentials-status")).to_have_text(
        EN["admin.password_set"].format(label=LABEL)
    )
    await expect(flagged.locator(".col-status")).not_to_contain_text(EN["admin.reset_needed"])
    await expect(flagged.locator(".col-status")).to_contain_text(EN["admin.imported"])
    await expect(flagged).not_to_have_class(re.compile("needs-password"))
    await expect(page.locator("#credentials-flagged")).to_be_hidden()
    await expect(open_button).to_be_focused()
    await expect(page.locator("#password-new")).to_have_value("")  # no password stays behind
    status, body = try_login(appliance, token, STRONG)
    assert (status, body["role"]) == (200, "form"), body


async def test_the_dialog_in_spanish_and_an_administrators_rule(
    browser,
    appliance: Server,
) -> None:
    admin_token = appliance.create_token("admin", "Old admin")
    flag_as_imported(appliance, admin_token)
    gone = appliance.create_token("doctor", "Dr. Gone")
    page = await sign_in(browser, appliance, "admin", "Manager")
    # The page's language is the clinic's setting: switch it through the settings form.
    await page.locator('#settings-form input[name="language"][value="es"]').check()
    await page.locator("#settings-submit").click()
    await expect(page.locator("html")).to_have_attribute("lang", "es")

    flagged = row(page, admin_token)
    await expect(flagged.locator(".col-status")).to_contain_text(ES["admin.imported"])
    await expect(flagged.locator(".col-status")).to_contain_text(ES["admin.reset_needed"])
    await expect(page.locator("#credentials-flagged")).to_have_text(ES["admin.reset_needed_note"])

    await page.get_by_role("button", name="Poner contraseña nueva a Old admin").click()
    dialog = page.get_by_role("dialog", name="Contraseña nueva para Old admin")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("button", name="Cancelar")).to_be_focused()
    await expect(dialog.locator("#password-new-hint")).to_have_text(
        ES["admin.new_password_hint_admin"]
    )
    # An administrator needs 12 characters: said in the page's own words.
    await dialog.get_by_label("Contraseña nueva", exact=True).fill("orbit lamp")
    await dialog.get_by_label("Repita la contraseña nueva", exact=True).fill("orbit lamp")
    await dialog.get_by_role("button", name="Poner contraseña").click()
    await expect(dialog.get_by_role("alert")).to_have_text(
        ES["admin.error.admin_password_too_short"]
    )
    await dialog.press("Escape")
    await expect(dialog).to_be_hidden()

    # A deactivated credential has no "Set new password".
    access = appliance.login(gone)
    status, _ = http_json(
        "POST",
        f"{appliance.base_url}/api/credentials/{gone}/deactivate/",
        None,
        {"Authorization": f"Bearer {appliance.login(appliance.create_token('admin', 'Helper'))}"},
    )
    assert status == 200 and access
    await page.reload()
    await expect(row(page, gone)).to_contain_text(ES["admin.inactive"])
    # Only "Reactivate" (issue 16): no new password, no edit, no deactivate.
    await expect(row(page, gone).get_by_role("button")).to_have_count(1)
    await expect(row(page, gone).get_by_role("button")).to_have_text(ES["admin.reactivate"])
