"""The audit trail: who did what to which patient (by id), append-only and hash-chained."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from checkin_appliance.domain import Role
from checkin_appliance.web.keys import CONFIG
from tests.conftest import Clinic
from tests.serverproc import PASSWORD, run_cli, running

# A surname no test data or log template could contain by chance.
MARKER = "Zqxwvoraptek"


def audit_rows(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()


def db_of(clinic: Clinic) -> Path:
    return clinic.app[CONFIG].db_path


def verify(db: Path) -> tuple[int, str, str]:
    result = run_cli("audit", "verify", "--data-dir", str(db.parent))
    return result.returncode, result.stdout, result.stderr


async def test_each_action_is_recorded_with_who_which_patient_and_where(clinic: Clinic) -> None:
    first_row = len(audit_rows(db_of(clinic)))  # the fixture's own logins
    ann = await clinic.check_in(f"Ann {MARKER}")
    bob = await clinic.check_in(f"Bob {MARKER}")
    assert (await clinic.call_next()).status == 200
    resp = await clinic.client.post(
        "/api/doctors/",
        json={"action": "complete", "patient_id": bob["id"]},
        headers=clinic.headers(Role.DOCTOR),
    )
    assert resp.status == 200
    resp = await clinic.client.post(
        "/api/login/", json={"token": clinic.tokens[Role.FORM], "password": "wrong password"}
    )
    assert resp.status == 401
    resp = await clinic.client.post(
        "/api/credentials/",
        json={"role": "doctor", "label": "Dr. Lee", "room": "3", "password": PASSWORD},
        headers=clinic.headers(Role.ADMIN),
    )
    new_token = (await resp.json())["token"]
    resp = await clinic.client.post(
        f"/api/credentials/{new_token}/deactivate/", headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    resp = await clinic.client.patch(
        "/api/settings/", json={"language": "es"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    resp = await clinic.client.post("/api/logout/", headers=clinic.headers(Role.QUEUE))
    assert resp.status == 200

    with sqlite3.connect(db_of(clinic)) as conn:
        ids = {
            role: conn.execute("SELECT id FROM credentials WHERE token = ?", (token,)).fetchone()[0]
            for role, token in clinic.tokens.items()
        }
    rows = audit_rows(db_of(clinic))[first_row:]
    got = [(r["action"], r["actor"], r["patient_id"], r["address"]) for r in rows]
    assert got == [
        ("check_in", ids[Role.FORM], ann["id"], "127.0.0.1"),
        ("check_in", ids[Role.FORM], bob["id"], "127.0.0.1"),
        ("call", ids[Role.DOCTOR], ann["id"], "127.0.0.1"),
        ("complete", ids[Role.DOCTOR], bob["id"], "127.0.0.1"),
        ("login_failed", ids[Role.FORM], None, "127.0.0.1"),
        ("credential_created", ids[Role.ADMIN], None, "127.0.0.1"),
        ("credential_deactivated", ids[Role.ADMIN], None, "127.0.0.1"),
        ("settings_changed", ids[Role.ADMIN], None, "127.0.0.1"),
        ("logout", ids[Role.QUEUE], None, "127.0.0.1"),
    ]
    assert '"language":"es"' in rows[7]["detail"]
    everything = repr([tuple(r) for r in audit_rows(db_of(clinic))])
    assert MARKER not in everything and PASSWORD not in everything


async def test_a_failed_login_with_an_unknown_token_stores_nothing_typed(clinic: Clinic) -> None:
    typed = "98765432"
    resp = await clinic.client.post("/api/login/", json={"token": typed, "password": MARKER})
    assert resp.status == 401
    last = audit_rows(db_of(clinic))[-1]
    assert (last["action"], last["actor"]) == ("login_failed", None)
    assert typed not in repr(tuple(last)) and MARKER not in repr(tuple(last))


async def test_rows_cannot_be_changed_or_removed_through_sql(clinic: Clinic) -> None:
    await clinic.check_in("Ann Lee")
    with sqlite3.connect(db_of(clinic)) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_log SET patient_id = 99 WHERE action = 'check_in'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_log WHERE action = 'check_in'")


def _tamper(db: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """What someone with the file could do: drop the guards, then edit."""
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
        conn.execute(sql, params)


async def test_verify_passes_an_intact_trail_and_reports_its_head(clinic: Clinic) -> None:
    for name in ("Ann Lee", "Bob Stone"):
        await clinic.check_in(name)
    code, out, _ = verify(db_of(clinic))
    rows = audit_rows(db_of(clinic))
    assert code == 0
    assert out.strip() == f"audit trail intact: {len(rows)} entries, head {rows[-1]['hash']}"


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("UPDATE audit_log SET patient_id = 99 WHERE id = 6", "row 6 was changed"),
        ("UPDATE audit_log SET address = '10.0.0.9' WHERE id = 2", "row 2 was changed"),
        ("DELETE FROM audit_log WHERE id = 3", "row 3 is missing"),
        ("DELETE FROM audit_log WHERE id = 1", "row 1 is missing"),
    ],
)
async def test_verify_finds_an_edited_or_removed_row(
    clinic: Clinic, sql: str, problem: str
) -> None:
    for name in ("Ann Lee", "Bob Stone", "Cara Diaz"):
        await clinic.check_in(name)
    _tamper(db_of(clinic), sql)
    code, _, err = verify(db_of(clinic))
    assert code == 1
    assert "audit trail BROKEN" in err and problem in err


async def test_a_rehashed_row_still_breaks_the_link_to_the_next(clinic: Clinic) -> None:
    """Even someone who has the chain's key cannot edit a row without breaking the next."""
    from checkin_appliance.audit import AuditEntry, load_key

    for name in ("Ann Lee", "Bob Stone"):
        await clinic.check_in(name)
    db = db_of(clinic)
    row = audit_rows(db)[-2]
    forged = AuditEntry(*[row[k] for k in ("id", "at", "actor", "action")], 99, *row[5:7])
    _tamper(
        db,
        "UPDATE audit_log SET patient_id = 99, hash = ? WHERE id = ?",
        (forged.digest(row["prev_hash"], load_key(db.parent)), row["id"]),
    )
    code, _, err = verify(db)
    assert code == 1 and f"row {row['id'] + 1} does not follow" in err


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 80, 20)).save(out, "JPEG")
    return out.getvalue()


