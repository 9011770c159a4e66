"""`checkin-appliance backup` and `restore`, run as subprocesses against a real server.

A backup taken while kiosks keep checking patients in (half with photos) must hold every
check-in acknowledged before the command started, pass integrity_check and carry exactly
the photos its database names (in that database: format 3). Restore puts one back with the
server stopped, moves the previous files aside, and refuses (changing nothing) while a
server runs or when the backup is damaged; an older backup's photo files go into the
database at the server's next start. Every wait is bounded; only 127.0.0.1 is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import http.client
import io
import itertools
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import tarfile
import time
import tracemalloc
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pyrage
import pytest
from PIL import Image

from checkin_appliance import backup
from checkin_appliance.config import Config
from checkin_appliance.store import inspect
from tests.serverproc import (
    HOST,
    Server,
    cli_command,
    free_port,
    http_json,
    run_cli,
    run_cli_async,
    running,
)

PLAIN = "--no-encryption"  # the tests that take backups apart with tarfile write plain ones
PASSPHRASE = ["--passphrase-file", "--passphrase-stdin", "--no-encryption"]
CLIENTS = 4  # concurrent kiosks; the even ones send a photo
MAX_CHECK_INS_PER_CLIENT = 1000  # the write loop's hard bound (a slow backup lets ~1000 through)
BEFORE_BACKUP = 40  # check-ins acknowledged before the backup starts
AFTER_BACKUP = 8  # and after it has finished
LOOP_TIMEOUT = 20.0  # seconds the write loop may take to reach a count
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=5)
SUMMARY = re.compile(
    r"backup written to (?P<path>\S+): (?P<patients>\d+) patients? \((?P<waiting>\d+) waiting\), "
    r"(?P<photos>\d+) photos?, \d+ credentials?, [\d.]+ MB in [\d.]+ s"
)


def _jpeg(colour: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, "JPEG", quality=80)
    return out.getvalue()


def _bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def _get(url: str, access: str) -> bytes:
    """The body of a 200 answer, as bytes (a photo), over loopback only."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == HOST, url
    conn = http.client.HTTPConnection(HOST, parts.port, timeout=5)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}", headers=_bearer(access))
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, (response.status, body[:200])
    return body


async def _check_in(
    session: aiohttp.ClientSession, server: Server, access: str, fname: str, photo: bytes | None
) -> dict[str, Any]:
    if photo is not None:
        data = aiohttp.FormData()
        data.add_field("fname", fname)
        data.add_field("image", photo, filename="p.jpg", content_type="image/jpeg")
        request: dict[str, Any] = {"data": data}
    else:
        request = {"json": {"fname": fname}}
    async with session.post(
        f"{server.base_url}/api/patients/", headers=_bearer(access), **request
    ) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return body


# --- reading a backup independently --------------------------------------------------------


@dataclass
class Unpacked:
    """A backup file taken apart with tarfile and sqlite3 only."""

    members: list[str]
    manifest: dict[str, Any]
    db: Path
    photos: dict[str, bytes]  # photo name -> bytes: its database's, and any photo member
    rows: dict[str, str | None]  # fname -> image
    photo_members: list[str] = field(default_factory=list)

    def sha256_matches(self, tar_path: Path) -> bool:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if member.name == backup.MANIFEST:
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                listed = self.manifest["members"][member.name]
                if (len(data), hashlib.sha256(data).hexdigest()) != (
                    listed["size"],
                    listed["sha256"],
                ):
                    return False
        return True


