"""The box's clock in /admin's System section warnings (issue 19, item 12): an implausible
clock says why, and a jump in the last 24 hours says its size; both through GET /api/system/,
on the app's injectable clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from checkin_appliance.app import follow_a_clock_jump
from checkin_appliance.domain import Role, format_time
from checkin_appliance.web.keys import CLOCK, STORE
from tests.conftest import Clinic
from tests.test_clock import BUILT, FakeTime, watch_with


async def clock_warnings(clinic: Clinic) -> list[dict[str, Any]]:
    resp = await clinic.client.get("/api/system/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 200, await resp.text()
    return [w for w in (await resp.json())["warnings"] if w["code"].startswith("clock_")]


async def test_a_right_clock_raises_no_clock_warning(clinic: Clinic) -> None:
    assert await clock_warnings(clinic) == []


async def test_an_implausible_clock_and_then_its_correction_are_warned_about(
    clinic: Clinic,
) -> None:
    fake = FakeTime(datetime(1970, 1, 1, 0, 1, tzinfo=UTC))
    clinic.app[CLOCK].build_time = BUILT
    watch_with(clinic, fake)
    clinic.app[STORE].set_clock(lambda: format_time(fake.wall()))
    assert await clock_warnings(clinic) == [
        {"code": "clock_implausible", "reason": "before_build", "now": "1970-01-01T00:01:00.000Z"}
    ]

    # Someone sets it right: no longer implausible, and the jump is told with its size.
    right = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    fake.is_set(right - fake.now)
    assert await follow_a_clock_jump(clinic.app) is not None
    assert await clock_warnings(clinic) == [
        {
            "code": "clock_jumped",
            "at": format_time(right),
            "seconds": round((right - datetime(1970, 1, 1, 0, 1, tzinfo=UTC)).total_seconds()),
        }
    ]

    # A day later the jump is history (the audit log and the journal keep it).
    fake.passes(timedelta(hours=23, minutes=59))
    assert [w["code"] for w in await clock_warnings(clinic)] == ["clock_jumped"]
    fake.passes(timedelta(minutes=2))
    assert await clock_warnings(clinic) == []
