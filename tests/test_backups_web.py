"""Backups from /admin: a download restored by the CLI, the nightly schedule (fake clock, a tmp
folder for the stick), its retention and an unmounted target, and restore by upload applied
after the real server restarts itself."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from checkin_appliance import agefile, backup_schedule, restore_upload, system
from checkin_appliance.domain import Role, format_time
from checkin_appliance.web.backups import BACKUPS
from checkin_appliance.web.keys import STORE
from tests.conftest import Clinic
from tests.serverproc import http_json, run_cli, running

PASSPHRASE = "correct horse battery staple"
RESTART_TIMEOUT = 30.0
ADMIN_PW = "plum kettle orbit sundial"


def _names(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT fname FROM patients")}


async def _download(clinic: Clinic, passphrase: str = PASSPHRASE) -> aiohttp.ClientResponse:
    return await clinic.client.post(
        "/api/backups/", json={"passphrase": passphrase}, headers=clinic.headers(Role.ADMIN)
    )


def _last_backup(data_dir: Path) -> dict[str, Any] | None:
    recorded = system.last_backup(data_dir)
    return None if recorded is None else asdict(recorded)


def _audit(clinic: Clinic, action: str) -> list[dict[str, Any]]:
    db = clinic.app[STORE].path
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT detail FROM audit_log WHERE action = ?", (action,))
        return [json.loads(row[0]) if row[0] else {} for row in rows]


async def test_downloaded_backup_restores_with_the_cli(clinic: Clinic, tmp_path: Path) -> None:
    for name in ("Ana Download", "Bo Download"):
        await clinic.check_in(name)
    resp = await _download(clinic)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="checkin-backup-')
    assert resp.headers["Content-Disposition"].endswith('.tar.age"')
    body = await resp.read()
    assert body.startswith(b"age-encryption.org/v1") and b"Download" not in body
    data_dir = clinic.app[STORE].path.parent
    # Nothing of the download stays in the data directory.
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".backup-download-")]
    last = _last_backup(data_dir)
    assert last is not None and last["ok"] and last["bytes"] == len(body)
    assert last["where"] == "download" and last["error"] is None
    assert [d["where"] for d in _audit(clinic, "backup")] == ["download"]
    # The running server keeps no key derived from the passphrase once the backup is made.
    assert agefile._scrypt.cache_info().currsize == 0

    saved = tmp_path / "saved.tar.age"
    saved.write_bytes(body)
    target = tmp_path / "restored"
    result = run_cli(
        "restore", str(saved), "--data-dir", str(target), "--passphrase-stdin", stdin=PASSPHRASE
    )
    assert result.returncode == 0, result.stderr
    assert _names(target / "checkin.db") == {"Ana Download", "Bo Download"}


async def test_download_needs_an_admin_and_a_long_passphrase(clinic: Clinic) -> None:
    resp = await _download(clinic, "too short")
    assert resp.status == 400
    assert (await resp.json())["code"] == "backup_passphrase_invalid"
    resp = await clinic.client.post(
        "/api/backups/", json={"passphrase": PASSPHRASE}, headers=clinic.headers(Role.DOCTOR)
    )
    assert resp.status == 403


def _set_clock(clinic: Clinic, moment: datetime) -> None:
    clinic.app[STORE].set_clock(lambda: format_time(moment))


async def _schedule(clinic: Clinic, folder: Path, **keep: int) -> aiohttp.ClientResponse:
    return await clinic.client.put(
        "/api/backups/schedule/",
        json={"folder": str(folder), "at": "21:30", "passphrase": PASSPHRASE, **keep},
        headers=clinic.headers(Role.ADMIN),
    )


def _own(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if backup_schedule.OWN_BACKUP.match(p.name))


async def test_nightly_backup_runs_at_its_time_and_keeps_n_copies(
    clinic: Clinic, tmp_path: Path
) -> None:
    stick = tmp_path / "usb"
    stick.mkdir()
    # Older backups of ours, and a file of someone else's that must stay.
    for day in (1, 2, 3):
        (stick / f"checkin-backup-2026110{day}-213000.tar.age").write_bytes(b"old")
    (stick / "holiday-photos.tar.age").write_bytes(b"not ours")
    resp = await _schedule(clinic, stick, keep_copies=2)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["schedule"]["at"] == "21:30" and answer["target_ready"] is True
    assert "passphrase" not in json.dumps(answer)
    data_dir = clinic.app[STORE].path.parent
    assert os.stat(data_dir / backup_schedule.PASSPHRASE_FILE).st_mode & 0o777 == 0o600

    await clinic.check_in("Night Owl")
    nightly = clinic.app[BACKUPS].nightly
    nightly.done_at = None
    evening = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)  # the settings' zone is UTC
    assert await nightly.tick(evening) is None  # the first look only notes the time
    assert await nightly.tick(evening + timedelta(minutes=29)) is None
    assert len(_own(stick)) == 3
    record = await nightly.tick(evening + timedelta(minutes=31))
    assert record is not None and record["ok"], record
    assert await nightly.tick(evening + timedelta(minutes=40)) is None  # once a night
    kept = _own(stick)
    assert len(kept) == 2 and "checkin-backup-20261103-213000.tar.age" in kept
    new = stick / next(name for name in kept if not name.startswith("checkin-backup-202611"))
    assert (stick / "holiday-photos.tar.age").exists()
    assert record["where"] == str(new) and record["bytes"] == new.stat().st_size
    assert _last_backup(data_dir) == record

    restored = tmp_path / "restored"
    result = run_cli(
        "restore", str(new), "--data-dir", str(restored), "--passphrase-stdin", stdin=PASSPHRASE
    )
    assert result.returncode == 0, result.stderr
    assert _names(restored / "checkin.db") == {"Night Owl"}
    assert [d["ok"] for d in _audit(clinic, "backup")] == [True]


async def test_keep_days_deletes_only_our_older_backups(tmp_path: Path) -> None:
    now = datetime(2026, 11, 26, 21, 30, tzinfo=UTC)
    for name, age in (
        ("checkin-backup-20261101-213000.tar.age", 25),
        ("checkin-backup-20261120-213000.tar.age", 6),
        ("notes-20261101.tar.age", 25),
    ):
        path = tmp_path / name
        path.write_bytes(b"x")
        stamp = (now - timedelta(days=age)).timestamp()
        os.utime(path, (stamp, stamp))
    schedule = backup_schedule.Schedule(str(tmp_path), "21:30", keep_days=7)
    deleted = backup_schedule.prune(tmp_path, schedule, now, keep="none")
    assert deleted == ["checkin-backup-20261101-213000.tar.age"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkin-backup-20261120-213000.tar.age",
        "notes-20261101.tar.age",
    ]


async def test_an_unmounted_stick_is_an_error_and_nothing_is_written(
    clinic: Clinic, tmp_path: Path
) -> None:
    stick = tmp_path / "usb"
    stick.mkdir()
    assert (await _schedule(clinic, stick, keep_days=30)).status == 200
    # Unplugged: the mount point is an empty folder of the box's own disk again.
    (stick / backup_schedule.MARKER).unlink()
    resp = await clinic.client.post("/api/backups/run/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 503
    assert (await resp.json())["code"] == "backup_target_missing"
    assert list(stick.iterdir()) == []
    last = _last_backup(clinic.app[STORE].path.parent)
    assert last is not None and not last["ok"] and "not mounted" in last["error"]
    resp = await clinic.client.get("/api/backups/schedule/", headers=clinic.headers(Role.ADMIN))
    assert (await resp.json())["target_ready"] is False
    assert [d["ok"] for d in _audit(clinic, "backup")] == [False]


async def test_schedule_refuses_a_missing_folder_and_bad_values(
    clinic: Clinic, tmp_path: Path
) -> None:
    resp = await _schedule(clinic, tmp_path / "nowhere", keep_days=3)
    assert (await resp.json())["code"] == "backup_folder_invalid"
    for unsafe in (Path("/"), clinic.app[STORE].path.parent / "media"):
        resp = await _schedule(clinic, unsafe, keep_days=3)
        assert (await resp.json())["code"] == "backup_folder_invalid"
    assert not Path("/", backup_schedule.MARKER).exists()
    resp = await _schedule(clinic, tmp_path, keep_days=3, keep_copies=3)
    assert (await resp.json())["code"] == "backup_schedule_invalid"
    resp = await clinic.client.post("/api/backups/run/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 409 and (await resp.json())["code"] == "backup_not_scheduled"


def _restore_form(data: bytes, passphrase: str = PASSPHRASE) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("passphrase", passphrase)
    form.add_field("file", data, filename="b.tar.age", content_type="application/octet-stream")
    return form


async def test_restore_upload_refuses_a_wrong_passphrase_and_an_oversized_file(
    clinic: Clinic,
) -> None:
    await clinic.check_in("Kept Here")
    body = await (await _download(clinic)).read()
    admin = clinic.headers(Role.ADMIN)
    resp = await clinic.client.post(
        "/api/backups/restore/", data=_restore_form(body, "wrong passphrase!!"), headers=admin
    )
    assert resp.status == 400 and (await resp.json())["code"] == "restore_refused"
    clinic.app[BACKUPS].upload_limit = len(body) - 1
    resp = await clinic.client.post(
        "/api/backups/restore/", data=_restore_form(body), headers=admin
    )
    assert resp.status == 413 and (await resp.json())["code"] == "restore_too_large"
    data_dir = clinic.app[STORE].path.parent
    assert not (data_dir / restore_upload.PENDING).exists()
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".restore-upload-")]


def _upload(base_url: str, access: str, body: bytes) -> tuple[int, Any]:
    import requests

    resp = requests.post(
        f"{base_url}/api/backups/restore/",
        files={"passphrase": (None, PASSPHRASE), "file": ("b.tar.age", body)},
        headers={"Authorization": f"Bearer {access}"},
        timeout=30,
    )
    return resp.status_code, resp.json()


def _download_from(base_url: str, access: str) -> bytes:
    import requests

    resp = requests.post(
        f"{base_url}/api/backups/",
        json={"passphrase": PASSPHRASE},
        headers={"Authorization": f"Bearer {access}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.content


def _check_in(base_url: str, access: str, name: str) -> None:
    status, body = http_json(
        "POST", f"{base_url}/api/patients/", {"fname": name}, {"Authorization": f"Bearer {access}"}
    )
    assert status == 201, body


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_restore_by_upload_is_applied_after_the_server_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server (and its re-exec) runs this checkout's code, whatever is installed.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    data_dir = tmp_path / "data"
    with running(tmp_path, data_dir) as server:
        admin = server.login(server.create_token("admin", "Admin", ADMIN_PW), ADMIN_PW)
        _check_in(server.base_url, admin, "Before Backup")
        body = _download_from(server.base_url, admin)
        _check_in(server.base_url, admin, "After Backup")
        pid = server.proc.pid
        status, answer = _upload(server.base_url, admin, body)
        assert status == 202, answer
        assert answer["restarting"] is True and answer["patients"] == 1
        # The same process (re-executed in place) comes back with the backup's data.
        deadline = time.monotonic() + RESTART_TIMEOUT
        while (data_dir / restore_upload.PENDING).exists():
            assert time.monotonic() < deadline, server.describe()
            assert server.proc.poll() is None, server.describe()
            time.sleep(0.1)
        server.wait_healthy(RESTART_TIMEOUT)
        assert server.proc.pid == pid and server.proc.poll() is None
        status, queue = http_json(
            "GET", f"{server.base_url}/api/queue/", headers={"Authorization": f"Bearer {admin}"}
        )
        assert status == 200, queue
        assert [item["patient"]["fname"] for item in queue] == ["Before Backup"]
    (aside,) = data_dir.glob("before-restore-*")
    assert "After Backup" in _names(aside / "checkin.db")
    with sqlite3.connect(f"file:{data_dir / 'checkin.db'}?mode=ro", uri=True) as conn:
        details = [
            json.loads(d)
            for (d,) in conn.execute("SELECT detail FROM audit_log WHERE action = 'restore'")
        ]
    assert len(details) == 1 and details[0]["moved_aside"] == aside.name
