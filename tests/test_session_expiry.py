"""Sessions end when unused (idle) and, for staff, a fixed time after sign-in (absolute)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType

from checkin_appliance import app as app_module
from checkin_appliance.config import Config, ConfigError, load_config
from checkin_appliance.domain import Role, format_time, parse_time
from checkin_appliance.hub import CLOSE_ACCESS_REVOKED
from checkin_appliance.web.keys import ACCESS, CONFIG
from tests.conftest import Clinic
from tests.test_pages import cookie_header, page_login

HOUR, DAY = 3600, 24 * 3600


def newest_session(db: Path) -> sqlite3.Row:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM sessions ORDER BY id DESC LIMIT 1").fetchone()


def set_newest_session(clinic: Clinic, **columns: str) -> None:
    """Time passing, played by the database; the server forgets what it cached (it would
    after a second anyway, or sooner when it notices the file changed)."""
    assignments = ", ".join(f"{name} = ?" for name in columns)
    with sqlite3.connect(clinic.app[CONFIG].db_path) as conn:
        conn.execute(
            f"UPDATE sessions SET {assignments} WHERE id = (SELECT max(id) FROM sessions)",  # noqa: S608
            tuple(columns.values()),
        )
    clinic.app[ACCESS].forget_sessions()


def from_now(seconds: float) -> str:
    return format_time(datetime.now(UTC) + timedelta(seconds=seconds))


def seconds_ahead(text: str | None) -> float:
    assert text is not None
    return (parse_time(text) - datetime.now(UTC)).total_seconds()


@pytest.mark.parametrize(
    ("role", "idle", "absolute"),
    [
        (Role.DOCTOR, 12 * HOUR, 7 * DAY),
        (Role.ADMIN, 12 * HOUR, 7 * DAY),
        (Role.FORM, 400 * DAY, None),
        (Role.QUEUE, 400 * DAY, None),
    ],
)
async def test_page_sessions_get_the_lifetimes_of_their_role(
    clinic: Clinic, config: Config, role: Role, idle: int, absolute: int | None
) -> None:
    resp = await page_login(clinic, role)
    assert int(resp.cookies["checkin_session"]["max-age"]) == idle
    session = newest_session(config.db_path)
    assert seconds_ahead(session["access_expires"]) == pytest.approx(idle, abs=60)
    if absolute is None:
        assert session["ends_at"] is None
    else:
        assert seconds_ahead(session["ends_at"]) == pytest.approx(absolute, abs=60)


async def test_an_api_session_ends_with_its_refresh_token(clinic: Clinic, config: Config) -> None:
    await clinic.login(clinic.tokens[Role.DOCTOR])
    session = newest_session(config.db_path)
    assert session["ends_at"] == session["refresh_expires"]
    assert seconds_ahead(session["access_expires"]) == pytest.approx(config.access_ttl, abs=60)


async def test_an_idle_staff_session_ends(clinic: Clinic, config: Config) -> None:
    cookie = cookie_header(await page_login(clinic, Role.DOCTOR))
    assert (await clinic.client.get("/doctor", headers=cookie, allow_redirects=False)).status == 200
    set_newest_session(clinic, access_expires=from_now(-1))  # 12 h unused
    page = await clinic.client.get("/doctor", headers=cookie, allow_redirects=False)
    assert page.headers["Location"].startswith("/login")
    assert (await clinic.client.get("/api/queue/", headers=cookie)).status == 401


async def test_a_session_in_constant_use_still_ends_at_its_absolute_end(
    clinic: Clinic, config: Config
) -> None:
    cookie = cookie_header(await page_login(clinic, Role.DOCTOR))
    set_newest_session(clinic, ends_at=from_now(-1))  # used all week: the week is up
    assert seconds_ahead(newest_session(config.db_path)["access_expires"]) > HOUR
    page = await clinic.client.get("/doctor", headers=cookie, allow_redirects=False)
    assert page.headers["Location"].startswith("/login")
    resp = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 200  # another session of the same credential is not touched


async def test_sliding_never_goes_past_the_absolute_end(clinic: Clinic, config: Config) -> None:
    cookie = cookie_header(await page_login(clinic, Role.DOCTOR))
    end = from_now(HOUR)
    set_newest_session(clinic, access_expires=from_now(60), ends_at=end)
    assert (await clinic.client.get("/doctor", headers=cookie, allow_redirects=False)).status == 200
    assert newest_session(config.db_path)["access_expires"] == end


async def test_a_page_in_use_slides_its_idle_expiry(clinic: Clinic, config: Config) -> None:
    cookie = cookie_header(await page_login(clinic, Role.DOCTOR))
    set_newest_session(clinic, access_expires=from_now(11 * HOUR))  # an hour ago
    page = await clinic.client.get("/doctor", headers=cookie, allow_redirects=False)
    assert int(page.cookies["checkin_session"]["max-age"]) == 12 * HOUR
    assert seconds_ahead(newest_session(config.db_path)["access_expires"]) > 11.9 * HOUR


async def test_an_open_feed_closes_when_its_session_reaches_its_end(
    clinic: Clinic, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "SESSION_END_INTERVAL", 0.5)
    ws = await clinic.subscribe(Role.DOCTOR)
    others = await clinic.subscribe(Role.QUEUE)
    with sqlite3.connect(config.db_path) as conn:
        conn.execute(
            "UPDATE sessions SET ends_at = ? WHERE access_hash = "
            "(SELECT access_hash FROM sessions s JOIN credentials c ON c.id = s.credential_id "
            " WHERE c.role = 'doctor' ORDER BY s.id LIMIT 1)",
            (from_now(1.5),),
        )
    msg = await ws.receive(timeout=6)  # no outside change after this: the periodic look ends it
    assert msg.type is WSMsgType.CLOSE and msg.data == CLOSE_ACCESS_REVOKED
    assert not others.closed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("staff_session_max_days = 0", {"staff_session_max_days": 0}),
        ("device_session_max_days = 30", {"device_session_max_days": 30}),
        ("staff_session_idle_hours = 1", {"staff_session_idle_hours": 1}),
    ],
)
def test_session_limits_are_configurable(tmp_path: Path, text: str, expected: Any) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    config = load_config(path)
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize(
    "text",
    [
        "staff_session_max_days = -1",
        "staff_session_idle_hours = 0",
        "device_session_max_days = 'x'",
    ],
)
def test_bad_session_limits_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="session"):
        load_config(path)
