"""The audit viewer's API (issue 18) through the real app: filters by who, what and when,
paging newest first, the chain's verdict (then a row edited in the SQLite file, found by id),
the CSV export parsed and itself audited, and no patient's name in any row."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from checkin_appliance.domain import Role, format_time
from checkin_appliance.web.keys import CONFIG, STORE
from tests.conftest import Clinic

NAMES = ("Zelda Quokkaface", "Yannick Wombatson", "Xiomara Platypusdottir")


def at(clinic: Clinic, day: int, hour: int, month: tuple[int, int] = (2026, 12)) -> None:
    moment = format_time(datetime(*month, day, hour, 0, tzinfo=UTC))
    clinic.app[STORE].set_clock(lambda: moment)


def db_of(clinic: Clinic) -> Path:
    return clinic.app[CONFIG].db_path


async def get(clinic: Clinic, path: str, role: Role = Role.ADMIN) -> Any:
    return await clinic.client.get(path, headers=clinic.headers(role))


async def rows(clinic: Clinic, query: str = "") -> dict[str, Any]:
    resp = await get(clinic, f"/api/audit/?{query}")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def a_week(clinic: Clinic) -> dict[str, int]:
    """Check-ins on Dec 1, 2 and 3 (noon UTC), a call on the 3rd; the patients' ids."""
    ids = {}
    for day, name in zip((1, 2, 3), NAMES, strict=True):
        at(clinic, day, 12)
        ids[name] = (await clinic.check_in(name))["id"]
    resp = await clinic.call_next()
    assert resp.status == 200, await resp.text()
    return ids


async def test_filters_by_who_what_and_when(clinic: Clinic) -> None:
    ids = await a_week(clinic)
    every = (await rows(clinic, "limit=500"))["rows"]
    assert [r["id"] for r in every] == sorted((r["id"] for r in every), reverse=True)

    check_ins = (await rows(clinic, "action=check_in"))["rows"]
    assert [r["patient_id"] for r in check_ins] == [ids[n] for n in reversed(NAMES)]
    assert all(r["subjects"] == {"patient": r["patient_id"]} for r in check_ins)
    form = check_ins[0]["who"]
    assert form == {"credential": form["credential"], "label": "form 1", "role": "form"} | {
        "system": False
    }

    by_token = (await rows(clinic, f"who={clinic.tokens[Role.DOCTOR]}"))["rows"]
    by_label = (await rows(clinic, "who=DOCTOR 1"))["rows"]  # a label, any case
    assert by_token == by_label
    assert {r["action"] for r in by_token} == {"login", "call"}

    system = (await rows(clinic, "who=system"))["rows"]
    assert system and all(r["who"]["system"] and r["who"]["label"] is None for r in system)
    assert {r["action"] for r in system} == {"credential_created"}  # the tests' CLI

    day2 = (await rows(clinic, "from=2026-12-02&to=2026-12-02"))["rows"]
    assert [(r["action"], r["patient_id"]) for r in day2] == [("check_in", ids[NAMES[1]])]
    since2 = (await rows(clinic, "from=2026-12-02&action=check_in"))["rows"]
    assert len(since2) == 2


async def test_days_are_the_clinics_local_days(clinic: Clinic) -> None:
    resp = await clinic.client.patch(
        "/api/settings/", json={"time_zone": "Pacific/Auckland"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200, await resp.text()
    at(clinic, 1, 12)  # 01:00 on the 2nd in Auckland (UTC+13)
    patient = await clinic.check_in(NAMES[0])
    day2 = (await rows(clinic, "from=2026-12-02&to=2026-12-02&action=check_in"))["rows"]
    assert [r["patient_id"] for r in day2] == [patient["id"]]
    assert (await rows(clinic, "to=2026-12-01&action=check_in"))["rows"] == []


async def test_pages_newest_first_without_gaps(clinic: Clinic) -> None:
    await a_week(clinic)
    every = [r["id"] for r in (await rows(clinic, "limit=500"))["rows"]]
    seen: list[int] = []
    query = "limit=3"
    for _ in range(len(every)):  # bounded: one page per row at most
        page = await rows(clinic, query)
        seen += [r["id"] for r in page["rows"]]
        if page["next_before"] is None:
            break
        query = f"limit=3&before={page['next_before']}"
    assert seen == every


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=0", "audit_query_invalid"),
        ("to=", "audit_query_invalid"),
        ("action=", "audit_query_invalid"),
        ("limit=501", "audit_query_invalid"),
        ("limit=ten", "audit_query_invalid"),
        ("before=-1", "audit_query_invalid"),
        ("from=2026-02-30", "audit_query_invalid"),
        ("from=2026-12-03&to=2026-12-01", "audit_range_invalid"),
        ("action=DROP TABLE", "audit_query_invalid"),
        ("who=nobody at all", "audit_who_unknown"),
    ],
)
async def test_bad_values_are_400_with_a_code(clinic: Clinic, query: str, code: str) -> None:
    for path in ("/api/audit/", "/api/audit.csv"):
        resp = await get(clinic, f"{path}?{query}")
        if path.endswith(".csv") and query.startswith(("limit", "before")):
            continue  # the export takes every row the filters select
        assert resp.status == 400, (path, query)
        body = await resp.json()
        assert body["code"] == code
        assert "nobody" not in body["error"]


async def test_admin_only(clinic: Clinic) -> None:
    for path in ("/api/audit/", "/api/audit/verify/", "/api/audit.csv"):
        assert (await get(clinic, path, Role.DOCTOR)).status == 403
        assert (await clinic.client.get(path)).status == 401


