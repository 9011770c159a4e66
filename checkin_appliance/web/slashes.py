"""A missing trailing slash on an API path redirects to the slashed one, as the original's did.

aiohttp's normalize_path_middleware answers every method with one redirect class; a POST
that follows a 301 becomes a GET in every client and loses its body, so GET and HEAD get
the 301 the original sent and every other method a 308, which keeps method and body.
Only /api/… and /ws/queue: the pages (/kiosk, /login) have no slashed form.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from checkin_appliance.web.errors import Handler

_PREFIXES = ("/api/",)
_EXACT = frozenset({"/ws/queue"})


async def _known(request: web.Request, path: str) -> bool:
    """Whether `path` is a route of ours, for any method (a 405 there is still a route)."""
    # with_path encodes the decoded path again, so a "%" or "?" in it stays part of the path.
    match = await request.app.router.resolve(request.clone(rel_url=request.rel_url.with_path(path)))
    return not isinstance(match.http_exception, web.HTTPNotFound)


def add_slash_middleware() -> Middleware:
    @web.middleware
    async def add_slash(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if (
            not path.endswith("/")
            and (path.startswith(_PREFIXES) or path in _EXACT)
            and not await _known(request, path)
            and await _known(request, path + "/")
        ):
            # Relative, with the query string kept, as the original's.
            location = request.rel_url.raw_path + "/"
            if request.rel_url.raw_query_string:
                location += "?" + request.rel_url.raw_query_string
            if request.method in ("GET", "HEAD"):
                return web.Response(status=301, headers={"Location": location})
            return web.Response(status=308, headers={"Location": location})
        return await handler(request)

    return add_slash
