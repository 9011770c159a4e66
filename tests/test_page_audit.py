"""/admin/audit in real Chromium against the real server: reached from /admin's nav, filter
the trail by who and action, verify the chain (then a row edited in the SQLite file, found
by number), download the CSV through the page and hold it against the table."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.browser import sign_in
from tests.serverproc import Server, http_json

NAME = "Quentin Aardvarkson"


def call(server: Server, access: str, method: str, path: str, body: Any = None) -> Any:
    status, answer = http_json(
        method, f"{server.base_url}{path}", body, {"Authorization": f"Bearer {access}"}
    )
    assert status in (200, 201), (status, answer)
    return answer


async def test_filter_verify_and_export(browser, appliance: Server) -> None:
    kiosk = appliance.login(appliance.create_token("form", "Front kiosk"))
    doctor = appliance.login(appliance.create_token("doctor", "Dr Rivera", room="Room 3"))
    for _ in range(2):
        call(appliance, kiosk, "POST", "/api/patients/", {"fname": NAME})
    call(appliance, doctor, "POST", "/api/doctors/", {"action": "call_next"})

    page = await sign_in(browser, appliance, "admin", "Manager")
    await page.goto("/admin")
    await page.get_by_role("link", name="Audit trail").click()
    await page.wait_for_url("**/admin/audit")
    rows = page.locator("#audit-body tr")
    await expect(rows.first).to_be_visible()
    await expect(page.locator("#audit-table")).not_to_contain_text("Aardvarkson")

    # Filter: the kiosk's check-ins, by its label.
    await page.get_by_label("Who", exact=True).fill("front kiosk")
    await page.get_by_label("Action", exact=True).select_option("check_in")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(rows).to_have_count(2)
    await expect(rows.first.locator("td").nth(2)).to_have_text("Front kiosk (Check-in kiosk)")
    shown = await rows.evaluate_all("rows => rows.map(row => row.dataset.id)")

    # An unknown who: the page's own words for the code.
    await page.get_by_label("Who", exact=True).fill("nobody here")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(page.locator("#audit-status")).to_have_text("No device has that token or label.")
    await page.get_by_label("Who", exact=True).fill("front kiosk")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(rows).to_have_count(2)

    # Verify: intact; then a check-in's row edited in the file is named by its number.
    verdict = page.locator("#audit-verdict")
    await page.get_by_role("button", name="Verify the chain").click()
    await expect(verdict).to_have_attribute("data-status", "ok")
    await expect(verdict).to_contain_text("The chain is intact")
    with sqlite3.connect(appliance.data_dir / "checkin.db") as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET patient_id = 77 WHERE id = ?", (int(shown[1]),))
    await page.get_by_role("button", name="Verify the chain").click()
    await expect(verdict).to_have_attribute("data-status", "broken")
    await expect(verdict).to_contain_text(f"BROKEN at row {shown[1]}")

    # Export: the filtered rows, through the page's download.
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Export CSV").click()
    download = await info.value
    assert download.suggested_filename.startswith("audit-")
    body = Path(await download.path()).read_bytes()
    assert body.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert [row["id"] for row in table] == shown
    assert {(row["label"], row["action"]) for row in table} == {("Front kiosk", "check_in")}
    assert "Aardvarkson" not in body.decode("utf-8-sig")
    await expect(page.locator("#audit-export-status")).to_have_text(
        f"Downloaded {download.suggested_filename}."
    )

    # The export is itself in the trail.
    await page.get_by_label("Who", exact=True).fill("")
    await page.get_by_label("Action", exact=True).select_option("audit_exported")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td").nth(2)).to_have_text("Manager (Administrator)")