def _unpack(tar_path: Path, into: Path) -> Unpacked:
    into.mkdir(parents=True)
    members, photos, manifest = [], {}, {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            members.append(member.name)
            assert member.isfile(), member.name
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == backup.MANIFEST:
                manifest = json.loads(data)
            elif member.name == backup.DATABASE:
                (into / backup.DATABASE).write_bytes(data)
            elif member.name == backup.AUDIT_KEY:
                (into / backup.AUDIT_KEY).write_bytes(data)
            else:
                assert member.name.startswith(backup.PHOTO_PREFIX), member.name
                photos[member.name.removeprefix(backup.PHOTO_PREFIX)] = data
    db = into / backup.DATABASE
    photo_members = sorted(photos)
    photos.update(_held_photos(db))
    return Unpacked(members, manifest, db, photos, _patients(db), photo_members)


def _held_photos(db: Path) -> dict[str, bytes]:
    """The photos a database holds (none before schema 17)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'photos'").fetchall():
            return {}
        return dict(conn.execute("SELECT name, data FROM photos"))


def _integrity(db: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchall()


def _patients(db: Path) -> dict[str, str | None]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT fname, image FROM patients"))


def _waiting(db: Path) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute(
            "SELECT e.id, p.fname FROM queue_entries e JOIN patients p ON p.id = e.patient_id "
            "WHERE e.status = 'waiting' ORDER BY e.id"
        ).fetchall()


def _decodes(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.format == "JPEG"


def _tree(directory: Path) -> dict[str, str]:
    """Every file and folder under `directory` (relative path -> sha256, or "dir")."""
    return {
        str(path.relative_to(directory)): (
            "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        )
        for path in sorted(directory.rglob("*"))
    }


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- a backup taken while kiosks keep checking in -------------------------------------------


@dataclass
class WriteLoop:
    """Kiosks checking patients in, and exactly which check-ins got their 201."""

    server: Server
    access: str
    photo: bytes
    names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    acked: dict[str, bool] = field(default_factory=dict)  # fname -> sent with a photo
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def kiosk(self, session: aiohttp.ClientSession, number: int) -> None:
        with_photo = number % 2 == 0
        try:
            for _ in range(MAX_CHECK_INS_PER_CLIENT):
                if self.stop.is_set():
                    return
                fname = f"Patient {next(self.names)}"
                photo = self.photo if with_photo else None
                await _check_in(session, self.server, self.access, fname, photo)
                self.acked[fname] = with_photo
                self.progress.set()
        finally:
            self.progress.set()  # a kiosk that stops wakes wait_for too

    async def wait_for(self, count: int, kiosks: list[asyncio.Task[None]]) -> None:
        """Until `count` check-ins are acknowledged; a kiosk's failure is raised here."""
        async with asyncio.timeout(LOOP_TIMEOUT):
            while True:
                self.progress.clear()
                if len(self.acked) >= count:
                    return
                for task in kiosks:
                    if task.done():
                        task.result()  # raises the kiosk's assertion, if any
                if all(task.done() for task in kiosks):
                    raise AssertionError(f"the kiosks stopped at {len(self.acked)} check-ins")
                await self.progress.wait()


@dataclass
class BusyBackup:
    server: Server
    access: str
    path: Path
    result: subprocess.CompletedProcess[str]
    acked_before: dict[str, bool]  # acknowledged before the command started
    acked_during: list[str]  # acknowledged while it ran
    unpacked: Unpacked


async def _back_up_while_writing(server: Server, access: str, out: Path) -> BusyBackup:
    loop = WriteLoop(server, access, _jpeg())
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        kiosks = [asyncio.create_task(loop.kiosk(session, n)) for n in range(CLIENTS)]
        try:
            await loop.wait_for(BEFORE_BACKUP, kiosks)
            before = dict(loop.acked)
            result = await run_cli_async(
                "backup", str(out), "--data-dir", str(server.data_dir), "--no-encryption"
            )
            during = [name for name in loop.acked if name not in before]
            await loop.wait_for(len(loop.acked) + AFTER_BACKUP, kiosks)
        finally:
            loop.stop.set()
            async with asyncio.timeout(LOOP_TIMEOUT):
                outcomes = await asyncio.gather(*kiosks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    assert result.returncode == 0, result.stderr
    return BusyBackup(server, access, out, result, before, during, _unpack(out, out.parent / "x"))


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusyBackup]:
    """One server, a backup taken in the middle of a write loop; the server keeps running."""
    workdir = tmp_path_factory.mktemp("busy")
    (workdir / "usb").mkdir()
    with running(workdir) as server:
        access = server.login(server.create_token("form", "Kiosk"))
        yield asyncio.run(_back_up_while_writing(server, access, workdir / "usb" / "b.tar"))


@pytest.fixture
def stopped_data_dir(busy: BusyBackup, tmp_path: Path) -> Config:
    """A data directory with the busy backup in it and no server (restored in-process)."""
    config = Config(data_dir=tmp_path / "data")
    backup.restore(config, busy.path)
    return config


def test_backup_during_writes_holds_every_acknowledged_check_in(busy: BusyBackup) -> None:
    unpacked = busy.unpacked
    assert _integrity(unpacked.db) == [("ok",)]
    for fname, with_photo in busy.acked_before.items():
        assert fname in unpacked.rows, f"{fname!r} was acknowledged before the backup started"
        image = unpacked.rows[fname]
        assert (image is not None) == with_photo, fname
        if image is not None:
            assert image in unpacked.photos, f"the photo of {fname!r} is not in the backup"
    # Exactly the photos its database names: none missing, no orphan written after the copy.
    named = {image for image in unpacked.rows.values() if image}
    assert set(unpacked.photos) == named
    assert all(_decodes(data) for data in unpacked.photos.values())
    # The server kept acknowledging check-ins while the backup ran.
    assert busy.acked_during, "no check-in was acknowledged while the backup ran"


def test_backup_file_is_complete_private_and_described_by_its_manifest(busy: BusyBackup) -> None:
    unpacked = busy.unpacked
    assert unpacked.members[0] == backup.DATABASE and unpacked.members[-1] == backup.MANIFEST
    manifest = unpacked.manifest
    assert manifest["format"] == "checkin-appliance-backup" and manifest["format_version"] == 3
    assert backup.AUDIT_KEY in unpacked.members  # the audit trail verifies after a restore
    assert unpacked.photo_members == []  # the database holds the photos
    assert set(manifest["members"]) == set(unpacked.members) - {backup.MANIFEST}
    assert unpacked.sha256_matches(busy.path)
    assert manifest["counts"]["patients"] == len(unpacked.rows)
    assert manifest["counts"]["photos"] == len(unpacked.photos)
    assert manifest["missing_photos"] == []
    assert stat.S_IMODE(busy.path.stat().st_mode) == 0o600
    # One summary line of numbers; no patient's name; no temp file left beside it.
    assert busy.result.stderr == ""
    summary = SUMMARY.fullmatch(busy.result.stdout.strip())
    assert summary, busy.result.stdout
    assert int(summary["patients"]) == len(unpacked.rows)
    assert int(summary["photos"]) == len(unpacked.photos)
    assert "Patient" not in busy.result.stdout
    assert sorted(p.name for p in busy.path.parent.iterdir() if p.is_file()) == ["b.tar"]


# --- restore ---------------------------------------------------------------------------------


def test_restore_refuses_while_the_server_runs(busy: BusyBackup) -> None:
    before = _tree(busy.server.data_dir)
    result = busy.server.cli("restore", str(busy.path), "--no-encryption")
    assert result.returncode == 1
    line = _one_error_line(result)
    assert "server is running" in line and "stop it first" in line, line
    assert result.stdout == ""
    after = _tree(busy.server.data_dir)
    assert {k for k in after if "before-restore" in k or ".restore-" in k} == set()
    assert set(after) - {"checkin.lock"} == set(before) - {"checkin.lock"}
    assert http_json("GET", f"{busy.server.base_url}/healthz")[0] == 200


def test_restore_refuses_while_any_connection_has_the_database_open(
    busy: BusyBackup, stopped_data_dir: Config
) -> None:
    """The SQLite lock alone (this process is skipped by the /proc check) is enough."""
    conn = sqlite3.connect(stopped_data_dir.db_path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")  # as the server has it
        conn.execute("SELECT count(*) FROM patients").fetchone()  # idle, but holding it
        before = _tree(stopped_data_dir.data_dir)
        with pytest.raises(backup.BackupError, match="the database is locked"):
            backup.restore(stopped_data_dir, busy.path)
        assert _tree(stopped_data_dir.data_dir) == before
    finally:
        conn.close()


def test_restore_refuses_while_another_restore_holds_the_lock(
    busy: BusyBackup, stopped_data_dir: Config
) -> None:
    import fcntl

    before = _tree(stopped_data_dir.data_dir)
    with (stopped_data_dir.data_dir / backup.LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(backup.BackupError, match=r"checkin\.lock is held"):
            backup.restore(stopped_data_dir, busy.path)
    assert _tree(stopped_data_dir.data_dir) == before


@contextlib.contextmanager
def _serving_in_maintenance(workdir: Path, data_dir: Path) -> Iterator[Server]:
    """`serve` on a damaged database: it starts (maintenance mode) but /healthz is not 200."""
    port = free_port()
    out, err = workdir / "maintenance.out", workdir / "maintenance.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            cli_command("serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=workdir,
        )
    server = Server(port, data_dir, proc, out, err)
    try:
        server.wait_for_output(re.compile("serving on"), timeout=20)
        yield server
    finally:
        server.stop()


def test_restore_refuses_while_a_server_in_maintenance_mode_runs(
    busy: BusyBackup, stopped_data_dir: Config, tmp_path: Path
) -> None:
    """The case restore is for: the file is unreadable, so only the open file gives it away."""
    with stopped_data_dir.db_path.open("r+b") as f:
        f.write(b"this is not an SQLite file at all" + b"\0" * 67)
    with _serving_in_maintenance(tmp_path, stopped_data_dir.data_dir):
        before = _tree(stopped_data_dir.data_dir)
        result = run_cli(
            "restore", str(busy.path), "--data-dir", str(stopped_data_dir.data_dir), PLAIN
        )
        assert result.returncode == 1
        assert "server is running" in _one_error_line(result)
        assert _tree(stopped_data_dir.data_dir) == before


async def test_restore_round_trip(tmp_path: Path) -> None:
    """Back up a running box (encrypted, as documented), keep working, stop, restore, start:
    the queue is the backup's."""
    data_dir = tmp_path / "data"
    out = tmp_path / "usb"
    out.mkdir()
    secret = _passphrase_file(tmp_path)
    with running(tmp_path, data_dir) as server:
        access = server.login(server.create_token("form", "Kiosk"))
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            for n in range(6):
                photo = _jpeg((n * 40, 90, 200)) if n % 2 == 0 else None
                await _check_in(session, server, access, f"Kept {n}", photo)
            made = await server.cli_async("backup", str(out), "--passphrase-file", str(secret))
            assert made.returncode == 0, made.stderr
            for n in range(3):
                await _check_in(session, server, access, f"Later {n}", _jpeg((10, n * 50, 10)))
    (tar_path,) = out.iterdir()
    assert re.fullmatch(r"checkin-backup-\d{8}-\d{6}\.tar\.age", tar_path.name), tar_path.name
    assert b"Kept" not in tar_path.read_bytes()
    in_backup = _unpack(_decrypted(tar_path, tmp_path / "plain.tar"), tmp_path / "unpacked")
    assert sorted(in_backup.rows) == [f"Kept {n}" for n in range(6)]
    before = _tree(data_dir)

    result = run_cli(
        "restore", str(tar_path), "--data-dir", str(data_dir), "--passphrase-stdin", stdin=PASS
    )
    assert result.returncode == 0, result.stderr
    assert "6 patients (6 waiting), 3 photos" in result.stdout, result.stdout
    assert "systemctl start checkin-appliance" in result.stdout
    assert "Kept" not in result.stdout and "Later" not in result.stdout

    # The previous files were moved aside, byte for byte, with the check-ins made after.
    (aside,) = data_dir.glob("before-restore-*")
    assert str(aside) in result.stdout
    moved = _tree(aside)
    for name, digest in before.items():
        if name == "checkin.db" or name.startswith(("checkin.db-", "media/patient_images")):
            assert moved[name] == digest, name
    previous = _patients(aside / "checkin.db")
    assert {f"Kept {n}" for n in range(6)} | {f"Later {n}" for n in range(3)} <= set(previous)
    previous_photos = _held_photos(aside / "checkin.db")
    for image in filter(None, previous.values()):
        assert _decodes(previous_photos[image])
    assert not list(data_dir.glob(".restore-*"))

    with running(tmp_path, data_dir) as server:
        # Sessions came back with the database: the kiosk's access token still works.
        status, queue = http_json("GET", f"{server.base_url}/api/queue/", headers=_bearer(access))
        assert status == 200, queue
        # The full queue as a doctor reads it (the kiosk gets the wall display's view).
        doctor = server.login(server.create_token("doctor", "Dr. After Restore"))
        status, queue = http_json("GET", f"{server.base_url}/api/queue/", headers=_bearer(doctor))
        assert status == 200, queue
        assert [(item["id"], item["patient"]["fname"]) for item in queue] == _waiting(in_backup.db)
        for item in queue:
            image = item["patient"]["image"]
            if image is not None:
                name = image.partition("?")[0].rsplit("/", 1)[-1]  # a signed link's photo
                # The doctor's session is the credential; the bytes are the backup's.
                assert _get(f"{server.base_url}{image}", doctor) == in_backup.photos[name]
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            await _check_in(session, server, access, "After restore", _jpeg())


PASS = "correct horse battery staple\n"


def _passphrase_file(folder: Path) -> Path:
    path = folder / "backup-passphrase"
    path.write_text(PASS)
    path.chmod(0o600)
    return path


def _decrypted(path: Path, out: Path) -> Path:
    """The plain tar inside an encrypted backup, by the standard age tool's bindings."""
    out.write_bytes(pyrage.passphrase.decrypt(path.read_bytes(), PASS.strip()))
    return out


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _cut_before_manifest(path: Path) -> None:
    with tarfile.open(path) as tar:
        offset = tar.getmember(backup.MANIFEST).offset
    with path.open("r+b") as f:
        f.truncate(offset)


def _flip_a_byte_of(member_name: Callable[[list[str]], str]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with tarfile.open(path) as tar:
            member = tar.getmember(member_name(tar.getnames()))
            at = member.offset_data + member.size // 2
        with path.open("r+b") as f:
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ 0xFF]))

    return damage


