"""The box's own health: disk, database, certificate, last backup, and the warnings they raise.

Read by /healthz (the disk) and /admin's System section (GET /api/system/). Imports nothing of
the web. Other parts add their own warnings with `System.add_warnings` (e.g. the clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect as pyinspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from checkin_appliance.config import Config
from checkin_appliance.domain import format_time, parse_time
from checkin_appliance.files import write_atomically
from checkin_appliance.store import inspect

log = logging.getLogger(__name__)

LAST_BACKUP_FILE = "last-backup.json"
# Below this the disk is "full": a photo (~100-200 KB) and SQLite's pages no longer fit.
DISK_FULL_BELOW_BYTES = 2 * 1024 * 1024
BACKUP_OLD_AFTER = timedelta(days=7)
CERTIFICATE_WARN_BEFORE = timedelta(days=14)
# quick_check reads every page: at most once per this many seconds (measured in the README).
QUICK_CHECK_EVERY = 300.0

# A warning: {"code": "disk_low", ...values its text needs}; pages map the code to a text.
Warning = dict[str, Any]
WarningSource = Callable[[], list[Warning] | Awaitable[list[Warning]]]


# --- disk -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    state: str  # "ok", "low" (below disk_warn_free_mb) or "full"
    free_bytes: int
    total_bytes: int
    warn_below_bytes: int


def disk(path: Path, warn_free_mb: int) -> Disk:
    """The free space of the filesystem holding `path`, as an unprivileged user sees it."""
    st = os.statvfs(path)
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    warn = warn_free_mb * 1024 * 1024
    state = "full" if free < DISK_FULL_BELOW_BYTES else "low" if free < warn else "ok"
    return Disk(state, free, total, warn)


# --- last backup ----------------------------------------------------------------------


@dataclass(frozen=True)
class LastBackup:
    at: str  # UTC timestamp as the API writes them
    ok: bool
    where: str  # the file written (or the place it was meant for)
    bytes: int | None = None
    error: str | None = None  # one line, when not ok


def record_backup(
    data_dir: Path,
    *,
    ok: bool,
    where: str | Path,
    size_bytes: int | None = None,
    error: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Writes data_dir/last-backup.json after every backup (CLI, web or scheduled), failed
    ones too, and returns what it holds. Never raises: a backup from a read-only data
    directory (the rescue case) is still a backup; the file is then left as it was."""
    entry = LastBackup(format_time(at or datetime.now(UTC)), ok, str(where), size_bytes, error)
    if not (data_dir / "checkin.db").is_file():  # not a data directory: leave it alone
        return asdict(entry)
    path = data_dir / LAST_BACKUP_FILE
    try:
        write_atomically(path, json.dumps(asdict(entry)).encode(), 0o644)
        if os.geteuid() == 0:  # the CLI as root: the service (the folder's owner) replaces it
            owner = data_dir.stat()
            os.chown(path, owner.st_uid, owner.st_gid)
    except OSError as exc:
        log.warning("could not record the backup in %s: %s", path, exc.strerror)
    return asdict(entry)


def last_backup(data_dir: Path) -> LastBackup | None:
    """What record_backup wrote last; None when no backup was recorded (or the file is not
    one it wrote)."""
    try:
        raw = json.loads((data_dir / LAST_BACKUP_FILE).read_bytes())
        entry = LastBackup(
            at=raw["at"],
            ok=raw["ok"],
            where=raw["where"],
            bytes=raw.get("bytes"),
            error=raw.get("error"),
        )
        parse_time(entry.at)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s: %s", LAST_BACKUP_FILE, exc)
        return None
    if not isinstance(entry.ok, bool) or not isinstance(entry.where, str):
        return None
    return entry


# --- database -------------------------------------------------------------------------


def database_bytes(db_path: Path) -> dict[str, int]:
    """The database file and its write-ahead log (what the SD card holds for it)."""
    sizes = {}
    for key, path in (("db_bytes", db_path), ("wal_bytes", Path(f"{db_path}-wal"))):
        try:
            sizes[key] = path.stat().st_size
        except FileNotFoundError:
            sizes[key] = 0
    return sizes


