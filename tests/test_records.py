"""The day's history and its CSV exports (issue 18) through the real app: a known day in the
clinic's own time zone with an undone call, a put-back, a transfer, a no-show and a cancel;
the CSVs parsed with the csv module and held against the day view; formula injection made
inert; an audit row per export; the sensitive answers only when asked for."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from checkin_appliance.domain import Role, format_time
from checkin_appliance.web.keys import STORE
from tests.conftest import PASSWORD, Clinic

DAY = "2026-12-03"  # Madrid is UTC+01:00 in December
FORM = {
    "preset": "custom",
    "fields": [{"key": "phone", "required": False}, {"key": "hungry", "required": False}],
}
FORMULA_NAME = "=HYPERLINK(1+2)"


def at(clinic: Clinic, day: int, hour: int, minute: int) -> None:
    """The box's clock, in UTC."""
    moment = format_time(datetime(2026, 12, day, hour, minute, tzinfo=UTC))
    clinic.app[STORE].set_clock(lambda: moment)


async def admin_get(clinic: Clinic, path: str, role: Role = Role.ADMIN) -> Any:
    return await clinic.client.get(path, headers=clinic.headers(role))


async def check_in(clinic: Clinic, body: dict[str, Any]) -> dict[str, Any]:
    resp = await clinic.client.post("/api/patients/", json=body, headers=clinic.headers(Role.FORM))
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def doctor(clinic: Clinic, access: str, action: str, **fields: Any) -> dict[str, Any]:
    resp = await clinic.client.post(
        "/api/doctors/",
        json={"action": action, **fields},
        headers={"Authorization": f"Bearer {access}"},
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def known_day(clinic: Clinic) -> dict[str, int]:
    """The day the tests read; returns the patients' ids by first name."""
    admin = clinic.headers(Role.ADMIN)
    resp = await clinic.client.patch(
        "/api/settings/", json={"time_zone": "Europe/Madrid", "intake_form": FORM}, headers=admin
    )
    assert resp.status == 200, await resp.text()
    resp = await clinic.client.post(
        "/api/lines/", json={"prefix": "L", "name": {"en": "Lab"}}, headers=admin
    )
    assert resp.status == 201, await resp.text()
    dr = await clinic.login(await clinic.add_credential(Role.DOCTOR, "Dr Rivera", "Room 3"))
    ids: dict[str, int] = {}

    at(clinic, 2, 23, 30)  # 00:30 in Madrid: the day's first visit, who leaves
    ids["Early"] = (await check_in(clinic, {"fname": "Early Bird"}))["id"]
    at(clinic, 2, 23, 31)
    await doctor(clinic, dr, "cancel", patient_id=ids["Early"], reason="left")
    at(clinic, 3, 8, 0)
    ann = {"fname": "Ann Example", "phone": "5551234567", "hungry": "yes"}
    ids["Ann"] = (await check_in(clinic, ann))["id"]
    at(clinic, 3, 8, 5)
    ids["Bob"] = (await check_in(clinic, {"fname": FORMULA_NAME}))["id"]
    at(clinic, 3, 8, 10)
    ids["Cid"] = (await check_in(clinic, {"fname": "Cid Ortega"}))["id"]
    at(clinic, 3, 8, 12)
    ids["Dee"] = (await check_in(clinic, {"fname": "Dee Moss", "hungry": "no"}))["id"]

    at(clinic, 3, 8, 20)
    assert (await doctor(clinic, dr, "call_next"))["patient"]["id"] == ids["Ann"]
    at(clinic, 3, 8, 21)
    await doctor(clinic, dr, "undo")  # the 08:20 call stands no more
    at(clinic, 3, 8, 22)
    assert (await doctor(clinic, dr, "call_next"))["patient"]["id"] == ids["Ann"]
    at(clinic, 3, 8, 25)
    await doctor(clinic, dr, "start", patient_id=ids["Ann"])
    at(clinic, 3, 8, 30)
    await doctor(clinic, dr, "transfer", patient_id=ids["Dee"], line="L")
    at(clinic, 3, 8, 35)
    await doctor(clinic, dr, "cancel", patient_id=ids["Dee"], reason="request")
    at(clinic, 3, 8, 40)
    await doctor(clinic, dr, "done", patient_id=ids["Ann"])
    at(clinic, 3, 8, 45)
    assert (await doctor(clinic, dr, "call_next"))["patient"]["id"] == ids["Bob"]
    at(clinic, 3, 8, 46)
    await doctor(clinic, dr, "requeue", patient_id=ids["Bob"], position="back")
    at(clinic, 3, 8, 50)
    assert (await doctor(clinic, dr, "call_next"))["patient"]["id"] == ids["Cid"]
    at(clinic, 3, 8, 55)
    await doctor(clinic, dr, "no_show", patient_id=ids["Cid"])
    at(clinic, 3, 9, 0)
    assert (await doctor(clinic, dr, "call_next"))["patient"]["id"] == ids["Bob"]
    at(clinic, 3, 9, 5)
    await doctor(clinic, dr, "done", patient_id=ids["Bob"])
    at(clinic, 3, 23, 10)  # 00:10 on the 4th in Madrid: the next day's
    ids["Late"] = (await check_in(clinic, {"fname": "Late Comer"}))["id"]
    at(clinic, 3, 23, 15)
    return ids


def audit_rows(clinic: Clinic, action: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(clinic.app[STORE].path)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT actor, patient_id, detail FROM audit_log WHERE action = ? ORDER BY id",
            (action,),
        ).fetchall()
        return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]
    finally:
        conn.close()


