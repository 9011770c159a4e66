"""The call cycle (issue 16): every transition through the real API, with real feeds (a seed
client without ?events=all and one with it), its 409 codes, undo, idempotent retries, the end
of the day and a restart."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse

from checkin_appliance.app import close_the_day_if_due, mark_no_shows
from checkin_appliance.domain import Role, format_time
from checkin_appliance.store import schema
from checkin_appliance.web.keys import STORE
from tests.conftest import Clinic, StartClinic, messages

QUIET = 0.2  # how long "nothing more arrives" is waited for


async def act(
    clinic: Clinic,
    action: str,
    patient_id: int | None = None,
    role: Role = Role.DOCTOR,
    key: str | None = None,
    **fields: Any,
) -> tuple[int, dict[str, Any], Any]:
    body: dict[str, Any] = {"action": action, **fields}
    if patient_id is not None:
        body["patient_id"] = patient_id
    headers = clinic.headers(role)
    if key is not None:
        headers["Idempotency-Key"] = key
    resp = await clinic.client.post("/api/doctors/", json=body, headers=headers)
    return resp.status, await resp.json(), resp.headers


async def ok(clinic: Clinic, action: str, patient_id: int | None = None, **kw: Any) -> Any:
    status, body, _ = await act(clinic, action, patient_id, **kw)
    assert status == 200, body
    return body


async def quiet(ws: ClientWebSocketResponse) -> None:
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=QUIET)


def state(clinic: Clinic, patient_id: int) -> dict[str, Any]:
    """The visit's row as the database holds it (every column)."""
    conn = sqlite3.connect(clinic.app[STORE].path)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute(
            "SELECT * FROM queue_entries WHERE patient_id = ? ORDER BY id DESC LIMIT 1",
            (patient_id,),
        ).fetchone()
        return dict(row)
    finally:
        conn.close()


def count(clinic: Clinic, sql: str, params: tuple[Any, ...] = ()) -> int:
    conn = sqlite3.connect(clinic.app[STORE].path)
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


async def waiting_ids(clinic: Clinic) -> list[int]:
    resp = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    return [item["patient"]["id"] for item in await resp.json()]


async def test_a_visit_through_every_state_as_both_kinds_of_feed_see_it(clinic: Clinic) -> None:
    old = await clinic.subscribe(Role.QUEUE)  # a seed client: no ?events=all
    new = await clinic.subscribe(Role.DOCTOR, "events=all")
    ann = await clinic.check_in("Ann Example")
    await messages(old, 1), await messages(new, 1)

    called = await (await clinic.call_next()).json()
    assert called["patient"]["status"] == "completed"  # the seed's body, unchanged
    (legacy,) = await messages(old, 1)
    (precise,) = await messages(new, 1)
    assert legacy["event"] == precise["event"] == "PATIENT_COMPLETED"

    recalled = await ok(clinic, "recall", ann["id"])
    assert (recalled["status"], recalled["from"], recalled["call_count"]) == ("called", "called", 2)
    (event,) = await messages(new, 1)
    assert event["event"] == "PATIENT_RECALLED" and event["call_count"] == 2
    assert event["patient"]["status"] == "completed" and "room" in event
    await quiet(old)  # the seed's clients never see a type they do not know

    body = await ok(clinic, "start", ann["id"])
    assert body["status"] == "in_service" and body["patient"]["status"] == "completed"
    (event,) = await messages(new, 1)
    assert (event["event"], event["status"], event["from"]) == (
        "PATIENT_STATUS",
        "in_service",
        "called",
    )
    body = await ok(clinic, "done", ann["id"])
    assert body["status"] == "done"
    (event,) = await messages(new, 1)
    assert (event["status"], event["from"]) == ("done", "in_service")
    await quiet(old)
    assert state(clinic, ann["id"])["status"] == "done"
    # One audit row per action, with from and to.
    assert count(clinic, "SELECT count(*) FROM audit_log WHERE action IN ('start', 'done')") == 2
    assert count(clinic, "SELECT count(*) FROM visit_transitions") == 4  # call, recall, start, done


