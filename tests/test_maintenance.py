"""Startup check: a damaged database starts the box in maintenance mode, not a crash loop.

Each test makes a real database with the app, stops it, damages a copy of the file on
purpose (verified with an independent sqlite3 connection) and starts the app on the copy.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient

from checkin_appliance.app import create_app
from checkin_appliance.config import Config
from checkin_appliance.domain import Role
from checkin_appliance.web.errors import DAMAGED
from tests.conftest import PASSWORD, Clinic, StartClinic

DAMAGED_BODY = {"error": DAMAGED, "code": "database_damaged"}
PATIENTS = ("Ada", "Grace", "Edsger")


async def _make_database(start_clinic: StartClinic) -> Clinic:
    """A clinic with three waiting patients (checked in with idempotency keys), then stopped."""
    clinic = await start_clinic()
    for number, name in enumerate(PATIENTS):
        resp = await clinic.client.post(
            "/api/patients/",
            json={"fname": name},
            headers={**clinic.headers(Role.FORM), "Idempotency-Key": f"kiosk-{number}"},
        )
        assert resp.status == 201, await resp.text()
    await clinic.client.close()  # runs the app's cleanup: the store closes, the WAL is folded in
    return clinic


def _damaged_copy(config: Config, tmp_path: Path, damage: Callable[[Path], None]) -> Config:
    copy = Config(data_dir=tmp_path / "damaged")
    shutil.copytree(config.data_dir, copy.data_dir)
    assert not copy.db_path.with_name(copy.db_path.name + "-wal").exists()
    damage(copy.db_path)
    return copy


def _overwrite_table_page(table: str) -> Callable[[Path], None]:
    def damage(db: Path) -> None:
        with sqlite3.connect(db) as conn:
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            (root,) = conn.execute(
                "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
        conn.close()
        with db.open("r+b") as f:
            # The table is small, so its root page is its only page: overwrite its header
            # and the middle of its cell area.
            f.seek((root - 1) * page_size)
            f.write(b"\xa5" * 16)
            f.seek((root - 1) * page_size + page_size // 2)
            f.write(b"\x5a" * 512)

    return damage


def _overwrite_header(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(b"this is not an SQLite file at all" + b"\0" * 67)


def _integrity(db: Path) -> str:
    """What an independent connection says about the file (or the error it raises)."""
    try:
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"error: {exc}"
    return "; ".join(str(row[0]) for row in rows)


async def _start(aiohttp_client: Any, config: Config) -> TestClient:
    return await aiohttp_client(create_app(config), cookie_jar=DummyCookieJar())


async def _assert_writes_refused(client: TestClient, clinic: Clinic) -> None:
    form, doctor, admin = (clinic.headers(role) for role in (Role.FORM, Role.DOCTOR, Role.ADMIN))
    attempts = [
        ("POST", "/api/patients/", {"fname": "Barbara"}, form),
        ("POST", "/api/doctors/", {"action": "call_next"}, doctor),
        ("POST", "/api/login/", {"token": clinic.tokens[Role.DOCTOR], "password": PASSWORD}, {}),
        ("POST", "/api/setup/", {"code": "ABCD-EFGH", "password": "a new admin password"}, {}),
        ("PATCH", "/api/settings/", {"display_names": "full"}, admin),
        ("POST", "/api/credentials/", {"role": "form", "label": "Kiosk 2"}, admin),
        ("POST", f"/api/credentials/{clinic.tokens[Role.FORM]}/deactivate/", {}, admin),
    ]
    for method, path, body, headers in attempts:
        resp = await client.request(method, path, json=body, headers=headers)
        assert resp.status == 503, (method, path, await resp.text())
        assert await resp.json() == DAMAGED_BODY, (method, path)


async def _assert_healthz_damaged(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 503
    body = await resp.json()
    assert body["db"] == "damaged"
    assert body["status"] == "error"
    assert body.keys() == {"status", "db", "version", "error", "code"}
    assert body["code"] == "database_damaged"


def _assert_logged_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("maintenance mode" in m and "restore" in m for m in errors), errors


async def test_damaged_table_page_starts_in_maintenance_mode_and_reads_still_work(
    start_clinic: StartClinic,
    aiohttp_client: Any,
    config: Config,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clinic = await _make_database(start_clinic)
    damaged = _damaged_copy(config, tmp_path, _overwrite_table_page("idempotency_keys"))
    assert _integrity(damaged.db_path) != "ok"
    assert _integrity(config.db_path) == "ok"

    caplog.set_level(logging.ERROR)
    client = await _start(aiohttp_client, damaged)
    _assert_logged_what_to_do(caplog)
    await _assert_healthz_damaged(client)
    await _assert_writes_refused(client, clinic)

    # The damage is elsewhere: the queue (and the sessions it is read with) still answer.
    resp = await client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 200, await resp.text()
    assert [item["patient"]["fname"] for item in await resp.json()] == list(PATIENTS)
    # Nothing was written to the damaged file: it is exactly as broken as before.
    await client.close()
    assert _integrity(damaged.db_path) != "ok"


async def test_unreadable_file_starts_in_maintenance_mode_with_clear_errors(
    start_clinic: StartClinic,
    aiohttp_client: Any,
    config: Config,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clinic = await _make_database(start_clinic)
    damaged = _damaged_copy(config, tmp_path, _overwrite_header)
    assert "not a database" in _integrity(damaged.db_path)

    caplog.set_level(logging.ERROR)
    client = await _start(aiohttp_client, damaged)
    _assert_logged_what_to_do(caplog)
    await _assert_healthz_damaged(client)
    await _assert_writes_refused(client, clinic)

    # Nothing can be read from this file: reads answer the same clear JSON, never a 500.
    for path in ("/api/queue/", "/api/stats/today/"):
        resp = await client.get(path, headers=clinic.headers(Role.DOCTOR))
        assert resp.status == 503, (path, await resp.text())
        assert await resp.json() == DAMAGED_BODY
    # Pages still load (they read nothing from the database).
    resp = await client.get("/")
    assert resp.status < 500