def parse_csv(body: bytes) -> list[dict[str, str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 with a BOM, for spreadsheet programs"
    text = body.decode("utf-8-sig")
    assert "\r\n" in text and "\n" not in text.replace("\r\n", ""), "RFC 4180 line ends"
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def day_view(clinic: Clinic, query: str = "") -> dict[str, Any]:
    resp = await admin_get(clinic, f"/api/records/day/?date={DAY}{query}")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    return await resp.json()


async def test_the_day_view_shows_each_visit_with_every_transition(clinic: Clinic) -> None:
    await known_day(clinic)
    day = await day_view(clinic)
    assert (day["date"], day["time_zone"]) == (DAY, "Europe/Madrid")
    visits = {v["ticket"]: v for v in day["visits"]}
    # The visit at 00:30 local (23:30 UTC the day before) is the day's; the one at 00:10 on
    # the 4th (23:10 UTC on the 3rd) is not.
    assert list(visits) == ["A-001", "A-002", "A-003", "A-004", "A-005"]
    assert [v["name"] for v in day["visits"]] == [
        "Early Bird",
        "Ann Example",
        FORMULA_NAME,
        "Cid Ortega",
        "Dee Moss",
    ]
    ann = visits["A-002"]
    assert ann["check_in"] == "2026-12-03T09:00:00+01:00"
    assert ann["called"] == "2026-12-03T09:22:00+01:00", "the undone call does not count"
    assert ann["started"] == "2026-12-03T09:25:00+01:00"
    assert ann["ended"] == "2026-12-03T09:40:00+01:00"
    assert (ann["wait_seconds"], ann["room"], ann["doctor"]) == (22 * 60, "Room 3", "Dr Rivera")
    assert (ann["outcome"], ann["line"], ann["call_count"]) == ("done", "A", 1)
    assert [(t["action"], t["from"], t["to"], t["undone"]) for t in ann["transitions"]] == [
        ("call", "waiting", "called", True),
        ("undo", "called", "waiting", False),
        ("call", "waiting", "called", False),
        ("start", "called", "in_service", False),
        ("done", "in_service", "done", False),
    ]
    assert ann["transitions"][0]["at"] == "2026-12-03T09:20:00+01:00"
    assert {t["by"] for t in ann["transitions"]} == {"Dr Rivera"}

    bob = visits["A-003"]  # called, put back, called again
    assert (bob["called"], bob["wait_seconds"]) == ("2026-12-03T09:45:00+01:00", 40 * 60)
    assert [t["action"] for t in bob["transitions"]] == ["call", "requeue", "call", "done"]
    assert bob["outcome"] == "done" and bob["ended"] == "2026-12-03T10:05:00+01:00"
    cid = visits["A-004"]
    assert (cid["outcome"], cid["ended"]) == ("no_show", "2026-12-03T09:55:00+01:00")
    dee = visits["A-005"]  # transferred, keeping her ticket, then cancelled
    assert (dee["line"], dee["outcome"], dee["called"], dee["doctor"]) == (
        "L",
        "cancelled",
        None,
        None,
    )
    transfer = dee["transitions"][0]
    assert (transfer["action"], transfer["from_line"], transfer["to_line"]) == (
        "transfer",
        "A",
        "L",
    )
    assert visits["A-001"]["check_in"] == "2026-12-03T00:30:00+01:00"

    # The whole day's figures, and each line's (the line a visit is in now).
    assert day["figures"] == {
        "checked_in": 5,
        "called": 3,
        "done": 2,
        "no_show": 1,
        "cancelled": 2,
        "not_seen": 0,
        "open": 0,
        "median_wait_seconds": 40 * 60,
        "p90_wait_seconds": 40 * 60,
    }
    assert [(line["line"], line["checked_in"]) for line in day["lines"]] == [("A", 4), ("L", 1)]

    # Without sensitive=1: the answers that are not sensitive only, and nothing audited.
    assert [f["key"] for f in day["intake_fields"]] == ["hungry"]
    assert ann["intake"] == {"hungry": "yes"} and "phone" not in json.dumps(day)
    assert audit_rows(clinic, "records_viewed") == []


async def test_search_by_ticket_finds_the_visit_however_it_is_typed(clinic: Clinic) -> None:
    await known_day(clinic)
    for typed in ("A-003", "a003", " a-003 "):
        found = await day_view(clinic, f"&ticket={typed}")
        assert [v["ticket"] for v in found["visits"]] == ["A-003"], typed
        assert found["figures"]["checked_in"] == 5, "the day's figures, whatever is searched"
    assert (await day_view(clinic, "&ticket=B-001"))["visits"] == []
    assert len((await day_view(clinic, "&ticket=A-00"))["visits"]) == 5


async def test_sensitive_answers_only_when_asked_and_then_audited(clinic: Clinic) -> None:
    ids = await known_day(clinic)
    day = await day_view(clinic, "&sensitive=1")
    assert [f["key"] for f in day["intake_fields"]] == ["phone", "hungry"]
    ann = next(v for v in day["visits"] if v["patient_id"] == ids["Ann"])
    assert ann["intake"] == {"phone": "5551234567", "hungry": "yes"}
    (row,) = audit_rows(clinic, "records_viewed")
    assert row["detail"] == {"day": DAY, "sensitive": True, "visits": 5}
    assert row["patient_id"] is None and "Ann" not in json.dumps(row)


async def test_the_visits_csv_parses_and_matches_the_day_view(clinic: Clinic) -> None:
    await known_day(clinic)
    day = await day_view(clinic)
    resp = await admin_get(clinic, f"/api/records/visits.csv?from={DAY}&to={DAY}")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="visits-{DAY}.csv"'
    assert resp.headers["Cache-Control"] == "no-store"
    rows = parse_csv(await resp.read())
    assert list(rows[0]) == [
        "day",
        "ticket",
        "line",
        "priority",
        "name",
        "check_in",
        "called",
        "started",
        "ended",
        "wait_seconds",
        "room",
        "doctor",
        "outcome",
        "call_count",
        "hungry",
    ]
    expected = [
        {
            **{k: "" if v is None else str(v) for k, v in visit.items() if k in rows[0]},
            **{k: "" if v is None else v for k, v in visit["intake"].items()},
        }
        for visit in day["visits"]
    ]
    for row in expected:  # the one difference: a name a spreadsheet would run is inert
        if row["name"] == FORMULA_NAME:
            row["name"] = "'" + FORMULA_NAME
    assert rows == expected
    assert rows[2]["name"] == "'=HYPERLINK(1+2)"

    (exported,) = audit_rows(clinic, "records_exported")
    assert exported["detail"] == {
        "kind": "visits",
        "from": DAY,
        "to": DAY,
        "rows": 5,
        "sensitive": False,
    }
    assert exported["actor"] is not None and exported["patient_id"] is None
    # Every export is its own row.
    await admin_get(clinic, f"/api/records/visits.csv?from={DAY}&sensitive=1")
    assert len(audit_rows(clinic, "records_exported")) == 2


async def test_the_visits_csv_has_the_sensitive_answers_only_when_ticked(clinic: Clinic) -> None:
    await known_day(clinic)
    plain = await (await admin_get(clinic, f"/api/records/visits.csv?from={DAY}")).read()
    assert b"5551234567" not in plain and b"phone" not in plain
    resp = await admin_get(clinic, f"/api/records/visits.csv?from={DAY}&sensitive=1")
    rows = parse_csv(await resp.read())
    assert [row["phone"] for row in rows] == ["", "5551234567", "", "", ""]
    assert [e["detail"]["sensitive"] for e in audit_rows(clinic, "records_exported")] == [
        False,
        True,
    ]


async def test_a_range_export_and_the_daily_figures(clinic: Clinic) -> None:
    await known_day(clinic)
    resp = await admin_get(clinic, "/api/records/visits.csv?from=2026-12-01&to=2026-12-04")
    rows = parse_csv(await resp.read())
    assert [(row["day"], row["ticket"]) for row in rows][-2:] == [
        (DAY, "A-005"),
        ("2026-12-04", "A-001"),
    ]
    assert resp.headers["Content-Disposition"].endswith('visits-2026-12-01-to-2026-12-04.csv"')

    resp = await admin_get(clinic, "/api/records/days.csv?from=2026-12-01&to=2026-12-04")
    assert resp.status == 200
    days = parse_csv(await resp.read())
    assert [(row["day"], row["line"], row["checked_in"]) for row in days] == [
        (DAY, "all", "5"),
        (DAY, "A", "4"),
        (DAY, "L", "1"),
        ("2026-12-04", "all", "1"),
        ("2026-12-04", "A", "1"),
    ]
    whole = days[0]
    assert (whole["called"], whole["no_show"], whole["cancelled"], whole["done"]) == (
        "3",
        "1",
        "2",
        "2",
    )
    # Waits of 22, 40 and 40 minutes: the median and the 90th percentile.
    assert (whole["median_wait_seconds"], whole["p90_wait_seconds"]) == ("2400", "2400")
    assert days[2]["median_wait_seconds"] == "" and days[-1]["open"] == "1"
    kinds = [e["detail"]["kind"] for e in audit_rows(clinic, "records_exported")]
    assert kinds == ["visits", "days"]


async def test_a_purged_name_is_an_empty_cell(clinic: Clinic) -> None:
    ids = await known_day(clinic)
    conn = sqlite3.connect(clinic.app[STORE].path)
    with conn:
        conn.execute("UPDATE patients SET fname = '', intake = NULL WHERE id = ?", (ids["Ann"],))
    conn.close()
    day = await day_view(clinic)
    ann = next(v for v in day["visits"] if v["patient_id"] == ids["Ann"])
    assert (ann["name"], ann["intake"]) == (None, {"hungry": None})
    rows = parse_csv(await (await admin_get(clinic, f"/api/records/visits.csv?from={DAY}")).read())
    assert (rows[1]["ticket"], rows[1]["name"], rows[1]["hungry"]) == ("A-002", "", "")


async def test_bad_days_ranges_and_queries_are_refused_with_codes(clinic: Clinic) -> None:
    refusals = {
        "/api/records/day/?date=2026-02-30": "records_date_invalid",
        "/api/records/day/?date=3.12.2026": "records_date_invalid",
        "/api/records/day/?sensitive=yes": "records_query_invalid",
        f"/api/records/day/?ticket={'A' * 21}": "records_query_invalid",
        "/api/records/visits.csv?from=2026-12-04&to=2026-12-03": "records_range_invalid",
        "/api/records/visits.csv?from=2025-12-01&to=2026-12-02": "records_range_invalid",
        "/api/records/visits.csv?from=2026-12-01&sensitive=2": "records_query_invalid",
        "/api/records/days.csv?from=2026-13-01": "records_date_invalid",
    }
    for path, code in refusals.items():
        resp = await admin_get(clinic, path)
        assert (resp.status, (await resp.json())["code"]) == (400, code), path
    assert audit_rows(clinic, "records_exported") == []
    # A year and a day is the most one export covers; the calendar's ends hold no visits.
    resp = await admin_get(clinic, "/api/records/days.csv?from=2025-12-02&to=2026-12-02")
    assert resp.status == 200
    for edge in ("0001-01-01", "9999-12-31"):
        assert (await admin_get(clinic, f"/api/records/day/?date={edge}")).status == 200
    # Staff other than the admin see no records.
    for role in (Role.DOCTOR, Role.FORM, Role.QUEUE):
        for path in ("/api/records/day/", "/api/records/visits.csv", "/api/records/days.csv"):
            resp = await admin_get(clinic, path, role)
            assert (resp.status, (await resp.json())["code"]) == (403, "permission_denied")
    resp = await clinic.client.get("/api/records/day/")
    assert resp.status == 401


async def test_the_records_page_is_the_admins_only(clinic: Clinic) -> None:
    resp = await clinic.client.get("/admin/records", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/login?next=/admin/records")
    origin = {"Origin": f"http://{clinic.client.host}:{clinic.client.port}"}
    for role, status in ((Role.DOCTOR, 403), (Role.ADMIN, 200)):
        login = await clinic.client.post(
            "/login",
            data={"token": clinic.tokens[role], "password": PASSWORD},
            headers=origin,
            allow_redirects=False,
        )
        cookie = {"Cookie": f"checkin_session={login.cookies['checkin_session'].value}"}
        page = await clinic.client.get("/admin/records", headers=cookie)
        assert page.status == status
        if status == 200:
            text = await page.text()
            assert 'id="records-table"' in text and "records.js" in text
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