async def test_no_show_and_back_to_the_queue_front_or_back(clinic: Clinic) -> None:
    old = await clinic.subscribe(Role.QUEUE)
    a, b, c = [await clinic.check_in(f"Patient {n} Test") for n in "ABC"]
    await messages(old, 3)
    assert (await (await clinic.call_next()).json())["patient"]["id"] == a["id"]
    await messages(old, 1)
    assert (await ok(clinic, "no_show", a["id"]))["status"] == "no_show"
    await quiet(old)  # already off the list for them
    back = await ok(clinic, "requeue", a["id"], position="back")
    assert back["status"] == "waiting" and back["from"] == "no_show"
    (event,) = await messages(old, 1)
    assert event["event"] == "PATIENT_ADDED" and event["patient"]["status"] == "waiting"
    assert "from" not in event  # the seed's shape for the seed's clients
    assert await waiting_ids(clinic) == [a["id"], b["id"], c["id"]]  # check-in order
    # Back: after B and C.
    called = [(await (await clinic.call_next()).json())["patient"]["id"] for _ in range(2)]
    assert called == [b["id"], c["id"]]
    # Front: before everyone waiting (a newcomer D included), ticket kept.
    d = await clinic.check_in("Patient D Test")
    await ok(clinic, "requeue", c["id"], position="front")
    assert state(clinic, c["id"])["ticket"] == c["ticket"]
    assert (await (await clinic.call_next()).json())["patient"]["id"] == c["id"]
    nxt = await (await clinic.call_next()).json()
    assert nxt["patient"]["id"] == a["id"]  # A went back before D checked in
    assert (await (await clinic.call_next()).json())["patient"]["id"] == d["id"]


async def test_cancel_is_a_departure_for_old_clients_and_a_status_for_new(clinic: Clinic) -> None:
    old = await clinic.subscribe(Role.QUEUE)
    new = await clinic.subscribe(Role.DOCTOR, "events=all")
    ann = await clinic.check_in("Ann Example")
    await messages(old, 1), await messages(new, 1)
    status, body, _ = await act(clinic, "cancel", ann["id"], reason="maybe")
    assert status == 400 and body["code"] == "invalid_action"
    body = await ok(clinic, "cancel", ann["id"], role=Role.ADMIN, reason="left")  # admin too
    assert body["status"] == "cancelled"
    (legacy,) = await messages(old, 1)
    assert legacy["event"] == "PATIENT_COMPLETED" and legacy["patient"]["status"] == "completed"
    (precise,) = await messages(new, 1)
    assert (precise["event"], precise["status"], precise["from"]) == (
        "PATIENT_STATUS",
        "cancelled",
        "waiting",
    )
    assert await waiting_ids(clinic) == []
    status, body, _ = await act(clinic, "cancel", ann["id"], reason="left")
    assert (status, body["code"]) == (409, "transition_not_allowed")


