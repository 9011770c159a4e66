"""Security headers on every response, and an access log that never records secrets."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from checkin_appliance import errors
from checkin_appliance.own_names import HostAllowList
from checkin_appliance.web.errors import ApiError

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PHOTO_PREFIX = "/media/patient_images/"
VISIT_PREFIX = "/v/"  # a patient's status link: /v/<token>/…, the token its only key
VISIT_ASSETS = "/v/assets/"
# Malformed requests logged one line each up to this many per window; the rest are counted
# and the count is given with the next line logged.
MALFORMED_LINES_PER_WINDOW = 5
MALFORMED_WINDOW = 60.0  # seconds
# A year, as browsers' HSTS guidance asks, and without includeSubDomains: the box's name
# (say clinic.lan) may be the parent of other devices on the LAN (printers, a NAS) that have
# no HTTPS, and this header would lock browsers out of them. Sent only over HTTPS (RFC 6797:
# ignored over plain HTTP), so the plain port's /ca.crt stays reachable before trust.
HSTS = "max-age=31536000"


def host_check(allowed: HostAllowList) -> Middleware:
    """421 for a Host header that is not one of the box's names: a DNS-rebinding page (an
    attacker's name resolving to the box) must not read the anonymous feed or our answers.
    A request without Host (HTTP/1.0 tools) is served; browsers always send one."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if host is not None and not allowed.allows(host):
            raise ApiError(errors.HOST_NOT_ALLOWED, "This box does not answer to that name.")
        return await handler(request)

    return check


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # same-origin, not no-referrer: over plain HTTP browsers send no Sec-Fetch-Site, and
    # under no-referrer their posts from our own forms carry `Origin: null`, which is also
    # what a sandboxed attacker's page sends (auth.same_origin). Other sites still get no
    # Referer from us. A status link's page keeps no-referrer: its URL is its only key.
    headers.setdefault(
        "Referrer-Policy",
        "no-referrer" if request.path.startswith(VISIT_PREFIX) else "same-origin",
    )
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", API_CSP)
    if request.secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    if request.path.startswith(VISIT_ASSETS):
        headers.setdefault("Cache-Control", "no-cache")
    elif request.path.startswith(("/api/", "/healthz", "/media/", VISIT_PREFIX)):
        headers.setdefault("Cache-Control", "no-store")
    elif request.path.startswith("/static/"):
        if "v" in request.query:
            # URLs carry a content hash (?v=…): a new version is a new URL.
            headers.setdefault("Cache-Control", "public, max-age=31536000, immutable")
        else:
            # Modules imported by a page script (./feed.js) carry no hash: ask every time
            # (a 304 when unchanged), so after an upgrade no page mixes old and new modules.
            headers.setdefault("Cache-Control", "no-cache")


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path without the query (it may carry ?token=), status.

    A photo's name is its only protection when the link leaks, so it is never logged; nor is
    a status link's token (/v/<redacted>/events), which opens a patient's visit."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = request.path
        if path.startswith(PHOTO_PREFIX):
            path = PHOTO_PREFIX + "<redacted>"
        elif path.startswith(VISIT_PREFIX) and not path.startswith(VISIT_ASSETS):
            rest = path[len(VISIT_PREFIX) :].partition("/")
            if rest[0] != "test":
                path = f"{VISIT_PREFIX}<redacted>{rest[1]}{rest[2][:20]}"
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            path,
            response.status,
            time * 1000,
        )


class MalformedRequestLog(logging.Filter):
    """For aiohttp.server: a request aiohttp cannot parse is the client's fault, not ours.

    aiohttp logs each at ERROR with a traceback quoting the bytes sent (20 probes: 12.8 KB);
    this turns each into one WARNING line naming the address and the parser's reason, at
    most MALFORMED_LINES_PER_WINDOW a minute. Other records pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self._window_start = float("-inf")
        self._logged = 0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now - self._window_start >= MALFORMED_WINDOW:
            self._window_start, self._logged = now, 0
        if self._logged >= MALFORMED_LINES_PER_WINDOW:
            self._suppressed += 1
            return False
        self._logged += 1
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        # The parser's reason is the message's first line; the rest quotes the bytes.
        reason = (str(exc.message).splitlines() or ["?"])[0].strip().rstrip(":")[:100]
        more = f" ({self._suppressed} more not logged)" if self._suppressed else ""
        self._suppressed = 0
        record.msg, record.args = (
            "malformed request from %s: %s %s%s",
            (
                remote,
                exc.code,
                reason,
                more,
            ),
        )
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
