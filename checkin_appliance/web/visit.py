"""/v/…: the patient's status page, its JSON, its live stream (Server-Sent Events) and the QR
code that carries its link. No credential anywhere: the link is the only key, and it opens
this one visit's ticket, line, place and room, never a name or a photo.

Served by the main app and, with HTTPS on, by the plain-HTTP port too (patients' phones do
not trust the box's own CA): create_redirect_app mounts the same routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging

from aiohttp import web

from checkin_appliance import errors, visits
from checkin_appliance.domain import NotFound
from checkin_appliance.web.errors import ApiError, json_response
from checkin_appliance.web.keys import CONFIG, RECEPTION, STATUS_FEED, STORE

log = logging.getLogger(__name__)

ASSETS = "/v/assets/"  # the page's script and styles where /static/ is not served (plain HTTP)
RETRY_MS = 3000  # EventSource waits this long before it reconnects by itself
WRITE_TIMEOUT = 30.0  # a phone that takes longer to accept a message is let go
TEXTS = ("visit.",)  # its own texts, in both languages (the page follows the phone's)
NO_STORE = {"Cache-Control": "no-store"}


def status_base(request: web.Request) -> str:
    """The origin a visit's status link is given with (the QR's target).

    The status_link_base setting when set (guest Wi-Fi reaching the box at another address);
    else the kiosk's own origin with TLS off; with TLS on, the plain-HTTP port when there is
    one (phones do not trust our CA), else the HTTPS origin (the phone will warn)."""
    chosen = request.app[RECEPTION].settings.status_link_base
    if chosen:
        return chosen
    config = request.app[CONFIG]
    url = request.url
    if request.secure and config.redirect_port is not None:
        url = url.with_scheme("http").with_port(
            None if config.redirect_port == 80 else config.redirect_port
        )
    try:
        return str(url.origin())
    except ValueError:  # a Host header yarl cannot build on: relative links still work
        return ""


def status_url(request: web.Request, token: str) -> str:
    return f"{status_base(request)}{visits.LINK_PREFIX}{token}"


def qr_svg(text: str) -> bytes:
    """A QR code as a scalable SVG: error correction M, the standard 4-module quiet zone,
    dark on white; made here, never by a remote service."""
    import segno  # on the first QR code: ~0.9 MiB a box that shows none never spends

    out = io.BytesIO()
    qr = segno.make(text, error="m", boost_error=False)
    qr.save(out, kind="svg", dark="#000", light="#fff", border=4, xmldecl=False, omitsize=True)
    return out.getvalue()


async def _visit(request: web.Request) -> visits.Visit:
    return await request.app[RECEPTION].visit_for_link(request.match_info["token"])


async def visit_page(request: web.Request) -> web.StreamResponse:
    lang = _phone_language(request)
    token = request.match_info["token"]
    try:
        await _visit(request)
    except NotFound:
        return _page(request, "visit_gone.html", {}, lang, status=404)
    return _page(request, "visit.html", {"status_path": f"{visits.LINK_PREFIX}{token}"}, lang)


def _page(
    request: web.Request, template: str, data: dict[str, str], lang: str | None, status: int = 200
) -> web.Response:
    from checkin_appliance.web.pages import render  # pages imports the API; not the reverse

    return render(
        request,
        template,
        status=status,
        script_data=data,
        message_parts=TEXTS,
        lang=lang,
        with_settings=False,
    )


async def reach_test_page(request: web.Request) -> web.StreamResponse:
    """/v/test: what the admin's test QR opens; shows that a phone reaches the box, no data."""
    return _page(request, "visit_test.html", {}, _phone_language(request))


def _phone_language(request: web.Request) -> str | None:
    """The phone's first language we have (en, es), else the clinic's."""
    for part in request.headers.get("Accept-Language", "").split(","):
        lang = part.split(";")[0].strip().lower()[:2]
        if lang in ("en", "es"):
            return lang
    return None


async def visit_status(request: web.Request) -> web.Response:
    visit = await _visit(request)
    return json_response(await request.app[RECEPTION].visit_status(visit), headers=NO_STORE)


async def visit_qr(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    await _visit(request)
    svg = await asyncio.to_thread(qr_svg, status_url(request, token))
    return web.Response(body=svg, content_type="image/svg+xml", headers=NO_STORE)


async def reach_test_qr(request: web.Request) -> web.Response:
    """The admin's "test the phone link" QR: <base>/v/test."""
    svg = await asyncio.to_thread(qr_svg, f"{status_base(request)}/v/test")
    return web.Response(body=svg, content_type="image/svg+xml", headers=NO_STORE)


async def visit_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: `retry:`, then the full status at once and on every change, a
    comment after each `heartbeat` (20 s) of silence; the stream ends when the link does.
    A phone that drops reconnects by itself and gets the full status again: no replay."""
    visit = await _visit(request)
    feed = request.app[STATUS_FEED]
    if feed.full():
        raise ApiError(
            errors.TOO_MANY_STATUS_PAGES,
            "Too many status pages are open; try again shortly.",
            headers={"Retry-After": "30"},
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    stream = feed.open(visit)  # before the first read: a change meanwhile is not lost
    try:
        first = await request.app[RECEPTION].visit_status(visit)
        await response.prepare(request)
        store = request.app[STORE]
        # A comment line after `heartbeat` seconds of silence keeps an idle phone's connection
        # open through Wi-Fi routers and shows a vanished one; the expiry is checked as often.
        keepalive = request.app[CONFIG].heartbeat
        message = visits.encoded(first)
        stream.sent = message
        await _write(response, b"retry: %d\n\ndata: %s\n\n" % (RETRY_MS, message))
        while not feed.closing and not stream.visit.expired(store.now()):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(keepalive):
                    await stream.wakeup.wait()
            data = stream.take()
            if feed.closing or stream.visit.expired(store.now()):
                break
            await _write(response, b"data: %s\n\n" % data if data is not None else b": -\n\n")
    except (ConnectionError, TimeoutError):
        pass  # the phone went away, or stopped reading for WRITE_TIMEOUT: let it go
    finally:
        feed.close(stream)
    return response


async def _write(response: web.StreamResponse, data: bytes) -> None:
    async with asyncio.timeout(WRITE_TIMEOUT):
        await response.write(data)


async def visit_link_gone(request: web.Request) -> web.Response:
    """Any other path under /v/: the same answer as an unknown link."""
    raise visits.link_not_found()


def add_routes(app: web.Application) -> None:
    """The /v/ routes, in the main app and on the plain-HTTP port."""
    router = app.router
    router.add_get("/v/test", reach_test_page)
    router.add_get("/v/test/qr.svg", reach_test_qr)
    router.add_get("/v/{token}", visit_page)
    router.add_get("/v/{token}/status", visit_status)
    router.add_get("/v/{token}/events", visit_events)
    router.add_get("/v/{token}/qr.svg", visit_qr)


def not_found_routes(app: web.Application) -> None:
    """Added last: the rest of /v/ answers as an unknown link does."""
    app.router.add_route("*", "/v/{tail:.*}", visit_link_gone)
