"""Statistics: the pure arithmetic (insight.py) and /api/stats/* on a small known clinic."""

from __future__ import annotations

import itertools
import math
import random
import sqlite3
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checkin_appliance import insight
from checkin_appliance.domain import InvalidInput, Role, format_time
from checkin_appliance.store import schema
from checkin_appliance.web.keys import STORE
from tests.conftest import Clinic


def test_percentile_is_linear_between_the_nearest_ranks() -> None:
    assert insight.percentile([], 0.5) is None
    assert insight.percentile([7.0], 0.9) == 7.0
    assert insight.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert insight.percentile([float(v) for v in range(11)], 0.9) == 9.0
    assert insight.percentile([0.0, 10.0], 0.9) == 9.0


def test_distribution_bins_are_fixed_and_the_last_is_open() -> None:
    result = insight.distribution([0, 299, 300, 7199, 7200, 90000, -5])
    counts = {(b["from_minutes"], b["to_minutes"]): b["count"] for b in result["bins"]}
    assert counts[(0, 5)] == 3  # -5 counts as 0
    assert counts[(5, 10)] == 1
    assert counts[(90, 120)] == 1
    assert counts[(120, None)] == 2
    assert result["count"] == 7 and result["median_seconds"] == 300
    assert insight.distribution([]) == {
        "count": 0,
        "median_seconds": None,
        "p90_seconds": None,
        "bins": insight.histogram([]),
    }


def test_previous_period_has_as_many_days_just_before() -> None:
    week = insight.Period(date(2026, 3, 2), date(2026, 3, 8))
    assert week.previous() == insight.Period(date(2026, 2, 23), date(2026, 3, 1))
    day = insight.Period(date(2026, 3, 1), date(2026, 3, 1))
    assert day.previous() == insight.Period(date(2026, 2, 28), date(2026, 2, 28))


def test_range_is_checked() -> None:
    today = date(2026, 6, 1)
    assert insight.period(None, None, today) == insight.Period(today, today)
    assert insight.period("2026-05-01", None, today).days == 32
    for first, last in (
        ("2026-06-02", "2026-06-01"),
        ("2025-01-01", "2026-06-01"),  # more than 366 days
        ("20260601", None),
        ("2026-02-30", None),
        ("0001-01-01", "0001-01-01"),
        (None, "9999-12-31"),
    ):
        with pytest.raises(InvalidInput) as refused:
            insight.period(first, last, today)
        assert refused.value.code.code == "stats_range_invalid"


def _quarter(moment: datetime) -> int:
    return int(moment.timestamp()) // insight.QUARTER_SECONDS


def test_heat_map_reads_local_hours_across_a_change_of_the_clocks() -> None:
    # Madrid: CET (+1) until Sunday 2026-03-29 01:00 UTC, CEST (+2) after.
    before = datetime(2026, 3, 28, 9, 15, tzinfo=UTC)  # Saturday 10:15 local
    change_day = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # Sunday 01:30 local (+1)
    after_change = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # Sunday 03:30 local (+2)
    after = datetime(2026, 3, 30, 8, 0, tzinfo=UTC)  # Monday 10:00 local (+2)
    cells = insight.heat_map(
        [
            (_quarter(before), 2),
            (_quarter(change_day), 1),
            (_quarter(after_change), 4),
            (_quarter(after), 3),
        ],
        "Europe/Madrid",
    )
    assert cells[5][10] == 2
    assert cells[6][1] == 1
    assert cells[6][3] == 4 and cells[6][2] == 0
    assert cells[0][10] == 3
    assert sum(map(sum, cells)) == 10
    # Half-hour zones: a UTC quarter falls in the local hour it is in there.
    kolkata = insight.heat_map(
        [(_quarter(datetime(2026, 3, 30, 4, 45, tzinfo=UTC)), 1)], "Asia/Kolkata"
    )
    assert kolkata[0][10] == 1  # 10:15 local


def test_utc_bounds_are_local_midnights() -> None:
    start, end = insight.Period(date(2026, 3, 29), date(2026, 3, 29)).utc_bounds("Europe/Madrid")
    assert (start, end) == ("2026-03-28T23:00:00.000Z", "2026-03-29T22:00:00.000Z")


# --- the API on a small known clinic ---------------------------------------------------

DAY = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)  # a Wednesday, 08:00 UTC (the clinic is in UTC)


async def _at(clinic: Clinic, moment: datetime) -> None:
    clinic.app[STORE].set_clock(lambda: format_time(moment))


