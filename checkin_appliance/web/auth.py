"""Who is asking, over HTTP: bearer headers and the session cookie, same-origin checks,
roles. The operations themselves (login, sessions, credentials) are in access.py."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from checkin_appliance import errors
from checkin_appliance.domain import Actor, Credential, Role, Session
from checkin_appliance.web.errors import ApiError
from checkin_appliance.web.keys import ACCESS

SESSION_COOKIE = "checkin_session"
NOT_PROVIDED = "Authentication credentials were not provided."
INVALID_TOKEN = "Authentication credentials were invalid or expired."
CROSS_ORIGIN = "Cross-origin request refused."
TWO_VALUES = "Authorization header must contain two space-delimited values"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def access_denied(role: Role) -> ApiError:
    return ApiError(
        errors.PERMISSION_DENIED,
        f"Access Denied: You must have the '{role.value}' role to access this resource.",
    )


def not_authenticated() -> ApiError:
    return ApiError(errors.NOT_AUTHENTICATED, NOT_PROVIDED)


def token_not_valid() -> ApiError:
    return ApiError(errors.TOKEN_NOT_VALID, INVALID_TOKEN)


def bad_authorization_header() -> ApiError:
    return ApiError(errors.BAD_AUTHORIZATION_HEADER, TWO_VALUES)


@dataclass
class Caller:
    """An authenticated request: its session and how it proved it."""

    session: Session
    by_cookie: bool
    address: str

    @property
    def credential(self) -> Credential:
        return self.session.credential

    @property
    def actor(self) -> Actor:
        return Actor(self.credential.id, self.address)


# The original reads RoniAuthorization (every working client of it sends that); its docs say
# Roni-Authorization; careful REST clients send Authorization. aiohttp matches any case.
BEARER_HEADERS = ("Authorization", "Roni-Authorization", "RoniAuthorization")


async def identify(request: web.Request) -> Caller | None:
    """The caller by a bearer header (any of BEARER_HEADERS), else the cookie.

    A header always wins over the cookie, and a caller by header is never by_cookie, so the
    cookie's same-origin rule never applies to it. As in the original, a header of another
    scheme (`JWT …`, a bare token, a proxy's `Basic …`) counts as no credentials; `Bearer`
    without exactly one token is 401 `bad_authorization_header`, and a bearer token that is
    not valid 401 `token_not_valid`.
    """
    access = request.app[ACCESS]
    for header in BEARER_HEADERS:
        parts = request.headers.get(header, "").split()
        if not parts or parts[0].lower() != "bearer":
            continue
        if len(parts) != 2:
            raise bad_authorization_header()
        session = await access.session_for(parts[1])
        if session is None:
            raise token_not_valid()
        return Caller(session, False, client_address(request))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = await access.session_for(cookie)
        if session is not None:
            return Caller(session, True, client_address(request))
    return None


async def require(request: web.Request, *roles: Role) -> Caller:
    """The caller, who must hold one of `roles` (admin always may); else 401/403."""
    caller = await identify(request)
    if caller is None:
        raise not_authenticated()
    if caller.by_cookie and request.method not in SAFE_METHODS:
        require_same_origin(request)
    role = caller.credential.role
    if roles and role not in roles and role is not Role.ADMIN:
        raise access_denied(roles[0])
    return caller


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def same_origin(request: web.Request) -> bool:
    """Whether a browser sent this from one of our own pages (cookie requests only count then).

    Browsers say so in Sec-Fetch-Site, but only to trustworthy origins (HTTPS, localhost).
    Where it is missing (plain HTTP on the LAN, older browsers) Origin decides: with our
    `Referrer-Policy: same-origin` a browser sends our own origin on our pages' posts, and
    `null` or another site's origin from anywhere else (a sandboxed or opaque page, another
    site), both refused. WebSocket handshakes always carry a real Origin.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    return origin is not None and origin == f"{request.scheme}://{request.host}"


def require_same_origin(request: web.Request) -> None:
    if not same_origin(request):
        raise ApiError(errors.CROSS_ORIGIN, CROSS_ORIGIN)


def refuse_other_sites(request: web.Request) -> None:
    """403 for a request a browser says another site made; a script, which says nothing
    (no Sec-Fetch-Site, no Origin), passes.

    For /api/login/, which sets the page cookie: a form on any web page could otherwise sign
    the clinic's browser in as the attacker's credential (login CSRF). A form can send
    urlencoded, multipart or text/plain bodies (the last read as JSON) without a preflight,
    and every current browser marks such a cross-site post, so the mark decides; a JSON
    body from another site needs a preflight we never answer. Integrations keep posting
    any body they like.
    """
    if "Sec-Fetch-Site" in request.headers or "Origin" in request.headers:
        require_same_origin(request)


def set_session_cookie(
    response: web.StreamResponse, request: web.Request, access: str, max_age: int
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        access,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
