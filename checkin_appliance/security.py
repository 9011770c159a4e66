"""Secrets: password hashing (scrypt) and strength, credential tokens, session tokens and
their hashes."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
from collections.abc import Iterable

# scrypt with n=2**14, r=8 uses 16 MiB per hash; PasswordHasher caps concurrent hashes.
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
_MAXMEM = 64 * 1024 * 1024


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_DKLEN
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _N, _R, _P)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


@functools.cache
def dummy_hash() -> str:
    """What an unknown token is verified against, so it fails as slowly as a wrong password.
    Made at the first such login, not at import: every CLI command would pay 16 MiB for it."""
    return hash_password(secrets.token_urlsafe(16))


class PasswordHasher:
    """Hashes off the event loop, a few at a time, so logins cannot exhaust memory or CPU."""

    def __init__(self, concurrency: int = 2) -> None:
        self._slots = asyncio.Semaphore(concurrency)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(hash_password, password)

    async def verify(self, password: str, stored: str | None) -> bool:
        async with self._slots:
            ok = await asyncio.to_thread(_verify_or_waste_time, password, stored)
        return ok and stored is not None


def _verify_or_waste_time(password: str, stored: str | None) -> bool:
    """In the worker thread: the first unknown token makes the dummy hash there too."""
    return verify_password(password, stored or dummy_hash())


def new_credential_token() -> str:
    """An 8-digit numeric token (the credential's public identifier, typed on a tablet)."""
    return f"{secrets.randbelow(90_000_000) + 10_000_000}"


def new_session_secret() -> str:
    return secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """Sessions are looked up by this hash; the clear secret is never stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_setup_code() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    code = "".join(secrets.choice(alphabet) for _ in range(12))
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


# zxcvbn looks at this much of a password (it refuses longer ones: its matching grows
# quadratically); what follows can only make a password stronger.
STRENGTH_PREFIX = 72
# Words every password here may be built on; zxcvbn weighs them like the clinic's own.
OWN_WORDS = ("clinic", "checkin", "check-in", "kiosk", "doctor", "admin", "administrator")


def password_strength(password: str, context: Iterable[str]) -> int:
    """zxcvbn's score, 0 (a top-10 password) to 4 (over 10^10 guesses): common passwords,
    dictionary words, names, dates, keyboard walks, repeats and sequences, l33t spellings,
    and the `context` words (the clinic's name, the token) all count as easy.

    zxcvbn (Dropbox's estimator, MIT, maintained on PyPI) ships its frequency lists, so it
    works offline. It is imported at the first password set, not at start: its lists take
    about 14 MB, which a box that never changes a password should not pay. CPU work: call
    it in a thread.
    """
    from zxcvbn import zxcvbn  # late on purpose: memory, above

    words = [w for w in (*OWN_WORDS, *context) if w]
    return int(zxcvbn(password[:STRENGTH_PREFIX], user_inputs=words)["score"])