@dataclass(frozen=True)
class DatabaseCheck:
    ok: bool
    problem: str | None  # SQLite's first lines, when not ok
    checked_at: str
    seconds: float


def quick_check(db_path: Path) -> DatabaseCheck:
    """PRAGMA quick_check on a read-only connection: in WAL mode it never blocks the writer."""
    started = time.monotonic()
    try:
        with inspect.read_only(db_path) as db:
            problem = inspect.integrity_problem(db, quick=True)
    except Exception as exc:  # a file SQLite cannot even open as a database
        problem = str(exc)
    seconds = time.monotonic() - started
    return DatabaseCheck(problem is None, problem, format_time(datetime.now(UTC)), seconds)


# --- certificate ----------------------------------------------------------------------


def certificate(config: Config) -> dict[str, Any]:
    """How HTTPS is served and when the certificate served ends (None: plain HTTP)."""
    mode = config.tls_mode
    if mode == "off":
        return {"mode": mode, "not_after": None}
    path = config.tls_cert if mode == "own" else config.tls_dir / "server.crt"
    assert path is not None
    from cryptography import x509  # only on a box that serves HTTPS (memory: tls.py)

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("cannot read the certificate %s: %s", path, exc)
        return {"mode": mode, "not_after": None}
    return {"mode": mode, "not_after": format_time(cert.not_valid_after_utc)}


# --- all of it ------------------------------------------------------------------------


class System:
    """The System section's state: when we started, the cached database check, and the
    warning sources other parts registered."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.monotonic()
        self._check: DatabaseCheck | None = None
        self._checked = 0.0
        self._checking: asyncio.Future[DatabaseCheck] | None = None
        self._sources: list[WarningSource] = []

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started

    def add_warnings(self, source: WarningSource) -> None:
        """`source()` returns (or awaits to) a list of warnings, each {"code": ..., ...}."""
        self._sources.append(source)

    def disk(self) -> Disk:
        return disk(self.config.data_dir, self.config.disk_warn_free_mb)

    async def database_check(self) -> DatabaseCheck:
        """quick_check, run in a thread at most once per QUICK_CHECK_EVERY seconds; callers
        at the same time share one run."""
        if self._check is not None and time.monotonic() - self._checked < QUICK_CHECK_EVERY:
            return self._check
        if self._checking is None:
            self._checking = asyncio.ensure_future(
                asyncio.to_thread(quick_check, self.config.db_path)
            )
        checking = self._checking
        try:
            self._check = await asyncio.shield(checking)
            self._checked = time.monotonic()
        finally:
            if self._checking is checking and checking.done():
                self._checking = None
        return self._check

    async def warnings(
        self,
        disk: Disk,
        backup: LastBackup | None,
        database_ok: bool,
        cert: dict[str, Any],
        now: datetime,
    ) -> list[Warning]:
        found: list[Warning] = []
        if disk.state != "ok":
            found.append({"code": f"disk_{disk.state}", "free_bytes": disk.free_bytes})
        if not database_ok:
            found.append({"code": "database_damaged"})
        found += backup_warnings(backup, now)
        if cert["not_after"] is not None:
            left = parse_time(cert["not_after"]) - now
            if left <= timedelta(0):
                found.append({"code": "certificate_expired", "not_after": cert["not_after"]})
            elif left <= CERTIFICATE_WARN_BEFORE:
                found.append(
                    {
                        "code": "certificate_expiring",
                        "not_after": cert["not_after"],
                        "days": left.days,
                    }
                )
        for source in self._sources:
            try:
                more = source()
                if pyinspect.isawaitable(more):
                    more = await more
                found += more
            except Exception:  # one broken source must not hide the others
                log.exception("a System warning source failed")
        return found


def backup_warnings(backup: LastBackup | None, now: datetime) -> list[Warning]:
    if backup is None:
        return [{"code": "backup_never"}]
    found: list[Warning] = []
    if not backup.ok:
        found.append({"code": "backup_failed", "at": backup.at})
    with contextlib.suppress(ValueError):
        age = now - parse_time(backup.at)
        if age > BACKUP_OLD_AFTER:
            found.append({"code": "backup_old", "at": backup.at, "days": age.days})
    return found