def _add_an_outside_path(path: Path) -> None:
    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))


def _not_a_tar(path: Path) -> None:
    path.write_bytes(b"\x00\x01 just some bytes \xff" * 1000)


BAD_BACKUPS = {
    "cut_in_half": (_cut_in_half, "not a usable backup"),
    "cut_before_manifest": (_cut_before_manifest, "no manifest.json"),
    "tampered_audit_key": (
        _flip_a_byte_of(lambda names: backup.AUDIT_KEY),
        "audit.key does not match its checksum",
    ),
    "tampered_database": (_flip_a_byte_of(lambda names: backup.DATABASE), "checkin.db does not"),
    "outside_path": (_add_an_outside_path, "unexpected entry"),
    "not_a_tar": (_not_a_tar, "not a usable backup"),
}


@pytest.mark.parametrize("damage", BAD_BACKUPS, ids=list(BAD_BACKUPS))
def test_restore_refuses_a_damaged_backup_and_changes_nothing(
    busy: BusyBackup, stopped_data_dir: Config, tmp_path: Path, damage: str
) -> None:
    spoil, message = BAD_BACKUPS[damage]
    bad = tmp_path / "bad.tar"
    bad.write_bytes(busy.path.read_bytes())
    spoil(bad)
    before = _tree(stopped_data_dir.data_dir)
    result = run_cli("restore", str(bad), "--data-dir", str(stopped_data_dir.data_dir), PLAIN)
    assert result.returncode == 1, result.stdout
    line = _one_error_line(result)
    assert message in line and "nothing was changed" in line, line
    assert _tree(stopped_data_dir.data_dir) == before
    assert not (tmp_path / "escaped.txt").exists()