async def _act(
    clinic: Clinic, role: Role, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    resp = await clinic.client.post(
        "/api/doctors/", json=body, headers=headers or clinic.headers(role)
    )
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


async def _stats(clinic: Clinic, name: str, query: str) -> dict[str, Any]:
    resp = await clinic.client.get(
        f"/api/stats/{name}/?{query}", headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_figures_per_line_and_doctor_ignore_undone_calls(clinic: Clinic) -> None:
    second = await clinic.add_credential(Role.DOCTOR, "Dr Two")
    second_headers = {"Authorization": f"Bearer {await clinic.login(second)}"}
    one = clinic.headers(Role.DOCTOR)
    # Three check-ins at 08:00, 08:00 and 08:10.
    await _at(clinic, DAY)
    a = await clinic.check_in("Ana")
    b = await clinic.check_in("Bea")
    await _at(clinic, DAY + timedelta(minutes=10))
    c = await clinic.check_in("Cai")
    # Dr 1 calls Ana at 08:05 and undoes it at once; calls her for real at 08:20, starts at
    # 08:22, done at 08:32: waited 20 min, served 10.
    await _at(clinic, DAY + timedelta(minutes=5))
    await _act(clinic, Role.DOCTOR, {"action": "complete", "patient_id": a["id"]}, one)
    await _act(clinic, Role.DOCTOR, {"action": "undo"}, one)
    await _at(clinic, DAY + timedelta(minutes=20))
    await _act(clinic, Role.DOCTOR, {"action": "complete", "patient_id": a["id"]}, one)
    await _at(clinic, DAY + timedelta(minutes=22))
    await _act(clinic, Role.DOCTOR, {"action": "start", "patient_id": a["id"]}, one)
    await _at(clinic, DAY + timedelta(minutes=32))
    await _act(clinic, Role.DOCTOR, {"action": "done", "patient_id": a["id"]}, one)
    # Dr Two calls Bea at 08:30 (waited 30), done at 08:36 without a start: served 6; then
    # Cai at 08:40 (waited 30) who does not come: a no-show.
    await _at(clinic, DAY + timedelta(minutes=30))
    await _act(clinic, Role.DOCTOR, {"action": "complete", "patient_id": b["id"]}, second_headers)
    await _at(clinic, DAY + timedelta(minutes=36))
    await _act(clinic, Role.DOCTOR, {"action": "done", "patient_id": b["id"]}, second_headers)
    await _at(clinic, DAY + timedelta(minutes=40))
    await _act(clinic, Role.DOCTOR, {"action": "complete", "patient_id": c["id"]}, second_headers)
    await _act(clinic, Role.DOCTOR, {"action": "no_show", "patient_id": c["id"]}, second_headers)
    # A fourth checks in and cancels.
    d = await clinic.check_in("Dan")
    await _act(
        clinic, Role.DOCTOR, {"action": "cancel", "patient_id": d["id"], "reason": "left"}, one
    )
    # The previous day: one check-in, never called.
    await _at(clinic, DAY - timedelta(days=1))
    await clinic.check_in("Eva")
    await _at(clinic, DAY + timedelta(hours=3))

    query = "from=2026-03-04&to=2026-03-04"
    times = await _stats(clinic, "times", query)
    now = times["current"]
    assert now["waiting"]["count"] == 3
    assert now["waiting"]["median_seconds"] == 30 * 60
    assert now["waiting"]["p90_seconds"] == 30 * 60
    assert now["service"]["count"] == 2
    assert now["service"]["median_seconds"] == 8 * 60
    doctors = {row["label"]: row for row in now["doctors"]}
    assert doctors["doctor 1"]["waiting"]["median_seconds"] == 20 * 60  # not 5: undone
    assert doctors["doctor 1"]["service"]["median_seconds"] == 10 * 60  # from the start
    assert doctors["Dr Two"]["service"]["median_seconds"] == 6 * 60  # from the call
    assert doctors["Dr Two"]["doctor"] == second
    assert [row["line"] for row in now["lines"]] == ["A"]
    assert times["previous"]["from"] == "2026-03-03"
    assert times["previous"]["waiting"]["count"] == 0

    outcomes = await _stats(clinic, "outcomes", query)
    every = outcomes["current"]["all"]
    assert (every["visits"], every["done"], every["no_show"], every["cancelled"]) == (4, 2, 1, 1)
    assert every["no_show_share"] == 0.25 and every["cancel_share"] == 0.25
    two = {row["label"]: row for row in outcomes["current"]["doctors"]}["Dr Two"]
    assert (two["visits"], two["no_show"], two["no_show_share"]) == (2, 1, 0.5)
    assert outcomes["previous"]["all"]["open"] == 1

    mine = await _stats(clinic, "outcomes", f"{query}&doctor={second}&line=A")
    assert mine["current"]["all"]["visits"] == 2 and mine["doctor"] == second

    arrivals = await _stats(clinic, "arrivals", query)
    assert arrivals["current"]["total"] == 4
    assert arrivals["current"]["heat_map"][2][8] == 4  # Wednesday, 08:00-09:00
    assert arrivals["previous"]["heat_map"][1][8] == 1


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("from=2026-03-05&to=2026-03-04", "stats_range_invalid"),
        ("from=yesterday", "stats_range_invalid"),
        ("line=ZZ", "stats_line_unknown"),
        ("doctor=nobody", "stats_doctor_unknown"),
    ],
)
async def test_bad_queries_are_refused_with_a_code(clinic: Clinic, query: str, code: str) -> None:
    for name in ("arrivals", "times", "outcomes"):
        resp = await clinic.client.get(
            f"/api/stats/{name}/?{query}", headers=clinic.headers(Role.ADMIN)
        )
        assert resp.status == 400
        assert (await resp.json())["code"] == code


