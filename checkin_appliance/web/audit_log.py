"""/api/audit/…: the audit viewer (admin): rows by who, what and when, the chain's verdict,
and the CSV export. Its page, /admin/audit, is served with the other pages (pages.py); the
work is in audit_view.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from checkin_appliance.domain import Role
from checkin_appliance.web.auth import require
from checkin_appliance.web.errors import csv_response, json_response
from checkin_appliance.web.keys import CONFIG, RECEPTION, STORE

if TYPE_CHECKING:
    from checkin_appliance.audit_view import AuditView

routes = web.RouteTableDef()
QUERY_KEYS = ("who", "action", "from", "to", "limit", "before")


def _view(request: web.Request) -> AuditView:
    # Loaded on the first audit request: a box whose admin never opens the viewer does not
    # carry the code in memory (make bench's 60 MiB goal).
    from checkin_appliance.audit_view import AuditView

    reception = request.app[RECEPTION]
    config = request.app[CONFIG]
    return AuditView(request.app[STORE], config.data_dir, lambda: reception.settings.time_zone)


def _words(request: web.Request) -> dict[str, str]:
    return {key: request.query[key] for key in QUERY_KEYS if key in request.query}


@routes.get("/api/audit/")
async def audit_rows(request: web.Request) -> web.Response:
    """A page of the trail, newest first; ?who=&action=&from=&to=&limit=&before=."""
    await require(request, Role.ADMIN)
    body = await _view(request).page(_words(request))
    return json_response(body, headers={"Cache-Control": "no-store"})


@routes.get("/api/audit/verify/")
async def audit_verify(request: web.Request) -> web.Response:
    """The hash chain's verdict, as `checkin-appliance audit verify` gives it."""
    await require(request, Role.ADMIN)
    body = await _view(request).verify()
    return json_response(body, headers={"Cache-Control": "no-store"})


@routes.get("/api/audit.csv")
async def audit_csv(request: web.Request) -> web.Response:
    """The rows the filters select, newest first, as CSV; the export is itself audited."""
    caller = await require(request, Role.ADMIN)
    export = await _view(request).export(_words(request), caller.actor)
    return csv_response(export.body, export.filename)