async def test_verify_ok_then_a_tampered_row_is_reported(clinic: Clinic) -> None:
    await a_week(clinic)
    resp = await get(clinic, "/api/audit/verify/")
    verdict = await resp.json()
    count = len((await rows(clinic, "limit=500"))["rows"])
    assert verdict["status"] == "ok"
    assert verdict["count"] == count and verdict["row"] is None

    target = (await rows(clinic, "action=check_in"))["rows"][1]["id"]
    with sqlite3.connect(db_of(clinic)) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET patient_id = 999 WHERE id = ?", (target,))
    verdict = await (await get(clinic, "/api/audit/verify/")).json()
    assert verdict["status"] == "broken"
    assert verdict["row"] == target
    assert verdict["count"] == target - 1


async def test_verify_with_the_key_removed_reports_the_first_keyed_row(clinic: Clinic) -> None:
    await clinic.check_in(NAMES[0])
    (clinic.app[CONFIG].data_dir / "audit.key").unlink()
    verdict = await (await get(clinic, "/api/audit/verify/")).json()
    assert verdict["status"] == "broken"  # keyed rows no longer verify as plain ones
    assert verdict["row"] == 1


async def test_export_parses_and_is_audited(clinic: Clinic) -> None:
    await a_week(clinic)
    resp = await get(clinic, "/api/audit.csv?action=check_in&from=2026-12-02")
    assert resp.status == 200
    assert resp.content_type == "text/csv"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    table = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert [r["action"] for r in table] == ["check_in", "check_in"]
    assert table[0]["label"] == "form 1" and table[0]["role"] == "form"

    exported = (await rows(clinic, "action=audit_exported"))["rows"]
    assert len(exported) == 1
    assert exported[0]["who"]["label"] == "admin 1"
    assert exported[0]["detail"] == {
        "action": "check_in",
        "credentials": [],
        "from": "2026-12-02",
        "rows": 2,
        "system": False,
        "to": None,
    }
    verdict = await (await get(clinic, "/api/audit/verify/")).json()
    assert verdict["status"] == "ok"


async def test_no_name_in_any_row(clinic: Clinic) -> None:
    ids = await a_week(clinic)
    admin = clinic.headers(Role.ADMIN)
    view = await clinic.client.get(f"/api/patients/{ids[NAMES[0]]}/", headers=admin)
    assert view.status in (200, 404)
    listing = json.dumps(await rows(clinic, "limit=500"))
    export = (await (await get(clinic, "/api/audit.csv")).read()).decode("utf-8-sig")
    for name in NAMES:
        for part in name.split():
            assert part not in listing
            assert part not in export
    # the trail knows these patients, by id
    assert {ids[n] for n in NAMES} <= {r["patient_id"] for r in json.loads(listing)["rows"]}


# --- the audit trail's retention (audit_retention_days) ------------------------------------

LATER = (2027, 1)  # after the fixture's own rows, written at the real time


async def settings(clinic: Clinic, **changes: Any) -> tuple[int, dict[str, Any]]:
    resp = await clinic.client.patch(
        "/api/settings/", json=changes, headers=clinic.headers(Role.ADMIN)
    )
    return resp.status, await resp.json()


async def purge(clinic: Clinic) -> None:
    resp = await clinic.client.post("/api/records/purge/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("value", [-1, 3651, "30", 1.5, None, True])
async def test_bad_audit_retention_is_refused(clinic: Clinic, value: object) -> None:
    status, body = await settings(clinic, audit_retention_days=value)
    assert status == 400 and body["code"] == "setting_value_invalid"


async def test_the_purge_prunes_old_rows_and_the_chain_still_verifies(clinic: Clinic) -> None:
    at(clinic, 1, 12, LATER)
    status, body = await settings(clinic, audit_retention_days=2)
    assert status == 200 and body["audit_retention_days"] == 2
    await clinic.check_in(NAMES[0])
    at(clinic, 5, 12, LATER)
    await clinic.check_in(NAMES[1])
    newest_old = max(r["id"] for r in (await rows(clinic, "to=2027-01-01&limit=500"))["rows"])

    await purge(clinic)
    every = (await rows(clinic, "limit=500"))["rows"]
    assert min(r["id"] for r in every) == newest_old + 1  # Jan 1's rows (and before) are gone
    assert all(r["at"] >= "2027-01-03" for r in every)
    pruned = (await rows(clinic, "action=audit_pruned"))["rows"]
    assert len(pruned) == 1
    assert pruned[0]["detail"]["kept_from"] == newest_old + 1
    assert pruned[0]["detail"]["removed"] == newest_old
    verdict = await (await get(clinic, "/api/audit/verify/")).json()
    assert verdict["status"] == "ok" and verdict["count"] == len(every)
    # Only the oldest row may go, never the newest and never one in the middle.
    with sqlite3.connect(db_of(clinic)) as conn:
        for row_id in (every[0]["id"], every[1]["id"]):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute("DELETE FROM audit_log WHERE id = ?", (row_id,))
        # ...but a row removed from the new head is found: the pruned row names it.
        conn.execute("DELETE FROM audit_log WHERE id = ?", (newest_old + 1,))
    verdict = await (await get(clinic, "/api/audit/verify/")).json()
    assert verdict["status"] == "broken" and verdict["row"] == newest_old + 1

    # A second purge the same day prunes nothing more and writes no row.
    await purge(clinic)
    assert len((await rows(clinic, "action=audit_pruned"))["rows"]) == 1


async def test_zero_keeps_the_trail_for_good(clinic: Clinic) -> None:
    at(clinic, 1, 12, LATER)
    status, _ = await settings(clinic, audit_retention_days=0)
    assert status == 200
    await clinic.check_in(NAMES[0])
    at(clinic, 28, 12, LATER)
    await purge(clinic)
    assert (await rows(clinic, "action=audit_pruned"))["rows"] == []
    assert min(r["id"] for r in (await rows(clinic, "limit=500"))["rows"]) == 1
