"""Daily tickets per line: numbered in the clinic's local day (its time zone, DST days too),
never reused across restarts, a SIGKILL or concurrent check-ins, and without gaps."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checkin_appliance.domain import Role
from checkin_appliance.reception import local_day_bounds
from checkin_appliance.web.keys import STORE
from tests.conftest import Clinic, StartClinic
from tests.serverproc import PASSWORD, http_json, new_database, run_cli, running


class Clock:
    """The store's clock, moved by the test: every transaction's `now`."""

    def __init__(self, now: str) -> None:
        self.now = now

    def __call__(self) -> str:
        return self.now


async def _zone(clinic: Clinic, name: str) -> None:
    resp = await clinic.client.patch(
        "/api/settings/", json={"time_zone": name}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200, await resp.text()


def _rows(db: Path) -> list[sqlite3.Row]:
    """The tickets as an independent connection reads them from the file."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "SELECT line_id, ticket_day, ticket_number, ticket FROM queue_entries ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


async def _tickets_at(clinic: Clinic, clock: Clock, moments: list[str]) -> list[str]:
    tickets = []
    for moment in moments:
        clock.now = moment
        tickets.append((await clinic.check_in("Ann Lee"))["ticket"])
    return tickets


async def test_tickets_restart_at_local_midnight_in_the_clinic_zone(clinic: Clinic) -> None:
    await _zone(clinic, "America/New_York")
    clock = Clock("2026-02-10T12:00:00.000Z")
    clinic.app[STORE].set_clock(clock)
    tickets = await _tickets_at(
        clinic,
        clock,
        [
            "2026-02-10T12:00:00.000Z",  # 07:00 EST, 10 Feb
            "2026-02-11T01:00:00.000Z",  # 20:00 EST, still 10 Feb (already 11 Feb in UTC)
            "2026-02-11T04:59:59.999Z",  # 23:59:59 EST, 10 Feb
            "2026-02-11T05:00:00.000Z",  # local midnight: 11 Feb
            "2026-02-11T05:00:01.000Z",
        ],
    )
    assert tickets == ["A-001", "A-002", "A-003", "A-001", "A-002"]
    days = [row["ticket_day"] for row in _rows(clinic.app[STORE].path)]
    assert days == ["2026-02-10"] * 3 + ["2026-02-11"] * 2


async def test_tickets_follow_local_midnight_on_clock_change_days(clinic: Clinic) -> None:
    await _zone(clinic, "America/New_York")
    clock = Clock("2026-03-08T05:00:00.000Z")
    clinic.app[STORE].set_clock(clock)
    tickets = await _tickets_at(
        clinic,
        clock,
        [
            "2026-03-08T05:00:00.000Z",  # 00:00 EST, 8 Mar: the clocks go forward at 02:00
            "2026-03-08T07:30:00.000Z",  # 03:30 EDT
            "2026-03-09T03:59:59.000Z",  # 23:59:59 EDT, 8 Mar
            "2026-03-09T04:00:00.000Z",  # 00:00 EDT, 9 Mar (midnight is an hour earlier in UTC)
            "2026-11-01T04:00:00.000Z",  # 00:00 EDT, 1 Nov: the clocks go back at 02:00
            "2026-11-01T06:30:00.000Z",  # 01:30 EST, the second 01:30
            "2026-11-02T04:59:00.000Z",  # 23:59 EST, 1 Nov
            "2026-11-02T05:00:00.000Z",  # 00:00 EST, 2 Nov
        ],
    )
    assert tickets == ["A-001", "A-002", "A-003", "A-001", "A-001", "A-002", "A-003", "A-001"]
    days = [row["ticket_day"] for row in _rows(clinic.app[STORE].path)]
    assert days == ["2026-03-08"] * 3 + ["2026-03-09"] + ["2026-11-01"] * 3 + ["2026-11-02"]


async def test_a_zone_ahead_of_utc_starts_its_day_before_utc_does(clinic: Clinic) -> None:
    await _zone(clinic, "Asia/Tokyo")
    clock = Clock("2026-05-01T14:59:59.000Z")
    clinic.app[STORE].set_clock(clock)
    tickets = await _tickets_at(
        clinic, clock, ["2026-05-01T14:59:59.000Z", "2026-05-01T15:00:00.000Z"]
    )
    assert tickets == ["A-001", "A-001"]
    assert [r["ticket_day"] for r in _rows(clinic.app[STORE].path)] == ["2026-05-01", "2026-05-02"]


def test_today_is_the_clinic_zone_day_on_clock_change_days() -> None:
    spring = datetime(2026, 3, 8, 12, tzinfo=UTC)
    assert local_day_bounds(spring, "America/New_York") == (
        "2026-03-08T05:00:00.000Z",
        "2026-03-09T04:00:00.000Z",  # a 23-hour day
    )
    autumn = datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert local_day_bounds(autumn, "America/New_York") == (
        "2026-11-01T04:00:00.000Z",
        "2026-11-02T05:00:00.000Z",  # a 25-hour day
    )
    assert local_day_bounds(spring, "UTC") == (
        "2026-03-08T00:00:00.000Z",
        "2026-03-09T00:00:00.000Z",
    )


async def test_time_zone_setting_is_validated(clinic: Clinic) -> None:
    for bad in ("Mars/Olympus", "", "../etc/passwd", 5, None):
        resp = await clinic.client.patch(
            "/api/settings/", json={"time_zone": bad}, headers=clinic.headers(Role.ADMIN)
        )
        assert resp.status == 400, bad
        assert (await resp.json())["code"] == "setting_value_invalid"
    await _zone(clinic, "Europe/Madrid")
    settings = await (
        await clinic.client.get("/api/settings/", headers=clinic.headers(Role.FORM))
    ).json()
    assert settings["time_zone"] == "Europe/Madrid"
    assert settings["priority_question"] is False


