"""import-original on the database and photos the original CheckIn wrote
(tests/fixtures/original-checkin/, a copy of ../shared/fixtures/original-checkin/, laid out
in tmp_path as the original's MEDIA_ROOT: the committed copy is never written).

The import runs as the real CLI (a subprocess) on the real data directory; the app then
serves what it brought (aiohttp_client), or a real server runs while it imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
import websockets
from PIL import Image

from checkin_appliance.config import Config
from checkin_appliance.domain import Role
from tests.conftest import Clinic, StartClinic
from tests.serverproc import Server, http_json, new_database, run_cli, running

FIXTURE = Path(__file__).parent / "fixtures" / "original-checkin"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
PASSWORDS = {c["token"]: c["password"] for c in EXPECTED["accesstokens"]}
ACTIVE = [c["token"] for c in EXPECTED["accesstokens"] if c["is_active"]]
INACTIVE = [c["token"] for c in EXPECTED["accesstokens"] if not c["is_active"]]
WEAK = ["59099095", "80381305"]  # password "admin"
DOCTOR = "09889520"  # leading zero: the token is text
NEW_PASSWORD = "violet tram harbour 42"
TIMEOUT = 10.0


@pytest.fixture
def original(tmp_path: Path) -> Path:
    """A writable copy of the original's files: db.sqlite3 and media/patient_images/ with
    every photo file under the name its row holds, byte for byte."""
    copy = tmp_path / "original"
    copy.mkdir()
    shutil.copy(FIXTURE / "db.sqlite3", copy / "db.sqlite3")
    sources = [FIXTURE / "media" / name for name in ("sample.jpg", "small.png")]
    by_md5 = {hashlib.md5(p.read_bytes()).hexdigest(): p for p in sources}  # noqa: S324
    for photo in EXPECTED["photos"]:
        target = copy / "media" / photo["image"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(by_md5[photo["md5"]], target)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return copy


def import_original(data_dir: Path, source: Path, *extra: str) -> Any:
    return run_cli(
        "import-original",
        "--db",
        str(source / "db.sqlite3"),
        "--media",
        str(source / "media"),
        "--data-dir",
        str(data_dir),
        *extra,
    )


def rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    path = data_dir / "checkin.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, params).fetchall()


def counts(data_dir: Path) -> dict[str, int]:
    tables = ("credentials", "patients", "queue_entries", "events", "original_imports", "photos")
    found = {t: rows(data_dir, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}  # noqa: S608
    audit = rows(data_dir, "SELECT count(*) AS n FROM audit_log WHERE action != 'login'")
    found["audit"] = audit[0]["n"]
    assert not (data_dir / "media").exists()  # photos go into the database, never files
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_original_credential(source: Path, token: str, password: str, role: str) -> None:
    with contextlib.closing(sqlite3.connect(source / "db.sqlite3")) as db, db:
        db.execute(
            "INSERT INTO management_accesstoken (token, role, created_at, updated_at, "
            "is_active, password) VALUES (?, ?, '2026-12-04 15:30:00.000001', "
            "'2026-12-04 15:30:00.000001', 1, ?)",
            (token, role, password),
        )


async def login(clinic: Clinic, token: Any, password: str) -> tuple[int, dict[str, Any]]:
    resp = await clinic.client.post("/api/login/", json={"token": token, "password": password})
    return resp.status, await resp.json()


@pytest.fixture
async def imported(original: Path, config: Config, start_clinic: StartClinic) -> Clinic:
    result = import_original(config.data_dir, original)
    assert result.returncode == 0, result.stderr
    return await start_clinic()


# --- what arrives ---------------------------------------------------------------------


async def test_every_active_token_signs_in_or_is_flagged(imported: Clinic) -> None:
    for token in ACTIVE:
        status, body = await login(imported, token, PASSWORDS[token])
        if token in WEAK:
            assert status == 403, body
            assert body["code"] == "password_reset_required"
            assert "access" not in body
        else:
            assert status == 200, (token, body)
            assert body["access"]
    for token in INACTIVE:
        status, body = await login(imported, token, PASSWORDS[token])
        assert (status, body["code"]) == (401, "bad_login")
    # A wrong password of a flagged credential is an ordinary failure: the flag tells nothing.
    status, body = await login(imported, WEAK[0], "not the password")
    assert (status, body["code"]) == (401, "bad_login")
    # Tokens are text: the number 9889520 is not 09889520.
    status, body = await login(imported, int(DOCTOR), PASSWORDS[DOCTOR])
    assert status in (400, 401) and body["code"] in ("token_invalid", "bad_login"), body


async def test_credentials_keep_role_and_state(imported: Clinic, config: Config) -> None:
    resp = await imported.client.get("/api/credentials/", headers=imported.headers(Role.ADMIN))
    listed = {c["token"]: c for c in await resp.json()}
    for original_credential in EXPECTED["accesstokens"]:
        mine = listed[original_credential["token"]]
        assert mine["role"] == original_credential["role"]
        assert mine["active"] is bool(original_credential["is_active"])
        assert mine["imported"] is True
        assert mine["password_reset_required"] is (original_credential["token"] in WEAK)
        assert mine["label"] == "Imported from CheckIn"
    # Our own credentials are neither.
    own = listed[imported.tokens[Role.ADMIN]]
    assert own["imported"] is False and own["password_reset_required"] is False
    # Passwords are hashed, never kept as typed.
    for row in rows(config.data_dir, "SELECT password_hash FROM credentials"):
        assert row["password_hash"].startswith("scrypt$")
        assert row["password_hash"] not in PASSWORDS.values()


async def test_patients_with_their_intake_answers(imported: Clinic, config: Config) -> None:
    stored = {
        row["original_key"].split("@")[0]: row["local_id"]
        for row in rows(config.data_dir, "SELECT * FROM original_imports WHERE kind='patient'")
    }
    assert len(stored) == 20
    by_id = {str(p["id"]): p for p in EXPECTED["patients"]}
    fields = [k for k in EXPECTED["patients"][0] if k not in ("id", "fname", "image", "wait_time")]
    fields = [k for k in fields if k not in ("created_at", "updated_at")]
    assert len(fields) == 21
    for original_id, local_id in stored.items():
        (row,) = rows(config.data_dir, "SELECT * FROM patients WHERE id = ?", (local_id,))
        expected = by_id[original_id]
        assert row["fname"] == expected["fname"].strip()
        intake = json.loads(row["intake"])
        assert intake == {k: expected[k] for k in fields}, original_id
        assert row["created_at"] == expected["created_at"].replace(" ", "T")[:23] + "Z"
    intake = {
        k: json.loads(
            rows(config.data_dir, "SELECT intake FROM patients WHERE id = ?", (v,))[0]["intake"]
        )
        for k, v in stored.items()
    }
    assert intake["18"]["dob"] == "1960-02-29"
    assert intake["14"]["street2"] is None and intake["14"]["medicaid_no"] is None
    assert intake["15"]["street2"] == "" and intake["15"]["medicaid_no"] == ""
    assert intake["19"]["emergency_contact"] is None and intake["19"]["state"] is None
    assert intake["12"]["city"] is None and intake["12"]["zip"] is None
    assert intake["13"]["ssn"] == "0000000001" and intake["13"]["medicaid_no"] == "000000000001"
    assert intake["20"]["phone"] == "8045550108" and intake["15"]["gender"] == "non_binary"
    # The staff detail view shows them as stored.
    resp = await imported.client.get(
        f"/api/patients/{stored['15']}/", headers=imported.headers(Role.DOCTOR)
    )
    detail = await resp.json()
    assert resp.status == 200, detail
    # Schema 8: the original's "completed" (it completed on call) is our "called".
    assert detail["fname"] == "Test Patient Three" and detail["status"] == "called"
    assert detail["intake"]["street2"] == "" and detail["intake"]["ssn"] == "0000000003"
    assert detail["image"] is not None
    (ann,) = rows(config.data_dir, "SELECT fname FROM patients WHERE fname LIKE 'Ann%'")
    assert ann["fname"] == "Ann   Lee"  # inner spaces kept, as the original shows them


async def test_queue_entries_and_order(imported: Clinic, config: Config) -> None:
    entries = rows(
        config.data_dir,
        "SELECT e.*, o.original_key FROM queue_entries e JOIN original_imports o "
        "ON o.kind = 'patient' AND o.local_id = e.patient_id",
    )
    by_patient = {int(e["original_key"].split("@")[0]): e for e in entries}
    assert sum(e["status"] == "called" for e in entries) == 15
    assert sum(e["status"] == "waiting" for e in entries) == 5
    for original_entry in EXPECTED["queue_entries"]:
        mine = by_patient[original_entry["patient_id"]]
        expected = {"completed": "called"}.get(original_entry["status"], original_entry["status"])
        assert mine["status"] == expected
        assert mine["check_in_time"][:19] == original_entry["check_in_time"].replace(" ", "T")[:19]
        if original_entry["status"] == "completed":
            assert mine["called_at"][:19] == original_entry["called_at"].replace(" ", "T")[:19]
            assert (
                mine["completed_at"][:19]
                == (original_entry["check_out_time"].replace(" ", "T")[:19])
            )
    status, body = await login(imported, DOCTOR, PASSWORDS[DOCTOR])
    assert status == 200, body
    resp = await imported.client.get(
        "/api/queue/", headers={"Authorization": f"Bearer {body['access']}"}
    )
    assert resp.status == 200
    queue = await resp.json()
    names = [item["patient"]["fname"] for item in queue]
    by_id = {p["id"]: p["fname"] for p in EXPECTED["patients"]}
    assert names == [by_id[i] for i in EXPECTED["waiting_order_patient_ids"]]
    # Tickets of the first line for the day of the import, in that order: a wall display
    # showing tickets tells them apart; the called ones never had one.
    assert [item["ticket"] for item in queue] == ["A-001", "A-002", "A-003", "A-004", "A-005"]
    # A patient checked in now queues behind them, with the next ticket.
    later = await imported.check_in("Later Patient")
    assert later["ticket"] == "A-006"
    resp = await imported.client.get("/api/queue/", headers=imported.headers(Role.DOCTOR))
    assert [item["patient"]["fname"] for item in await resp.json()][-1] == "Later Patient"
    # And call_next takes the first imported one.
    resp = await imported.call_next()
    assert (await resp.json())["patient"]["fname"] == "Test Patient Four"


async def test_photos_are_reencoded_and_served(imported: Clinic, config: Config) -> None:
    names = [
        r["image"]
        for r in rows(config.data_dir, "SELECT image FROM patients WHERE image IS NOT NULL")
    ]
    assert len(names) == 10 and len(set(names)) == 10
    originals = {p["md5"] for p in EXPECTED["photos"]}
    for name in names:
        assert name.endswith(".jpg") and len(name) == 36  # our random names
        resp = await imported.client.get(
            f"/media/patient_images/{name}", headers=imported.headers(Role.DOCTOR)
        )
        assert resp.status == 200
        data = await resp.read()
        assert (
            hashlib.md5(data, usedforsecurity=False).hexdigest() not in originals
        )  # re-encoded, not copied
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert img.format == "JPEG" and max(img.size) <= config.photo_max_side


# --- the summary, dry run, second run, failures --------------------------------------------


def test_summary_dry_run_and_second_run(original: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    db_before = digest(original / "db.sqlite3")
    dry = import_original(data_dir, original, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing was written" in dry.stdout
    assert "credentials would be imported: 9 (2 flagged for a password reset, 1 inactive)" in (
        dry.stdout
    )
    assert "patients would be imported: 20" in dry.stdout
    assert "5 waiting, 15 completed" in dry.stdout
    assert "photos: 10 (0 missing, 0 unreadable" in dry.stdout
    assert not data_dir.exists()  # not even an empty database is left behind

    first = import_original(data_dir, original)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == dry.stdout.replace("would be ", "").splitlines()[1:]
    after_first = counts(data_dir)
    assert after_first["credentials"] == 9 and after_first["patients"] == 20
    assert after_first["queue_entries"] == 20 and after_first["photos"] == 10
    assert after_first["events"] == 5  # PATIENT_ADDED for each waiting patient
    audit = rows(data_dir, "SELECT detail FROM audit_log WHERE action = 'import_original'")
    assert len(audit) == 1
    detail = json.loads(audit[0]["detail"])
    assert detail["credentials"] == 9 and detail["patients"] == 20 and detail["photos"] == 10
    assert all(isinstance(value, int) for value in detail.values())  # counts only

    second = import_original(data_dir, original)
    assert second.returncode == 0, second.stderr
    assert "nothing new to import" in second.stdout
    assert "9 already imported" in second.stdout and "20 already imported" in second.stdout
    assert counts(data_dir) == after_first
    assert digest(original / "db.sqlite3") == db_before  # the original is never written

    # No name, answer, token or password in anything the command printed or the trail holds.
    printed = dry.stdout + dry.stderr + first.stdout + first.stderr + second.stdout
    trail = json.dumps([dict(r) for r in rows(data_dir, "SELECT * FROM audit_log")])
    for patient in EXPECTED["patients"]:
        for secret in (patient["fname"], patient["ssn"], patient["street1"]):
            assert secret not in printed and secret not in trail
    for credential in EXPECTED["accesstokens"]:
        assert credential["token"] not in printed and credential["password"] not in printed


def test_a_token_already_here_is_a_conflict(original: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    new_database(data_dir)
    # A credential of ours that happens to have an original's token.
    with contextlib.closing(sqlite3.connect(original / "db.sqlite3")) as db:
        token = db.execute("SELECT token FROM management_accesstoken WHERE id = 1").fetchone()[0]
    made = run_cli(
        "token",
        "create",
        "--role",
        "admin",
        "--label",
        "Admin",
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        stdin="correct horse battery staple 7\n",
    )
    assert made.returncode == 0, made.stderr
    (mine,) = rows(data_dir, "SELECT id, token FROM credentials")
    with contextlib.closing(sqlite3.connect(data_dir / "checkin.db")) as db, db:
        db.execute("UPDATE credentials SET token = ? WHERE id = ?", (token, mine["id"]))
    result = import_original(data_dir, original)
    assert result.returncode == 0, result.stderr
    assert "credentials imported: 8" in result.stdout
    assert "1 token already in use here" in result.stdout
    (kept,) = rows(data_dir, "SELECT role, imported FROM credentials WHERE token = ?", (token,))
    assert (kept["role"], kept["imported"]) == ("admin", 0)


def test_bad_data_fails_before_anything_is_written(original: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with contextlib.closing(sqlite3.connect(original / "db.sqlite3")) as db, db:
        db.execute("UPDATE management_queueentry SET check_in_time = 'soon' WHERE id = 18")
    for extra in ((), ("--dry-run",)):
        result = import_original(data_dir, original, *extra)
        assert result.returncode == 1, result.stdout
        assert "queue entry #18" in result.stderr and "nothing was imported" in result.stderr
        assert all(value == 0 for value in counts(data_dir).values())


def test_a_failure_mid_transaction_changes_nothing(original: Path, tmp_path: Path) -> None:
    """The store refuses a row after credentials, patients and photos went in (here a
    trigger stands in for a full disk): the transaction rolls back, the photos written for
    this run are removed."""
    data_dir = tmp_path / "data"
    new_database(data_dir)
    with contextlib.closing(sqlite3.connect(data_dir / "checkin.db")) as db, db:
        db.execute(
            "CREATE TRIGGER refuse_waiting BEFORE INSERT ON queue_entries "
            "WHEN NEW.status = 'waiting' BEGIN SELECT RAISE(ABORT, 'database or disk is full');"
            " END"
        )
    before = counts(data_dir)
    result = import_original(data_dir, original)
    assert result.returncode == 1, result.stdout
    assert "nothing was imported" in result.stderr
    assert counts(data_dir) == before
    assert before["credentials"] == before["patients"] == before["photos"] == 0


def test_not_an_original_database(original: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    other = tmp_path / "other"
    (other / "media").mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(other / "db.sqlite3")) as db:
        db.execute("CREATE TABLE management_patient (id INTEGER PRIMARY KEY)")
    result = import_original(data_dir, other)
    assert result.returncode == 2
    assert "not a CheckIn database" in result.stderr
    assert "management_accesstoken" in result.stderr
    (other / "db.sqlite3").write_bytes(b"not a database at all" * 100)
    result = import_original(data_dir, other)
    assert result.returncode == 2 and "not a SQLite database" in result.stderr


def test_missing_and_unreadable_photos_are_tolerated(original: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    images = original / "media" / "patient_images"
    (images / "small.png").unlink()
    (images / "sample.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = import_original(data_dir, original)
    assert result.returncode == 0, result.stderr
    assert "photos: 8 (1 missing, 1 unreadable" in result.stdout
    assert counts(data_dir)["patients"] == 20 and counts(data_dir)["photos"] == 8


def test_legacy_values_are_mapped(original: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with contextlib.closing(sqlite3.connect(original / "db.sqlite3")) as db, db:
        db.execute(
            "UPDATE management_patient SET pronoun = 'he/him', id_card = 'lost/stolen', "
            "race = 'american_indian_or_alaskan_native', employed = 1, shower = 'No', "
            "hungry = '0', homeless = 'staying/someone', fname = '  ' WHERE id = 1"
        )
        db.execute("UPDATE management_accesstoken SET role = 'staff', password = '2' WHERE id = 7")
    result = import_original(data_dir, original, "--accept-weak-passwords")
    assert result.returncode == 0, result.stderr
    assert "(1 without a name" in result.stdout
    assert "credentials imported: 9 (1 flagged" in result.stdout  # "2" even when accepting
    (row,) = rows(
        data_dir,
        "SELECT p.fname, p.intake FROM patients p JOIN original_imports o ON o.local_id = p.id "
        "AND o.kind = 'patient' WHERE o.original_key LIKE '1@%'",
    )
    assert row["fname"] == "Unnamed patient"
    intake = json.loads(row["intake"])
    assert (intake["pronoun"], intake["id_card"]) == ("he_him", "lost")
    assert intake["race"] == "american_indian_alaskan_native"
    assert (intake["employed"], intake["shower"], intake["hungry"]) == ("yes", "no", "no")
    assert intake["homeless"] == "staying/someone"  # no current equivalent: kept
    (staff,) = rows(
        data_dir, "SELECT role, password_reset_required FROM credentials WHERE token = '29277208'"
    )
    assert (staff["role"], staff["password_reset_required"]) == ("form", 1)


async def test_accept_weak_passwords(
    original: Path, config: Config, start_clinic: StartClinic
) -> None:
    result = import_original(config.data_dir, original, "--accept-weak-passwords")
    assert result.returncode == 0, result.stderr
    assert "(0 flagged for a password reset" in result.stdout
    clinic = await start_clinic()
    for token in WEAK:
        status, body = await login(clinic, token, "admin")
        assert status == 200, body


async def test_tokens_of_another_shape(
    original: Path, config: Config, start_clinic: StartClinic
) -> None:
    clinic = await start_clinic()
    # No imported token of another shape yet: ours stay 8 digits.
    status, body = await login(clinic, "front-desk", "x")
    assert (status, body["code"]) == (400, "token_invalid")
    await clinic.client.close()
    add_original_credential(original, "front-desk", "brass lantern orchard 9", "form")
    add_original_credential(original, "4711", "copper kettle meadow 3", "doctor")
    result = import_original(config.data_dir, original)
    assert result.returncode == 0, result.stderr
    clinic = await start_clinic()
    status, body = await login(clinic, "front-desk", "brass lantern orchard 9")
    assert status == 200, body
    status, body = await login(clinic, 4711, "copper kettle meadow 3")  # a JSON number
    assert status == 200, body
    status, body = await login(clinic, "no-such-token", "x")
    assert (status, body["code"]) == (401, "bad_login")
    status, body = await login(clinic, "bad\x1btoken", "x")
    assert (status, body["code"]) == (400, "token_invalid")
    status, body = await login(clinic, "x" * 101, "x")
    assert (status, body["code"]) == (400, "token_invalid")


# --- resetting a password -------------------------------------------------------------------


async def test_reset_through_the_api(imported: Clinic) -> None:
    admin = imported.headers(Role.ADMIN)
    token = WEAK[1]
    resp = await imported.client.post(
        f"/api/credentials/{token}/password/", json={"password": "admin"}, headers=admin
    )
    assert resp.status == 400 and (await resp.json())["code"] == "password_too_short"
    resp = await imported.client.post(
        f"/api/credentials/{token}/password/",
        json={"password": NEW_PASSWORD},
        headers=imported.headers(Role.DOCTOR),
    )
    assert resp.status == 403
    resp = await imported.client.post(
        f"/api/credentials/{token}/password/", json={"password": NEW_PASSWORD}, headers=admin
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert body["token"] == token and body["password_reset_required"] is False
    assert body["imported"] is True
    status, _ = await login(imported, token, "admin")
    assert status == 401
    status, body = await login(imported, token, NEW_PASSWORD)
    assert status == 200, body
    resp = await imported.client.post(
        "/api/credentials/00000000/password/", json={"password": NEW_PASSWORD}, headers=admin
    )
    assert resp.status == 404 and (await resp.json())["code"] == "no_such_credential"


async def test_reset_ends_the_sessions(imported: Clinic) -> None:
    token = "22220002"
    status, body = await login(imported, token, PASSWORDS[token])
    assert status == 200
    old = {"Authorization": f"Bearer {body['access']}"}
    assert (await imported.client.get("/api/doctors/", headers=old)).status == 200
    resp = await imported.client.post(
        f"/api/credentials/{token}/password/",
        json={"password": NEW_PASSWORD},
        headers=imported.headers(Role.ADMIN),
    )
    assert resp.status == 200
    assert (await imported.client.get("/api/doctors/", headers=old)).status == 401


def test_token_password_command_clears_the_flag(original: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert import_original(data_dir, original).returncode == 0
    listing = run_cli("token", "list", "--data-dir", str(data_dir)).stdout
    flagged = [line.split()[0] for line in listing.splitlines() if "password reset" in line]
    assert sorted(flagged) == sorted(WEAK)
    weak = run_cli(
        "token",
        "password",
        WEAK[0],
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        stdin="admin\n",
    )
    assert weak.returncode == 2 and "password" in weak.stderr
    done = run_cli(
        "token",
        "password",
        WEAK[0],
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        stdin=NEW_PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    (row,) = rows(
        data_dir, "SELECT password_reset_required FROM credentials WHERE token = ?", (WEAK[0],)
    )
    assert row["password_reset_required"] == 0
    missing = run_cli(
        "token",
        "password",
        "12345678",
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        stdin=NEW_PASSWORD + "\n",
    )
    assert missing.returncode == 1
    trail = rows(data_dir, "SELECT action FROM audit_log WHERE action = 'password_changed'")
    assert len(trail) == 1


# --- a running server ----------------------------------------------------------------------


async def next_json(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return json.loads(await ws.recv())


async def test_running_server_publishes_the_waiting_ones(original: Path, tmp_path: Path) -> None:
    add_original_credential(original, "desk-A", "brass lantern orchard 9", "form")
    with running(tmp_path / "server") as server:
        doctor = server.login(server.create_token("doctor", "Dr. Feed"))
        kiosk = server.login(server.create_token("form", "Kiosk"))
        async with websockets.connect(f"{server.ws_url}?token={doctor}&snapshot=1") as ws:
            snapshot = await next_json(ws)
            assert snapshot["event"] == "QUEUE_SNAPSHOT" and snapshot["queue"] == []
            result = await server.cli_async(
                "import-original",
                "--db",
                str(original / "db.sqlite3"),
                "--media",
                str(original / "media"),
            )
            assert result.returncode == 0, result.stderr + server.describe()
            events = [await next_json(ws) for _ in range(5)]
            by_id = {p["id"]: p["fname"] for p in EXPECTED["patients"]}
            assert [e["event"] for e in events] == ["PATIENT_ADDED"] * 5
            assert [e["ticket"] for e in events] == [f"A-00{n}" for n in range(1, 6)]
            assert [e["patient"]["fname"] for e in events] == [
                by_id[i] for i in EXPECTED["waiting_order_patient_ids"]
            ]
            seqs = [e["seq"] for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == 5
            # The server's own events go on after them, in order.
            status, body = await asyncio.to_thread(
                http_json,
                "POST",
                f"{server.base_url}/api/patients/",
                {"fname": "After Import"},
                {"Authorization": f"Bearer {kiosk}"},
            )
            assert status == 201, body
            after = await next_json(ws)
            assert after["patient"]["fname"] == "After Import" and after["seq"] == seqs[-1] + 1
        await signs_in_soon(server, "desk-A", "brass lantern orchard 9")
        status, body = await asyncio.to_thread(
            http_json,
            "POST",
            f"{server.base_url}/api/login/",
            {"token": DOCTOR, "password": PASSWORDS[DOCTOR]},
        )
        assert status == 200, body


async def signs_in_soon(server: Server, token: str, password: str) -> None:
    """The server picks up the import's token shapes within its watch interval."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            status, body = await asyncio.to_thread(
                http_json,
                "POST",
                f"{server.base_url}/api/login/",
                {"token": token, "password": password},
            )
            if status == 200:
                return
            assert body["code"] == "token_invalid", body
            await asyncio.sleep(0.1)


