"""The box's keys in the replica: what a standby needs to become the same box.

A promoted standby has the primary's database from the replica, but a box is more than its
database: devices trust its CA (tls/ca.crt, ca.key), the audit trail is keyed with audit.key,
photo links are signed with photo-links.key, and /admin's nightly backups are set in
backup-schedule.json with backup-passphrase. With a replica set, the server seals those
files into one age file (agefile.py) with the passphrase of `replica_passphrase_file` and
keeps it in the database's one-row table box_keys, with the box's hostname in the clear;
Litestream ships it with everything else, and `promote` opens it (promote.py).

Sealing costs a scrypt (about a second and 256 MiB), so it happens only when the files or
the passphrase changed: the row keeps SHA-256(plain text || passphrase), which the server
compares at start and every CHECK_INTERVAL (audit.key appears with the first audit row,
the schedule when an admin sets it). The plain text holds the CA's key, so that digest is
no way to guess the passphrase. A seal runs off the event loop after the server is up, and
the derived key is forgotten after it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from checkin_appliance import agefile, audit, backup_schedule, photo_links
from checkin_appliance.config import Config, ConfigError, replica_passphrase
from checkin_appliance.store import Store
from checkin_appliance.store.box_keys import save_hostname, save_keys, stored_keys

log = logging.getLogger(__name__)

# The files that make the box itself, relative to the data directory. Not the server's own
# certificate: the promoted box issues one from the CA for its own addresses at start.
FILES = (
    "tls/ca.crt",
    "tls/ca.key",
    audit.KEY_FILE,
    photo_links.KEY_FILE,
    backup_schedule.SCHEDULE_FILE,
    backup_schedule.PASSPHRASE_FILE,
)
PUBLIC = ("tls/ca.crt",)  # readable by others when put back (as tls.py writes it)
FORMAT = 1
# Seconds between looks at whether the files changed: a few small files read and hashed.
# Short, because a key made while serving (audit.key, with the first audit row) is missing
# from a promoted standby until the next look has sealed it and Litestream shipped it.
CHECK_INTERVAL = 10.0
MAX_FILE_BYTES = 1024 * 1024  # each of them is under 1 KB; a bigger one is not ours


class KeysError(Exception):
    """The sealed keys cannot be opened or are not ours; the message says why."""


def gather(data_dir: Path) -> bytes:
    """The plain text to seal: the files that exist, always in the same bytes for the same
    content (sorted JSON), so its digest changes only when a file does."""
    files = {}
    for name in FILES:
        with contextlib.suppress(FileNotFoundError):
            files[name] = base64.b64encode(_read(data_dir / name)).decode()
    return json.dumps({"format": FORMAT, "files": files}, sort_keys=True).encode()


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read(MAX_FILE_BYTES)


def digest(plain: bytes, passphrase: bytes) -> str:
    return hashlib.sha256(plain + passphrase).hexdigest()


def seal(plain: bytes, passphrase: bytes) -> bytes:
    out = io.BytesIO()
    encryptor = agefile.Encryptor(out, passphrase)
    encryptor.write(plain)
    encryptor.close()
    return out.getvalue()


def unseal(sealed: bytes, passphrase: bytes) -> dict[str, bytes]:
    """{relative path: content}; KeysError for a wrong passphrase or a changed file."""
    try:
        plain = agefile.Decryptor(io.BytesIO(sealed), passphrase).read()
    except agefile.AgeError as exc:
        raise KeysError(f"the box's keys cannot be opened: {exc}") from exc
    try:
        document = json.loads(plain)
        if document["format"] != FORMAT:
            raise KeysError(f"the box's keys are in format {document['format']}; upgrade first")
        files = {name: base64.b64decode(text) for name, text in document["files"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise KeysError("the box's keys are not readable") from exc
    if unknown := set(files) - set(FILES):
        raise KeysError(f"the box's keys name files that are not keys: {sorted(unknown)}")
    return files


class KeyKeeper:
    """Keeps the sealed keys in the database current while the server runs (with a replica)."""

    def __init__(
        self, config: Config, store: Store, *, hostname: Callable[[], str] | None = None
    ) -> None:
        self.config, self.store = config, store
        self._hostname = hostname
        self._stored: tuple[str, str] | None = None  # (digest, hostname) as in the database
        self._loaded = False
        self._problem: str | None = None  # the last one logged, so it is logged once

    async def check(self) -> bool:
        """Seals the keys again if they or the passphrase changed; True if it did."""
        if not self._loaded:
            row = await stored_keys(self.store)
            self._stored = None if row is None else (row.digest, row.hostname)
            self._loaded = True
        passphrase = await asyncio.to_thread(replica_passphrase, self.config)
        plain = await asyncio.to_thread(gather, self.config.data_dir)
        wanted, hostname = digest(plain, passphrase), (self._hostname or socket.gethostname)()
        if self._stored is not None and self._stored[0] == wanted:
            if self._stored[1] != hostname:
                await save_hostname(self.store, hostname)
                self._stored = (wanted, hostname)
            return False
        try:
            sealed = await asyncio.to_thread(seal, plain, passphrase)
        finally:
            agefile.forget_keys()
        await save_keys(self.store, hostname, sealed, wanted)
        self._stored = (wanted, hostname)
        names = ", ".join(sorted(json.loads(plain)["files"])) or "none yet"
        log.info("the box's keys are sealed into the database for the replica: %s", names)
        return True

    async def keep(self) -> None:
        """check() now and every CHECK_INTERVAL; a failure is logged once and tried again."""
        while True:
            try:
                await self.check()
                if self._problem is not None:
                    log.info("the box's keys are sealed for the replica again")
                self._problem = None
            except (ConfigError, OSError) as exc:
                self._note(str(exc))
            except Exception as exc:  # the keeper outlives any one failure (a full disk)
                self._note(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(CHECK_INTERVAL)  # a period, not a wait for something

    def _note(self, problem: str) -> None:
        if problem != self._problem:
            log.error(
                "cannot seal the box's keys for the replica (a standby promoted now would "
                "need every device to trust a new CA): %s",
                problem,
            )
            self._problem = problem
