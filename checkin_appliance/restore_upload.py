"""Restore from /admin: an uploaded backup is checked and unpacked while the server runs, kept
as data_dir/.restore-pending/, and put in place at the next start, before the database opens.

The checks are the CLI restore's own (backup.py: passphrase and every chunk, manifest, every
SHA-256, integrity_check, schema not newer than this program); the swap is its swap, so the
current files go to before-restore-<time>/ as they do there. Imports nothing of the web.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from checkin_appliance import agefile
from checkin_appliance.config import Config
from checkin_appliance.files import TEMP_SUFFIX, fsync_directory, write_atomically

log = logging.getLogger(__name__)

PENDING = ".restore-pending"
INFO = "restore.json"  # in PENDING: what the restore is, for the audit row after it
UPLOAD_PREFIX = ".restore-upload-"
DOWNLOAD_PREFIX = ".backup-download-"
# The exit status that asks systemd (Restart=on-failure) to start us again: under systemd a
# re-exec in place would follow the STOPPING=1 the shutdown sent.
RESTART_STATUS = 75


def upload_path(data_dir: Path) -> Path:
    return data_dir / f"{UPLOAD_PREFIX}{secrets.token_hex(4)}{TEMP_SUFFIX}"


def download_path(data_dir: Path) -> Path:
    return data_dir / f"{DOWNLOAD_PREFIX}{secrets.token_hex(4)}{TEMP_SUFFIX}"


def remove_leftover_uploads(data_dir: Path) -> None:
    """Uploads and stagings a killed server left (each holds a copy of patient data)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(data_dir):
            ours = entry.name.startswith((UPLOAD_PREFIX, DOWNLOAD_PREFIX))
            if ours and entry.name.endswith(TEMP_SUFFIX):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


def stage(
    config: Config, upload: Path, passphrase: bytes, requested_by: dict[str, Any]
) -> dict[str, Any]:
    """Checks `upload` as `restore` does and unpacks it into PENDING (replacing one staged
    before); returns what it is. Raises backup.BackupError; the current data is untouched."""
    from checkin_appliance import backup  # tarfile and the rest: only when restoring

    data_dir = config.data_dir
    staging = upload.with_name(upload.name + ".d" + TEMP_SUFFIX)
    # Private helpers of backup.py on purpose: one set of checks for the CLI and the web.
    opener = backup._opener(upload, passphrase, allow_unencrypted=False)
    try:
        staging.mkdir(mode=0o700)
        manifest = backup._unpack(upload, staging, opener)
        counts, missing = backup._check_unpacked(staging, manifest)
        info = {
            "backup_created_at": str(manifest.get("created_at", "?")),
            "backup_app_version": str(manifest.get("app_version", "?")),
            "patients": counts.patients,
            "photos": counts.photos,
            "credentials": counts.credentials,
            "missing_photos": missing,
            "requested_by": requested_by,
        }
        write_atomically(staging / INFO, json.dumps(info).encode())
        backup._fsync_tree(staging)
        pending = data_dir / PENDING
        if pending.exists():
            shutil.rmtree(pending)
        os.rename(staging, pending)
        fsync_directory(data_dir)
    except OSError as exc:
        raise backup.BackupError(f"cannot unpack the backup: {backup._reason(exc)}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        agefile.forget_keys()
    return info


def apply_pending(config: Config) -> dict[str, Any] | None:
    """At start, with the data directory's lock held and the database not open: the staged
    restore, put in place; what it was (with `moved_aside`), or None when none waits.

    A swap that fails leaves the current data (backup._swap_in undoes its renames) and the
    staging is kept as .restore-failed-<time>/ for a look, so a start never loops on it."""
    pending = config.data_dir / PENDING
    if not pending.is_dir():
        return None
    from checkin_appliance import backup

    try:
        info = json.loads((pending / INFO).read_bytes())
        aside, _ = backup._swap_in(config, pending)
    except (OSError, ValueError) as exc:
        failed = config.data_dir / f".restore-failed-{datetime.now():%Y%m%d-%H%M%S}"
        with contextlib.suppress(OSError):
            os.rename(pending, failed)
        log.error("the uploaded restore could not be put in place (%s); kept in %s", exc, failed)
        return None
    shutil.rmtree(pending, ignore_errors=True)
    info["moved_aside"] = aside.name if aside else None
    log.warning(
        "restored the uploaded backup made %s; the previous data is in %s",
        info.get("backup_created_at"),
        aside,
    )
    return info


def restart() -> int:
    """After a clean shutdown, start again so the staged restore is applied: under systemd
    (NOTIFY_SOCKET) exit RESTART_STATUS and let it restart us; otherwise (make run, a
    terminal) replace this process with the same command line."""
    log.warning("restarting to put the uploaded backup in place")
    if os.environ.get("NOTIFY_SOCKET"):
        return RESTART_STATUS
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, *sys.argv[1:]] if getattr(sys, "frozen", False) else sys.orig_argv
    os.execv(sys.executable, argv)  # noqa: S606 - our own command line, no shell
    return RESTART_STATUS  # not reached
