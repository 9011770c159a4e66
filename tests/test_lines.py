"""Lines: the admin's API, check-in into a line, the queue by line, call next from the lines
a doctor serves, staff-set priorities and the PATIENT_UPDATED opt-in."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkin_appliance import lines
from checkin_appliance.domain import Role
from checkin_appliance.lines import Line
from checkin_appliance.web.keys import STORE
from tests.conftest import PASSWORD, Clinic, messages, next_message


async def _post(clinic: Clinic, path: str, body: Any, role: Role = Role.ADMIN) -> Any:
    return await clinic.client.post(path, json=body, headers=clinic.headers(role))


async def _line(clinic: Clinic, prefix: str, name: str, **fields: Any) -> dict[str, Any]:
    resp = await _post(clinic, "/api/lines/", {"prefix": prefix, "name": {"en": name}, **fields})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _check_in(clinic: Clinic, fname: str, role: Role = Role.FORM, **fields: Any) -> Any:
    resp = await _post(clinic, "/api/patients/", {"fname": fname, **fields}, role)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _queue(clinic: Clinic, query: str = "", role: Role = Role.DOCTOR) -> Any:
    resp = await clinic.client.get(f"/api/queue/{query}", headers=clinic.headers(role))
    assert resp.status == 200
    return await resp.json()


async def _doctor(clinic: Clinic, lines: list[str] | None, room: str = "Room 3") -> dict[str, str]:
    body: dict[str, Any] = {"role": "doctor", "label": "Dr. Lee", "room": room}
    body["password"] = PASSWORD
    if lines is not None:
        body["lines"] = lines
    resp = await _post(clinic, "/api/credentials/", body)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert sorted(created["lines"]) == sorted(lines or [])
    return {"Authorization": f"Bearer {await clinic.login(created['token'])}"}


async def _call(clinic: Clinic, headers: dict[str, str], **body: Any) -> Any:
    return await clinic.client.post(
        "/api/doctors/", json={"action": "call_next", **body}, headers=headers
    )


# --- the lines API ------------------------------------------------------------------------


async def test_every_box_has_line_a_and_every_role_reads_the_lines(clinic: Clinic) -> None:
    for role in Role:
        resp = await clinic.client.get("/api/lines/", headers=clinic.headers(role))
        assert resp.status == 200
        assert await resp.json() == [
            {
                "id": 1,
                "prefix": "A",
                "name": {"en": "Doctor", "es": "Médico"},
                "colour": "#1f6feb",
                "icon": "doctor",
                "active": True,
                "hours": None,
                "call_rule": None,
                "position": 1,
                "open_now": True,
            }
        ]
    assert (await clinic.client.get("/api/lines/")).status == 401


async def test_admin_creates_and_changes_lines(clinic: Clinic) -> None:
    nurse = await _line(clinic, "n", "Nurse", colour="#22AA44", icon="nurse")
    assert nurse["prefix"] == "N" and nurse["colour"] == "#22aa44" and nurse["position"] == 2
    resp = await clinic.client.patch(
        f"/api/lines/{nurse['id']}/",
        json={"name": {"en": "Nurse", "es": "Enfermería"}, "hours": [["13:00", "17:00"]]},
        headers=clinic.headers(Role.ADMIN),
    )
    assert resp.status == 200
    changed = await resp.json()
    assert changed["name"] == {"en": "Nurse", "es": "Enfermería"}
    assert changed["hours"] == [["13:00", "17:00"]]
    listed = await (
        await clinic.client.get("/api/lines/", headers=clinic.headers(Role.FORM))
    ).json()
    assert [line["prefix"] for line in listed] == ["A", "N"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"prefix": "A", "name": "Again"}, 409, "line_prefix_taken"),
        ({"prefix": "ABC", "name": "Long"}, 400, "line_invalid"),
        ({"prefix": "1", "name": "Digit"}, 400, "line_invalid"),
        ({"prefix": "L"}, 400, "line_invalid"),
        ({"prefix": "L", "name": {"fr": "Labo"}}, 400, "line_invalid"),
        ({"prefix": "L", "name": "Lab", "colour": "red"}, 400, "line_invalid"),
        ({"prefix": "L", "name": "Lab", "icon": "https://x/y.svg"}, 400, "line_invalid"),
        ({"prefix": "L", "name": "Lab", "hours": [["12:00", "24:00"]]}, 400, "line_invalid"),
        ({"prefix": " L", "name": "Lab"}, 400, "line_invalid"),
        ({"prefix": "L", "name": "Lab", "hours": "always"}, 400, "line_invalid"),
        ({"prefix": "L", "name": "Lab", "shape": "round"}, 400, "line_invalid"),
        ({"prefix": "L", "name": "Lab\u202e"}, 400, "line_invalid"),
    ],
)
async def test_bad_lines_are_refused_with_a_code(
    clinic: Clinic, body: dict[str, Any], status: int, code: str
) -> None:
    resp = await _post(clinic, "/api/lines/", body)
    assert resp.status == status
    assert (await resp.json())["code"] == code


async def test_call_rules_are_checked_and_stored_in_full(clinic: Clinic) -> None:
    for rule in ({"mode": "fair"}, {"mode": "strict", "priority": 2}, {"mode": "interleave",
                 "priority": 0}, {"mode": "strict", "max_wait_minutes": 2}, "strict"):  # fmt: skip
        resp = await _post(clinic, "/api/lines/", {"prefix": "L", "name": "Lab", "call_rule": rule})
        assert resp.status == 400, rule
        assert (await resp.json())["code"] == "call_rule_invalid"
    lab = await _line(clinic, "L", "Lab", call_rule={"mode": "interleave", "priority": 3.0})
    assert lab["call_rule"] == {
        "mode": "interleave",
        "priority": 3,
        "normal": 1,
        "max_wait_minutes": 45,
    }


async def test_line_errors_on_change(clinic: Clinic) -> None:
    admin = clinic.headers(Role.ADMIN)
    nurse = await _line(clinic, "N", "Nurse")
    resp = await clinic.client.patch("/api/lines/99/", json={"active": False}, headers=admin)
    assert (resp.status, (await resp.json())["code"]) == (404, "line_not_found")
    resp = await clinic.client.patch(
        f"/api/lines/{nurse['id']}/", json={"prefix": "A"}, headers=admin
    )
    assert (resp.status, (await resp.json())["code"]) == (409, "line_prefix_taken")
    resp = await clinic.client.patch(f"/api/lines/{nurse['id']}/", json={}, headers=admin)
    assert (resp.status, (await resp.json())["code"]) == (400, "line_invalid")
    resp = await clinic.client.patch("/api/lines/1/", json={"active": False}, headers=admin)
    assert resp.status == 200
    resp = await clinic.client.patch(
        f"/api/lines/{nurse['id']}/", json={"active": False}, headers=admin
    )
    assert (resp.status, (await resp.json())["code"]) == (409, "line_last_active")


async def test_only_an_admin_manages_lines(clinic: Clinic) -> None:
    for role in (Role.FORM, Role.DOCTOR, Role.QUEUE):
        resp = await _post(clinic, "/api/lines/", {"prefix": "N", "name": "Nurse"}, role)
        assert resp.status == 403
        resp = await clinic.client.patch(
            "/api/lines/1/", json={"active": False}, headers=clinic.headers(role)
        )
        assert resp.status == 403


# --- check-in into a line -----------------------------------------------------------------


async def test_check_in_joins_the_line_asked_for(clinic: Clinic) -> None:
    await _line(clinic, "N", "Nurse")
    a1 = await _check_in(clinic, "Ann Lee")  # no line: the first by position
    a2 = await _check_in(clinic, "Bob Ray", line="A")
    n1 = await _check_in(clinic, "Cat Doe", line="n")
    n2 = await _check_in(clinic, "Dan Fox", line=2)  # by id
    assert [(b["ticket"], b["line"], b["position"]) for b in (a1, a2, n1, n2)] == [
        ("A-001", "A", 1),
        ("A-002", "A", 2),
        ("N-001", "N", 1),
        ("N-002", "N", 2),
    ]
    everyone = await _queue(clinic)
    assert [(i["ticket"], i["place"]) for i in everyone] == [
        ("A-001", 1),
        ("A-002", 2),
        ("N-001", 1),
        ("N-002", 2),
    ]
    only_n = await _queue(clinic, "?lines=N")
    assert [i["ticket"] for i in only_n] == ["N-001", "N-002"]
    both = await _queue(clinic, "?lines=a,N")
    assert len(both) == 4
    # A wall display sees tickets too (they are not personal), with the short name.
    shown = await _queue(clinic, "?lines=N", Role.QUEUE)
    assert shown[0]["ticket"] == "N-001" and shown[0]["patient"]["fname"] == "Cat D."


async def test_a_form_check_in_chooses_its_line_too(clinic: Clinic) -> None:
    await _line(clinic, "L", "Lab")
    resp = await clinic.client.post(
        "/api/patients/", data={"fname": "Ann Lee", "line": "L"}, headers=clinic.headers(Role.FORM)
    )
    assert resp.status == 201
    assert (await resp.json())["ticket"] == "L-001"


async def test_check_in_refuses_unknown_inactive_and_closed_lines(clinic: Clinic) -> None:
    clock_now = "2026-03-09T12:00:00.000Z"
    clinic.app[STORE].set_clock(lambda: clock_now)
    closed = await _line(clinic, "L", "Lab", hours=[["00:00", "01:00"]])
    inactive = await _line(clinic, "X", "X-ray", active=False)
    for line in ("Z", 99, inactive["prefix"], closed["prefix"], True, ["A"]):
        resp = await _post(clinic, "/api/patients/", {"fname": "Ann", "line": line}, Role.FORM)
        assert resp.status == 400, line
        assert (await resp.json())["code"] == "line_unavailable"
    # Open hours in the clinic's zone: 12:00 UTC is 13:00 in Madrid.
    resp = await clinic.client.patch(
        f"/api/lines/{closed['id']}/",
        json={"hours": [["13:00", "14:00"]]},
        headers=clinic.headers(Role.ADMIN),
    )
    assert resp.status == 200
    resp = await _post(clinic, "/api/patients/", {"fname": "Ann", "line": "L"}, Role.FORM)
    assert resp.status == 400
    await clinic.client.patch(
        "/api/settings/", json={"time_zone": "Europe/Madrid"}, headers=clinic.headers(Role.ADMIN)
    )
    assert (await _check_in(clinic, "Ann", line="L"))["ticket"] == "L-001"


async def test_without_a_line_the_first_active_line_by_position(clinic: Clinic) -> None:
    nurse = await _line(clinic, "N", "Nurse", position=1)
    await clinic.client.patch(
        "/api/lines/1/", json={"position": 2}, headers=clinic.headers(Role.ADMIN)
    )
    assert (await _check_in(clinic, "Ann"))["line"] == "N"
    await clinic.client.patch(
        f"/api/lines/{nurse['id']}/", json={"active": False}, headers=clinic.headers(Role.ADMIN)
    )
    assert (await _check_in(clinic, "Bob"))["line"] == "A"


async def test_the_kiosk_asks_priority_only_when_the_setting_is_on(clinic: Clinic) -> None:
    ignored = await _check_in(clinic, "Ann", priority="priority")
    assert ignored["priority"] == "normal"
    resp = await clinic.client.patch(
        "/api/settings/", json={"priority_question": True}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    asked = await _check_in(clinic, "Bob", priority="priority")
    assert asked["priority"] == "priority"
    for bad in ("urgent", "vip", 1):
        resp = await _post(clinic, "/api/patients/", {"fname": "Cy", "priority": bad}, Role.FORM)
        assert resp.status == 400
        assert (await resp.json())["code"] == "priority_invalid"
    staff = await _check_in(clinic, "Dee", Role.ADMIN, priority="urgent")
    assert staff["priority"] == "urgent"


# --- calls from the lines a doctor serves ---------------------------------------------------


async def test_call_next_takes_from_the_lines_the_doctor_serves(clinic: Clinic) -> None:
    await _line(clinic, "N", "Nurse")
    await _line(clinic, "L", "Lab")
    a1 = await _check_in(clinic, "Ann Lee", line="A")
    n1 = await _check_in(clinic, "Bob Ray", line="N")
    l1 = await _check_in(clinic, "Cat Doe", line="L")
    nurse = await _doctor(clinic, ["N"], room="Room 5")
    feed = await clinic.subscribe(Role.QUEUE)
    resp = await _call(clinic, nurse)
    assert resp.status == 200
    assert (await resp.json())["patient"]["id"] == n1["id"]
    event = await next_message(feed)
    assert (event["event"], event["ticket"], event["line"], event["room"]) == (
        "PATIENT_COMPLETED",
        "N-001",
        "N",
        "Room 5",
    )
    resp = await _call(clinic, nurse)
    assert resp.status == 404
    assert await resp.json() == {"error": "No patients in the waiting.", "code": "nobody_waiting"}
    both = await _doctor(clinic, ["L", "A"])
    assert (await (await _call(clinic, both)).json())["patient"]["id"] == a1["id"]
    assert (await (await _call(clinic, both)).json())["patient"]["id"] == l1["id"]


async def test_a_doctor_listing_no_lines_serves_all_oldest_first(clinic: Clinic) -> None:
    await _line(clinic, "N", "Nurse")
    first = await _check_in(clinic, "Ann", line="N")
    second = await _check_in(clinic, "Bob", line="A")
    assert (await (await clinic.call_next()).json())["patient"]["id"] == first["id"]
    assert (await (await clinic.call_next()).json())["patient"]["id"] == second["id"]


async def test_admin_changes_a_credentials_room_and_lines(clinic: Clinic) -> None:
    admin = clinic.headers(Role.ADMIN)
    await _line(clinic, "N", "Nurse")
    token = clinic.tokens[Role.DOCTOR]
    resp = await clinic.client.patch(
        f"/api/credentials/{token}/", json={"room": "Room 9", "lines": ["n"]}, headers=admin
    )
    assert resp.status == 200
    body = await resp.json()
    assert (body["room"], body["lines"]) == ("Room 9", ["N"])
    await _check_in(clinic, "Ann", line="A")
    nurse_patient = await _check_in(clinic, "Bob", line="N")
    feed = await clinic.subscribe(Role.QUEUE)
    resp = await clinic.call_next()  # the doctor's existing session sees the change
    assert (await resp.json())["patient"]["id"] == nurse_patient["id"]
    assert (await next_message(feed))["room"] == "Room 9"
    listing = await (await clinic.client.get("/api/credentials/", headers=admin)).json()
    assert next(c for c in listing if c["token"] == token)["lines"] == ["N"]
    resp = await clinic.client.patch(
        f"/api/credentials/{token}/", json={"lines": []}, headers=admin
    )
    assert (await resp.json())["lines"] == []
    for body, status, code in [
        ({"lines": ["Q"]}, 400, "line_unknown"),
        ({"lines": "N"}, 400, "line_invalid"),
        ({"token": "x"}, 400, "credential_change_invalid"),
        ({}, 400, "credential_change_invalid"),
    ]:
        resp = await clinic.client.patch(f"/api/credentials/{token}/", json=body, headers=admin)
        assert (resp.status, (await resp.json())["code"]) == (status, code), body
    resp = await clinic.client.patch(
        "/api/credentials/00000000/", json={"room": "x"}, headers=admin
    )
    assert (resp.status, (await resp.json())["code"]) == (404, "no_such_credential")
    resp = await clinic.client.patch(
        f"/api/credentials/{token}/", json={"room": "x"}, headers=clinic.headers(Role.DOCTOR)
    )
    assert resp.status == 403


# --- priorities ------------------------------------------------------------------------------


async def _set_priority(clinic: Clinic, patient_id: Any, priority: Any, role: Role = Role.DOCTOR):
    return await _post(
        clinic,
        "/api/doctors/",
        {"action": "set_priority", "patient_id": patient_id, "priority": priority},
        role,
    )


async def test_staff_set_priority_and_urgent_is_called_first(clinic: Clinic) -> None:
    await _check_in(clinic, "Ann Lee")
    await _check_in(clinic, "Bob Ray")
    late = await _check_in(clinic, "Cat Doe")
    resp = await _set_priority(clinic, late["id"], "urgent")
    assert resp.status == 200
    body = await resp.json()
    assert (body["priority"], body["ticket"]) == ("urgent", "A-003")
    queue = await _queue(clinic)
    assert [(i["ticket"], i["priority"], i["place"]) for i in queue] == [
        ("A-001", "normal", 2),
        ("A-002", "normal", 3),
        ("A-003", "urgent", 1),
    ]
    called = await (await clinic.call_next()).json()
    assert called["patient"]["id"] == late["id"]
    for patient_id, priority, status, code in [
        (late["id"], "normal", 404, "no_such_patient"),  # no longer waiting
        (999, "urgent", 404, "no_such_patient"),
        (1, "vip", 400, "priority_invalid"),
        ("x", "urgent", 400, "invalid_action"),
    ]:
        resp = await _set_priority(clinic, patient_id, priority)
        assert (resp.status, (await resp.json())["code"]) == (status, code)
    assert (await _set_priority(clinic, 1, "priority", Role.FORM)).status == 403
    assert (await _set_priority(clinic, 1, "priority", Role.ADMIN)).status == 200


async def test_patient_updated_only_reaches_feeds_that_opt_in(clinic: Clinic) -> None:
    plain = await clinic.subscribe(Role.QUEUE)
    rich = await clinic.subscribe(Role.QUEUE, "events=all")
    ann = await _check_in(clinic, "Ann Lee")
    assert (await _set_priority(clinic, ann["id"], "priority")).status == 200
    await _check_in(clinic, "Bob Ray")
    added, updated, added2 = await messages(rich, 3)
    assert [m["event"] for m in (added, updated, added2)] == [
        "PATIENT_ADDED",
        "PATIENT_UPDATED",
        "PATIENT_ADDED",
    ]
    assert updated["priority"] == "priority" and updated["ticket"] == "A-001"
    assert updated["patient"] == {
        "id": ann["id"],
        "fname": "Ann L.",
        "status": "waiting",
        "image": None,
    }
    assert updated["seq"] == added["seq"] + 1
    first, second = await messages(plain, 2)
    assert [m["event"] for m in (first, second)] == ["PATIENT_ADDED", "PATIENT_ADDED"]
    # Replay keeps the same rule: since=0 without the opt-in leaves the update out.
    replay = await clinic.subscribe(Role.QUEUE, "since=0")
    assert [m["event"] for m in await messages(replay, 2)] == ["PATIENT_ADDED", "PATIENT_ADDED"]
    replay_all = await clinic.subscribe(Role.QUEUE, "since=0&events=all")
    assert [m["event"] for m in await messages(replay_all, 3)] == [
        "PATIENT_ADDED",
        "PATIENT_UPDATED",
        "PATIENT_ADDED",
    ]
    # Nothing else follows on the plain feeds (a completion is the next thing they see).
    await clinic.call_next()
    assert (await next_message(plain))["event"] == "PATIENT_COMPLETED"
    assert (await next_message(replay))["event"] == "PATIENT_COMPLETED"
    for ws in (plain, rich, replay, replay_all):
        await ws.close()


async def test_snapshot_items_carry_ticket_line_priority_and_place(clinic: Clinic) -> None:
    await _line(clinic, "N", "Nurse")
    await _check_in(clinic, "Ann Lee", line="N")
    ws = await clinic.subscribe(Role.QUEUE, "snapshot=1")
    snapshot = await next_message(ws)
    assert snapshot["event"] == "QUEUE_SNAPSHOT"
    (item,) = snapshot["queue"]
    assert (item["ticket"], item["line"], item["priority"], item["place"]) == (
        "N-001",
        "N",
        "normal",
        1,
    )


def test_hours_may_run_past_midnight() -> None:
    night = Line(2, "N", {"en": "Night"}, "#000000", None, True, [["22:00", "06:00"]], None, 2, "")
    assert night.open_at("2026-03-09T23:30:00.000Z", "UTC")
    assert night.open_at("2026-03-09T05:59:00.000Z", "UTC")
    assert not night.open_at("2026-03-09T06:00:00.000Z", "UTC")
    assert not night.open_at("2026-03-09T12:00:00.000Z", "UTC")
    always = Line(3, "X", {"en": "X"}, "#000000", None, True, [["07:00", "07:00"]], None, 3, "")
    assert always.open_at("2026-03-09T12:00:00.000Z", "UTC")


# --- the call order (ordering.py's rule) -----------------------------------------------------


async def _clocked(clinic: Clinic, at: str) -> list[str]:
    now = [at]
    clinic.app[STORE].set_clock(lambda: now[0])
    return now


async def test_place_and_calls_follow_the_lines_rule(clinic: Clinic) -> None:
    now = await _clocked(clinic, "2026-03-09T09:00:00.000Z")
    admin = clinic.headers(Role.ADMIN)
    await clinic.client.patch("/api/settings/", json={"priority_question": True}, headers=admin)
    ids = {}
    for minute, (name, priority) in enumerate(
        [
            ("N1", "normal"),
            ("N2", "normal"),
            ("P1", "priority"),
            ("P2", "priority"),
            ("P3", "priority"),
        ]
    ):
        now[0] = f"2026-03-09T09:0{minute}:00.000Z"
        ids[(await _check_in(clinic, name, priority=priority))["id"]] = name
    # The default rule: 2 priority : 1 normal, nobody aged yet.
    places = {ids[i["patient"]["id"]]: i["place"] for i in await _queue(clinic)}
    assert places == {"P1": 1, "P2": 2, "N1": 3, "P3": 4, "N2": 5}
    called = []
    for _ in range(5):
        resp = await clinic.call_next()
        called.append(ids[(await resp.json())["patient"]["id"]])
    assert called == ["P1", "P2", "N1", "P3", "N2"]  # the streak is read from the calls made


async def test_an_aged_patient_goes_first_across_the_served_lines(clinic: Clinic) -> None:
    now = await _clocked(clinic, "2026-03-09T09:00:00.000Z")
    await _line(clinic, "N", "Nurse", call_rule={"mode": "strict", "max_wait_minutes": 30})
    await clinic.client.patch(
        "/api/settings/", json={"priority_question": True}, headers=clinic.headers(Role.ADMIN)
    )
    waited = await _check_in(clinic, "Old Timer", line="N")
    now[0] = "2026-03-09T09:25:00.000Z"
    await _check_in(clinic, "Pat Prio", line="A", priority="priority")
    now[0] = "2026-03-09T09:31:00.000Z"  # 31 minutes: past line N's 30
    resp = await clinic.call_next()
    assert (await resp.json())["patient"]["id"] == waited["id"]


# --- the check-in's place from counts, against the whole call order ---------------------------

CLASSES = st.sampled_from(["normal", "priority", "urgent"])


@settings(max_examples=300, deadline=None)
@given(
    ahead=st.lists(st.tuples(CLASSES, st.integers(0, 600)), max_size=40),
    newcomer=CLASSES,
    rule=st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {
                "mode": st.just("strict"),
                "max_wait_minutes": st.one_of(st.none(), st.integers(5, 480)),
            }
        ),
        st.fixed_dictionaries(
            {
                "mode": st.just("interleave"),
                "priority": st.integers(1, 10),
                "normal": st.integers(1, 10),
                "max_wait_minutes": st.one_of(st.none(), st.integers(5, 480)),
            }
        ),
    ),
    history=st.lists(st.sampled_from(["normal", "priority", "urgent", "aged"]), max_size=12),
)
def test_newcomer_place_is_its_place_in_the_call_order(
    ahead: list[tuple[str, int]], newcomer: str, rule: Any, history: list[str]
) -> None:
    now = "2026-03-09T12:00:00.000Z"
    at = lines.seconds(now)
    people = [
        lines.waiting(i + 1, priority, at - minutes * 60)
        for i, (priority, minutes) in enumerate(ahead)
    ]
    people.append(lines.waiting(len(ahead) + 1, newcomer, at))
    order = lines.line_order(people, rule, history, now)
    expected = [w.entry_id for w in order].index(len(ahead) + 1) + 1
    cutoff = lines.aged_cutoff(rule, now)
    counts = {"urgent": 0, "aged": 0, "priority": 0, "normal": 0}
    for person in people:
        aged = cutoff is not None and person.check_in_time <= lines.seconds(cutoff)
        kind = str(person.priority)
        counts["aged" if kind != "urgent" and aged else kind] += 1
    assert lines.newcomer_place(lines.Counts(**counts), newcomer, rule, history) == expected
