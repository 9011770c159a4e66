"""/api/records/…: a day's history and the CSV exports (admin). Their page, /admin/records, is
served with the other pages (pages.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from checkin_appliance.domain import Role
from checkin_appliance.web.auth import require
from checkin_appliance.web.errors import csv_response, json_response
from checkin_appliance.web.keys import RECEPTION, STORE

if TYPE_CHECKING:
    from checkin_appliance.records import Records

routes = web.RouteTableDef()


def _records(request: web.Request) -> Records:
    # Loaded on the first records request (with the csv module): a box whose admin never
    # opens them does not carry the code in memory (make bench's 60 MiB goal).
    from checkin_appliance.records import Records

    reception = request.app[RECEPTION]
    return Records(request.app[STORE], lambda: reception.settings)


@routes.get("/api/records/day/")
async def records_day(request: web.Request) -> web.Response:
    """A day's visits with each transition, and the day's figures; ?ticket= searches."""
    caller = await require(request, Role.ADMIN)
    from checkin_appliance import records  # loaded with _records, on first use

    service = _records(request)
    query = request.query
    day = records.parse_day(query.get("date"), service.today())
    ticket = records.parse_ticket(query.get("ticket"))
    sensitive = records.parse_sensitive(query.get("sensitive"))
    body = await service.day(day, ticket=ticket, sensitive=sensitive, actor=caller.actor)
    return json_response(body, headers={"Cache-Control": "no-store"})


@routes.get("/api/records/visits.csv")
async def records_visits_csv(request: web.Request) -> web.Response:
    """One row per visit from `from` to `to`; the sensitive answers only with sensitive=1."""
    caller = await require(request, Role.ADMIN)
    from checkin_appliance import records  # loaded with _records, on first use

    service = _records(request)
    first, last = records.parse_range(
        request.query.get("from"), request.query.get("to"), service.today()
    )
    sensitive = records.parse_sensitive(request.query.get("sensitive"))
    export = await service.visits_csv(first, last, sensitive=sensitive, actor=caller.actor)
    return csv_response(export.body, export.filename)


@routes.get("/api/records/days.csv")
async def records_days_csv(request: web.Request) -> web.Response:
    """Each day's figures per line from `from` to `to`."""
    caller = await require(request, Role.ADMIN)
    from checkin_appliance import records  # loaded with _records, on first use

    service = _records(request)
    first, last = records.parse_range(
        request.query.get("from"), request.query.get("to"), service.today()
    )
    export = await service.days_csv(first, last, actor=caller.actor)
    return csv_response(export.body, export.filename)
