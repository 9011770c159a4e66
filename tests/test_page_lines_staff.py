"""Lines on the staff pages in real Chromium against the real server: the admin adds a line
and assigns a doctor to it, a patient checks in to it, and that doctor's console shows the
ticket, line and priority, filters to its lines, changes a priority (the order follows)
and calls the patient; errors show our own texts."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.async_api import Browser, Page, Route, expect

from tests.browser import screenshot, sign_in, sign_in_with
from tests.serverproc import Server, http_json

ROOM = "Room 3"


def bearer(server: Server, role: str, label: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.login(server.create_token(role, label))}"}


def call_api(server: Server, method: str, path: str, headers: dict[str, str], body: Any = None):
    return http_json(method, f"{server.base_url}{path}", body, headers)


def patient_row(page: Page, ticket: str):
    return page.locator("#queue-list > li").filter(
        has=page.locator(".patient__ticket", has_text=ticket)
    )


async def add_line(page: Page, name_en: str, name_es: str, prefix: str, icon: str) -> None:
    await page.get_by_label("Name in English").fill(name_en)
    await page.get_by_label("Name in Spanish").fill(name_es)
    await page.get_by_label("Ticket prefix").fill(prefix)
    await page.get_by_label("Icon").select_option(icon)
    await page.get_by_role("button", name="Add line").click()


async def test_admin_adds_a_line_and_its_doctor_sees_tickets_priorities_and_calls(
    browser: Browser, appliance: Server
) -> None:
    admin = await sign_in(browser, appliance, "admin", "Boss")
    await admin.goto("/admin#lines")
    lines = admin.locator("#lines-body")
    await expect(lines.locator("tr")).to_have_count(1)  # every box starts with line A
    await expect(lines.locator('tr[data-prefix="A"]')).to_contain_text("Doctor")

    # A line with a bad prefix is refused by the page, a taken prefix by the server: our texts.
    await add_line(admin, "Nurse", "Enfermería", "N1", "nurse")
    status = admin.locator("#line-status")
    await expect(status).to_have_text("The prefix must be one or two letters A-Z.")
    await expect(admin.get_by_label("Ticket prefix")).to_have_attribute("aria-invalid", "true")
    await add_line(admin, "Nurse", "Enfermería", "a", "nurse")
    await expect(status).to_have_text("Another line already uses that prefix.")
    await admin.get_by_label("Opening hours").fill("8-12")
    await admin.get_by_label("Ticket prefix").fill("N")
    await admin.get_by_role("button", name="Add line").click()
    await expect(status).to_have_text("Write the hours as HH:MM-HH:MM, separated by commas.")
    await admin.get_by_label("Opening hours").fill("")
    # Strict order with ageing after 30 minutes.
    await admin.get_by_label("Strict: every priority patient before any normal one").check()
    await expect(admin.get_by_label("Priority patients per turn")).to_be_hidden()
    await admin.get_by_label("Maximum wait (minutes)").fill("30")
    await admin.get_by_role("button", name="Add line").click()
    await expect(status).to_have_text("Line N added.")
    nurse = lines.locator('tr[data-prefix="N"]')
    await expect(nurse).to_contain_text("Nurse")
    await expect(nurse).to_contain_text("Strict · ageing 30 min")
    await expect(nurse.locator("svg.line-chip__icon")).to_have_count(1)

    status_code, listed = call_api(
        appliance, "GET", "/api/lines/", bearer(appliance, "admin", "Check")
    )
    assert status_code == 200
    n_line = next(line for line in listed if line["prefix"] == "N")
    assert n_line["name"] == {"en": "Nurse", "es": "Enfermería"}
    assert n_line["icon"] == "nurse"
    assert n_line["call_rule"] == {"mode": "strict", "max_wait_minutes": 30}

    # Deactivating: A goes, then N cannot (the last active line), then A comes back.
    await admin.get_by_role("button", name="Deactivate A Doctor").click()
    lines_status = admin.locator("#lines-status")
    await expect(lines_status).to_have_text("Line A is deactivated.")
    await admin.get_by_role("button", name="Deactivate N Nurse").click()
    await expect(lines_status).to_have_text(re.compile(r"^This is the only active line\."))
    await expect(lines_status).to_have_class(re.compile("alert--error"))
    await admin.get_by_role("button", name="Reactivate A Doctor").click()
    await expect(lines_status).to_have_text("Line A is active again.")

    # Editing a line keeps its rule unless changed, and says so.
    await admin.get_by_role("button", name="Edit N Nurse").click()
    await expect(admin.locator("#line-form-heading")).to_have_text("Edit line N")
    await expect(admin.get_by_label("Name in English")).to_have_value("Nurse")
    await admin.get_by_label("Name in English").fill("Nurse station")
    await admin.get_by_role("button", name="Save line").click()
    await expect(status).to_have_text("Line N saved.")
    await expect(nurse).to_contain_text("Nurse station")
    await expect(nurse).to_contain_text("Strict · ageing 30 min")

    # The doctor of line N, in room 3.
    token = appliance.create_token("doctor", "Dr. Nurse")
    await admin.reload()
    doctor_row = admin.locator(f'#credentials-body tr[data-token="{token}"]')
    await expect(doctor_row.locator(".col-lines")).to_have_text("Every line")
    await admin.get_by_role("button", name="Edit Dr. Nurse").click()
    dialog = admin.locator("#credential-dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Room its calls go to").fill(ROOM)
    await dialog.get_by_role("checkbox", name="N Nurse station").check()
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_be_hidden()
    await expect(admin.locator("#credentials-status")).to_have_text("Dr. Nurse saved.")
    await expect(doctor_row.locator(".col-room")).to_have_text(ROOM)
    await expect(doctor_row.locator(".col-lines")).to_have_text("N")
    await admin.locator("#lines").scroll_into_view_if_needed()
    await screenshot(admin, "admin-lines")

    # Patients: two in N, one in A.
    kiosk = bearer(appliance, "form", "Kiosk")
    tickets = {}
    for name, line in (("Nina Park", "N"), ("Ann Lee", "A"), ("Noah Kim", "N")):
        code, body = call_api(
            appliance, "POST", "/api/patients/", kiosk, {"fname": name, "line": line}
        )
        assert code == 201, body
        tickets[name] = body
    assert [tickets[n]["ticket"] for n in ("Nina Park", "Ann Lee", "Noah Kim")] == [
        "N-001",
        "A-001",
        "N-002",
    ]

    doctor = await sign_in_with(browser, appliance, token)
    await expect(doctor.locator("#room-line")).to_have_text(f"Calls go to {ROOM}")
    await expect(doctor.locator("#lines-line")).to_contain_text("Your lines:")
    await expect(doctor.locator("#lines-line")).to_contain_text("Nurse station")
    only_mine = doctor.get_by_label("Only my lines")
    await expect(only_mine).to_be_checked()
    rows = doctor.locator("#queue-list > li")
    await expect(rows.locator(".patient__ticket")).to_have_text(["N-001", "N-002"])
    await expect(doctor.locator("#queue-others")).to_have_text("1 more waiting in other lines")
    nina = patient_row(doctor, "N-001")
    await expect(nina.locator(".patient__name")).to_have_text("Nina Park")
    await expect(nina.locator(".line-chip")).to_contain_text("N")
    await expect(nina.locator(".patient__place")).to_have_text("1")
    await expect(nina.get_by_label("Priority for N-001")).to_have_value("normal")
    await expect(nina.locator(".priority-badge")).to_have_count(0)
    await expect(doctor.locator("#next-up")).to_have_text("Next: Nina Park")

    await only_mine.uncheck()
    await expect(rows.locator(".patient__ticket")).to_have_text(["N-001", "A-001", "N-002"])
    await expect(patient_row(doctor, "A-001").locator(".line-chip")).to_contain_text("Doctor")
    await expect(doctor.locator("#next-up")).to_have_text("Next: Nina Park")  # from my lines
    await only_mine.check()
    await expect(rows.locator(".patient__ticket")).to_have_text(["N-001", "N-002"])

    # Urgent: the badge shows, and Noah's place (and the order) follows the server's rule.
    noah = patient_row(doctor, "N-002")
    await expect(noah.locator(".patient__place")).to_have_text("2")
    await noah.get_by_label("Priority for N-002").select_option("urgent")
    await expect(noah.locator(".priority-badge")).to_have_text("Urgent")
    await expect(rows.locator(".patient__ticket")).to_have_text(["N-002", "N-001"])
    await expect(noah.locator(".patient__place")).to_have_text("1")
    await expect(nina.locator(".patient__place")).to_have_text("2")
    await expect(doctor.locator("#next-up")).to_have_text("Next: Noah Kim")
    await screenshot(doctor, "doctor-lines")
    other = bearer(appliance, "doctor", "Dr. Other")
    code, queue = call_api(appliance, "GET", "/api/queue/?lines=N", other)
    assert code == 200
    assert [(item["ticket"], item["priority"], item["place"]) for item in queue] == [
        ("N-001", "normal", 2),
        ("N-002", "urgent", 1),
    ]

    # Someone else sets Noah back to normal: the live feed (PATIENT_UPDATED) updates the badge.
    code, body = call_api(
        appliance,
        "POST",
        "/api/doctors/",
        other,
        {"action": "set_priority", "patient_id": tickets["Noah Kim"]["id"], "priority": "normal"},
    )
    assert code == 200, body
    await expect(noah.locator(".priority-badge")).to_have_count(0)
    await expect(noah.get_by_label("Priority for N-002")).to_have_value("normal")
    await expect(rows.locator(".patient__ticket")).to_have_text(["N-001", "N-002"])

    # Call next takes N-001 from my lines, into my room.
    await doctor.get_by_role("button", name="Call next").click()
    result = doctor.locator("#call-result")
    await expect(result).to_have_text(re.compile(rf"N-001.*Called: Nina Park → {ROOM}"))
    await expect(rows.locator(".patient__ticket")).to_have_text(["N-002"])
    await expect(doctor.locator("#recent-list .recent__ticket")).to_have_text(["N-001"])
    code, queue = call_api(appliance, "GET", "/api/queue/", other)
    assert [item["ticket"] for item in queue] == ["A-001", "N-002"]


async def test_the_doctor_console_shows_our_texts_for_a_refused_priority(
    browser: Browser, appliance: Server
) -> None:
    kiosk = bearer(appliance, "form", "Kiosk")
    code, _ = call_api(appliance, "POST", "/api/patients/", kiosk, {"fname": "Ann Lee"})
    assert code == 201
    doctor = await sign_in(browser, appliance, "doctor", room=ROOM)
    rows = doctor.locator("#queue-list > li")
    # One line: the ticket shows, nothing else about lines does.
    await expect(rows.locator(".patient__ticket")).to_have_text(["A-001"])
    await expect(rows.locator(".line-chip")).to_have_count(0)
    await expect(doctor.locator("#lines-line")).to_be_hidden()
    await expect(doctor.locator("#my-lines-field")).to_be_hidden()

    async def refuse(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        if body.get("action") != "set_priority":
            await route.continue_()
            return
        await route.fulfill(
            status=400,
            content_type="application/json",
            body=json.dumps({"error": "server wording", "code": "priority_invalid"}),
        )

    await doctor.route("**/api/doctors/", refuse)
    select = rows.first.get_by_label("Priority for A-001")
    await select.select_option("priority")
    result = doctor.locator("#call-result")
    await expect(result).to_have_text(
        "That priority is not one the box knows. Reload the page and try again."
    )
    await expect(select).to_have_value("normal")  # back to what the server has
    await expect(rows.first.locator(".priority-badge")).to_have_count(0)
    await doctor.unroute("**/api/doctors/")
    await select.select_option("priority")
    await expect(rows.first.locator(".priority-badge")).to_have_text("Priority")


async def test_admin_time_zone_and_priority_question(browser: Browser, appliance: Server) -> None:
    admin = await sign_in(browser, appliance, "admin", "Boss")
    await admin.goto("/admin#settings")
    zone = admin.get_by_label("Time zone", exact=True)
    await expect(zone).to_have_value("UTC")
    await zone.select_option(label="Other…")
    custom = admin.get_by_label("Time zone name")
    await expect(custom).to_be_focused()
    await custom.fill("Mars/Olympus_Mons")
    await admin.get_by_role("button", name="Save settings").click()
    status = admin.locator("#settings-status")
    await expect(status).to_have_text(re.compile(r"^The box does not know that time zone\."))
    await custom.fill("America/Guayaquil")
    question = admin.get_by_role("checkbox", name=re.compile("Ask patients at the kiosk whether"))
    await question.check()
    await admin.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text("Saved.")
    code, settings = call_api(
        appliance, "GET", "/api/settings/", bearer(appliance, "admin", "Check")
    )
    assert code == 200
    assert (settings["time_zone"], settings["priority_question"]) == ("America/Guayaquil", True)
    # A zone from the list, after a reload: the page shows what the box has.
    await admin.reload()
    await expect(zone).to_have_value("")
    await expect(custom).to_have_value("America/Guayaquil")
    await zone.select_option("Europe/Madrid")
    await expect(custom).to_be_hidden()
    await admin.get_by_role("button", name="Save settings").click()
    await expect(status).to_have_text("Saved.")
    code, settings = call_api(
        appliance, "GET", "/api/settings/", bearer(appliance, "admin", "Check 2")
    )
    assert settings["time_zone"] == "Europe/Madrid"


async def test_the_admin_builds_each_wall_displays_address(
    browser: Browser, appliance: Server
) -> None:
    """What a TV shows is chosen per display by its address: the admin ticks its lines and
    how it tells patients apart, and the address that does so is there to copy; opened on a
    display, it shows only those lines."""
    admin_headers = bearer(appliance, "admin", "Chief")
    status, _ = call_api(
        appliance, "POST", "/api/lines/", admin_headers,
        {"prefix": "N", "name": {"en": "Nurse", "es": "Enfermería"}, "colour": "#7b3fa0"},
    )  # fmt: skip
    assert status == 201
    admin = await sign_in(browser, appliance, "admin", "Boss")
    await admin.goto("/admin#displays")
    address = admin.get_by_label("Address for this display")
    await expect(address).to_have_value(f"{appliance.base_url}/display")  # every line
    section = admin.locator("#displays")
    await section.get_by_role("checkbox", name=re.compile("Nurse")).check()
    await admin.get_by_label("Waiting patients are shown by").select_option("ticket")
    await expect(address).to_have_value(f"{appliance.base_url}/display?lines=N&show=ticket")
    await section.get_by_role("checkbox", name=re.compile("Doctor")).check()
    await expect(address).to_have_value(f"{appliance.base_url}/display?lines=A,N&show=ticket")
    await admin.get_by_role("button", name="Copy address").click()
    await expect(admin.locator("#display-status")).to_be_visible()

    kiosk = bearer(appliance, "form", "Kiosk")
    for line, name in (("A", "Ann Doctor"), ("N", "Nina Nurse")):
        status, _ = call_api(
            appliance, "POST", "/api/patients/", kiosk, {"fname": name, "line": line}
        )
        assert status == 201
    display = await sign_in(browser, appliance, "queue", "Lobby TV")
    await display.goto("/display?lines=N&show=ticket")
    await expect(display.get_by_text("N-001")).to_be_visible()
    await expect(display.get_by_text("A-001")).to_have_count(0)
    await expect(display.get_by_text("Nina")).to_have_count(0)  # ticket only
