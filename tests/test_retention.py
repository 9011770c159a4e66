"""The retention purge: a month of visits, then the names, answers and photos past their
time are gone from every byte the box keeps (database with its photos, WAL, a fresh backup, the
feed's replay), and the statistics of those days are what they were."""

from __future__ import annotations

import asyncio
import io
import json
import random
import sqlite3
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from checkin_appliance import backup, cli
from checkin_appliance.domain import Audience, Role, format_time
from checkin_appliance.web.keys import CONFIG, RECEPTION, STORE
from tests.conftest import Clinic, StartClinic, wait_until

START = datetime(2026, 10, 1, tzinfo=UTC)  # day 0 of the month of visits (clinic in UTC)
DAYS = 30
VISITS_A_DAY = 8
PURGE_DAY = 30  # the purge runs on this day's morning
FORM = {"preset": "custom", "fields": [{"key": "emergency_contact", "required": False}]}
BOUNDARY = "retention-test-boundary-7c2d"
OPEN_VISIT = (3, 0)  # (day, visit): called and left open, so it is never purged


def name_marker(day: int, visit: int) -> str:
    return f"MARKER-{day:02d}{visit}-ZQX"


def answer_marker(day: int, visit: int) -> str:
    return f"CONTACT-{day:02d}{visit}-QZX"


def small_jpeg(seed: int) -> bytes:
    """Random pixels: each photo's stored bytes are its own."""
    img = Image.frombytes("RGB", (48, 48), random.Random(seed).randbytes(48 * 48 * 3))
    out = io.BytesIO()
    img.save(out, "JPEG")
    return out.getvalue()


def multipart(fields: dict[str, str], image: bytes) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
        f'filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
        + image
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class Clock:
    """The store's clock, moved by hand."""

    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> str:
        return format_time(self.at)


async def set_settings(clinic: Clinic, **changes: Any) -> tuple[int, Any]:
    resp = await clinic.client.patch(
        "/api/settings/", json=changes, headers=clinic.headers(Role.ADMIN)
    )
    return resp.status, await resp.json()


async def check_in(clinic: Clinic, day: int, visit: int, photo: bool) -> None:
    fields = {"fname": name_marker(day, visit), "emergency_contact": answer_marker(day, visit)}
    headers = {**clinic.headers(Role.FORM), "Idempotency-Key": f"k-{day}-{visit}"}
    if photo:
        headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
        resp = await clinic.client.post(
            "/api/patients/", data=multipart(fields, small_jpeg(day * 100 + visit)), headers=headers
        )
    else:
        resp = await clinic.client.post("/api/patients/", json=fields, headers=headers)
    assert resp.status == 201, await resp.text()


