"""Backups the box makes by itself: nightly into a folder on a USB stick or network share,
with their own retention; and the record of the last backup (last-backup.json) /admin shows.

The schedule is `data_dir/backup-schedule.json` and its passphrase `data_dir/backup-passphrase`
(first line, as `backup --passphrase-file` reads it), both 0600: the box must read it to run
unattended. The target folder holds MARKER, made when the schedule is set: a folder without
it is a stick that is not mounted (its empty mount point on the SD card), and nothing is
written there. Imports nothing of the web.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checkin_appliance import agefile, audit, lines, system
from checkin_appliance.config import Config
from checkin_appliance.domain import Actor, InvalidInput, format_time
from checkin_appliance.errors import ErrorCode
from checkin_appliance.files import write_atomically

if TYPE_CHECKING:
    from checkin_appliance import backup
    from checkin_appliance.store import Store

log = logging.getLogger(__name__)

SCHEDULE_FILE = "backup-schedule.json"
PASSPHRASE_FILE = "backup-passphrase"
# Made in the target folder at set-up; a run refuses a folder without it (see the module).
MARKER = ".checkin-appliance-backups"
# The files the schedule writes and its retention may delete; nothing else in the folder.
OWN_BACKUP = re.compile(r"\Acheckin-backup-\d{8}-\d{6}\.tar\.age\Z")
MIN_PASSPHRASE_CHARS = agefile.MIN_PASSPHRASE_CHARS  # as the CLI's backup requires
MAX_PASSPHRASE_CHARS = 1024
MAX_KEEP_DAYS = 3650
MAX_KEEP_COPIES = 1000
SCHEDULE_ACTOR = Actor(None, "backup_schedule")


# --- the schedule -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    folder: str  # absolute; holds MARKER
    at: str  # "HH:MM", the clinic's local time (settings' time_zone)
    keep_days: int | None = None  # exactly one of the two is set
    keep_copies: int | None = None

    def public(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def time_of_day(self) -> time:
        hours, minutes = self.at.split(":")
        return time(int(hours), int(minutes))


def parse_schedule(body: dict[str, Any]) -> tuple[Schedule, bytes | None]:
    """A schedule from a request body (folder, at, keep_days or keep_copies, passphrase),
    checked except for the folder itself (check_folder); raises InvalidInput."""
    from checkin_appliance import errors

    def bad(message: str, code: ErrorCode = errors.BACKUP_SCHEDULE_INVALID) -> InvalidInput:
        return InvalidInput(message, code)

    unknown = set(body) - {"folder", "at", "keep_days", "keep_copies", "passphrase"}
    if unknown:
        raise bad(f"Unknown field: {sorted(unknown)[0]}.")
    folder = body.get("folder")
    if not isinstance(folder, str) or not folder.startswith("/") or "\x00" in folder:
        raise bad("folder must be an absolute path.", errors.BACKUP_FOLDER_INVALID)
    if len(folder) > 1024:
        raise bad("folder is too long.", errors.BACKUP_FOLDER_INVALID)
    at = body.get("at")
    if not isinstance(at, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
        raise bad("at must be a time of day, HH:MM.")
    keep_days, keep_copies = body.get("keep_days"), body.get("keep_copies")
    if (keep_days is None) == (keep_copies is None):
        raise bad("Give exactly one of keep_days and keep_copies.")
    for value, top in ((keep_days, MAX_KEEP_DAYS), (keep_copies, MAX_KEEP_COPIES)):
        if value is not None and (type(value) is not int or not 1 <= value <= top):
            raise bad(f"keep_days or keep_copies must be a whole number from 1 to {top}.")
    passphrase = body.get("passphrase")
    if passphrase is not None:
        passphrase = check_passphrase(passphrase)
    return Schedule(os.path.normpath(folder), at, keep_days, keep_copies), passphrase


def check_passphrase(value: Any) -> bytes:
    """A passphrase to encrypt with: text of MIN_PASSPHRASE_CHARS or more, one line."""
    from checkin_appliance import errors

    if (
        not isinstance(value, str)
        or not MIN_PASSPHRASE_CHARS <= len(value) <= MAX_PASSPHRASE_CHARS
        or "\n" in value
        or "\r" in value
        or "\x00" in value
    ):
        raise InvalidInput(
            f"The passphrase must be {MIN_PASSPHRASE_CHARS} to {MAX_PASSPHRASE_CHARS} "
            "characters on one line.",
            errors.BACKUP_PASSPHRASE_INVALID,
        )
    try:
        return value.encode("utf-8")
    except UnicodeError as exc:  # a lone surrogate
        raise InvalidInput("The passphrase is not text.", errors.BACKUP_PASSPHRASE_INVALID) from exc


def check_folder(folder: Path, data_dir: Path) -> None:
    """The folder exists, is a folder and takes files: the marker is written (or kept). Not
    the root, and not in the data directory: backups there die with the SD card."""
    from checkin_appliance import errors

    resolved = folder.resolve()
    if resolved == Path("/") or resolved.is_relative_to(data_dir.resolve()):
        raise InvalidInput(
            "Choose a folder on another disk, not / or the data directory.",
            errors.BACKUP_FOLDER_INVALID,
        )
    if not folder.is_dir():
        raise InvalidInput(
            "The backup folder does not exist (is the disk mounted?).", errors.BACKUP_FOLDER_INVALID
        )
    try:
        write_atomically(folder / MARKER, b"checkin-appliance backups are written here\n", 0o644)
    except OSError as exc:
        raise InvalidInput(
            f"Cannot write in the backup folder: {exc.strerror or exc}.",
            errors.BACKUP_FOLDER_INVALID,
        ) from exc


def load_schedule(data_dir: Path) -> tuple[Schedule, bytes] | None:
    """The saved schedule and its passphrase, or None when none is set (or it is unreadable:
    then the log says so once per look)."""
    try:
        raw = json.loads((data_dir / SCHEDULE_FILE).read_bytes())
        schedule = Schedule(**raw)
        passphrase = (data_dir / PASSPHRASE_FILE).read_bytes().split(b"\n", 1)[0]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.error("the backup schedule in %s cannot be read: %s", data_dir, exc)
        return None
    return schedule, passphrase


def save_schedule(data_dir: Path, schedule: Schedule, passphrase: bytes) -> None:
    write_atomically(data_dir / PASSPHRASE_FILE, passphrase + b"\n", 0o600)
    write_atomically(data_dir / SCHEDULE_FILE, json.dumps(schedule.public()).encode(), 0o600)


def remove_schedule(data_dir: Path) -> None:
    for name in (SCHEDULE_FILE, PASSPHRASE_FILE):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).unlink()


def last_due(schedule: Schedule, now: datetime, time_zone: str) -> datetime:
    """The most recent scheduled moment at or before `now`."""
    tz = lines.zone(time_zone)
    local = now.astimezone(tz)
    moment = datetime.combine(local.date(), schedule.time_of_day, tzinfo=tz)
    if moment > local:
        moment = datetime.combine(local.date() - timedelta(days=1), schedule.time_of_day, tz)
    return moment


def next_due(schedule: Schedule, now: datetime, time_zone: str) -> datetime:
    moment = last_due(schedule, now, time_zone)
    return datetime.combine(moment.date() + timedelta(days=1), moment.timetz())


def describe(data_dir: Path, now: datetime, time_zone: str) -> dict[str, Any]:
    """What /admin shows: the schedule (never its passphrase), its next run, whether the
    target is there, and the last backup's record."""
    loaded = load_schedule(data_dir)
    recorded = system.last_backup(data_dir)
    last = None if recorded is None else asdict(recorded)
    if loaded is None:
        return {"schedule": None, "last": last}
    schedule = loaded[0]
    folder = Path(schedule.folder)
    return {
        "schedule": schedule.public(),
        "next_run": format_time(next_due(schedule, now, time_zone)),
        "target_ready": (folder / MARKER).is_file(),
        # Informative: a folder that is no mount point may be the SD card's own.
        "mount_point": os.path.ismount(folder),
        "last": last,
    }


