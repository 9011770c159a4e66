"""CORS for the operator's allow-list of origins (`cors_origins`), on the API and the feed.

A browser app served from another origin (say the front desk's own intranet page) may call
the API with a bearer header. Never with our cookie: no response says
`Access-Control-Allow-Credentials`, so a browser neither sends the cookie cross-origin nor
lets the page read the answer, and the cookie's own rule (same origin only, 403
cross_origin) is untouched. With an empty list nothing here is installed: no CORS at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from checkin_appliance.web.keys import CONFIG

PATH_PREFIXES = ("/api/", "/ws/queue/")
# Every spelling of the bearer header the API reads, the JSON body's type and the kiosk's
# retry key; safelisted headers (Accept, …) need no mention.
ALLOW_HEADERS = (
    "Authorization, Roni-Authorization, RoniAuthorization, Content-Type, Idempotency-Key"
)
EXPOSE_HEADERS = "Retry-After, Idempotent-Replayed"
# Ten minutes: a browser asks again soon after the operator changes the list (Chromium
# would keep an answer for at most two hours whatever we say).
MAX_AGE = "600"


def setup(app: web.Application, origins: Iterable[str]) -> None:
    """Answers preflights from `origins` and marks responses to them; nothing if empty.

    The preflight middleware goes innermost, after the Host check and maintenance mode, so a
    rebound name still gets 421 whatever its Origin says."""
    allowed = frozenset(origins)
    if not allowed:
        return
    app.middlewares.append(_preflight(allowed))
    app.on_response_prepare.append(_response_headers(allowed))


def from_listed_origin(request: web.Request) -> bool:
    """Whether the request says it comes from one of the operator's `cors_origins`."""
    return request.headers.get("Origin") in request.app[CONFIG].cors_origins


def _applies(request: web.Request) -> bool:
    return request.path.startswith(PATH_PREFIXES)


def _preflight(allowed: frozenset[str]) -> Middleware:
    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.method == "OPTIONS"
            and request.headers.get("Origin") in allowed
            and "Access-Control-Request-Method" in request.headers
            and _applies(request)
        ):
            refused = request.match_info.http_exception
            # No route takes OPTIONS, so a path that exists answers 405 with its methods;
            # an unknown path keeps its 404 (a browser then fails the preflight, rightly).
            if isinstance(refused, web.HTTPMethodNotAllowed):
                methods = ", ".join(sorted(refused.allowed_methods))
                return web.Response(
                    status=204,
                    headers={
                        "Access-Control-Allow-Methods": methods,
                        "Access-Control-Allow-Headers": ALLOW_HEADERS,
                        "Access-Control-Max-Age": MAX_AGE,
                    },
                )
        return await handler(request)

    return preflight


def _response_headers(
    allowed: frozenset[str],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def mark(request: web.Request, response: web.StreamResponse) -> None:
        if not _applies(request):
            return
        # The answer depends on Origin whoever asks: a cache must not hand one origin's
        # answer to another.
        response.headers["Vary"] = _with_origin(response.headers.get("Vary"))
        origin = request.headers.get("Origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            if request.method != "OPTIONS":
                response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS

    return mark


def _with_origin(vary: str | None) -> str:
    if not vary:
        return "Origin"
    if "origin" in (part.strip().lower() for part in vary.split(",")):
        return vary
    return f"{vary}, Origin"
