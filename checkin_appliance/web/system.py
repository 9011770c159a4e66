"""GET /api/system/: the box's health for /admin's System section (system.py decides)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from aiohttp import web

from checkin_appliance import __version__, system
from checkin_appliance.domain import Role, format_time, parse_time
from checkin_appliance.lines import zone
from checkin_appliance.web.auth import require
from checkin_appliance.web.errors import json_response
from checkin_appliance.web.keys import CONFIG, RECEPTION, STORE, SYSTEM

routes = web.RouteTableDef()


@routes.get("/api/system/")
async def system_status(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    config, box = request.app[CONFIG], request.app[SYSTEM]
    now = parse_time(request.app[STORE].now())
    time_zone = request.app[RECEPTION].settings.time_zone
    disk = box.disk()
    backup = system.last_backup(config.data_dir)
    check = await box.database_check()
    database_ok = check.ok and not request.app[STORE].damaged
    cert = await asyncio.to_thread(system.certificate, config)
    warnings = await box.warnings(disk, backup, database_ok, cert, now)
    return json_response(
        {
            "version": __version__,
            "uptime_seconds": round(box.uptime_seconds()),
            "clock": {
                "now": format_time(now),
                "time_zone": time_zone,
                "local": now.astimezone(zone(time_zone)).isoformat(timespec="seconds"),
            },
            "disk": asdict(disk),
            "database": {
                **system.database_bytes(config.db_path),
                "ok": database_ok,
                "problem": check.problem,
                "checked_at": check.checked_at,
                "check_seconds": round(check.seconds, 3),
            },
            "certificate": cert,
            "last_backup": None if backup is None else asdict(backup),
            "warnings": warnings,
        }
    )