async def test_patient_names_never_reach_the_logs(tmp_path: Path) -> None:
    """A whole clinic session with a marker surname; then grep everything the server printed."""
    with running(tmp_path) as server:
        form = server.login(server.create_token("form", "Kiosk 1"))
        doctor = server.login(server.create_token("doctor", "Dr. Lee", room="3"))
        display = server.login(server.create_token("queue", "TV"))
        api = f"{server.base_url}/api"
        async with aiohttp.ClientSession() as http:
            feed = await http.ws_connect(f"{server.ws_url}?token={display}&snapshot=1")
            as_kiosk = {"Authorization": f"Bearer {form}"}
            photo = aiohttp.FormData()
            photo.add_field("fname", f"Maria {MARKER}")
            photo.add_field("image", _jpeg(), filename=f"{MARKER}.jpg", content_type="image/jpeg")
            statuses = []
            for body in (photo, {"fname": f"Ann {MARKER}"}, {"fname": f"{MARKER} " * 80}):
                kind = "data" if isinstance(body, aiohttp.FormData) else "json"
                async with http.post(f"{api}/patients/", headers=as_kiosk, **{kind: body}) as r:
                    statuses.append(r.status)
            async with http.post(f"{api}/patients/?fname={MARKER}", headers=as_kiosk) as r:
                statuses.append(r.status)
            for _ in range(3):
                async with http.post(
                    f"{api}/doctors/",
                    json={"action": "call_next"},
                    headers={"Authorization": f"Bearer {doctor}"},
                ) as r:
                    statuses.append(r.status)
            await feed.close()
        assert statuses == [201, 201, 400, 400, 200, 200, 404]
        trail = server.cli("audit", "show")
    logged = server.stdout() + server.stderr()
    assert "POST /api/patients/" in logged  # the access log was on: requests were logged
    assert MARKER not in logged
    assert trail.returncode == 0 and "check_in patient" in trail.stdout
    assert MARKER not in trail.stdout


def test_a_backup_is_recorded(tmp_path: Path) -> None:
    with running(tmp_path) as server:
        server.login(server.create_token("form", "Kiosk 1"))
        result = server.cli("backup", str(tmp_path / "b.tar"), "--no-encryption")
        assert result.returncode == 0, result.stderr
        rows = audit_rows(server.data_dir / "checkin.db")
    assert (rows[-1]["action"], rows[-1]["actor"], rows[-1]["address"]) == ("backup", None, "cli")
    assert '"file":"b.tar"' in rows[-1]["detail"]


