"""/api/backups/…: a backup downloaded now, the nightly schedule to a folder, and restore by
upload (admin). The work is in backup.py, backup_schedule.py and restore_upload.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from checkin_appliance import (
    agefile,
    audit,
    backup_schedule,
    errors,
    restore_upload,
    system,
)
from checkin_appliance.backup_schedule import NightlyBackups
from checkin_appliance.domain import Actor, InvalidInput, Role, TooLarge, parse_time
from checkin_appliance.store import lock
from checkin_appliance.web.api import read_body
from checkin_appliance.web.auth import require
from checkin_appliance.web.errors import ApiError, json_response
from checkin_appliance.web.keys import CONFIG, RECEPTION, STORE

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# How much of a backup one write to the browser (or the upload's file) holds.
CHUNK = 256 * 1024
# An uploaded backup larger than this is refused (413) as it arrives: 1,000 patients with
# photos are about 120 MB.
UPLOAD_LIMIT = 4 * 1024**3
PASSPHRASE_PART_LIMIT = 4096
# Between the restore's answer and the shutdown: the page gets its 202 first.
RESTART_DELAY = 0.5
NIGHTLY_INTERVAL = 30.0  # seconds between looks at the clock (as the retention purge)


@dataclasses.dataclass
class Backups:
    """The backups' state in the app: the nightly runs, the upload limit (tests shrink it),
    and how a staged restore restarts the server (set by server.py; None in tests)."""

    nightly: NightlyBackups
    upload_limit: int = UPLOAD_LIMIT
    restart: Callable[[], None] | None = None
    restart_requested: bool = False


BACKUPS = web.AppKey("backups", Backups)


def setup(app: web.Application) -> None:
    """Routes, state and jobs; called by create_app before the database's cleanup_ctx (the
    staged restore goes in place first), `setup_after_database` after it."""
    config, store, reception = app[CONFIG], app[STORE], app[RECEPTION]
    app[BACKUPS] = Backups(NightlyBackups(config, store, lambda: reception.settings.time_zone))
    app.add_routes(routes)
    app.cleanup_ctx.append(_apply_staged_restore)


def setup_after_database(app: web.Application) -> None:
    app.cleanup_ctx.append(_nightly_job)


APPLIED = web.AppKey("restore_applied", dict)


async def _apply_staged_restore(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    info = None
    if (config.data_dir / restore_upload.PENDING).is_dir():
        with lock.hold(config.data_dir):  # DataDirInUse: another server holds it
            info = await asyncio.to_thread(restore_upload.apply_pending, config)
    await asyncio.to_thread(restore_upload.remove_leftover_uploads, config.data_dir)
    if info is not None:
        app[APPLIED] = info
    yield


async def _nightly_job(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]
    if APPLIED in app and not store.damaged:
        # In the restored database's trail: the old one went aside with its database.
        await store.record_audit(audit.RESTORE, Actor(None, "restore"), app[APPLIED])
    task = None if store.damaged else asyncio.create_task(_nightly(app))
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _nightly(app: web.Application) -> None:
    nightly = app[BACKUPS].nightly
    while True:
        try:
            await nightly.tick(parse_time(app[STORE].now()))
        except Exception:
            log.exception("the nightly backup failed; will retry")
        await asyncio.sleep(NIGHTLY_INTERVAL)


# --- download one now -----------------------------------------------------------------------


@routes.post("/api/backups/")
async def download_backup(request: web.Request) -> web.StreamResponse:
    """An encrypted backup, made into a private temp file of the data directory and streamed;
    the file is unlinked once open, so nothing stays whatever happens to the download."""
    from checkin_appliance import backup  # tarfile and the rest: only when backing up

    caller = await require(request, Role.ADMIN)
    body = await read_body(request)
    if set(body) - {"passphrase"}:
        raise InvalidInput("Send only the passphrase.", errors.BACKUP_PASSPHRASE_INVALID)
    passphrase = backup_schedule.check_passphrase(body.get("passphrase"))
    config = request.app[CONFIG]
    target = restore_upload.download_path(config.data_dir)
    try:
        async with request.app[BACKUPS].nightly.one_at_a_time:
            try:
                result = await asyncio.to_thread(
                    backup.backup, config, target, passphrase=passphrase
                )
            finally:
                agefile.forget_keys()
        f = await asyncio.to_thread(open, result.path, "rb")
    except backup.BackupError as exc:
        await _record(request, ok=False, size=0, error=exc.message)
        await request.app[STORE].record_audit(
            audit.BACKUP, caller.actor, {"where": "download", "ok": False, "error": exc.message}
        )
        raise ApiError(errors.BACKUP_FAILED, exc.message) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    with f:
        await _record(request, ok=True, size=result.size_bytes, error=None)
        await request.app[STORE].record_audit(
            audit.BACKUP,
            caller.actor,
            {"where": "download", "ok": True, "bytes": result.size_bytes, "encrypted": True}
            | dataclasses.asdict(result.counts),
        )
        name = backup.default_backup_name(encrypted=True)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{name}"',
                "Content-Length": str(result.size_bytes),
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response


async def _record(request: web.Request, *, ok: bool, size: int, error: str | None) -> None:
    await asyncio.to_thread(
        functools.partial(
            system.record_backup,
            request.app[CONFIG].data_dir,
            ok=ok,
            where="download",
            size_bytes=size,
            error=error,
        )
    )


# --- the nightly schedule -------------------------------------------------------------------


@routes.get("/api/backups/schedule/")
async def get_schedule(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    return json_response(await _schedule_answer(request), headers={"Cache-Control": "no-store"})


@routes.put("/api/backups/schedule/")
async def put_schedule(request: web.Request) -> web.Response:
    """Sets the schedule; the passphrase is needed the first time, kept after."""
    caller = await require(request, Role.ADMIN)
    schedule, passphrase = backup_schedule.parse_schedule(await read_body(request))
    config = request.app[CONFIG]
    if passphrase is None:
        current = backup_schedule.load_schedule(config.data_dir)
        if current is None:
            raise InvalidInput(
                "A passphrase is needed to set the schedule.", errors.BACKUP_PASSPHRASE_INVALID
            )
        passphrase = current[1]
    await asyncio.to_thread(backup_schedule.check_folder, Path(schedule.folder), config.data_dir)
    await asyncio.to_thread(backup_schedule.save_schedule, config.data_dir, schedule, passphrase)
    await request.app[STORE].record_audit(
        audit.BACKUP_SCHEDULE_CHANGED, caller.actor, schedule.public()
    )
    return json_response(await _schedule_answer(request))


@routes.delete("/api/backups/schedule/")
async def delete_schedule(request: web.Request) -> web.Response:
    """No more nightly backups; the passphrase the box kept is deleted."""
    caller = await require(request, Role.ADMIN)
    await asyncio.to_thread(backup_schedule.remove_schedule, request.app[CONFIG].data_dir)
    await request.app[STORE].record_audit(
        audit.BACKUP_SCHEDULE_CHANGED, caller.actor, {"folder": None}
    )
    return json_response(await _schedule_answer(request))


@routes.post("/api/backups/run/")
async def run_now(request: web.Request) -> web.Response:
    """The scheduled backup now; 503 backup_target_missing when the disk is not there."""
    caller = await require(request, Role.ADMIN)
    nightly = request.app[BACKUPS].nightly
    loaded = nightly.schedule()
    if loaded is None:
        raise ApiError(errors.BACKUP_NOT_SCHEDULED, "No backup folder is set.")
    record = await nightly.run(loaded, parse_time(request.app[STORE].now()), caller.actor)
    if not record["ok"]:
        missing = not (Path(loaded[0].folder) / backup_schedule.MARKER).is_file()
        code = errors.BACKUP_TARGET_MISSING if missing else errors.BACKUP_FAILED
        raise ApiError(code, record["error"])
    return json_response(record)


async def _schedule_answer(request: web.Request) -> dict[str, Any]:
    now = parse_time(request.app[STORE].now())
    time_zone = request.app[RECEPTION].settings.time_zone
    return await asyncio.to_thread(
        backup_schedule.describe, request.app[CONFIG].data_dir, now, time_zone
    )


# --- restore by upload ----------------------------------------------------------------------


@routes.post("/api/backups/restore/")
async def restore_by_upload(request: web.Request) -> web.Response:
    """multipart/form-data: `passphrase`, then `file`. The file is streamed to the data
    directory (413 over the limit), checked and unpacked; the server then restarts and puts
    it in place before it opens the database."""
    from checkin_appliance import backup

    caller = await require(request, Role.ADMIN)
    backups = request.app[BACKUPS]
    config = request.app[CONFIG]
    upload = restore_upload.upload_path(config.data_dir)
    try:
        passphrase = await _receive(request, upload, backups.upload_limit)
        requested_by = {"credential_id": caller.actor.credential_id}
        try:
            async with backups.nightly.one_at_a_time:
                info = await asyncio.to_thread(
                    restore_upload.stage, config, upload, passphrase, requested_by
                )
        except backup.BackupError as exc:
            raise ApiError(errors.RESTORE_REFUSED, exc.message) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            upload.unlink()
    detail = {k: v for k, v in info.items() if k != "requested_by"}
    await request.app[STORE].record_audit(audit.RESTORE, caller.actor, {"staged": True} | detail)
    restarting = backups.restart is not None
    if restarting:
        backups.restart_requested = True
        asyncio.get_running_loop().call_later(RESTART_DELAY, backups.restart)
    return json_response({**detail, "restarting": restarting}, status=202)


async def _receive(request: web.Request, upload: Path, limit: int) -> bytes:
    """The `passphrase` part and the `file` part (streamed into `upload`, 0600), in either
    order; other parts are refused."""
    if request.content_type != "multipart/form-data":
        raise ApiError(errors.UNSUPPORTED_MEDIA_TYPE, "Send multipart/form-data.")
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise TooLarge("The backup is larger than the box takes.", errors.RESTORE_TOO_LARGE)
    passphrase: bytes | None = None
    received = False
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name not in ("passphrase", "file"):
                raise InvalidInput("Send a passphrase and a file.", errors.FORM_MALFORMED)
            if part.name == "file" and not received:
                await _stream_to(part, upload, limit)
                received = True
            elif part.name == "passphrase" and passphrase is None:
                raw = await part.read_chunk(PASSPHRASE_PART_LIMIT + 1)
                if len(raw) > PASSPHRASE_PART_LIMIT or await part.read_chunk(1):
                    raise InvalidInput(
                        "The passphrase is too long.", errors.BACKUP_PASSPHRASE_INVALID
                    )
                passphrase = raw
            else:
                raise InvalidInput("Send one passphrase and one file.", errors.FORM_MALFORMED)
    except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
        raise InvalidInput("The multipart body is malformed.", errors.FORM_MALFORMED) from exc
    if not passphrase:
        raise InvalidInput("The passphrase is empty.", errors.BACKUP_PASSPHRASE_INVALID)
    if not received:
        raise InvalidInput("Send the backup as the file part.", errors.FORM_MALFORMED)
    return passphrase


async def _stream_to(part: BodyPartReader, path: Path, limit: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        size = 0
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge("The backup is larger than the box takes.", errors.RESTORE_TOO_LARGE)
            await asyncio.to_thread(f.write, chunk)


def request_restart() -> None:
    """What server.py sets as Backups.restart: the clean stop SIGTERM gives."""
    signal.raise_signal(signal.SIGTERM)