# --- running one --------------------------------------------------------------------------


class TargetMissing(Exception):
    """The folder or its marker is not there: the stick or share is not mounted."""


def write_to_folder(
    config: Config, schedule: Schedule, passphrase: bytes, now: datetime
) -> tuple[backup.BackupResult, list[str]]:
    """One backup into the schedule's folder, then its retention; (result, deleted names).
    Raises TargetMissing or backup.BackupError; deletes nothing unless the backup was made."""
    folder = Path(schedule.folder)
    if not (folder / MARKER).is_file():
        raise TargetMissing(
            f"{folder} is not mounted (no {MARKER} in it); nothing was written. Plug in the "
            "disk, or set the schedule again to use this folder"
        )
    from checkin_appliance import backup  # tarfile and the rest: only when backing up

    try:
        result = backup.backup(config, f"{folder}/", passphrase=passphrase)
    finally:
        agefile.forget_keys()
    return result, prune(folder, schedule, now, keep=result.path.name)


def prune(folder: Path, schedule: Schedule, now: datetime, *, keep: str) -> list[str]:
    """Our own backups beyond the schedule's retention; never `keep` (the one just made)."""
    own = sorted(
        (e for e in os.scandir(folder) if OWN_BACKUP.match(e.name) and e.is_file()),
        key=lambda e: e.name,
        reverse=True,  # newest first: the name is its date and time
    )
    if schedule.keep_copies is not None:
        going = own[schedule.keep_copies :]
    else:
        assert schedule.keep_days is not None
        cutoff = (now - timedelta(days=schedule.keep_days)).timestamp()
        going = [e for e in own if e.stat().st_mtime < cutoff]
    deleted = []
    for entry in going:
        if entry.name == keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            deleted.append(entry.name)
    return deleted


