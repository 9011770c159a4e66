"""/api/stats/arrivals|times|outcomes/: the statistics pages' figures (admin), as JSON made for
charts. Query: `from`, `to` (local dates, YYYY-MM-DD), optional `line` (prefix) and `doctor`
(credential token); each answer carries the period before beside the one asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from checkin_appliance.domain import Role
from checkin_appliance.web.auth import require
from checkin_appliance.web.errors import json_response
from checkin_appliance.web.keys import RECEPTION, STORE

if TYPE_CHECKING:
    from checkin_appliance.clinic_stats import ClinicStats

routes = web.RouteTableDef()
QUERY_KEYS = ("from", "to", "line", "doctor")


def _stats(request: web.Request) -> ClinicStats:
    # Loaded on the first statistics request: a box whose admin never opens them does not
    # carry the code in memory (make bench's 60 MiB goal has no room to spare).
    from checkin_appliance.clinic_stats import ClinicStats

    return ClinicStats(request.app[STORE], request.app[RECEPTION].settings.time_zone)


def _query(request: web.Request) -> dict[str, str]:
    # The last value of a repeated key, as aiohttp's .get gives the first: take the first too.
    return {key: request.query[key] for key in QUERY_KEYS if key in request.query}


@routes.get("/api/stats/arrivals/")
async def stats_arrivals(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    return json_response(await _stats(request).arrivals(_query(request)))


@routes.get("/api/stats/times/")
async def stats_times(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    return json_response(await _stats(request).times(_query(request)))


@routes.get("/api/stats/outcomes/")
async def stats_outcomes(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    return json_response(await _stats(request).outcomes(_query(request)))
