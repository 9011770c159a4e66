"""GET /api/openapi.json: the REST API's hand-written OpenAPI document, served as packaged."""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

routes = web.RouteTableDef()

DOCUMENT = "openapi.json"


@functools.cache
def document() -> bytes:
    """The packaged document, read once (a package resource, so the frozen build has it too)."""
    return resources.files("checkin_appliance.web").joinpath(DOCUMENT).read_bytes()


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=document(), content_type="application/json", charset="utf-8")