async def test_only_admins_see_statistics(clinic: Clinic) -> None:
    resp = await clinic.client.get("/api/stats/times/", headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 403


def test_weighted_percentile_is_the_plain_one_on_the_same_data() -> None:
    rng = random.Random(18)
    for size in (1, 2, 3, 10, 101, 500):
        values = sorted(float(rng.randrange(0, 40)) for _ in range(size))  # many repeats
        pairs = sorted(Counter(values).items())
        for q in (0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0):
            assert insight.weighted_percentile(pairs, q) == insight.percentile(values, q)
    assert insight.weighted_percentile([], 0.5) is None
    assert insight.weighted_percentile([(5.0, 0), (7.0, 2)], 0.5) == 7.0  # empty buckets


def _plain(values: list[float], q: float) -> float:
    exact = insight.percentile(sorted(values), q)
    assert exact is not None
    return exact


def test_times_from_10_second_buckets_are_at_most_10_s_below_the_exact_ones() -> None:
    rng = random.Random(18)
    seconds = [rng.lognormvariate(7, 0.7) for _ in range(999)]  # median 18 min
    tens = [10.0 * round(value / 10) for value in seconds]  # some right on a bin's edge
    for durations in (seconds, tens):
        result = insight.distribution(durations)
        for field, q in (("median_seconds", 0.5), ("p90_seconds", 0.9)):
            below = _plain(durations, q) - result[field]
            assert -0.5 <= below < 10.5  # and rounded to whole seconds
            if durations is tens:  # whole multiples of 10 s come out exact
                assert result[field] == round(_plain(durations, q))
        # The bins count the durations themselves: every edge is a whole bucket.
        edges = [minutes * 60 for minutes in insight.BIN_EDGES_MINUTES] + [math.inf]
        assert [b["count"] for b in result["bins"]] == [
            sum(1 for value in durations if low <= value < high)
            for low, high in itertools.pairwise(edges)
        ]


def test_schema_15_fills_each_visits_times_from_the_moves_already_made(tmp_path: Path) -> None:
    """A box upgraded with a history: the times the statistics read are worked out from the
    moves that stand (the undone call and the undo left out)."""
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for version, sql in schema.available()[:14]:
        conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {version}; COMMIT;")
    conn.execute("INSERT INTO patients (id, fname, created_at) VALUES (1, 'Ann', '2026-11-02')")
    conn.execute(
        "INSERT INTO queue_entries (id, patient_id, status, check_in_time, queue_time)"
        " VALUES (1, 1, 'done', '2026-11-02T09:00:00.000Z', '2026-11-02T09:00:00.000Z')"
    )
    moves = [  # (id, minute, action, to_status, undone_by)
        (1, 10, "call", "called", 2),
        (2, 11, "undo", "waiting", None),
        (3, 20, "call", "called", None),
        (4, 22, "recall", "called", None),
        (5, 25, "start", "in_service", None),
        (6, 40, "done", "done", None),
    ]
    for move_id, minute, action, to_status, undone_by in moves:
        conn.execute(
            "INSERT INTO visit_transitions (id, entry_id, at, action, from_status, to_status,"
            " from_line, to_line, previous, undone_by) VALUES (?, 1, ?, ?, 'waiting', ?, 1, 1,"
            " '{}', ?)",
            (move_id, f"2026-11-02T09:{minute:02d}:00.000Z", action, to_status, undone_by),
        )
    schema.migrate(conn)
    assert conn.execute(
        "SELECT first_called_at, service_from, done_at FROM queue_entries"
    ).fetchone() == (
        "2026-11-02T09:20:00.000Z",
        "2026-11-02T09:25:00.000Z",
        "2026-11-02T09:40:00.000Z",
    )
    conn.close()