async def doctor(clinic: Clinic, body: dict[str, Any], key: str | None = None) -> Any:
    headers = clinic.headers(Role.DOCTOR) | ({"Idempotency-Key": key} if key else {})
    resp = await clinic.client.post("/api/doctors/", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def a_month_of_visits(clinic: Clinic, clock: Clock) -> None:
    """Each day: VISITS_A_DAY check-ins (every third with a photo), each called, then done,
    a no-show; one visit (OPEN_VISIT) stays called."""
    for day in range(DAYS):
        for visit in range(VISITS_A_DAY):
            clock.at = START + timedelta(days=day, hours=9, minutes=7 * visit)
            await check_in(clinic, day, visit, photo=visit % 3 == 0)
        for visit in range(VISITS_A_DAY):
            clock.at = START + timedelta(days=day, hours=10, minutes=5 * visit)
            called = await doctor(clinic, {"action": "call_next"})
            assert called["patient"]["fname"] == name_marker(day, visit)
            if (day, visit) == OPEN_VISIT:
                continue
            clock.at += timedelta(minutes=2 + visit % 4)
            outcome = ("done", "done", "no_show")[visit % 3]
            # A key: its stored answer holds the patient's name until the purge drops it.
            await doctor(
                clinic,
                {"action": outcome, "patient_id": called["patient"]["id"]},
                key=f"d-{day}-{visit}",
            )


def statistics(db_path: Path) -> Any:
    """What the statistics read, whole: every visit's row and every transition, and the
    per-day counts, waits and outcomes made from them."""
    with sqlite3.connect(db_path) as db:
        entries = db.execute("SELECT * FROM queue_entries ORDER BY id").fetchall()
        transitions = db.execute("SELECT * FROM visit_transitions ORDER BY id").fetchall()
        per_day = db.execute(
            "SELECT substr(check_in_time, 1, 10) AS day, count(*), status, called_by,"
            " sum((julianday(called_at) - julianday(check_in_time)) * 86400)"
            " FROM queue_entries GROUP BY day, status, called_by ORDER BY day, status"
        ).fetchall()
        moves = db.execute(
            "SELECT substr(at, 1, 10) AS day, action, to_status, credential_id, count(*)"
            " FROM visit_transitions GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        ).fetchall()
    return entries, transitions, per_day, moves


async def charts(clinic: Clinic) -> list[Any]:
    """What the statistics pages show for the month, through the real API."""
    answers = []
    for kind in ("arrivals", "times", "outcomes"):
        resp = await clinic.client.get(
            f"/api/stats/{kind}/",
            params={
                "from": START.date().isoformat(),
                "to": (START + timedelta(days=DAYS)).date().isoformat(),
            },
            headers=clinic.headers(Role.ADMIN),
        )
        assert resp.status == 200, await resp.text()
        answers.append(await resp.json())
    return answers


def stored_photos(db_path: Path) -> dict[str, bytes]:
    """The photos the database holds, by name."""
    with sqlite3.connect(db_path) as db:
        return dict(db.execute("SELECT name, data FROM photos ORDER BY name").fetchall())


def raw_files(clinic: Clinic) -> dict[str, bytes]:
    """Every byte the box keeps: the database (photos included), its -wal and -shm, and
    anything left in the folder photos were files in before."""
    data_dir = clinic.app[CONFIG].data_dir
    db_path = clinic.app[CONFIG].db_path
    return {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in data_dir.rglob("*")
        if path.is_file() and (path.name.startswith(db_path.name) or "media" in path.parts)
    }


def fresh_backup(clinic: Clinic, out: Path) -> dict[str, bytes]:
    """A backup taken now, unpacked: member name -> bytes."""
    result = backup.backup(clinic.app[CONFIG], out)
    with tarfile.open(result.path) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def found(needles: dict[str, bytes], haystacks: dict[str, bytes]) -> set[str]:
    return {
        label for label, needle in needles.items() if any(needle in h for h in haystacks.values())
    }


def marks(day: int, visit: int) -> dict[str, bytes]:
    return {
        f"name {day}/{visit}": name_marker(day, visit).encode(),
        f"answer {day}/{visit}": answer_marker(day, visit).encode(),
    }


async def replayed(clinic: Clinic) -> str:
    """Everything a feed client asking for the whole log (since=0) is sent, as text."""
    reception = clinic.app[RECEPTION]
    sent = [m async for m in reception.backlog(0, True, Audience.STAFF, all_events=True)]
    return json.dumps(sent)


async def test_a_purge_forgets_names_answers_and_photos_past_their_time(
    clinic: Clinic, tmp_path: Path
) -> None:
    store = clinic.app[STORE]
    clock = Clock()
    store.set_clock(clock)
    # Names and answers kept 10 days after their day, photos 2.
    status, _ = await set_settings(
        clinic, intake_form=FORM, name_retention_days=10, photo_retention_days=2
    )
    assert status == 200
    await a_month_of_visits(clinic, clock)

    # The photos and their stored names, by visit: a slice of each file's coded pixels.
    with sqlite3.connect(clinic.app[CONFIG].db_path) as db:
        images = dict(
            db.execute("SELECT fname, image FROM patients WHERE image IS NOT NULL").fetchall()
        )
    files = stored_photos(clinic.app[CONFIG].db_path)
    assert len(images) == len(files) == DAYS * len(range(0, VISITS_A_DAY, 3))
    photo_marks = {
        fname: {f"photo {fname}": files[image][-400:-300], f"photo name {fname}": image.encode()}
        for fname, image in images.items()
    }

    def all_marks(day: int, visit: int) -> dict[str, bytes]:
        return marks(day, visit) | photo_marks.get(name_marker(day, visit), {})

    # The scan sees them before the purge (else it could never fail).
    before = raw_files(clinic) | fresh_backup(clinic, tmp_path / "before.tar")
    assert found(all_marks(0, 0), before) == set(all_marks(0, 0))
    assert name_marker(0, 0) in await replayed(clinic)
    stats = statistics(clinic.app[CONFIG].db_path)
    shown = await charts(clinic)
    assert shown[0]["current"]["total"] == DAYS * VISITS_A_DAY  # the charts see every visit

    clock.at = START + timedelta(days=PURGE_DAY, hours=3)
    resp = await clinic.client.post("/api/records/purge/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 200, await resp.text()
    purged = await resp.json()
    # Names: days 0-19 (before day 30 - 10), but the visit still waiting. Photos: days 0-27.
    assert purged["names"] == 20 * VISITS_A_DAY - 1
    assert purged["photos"] == 28 * len(range(0, VISITS_A_DAY, 3)) - 1
    assert purged["names_before"] == format_time(START + timedelta(days=20))
    assert purged["photos_before"] == format_time(START + timedelta(days=28))
    assert purged["events"] > 0 and purged["idempotency_keys"] > 0 and purged["compacted"]

    after = raw_files(clinic) | fresh_backup(clinic, tmp_path / "after.tar")
    feed = await replayed(clinic)
    for day in range(DAYS):
        for visit in range(VISITS_A_DAY):
            kept = day >= 20 or (day, visit) == OPEN_VISIT
            expected_names = set(marks(day, visit)) if kept else set()
            photo = photo_marks.get(name_marker(day, visit), {})
            expected_photo = set(photo) if day >= 28 or (day, visit) == OPEN_VISIT else set()
            assert found(marks(day, visit), after) == expected_names, (day, visit)
            assert found(photo, after) == expected_photo, (day, visit)
            if not kept:
                assert name_marker(day, visit) not in feed
    assert not (clinic.app[CONFIG].db_path.parent / "checkin.db-wal").read_bytes()

    # The statistics of every day, purged or not, are what they were.
    assert statistics(clinic.app[CONFIG].db_path) == stats
    assert await charts(clinic) == shown  # and what the statistics pages show of them
    # One audit row, with counts and no name.
    with sqlite3.connect(clinic.app[CONFIG].db_path) as db:
        rows = db.execute("SELECT actor, detail FROM audit_log WHERE action = 'purge'").fetchall()
    assert len(rows) == 1 and json.loads(rows[0][1])["names"] == purged["names"]

    # Again: nothing more is due, and it says so.
    resp = await clinic.client.post("/api/records/purge/", headers=clinic.headers(Role.ADMIN))
    again = await resp.json()
    assert (again["names"], again["photos"], again["events"]) == (0, 0, 0)


async def test_the_server_purges_at_start_what_became_due_while_it_was_off(
    start_clinic: StartClinic,
) -> None:
    clinic = await start_clinic()
    long_ago = datetime.now(UTC) - timedelta(days=40)
    clock = Clock()
    clock.at = long_ago
    clinic.app[STORE].set_clock(clock)
    await set_settings(clinic, intake_form=FORM)
    for visit in range(3):
        await check_in(clinic, 0, visit, photo=True)
        called = await doctor(clinic, {"action": "call_next"})
        await doctor(clinic, {"action": "done", "patient_id": called["patient"]["id"]})
    db_path = clinic.app[CONFIG].db_path
    assert len(stored_photos(db_path)) == 3
    tokens = dict(clinic.tokens)
    await clinic.client.close()

    def names() -> list[str]:
        with sqlite3.connect(db_path) as db:
            return [row[0] for row in db.execute("SELECT fname FROM patients")]

    assert names() == [name_marker(0, v) for v in range(3)]
    await start_clinic(tokens=tokens)  # the real clock: 40 days later, past 30
    await wait_until(lambda: names() == ["", "", ""])
    await wait_until(lambda: not stored_photos(db_path))
    with sqlite3.connect(db_path) as db:
        (detail,) = db.execute(
            "SELECT detail FROM audit_log WHERE action = 'purge' AND actor IS NULL"
        ).fetchone()
    assert json.loads(detail)["names"] == 3


@pytest.mark.parametrize(
    "changes",
    [
        {"name_retention_days": -1},
        {"name_retention_days": 3651},
        {"photo_retention_days": "2"},
        {"photo_retention_days": 1.5},
        {"photo_retention_days": True},
        {"name_retention_days": None},
    ],
)
async def test_bad_retention_settings_are_refused_with_a_code(
    clinic: Clinic, changes: dict[str, Any]
) -> None:
    status, body = await set_settings(clinic, **changes)
    assert status == 400 and body["code"] == "setting_value_invalid"
    status, body = await set_settings(clinic, name_retention_days=0, photo_retention_days=3650)
    assert status == 200
    assert (body["name_retention_days"], body["photo_retention_days"]) == (0, 3650)


async def test_only_an_admin_purges_on_demand(clinic: Clinic) -> None:
    for role in (Role.DOCTOR, Role.FORM, Role.QUEUE):
        resp = await clinic.client.post("/api/records/purge/", headers=clinic.headers(role))
        assert resp.status == 403
    resp = await clinic.client.post("/api/records/purge/")
    assert resp.status == 401


async def test_the_cli_purges_on_demand(
    start_clinic: StartClinic, capsys: pytest.CaptureFixture[str]
) -> None:
    clinic = await start_clinic()
    clock = Clock()
    clock.at = datetime.now(UTC) - timedelta(days=31)
    clinic.app[STORE].set_clock(clock)
    for visit in range(2):
        await check_in(clinic, 0, visit, photo=True)
        called = await doctor(clinic, {"action": "call_next"})
        await doctor(clinic, {"action": "done", "patient_id": called["patient"]["id"]})
    data_dir = clinic.app[CONFIG].data_dir
    await clinic.client.close()

    assert await asyncio.to_thread(cli.main, ["purge", "--data-dir", str(data_dir)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["names"], printed["photos"], printed["compacted"]) == (2, 2, True)
    with sqlite3.connect(data_dir / "checkin.db") as db:
        assert db.execute("SELECT count(*) FROM patients WHERE fname != ''").fetchone() == (0,)
