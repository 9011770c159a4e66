"""Calibration of the wait estimates (issue 17): every range a patient is shown is kept, and
/admin sees, per line this week, how often the actual wait until the call fell inside and
the median error. Through the real app on a real database, the store's clock moved by hand;
and the doctor's queue view with each patient's estimate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from checkin_appliance import calibration
from checkin_appliance.domain import Role, format_time
from checkin_appliance.reception import local_week_bounds
from checkin_appliance.web.keys import STORE
from tests.conftest import EVENT_TIMEOUT, Clinic
from tests.test_visit_status import act, events, status, token_of

# A Wednesday morning: the week began on Monday.
WEDNESDAY_9 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def paced(clinic: Clinic) -> tuple[Clinic, list[datetime], list[dict[str, Any]]]:
    """Eight check-ins at 9:00; the doctor (Room 3) sees five of them, ten minutes each, and
    has the sixth with them: the line has a pace and two patients are waiting."""
    token = await clinic.add_credential(Role.DOCTOR, "Dr Lee", "Room 3")
    clinic.access[Role.DOCTOR] = await clinic.login(token)
    clock = [WEDNESDAY_9]
    clinic.app[STORE].set_clock(lambda: format_time(clock[0]))
    people = [await clinic.check_in(f"Patient {n} Test") for n in range(8)]
    for person in people[:5]:
        assert (await clinic.call_next()).status == 200
        clock[0] += timedelta(minutes=10)
        await act(clinic, "start", person["id"])
        await act(clinic, "done", person["id"])
    assert (await clinic.call_next()).status == 200  # people[5]
    return clinic, clock, people


async def calibration_of(clinic: Clinic) -> dict[str, Any]:
    resp = await clinic.client.get("/api/stats/estimates/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    (line,) = [item for item in body["lines"] if item["prefix"] == "A"]
    return line


async def shown_count(clinic: Clinic, count: int) -> None:
    """Waits (bounded) until `count` ranges are kept: a live page's are written after it is
    sent its message."""
    async with asyncio.timeout(EVENT_TIMEOUT):
        while (await calibration_of(clinic))["shown"]["shown"] != count:
            await asyncio.sleep(0.02)


def middle(estimate: dict[str, int]) -> float:
    return (estimate["low_minutes"] + estimate["high_minutes"]) / 2


def held(estimate: dict[str, int], minutes: float) -> bool:
    return estimate["low_minutes"] <= minutes <= estimate["high_minutes"]


async def test_admin_sees_how_often_the_shown_range_held_and_the_median_error(paced: Any) -> None:
    clinic, clock, people = paced
    _, first = await status(clinic, token_of(people[6]))  # the kiosk's thank-you screen
    _, again = await status(clinic, token_of(people[6]))  # the phone opens the same range
    assert first["estimate"] is not None and again["estimate"] == first["estimate"]
    _, other = await status(clinic, token_of(people[7]))
    assert other["estimate"] is not None

    line = await calibration_of(clinic)
    # Shown twice the same range: kept once. Nobody called since: nothing to compare.
    assert line["shown"] == {
        "shown": 2,
        "compared": 0,
        "inside_share": None,
        "median_error_minutes": None,
    }

    clock[0] += timedelta(minutes=12)
    await act(clinic, "done", people[5]["id"])
    assert (await (await clinic.call_next()).json())["patient"]["id"] == people[6]["id"]
    await act(clinic, "cancel", people[7]["id"], reason="left")  # never called: not compared

    line = await calibration_of(clinic)
    estimate = first["estimate"]
    expected = {
        "shown": 2,
        "compared": 1,
        "inside_share": 1.0 if held(estimate, 12) else 0.0,
        "median_error_minutes": abs(12 - middle(estimate)),
    }
    assert line["shown"] == expected
    assert line["first_shown"] == expected  # each range shown was its visit's first


async def test_a_changed_range_on_an_open_phone_is_kept_too_and_compared_from_then(
    paced: Any,
) -> None:
    clinic, clock, people = paced
    feed = await events(clinic, token_of(people[7]))  # place 2
    seen = [((await feed.next())["estimate"], 0)]  # (range, minute it was shown)
    clock[0] += timedelta(minutes=10)
    await act(clinic, "done", people[5]["id"])  # the doctor is free: a shorter range
    await clinic.call_next()  # people[6]: people[7] is next
    while (update := await feed.next())["place"] != 1:
        seen.append((update["estimate"], 10))
    seen.append((update["estimate"], 10))
    clock[0] += timedelta(minutes=8)
    await act(clinic, "done", people[6]["id"])
    await clinic.call_next()  # people[7], 18 minutes after the first range
    while (update := await feed.next())["status"] == "waiting":
        seen.append((update["estimate"], 18))
    kept = changes(seen)
    assert len(kept) >= 2, seen
    await shown_count(clinic, len(kept))

    line = await calibration_of(clinic)
    inside = [held(estimate, 18 - at) for estimate, at in kept]
    errors = [abs(18 - at - middle(estimate)) for estimate, at in kept]
    assert line["shown"] == {
        "shown": len(kept),
        "compared": len(kept),
        "inside_share": round(sum(inside) / len(kept), 3),
        "median_error_minutes": round(calibration.median(errors), 1),
    }
    assert line["first_shown"]["compared"] == 1
    assert line["first_shown"]["inside_share"] == float(inside[0])


def changes(seen: list[tuple[dict[str, int] | None, int]]) -> list[tuple[dict[str, int], int]]:
    """The ranges a page showed, each once until it changed ("—" is no range)."""
    kept: list[tuple[dict[str, int], int]] = []
    for estimate, at in seen:
        if estimate is not None and (not kept or kept[-1][0] != estimate):
            kept.append((estimate, at))
    return kept


async def test_an_undone_call_is_not_the_wait_the_next_call_is(paced: Any) -> None:
    clinic, clock, people = paced
    _, shown = await status(clinic, token_of(people[6]))
    clock[0] += timedelta(minutes=2)
    await act(clinic, "done", people[5]["id"])
    await clinic.call_next()  # people[6], by mistake
    await act(clinic, "undo", people[6]["id"])
    clock[0] += timedelta(minutes=28)
    await clinic.call_next()  # people[6] again: 30 minutes after being shown the range
    line = await calibration_of(clinic)
    assert line["shown"]["compared"] == 1
    assert line["shown"]["median_error_minutes"] == abs(30 - middle(shown["estimate"]))


async def test_last_weeks_ranges_are_not_this_weeks(paced: Any) -> None:
    clinic, clock, people = paced
    await status(clinic, token_of(people[6]))
    assert (await calibration_of(clinic))["shown"]["shown"] == 1
    # A week later, the same hour: last Wednesday's pace still gives people[7] a range.
    clock[0] += timedelta(days=7)
    _, later = await status(clinic, token_of(people[7]))
    assert later["estimate"] is not None
    line = await calibration_of(clinic)
    assert line["shown"]["shown"] == 1


async def test_only_the_admin_reads_the_calibration(clinic: Clinic) -> None:
    for role in (Role.DOCTOR, Role.FORM, Role.QUEUE):
        resp = await clinic.client.get("/api/stats/estimates/", headers=clinic.headers(role))
        assert resp.status == 403, role
    resp = await clinic.client.get("/api/stats/estimates/")
    assert resp.status == 401


async def test_the_doctor_sees_each_waiting_patients_estimate_as_their_phone_does(
    paced: Any,
) -> None:
    clinic, _, people = paced
    resp = await clinic.client.get("/api/queue/?estimates=1", headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 200
    items = {item["id"]: item for item in await resp.json()}
    for person in people[6:]:
        _, body = await status(clinic, token_of(person))
        item = items[person["queue_entry_id"]]
        assert (item["place"], item["estimate"]) == (body["place"], body["estimate"])
    # Without asking, the original's shape: no estimate.
    resp = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    plain = await resp.json()
    assert plain and all("estimate" not in item for item in plain)


@pytest.mark.parametrize(
    ("now", "zone", "start"),
    [
        (datetime(2026, 12, 6, 22, 0, tzinfo=UTC), "UTC", "2026-11-30T00:00:00"),  # Sunday
        (datetime(2026, 12, 7, 0, 0, tzinfo=UTC), "UTC", "2026-12-07T00:00:00"),  # Monday
        # Monday 01:00 in Berlin is still Sunday in UTC: the clinic's week has begun.
        (datetime(2026, 12, 7, 0, 0, tzinfo=UTC), "Europe/Berlin", "2026-12-06T23:00:00"),
    ],
)
def test_the_week_starts_on_the_clinics_monday(now: datetime, zone: str, start: str) -> None:
    since, until = local_week_bounds(now, zone)
    assert since.startswith(start)
    assert datetime.fromisoformat(until) - datetime.fromisoformat(since) == timedelta(days=7)


def test_a_score_counts_only_called_visits_and_takes_the_median_error() -> None:
    def shown(low: int, high: int, waited_minutes: float | None, first: bool = True) -> Any:
        waited = None if waited_minutes is None else waited_minutes * 60
        return calibration.Shown(1, low, high, first, waited)

    scores = calibration.by_line(
        [shown(10, 20, 15), shown(10, 20, 25, first=False), shown(0, 5, 4), shown(5, 10, None)]
    )
    every, first = scores[1]
    # Errors from the middles: 0, 10, 1.5 -> median 1.5; inside: 15 and 4, not 25.
    assert every == calibration.Score(4, 3, round(2 / 3, 3), 1.5)
    assert first == calibration.Score(3, 2, 1.0, 0.8)  # 0.75, to one decimal


async def test_a_bad_estimates_flag_is_refused_with_a_code(clinic: Clinic) -> None:
    resp = await clinic.client.get("/api/queue/?estimates=yes", headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 400
    assert (await resp.json())["code"] == "query_invalid"