def test_restore_onto_an_empty_box(busy: BusyBackup, tmp_path: Path) -> None:
    data_dir = tmp_path / "new-box" / "data"
    result = run_cli("restore", str(busy.path), "--data-dir", str(data_dir), PLAIN)
    assert result.returncode == 0, result.stderr
    assert "no previous database" in result.stdout
    assert _integrity(data_dir / "checkin.db") == [("ok",)]
    assert _patients(data_dir / "checkin.db") == busy.unpacked.rows
    assert _held_photos(data_dir / "checkin.db") == busy.unpacked.photos
    assert not (data_dir / "media").exists()  # no photo files: the database holds them


# --- backup refusals ----------------------------------------------------------------------------


def test_backup_does_not_overwrite_without_force(busy: BusyBackup, tmp_path: Path) -> None:
    out = tmp_path / "nightly.tar"
    out.write_bytes(b"yesterday's backup")
    refused = busy.server.cli("backup", str(out), PLAIN)
    assert refused.returncode == 2
    assert "--force" in _one_error_line(refused)
    assert out.read_bytes() == b"yesterday's backup"

    replaced = busy.server.cli("backup", str(out), "--force", PLAIN)
    assert replaced.returncode == 0, replaced.stderr
    assert SUMMARY.fullmatch(replaced.stdout.strip()), replaced.stdout
    again = _unpack(out, tmp_path / "x")
    assert set(busy.acked_before) <= set(again.rows)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["nightly.tar"]


