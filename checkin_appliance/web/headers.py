"""Security headers on every response, and an access log that never records secrets."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from checkin_appliance import errors
from checkin_appliance.own_names import HostAllowList
from checkin_appliance.web.errors import ApiError

API_CSP = "default-src 'none'; frame-ancestors 'none'"
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
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", API_CSP)
    if request.secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    if request.path.startswith(("/api/", "/healthz", "/media/")):
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
    """One line per request: method, path without the query (it may carry ?token=), status."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )
