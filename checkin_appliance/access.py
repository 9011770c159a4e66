"""Who may do what: the setup code, credentials, login, sessions and login throttling.

The one place each of these operations is written; the API, the pages and the CLI call it.
Speaks no HTTP: failures are domain errors carrying their code (errors.py).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from checkin_appliance import audit, errors
from checkin_appliance.config import Config
from checkin_appliance.domain import (
    Actor,
    Credential,
    InvalidInput,
    NotAllowed,
    NotAuthenticated,
    NotFound,
    Role,
    Session,
    TooManyAttempts,
    credential_fields,
    format_time,
    has_control_characters,
    parse_time,
    settings_from_stored,
    utc_now,
)
from checkin_appliance.lines import MAX_LINES, PREFIX
from checkin_appliance.security import (
    PasswordHasher,
    new_credential_token,
    new_session_secret,
    new_setup_code,
    password_strength,
    secret_hash,
)
from checkin_appliance.store import Store

log = logging.getLogger(__name__)

BAD_LOGIN = "Invalid credentials or inactive token."
MISSING_LOGIN = "Please provide both token and password."
TOKEN_FORMAT = "The token is the credential's 8 digits."
# What a credential's token is (security.new_credential_token); anything else is refused
# before it reaches the throttle, whose keys must stay small.
CREDENTIAL_TOKEN = re.compile(r"[0-9]{8}")
# A token imported from the original CheckIn may be any text of 1-100 characters; one of
# another shape than ours is looked up only while such a credential exists.
MAX_IMPORTED_TOKEN_LENGTH = 100
RESET_REQUIRED = (
    "This credential's password must be changed by an administrator before it can sign in."
)
SETUP_COMPLETE = "Setup is already complete."
MIN_PASSWORD_LENGTH = 8
MIN_ADMIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
# Least zxcvbn score (security.password_strength) of a new password. 2: at least 10^6
# guesses, beyond reach online behind the login throttle. An admin's reaches everything, and
# a stolen SD card lets its hash be attacked offline: 3, at least 10^8 scrypt guesses.
MIN_STRENGTH = 2
MIN_ADMIN_STRENGTH = 3
TOO_WEAK = (
    "This password is too easy to guess: avoid common passwords, the clinic's name, the "
    "token, names, dates, and repeated or sequential characters."
)

T = TypeVar("T")

# Closes the live feeds a change ended: (does it end this feed's (session id, credential
# id)?, reason). The web side passes the hub's; this module never touches a socket.
CloseFeeds = Callable[[Callable[[int | None, int | None], bool], str], None]


def check_password(password: object, admin: bool = False) -> str:
    """A new password that meets the length rules; else InvalidInput saying which.
    (Access.check_password adds the strength rule, which needs the clinic's context.)"""
    if not isinstance(password, str) or not password:
        raise InvalidInput("A password is required.", errors.PASSWORD_REQUIRED)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("The password is too long.", errors.PASSWORD_TOO_LONG)
    if admin and len(password) < MIN_ADMIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"An administrator's password must have at least {MIN_ADMIN_PASSWORD_LENGTH} "
            "characters.",
            errors.ADMIN_PASSWORD_TOO_SHORT,
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The password must have at least {MIN_PASSWORD_LENGTH} characters.",
            errors.PASSWORD_TOO_SHORT,
        )
    return password


@dataclass
class Tokens:
    access: str
    refresh: str
    credential: Credential
    lifetime: int  # seconds the access token (and a page's cookie) lasts


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last: float = 0.0  # monotonic time of the latest failure


@dataclass
class LoginThrottle:
    """Failed logins, counted three ways.

    - Per client address and per (token, address): after `allowed` failures that device is
      refused (429) for a lock that doubles with each further failure, up to `max_lock`.
      The address counts every token it tried, so spraying one password over many tokens
      is limited too. A success clears only its own (token, address) counter: signing in
      with a kiosk's credential does not wipe what the same device guessed at a doctor's.
    - Per token, from everywhere: after `allowed` failures, every attempt at that token
      from a device not known for it waits (a delay doubling from `base_delay` up to
      `max_delay`) instead of being refused, so guessing from many addresses slows down
      while nobody can lock a doctor or the admin out of their own token. A device that
      signed in with the token before (same address) is known, and never waits.

    A counter is forgotten `max_lock` after its last failure, once its lock has run out.
    Bounded by entries and by the bytes of their keys, so a spray of addresses cannot grow
    it without limit: past either bound, entries not locked go first, then the oldest.
    """

    allowed: int = 5
    max_lock: float = 15 * 60
    base_delay: float = 0.5
    max_delay: float = 10.0
    max_entries: int = 10_000
    max_bytes: int = 2 * 1024 * 1024
    max_known: int = 4096
    _by_key: dict[str, _Failures] = field(default_factory=dict)
    _bytes: int = 0
    _known: dict[str, None] = field(default_factory=dict)  # "token@address", oldest first

    # What one entry costs beside its key's characters: the dict slot, the str and the
    # _Failures object (measured with sys.getsizeof, rounded up).
    ENTRY_OVERHEAD = 200

    @staticmethod
    def _lock_keys(token: str, address: str) -> tuple[str, str]:
        return f"addr:{address}", f"pair:{token}@{address}"

    def retry_after(self, token: str, address: str, now: float) -> int:
        """Seconds this device must wait before trying this token again (0: it may)."""
        wait = max(
            (e.locked_until - now for e in self._entries(self._lock_keys(token, address), now)),
            default=0.0,
        )
        return int(wait) + 1 if wait > 0 else 0

    def delay(self, token: str, address: str, now: float) -> float:
        """Seconds an attempt at this token from this device is held before it is checked."""
        if f"{token}@{address}" in self._known:
            return 0.0
        entries = self._entries((f"token:{token}",), now)
        extra = entries[0].count - self.allowed if entries else -1
        if extra < 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(extra, 20))

    def failed(self, token: str, address: str, now: float) -> None:
        for key in self._lock_keys(token, address):
            entry = self._count(key, now)
            if entry.count >= self.allowed:
                extra = entry.count - self.allowed
                entry.locked_until = now + min(self.max_lock, 2.0 ** min(extra, 10))
        self._count(f"token:{token}", now)
        self._shrink(now)

    def succeeded(self, token: str, address: str) -> None:
        self._forget(f"pair:{token}@{address}")
        known = f"{token}@{address}"
        self._known.pop(known, None)
        self._known[known] = None
        if len(self._known) > self.max_known:
            del self._known[next(iter(self._known))]

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def size_bytes(self) -> int:
        """What the table holds, as counted against max_bytes."""
        return self._bytes

    def _entries(self, keys: Iterable[str], now: float) -> list[_Failures]:
        found = []
        for key in keys:
            entry = self._by_key.get(key)
            if entry is None:
                continue
            if self._stale(entry, now):
                self._forget(key)
            else:
                found.append(entry)
        return found

    def _stale(self, entry: _Failures, now: float) -> bool:
        return entry.locked_until < now and entry.last + self.max_lock < now

    def _count(self, key: str, now: float) -> _Failures:
        entry = self._by_key.pop(key, None)  # re-inserted last: the dict is oldest first
        if entry is None:
            self._bytes += self._cost(key)
        if entry is None or self._stale(entry, now):
            entry = _Failures()
        self._by_key[key] = entry
        entry.count += 1
        entry.last = now
        return entry

    def _cost(self, key: str) -> int:
        return len(key.encode("utf-8")) + self.ENTRY_OVERHEAD

    def _forget(self, key: str) -> None:
        if self._by_key.pop(key, None) is not None:
            self._bytes -= self._cost(key)

    def _full(self) -> bool:
        return len(self._by_key) > self.max_entries or self._bytes > self.max_bytes

    def _shrink(self, now: float) -> None:
        if not self._full():
            return
        for key in [k for k, v in self._by_key.items() if v.locked_until < now]:
            self._forget(key)
        while self._full():
            self._forget(next(iter(self._by_key)))


class SessionCache:
    """Sessions found by access token, kept `seconds` so a kiosk's burst costs one lookup.

    In memory only, like the request that sent the token. Access forgets entries in one
    place (`Access._changed`) whenever it changes a session or credential; a change made by
    another process (the CLI) shows within `seconds`. `seconds=0` turns the cache off.

    It earns its place in `make bench` (2026-12-04, two runs each): 1 subscriber, JSON, C=8,
    2,468 check-ins/s with it against 2,041 without (+21 %); 50 subscribers, C=8: +16 %.
    """

    SECONDS = 1.0
    SIZE = 4096

    def __init__(self, seconds: float = SECONDS) -> None:
        self.seconds = seconds
        self._found: dict[str, tuple[float, Session]] = {}  # access token: (when, session)

    def get(self, access: str, now: float) -> Session | None:
        cached = self._found.get(access)
        if cached is not None and now - cached[0] < self.seconds:
            return cached[1]
        return None

    def put(self, access: str, session: Session, now: float) -> None:
        if not self.seconds:
            return
        if len(self._found) >= self.SIZE:
            self._found.clear()
        self._found[access] = (now, session)

    def forget(self, session_id: int | None = None) -> None:
        """One session's entries, or all (None)."""
        if session_id is None:
            self._found.clear()
            return
        for key in [k for k, (_, s) in self._found.items() if s.id == session_id]:
            del self._found[key]


class Access:
    def __init__(
        self,
        store: Store,
        config: Config,
        hasher: PasswordHasher,
        close_feeds: CloseFeeds | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.hasher = hasher
        self.close_feeds = close_feeds
        self.throttle = LoginThrottle(allowed=config.login_failures_allowed)
        self.setup_code: str | None = None
        self.sessions = SessionCache()
        # Whether a credential imported from the original CheckIn has a token that is not 8
        # digits: only then is a token of another shape looked up (refresh_token_shapes).
        self.foreign_tokens = False
        # When each credential last used a session here (time.time()), since the start: one
        # entry per credential, so bounded by how many there are (last_contacts).
        self.seen: dict[int, float] = {}

    async def refresh_token_shapes(self) -> None:
        """At start, after an import, and when another process changed the database."""
        self.foreign_tokens = await self.store.has_foreign_tokens()

    def _login_token(self, token: object) -> str:
        """The token as looked up; InvalidInput (token_invalid) for one of no known shape."""
        if isinstance(token, str):
            token = token.strip()
            if CREDENTIAL_TOKEN.fullmatch(token):
                return token
            if (
                self.foreign_tokens
                and 0 < len(token) <= MAX_IMPORTED_TOKEN_LENGTH
                and not has_control_characters(token)
            ):
                return token
        # Never a throttle key: what was typed may be any size (item 4 of issue 13).
        raise InvalidInput(TOKEN_FORMAT, errors.TOKEN_INVALID)

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

    async def require_setup_open(self) -> None:
        if not await self.setup_open():
            raise NotAllowed(SETUP_COMPLETE, errors.SETUP_COMPLETE)

    async def complete_setup(self, code: object, password: object, address: str) -> Credential:
        """Creates the first admin exactly once, even when raced."""
        await self.require_setup_open()
        if not isinstance(code, str) or not code:
            raise InvalidInput(
                "Please provide the setup code and a password.", errors.SETUP_FIELDS_REQUIRED
            )
        check_password(password, admin=True)  # the cheap rules first, as before
        expected = self.setup_code
        if expected is None:
            raise NotAllowed(SETUP_COMPLETE, errors.SETUP_COMPLETE)
        if not hmac.compare_digest(code.strip().upper().encode(), expected.encode()):
            raise NotAllowed("Invalid setup code.", errors.SETUP_CODE_INVALID)
        # Strength only for the holder of the code: nobody else learns what it refuses.
        token = new_credential_token()
        password = await self.check_password(password, Role.ADMIN, token)
        credential = await self._create(
            token,
            Role.ADMIN,
            "Administrator",
            None,
            password,
            Actor(None, address),
            first_admin=True,
        )
        if credential is None:  # another request made the admin meanwhile
            raise NotAllowed(SETUP_COMPLETE, errors.SETUP_COMPLETE)
        self.setup_code = None
        return credential

    # --- credentials -----------------------------------------------------------------

    async def create_credential(
        self,
        role: object,
        label: object,
        room: object,
        password: object,
        actor: Actor,
        lines: object = None,
    ) -> Credential:
        """A new credential with a fresh 8-digit token; InvalidInput names a bad field.
        `lines`: the prefixes of the lines a doctor serves (none: every line)."""
        checked_role, checked_label, checked_room = credential_fields(role, label, room)
        served = await self._served_lines(lines) if lines is not None else None
        token = new_credential_token()
        checked = await self.check_password(
            password, checked_role, token, checked_label, checked_room or ""
        )
        credential = await self._create(
            token, checked_role, checked_label, checked_room, checked, actor
        )
        assert credential is not None
        if served:
            changed = await self.store.change_credential(
                credential.token, {"lines": served}, actor=actor
            )
            assert changed is not None
            credential = changed
        return credential

    async def change_credential(self, token: str, body: object, actor: Actor) -> Credential:
        """An admin changes a credential's `label`, `room` (null: none) and/or `lines`
        (prefixes; []: every line); other keys are refused. Audited by the store."""
        if not isinstance(body, dict) or not body or set(body) - {"label", "room", "lines"}:
            raise InvalidInput(
                "Send a JSON object with label, room and/or lines.",
                errors.CREDENTIAL_CHANGE_INVALID,
            )
        changes: dict[str, object] = {}
        if "label" in body:
            changes["label"] = credential_fields("queue", body["label"], None)[1]
        if "room" in body:
            changes["room"] = credential_fields("queue", "x", body["room"])[2]
        if "lines" in body:
            changes["lines"] = await self._served_lines(body["lines"])
        credential = await self._changed(self.store.change_credential(token, changes, actor=actor))
        if credential is None:
            raise NotFound("No credential with that token.", errors.NO_SUCH_CREDENTIAL)
        return credential

    async def _served_lines(self, value: object) -> list[str]:
        """A list of existing lines' prefixes (any case), each once."""
        if (
            not isinstance(value, list)
            or len(value) > MAX_LINES
            or not all(isinstance(v, str) and PREFIX.match(v) for v in value)
        ):
            raise InvalidInput("lines must be a list of line prefixes.", errors.LINE_INVALID)
        known = {line.prefix for line in await self.store.list_lines()}
        wanted = list(dict.fromkeys(v.upper() for v in value))
        if any(prefix not in known for prefix in wanted):
            raise InvalidInput("lines names a line that does not exist.", errors.LINE_UNKNOWN)
        return wanted

    async def check_password(self, password: object, role: Role, *context: str) -> str:
        """A new password for a credential of `role`: long enough, and not easy to guess
        (common, or built on the clinic's name or the `context` words: the token, the
        label); else InvalidInput with its code. Stricter for an admin."""
        admin = role is Role.ADMIN
        checked = check_password(password, admin)
        settings = settings_from_stored(await self.store.load_settings())
        words = (settings.clinic_name, *settings.clinic_name.split(), role.value, *context)
        strength = await asyncio.to_thread(password_strength, checked, words)
        if strength < (MIN_ADMIN_STRENGTH if admin else MIN_STRENGTH):
            raise InvalidInput(TOO_WEAK, errors.PASSWORD_TOO_WEAK)
        return checked

    async def _create(
        self,
        token: str,
        role: Role,
        label: str,
        room: str | None,
        password: str,
        actor: Actor,
        *,
        first_admin: bool = False,
    ) -> Credential | None:
        """`token` is tried first (the password was checked against it); should it be taken
        meanwhile, the store draws fresh ones."""
        offered = iter((token,))
        password_hash = await self.hasher.hash(password)
        return await self.store.create_credential(
            lambda: next(offered, None) or new_credential_token(),
            role,
            label,
            room,
            password_hash,
            actor=actor,
            only_if_no_admin=first_admin,
        )

    async def list_credentials(self) -> list[Credential]:
        return await self.store.list_credentials()

    async def last_contacts(self, credentials: Iterable[Credential]) -> dict[int, str]:
        """Each credential's last contact with the box (UTC timestamp), where one is known:
        the newest of its sign-ins, its sessions' renewals (a page session's access expiry
        less its idle lifetime, an API session's less access_ttl) and, since this server
        started, its last authenticated request. No column of its own: the sessions table and
        memory say it (a page renews its session at most every 1/20 of its idle time, so
        after a restart a quiet device's last contact may look older than it is)."""
        found = await self.store.last_activity()
        now = datetime.now(UTC)
        contacts: dict[int, str] = {}
        for credential in credentials:
            moments: list[datetime] = []
            if credential.id in self.seen:
                moments.append(datetime.fromtimestamp(self.seen[credential.id], UTC))
            if credential.id in found:
                signed_in, page_until, api_until = found[credential.id]
                moments.append(parse_time(signed_in))
                if page_until:
                    idle, _ = self.page_session_limits(credential.role)
                    moments.append(parse_time(page_until) - timedelta(seconds=idle))
                if api_until:
                    ttl = timedelta(seconds=self.config.access_ttl)
                    moments.append(parse_time(api_until) - ttl)
            if moments:
                contacts[credential.id] = format_time(min(max(moments), now))
        return contacts

    async def served_lines(self, credential: Credential) -> tuple[str, ...]:
        """The line prefixes a doctor serves (none: every line); a session's credential is
        read without them."""
        return await self.store.served_lines(credential.id)

    async def deactivate(self, token: str, actor: Actor) -> Credential:
        """Deactivates a credential: its sessions end and its live feeds close at once."""
        credential = await self._changed(self.store.deactivate_credential(token, actor=actor))
        if credential is None:
            raise NotFound("No credential with that token.", errors.NO_SUCH_CREDENTIAL)
        self._close_feeds(
            lambda _, credential_id: credential_id == credential.id, "credential deactivated"
        )
        return credential

    async def reactivate(self, token: str, actor: Actor) -> Credential:
        """A deactivated credential works again; its old sessions stay ended (the device signs
        in again with its password: whoever held its session when it was deactivated does
        not come back with it). Reactivating an active one changes nothing."""
        credential = await self._changed(self.store.reactivate_credential(token, actor=actor))
        if credential is None:
            raise NotFound("No credential with that token.", errors.NO_SUCH_CREDENTIAL)
        return credential

    async def ended_by_admin(self, access: str) -> bool:
        """Whether this (no longer working) access secret's session was ended by an
        administrator: its credential deactivated, or its password set anew."""
        if not access or len(access) > 200 or not access.isascii():
            return False
        return await self.store.ended_by_admin(secret_hash(access))

    async def set_password(self, token: str, password: object, actor: Actor) -> Credential:
        """An administrator sets a credential's password (the same rules as a new one): the
        reset flag is cleared, its sessions end and its live feeds close at once."""
        found = await self.store.credential_for_login(token)
        if found is None:
            raise NotFound("No credential with that token.", errors.NO_SUCH_CREDENTIAL)
        current, _ = found
        checked = await self.check_password(
            password, current.role, current.token, current.label, current.room or ""
        )
        password_hash = await self.hasher.hash(checked)
        credential = await self._changed(self.store.set_password(token, password_hash, actor=actor))
        if credential is None:
            raise NotFound("No credential with that token.", errors.NO_SUCH_CREDENTIAL)
        self._close_feeds(
            lambda _, credential_id: credential_id == credential.id, "password changed"
        )
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

    async def login(
        self, token: object, password: object, address: str, *, page: bool = False
    ) -> Tokens:
        """A new session; NotAuthenticated for a wrong token or password, TooManyAttempts
        (with its wait) after repeated failures from this address, or from it against this
        token; held a while when the token is being guessed (see LoginThrottle); NotAllowed
        (password_reset_required) for the right password of a credential imported with a
        weak one. A token of another shape than ours is looked up only while an imported
        credential has one (refresh_token_shapes)."""
        if isinstance(token, float) and token.is_integer():
            token = int(token)  # 12345678.0 is the integer 12345678 to JSON Schema too
        if isinstance(token, int) and not isinstance(token, bool):
            token = str(token)  # the original accepted the token as a JSON number
        if not token or not password:
            raise InvalidInput(MISSING_LOGIN, errors.LOGIN_FIELDS_REQUIRED)
        if not isinstance(password, str):
            raise NotAuthenticated(BAD_LOGIN, errors.BAD_LOGIN)
        token = self._login_token(token)
        wait = self.throttle.retry_after(token, address, time.monotonic())
        if wait:
            raise TooManyAttempts(
                "Too many failed attempts. Try again later.", errors.TOO_MANY_ATTEMPTS, wait
            )
        delay = self.throttle.delay(token, address, time.monotonic())
        if delay:  # this token is being guessed: slowed down for unknown devices, not locked
            await asyncio.sleep(delay)
        found = await self.store.credential_for_login(token)
        credential, stored = found if found else (None, None)
        ok = await self.hasher.verify(password, stored)
        if not ok or credential is None or not credential.active:
            self.throttle.failed(token, address, time.monotonic())
            log.info("failed login from %s", address)
            # The trail names the credential only if the token exists; what was typed is
            # never stored (it may be a password typed in the wrong field).
            who = Actor(credential.id if credential else None, address)
            await self.store.record_audit(audit.LOGIN_FAILED, who)
            raise NotAuthenticated(BAD_LOGIN, errors.BAD_LOGIN)
        self.throttle.succeeded(token, address)
        if credential.password_reset_required:
            # The right password, too weak to keep: no session until the admin sets a new one.
            await self.store.record_audit(
                audit.LOGIN_FAILED,
                Actor(credential.id, address),
                {"reason": "password_reset_required"},
            )
            raise NotAllowed(RESET_REQUIRED, errors.PASSWORD_RESET_REQUIRED)
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

    async def refresh(self, refresh: object, address: str) -> tuple[str, str]:
        """(new access token, new refresh token) for a live refresh token, which is used up:
        the old access token stops working, and the old refresh token presented again ends
        the session and closes its live feeds (4403), since only a copy can be that late."""
        if not isinstance(refresh, str) or not refresh:
            raise InvalidInput("Please provide the refresh token.", errors.REFRESH_REQUIRED)
        access, rotated = new_session_secret(), new_session_secret()
        renewal = self.store.refresh_session(
            secret_hash(refresh),
            (secret_hash(access), self._expiry(self.config.access_ttl)),
            secret_hash(rotated),
            utc_now(),
            address,
        )
        # Which session is known only after: the cache forgets all.
        session, ended = await self._changed(renewal)
        if ended is not None:
            log.warning("a used refresh token came back: session %s ended", ended)
            self._close_feeds(lambda session_id, _: session_id == ended, "refresh token reused")
            raise NotAuthenticated(
                "Token was already used; the session has ended.", errors.REFRESH_REUSED
            )
        if session is None:
            raise NotAuthenticated("Token is invalid or expired.", errors.REFRESH_NOT_VALID)
        return access, rotated

    async def logout(self, session: Session, actor: Actor, reason: str) -> None:
        """The session is revoked and its live feeds are closed (4403) at once."""
        await self._changed(self.store.revoke_session(session.id, actor=actor), session.id)
        self._close_feeds(lambda session_id, _: session_id == session.id, reason)

    async def renew_page_session(self, session: Session) -> int | None:
        """Slides a page session's idle expiry; returns the new cookie max-age, if renewed.

        Renewed at most every 1/20 of its idle time (an hour at most), so a page in use
        writes rarely and an unused one ends within that much of its idle time.
        """
        idle, _ = self.page_session_limits(session.credential.role)
        left = (parse_time(session.expires) - datetime.now(UTC)).total_seconds()
        if idle - left < min(idle / 20, 3600):
            return None
        await self._changed(self.store.extend_session(session.id, self._expiry(idle)), session.id)
        return idle

    async def session_for(self, access: str) -> Session | None:
        """The live session of an access token (see SessionCache for how fresh)."""
        if not access or len(access) > 200 or not access.isascii():
            return None  # ours are URL-safe ASCII; other bytes can only be a wrong token
        now = time.monotonic()
        session = self.sessions.get(access, now)
        if session is None:
            session = await self.store.session_by_access(secret_hash(access), utc_now())
            if session is not None:
                self.sessions.put(access, session, now)
        if session is not None:
            self.seen[session.credential.id] = time.time()
        return session

    def forget_sessions(self) -> None:
        """Another process changed sessions or credentials (the CLI): look them up again."""
        self.sessions.forget()

    async def _changed(self, change: Awaitable[T], session_id: int | None = None) -> T:
        """Every change to sessions or credentials made here: the cache forgets what it
        touched (one session, or all)."""
        try:
            return await change
        finally:
            self.sessions.forget(session_id)

    def _close_feeds(self, ended: Callable[[int | None, int | None], bool], reason: str) -> None:
        if self.close_feeds is not None:
            self.close_feeds(ended, reason)
