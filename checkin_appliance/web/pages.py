"""The pages: sign-in, first-run setup, and one page per role, signed in by cookie."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from yarl import URL

from checkin_appliance import __version__, errors
from checkin_appliance.domain import (
    InvalidInput,
    NotAllowed,
    NotAuthenticated,
    Role,
    TooManyAttempts,
    parse_time,
)
from checkin_appliance.lines import zone
from checkin_appliance.web.api import local_ca
from checkin_appliance.web.auth import (
    SESSION_COOKIE,
    Caller,
    client_address,
    require_same_origin,
    same_origin,
    set_session_cookie,
)
from checkin_appliance.web.i18n import for_page, language_or_default, translator
from checkin_appliance.web.keys import ACCESS, CONFIG, RECEPTION, RENEWED_COOKIE, STORE

routes = web.RouteTableDef()

HOME = {Role.FORM: "/kiosk", Role.QUEUE: "/display", Role.DOCTOR: "/doctor", Role.ADMIN: "/admin"}
SETUP_TEXTS = ("tls.",)  # the setup page's "trust this box" section
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def static_dir() -> Path:
    """Static files as a real folder (a plain checkout, an install or the frozen binary)."""
    return Path(str(resources.files("checkin_appliance.web") / "static"))


def setup_templates(app: web.Application, static_prefix: str = "/static/") -> None:
    """Templates, and the static files their pages load (under `static_prefix`: the plain-
    HTTP port serves the status page's under /v/assets/, beside its redirects)."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("checkin_appliance.web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_static(static_prefix, static_dir(), name="static", append_version=True)

    def static_url(path: str) -> str:
        return str(app.router["static"].url_for(filename=path))

    env.globals["static"] = static_url
    env.globals["version"] = __version__


def render(
    request: web.Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    caller: Caller | None = None,
    script_data: dict[str, Any] | None = None,
    message_parts: tuple[str, ...] = (),
    lang: str | None = None,
    with_settings: bool = True,
) -> web.Response:
    """A page in the clinic's language, with the data its script needs as inert JSON (the
    settings too, except on a patient's own page: `with_settings` False)."""
    settings = request.app[RECEPTION].settings
    language = language_or_default(lang or settings.language)
    data = {
        "lang": language,
        "messages": for_page(*message_parts),
        **({"settings": settings.public()} if with_settings else {}),
        **(script_data or {}),
    }
    full = {
        "t": translator(language),
        "lang": language,
        "clinic_name": settings.clinic_name,
        "caller": caller,
        "page_data": data,  # rendered with |tojson: inert JSON the script reads
        "trust": trust_section(request),
        **(context or {}),
    }
    response = aiohttp_jinja2.render_template(template, request, full, status=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["Permissions-Policy"] = "camera=(self), microphone=(), geolocation=()"
    return response


def trust_section(request: web.Request) -> dict[str, str] | None:
    """What the "trust this box" section shows, while the box serves with its own local CA."""
    config = request.app[CONFIG]
    ca = local_ca(config)
    if ca is None:
        return None
    # The address a device types before it trusts us: plain HTTP when a redirect port serves it.
    host = request.url.host or config.host
    if config.redirect_port is not None:
        scheme, port = "http", config.redirect_port
    else:
        scheme, port = request.scheme, request.url.port or config.port
    try:
        url = str(URL.build(scheme=scheme, host=host, port=port, path="/ca.crt"))
    except ValueError:  # a Host header yarl will not build on
        url = "/ca.crt"
    return {"fingerprint": ca.fingerprint, "url": url}


async def page_caller(request: web.Request) -> Caller | None:
    """The signed-in browser (cookie only), its session slid forward while in use."""
    access = request.app[ACCESS]
    token = request.cookies.get(SESSION_COOKIE)
    session = await access.session_for(token) if token else None
    if session is None:
        return None
    caller = Caller(session, True, client_address(request))
    renewed = await access.renew_page_session(session)
    if renewed is not None:
        request[RENEWED_COOKIE] = (token, renewed)
    return caller


def _renewed(request: web.Request, response: web.HTTPException | web.Response) -> Any:
    """Whatever the page answers (a page, a redirect), a slid session's cookie goes along."""
    renewal = request.get(RENEWED_COOKIE)
    if renewal:
        set_session_cookie(response, request, renewal[0], renewal[1])
    return response


# Pages that stand in front of patients: they never show the staff sign-in form on their own.
DEVICE_ROLES = (Role.FORM, Role.QUEUE)


async def _signed_out_by_admin(request: web.Request) -> bool:
    """Whether this browser's (dead) session was ended by an administrator: its credential
    deactivated or its password set anew. The page then says so (its script reloads it when
    the live feed closes with 4403 or a request answers 401)."""
    token = request.cookies.get(SESSION_COOKIE)
    return bool(token) and await request.app[ACCESS].ended_by_admin(token)


def _to_login(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/login?next={request.path}")


async def role_page(
    request: web.Request,
    role: Role,
    template: str,
    message_parts: tuple[str, ...],
    extra: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> web.StreamResponse:
    caller = await page_caller(request)
    if caller is None:
        if role in DEVICE_ROLES and await _signed_out_by_admin(request):
            return render(request, "signed_out.html", {"next": request.path})
        raise _to_login(request)
    own = caller.credential.role
    if own is not role and own is not Role.ADMIN:
        page = render(request, "forbidden.html", {"home": HOME[own]}, status=403, caller=caller)
        return _renewed(request, page)
    credential = caller.credential
    served: tuple[str, ...] = ()
    if own is Role.DOCTOR:
        served = await request.app[ACCESS].served_lines(credential)
    data = {
        "credential": {
            "token": credential.token,  # public identifier; the admin page marks "you" by it
            "label": credential.label,
            "role": own.value,
            "room": credential.room,
            "lines": list(served),  # the lines a doctor serves; none: every line
        },
        **(await extra() if extra else {}),  # read once the caller may see the page
    }
    page = render(request, template, caller=caller, script_data=data, message_parts=message_parts)
    return _renewed(request, page)


# --- sign-in, sign-out, first run ---------------------------------------------------------


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    caller = await page_caller(request)
    if caller is None:
        if await request.app[ACCESS].setup_open():
            raise web.HTTPSeeOther("/setup")
        raise web.HTTPSeeOther("/login")
    raise _renewed(request, web.HTTPSeeOther(HOME[caller.credential.role]))


def _safe_next(value: str | None) -> str | None:
    """Only our own page paths: never another site, never a protocol-relative URL."""
    if value and value in HOME.values():
        return value
    return None


@routes.get("/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    caller = await page_caller(request)
    if caller is not None:
        raise _renewed(request, web.HTTPSeeOther(HOME[caller.credential.role]))
    context = {"next": _safe_next(request.query.get("next")) or "", "error": None, "token": ""}
    return render(request, "login.html", context)


@routes.post("/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    t = translator(request.app[RECEPTION].settings.language)
    if not same_origin(request):  # the sign-in page again, saying why: never raw JSON
        refused = {"next": "", "token": "", "error": t("signin.cross_origin")}
        return render(request, "login.html", refused, status=errors.CROSS_ORIGIN.status)
    form = await request.post()
    token = str(form.get("token", "")).strip()
    password = str(form.get("password", ""))
    next_page = _safe_next(str(form.get("next", "")))
    context: dict[str, Any] = {"next": next_page or "", "token": token}
    try:
        tokens = await request.app[ACCESS].login(
            token, password, client_address(request), page=True
        )
    except (InvalidInput, NotAuthenticated, TooManyAttempts) as exc:
        if isinstance(exc, TooManyAttempts):
            message = t("login.throttled", seconds=exc.retry_after)
        elif exc.code is errors.LOGIN_FIELDS_REQUIRED:
            message = t("login.missing")
        else:  # a wrong password, or a token that cannot be one (not 8 digits)
            message = t("login.failed")
        context["error"] = message
        return render(request, "login.html", context, status=exc.code.status)
    role = tokens.credential.role
    target = next_page if next_page and (role is Role.ADMIN or HOME[role] == next_page) else None
    response = web.HTTPSeeOther(target or HOME[role])
    set_session_cookie(response, request, tokens.access, tokens.lifetime)
    raise response


@routes.post("/logout")
async def logout_submit(request: web.Request) -> web.StreamResponse:
    require_same_origin(request)
    caller = await page_caller(request)
    if caller is not None:
        await request.app[ACCESS].logout(caller.session, caller.actor, "signed out")
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@routes.get("/setup")
async def setup_page(request: web.Request) -> web.StreamResponse:
    if not await request.app[ACCESS].setup_open():
        raise web.HTTPSeeOther("/login")
    return render(request, "setup.html", {"error": None}, message_parts=SETUP_TEXTS)


@routes.post("/setup")
async def setup_submit(request: web.Request) -> web.StreamResponse:
    t = translator(request.app[RECEPTION].settings.language)
    if not same_origin(request):
        return _setup_refused(request, t("signin.cross_origin"), errors.CROSS_ORIGIN.status)
    access = request.app[ACCESS]
    if not await access.setup_open():
        raise web.HTTPSeeOther("/login")
    form = await request.post()
    code, password = str(form.get("code", "")), str(form.get("password", ""))
    if password != str(form.get("confirm", "")):
        return _setup_refused(request, t("setup.mismatch"), 400)
    try:
        credential = await access.complete_setup(code, password, client_address(request))
    except InvalidInput as exc:
        if exc.code is errors.SETUP_FIELDS_REQUIRED:  # no code typed: as a wrong one
            return _setup_refused(request, t("setup.bad_code"), 403)
        return _setup_refused(request, t(f"setup.{exc.code.code}"), 400)  # a password rule
    except NotAllowed as exc:
        if exc.code is errors.SETUP_COMPLETE:
            raise web.HTTPSeeOther("/login") from exc
        return _setup_refused(request, t("setup.bad_code"), 403)
    tokens = await access.login(credential.token, password, client_address(request), page=True)
    response = render(request, "setup_done.html", {"token": credential.token})
    set_session_cookie(response, request, tokens.access, tokens.lifetime)
    return response


def _setup_refused(request: web.Request, message: str, status: int) -> web.Response:
    return render(
        request, "setup.html", {"error": message}, status=status, message_parts=SETUP_TEXTS
    )


# --- one page per role (admin may open them all) ------------------------------------------


@routes.get("/kiosk")
async def kiosk_page(request: web.Request) -> web.StreamResponse:
    # The lines in the page: a kiosk with several shows their choice at once.
    async def lines() -> dict[str, Any]:
        return {"lines": await request.app[RECEPTION].lines()}

    return await role_page(request, Role.FORM, "kiosk.html", ("kiosk.", "intake."), lines)


@routes.get("/display")
async def display_page(request: web.Request) -> web.StreamResponse:
    return await role_page(request, Role.QUEUE, "display.html", ("display.",))


@routes.get("/doctor")
async def doctor_page(request: web.Request) -> web.StreamResponse:
    return await role_page(request, Role.DOCTOR, "doctor.html", ("doctor.", "intake."))


@routes.get("/admin")
async def admin_page(request: web.Request) -> web.StreamResponse:
    texts = ("admin.", "role.", "tls.", "intake.", "backups.")
    return await role_page(request, Role.ADMIN, "admin.html", texts)


@routes.get("/admin/records")
async def records_page(request: web.Request) -> web.StreamResponse:
    """The day's history, its exports and a printable report (web/records.py's API)."""

    async def today() -> dict[str, Any]:
        from checkin_appliance.records import Records  # on first use (web/records.py)

        return {"today": Records(request.app[STORE], lambda: settings).today().isoformat()}

    settings = request.app[RECEPTION].settings
    return await role_page(request, Role.ADMIN, "records.html", ("records.",), today)


@routes.get("/admin/stats")
async def stats_page(request: web.Request) -> web.StreamResponse:
    """Statistics with charts over a range of days, the period before beside them (the
    figures come from web/insight.py's API; the page only draws them)."""

    async def today() -> dict[str, Any]:
        local = zone(request.app[RECEPTION].settings.time_zone)
        return {"today": parse_time(request.app[STORE].now()).astimezone(local).date().isoformat()}

    return await role_page(request, Role.ADMIN, "stats_page.html", ("stats.",), today)


@routes.get("/admin/audit")
async def audit_page(request: web.Request) -> web.StreamResponse:
    """The audit viewer: filters, the rows, the chain's verdict, the export (web/audit_log.py)."""
    return await role_page(request, Role.ADMIN, "audit.html", ("audit.", "role."))