async def test_numbers_continue_after_a_restart(start_clinic: StartClinic) -> None:
    clinic = await start_clinic()
    assert [(await clinic.check_in(f"P {i}"))["ticket"] for i in range(3)] == [
        "A-001",
        "A-002",
        "A-003",
    ]
    # Called patients keep their numbers: the counter, not the waiting list, gives the next.
    for _ in range(3):
        assert (await clinic.call_next()).status == 200
    tokens = clinic.tokens
    await clinic.client.close()
    again = await start_clinic(tokens=tokens)
    assert (await again.check_in("After Restart"))["ticket"] == "A-004"


async def test_concurrent_check_ins_get_distinct_numbers_without_gaps(clinic: Clinic) -> None:
    bodies = await asyncio.gather(*(clinic.check_in(f"Patient {i}") for i in range(50)))
    numbers = sorted(int(body["ticket"].split("-")[1]) for body in bodies)
    assert numbers == list(range(1, 51))
    # The ticket follows the order of the queue: entry ids and numbers rise together.
    rows = _rows(clinic.app[STORE].path)
    assert [row["ticket_number"] for row in rows] == list(range(1, 51))
    positions = sorted(body["position"] for body in bodies)
    assert positions == list(range(1, 51))


async def test_a_refused_check_in_takes_no_number(clinic: Clinic) -> None:
    assert (await clinic.check_in("One"))["ticket"] == "A-001"
    resp = await clinic.client.post(
        "/api/patients/", json={"fname": "Two", "line": "Z"}, headers=clinic.headers(Role.FORM)
    )
    assert resp.status == 400
    assert (await resp.json())["code"] == "line_unavailable"
    assert (await clinic.check_in("Three"))["ticket"] == "A-002"


async def test_a_retried_check_in_keeps_its_ticket(clinic: Clinic) -> None:
    headers = {**clinic.headers(Role.FORM), "Idempotency-Key": "k-1"}
    first = await clinic.client.post("/api/patients/", json={"fname": "Ann"}, headers=headers)
    again = await clinic.client.post("/api/patients/", json={"fname": "Ann"}, headers=headers)
    assert first.status == 201 and again.status == 201
    assert (await first.json())["ticket"] == (await again.json())["ticket"] == "A-001"
    assert (await clinic.check_in("Bob"))["ticket"] == "A-002"


def _form_session(server: Any) -> dict[str, str]:
    token = server.create_token("form", "Kiosk")
    return {"Authorization": f"Bearer {server.login(token)}"}


def test_numbers_are_never_reused_after_a_sigkill(tmp_path: Path) -> None:
    """Check-ins run while the server is killed; after the restart every acknowledged ticket
    is on disk, the day's numbers run 1..n without a gap, and the next is n + 1."""
    data_dir = tmp_path / "data"
    acknowledged: list[str] = []
    with running(tmp_path / "first", data_dir) as server:
        headers = _form_session(server)
        stop = threading.Event()

        def keep_checking_in() -> None:
            while not stop.is_set():
                try:
                    status, body = http_json(
                        "POST", f"{server.base_url}/api/patients/", {"fname": "Ann Lee"}, headers
                    )
                except OSError:
                    return  # the server is gone
                if status == 201:
                    acknowledged.append(body["ticket"])

        workers = [threading.Thread(target=keep_checking_in) for _ in range(4)]
        for worker in workers:
            worker.start()
        deadline = datetime.now(UTC).timestamp() + 20
        while len(acknowledged) < 30 and datetime.now(UTC).timestamp() < deadline:
            threading.Event().wait(0.02)
        server.proc.kill()  # SIGKILL: no shutdown, no checkpoint
        server.proc.wait(timeout=10)
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
    assert len(acknowledged) >= 30
    rows = _rows(data_dir / "checkin.db")
    on_disk = [row["ticket"] for row in rows]
    assert set(acknowledged) <= set(on_disk)
    assert [row["ticket_number"] for row in rows] == list(range(1, len(rows) + 1))
    with running(tmp_path / "second", data_dir) as server:
        headers = _form_session(server)
        status, body = http_json(
            "POST", f"{server.base_url}/api/patients/", {"fname": "After"}, headers
        )
        assert status == 201, body
        assert body["ticket"] == f"A-{len(rows) + 1:03d}"


def test_the_cli_sets_the_time_zone_and_a_doctors_lines(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "data"))
    new_database(tmp_path / "data")
    refused = run_cli("settings", "set", "time_zone", "Mars/Olympus", *data)
    assert refused.returncode == 2
    assert "time_zone" in refused.stderr
    done = run_cli("settings", "set", "time_zone", "America/New_York", *data)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["time_zone"] == "America/New_York"
    unknown = run_cli(
        "token", "create", "--role", "doctor", "--label", "Dr. Lee", "--lines", "N",
        "--password-stdin", *data, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert unknown.returncode == 2 and "line" in unknown.stderr
    made = run_cli(
        "token", "create", "--role", "doctor", "--label", "Dr. Lee", "--lines", "a",
        "--password-stdin", *data, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    conn = sqlite3.connect(tmp_path / "data" / "checkin.db")
    try:
        served = conn.execute(
            "SELECT l.prefix FROM credential_lines cl JOIN lines l ON l.id = cl.line_id"
        ).fetchall()
    finally:
        conn.close()
    assert served == [("A",)]
