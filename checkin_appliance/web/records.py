"""/api/records/…: a day's history and the CSV exports (admin). Their page, /admin/records, is
served with the other pages (pages.py)."""

from __future__ import annotations

from aiohttp import web

from checkin_appliance.domain import Role
from checkin_appliance.records import (
    Export,
    Records,
    parse_day,
    parse_range,
    parse_sensitive,
    parse_ticket,
)
from checkin_appliance.web.auth import require
from checkin_appliance.web.errors import json_response
from checkin_appliance.web.keys import RECEPTION, STORE

routes = web.RouteTableDef()


def _records(request: web.Request) -> Records:
    reception = request.app[RECEPTION]
    return Records(request.app[STORE], lambda: reception.settings)


@routes.get("/api/records/day/")
async def records_day(request: web.Request) -> web.Response:
    """A day's visits with each transition, and the day's figures; ?ticket= searches."""
    caller = await require(request, Role.ADMIN)
    records = _records(request)
    query = request.query
    day = parse_day(query.get("date"), records.today())
    ticket = parse_ticket(query.get("ticket"))
    sensitive = parse_sensitive(query.get("sensitive"))
    body = await records.day(day, ticket=ticket, sensitive=sensitive, actor=caller.actor)
    return json_response(body, headers={"Cache-Control": "no-store"})


@routes.get("/api/records/visits.csv")
async def records_visits_csv(request: web.Request) -> web.Response:
    """One row per visit from `from` to `to`; the sensitive answers only with sensitive=1."""
    caller = await require(request, Role.ADMIN)
    records = _records(request)
    first, last = parse_range(request.query.get("from"), request.query.get("to"), records.today())
    sensitive = parse_sensitive(request.query.get("sensitive"))
    return _csv(await records.visits_csv(first, last, sensitive=sensitive, actor=caller.actor))


@routes.get("/api/records/days.csv")
async def records_days_csv(request: web.Request) -> web.Response:
    """Each day's figures per line from `from` to `to`."""
    caller = await require(request, Role.ADMIN)
    records = _records(request)
    first, last = parse_range(request.query.get("from"), request.query.get("to"), records.today())
    return _csv(await records.days_csv(first, last, actor=caller.actor))


def _csv(export: Export) -> web.Response:
    return web.Response(
        body=export.body,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Cache-Control": "no-store",
        },
    )
