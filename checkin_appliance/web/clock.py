"""/api/system/clock/: the box's clock as it sees it, and an admin setting it (audited)."""

from __future__ import annotations

from aiohttp import web

from checkin_appliance import audit, clock_setting, errors
from checkin_appliance.clock_setting import ClockRequest
from checkin_appliance.domain import Role, format_time
from checkin_appliance.web.api import read_body
from checkin_appliance.web.auth import require
from checkin_appliance.web.errors import ApiError, json_response
from checkin_appliance.web.keys import CLOCK, CLOCK_HELPER, CONFIG, STORE

routes = web.RouteTableDef()


def _state(request: web.Request) -> dict[str, object]:
    return {
        **request.app[CLOCK].state().as_json(),
        "settable": request.app[CLOCK_HELPER].installed(),
    }


@routes.get("/api/system/clock/")
async def clock_state(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    return json_response(_state(request))


@routes.post("/api/system/clock/")
async def set_clock(request: web.Request) -> web.Response:
    """Asks the clock helper to set the box's clock to the admin's browser's time; 202: the
    helper acts within seconds, and the clock service then sees the jump."""
    caller = await require(request, Role.ADMIN)
    body = await read_body(request)
    to = clock_setting.parse_requested(body.get("time"))
    if not request.app[CLOCK_HELPER].installed():
        raise ApiError(
            errors.CLOCK_HELPER_MISSING,
            "No clock helper is installed: set the clock on the box (timedatectl) or install "
            "the package.",
        )
    was = request.app[STORE].now()
    clock_setting.write_request(
        request.app[CONFIG].data_dir,
        ClockRequest(to, clock_setting.boottime(), caller.actor.credential_id),
    )
    await request.app[STORE].record_audit(
        audit.CLOCK_SET, caller.actor, {"to": format_time(to), "from": was}
    )
    return json_response(_state(request), status=202)
