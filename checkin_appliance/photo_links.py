"""Signed, expiring photo links: how a client without a staff session loads a photo.

A stored photo's name is unguessable, but a name alone was enough to load it, forever,
with no credential. Bodies and feed messages now carry the name plus `?exp=…&sig=…`, an
HMAC-SHA256 of the name and the expiry under a key kept in the data directory (0600), so an
integrator's client keeps working unchanged while a leaked link stops working within hours.
Pages need no link: their same-origin `<img>` requests carry the staff session cookie.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from checkin_appliance.domain import PHOTO_URL_PREFIX
from checkin_appliance.files import write_atomically

KEY_FILE = "photo-links.key"
KEY_BYTES = 32
# A link is valid until the end of the next whole hour: between one and two hours. Rounded,
# so one event renders one URL for every subscriber, and a snapshot matches the events.
LINK_PERIOD = 3600


class PhotoLinks:
    """Signs photo URLs and checks them; the key is loaded (or made) once at start."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key

    def load(self, data_dir: Path) -> None:
        """Reads `data_dir/photo-links.key`, creating it (0600, never through a link) first."""
        path = data_dir / KEY_FILE
        with contextlib.suppress(FileNotFoundError):
            self._key = _read_key(path)
            return
        write_atomically(path, secrets.token_bytes(KEY_BYTES), mode=0o600)
        self._key = _read_key(path)

    def url(self, image: str, now: float | None = None) -> str:
        expires = (int(now if now is not None else time.time()) // LINK_PERIOD + 2) * LINK_PERIOD
        return f"{PHOTO_URL_PREFIX}{image}?exp={expires}&sig={self._signature(image, expires)}"

    def valid(self, image: str, expires: str, signature: str, now: float | None = None) -> bool:
        if not expires.isdecimal() or len(expires) > 12 or len(signature) != 64:
            return False
        if int(expires) < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(self._signature(image, int(expires)), signature)

    def _signature(self, image: str, expires: int) -> str:
        if self._key is None:
            raise RuntimeError("photo link key not loaded")
        message = f"{image}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        key = f.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        raise RuntimeError(f"{path} is damaged: delete it and restart (photo links renew)")
    return key