class NightlyBackups:
    """The schedule's runs: `tick` from the server's timer, `run_now` from /admin. One run at a
    time; each is audited and recorded in last-backup.json, a failure too."""

    def __init__(self, config: Config, store: Store, time_zone: Any) -> None:
        self._config = config
        self._store = store
        self._time_zone = time_zone  # a callable: the settings' zone now
        # One backup or restore check at a time, the web's too: each scrypt (agefile) takes
        # 256 MiB for its moment; two at once would be half of a small Pi's memory.
        self.one_at_a_time = asyncio.Lock()
        self.done_at: datetime | None = None  # the last scheduled moment handled

    def schedule(self) -> tuple[Schedule, bytes] | None:
        return load_schedule(self._config.data_dir)

    async def tick(self, now: datetime) -> dict[str, Any] | None:
        """The scheduled run, if its moment has passed since the last look; the first look
        (at start) only notes the time: a box that was off at the time does not catch up."""
        loaded = self.schedule()
        if loaded is None:
            return None
        due = last_due(loaded[0], now, self._time_zone())
        if self.done_at is None:
            self.done_at = now
            return None
        if due <= self.done_at:
            return None
        self.done_at = now
        return await self.run(loaded, now, SCHEDULE_ACTOR)

    async def run(
        self, loaded: tuple[Schedule, bytes], now: datetime, actor: Actor
    ) -> dict[str, Any]:
        from checkin_appliance import backup

        schedule, passphrase = loaded
        async with self.one_at_a_time:
            try:
                result, deleted = await asyncio.to_thread(
                    write_to_folder, self._config, schedule, passphrase, now
                )
            except (TargetMissing, backup.BackupError, OSError) as exc:
                message = getattr(exc, "message", None) or str(exc)
                log.error("backup to %s failed: %s", schedule.folder, message)
                outcome: dict[str, Any] = {"ok": False, "where": schedule.folder, "error": message}
                details: dict[str, Any] = {"error": message}
            else:
                log.info("%s; %d old backup(s) deleted", result.summary(), len(deleted))
                outcome = {"ok": True, "where": result.path, "size_bytes": result.size_bytes}
                details = {
                    "file": result.path.name,
                    "bytes": result.size_bytes,
                    "encrypted": True,
                    "deleted": len(deleted),
                } | dataclasses.asdict(result.counts)
            record = await asyncio.to_thread(
                functools.partial(system.record_backup, self._config.data_dir, at=now, **outcome)
            )
            await self._store.record_audit(
                audit.BACKUP, actor, {"where": "folder", "ok": outcome["ok"]} | details
            )
            return record
