"""An admin sets the box's clock: the server writes a validated request, the narrow helper
validates it again and sets the clock (here through an injected setter: never this
machine's clock), and the helper's systemd units verify."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checkin_appliance import clock_setting
from checkin_appliance.domain import InvalidInput, Role
from checkin_appliance.web.keys import CLOCK_HELPER, CONFIG
from tests.conftest import Clinic
from tests.test_packaging import unavailable

ROOT = Path(__file__).resolve().parent.parent
UNITS = ("checkin-appliance-clock.path", "checkin-appliance-clock.service")
ASKED = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [None, 5, "", "yesterday", "2026-12-06T09:30:00", "1970-01-01T00:00:00Z",
     "2150-01-01T00:00:00Z", "2026-12-06T09:30:00Z" + " " * 40],
)  # fmt: skip
def test_a_time_that_is_not_plausible_iso_with_a_zone_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        clock_setting.parse_requested(value)
    assert refused.value.code.code == "clock_time_invalid"


def test_the_time_is_read_in_any_zone_and_kept_in_utc() -> None:
    assert clock_setting.parse_requested("2026-12-06T10:30:00+01:00") == ASKED
    assert clock_setting.parse_requested("2026-12-06T09:30:00.000Z") == ASKED


def request_file(tmp_path: Path, **body: object) -> Path:
    path = tmp_path / clock_setting.REQUEST_FILE
    path.write_text(json.dumps({"to": "2026-12-06T09:30:00.000Z", "boottime": 100.0,
                                "by": 4, **body}))  # fmt: skip
    return path


def test_the_helper_sets_the_asked_time_plus_the_wait_and_removes_the_request(
    tmp_path: Path,
) -> None:
    path = request_file(tmp_path)
    set_to: list[datetime] = []
    moment = clock_setting.apply_request(
        path, setter=set_to.append, rtc=lambda: "no RTC", now_boottime=lambda: 103.5
    )
    assert set_to == [ASKED + timedelta(seconds=3.5)] and moment == set_to[0]
    assert not path.exists()


@pytest.mark.parametrize(
    ("body", "now", "why"),
    [
        ({"boottime": 100.0}, 161.0, "stale"),  # waited over a minute
        ({"boottime": 200.0}, 161.0, "stale"),  # from before a reboot
        ({"to": "1999-01-01T00:00:00Z"}, 101.0, "plausible"),
        ({"boottime": True}, 101.0, "number"),
        ({"by": "admin"}, 101.0, "credential"),
        ({"extra": 1}, 101.0, "not {to"),
    ],
)
def test_the_helper_refuses_what_the_server_would_not_write_and_drops_it(
    tmp_path: Path, body: dict[str, object], now: float, why: str
) -> None:
    path = request_file(tmp_path, **body)
    set_to: list[datetime] = []
    with pytest.raises(ValueError, match=why):
        clock_setting.apply_request(
            path, setter=set_to.append, rtc=lambda: "", now_boottime=lambda: now
        )
    assert set_to == [] and not path.exists()


async def test_without_a_helper_the_api_says_so_with_a_code(clinic: Clinic, tmp_path: Path) -> None:
    clinic.app[CLOCK_HELPER].units = (tmp_path / "none.path",)
    resp = await clinic.client.post(
        "/api/system/clock/", json={"time": "2026-12-06T09:30:00Z"},
        headers=clinic.headers(Role.ADMIN),
    )  # fmt: skip
    assert resp.status == 409
    assert (await resp.json())["code"] == "clock_helper_missing"
    state = await clinic.client.get("/api/system/clock/", headers=clinic.headers(Role.ADMIN))
    assert (await state.json())["settable"] is False


async def test_an_admin_request_reaches_the_helper_and_is_audited(
    clinic: Clinic, tmp_path: Path
) -> None:
    unit = tmp_path / "checkin-appliance-clock.path"
    unit.touch()
    clinic.app[CLOCK_HELPER].units = (unit,)
    for role in (Role.DOCTOR, Role.FORM):
        resp = await clinic.client.post(
            "/api/system/clock/", json={"time": "2026-12-06T09:30:00Z"},
            headers=clinic.headers(role),
        )  # fmt: skip
        assert resp.status == 403
    bad = await clinic.client.post(
        "/api/system/clock/", json={"time": "tomorrow"}, headers=clinic.headers(Role.ADMIN)
    )
    assert (bad.status, (await bad.json())["code"]) == (400, "clock_time_invalid")
    request_path = clinic.app[CONFIG].data_dir / clock_setting.REQUEST_FILE
    assert not request_path.exists()

    resp = await clinic.client.post(
        "/api/system/clock/", json={"time": "2026-12-06T10:30:00+01:00"},
        headers=clinic.headers(Role.ADMIN),
    )  # fmt: skip
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["settable"] is True
    set_to: list[datetime] = []
    clock_setting.apply_request(
        request_path,
        setter=set_to.append,
        rtc=lambda: "",
        now_boottime=lambda: clock_setting.boottime() + 1.0,
    )
    assert len(set_to) == 1 and timedelta(0) < set_to[0] - ASKED < timedelta(seconds=10)
    audit = await clinic.client.get(
        "/api/audit/?action=clock_set", headers=clinic.headers(Role.ADMIN)
    )
    [entry] = (await audit.json())["rows"]
    assert entry["detail"]["to"] == "2026-12-06T09:30:00.000Z"


def test_the_helper_units_verify_and_keep_the_capability_narrow(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        unavailable("systemd-analyze is missing (Debian package: systemd)")
    assert tool is not None
    stand_in = tmp_path / "checkin-appliance"  # verify wants ExecStart's program to exist
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    for name in UNITS:
        text = (ROOT / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/usr/bin/checkin-appliance ", f"{stand_in} "))
    verify = subprocess.run(
        [tool, "verify", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    service = (ROOT / "systemd" / UNITS[1]).read_text().splitlines()
    assert "CapabilityBoundingSet=CAP_SYS_TIME" in service
    assert "AmbientCapabilities=CAP_SYS_TIME" in service
    main = (ROOT / "systemd" / "checkin-appliance.service").read_text().splitlines()
    assert "ProtectClock=yes" in main
    assert not any("CAP_SYS_TIME" in line for line in main)