@pytest.mark.parametrize("out", ["unmounted/b.tar", "unmounted/"])
def test_backup_to_a_missing_folder_is_refused(busy: BusyBackup, tmp_path: Path, out: str) -> None:
    """Never created: an unmounted USB stick must not fill the box's own disk."""
    result = busy.server.cli("backup", f"{tmp_path}/{out}", PLAIN)
    assert result.returncode == 2
    assert f"the folder {tmp_path / 'unmounted'} does not exist" in _one_error_line(result)
    assert list(tmp_path.iterdir()) == []


def _overwrite_table_page(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'queue_entries'"
        ).fetchone()
    with db.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * 16)
        f.seek((root - 1) * page_size + page_size // 2)
        f.write(b"\x5a" * 512)


def _overwrite_header(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(b"this is not an SQLite file at all" + b"\0" * 67)


@pytest.mark.parametrize(
    "damage", [_overwrite_table_page, _overwrite_header], ids=["page", "header"]
)
def test_backup_of_a_damaged_database_fails_clearly(
    stopped_data_dir: Config, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    damage(stopped_data_dir.db_path)
    out = tmp_path / "usb"
    out.mkdir()
    result = run_cli(
        "backup", str(out / "b.tar"), "--data-dir", str(stopped_data_dir.data_dir), PLAIN
    )
    assert result.returncode == 1
    assert "database is damaged" in _one_error_line(result)
    assert list(out.iterdir()) == []


def test_backup_without_a_database_says_where_it_looked(tmp_path: Path) -> None:
    result = run_cli(
        "backup", str(tmp_path / "b.tar"), "--data-dir", str(tmp_path / "nothing"), PLAIN
    )
    assert result.returncode == 1
    assert "no database at" in _one_error_line(result)


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        (
            ["backup"],
            ["OUT", "--force", "--data-dir", "--config", "integrity_check", "exit", *PASSPHRASE],
        ),
        (["restore"], ["IN", "--data-dir", "--config", "before-restore", "exit", *PASSPHRASE]),
    ],
)
def test_help(command: list[str], mentions: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    for word in mentions:
        assert word in result.stdout, word


# --- the temporary copy of the database (issue 13, item 18) -------------------------------------


def _temp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".tmp" in p.name)


def test_the_temporary_copy_is_private_and_removed_when_the_backup_fails(
    stopped_data_dir: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "usb"
    out.mkdir()
    seen: dict[str, int] = {}
    real_inspect = backup._inspect_copy

    def inspect_then_fail(copy: Path) -> Any:
        real_inspect(copy)
        for path in _temp_files(out):
            seen[path.name] = stat.S_IMODE(path.lstat().st_mode)
        raise backup.BackupError("failed on purpose")

    monkeypatch.setattr(backup, "_inspect_copy", inspect_then_fail)
    with pytest.raises(backup.BackupError, match="failed on purpose"):
        backup.backup(stopped_data_dir, out / "b.tar")
    assert any(name.endswith("-checkin.db") for name in seen), seen
    assert set(seen.values()) == {0o600}, seen
    assert list(out.iterdir()) == []


@contextlib.contextmanager
def _database_held(db: Path) -> Iterator[Callable[[], None]]:
    """An exclusive lock on a rollback-journal database: a backup waits in its copy step
    (with its temp files made) until the returned function releases it."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield lambda: conn.execute("ROLLBACK") if conn.in_transaction else None
    finally:
        conn.close()


def _backup_waiting_in_copy(config: Config, out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        cli_command("backup", str(out / "b.tar"), "--data-dir", str(config.data_dir), PLAIN),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not any(p.name.endswith("-checkin.db") for p in _temp_files(out)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the backup never made its temp copy"
        time.sleep(0.02)  # a poll with a deadline, not synchronisation
    return proc


def test_a_backup_stopped_with_sigterm_leaves_no_copy_behind(
    stopped_data_dir: Config, tmp_path: Path
) -> None:
    out = tmp_path / "usb"
    out.mkdir()
    with _database_held(stopped_data_dir.db_path) as release:
        proc = _backup_waiting_in_copy(stopped_data_dir, out)
        assert {stat.S_IMODE(p.lstat().st_mode) for p in _temp_files(out)} == {0o600}
        proc.send_signal(signal.SIGTERM)
        release()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    assert list(out.iterdir()) == []


def test_a_killed_backups_leftovers_go_at_the_next_backup(
    stopped_data_dir: Config, tmp_path: Path
) -> None:
    out = tmp_path / "usb"
    out.mkdir()
    with _database_held(stopped_data_dir.db_path):
        proc = _backup_waiting_in_copy(stopped_data_dir, out)
        proc.kill()
        proc.communicate(timeout=20)
    leftovers = _temp_files(out)
    assert leftovers, "SIGKILL should have left the temp files"
    # A backup still running into the same folder: its (locked) temp file must stay.
    running = out / "other.tar.0123abcd.tmp"
    running.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    for path in [*leftovers, running]:
        os.utime(path, (an_hour_ago, an_hour_ago))  # as the next night's backup finds them
    with running.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = run_cli(
            "backup", str(out / "c.tar"), "--data-dir", str(stopped_data_dir.data_dir), PLAIN
        )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["c.tar", running.name]


# --- links planted in the data directory (issue 13, item 22) ------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="the attack is on a restore run as root (CI is)")
def test_restore_as_root_does_not_follow_a_link_planted_at_the_lock_file(
    busy: BusyBackup, stopped_data_dir: Config, tmp_path: Path
) -> None:
    """The service's user plants checkin.lock -> a file root would then create."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "created-by-root"
    planted = stopped_data_dir.data_dir / backup.LOCK_FILE
    planted.unlink(missing_ok=True)
    before = _tree(stopped_data_dir.data_dir)
    planted.symlink_to(target)
    result = run_cli("restore", str(busy.path), "--data-dir", str(stopped_data_dir.data_dir), PLAIN)
    assert result.returncode == 1, result.stdout
    line = _one_error_line(result)
    assert "checkin.lock is a link" in line and "nothing was changed" in line, line
    assert not os.path.lexists(target)
    assert planted.is_symlink()
    planted.unlink()
    assert _tree(stopped_data_dir.data_dir) == before


def test_restore_does_not_move_photos_through_a_linked_media_folder(
    busy: BusyBackup, stopped_data_dir: Config, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    stopped_data_dir.media_dir.symlink_to(outside)
    result = run_cli("restore", str(busy.path), "--data-dir", str(stopped_data_dir.data_dir), PLAIN)
    assert result.returncode == 1, result.stdout
    assert "is a symbolic link" in _one_error_line(result)
    assert list(outside.iterdir()) == []


# --- only what backup writes (issue 13, item 21) ------------------------------------------------

BOMB_BYTES = 300 * 1024 * 1024  # what the .tar.gz would unpack to
MOST_RESTORE_MAY_WRITE = 4 * 1024 * 1024


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _gzip_bomb(path: Path) -> None:
    """A .tar.gz of a few hundred KB: a 300 MB checkin.db of zeros and a manifest that
    lists it correctly, so only the format (and the sizes) can refuse it."""
    digest = hashlib.sha256()
    zeros = bytes(1024 * 1024)
    for _ in range(BOMB_BYTES // len(zeros)):
        digest.update(zeros)
    manifest = json.dumps(
        {
            "format": backup.FORMAT,
            "format_version": backup.FORMAT_VERSION,
            "members": {backup.DATABASE: {"size": BOMB_BYTES, "sha256": digest.hexdigest()}},
        }
    ).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(backup.DATABASE)
        info.size = BOMB_BYTES
        tar.addfile(info, io.BufferedReader(_Zeros(BOMB_BYTES)))
        info = tarfile.TarInfo(backup.MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))


# Runs the CLI and reports how many bytes it passed to write() (/proc/self/io's wchar).
_COUNTING_WRITES = """
import re, sys
from checkin_appliance.cli import main
code = main(sys.argv[1:])
io = open("/proc/self/io").read()
print("wchar", re.search(r"wchar: (\\d+)", io).group(1), file=sys.stderr)
sys.exit(code)
"""


def test_restore_refuses_a_tar_gz_bomb_before_writing_much(
    stopped_data_dir: Config, tmp_path: Path
) -> None:
    bomb = tmp_path / "backup.tar.gz"
    _gzip_bomb(bomb)
    assert bomb.stat().st_size < 1024 * 1024
    before = _tree(stopped_data_dir.data_dir)
    data_dir = str(stopped_data_dir.data_dir)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _COUNTING_WRITES,
            "restore",
            str(bomb),
            "--data-dir",
            data_dir,
            PLAIN,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    *errors, counted = result.stderr.splitlines()
    written = int(counted.split()[1])
    assert result.returncode == 1, result.stdout
    assert len(errors) == 1 and "not a usable backup" in errors[0], result.stderr
    assert written < MOST_RESTORE_MAY_WRITE, f"restore wrote {written} bytes"
    assert _tree(stopped_data_dir.data_dir) == before


# --- a tampered backup (issue 13, item 7) -------------------------------------------------------

# What the review planted: every new admin gets the attacker's password, and every new
# patient's name is copied into clinic_name, which the unauthenticated /login page shows.
BACKDOOR_TRIGGERS = """
CREATE TRIGGER backdoor_admin AFTER INSERT ON credentials
BEGIN
    UPDATE credentials SET password_hash = 'attacker' WHERE id = NEW.id;
END;
CREATE TRIGGER leak_names AFTER INSERT ON patients
BEGIN
    INSERT OR REPLACE INTO settings (key, value) VALUES ('clinic_name', json_quote(NEW.fname));
END;
"""


def _rewrite_database(
    source: Path, out: Path, change: Callable[[sqlite3.Connection], None]
) -> None:
    """`source` with its database changed by `change` and the manifest's checksums made to
    fit again (they use no secret): what an attacker with the USB stick can do."""
    work = out.parent / f"{out.name}.work"
    work.mkdir()
    with tarfile.open(source) as tar:
        names = tar.getnames()
        tar.extractall(work, filter="data")
    with contextlib.closing(sqlite3.connect(work / backup.DATABASE)) as conn:
        change(conn)
        conn.commit()
    manifest_path = work / backup.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for name in names:
        if name != backup.MANIFEST:
            data = (work / name).read_bytes()
            manifest["members"][name] = {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    manifest_path.write_text(json.dumps(manifest))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            tar.add(work / name, arcname=name)


def test_restore_refuses_a_backup_with_added_triggers(
    busy: BusyBackup, stopped_data_dir: Config, tmp_path: Path
) -> None:
    forged = tmp_path / "forged.tar"
    _rewrite_database(busy.path, forged, lambda conn: conn.executescript(BACKDOOR_TRIGGERS))
    before = _tree(stopped_data_dir.data_dir)
    result = run_cli("restore", str(forged), "--data-dir", str(stopped_data_dir.data_dir), PLAIN)
    assert result.returncode == 1, result.stdout
    line = _one_error_line(result)
    assert "extra trigger" in line and "nothing was changed" in line, line
    assert _tree(stopped_data_dir.data_dir) == before


@pytest.mark.parametrize(
    "change",
    [
        "CREATE VIEW names AS SELECT fname FROM patients",
        "CREATE INDEX by_name ON patients (fname)",
        "CREATE TABLE extra (x)",
        "DROP TRIGGER audit_log_no_delete",
        # Named like Litestream's, not made like them.
        "CREATE TABLE _litestream_lock (id INTEGER, note TEXT DEFAULT 'x')",
        "CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);"
        "CREATE TRIGGER _litestream_tr AFTER INSERT ON _litestream_seq BEGIN SELECT 1; END",
    ],
)
def test_restore_refuses_any_schema_object_its_migrations_do_not_make(
    busy: BusyBackup, stopped_data_dir: Config, tmp_path: Path, change: str
) -> None:
    forged = tmp_path / "forged.tar"
    _rewrite_database(busy.path, forged, lambda conn: conn.executescript(change))
    with pytest.raises(backup.BackupError, match="changed after the backup was made"):
        backup.restore(stopped_data_dir, forged)


def test_a_backup_of_a_replicating_box_restores_with_litestreams_two_tables(
    busy: BusyBackup, stopped_data_dir: Config, tmp_path: Path
) -> None:
    """Litestream adds _litestream_seq and _litestream_lock to the database it replicates;
    a backup of such a box (and a standby's copy) is the box's own database all the same."""
    made = tmp_path / "replicated.tar"
    tables = "".join(f"{sql};" for _, sql in inspect.LITESTREAM.values())
    _rewrite_database(busy.path, made, lambda conn: conn.executescript(tables))
    backup.restore(stopped_data_dir, made)
    assert stopped_data_dir.db_path.exists()


@pytest.fixture(scope="module")
def sealed(busy: BusyBackup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busy box backed up again, encrypted with PASS (the server is still running)."""
    folder = tmp_path_factory.mktemp("sealed")
    secret = _passphrase_file(folder)
    out = folder / "b.tar.age"
    result = busy.server.cli("backup", str(out), "--passphrase-file", str(secret))
    assert result.returncode == 0, result.stderr
    return out


def test_an_encrypted_backup_reveals_nothing_without_its_passphrase(
    busy: BusyBackup, sealed: Path
) -> None:
    data = sealed.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n-> scrypt ")
    for fname in list(busy.acked_before)[:5]:
        assert fname.encode() not in data
    # Markers long enough that random ciphertext never holds them (a bare b"JFIF", 4 bytes,
    # turns up by chance in about one run in ten thousand: the sealed file is ~460 KB).
    assert b"SQLite format 3\x00" not in data and b"CREATE TABLE" not in data
    assert b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" not in data
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    with pytest.raises(pyrage.DecryptError):
        pyrage.passphrase.decrypt(data, "not the passphrase")


def _flip_byte(path: Path, at: int) -> None:
    with path.open("r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x01]))


SEALED_DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "wrong_passphrase": (lambda path: None, "not the passphrase\n", "the passphrase is wrong"),
    "header_changed": (lambda path: _flip_byte(path, 40), PASS, "cannot decrypt"),
    "first_chunk_changed": (lambda path: _flip_byte(path, 300), PASS, "was changed or cut"),
    # The last chunk holds the manifest: only a check of the whole file before writing
    # keeps the database and photos before it from being unpacked.
    "last_chunk_changed": (
        lambda path: _flip_byte(path, path.stat().st_size - 40),
        PASS,
        "was changed or cut",
    ),
    "cut_short": (lambda path: os.truncate(path, path.stat().st_size - 1000), PASS, "cut"),
}


@pytest.mark.parametrize("damage", SEALED_DAMAGE, ids=list(SEALED_DAMAGE))
def test_a_wrong_passphrase_or_a_changed_file_is_refused_before_anything_is_written(
    sealed: Path, stopped_data_dir: Config, tmp_path: Path, damage: str
) -> None:
    spoil, passphrase, message = SEALED_DAMAGE[damage]
    bad = tmp_path / "b.tar.age"
    bad.write_bytes(sealed.read_bytes())
    spoil(bad)
    before = _tree(stopped_data_dir.data_dir)
    restore = ["restore", str(bad), "--data-dir", str(stopped_data_dir.data_dir)]
    result = subprocess.run(
        [sys.executable, "-c", _COUNTING_WRITES, *restore, "--passphrase-stdin"],
        input=passphrase,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    *errors, counted = result.stderr.splitlines()
    assert result.returncode == 1, result.stdout
    assert len(errors) == 1 and message in errors[0] and "nothing was changed" in errors[0], errors
    assert int(counted.split()[1]) < 64 * 1024, "restore wrote before it had checked the file"
    assert _tree(stopped_data_dir.data_dir) == before


def test_an_encrypted_backup_restores_with_its_passphrase_file(
    busy: BusyBackup, sealed: Path, stopped_data_dir: Config, tmp_path: Path
) -> None:
    secret = _passphrase_file(tmp_path)
    result = run_cli(
        "restore",
        str(sealed),
        "--data-dir",
        str(stopped_data_dir.data_dir),
        "--passphrase-file",
        str(secret),
    )
    assert result.returncode == 0, result.stderr
    assert set(busy.acked_before) <= set(_patients(stopped_data_dir.db_path))


def test_which_backups_restore_asks_a_passphrase_for(
    busy: BusyBackup, sealed: Path, stopped_data_dir: Config
) -> None:
    data_dir = ["--data-dir", str(stopped_data_dir.data_dir)]
    before = _tree(stopped_data_dir.data_dir)
    encrypted_without = run_cli("restore", str(sealed), *data_dir)
    assert encrypted_without.returncode == 2
    assert "is encrypted; give its passphrase" in _one_error_line(encrypted_without)
    encrypted_as_plain = run_cli("restore", str(sealed), *data_dir, PLAIN)
    assert encrypted_as_plain.returncode == 2
    # A plain tar (an older backup, or a forged one) needs --no-encryption, said on purpose.
    plain_without = run_cli("restore", str(busy.path), *data_dir)
    plain_with_passphrase = run_cli(
        "restore", str(busy.path), *data_dir, "--passphrase-stdin", stdin=PASS
    )
    for refused in (plain_without, plain_with_passphrase):
        assert refused.returncode == 2
        assert "is not encrypted" in _one_error_line(refused)
        assert "--no-encryption" in _one_error_line(refused)
    assert _tree(stopped_data_dir.data_dir) == before


def test_backup_asks_how_to_encrypt_and_never_takes_the_passphrase_from_argv(
    busy: BusyBackup, tmp_path: Path
) -> None:
    out = tmp_path / "usb"
    out.mkdir()
    unsaid = busy.server.cli("backup", str(out))
    assert unsaid.returncode == 2
    assert "--passphrase-file" in _one_error_line(unsaid)
    on_argv = busy.server.cli("backup", str(out), "--passphrase", PASS.strip())
    assert on_argv.returncode == 2
    short = busy.server.cli("backup", str(out), "--passphrase-stdin", stdin="short\n")
    assert short.returncode == 2
    assert "shorter than" in _one_error_line(short)
    assert list(out.iterdir()) == []


def test_memory_stays_flat_for_a_large_encrypted_backup(
    stopped_data_dir: Config, tmp_path: Path
) -> None:
    """150 MB of photos (30 of the largest an upload may be) in the database, through backup
    and restore: Python never holds the file, only a chunk of it at a time."""
    with contextlib.closing(sqlite3.connect(stopped_data_dir.db_path)) as conn, conn:
        for n in range(30):
            name = f"{n:032x}.jpg"
            conn.execute(
                "INSERT INTO photos (name, created_at, data) VALUES (?, ?, ?)",
                (name, "2026-12-04T10:00:00.000Z", os.urandom(5 * 1024 * 1024)),
            )
            conn.execute(
                "INSERT INTO patients (fname, image, created_at) VALUES (?, ?, ?)",
                (f"Large {n}", name, "2026-12-04T10:00:00Z"),
            )
    out = tmp_path / "big.tar.age"
    tracemalloc.start()
    try:
        made = backup.backup(stopped_data_dir, out, passphrase=PASS.strip().encode())
        _, peak_backup = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        backup.restore(stopped_data_dir, out, passphrase=PASS.strip().encode())
        _, peak_restore = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert made.size_bytes > 150 * 1024 * 1024
    assert peak_backup < 24 * 1024 * 1024, peak_backup
    assert peak_restore < 24 * 1024 * 1024, peak_restore


def test_a_passphrase_file_others_can_read_is_named_in_a_warning(
    busy: BusyBackup, tmp_path: Path
) -> None:
    secret = _passphrase_file(tmp_path)
    secret.chmod(0o644)
    result = busy.server.cli(
        "backup", str(tmp_path / "b.tar.age"), "--passphrase-file", str(secret)
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"warning: other users can read {secret}"), result.stderr