async def test_transfer_keeps_ticket_and_history(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/api/lines/",
        json={"prefix": "L", "name": {"en": "Lab"}},
        headers=clinic.headers(Role.ADMIN),
    )
    assert resp.status == 201, await resp.text()
    old = await clinic.subscribe(Role.QUEUE)
    new = await clinic.subscribe(Role.DOCTOR, "events=all")
    ann = await clinic.check_in("Ann Example")
    await messages(old, 1), await messages(new, 1)
    await clinic.call_next()
    await messages(old, 1), await messages(new, 1)
    body = await ok(clinic, "transfer", ann["id"], line="l")
    assert (body["status"], body["line"], body["ticket"]) == ("waiting", "L", ann["ticket"])
    (legacy,) = await messages(old, 1)
    assert legacy["event"] == "PATIENT_ADDED" and legacy["line"] == "L"
    (precise,) = await messages(new, 1)
    assert precise["event"] == "PATIENT_ADDED" and precise["from"] == "called"
    # Waiting to waiting in another line: still on the seed's single list, so nothing for
    # old clients; PATIENT_UPDATED with the new line for new ones.
    await ok(clinic, "transfer", ann["id"], line="A")
    await quiet(old)
    (precise,) = await messages(new, 1)
    assert (precise["event"], precise["line"]) == ("PATIENT_UPDATED", "A")
    status, body, _ = await act(clinic, "transfer", ann["id"], line="A")
    assert (status, body["code"]) == (409, "transition_not_allowed")
    status, body, _ = await act(clinic, "transfer", ann["id"], line="Z")
    assert (status, body["code"]) == (404, "line_not_found")
    history = count(clinic, "SELECT count(*) FROM visit_transitions WHERE action = 'transfer'")
    assert history == 2


async def test_illegal_transitions_answer_409_with_stable_codes(clinic: Clinic) -> None:
    ann = await clinic.check_in("Ann Example")
    for action in ("recall", "start", "done", "no_show"):
        status, body, _ = await act(clinic, action, ann["id"])
        assert (status, body["code"]) == (409, "transition_not_allowed"), action
    status, body, _ = await act(clinic, "requeue", ann["id"], position="front")
    assert (status, body["code"]) == (409, "transition_not_allowed")
    status, body, _ = await act(clinic, "undo")
    assert (status, body["code"]) == (409, "nothing_to_undo")
    status, body, _ = await act(clinic, "recall", 999999)
    assert (status, body["code"]) == (404, "visit_not_found")
    status, body, _ = await act(clinic, "recall")
    assert (status, body["code"]) == (400, "invalid_action")
    assert state(clinic, ann["id"])["status"] == "waiting"  # nothing changed


async def test_undo_restores_the_exact_previous_row_and_announces_it(clinic: Clinic) -> None:
    old = await clinic.subscribe(Role.QUEUE)
    ann = await clinic.check_in("Ann Example")
    await messages(old, 1)
    before = state(clinic, ann["id"])
    await clinic.call_next()
    await messages(old, 1)
    body = await ok(clinic, "undo")
    assert (body["status"], body["from"]) == ("waiting", "called")
    assert state(clinic, ann["id"]) == before  # every column, call_seq and call_count too
    (event,) = await messages(old, 1)
    assert event["event"] == "PATIENT_ADDED"  # back on the list for the seed's clients
    # An undo is not undone by another undo.
    status, body, _ = await act(clinic, "undo")
    assert (status, body["code"]) == (409, "nothing_to_undo")
    # Undo of a cancel, and of a recall.
    await ok(clinic, "cancel", ann["id"], reason="request")
    await messages(old, 1)
    await ok(clinic, "undo", ann["id"])
    assert state(clinic, ann["id"]) == before
    await clinic.call_next()
    after_call = state(clinic, ann["id"])
    await ok(clinic, "recall", ann["id"])
    await ok(clinic, "undo")
    assert state(clinic, ann["id"]) == after_call
    audit = count(clinic, "SELECT count(*) FROM audit_log WHERE action = 'undo'")
    assert audit == 3