async def test_the_chain_holds_when_the_cli_writes_between_the_servers_writes(
    tmp_path: Path,
) -> None:
    with running(tmp_path) as server:
        auth = {"Authorization": f"Bearer {server.login(server.create_token('form', 'K'))}"}
        async with aiohttp.ClientSession() as http:
            for round_ in range(3):
                for n in range(3):
                    async with http.post(
                        f"{server.base_url}/api/patients/",
                        json={"fname": f"P{round_}{n}"},
                        headers=auth,
                    ) as resp:
                        assert resp.status == 201
                # Another process appends to the chain while the server keeps writing.
                assert (
                    server.cli("settings", "set", "clinic_name", f"Clinic {round_}").returncode == 0
                )
        code, _, err = verify(server.data_dir / "checkin.db")
    assert code == 0, err
    actions = [row["action"] for row in audit_rows(server.data_dir / "checkin.db")]
    assert actions.count("settings_changed") == 3 and actions.count("check_in") == 9


# --- a keyed chain (issue 13, item 19) ----------------------------------------------------------


def _rechain(db: Path, delete_ids: list[int]) -> None:
    """What someone with the database file but not audit.key does: delete rows, renumber,
    and recompute every hash after them (with the only hash they can compute)."""
    from checkin_appliance.audit import GENESIS, AuditEntry

    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        kept = [
            r
            for r in conn.execute("SELECT * FROM audit_log ORDER BY id")
            if r["id"] not in delete_ids
        ]
        conn.execute("DELETE FROM audit_log")
        prev = GENESIS
        for new_id, r in enumerate(kept, start=1):
            entry = AuditEntry(
                new_id, r["at"], r["actor"], r["action"], r["patient_id"], r["address"], r["detail"]
            )
            digest = entry.digest(prev)
            conn.execute(
                "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    r["at"],
                    r["actor"],
                    r["action"],
                    r["patient_id"],
                    r["address"],
                    r["detail"],
                    prev,
                    digest,
                ),
            )
            prev = digest


async def test_verify_finds_a_trail_rechained_without_the_key(clinic: Clinic) -> None:
    for name in ("Ann Lee", "Bob Stone", "Cara Diaz"):
        await clinic.check_in(name)
    db = db_of(clinic)
    key_file = db.parent / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    removed = [r["id"] for r in audit_rows(db) if r["action"] == "check_in"][:1]
    _rechain(db, removed)
    code, _, err = verify(db)
    assert code == 1
    assert "audit trail BROKEN" in err and "row 1 was changed" in err, err


def test_rows_written_before_the_key_still_verify(tmp_path: Path) -> None:
    """A trail from before keyed chains (plain hashes, no audit.key) verifies; after the
    upgrade the key starts at the next row, the whole trail verifies, and re-chaining it
    without the key is found."""
    data_dir = tmp_path / "data"
    with running(tmp_path, data_dir) as server:
        server.login(server.create_token("form", "Kiosk"))
    db = data_dir / "checkin.db"
    (data_dir / "audit.key").unlink()
    _rechain(db, [])  # as an older version left it: plain SHA-256 only
    old_rows = len(audit_rows(db))
    code, out, _ = verify(db)
    assert code == 0 and "unkeyed" in out
    with running(tmp_path, data_dir) as server:  # the upgraded box writes on
        server.login(server.create_token("doctor", "Dr. Lee"))
    assert f'"from_row": {old_rows + 1}' in (data_dir / "audit.key").read_text()
    code, out, err = verify(db)
    assert code == 0, err
    assert "unkeyed" not in out and len(audit_rows(db)) > old_rows + 1
    _rechain(db, [2])
    code, _, err = verify(db)
    assert code == 1 and "BROKEN" in err


def test_the_key_travels_with_the_backup_and_the_restored_trail_verifies(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running(tmp_path, data_dir) as server:
        server.login(server.create_token("form", "Kiosk"))
        made = server.cli("backup", str(tmp_path / "b.tar"), "--no-encryption")
        assert made.returncode == 0, made.stderr
    key = (data_dir / "audit.key").read_bytes()
    new_box = tmp_path / "new-box"
    restored = run_cli(
        "restore", str(tmp_path / "b.tar"), "--data-dir", str(new_box), "--no-encryption"
    )
    assert restored.returncode == 0, restored.stderr
    assert (new_box / "audit.key").read_bytes() == key
    assert (new_box / "audit.key").stat().st_mode & 0o777 == 0o600
    code, out, err = verify(new_box / "checkin.db")
    assert code == 0 and "unkeyed" not in out, err
