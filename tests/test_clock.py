"""The box's clock: believable or not (before the build, behind the database, jumping), and
what a jump does to sessions and to the statistics' durations (issue 19, item 12)."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from checkin_appliance import app as app_module
from checkin_appliance.clock import BEFORE_BUILD, BEHIND_DATABASE, IMPLAUSIBLE, OK, ClockWatch
from checkin_appliance.domain import Role, format_time, parse_time
from checkin_appliance.web.keys import ACCESS, CLOCK, CONFIG, STORE
from tests.conftest import Clinic

YEAR = timedelta(days=365)
BUILT = datetime(2026, 11, 1, tzinfo=UTC)


class FakeTime:
    """A wall clock someone can set, and a monotonic one nobody can."""

    def __init__(self, now: datetime) -> None:
        self.now, self.mono = now, 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def passes(self, delta: timedelta) -> None:
        self.now += delta
        self.mono += delta.total_seconds()

    def is_set(self, delta: timedelta) -> None:
        self.now += delta


def watched(now: datetime, build: datetime | None = BUILT) -> tuple[ClockWatch, FakeTime]:
    fake = FakeTime(now)
    return ClockWatch(build, wall=fake.wall, monotonic=fake.monotonic), fake


# --- the clock service on its own ---------------------------------------------------------


def test_a_clock_before_the_build_is_implausible_until_it_is_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch, fake = watched(datetime(1970, 1, 1, 0, 0, 40, tzinfo=UTC))
    with caplog.at_level(logging.WARNING, "checkin_appliance.clock"):
        state = watch.start(newest_stored=None)
    assert (state.status, state.reason) == (IMPLAUSIBLE, BEFORE_BUILD)
    assert "implausible" in caplog.text
    fake.passes(timedelta(seconds=3))
    assert watch.check() is None
    fake.is_set(datetime(2026, 12, 6, 9, tzinfo=UTC) - fake.now)  # NTP arrives
    jump = watch.check()
    assert jump is not None and jump.delta > 56 * YEAR
    assert watch.state().status == OK
    assert watch.state().as_json()["last_jump"] is not None


def test_a_clock_behind_what_the_database_holds_is_implausible() -> None:
    watch, _ = watched(datetime(2026, 12, 1, tzinfo=UTC))
    assert watch.start(newest_stored=datetime(2026, 12, 1, 0, 1, tzinfo=UTC)).status == OK
    watch, _ = watched(datetime(2026, 12, 1, tzinfo=UTC))
    state = watch.start(newest_stored=datetime(2026, 12, 5, tzinfo=UTC))
    assert (state.status, state.reason) == (IMPLAUSIBLE, BEHIND_DATABASE)
    # An unknown build time (a checkout) is no reason to doubt.
    watch, _ = watched(datetime(2000, 1, 1, tzinfo=UTC), build=None)
    assert watch.start(None).status == OK


@pytest.mark.parametrize("seconds", [121, -121, 3600, -YEAR.total_seconds()])
def test_a_jump_of_more_than_two_minutes_either_way_is_seen_and_its_size_measured(
    seconds: float,
) -> None:
    watch, fake = watched(datetime(2026, 12, 6, 9, tzinfo=UTC))
    watch.start(None)
    fake.passes(timedelta(seconds=2))
    fake.is_set(timedelta(seconds=seconds))
    fake.passes(timedelta(seconds=1))
    jump = watch.check()
    assert jump is not None and jump.delta == timedelta(seconds=seconds)
    assert jump.before == fake.now - timedelta(seconds=seconds)
    fake.passes(timedelta(seconds=2))
    assert watch.check() is None  # measured from the new mark on


def test_time_passing_and_small_corrections_are_not_jumps() -> None:
    watch, fake = watched(datetime(2026, 12, 6, 9, tzinfo=UTC))
    watch.start(None)
    for _ in range(5):
        fake.passes(timedelta(hours=2))  # a long sleep of the loop: both clocks moved
        fake.is_set(timedelta(seconds=30))  # NTP's step of half a minute
        assert watch.check() is None


# --- what a jump does to the running box ----------------------------------------------


def shift_sessions(clinic: Clinic, delta: timedelta) -> None:
    """Sessions as written on a clock `delta` off the real one (the box before NTP)."""
    columns = ("created_at", "access_expires", "refresh_expires", "ends_at")
    with sqlite3.connect(clinic.app[CONFIG].db_path) as conn:
        conn.row_factory = sqlite3.Row
        for row in conn.execute("SELECT * FROM sessions").fetchall():
            moved = {c: format_time(parse_time(row[c]) + delta) for c in columns if row[c]}
            conn.execute(
                "UPDATE sessions SET "  # noqa: S608 - column names from the tuple above
                + ", ".join(f"{c} = ?" for c in moved)
                + " WHERE id = ?",
                (*moved.values(), row["id"]),
            )
    clinic.app[ACCESS].forget_sessions()


def watch_with(clinic: Clinic, fake: FakeTime) -> None:
    """The app's clock service on the fake clocks (no await between: the background look
    cannot run in the middle)."""
    watch = clinic.app[CLOCK]
    watch.wall, watch.monotonic = fake.wall, fake.monotonic
    watch.start(None)


def jump_rows(clinic: Clinic) -> list[sqlite3.Row]:
    with sqlite3.connect(clinic.app[CONFIG].db_path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM clock_jumps ORDER BY id").fetchall()


async def authorised(clinic: Clinic, role: Role) -> int:
    resp = await clinic.client.get("/api/settings/", headers=clinic.headers(role))
    return resp.status


async def test_a_clock_set_forward_a_year_signs_nobody_out(clinic: Clinic) -> None:
    # The box ran a year behind (booted without RTC); everyone signed in on that clock.
    real = datetime.now(UTC)
    fake = FakeTime(real - YEAR)
    watch_with(clinic, fake)
    shift_sessions(clinic, -YEAR)
    fake.passes(timedelta(seconds=2))
    fake.is_set(YEAR)  # NTP: the real time
    restated = await app_module.follow_a_clock_jump(clinic.app)
    assert restated is not None and restated.sessions == len(Role)
    for role in Role:
        assert await authorised(clinic, role) == 200, role
    [jump] = jump_rows(clinic)
    assert jump["seconds"] == pytest.approx(YEAR.total_seconds(), abs=1)
    assert jump["sessions"] == len(Role)
    audit = await clinic.client.get(
        "/api/audit/?action=clock_jump", headers=clinic.headers(Role.ADMIN)
    )
    assert audit.status == 200, await audit.text()
    [entry] = (await audit.json())["rows"]
    assert entry["detail"]["sessions"] == len(Role)


async def test_a_clock_set_back_a_year_does_not_let_sessions_live_a_year_longer(
    clinic: Clinic,
) -> None:
    # The box ran a year ahead; staff sessions were signed in on that clock.
    real = datetime.now(UTC)
    fake = FakeTime(real + YEAR)
    watch_with(clinic, fake)
    shift_sessions(clinic, YEAR)
    fake.passes(timedelta(seconds=2))
    fake.is_set(-YEAR)
    assert await app_module.follow_a_clock_jump(clinic.app) is not None
    assert await authorised(clinic, Role.DOCTOR) == 200  # still signed in now
    with sqlite3.connect(clinic.app[CONFIG].db_path) as conn:
        ends = [
            parse_time(row[0]) for row in conn.execute("SELECT ends_at FROM sessions") if row[0]
        ]
    assert ends and all(end - real < timedelta(days=60) for end in ends), ends


async def _stats_times(clinic: Clinic, day: str) -> dict[str, Any]:
    resp = await clinic.client.get(
        f"/api/stats/times/?from={day}&to={day}", headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["current"]


async def test_a_visit_that_straddles_a_clock_correction_keeps_its_true_wait(
    clinic: Clinic,
) -> None:
    fake = FakeTime(datetime(2025, 3, 4, 8, 0, tzinfo=UTC))  # a year behind
    clinic.app[STORE].set_clock(lambda: format_time(fake.now))
    watch_with(clinic, fake)
    ana = await clinic.check_in("Ana")
    bea = await clinic.check_in("Bea")
    fake.passes(timedelta(minutes=1))
    called = await clinic.call_next()  # Ana, called before the correction
    assert called.status == 200, await called.text()
    fake.passes(timedelta(minutes=1))
    fake.is_set(YEAR)  # 2026-03-04 08:02
    restated = await app_module.follow_a_clock_jump(clinic.app)
    assert restated is not None and restated.visits == 2
    fake.passes(timedelta(minutes=3))
    called = await clinic.call_next()  # Bea, after it
    assert called.status == 200, await called.text()
    for patient in (ana, bea):
        resp = await clinic.client.post(
            "/api/doctors/",
            json={"action": "done", "patient_id": patient["id"]},
            headers=clinic.headers(Role.DOCTOR),
        )
        assert resp.status == 200, await resp.text()
    fake.passes(timedelta(hours=1))
    times = await _stats_times(clinic, "2026-03-04")
    # Ana waited 1 minute (her first call), Bea 5: on the corrected clock, not a year.
    assert times["waiting"]["count"] == 2
    assert times["waiting"]["p90_seconds"] <= 5 * 60
    assert (await _stats_times(clinic, "2025-03-04"))["waiting"]["count"] == 0


async def test_the_clock_is_in_healthz(clinic: Clinic) -> None:
    body = await (await clinic.client.get("/healthz")).json()
    assert body["clock"] == OK
    fake = FakeTime(datetime(1970, 1, 1, tzinfo=UTC))
    clinic.app[CLOCK].build_time = BUILT
    watch_with(clinic, fake)
    body = await (await clinic.client.get("/healthz")).json()
    assert body["clock"] == IMPLAUSIBLE


async def test_a_date_of_birth_is_checked_against_the_clinics_today(clinic: Clinic) -> None:
    # 12:00 UTC on 6 December is already 7 December in Kiritimati (UTC+14).
    resp = await clinic.client.patch(
        "/api/settings/",
        json={"intake_form": {"preset": "original"}, "time_zone": "Pacific/Kiritimati"},
        headers=clinic.headers(Role.ADMIN),
    )
    assert resp.status == 200, await resp.text()
    clinic.app[STORE].set_clock(lambda: "2026-12-06T12:00:00.000Z")
    form = {"fname": "Ana", "lname": "B", "dob": "2026-12-07", "phone": "804-555-0100"}
    resp = await clinic.client.post("/api/patients/", json=form, headers=clinic.headers(Role.FORM))
    codes = (await resp.json()).get("codes", {}) if resp.status != 201 else {}
    assert "dob" not in codes, await resp.text()
    form["dob"] = "2026-12-08"
    resp = await clinic.client.post("/api/patients/", json=form, headers=clinic.headers(Role.FORM))
    assert (await resp.json())["codes"]["dob"] == "date_in_future"
