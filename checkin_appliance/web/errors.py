"""One JSON error shape for every route: {"error": …, "code": …} or, for auth, {"detail": …}.

The body is always errors.error_body's; the codes and their statuses are in errors.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from checkin_appliance import __version__, domain, errors
from checkin_appliance.errors import ErrorCode, error_body
from checkin_appliance.store import DiskFull, StoreUnavailable
from checkin_appliance.store.database import StoreDamaged
from checkin_appliance.store.errors import is_disk_full

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DAMAGED = (
    "The database is damaged; the box is in maintenance mode. "
    "Restore a backup (see the README) or contact support."
)
UNAVAILABLE = "The database is unavailable; try again shortly."
DISK_FULL = "The box's disk is full; nothing was stored. Free space on the box, then try again."
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# aiohttp's own refusals (routing, body limits): our text and code for each.
_HTTP_ERRORS = {
    400: ("Bad request.", errors.BAD_REQUEST),
    404: ("Not found.", errors.NOT_FOUND),
    405: ("Method not allowed.", errors.METHOD_NOT_ALLOWED),
    413: ("Request body is too large.", errors.REQUEST_TOO_LARGE),
    415: ("Unsupported media type.", errors.UNSUPPORTED_MEDIA_TYPE),
}


class ApiError(Exception):
    """An HTTP answer decided by the web layer (auth, malformed bodies)."""

    def __init__(
        self, code: ErrorCode, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def csv_response(body: bytes, filename: str) -> web.Response:
    """A CSV export, saved by the browser under `filename`, never kept in a cache."""
    return web.Response(
        body=body,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def error_response(
    code: ErrorCode,
    message: str,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> web.Response:
    """Every error answer: error_body (after `extra`, e.g. /healthz's fields) at the code's
    status (`status` only for aiohttp's own refusals that share one code)."""
    body = {**(extra or {}), **error_body(code, message)}
    status = status or code.status
    if status == 401:  # RFC 9110: a 401 says how to authenticate (the original's realm)
        headers = {"WWW-Authenticate": 'Bearer realm="api"', **(headers or {})}
    return json_response(body, status, headers)


def error_middleware() -> Middleware:
    """Every failure as a JSON answer: ours by their code, aiohttp's by status, bugs as 500."""

    @web.middleware
    async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.code, exc.message, headers=exc.headers)
        except domain.TooManyAttempts as exc:
            return error_response(
                exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)}
            )
        except domain.DomainError as exc:
            return error_response(exc.code, exc.message, extra=exc.extra())
        except StoreDamaged:
            return damaged_response(request)
        except DiskFull as exc:
            return disk_full_response(request, exc)
        except StoreUnavailable:
            log.exception("database unavailable")
            return error_response(errors.DATABASE_UNAVAILABLE, UNAVAILABLE)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message, code = _HTTP_ERRORS.get(exc.status, (exc.reason + ".", errors.HTTP_ERROR))
            return error_response(
                code, message, status=exc.status, headers=_passthrough_headers(exc)
            )
        except Exception as exc:
            if is_disk_full(exc):  # a file write anywhere (a key, a temp file): the same answer
                return disk_full_response(request, exc)
            log.exception("unhandled error in %s %s", request.method, request.path)
            return error_response(errors.INTERNAL_ERROR, "Internal server error.")

    return json_errors


def maintenance_middleware(is_damaged: Callable[[], bool]) -> Middleware:
    """On a damaged database every state change (and /healthz) answers 503 before its body
    is read. Reads go on where the file still allows; the store raises StoreDamaged where
    it does not."""

    @web.middleware
    async def maintenance(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_damaged() and (request.method not in _SAFE_METHODS or request.path == "/healthz"):
            return damaged_response(request)
        return await handler(request)

    return maintenance


def disk_full_response(request: web.Request, exc: BaseException) -> web.Response:
    # One line, no traceback: the cause is the disk, not a bug; the path says which request.
    reason = getattr(exc, "strerror", None) or str(exc)  # never a file's (photo's) name
    log.error("disk full: %s %s refused (%s)", request.method, request.path, reason)
    return error_response(errors.DISK_FULL, DISK_FULL)


def _passthrough_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}


def health_error(
    db: str, code: ErrorCode, message: str, fields: dict[str, object] | None = None
) -> web.Response:
    """/healthz when the database cannot be used: its own fields, then the error body."""
    extra = {"status": "error", "db": db, "version": __version__, **(fields or {})}
    return error_response(code, message, extra=extra)


def damaged_response(request: web.Request) -> web.Response:
    if request.path == "/healthz":
        return health_error("damaged", errors.DATABASE_DAMAGED, DAMAGED)
    return error_response(errors.DATABASE_DAMAGED, DAMAGED)
