"""Who is asking: credentials, sessions, roles, login throttling and the setup code."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from checkin_appliance import audit
from checkin_appliance.config import Config
from checkin_appliance.domain import (
    Actor,
    Credential,
    Role,
    Session,
    format_time,
    parse_time,
    utc_now,
)
from checkin_appliance.hub import CLOSE_ACCESS_REVOKED, Hub
from checkin_appliance.security import (
    PasswordHasher,
    new_credential_token,
    new_session_secret,
    new_setup_code,
    secret_hash,
)
from checkin_appliance.store import Store
from checkin_appliance.web.errors import ApiError

log = logging.getLogger(__name__)

SESSION_COOKIE = "checkin_session"
NOT_PROVIDED = "Authentication credentials were not provided."
INVALID_TOKEN = "Authentication credentials were invalid or expired."
BAD_LOGIN = "Invalid credentials or inactive token."
MISSING_LOGIN = "Please provide both token and password."
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_CACHE_SECONDS = 1.0
SESSION_CACHE_SIZE = 4096


def access_denied(role: Role) -> ApiError:
    return ApiError(
        403, detail=f"Access Denied: You must have the '{role.value}' role to access this resource."
    )


@dataclass
class Tokens:
    access: str
    refresh: str
    credential: Credential
    lifetime: int  # seconds the access token (and a page's cookie) lasts


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


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Growing lockouts after repeated failures, per client address and per token."""

    allowed: int = 5
    max_lock: float = 15 * 60
    _by_key: dict[str, _Failures] = field(default_factory=dict)

    def retry_after(self, keys: Iterable[str], now: float) -> int:
        wait = max(
            (self._by_key[k].locked_until - now for k in keys if k in self._by_key), default=0.0
        )
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, keys: Iterable[str], now: float) -> None:
        for key in keys:
            entry = self._by_key.setdefault(key, _Failures())
            entry.count += 1
            if entry.count >= self.allowed:
                extra = entry.count - self.allowed
                entry.locked_until = now + min(self.max_lock, 2.0 ** min(extra, 10))
        if len(self._by_key) > 10_000:  # bounded memory under a spray of addresses
            stale = [k for k, v in self._by_key.items() if v.locked_until < now]
            for key in stale:
                del self._by_key[key]

    def succeeded(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._by_key.pop(key, None)


class Authenticator:
    def __init__(self, store: Store, hub: Hub, config: Config, hasher: PasswordHasher) -> None:
        self.store = store
        self.hub = hub
        self.config = config
        self.hasher = hasher
        self.throttle = LoginThrottle(allowed=config.login_failures_allowed)
        self.setup_code: str | None = None
        # access token: (when found, session); in memory only, like the request that sent it
        self._sessions: dict[str, tuple[float, Session]] = {}

    # --- first run -------------------------------------------------------------------

    async def prepare_setup(self) -> str | None:
        """A fresh one-time setup code while no admin exists (printed, never logged)."""
        self.setup_code = None if await self.store.has_admin() else new_setup_code()
        return self.setup_code

    async def setup_open(self) -> bool:
        """Whether the setup code still works (an admin made with the CLI also closes it)."""
        if self.setup_code is not None and await self.store.has_admin():
            self.setup_code = None
        return self.setup_code is not None

    async def complete_setup(self, code: str, password: str, address: str) -> Credential | None:
        """Creates the first admin exactly once; None when the code is wrong or setup is done."""
        expected = self.setup_code
        if expected is None or not hmac.compare_digest(
            code.strip().upper().encode(), expected.encode()
        ):
            return None
        password_hash = await self.hasher.hash(password)
        credential = await self.store.create_credential(
            new_credential_token,
            Role.ADMIN,
            "Administrator",
            None,
            password_hash,
            actor=Actor(None, address),
            only_if_no_admin=True,
        )
        if credential is not None:
            self.setup_code = None
        return credential

    # --- sessions --------------------------------------------------------------------

    def _expiry(self, seconds: int) -> str:
        return format_time(datetime.now(UTC) + timedelta(seconds=seconds))

    def page_session_limits(self, role: Role) -> tuple[int, int | None]:
        """(idle, absolute) lifetime in seconds of a page session; absolute None: no limit."""
        config, day = self.config, 24 * 3600
        if role in (Role.FORM, Role.QUEUE):
            idle, max_days = config.device_session_idle_days * day, config.device_session_max_days
        else:
            idle, max_days = config.staff_session_idle_hours * 3600, config.staff_session_max_days
        return idle, max_days * day or None

    async def renew_page_session(self, session: Session) -> int | None:
        """Slides a page session's idle expiry; returns the new cookie max-age, if renewed.

        Renewed at most every 1/20 of its idle time (an hour at most), so a page in use
        writes rarely and an unused one ends within that much of its idle time.
        """
        idle, _ = self.page_session_limits(session.credential.role)
        left = (parse_time(session.expires) - datetime.now(UTC)).total_seconds()
        if idle - left < min(idle / 20, 3600):
            return None
        await self.store.extend_session(session.id, self._expiry(idle))
        self.forget_sessions(session.id)
        return idle

    async def login(self, token: str, password: str, address: str, *, page: bool = False) -> Tokens:
        keys = (f"addr:{address}", f"token:{token}")
        wait = self.throttle.retry_after(keys, time.monotonic())
        if wait:
            raise ApiError(
                429,
                error="Too many failed attempts. Try again later.",
                headers={"Retry-After": str(wait)},
            )
        found = await self.store.credential_for_login(token)
        credential, stored = found if found else (None, None)
        ok = await self.hasher.verify(password, stored)
        if not ok or credential is None or not credential.active:
            self.throttle.failed(keys, time.monotonic())
            log.info("failed login from %s", address)
            # The trail names the credential only if the token exists; what was typed is
            # never stored (it may be a password typed in the wrong field).
            who = Actor(credential.id if credential else None, address)
            await self.store.record_audit(audit.LOGIN_FAILED, who)
            raise ApiError(401, error=BAD_LOGIN)
        self.throttle.succeeded(keys)
        access, refresh = new_session_secret(), new_session_secret()
        refresh_expires = self._expiry(self.config.refresh_ttl)
        if page:
            lifetime, absolute = self.page_session_limits(credential.role)
            ends_at = self._expiry(absolute) if absolute else None
        else:  # an API session ends with its refresh token
            lifetime, ends_at = self.config.access_ttl, refresh_expires
        await self.store.create_session(
            credential.id,
            (secret_hash(access), self._expiry(lifetime)),
            (secret_hash(refresh), refresh_expires),
            ends_at,
            actor=Actor(credential.id, address),
            detail={"page": True} if page else None,
        )
        log.info("login: credential %s (%s)", credential.id, credential.role.value)
        return Tokens(access, refresh, credential, lifetime)

    async def end_session(self, caller: Caller, reason: str) -> None:
        """Logout: the session is revoked and its live feeds are closed (4403) at once."""
        await self.store.revoke_session(caller.session.id, actor=caller.actor)
        self.forget_sessions(caller.session.id)
        self.hub.disconnect_where(
            lambda sub: sub.session_id == caller.session.id, CLOSE_ACCESS_REVOKED, reason
        )

    async def deactivate(self, token: str, actor: Actor) -> Credential | None:
        """Deactivates a credential: its sessions end and its live feeds close (4403) at once."""
        credential = await self.store.deactivate_credential(token, actor=actor)
        if credential is not None:
            self.forget_sessions()
            self.hub.disconnect_where(
                lambda sub: sub.credential_id == credential.id,
                CLOSE_ACCESS_REVOKED,
                "credential deactivated",
            )
        return credential

    async def refresh(self, refresh: str) -> str | None:
        access = new_session_secret()
        session = await self.store.refresh_session(
            secret_hash(refresh),
            secret_hash(access),
            self._expiry(self.config.access_ttl),
            utc_now(),
        )
        if session is None:
            return None
        self.forget_sessions(session.id)  # the old access token stops working
        return access

    async def session_for(self, access: str) -> Session | None:
        """The live session of an access token. Found sessions are kept for a second, so a
        kiosk's burst costs one lookup; a change made here (logout, deactivation, refresh,
        renewal) forgets them at once, one made by the CLI within a second."""
        if not access or len(access) > 200 or not access.isascii():
            return None  # ours are URL-safe ASCII; other bytes can only be a wrong token
        now = time.monotonic()
        cached = self._sessions.get(access)
        if cached is not None and now - cached[0] < SESSION_CACHE_SECONDS:
            return cached[1]
        session = await self.store.session_by_access(secret_hash(access), utc_now())
        if session is not None:
            if len(self._sessions) >= SESSION_CACHE_SIZE:
                self._sessions.clear()
            self._sessions[access] = (now, session)
        return session

    def forget_sessions(self, session_id: int | None = None) -> None:
        """Drop cached sessions: one, or all (None)."""
        if session_id is None:
            self._sessions.clear()
            return
        for key in [k for k, (_, s) in self._sessions.items() if s.id == session_id]:
            del self._sessions[key]

    # --- requests --------------------------------------------------------------------

    async def identify(self, request: web.Request) -> Caller | None:
        """The caller by Authorization / Roni-Authorization bearer header, else the cookie.

        Raises 401 for a bearer token that is present but invalid.
        """
        for header in ("Authorization", "Roni-Authorization"):
            value = request.headers.get(header)
            if value:
                scheme, _, secret = value.partition(" ")
                session = (
                    await self.session_for(secret.strip()) if scheme.lower() == "bearer" else None
                )
                if session is None:
                    raise ApiError(401, detail=INVALID_TOKEN)
                return Caller(session, False, client_address(request))
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            session = await self.session_for(cookie)
            if session is not None:
                return Caller(session, True, client_address(request))
        return None

    async def require(self, request: web.Request, *roles: Role) -> Caller:
        """The caller, who must hold one of `roles` (admin always may); else 401/403."""
        caller = await self.identify(request)
        if caller is None:
            raise ApiError(401, detail=NOT_PROVIDED)
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

    Browsers say so in Sec-Fetch-Site. With our `Referrer-Policy: no-referrer` they send
    `Origin: null` on form posts and fetch() POSTs, so Origin decides only where
    Sec-Fetch-Site is missing (older browsers; WebSocket handshakes carry a real Origin).
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    return origin is not None and origin == f"{request.scheme}://{request.host}"


def require_same_origin(request: web.Request) -> None:
    if not same_origin(request):
        raise ApiError(403, detail="Cross-origin request refused.")


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