# --- help -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        (
            ["import-original"],
            [
                "--db",
                "--media",
                "--dry-run",
                "--accept-weak-passwords",
                "--data-dir",
                "password_reset_required",
                "exit status",
            ],
        ),
        (["token", "password"], ["token", "--password-stdin", "--data-dir", "reset flag"]),
        (["token"], ["password"]),
        ([], ["import-original"]),
    ],
)
def test_help(command: list[str], mentions: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    for word in mentions:
        assert word in result.stdout, word


# --- the hub: events another process committed ------------------------------------------


async def test_hub_publishes_a_gap_before_what_follows_it() -> None:
    """Our writer's event after seqs another process committed waits until those are read
    back from the log and published: subscribers get every seq, in order, once."""
    from checkin_appliance.domain import Audience, QueueEntry, QueueEvent
    from checkin_appliance.hub import Hub

    def event(seq: int) -> QueueEvent:
        entry = QueueEntry(seq, seq, f"Patient {seq}", None, "waiting", "2026-12-04T15:19:10.000Z")
        return QueueEvent(seq, "PATIENT_ADDED", "2026-12-04T15:19:10.000Z", entry)

    log = [event(seq) for seq in range(1, 8)]
    reads: list[int] = []

    async def read_events(after: int) -> list[QueueEvent]:
        reads.append(after)
        await asyncio.sleep(0)
        return [e for e in log if e.seq > after]

    hub = Hub()
    hub.start_at(3, read_events)
    sub = hub.subscribe(object(), Audience.STAFF)  # type: ignore[arg-type]
    hub.publish(event(3))  # already published before: ignored
    hub.publish(event(4))  # the next one: out at once
    assert [json.loads(f.data)["seq"] for f in sub.pending] == [4]
    hub.publish(event(7))  # 5 and 6 came from another process
    assert [json.loads(f.data)["seq"] for f in sub.pending] == [4]
    task = hub.catch_up()
    assert task is not None
    await task
    assert [json.loads(f.data)["seq"] for f in sub.pending] == [4, 5, 6, 7]
    assert reads[0] == 4 and hub.last_seq == 7
    hub.publish(event(7))  # our writer's copy arriving late: not sent twice
    assert len(sub.pending) == 4
