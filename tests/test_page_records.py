"""/admin/records in real Chromium against the real server: pick a day, the table shows its
visits, search by ticket, download the visits CSV through the page (Playwright's download
event) and hold it against the table; the sensitive answers appear only when ticked."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.browser import screenshot, sign_in
from tests.serverproc import Server, http_json

FORMULA_NAME = "=HYPERLINK(1+2)"


def call(server: Server, access: str, method: str, path: str, body: Any = None) -> Any:
    status, answer = http_json(
        method, f"{server.base_url}{path}", body, {"Authorization": f"Bearer {access}"}
    )
    assert status in (200, 201), (status, answer)
    return answer


def a_day_of_visits(server: Server) -> None:
    """Four check-ins today (the box's clock, UTC): one done after an undone call, one put
    back and left waiting, a no-show, one still waiting; a phone number that is sensitive."""
    admin = server.login(server.create_token("admin", "Setup admin"))
    form = {
        "preset": "custom",
        "fields": [{"key": "phone", "required": False}, {"key": "hungry", "required": False}],
    }
    call(server, admin, "PATCH", "/api/settings/", {"intake_form": form})
    kiosk = server.login(server.create_token("form", "Kiosk"))
    doctor = server.login(server.create_token("doctor", "Dr Rivera", room="Room 3"))
    for body in (
        {"fname": "Ann Example", "phone": "5551234567", "hungry": "yes"},
        {"fname": FORMULA_NAME},
        {"fname": "Cid Ortega"},
        {"fname": "Dee Moss", "hungry": "no"},
    ):
        call(server, kiosk, "POST", "/api/patients/", body)
    act = lambda body: call(server, doctor, "POST", "/api/doctors/", body)  # noqa: E731
    ann = act({"action": "call_next"})["patient"]["id"]
    act({"action": "undo"})
    assert act({"action": "call_next"})["patient"]["id"] == ann
    act({"action": "done", "patient_id": ann})
    bob = act({"action": "call_next"})["patient"]["id"]
    act({"action": "requeue", "patient_id": bob, "position": "back"})
    cid = act({"action": "call_next"})["patient"]["id"]
    act({"action": "no_show", "patient_id": cid})


async def read_table(page: Page) -> list[dict[str, str]]:
    """Each visit row as {column: text}, by the cells' data-col."""
    return await page.locator("#records-body tr").evaluate_all(
        """rows => rows.map(row => Object.fromEntries(
            [...row.querySelectorAll('td[data-col]')].map(td => [td.dataset.col,
                                                                 td.textContent.trim()])))"""
    )


def clock(iso: str) -> str:
    return iso[11:16] if iso else "—"


async def test_the_day_its_search_and_its_csv_match(browser, appliance: Server) -> None:
    a_day_of_visits(appliance)
    today = datetime.now(UTC).date()
    page = await sign_in(browser, appliance, "admin", "Manager")
    await page.goto("/admin")
    await page.get_by_role("link", name="Records and exports").click()
    await page.wait_for_url("**/admin/records")
    await expect(page.locator("#records-body tr")).to_have_count(4)

    # Another day: nothing; then today's again, picked in the date field.
    await page.get_by_label("Day", exact=True).fill((today - timedelta(days=1)).isoformat())
    await expect(page.locator("#records-status")).to_have_text("No visits on this day.")
    await expect(page.locator("#records-body tr")).to_have_count(0)
    await page.get_by_label("Day", exact=True).fill(today.isoformat())
    await expect(page.locator("#records-body tr")).to_have_count(4)
    await expect(page.locator("#records-report-heading")).to_have_text(
        f"Daily report {today.isoformat()}"
    )
    await expect(page.locator('#records-figures [data-stat="checked_in"]')).to_have_text("4")
    await expect(page.locator('#records-figures [data-stat="no_show"]')).to_have_text("1")

    table = await read_table(page)
    assert [row["ticket"] for row in table] == ["A-001", "A-002", "A-003", "A-004"]
    assert [row["name"] for row in table] == [
        "Ann Example",
        FORMULA_NAME,
        "Cid Ortega",
        "Dee Moss",
    ]
    assert [row["outcome"] for row in table] == ["Done", "Waiting", "No-show", "Waiting"]
    assert table[0]["doctor"] == "Dr Rivera" and table[0]["room"] == "Room 3"
    assert table[3]["called"] == "—"
    # The answers that are not sensitive are there; the phone number is not.
    assert table[0]["hungry"] == "yes" and "phone" not in table[0]
    await expect(page.locator("#records-table")).not_to_contain_text("5551234567")
    # Ann's history: the undone call is there, struck through.
    await page.locator("#records-body tr").first.locator("summary").click()
    await expect(page.locator("#records-body tr").first.locator("li.is-undone")).to_have_count(1)

    # The visits CSV, downloaded through the page, says what the table says.
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Visits (CSV)").click()
    download = await info.value
    assert download.suggested_filename == f"visits-{today.isoformat()}.csv"
    body = Path(await download.path()).read_bytes()
    await expect(page.locator("#records-export-status")).to_have_text(
        f"Downloaded visits-{today.isoformat()}.csv."
    )
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert len(rows) == len(table) == 4
    for row, shown in zip(rows, table, strict=True):
        name = row["name"].removeprefix("'") if row["name"].startswith("'=") else row["name"]
        assert (row["ticket"], row["line"], name) == (shown["ticket"], shown["line"], shown["name"])
        for key in ("check_in", "called", "started", "ended"):
            assert clock(row[key]) == shown[key], (key, row, shown)
        assert (row["room"] or "—", row["doctor"] or "—") == (shown["room"], shown["doctor"])
        assert (row["hungry"] or "—") == shown["hungry"]
        assert "phone" not in row
    assert rows[1]["name"] == "'" + FORMULA_NAME, "a formula never runs in a spreadsheet"

    # Search by ticket, typed loosely.
    await page.get_by_label("Ticket", exact=True).fill("a003")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(page.locator("#records-body tr")).to_have_count(1)
    await expect(page.locator("#records-body tr td[data-col=name]")).to_have_text("Cid Ortega")
    await page.get_by_label("Ticket", exact=True).fill("B-9")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(page.locator("#records-status")).to_have_text(
        "No visit with that ticket on this day."
    )
    await page.get_by_label("Ticket", exact=True).fill("")

    # Ticked: the sensitive answers appear, and the look is in the audit trail.
    await page.get_by_label("Include sensitive answers").check()
    await expect(page.locator("#records-body tr")).to_have_count(4)
    await expect(page.locator("#records-body tr").first.locator("td[data-col=phone]")).to_have_text(
        "5551234567"
    )
    await screenshot(page, "records-day")
    audit = appliance.cli("audit", "show", "--json")
    assert audit.returncode == 0, audit.stderr
    actions = [json.loads(line)["action"] for line in audit.stdout.splitlines() if line]
    assert actions.count("records_exported") == 1
    assert actions.count("records_viewed") >= 1
