"""One JSON error shape for every route: {"error": …} or, for auth, {"detail": …}."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from checkin_appliance import __version__, domain
from checkin_appliance.store import StoreUnavailable
from checkin_appliance.store.database import StoreDamaged

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DOMAIN_STATUS: dict[type[domain.DomainError], int] = {
    domain.InvalidInput: 400,
    domain.NotAllowed: 403,
    domain.NotFound: 404,
    domain.Conflict: 409,
    domain.TooLarge: 413,
    domain.Unavailable: 503,
}

DAMAGED = (
    "The database is damaged; the box is in maintenance mode. "
    "Restore a backup (see the README) or contact support."
)
# What every JSON answer is written with (built once; json.dumps builds one per call).
encode_json = json.JSONEncoder(ensure_ascii=False).encode
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_HTTP_MESSAGES = {
    400: "Bad request.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "Request body is too large.",
    415: "Unsupported media type.",
}


class ApiError(Exception):
    """An HTTP answer decided by the web layer (auth, malformed bodies)."""

    def __init__(
        self,
        status: int,
        *,
        error: str | None = None,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error or detail)
        self.status = status
        self.body = {"detail": detail} if detail is not None else {"error": error}
        self.headers = headers or {}


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=encode_json(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body, error.status, error.headers)


def error_middleware(is_damaged: Callable[[], bool] = lambda: False) -> Middleware:
    """Every failure as a JSON answer; and on a damaged database, every state change
    answers 503 before its body is read (one middleware: each one more is a coroutine
    frame per request, and per open live feed for as long as it stays open).

    Reads go on where the file still allows; the store raises StoreDamaged where it does not.
    """

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if is_damaged() and (request.method not in _SAFE_METHODS or request.path == "/healthz"):
                return _damaged_response(request)
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except domain.DomainError as exc:
            status = _DOMAIN_STATUS.get(type(exc), 400)
            return json_response({"error": exc.message}, status)
        except StoreDamaged:
            return _damaged_response(request)
        except StoreUnavailable:
            log.exception("database unavailable")
            return json_response({"error": "The database is unavailable; try again shortly."}, 503)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = _HTTP_MESSAGES.get(exc.status, exc.reason + ".")
            return json_response({"error": message}, exc.status, _passthrough_headers(exc))
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            return json_response({"error": "Internal server error."}, 500)

    return errors


def _passthrough_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}


def _damaged_response(request: web.Request) -> web.Response:
    if request.path == "/healthz":
        body = {"status": "error", "db": "damaged", "version": __version__, "error": DAMAGED}
        return json_response(body, 503)
    return json_response({"error": DAMAGED}, 503)
