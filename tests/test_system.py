"""GET /api/system/ (issue 19, item 17): the box's health for /admin's System section."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from checkin_appliance import system
from checkin_appliance.config import Config
from checkin_appliance.domain import Role, format_time
from checkin_appliance.store import Store
from checkin_appliance.web.keys import STORE, SYSTEM
from tests.conftest import Clinic
from tests.serverproc import run_cli

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


async def status(clinic: Clinic) -> dict:
    resp = await clinic.client.get("/api/system/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 200, await resp.text()
    return await resp.json()


def codes(body: dict) -> list[str]:
    return [warning["code"] for warning in body["warnings"]]


async def test_only_an_admin_sees_the_system(clinic: Clinic) -> None:
    for role in (Role.FORM, Role.QUEUE, Role.DOCTOR):
        resp = await clinic.client.get("/api/system/", headers=clinic.headers(role))
        assert resp.status == 403
    assert (await clinic.client.get("/api/system/")).status == 401


async def test_the_figures_of_a_fresh_box(clinic: Clinic, config: Config) -> None:
    clinic.app[STORE].set_clock(lambda: format_time(NOW))
    body = await status(clinic)
    assert body["version"]
    assert body["uptime_seconds"] >= 0
    assert body["clock"] == {
        "now": "2026-12-06T10:00:00.000Z",
        "time_zone": "UTC",
        "local": "2026-12-06T10:00:00+00:00",
    }
    assert body["disk"]["free_bytes"] > 0 and body["disk"]["state"] in ("ok", "low")
    database = body["database"]
    assert database["ok"] is True and database["problem"] is None
    assert database["db_bytes"] == config.db_path.stat().st_size > 0
    assert database["wal_bytes"] >= 0
    assert body["certificate"] == {"mode": "off", "not_after": None}
    assert body["last_backup"] is None
    assert "backup_never" in codes(body)


async def test_last_backup_and_its_warnings(clinic: Clinic, config: Config) -> None:
    clinic.app[STORE].set_clock(lambda: format_time(NOW))
    system.record_backup(
        config.data_dir, ok=True, where="/media/usb/b.tar.age", size_bytes=1234, at=NOW
    )
    body = await status(clinic)
    assert body["last_backup"] == {
        "at": "2026-12-06T10:00:00.000Z",
        "ok": True,
        "where": "/media/usb/b.tar.age",
        "bytes": 1234,
        "error": None,
    }
    assert not {"backup_never", "backup_old", "backup_failed"} & set(codes(body))

    clinic.app[STORE].set_clock(lambda: format_time(NOW + timedelta(days=8)))
    body = await status(clinic)
    assert {"code": "backup_old", "at": "2026-12-06T10:00:00.000Z", "days": 8} in body["warnings"]

    system.record_backup(config.data_dir, ok=False, where="/media/usb/", error="disk full")
    body = await status(clinic)
    assert body["last_backup"]["ok"] is False and body["last_backup"]["error"] == "disk full"
    assert "backup_failed" in codes(body)


async def test_other_parts_add_their_warnings(clinic: Clinic) -> None:
    async def later() -> list[dict]:
        return [{"code": "certificate_names_changed"}]

    clinic.app[SYSTEM].add_warnings(lambda: [{"code": "clock_implausible"}])
    clinic.app[SYSTEM].add_warnings(later)
    clinic.app[SYSTEM].add_warnings(lambda: 1 / 0)  # a broken one hides nothing
    found = codes(await status(clinic))
    assert "clock_implausible" in found and "certificate_names_changed" in found


async def test_disk_warning_below_the_threshold(start_clinic, config: Config) -> None:  # type: ignore[no-untyped-def]
    huge = Config(data_dir=config.data_dir, disk_warn_free_mb=1024 * 1024 * 1024)
    clinic = await start_clinic(huge)
    body = await status(clinic)
    assert body["disk"]["state"] == "low"
    assert {"code": "disk_low", "free_bytes": body["disk"]["free_bytes"]} in body["warnings"]


def test_the_cli_backup_records_itself(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def make_database() -> None:
        store = Store(data / "checkin.db")
        await store.open()
        await store.close()

    asyncio.run(make_database())
    out = tmp_path / "b.tar"
    backup = ("backup", str(out), "--no-encryption", "--data-dir", str(data))
    assert run_cli(*backup).returncode == 0
    recorded = json.loads((data / system.LAST_BACKUP_FILE).read_text())
    assert recorded["ok"] is True and recorded["where"] == str(out)
    assert recorded["bytes"] == out.stat().st_size
    assert run_cli(*backup).returncode != 0  # it exists now
    failed = system.last_backup(data)
    assert failed is not None and failed.ok is False and "exists" in (failed.error or "")