async def test_undo_is_only_for_the_last_action_of_this_credential_in_time(
    clinic: Clinic,
) -> None:
    other = await clinic.login(await clinic.add_credential(Role.DOCTOR, "Dr Two", "Room 2"))
    now = datetime.now(UTC)
    clock = [now]
    clinic.app[STORE].set_clock(lambda: format_time(clock[0]))
    ann = await clinic.check_in("Ann Example")
    await clinic.call_next()
    # Another doctor's later action on the same visit: not undoable any more.
    resp = await clinic.client.post(
        "/api/doctors/",
        json={"action": "recall", "patient_id": ann["id"]},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert resp.status == 200
    assert (await resp.json())["room"] == "Room 2"
    status, body, _ = await act(clinic, "undo")
    assert (status, body["code"]) == (409, "undo_superseded")
    # The other doctor's own action stays undoable, until the window (120 s) has passed.
    clock[0] = now + timedelta(seconds=121)
    resp = await clinic.client.post(
        "/api/doctors/", json={"action": "undo"}, headers={"Authorization": f"Bearer {other}"}
    )
    assert resp.status == 409 and (await resp.json())["code"] == "undo_expired"
    resp = await clinic.client.patch(
        "/api/settings/", json={"undo_seconds": 300}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200, await resp.text()
    resp = await clinic.client.post(
        "/api/doctors/", json={"action": "undo"}, headers={"Authorization": f"Bearer {other}"}
    )
    assert resp.status == 200 and (await resp.json())["call_count"] == 1


async def test_a_retried_action_returns_the_first_answer(clinic: Clinic) -> None:
    ann = await clinic.check_in("Ann Example")
    bob = await clinic.check_in("Bob Example")
    # The call the console did not hear back about: the same patient, nobody else called.
    first = await (
        await clinic.client.post(
            "/api/doctors/",
            json={"action": "call_next"},
            headers={**clinic.headers(Role.DOCTOR), "Idempotency-Key": "call-1"},
        )
    ).json()
    again = await (
        await clinic.client.post(
            "/api/doctors/",
            json={"action": "call_next"},
            headers={**clinic.headers(Role.DOCTOR), "Idempotency-Key": "call-1"},
        )
    ).json()
    assert first == again and first["patient"]["id"] == ann["id"]
    assert await waiting_ids(clinic) == [bob["id"]]
    status, body, headers = await act(clinic, "recall", ann["id"], key="recall-1")
    assert status == 200 and body["call_count"] == 2
    status, replay, headers = await act(clinic, "recall", ann["id"], key="recall-1")
    assert status == 200 and replay == body and headers["Idempotent-Replayed"] == "true"
    assert state(clinic, ann["id"])["call_count"] == 2
    status, body, _ = await act(clinic, "start", ann["id"], key="recall-1")
    assert (status, body["code"]) == (422, "idempotency_key_reused")


async def test_end_of_day_by_the_button(clinic: Clinic) -> None:
    old = await clinic.subscribe(Role.QUEUE)
    new = await clinic.subscribe(Role.DOCTOR, "events=all")
    ann, bob, cat = [await clinic.check_in(f"{n} Example") for n in ("Ann", "Bob", "Cat")]
    await clinic.call_next()
    await ok(clinic, "start", ann["id"])
    await clinic.call_next()
    await ok(clinic, "done", bob["id"])
    await messages(old, 5), await messages(new, 7)
    resp = await clinic.client.post("/api/queue/end-of-day/", headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 403
    resp = await clinic.client.post("/api/queue/end-of-day/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 200 and await resp.json() == {"closed": 2}  # Ann (in service), Cat
    (legacy,) = await messages(old, 1)  # only Cat was on the seed's list
    assert legacy["event"] == "PATIENT_COMPLETED" and legacy["patient"]["id"] == cat["id"]
    precise = await messages(new, 2)
    assert {(m["patient"]["id"], m["status"], m["from"]) for m in precise} == {
        (ann["id"], "not_seen", "in_service"),
        (cat["id"], "not_seen", "waiting"),
    }
    assert state(clinic, bob["id"])["status"] == "done"  # closed visits untouched
    assert count(clinic, "SELECT count(*) FROM queue_entries") == 3  # nothing deleted
    assert count(clinic, "SELECT count(*) FROM audit_log WHERE action = 'end_of_day'") == 1
    # The new day starts empty: the snapshot lists nobody waiting and no recent call.
    ws = await clinic.subscribe(Role.QUEUE, "snapshot=1")
    (snapshot,) = await messages(ws, 1)
    assert snapshot["queue"] == [] and [c["patient"]["id"] for c in snapshot["called"]] == [
        bob["id"]
    ]


async def test_end_of_day_by_the_clock_closes_only_visits_from_before_it(clinic: Clinic) -> None:
    resp = await clinic.client.patch(
        "/api/settings/", json={"end_of_day": "19:00"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200, await resp.text()
    day = datetime.now(UTC).date()
    clock = [datetime(day.year, day.month, day.day, 18, 30, tzinfo=UTC)]
    clinic.app[STORE].set_clock(lambda: format_time(clock[0]))
    ann = await clinic.check_in("Ann Example")
    # Before 19:00 nothing is due (yesterday's end of day closed what came before it).
    assert await close_the_day_if_due(clinic.app) == 0
    clock[0] = clock[0].replace(hour=19, minute=5)
    late = await clinic.check_in("Late Example")  # checked in after the end of day
    assert await close_the_day_if_due(clinic.app) == 1
    assert state(clinic, ann["id"])["status"] == "not_seen"
    assert state(clinic, late["id"])["status"] == "waiting"
    assert await close_the_day_if_due(clinic.app) == 0  # once
    resp = await clinic.client.patch(
        "/api/settings/", json={"end_of_day": "7pm"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 400 and (await resp.json())["code"] == "setting_value_invalid"


async def test_a_call_left_untouched_past_the_grace_becomes_a_no_show(clinic: Clinic) -> None:
    resp = await clinic.client.patch(
        "/api/settings/", json={"no_show_minutes": 5}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200 and (await resp.json())["no_show_minutes"] == 5
    day = datetime.now(UTC).date()
    clock = [datetime(day.year, day.month, day.day, 10, 0, tzinfo=UTC)]
    clinic.app[STORE].set_clock(lambda: format_time(clock[0]))
    new = await clinic.subscribe(Role.DOCTOR, "events=all")
    ann, bob, cat = [await clinic.check_in(f"{n} Example") for n in ("Ann", "Bob", "Cat")]
    await clinic.call_next()  # Ann
    await clinic.call_next()  # Bob
    await messages(new, 5)
    clock[0] += timedelta(minutes=3)
    await ok(clinic, "recall", bob["id"])  # Bob's grace starts again
    await ok(clinic, "complete", cat["id"])
    await ok(clinic, "start", cat["id"])  # Cat arrived: in service is never a no-show
    await messages(new, 3)
    clock[0] += timedelta(minutes=2, seconds=30)  # Ann 5.5 min, Bob 2.5 min untouched
    assert await mark_no_shows(clinic.app) == 1
    (event,) = await messages(new, 1)
    assert (event["event"], event["patient"]["id"]) == ("PATIENT_STATUS", ann["id"])
    assert (event["from"], event["status"]) == ("called", "no_show")
    assert [state(clinic, p["id"])["status"] for p in (ann, bob, cat)] == [
        "no_show",
        "called",
        "in_service",
    ]
    assert await mark_no_shows(clinic.app) == 0  # once
    await quiet(new)
    clock[0] += timedelta(minutes=3)
    assert await mark_no_shows(clinic.app) == 1  # Bob, 5.5 min after his recall
    audited = count(
        clinic,
        "SELECT count(*) FROM audit_log WHERE action = 'no_show' AND actor IS NULL"
        " AND address = 'no_show_grace'",
    )
    assert audited == 2  # the box's own rows, beside the doctors'
    # Back to the queue and called again: a fresh grace, not an instant no-show.
    await ok(clinic, "requeue", ann["id"], position="front")
    await ok(clinic, "complete", ann["id"])
    assert await mark_no_shows(clinic.app) == 0
    # Off: nobody is marked, however long.
    resp = await clinic.client.patch(
        "/api/settings/", json={"no_show_minutes": None}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    clock[0] += timedelta(hours=2)
    assert await mark_no_shows(clinic.app) == 0
    assert state(clinic, ann["id"])["status"] == "called"
    for bad in (0, 241, 2.5, "5", True):
        resp = await clinic.client.patch(
            "/api/settings/", json={"no_show_minutes": bad}, headers=clinic.headers(Role.ADMIN)
        )
        assert resp.status == 400 and (await resp.json())["code"] == "setting_value_invalid"


async def test_the_no_show_grace_leaves_calls_of_earlier_days_alone(clinic: Clinic) -> None:
    day = datetime.now(UTC).date()
    clock = [datetime(day.year, day.month, day.day, 17, 0, tzinfo=UTC) - timedelta(days=1)]
    clinic.app[STORE].set_clock(lambda: format_time(clock[0]))
    old = await clinic.check_in("Ann Example")
    await clinic.call_next()  # yesterday, never done, no end of day set
    resp = await clinic.client.patch(
        "/api/settings/", json={"no_show_minutes": 10}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    clock[0] += timedelta(days=1)
    assert await mark_no_shows(clinic.app) == 0
    assert state(clinic, old["id"])["status"] == "called"


async def test_replay_and_restart_keep_the_precise_states(
    clinic: Clinic, start_clinic: StartClinic
) -> None:
    ann = await clinic.check_in("Ann Example")
    await clinic.call_next()
    await ok(clinic, "recall", ann["id"])
    await ok(clinic, "no_show", ann["id"])
    await clinic.client.close()
    again = await start_clinic(tokens=clinic.tokens)
    assert state(again, ann["id"])["status"] == "no_show"
    assert state(again, ann["id"])["call_count"] == 2
    new = await again.subscribe(Role.DOCTOR, "events=all&since=0")
    events = await messages(new, 4)
    assert [(m["event"], m.get("status")) for m in events] == [
        ("PATIENT_ADDED", None),
        ("PATIENT_COMPLETED", None),
        ("PATIENT_RECALLED", "called"),
        ("PATIENT_STATUS", "no_show"),
    ]
    assert events[2]["call_count"] == 2
    old = await again.subscribe(Role.DOCTOR, "since=0")
    assert [m["event"] for m in await messages(old, 2)] == ["PATIENT_ADDED", "PATIENT_COMPLETED"]
    await quiet(old)
    # The undo window survives the restart too: the no-show is still this doctor's last.
    body = await ok(again, "undo")
    assert body["status"] == "called" and body["call_count"] == 2


def test_schema_8_turns_the_seeds_completed_visits_into_called_ones(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for version, sql in schema.available()[:7]:
        conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {version}; COMMIT;")
    at = "2026-11-26T09:00:00.000Z"
    conn.execute(
        "INSERT INTO patients (id, fname, created_at) VALUES (1, 'Ann', ?1), (2, 'Bob', ?1)",
        (at,),
    )
    conn.execute(
        "INSERT INTO queue_entries (patient_id, status, check_in_time, called_at, completed_at,"
        " room) VALUES (1, 'completed', ?, ?, ?, 'Room 3'), (2, 'waiting', ?, NULL, NULL, NULL)",
        (at, at, at, at),
    )
    assert schema.migrate(conn) == len(schema.available())
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM queue_entries ORDER BY id")]
    assert [(r["status"], r["call_count"], r["room"]) for r in rows] == [
        ("called", 1, "Room 3"),
        ("waiting", 0, None),
    ]
    assert all(r["queue_time"] == r["check_in_time"] for r in rows)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE queue_entries SET status = 'completed' WHERE id = 2")
    # Who waits is still read from the partial waiting index alone.
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM queue_entries WHERE status = 'waiting' AND line_id = 1"
        " AND priority = 'normal' ORDER BY queue_time, id LIMIT 1"
    ).fetchall()
    assert "queue_entries_line_waiting" in " ".join(str(tuple(row)) for row in plan)
    conn.close()
