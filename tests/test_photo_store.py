"""Photos in the database (issue 20): one commit with the row that names them, served from the
database as the files were, and an older box's files moved in at its first start.

Through the real app on real SQLite files; the older box is built as its release left it
(the schema before the photos table, photo files in media/patient_images/), and its backups
as format 2 wrote them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from checkin_appliance import backup, photo_files
from checkin_appliance.config import Config
from checkin_appliance.domain import CLI, Actor, NewPhoto, Role, utc_now
from checkin_appliance.store import Store
from checkin_appliance.store.schema import PRE_UPGRADE_DIR, available
from checkin_appliance.web import photo as web_photo
from checkin_appliance.web.keys import STORE
from tests.conftest import Clinic, StartClinic
from tests.test_photos import IMAGE_URL, checked_in, encode, noise, upload
from tests.test_store import Gate

# The last schema whose photos were files: the one before the migration that made the
# photos table (found by its SQL, so a renumbered migration changes nothing here).
OLD_SCHEMA = next(v for v, sql in available() if "CREATE TABLE photos" in sql) - 1
# The older box's photo files: (name, fname of the row naming it, modification time).
OLD_PHOTOS = [(f"{n:032x}.jpg", f"Old Patient {n}", 1_767_225_600 + n * 3600) for n in range(5)]


def rows(config: Config, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read as another process would, beside the running server."""
    uri = f"{config.db_path.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return db.execute(sql, params).fetchall()


def held(config: Config) -> dict[str, bytes]:
    return dict(rows(config, "SELECT name, data FROM photos"))


async def get_photo(clinic: Clinic, name: str, **headers: str) -> tuple[int, Any, bytes]:
    resp = await clinic.client.get(
        f"/media/patient_images/{name}", headers={**clinic.headers(Role.DOCTOR), **headers}
    )
    return resp.status, resp.headers, await resp.read()


# --- one commit ------------------------------------------------------------------------------


async def test_a_photo_and_the_row_naming_it_commit_together(
    clinic: Clinic, config: Config
) -> None:
    # The check-in's transaction fails after the photo's INSERT (at its visit's row): the
    # photo must go with it. Written in a transaction of its own, it would stay behind.
    with contextlib.closing(sqlite3.connect(config.db_path, isolation_level=None)) as db:
        db.execute(
            "CREATE TRIGGER refuse_visits BEFORE INSERT ON queue_entries "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    resp = await upload(clinic, encode(noise((200, 150)), "JPEG"), fname="Never Stored")
    assert resp.status == 500, await resp.text()
    assert rows(config, "SELECT count(*) FROM patients") == [(0,)]
    assert held(config) == {}

    with contextlib.closing(sqlite3.connect(config.db_path, isolation_level=None)) as db:
        db.execute("DROP TRIGGER refuse_visits")
    body = await checked_in(clinic, encode(noise((200, 150)), "JPEG"), fname="Stored")
    name = IMAGE_URL.match(body["image"]).group(1)  # type: ignore[union-attr]
    assert rows(config, "SELECT fname, image FROM patients") == [("Stored", name)]
    assert list(held(config)) == [name]


# --- serving ---------------------------------------------------------------------------------

# The headers each answer had when aiohttp's FileResponse sent the file (seen on the release
# before issue 20), besides Date and Server; the security headers come with every answer.
EVERY = {
    "Cache-Control",
    "Content-Security-Policy",
    "Content-Type",
    "Referrer-Policy",
    "X-Content-Type-Options",
    "X-Frame-Options",
}
FILE_RESPONSE_HEADERS = {
    200: EVERY | {"Accept-Ranges", "Content-Length", "ETag", "Last-Modified"},
    206: EVERY | {"Accept-Ranges", "Content-Length", "Content-Range", "ETag", "Last-Modified"},
    304: EVERY | {"ETag", "Last-Modified"},
    412: EVERY | {"Content-Length"},
    416: EVERY | {"Content-Range", "Transfer-Encoding"},
}


def assert_file_response_headers(status: int, headers: Any) -> None:
    assert {name.lower() for name in headers} - {"date", "server"} == {
        name.lower() for name in FILE_RESPONSE_HEADERS[status]
    }, status


@pytest.fixture
async def served(clinic: Clinic, config: Config) -> tuple[str, bytes]:
    """A photo of several read chunks (noise does not compress), as the database holds it."""
    body = await checked_in(clinic, encode(noise((800, 600)), "JPEG", quality=95))
    name = IMAGE_URL.match(body["image"]).group(1)  # type: ignore[union-attr]
    data = held(config)[name]
    assert len(data) > 2 * web_photo.CHUNK
    return name, data


async def test_a_photo_is_served_whole_with_the_headers_the_file_had(
    clinic: Clinic, config: Config, served: tuple[str, bytes]
) -> None:
    name, data = served
    status, headers, body = await get_photo(clinic, name)
    assert status == 200
    assert body == data
    assert_file_response_headers(200, headers)
    # What aiohttp's FileResponse sent for the file (and the security headers every answer
    # gets); Last-Modified is when it was stored.
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Length"] == str(len(data))
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert headers["ETag"].startswith('"') and headers["ETag"].endswith('"')
    ((created,),) = rows(config, "SELECT created_at FROM photos WHERE name = ?", (name,))
    stored_at = datetime.strptime(created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert headers["Last-Modified"] == format_datetime(stored_at.replace(microsecond=0), True)

    resp = await clinic.client.head(
        f"/media/patient_images/{name}", headers=clinic.headers(Role.DOCTOR)
    )
    assert resp.status == 200 and resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["ETag"] == headers["ETag"]
    assert await resp.read() == b""


async def test_conditional_requests_answer_304_and_412(
    clinic: Clinic, served: tuple[str, bytes]
) -> None:
    name, data = served
    _, headers, _ = await get_photo(clinic, name)
    etag, modified = headers["ETag"], headers["Last-Modified"]

    for asked in (etag, f"W/{etag}", "*", f'"other", {etag}'):
        status, again, body = await get_photo(clinic, name, **{"If-None-Match": asked})
        assert (status, body, again["ETag"]) == (304, b"", etag), asked
        assert_file_response_headers(304, again)
    assert (await get_photo(clinic, name, **{"If-Modified-Since": modified}))[0] == 304
    assert (await get_photo(clinic, name, **{"If-None-Match": '"other"'}))[0] == 200
    # If-None-Match decides over If-Modified-Since (RFC 9110, 13.2.2).
    both = {"If-None-Match": '"other"', "If-Modified-Since": modified}
    status, _, body = await get_photo(clinic, name, **both)
    assert (status, body) == (200, data)

    status, headers, _ = await get_photo(clinic, name, **{"If-Match": '"other"'})
    assert status == 412
    assert_file_response_headers(412, headers)
    assert (await get_photo(clinic, name, **{"If-Match": etag}))[2] == data
    earlier = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert (await get_photo(clinic, name, **{"If-Unmodified-Since": earlier}))[0] == 412


async def test_byte_ranges_answer_206_and_416(clinic: Clinic, served: tuple[str, bytes]) -> None:
    name, data = served
    size = len(data)
    across = web_photo.CHUNK - 5  # a range that spans two of the database reads
    cases = {
        "bytes=0-9": (0, 10),
        f"bytes={across}-{across + 99}": (across, 100),
        "bytes=-100": (size - 100, 100),
        f"bytes={size - 50}-": (size - 50, 50),
        f"bytes=0-{size + 1000}": (0, size),
    }
    for asked, (start, count) in cases.items():
        status, headers, body = await get_photo(clinic, name, Range=asked)
        assert status == 206, asked
        assert body == data[start : start + count], asked
        assert headers["Content-Range"] == f"bytes {start}-{start + count - 1}/{size}", asked
        assert headers["Content-Length"] == str(count), asked
        assert_file_response_headers(206, headers)
    for asked in (f"bytes={size}-", "bytes=0-1,5-9", "bytes=9-0", "lines=1-2"):
        status, headers, body = await get_photo(clinic, name, Range=asked)
        assert (status, body) == (416, b""), asked
        assert headers["Content-Range"] == f"bytes */{size}", asked
        assert_file_response_headers(416, headers)
    # If-Range with the time it was stored: the range; with an older time: the whole photo.
    _, headers, _ = await get_photo(clinic, name)
    fresh = {"Range": "bytes=0-9", "If-Range": headers["Last-Modified"]}
    assert (await get_photo(clinic, name, **fresh))[0] == 206
    stale = {"Range": "bytes=0-9", "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"}
    status, _, body = await get_photo(clinic, name, **stale)
    assert (status, body) == (200, data)


async def test_who_may_load_a_photo_is_unchanged(clinic: Clinic, served: tuple[str, bytes]) -> None:
    name, data = served
    path = f"/media/patient_images/{name}"
    for role, (status, code) in {
        None: (401, "not_authenticated"),
        Role.FORM: (403, "photo_not_allowed"),
        Role.QUEUE: (403, "photo_not_allowed"),  # a wall display, while display_photos is off
    }.items():
        resp = await clinic.client.get(path, headers=clinic.headers(role))
        assert (resp.status, (await resp.json())["code"]) == (status, code), role
    for role in (Role.DOCTOR, Role.ADMIN):
        resp = await clinic.client.get(path, headers=clinic.headers(role))
        assert (resp.status, await resp.read()) == (200, data), role
    # The signed link a body carries works without a session; a changed one does not.
    queue = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    (link,) = [item["patient"]["image"] for item in await queue.json()]
    resp = await clinic.client.get(link)
    assert (resp.status, await resp.read()) == (200, data)
    resp = await clinic.client.get(link[:-1] + ("0" if link[-1] != "0" else "1"))
    assert (resp.status, (await resp.json())["code"]) == (403, "photo_link_invalid")


async def test_photos_are_served_while_the_writer_is_busy(
    clinic: Clinic, served: tuple[str, bytes]
) -> None:
    # Read on the reader's connection, never the writer's: a long write (a VACUUM after a
    # purge) does not hold the doctors' photos up.
    name, data = served
    release = threading.Event()
    busy = asyncio.ensure_future(clinic.app[STORE].run_in_writer(lambda _: release.wait(30)))
    try:
        async with asyncio.timeout(10):
            status, _, body = await get_photo(clinic, name)
        assert (status, body) == (200, data)
        assert not busy.done()  # the writer was still held while the photo went out
    finally:
        release.set()
        async with asyncio.timeout(10):
            await busy


# --- an older box's photo files --------------------------------------------------------------


def old_box(data_dir: Path) -> dict[str, bytes]:
    """A data directory as the release before issue 20 left it: OLD_SCHEMA, each photo a file
    under the name its row holds, and a temp file and an unnamed photo a crash left."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "checkin.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        for number, sql in available()[:OLD_SCHEMA]:
            conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
        now = utc_now()  # waiting now: no retention purge at start takes their photos
        for name, fname, _ in OLD_PHOTOS:
            patient = conn.execute(
                "INSERT INTO patients (fname, image, created_at) VALUES (?, ?, ?)",
                (fname, name, now),
            ).lastrowid
            conn.execute(
                "INSERT INTO queue_entries (patient_id, check_in_time, queue_time)"
                " VALUES (?, ?, ?)",
                (patient, now, now),
            )
    photo_dir = data_dir / "media" / "patient_images"
    photo_dir.mkdir(parents=True)
    files = {}
    for n, (name, _, mtime) in enumerate(OLD_PHOTOS):
        files[name] = encode(noise((120, 90), seed=n), "JPEG")
        (photo_dir / name).write_bytes(files[name])
        os.utime(photo_dir / name, (mtime, mtime))
    (photo_dir / f"{'e' * 32}.jpg").write_bytes(b"a photo no row names")
    (photo_dir / f"{'f' * 32}.jpg.0a1b2c3d.tmp").write_bytes(b"half a photo")
    return files


def moved_aside(data_dir: Path) -> tuple[Path, dict[str, bytes]]:
    """The pre-upgrade copy of the old database, and the photo files beside it."""
    (copy,) = (data_dir / PRE_UPGRADE_DIR).glob(f"checkin-schema-{OLD_SCHEMA}-*.db")
    stamp = copy.name.removeprefix(f"checkin-schema-{OLD_SCHEMA}-").removesuffix(".db")
    folder = data_dir / PRE_UPGRADE_DIR / f"photos-{stamp}"
    return copy, {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


async def assert_served_from_the_database(
    clinic: Clinic, files: dict[str, bytes], *, file_times: bool = True
) -> None:
    assert held(Config(data_dir=clinic.app[STORE].path.parent)) == files
    mtimes = {name: mtime for name, _, mtime in OLD_PHOTOS}
    for name, data in files.items():
        status, headers, body = await get_photo(clinic, name)
        assert (status, body) == (200, data), name
        if file_times:  # the file's modification time is when it was stored
            moment = datetime.fromtimestamp(mtimes[name], UTC)
            assert headers["Last-Modified"] == format_datetime(moment, True), name


async def test_an_older_box_moves_its_photo_files_into_the_database_at_start(
    start_clinic: StartClinic, config: Config
) -> None:
    files = old_box(config.data_dir)

    clinic = await start_clinic()

    # Every named photo is in the database, under its name, and served from there; the
    # rows still name the same photos.
    await assert_served_from_the_database(clinic, files)
    names = rows(config, "SELECT fname, image FROM patients ORDER BY id")
    assert names == [(fname, name) for name, fname, _ in OLD_PHOTOS]
    # The files left media/ for the pre-upgrade folder, beside the copy of the old database
    # (the README's rollback puts both back); the temp file and the unnamed one are gone.
    assert not (config.data_dir / "media").exists()
    copy, aside = moved_aside(config.data_dir)
    assert aside == files
    with contextlib.closing(sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True)) as old:
        assert {row[0] for row in old.execute("SELECT image FROM patients")} == set(aside)
    await clinic.client.close()

    # The next start finds nothing to move and changes nothing.
    again = await start_clinic(tokens=clinic.tokens)
    await assert_served_from_the_database(again, files)
    assert moved_aside(config.data_dir)[1] == files


class PowerCut(Exception):
    """Raised in place of a rename: the start stops there, as at a power cut."""


async def test_a_move_cut_short_is_finished_by_the_next_start(
    start_clinic: StartClinic, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = old_box(config.data_dir)
    # Batches of two, and the start dies at the second file of the second batch: the first
    # batch committed and moved, the second committed with one file moved, the last batch
    # not read yet.
    monkeypatch.setattr(photo_files, "BATCH_FILES", 2)
    renames = 0

    def rename(source: Any, target: Any) -> None:
        nonlocal renames
        if Path(target).parent.name.startswith("photos-"):  # not the database's copy
            renames += 1
            if renames == 4:
                raise PowerCut
        os.rename(source, target)

    monkeypatch.setattr(photo_files.os, "replace", rename)
    store = Store(config.db_path)  # as the server's start opens it: migrated, copy made
    await store.open()
    try:
        with pytest.raises(PowerCut):
            await photo_files.move_into_database(store, config.photo_dir)
    finally:
        await store.close()
    monkeypatch.undo()
    assert len(held(config)) == 4  # two batches committed
    assert len(moved_aside(config.data_dir)[1]) == 3  # and three of their files moved
    left = config.data_dir / "media" / "patient_images"
    assert len([p for p in left.iterdir() if p.name in files]) == 2

    clinic = await start_clinic()
    await assert_served_from_the_database(clinic, files)
    assert moved_aside(config.data_dir)[1] == files
    assert not (config.data_dir / "media").exists()


def format_2_backup(out: Path, work: Path) -> dict[str, bytes]:
    """A backup as the release before issue 20 wrote it: its database at OLD_SCHEMA, the
    photos as media/patient_images/ members, format_version 2."""
    files = old_box(work)
    with contextlib.closing(sqlite3.connect(work / "checkin.db")) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")  # a backup's copy stands alone
    members = {
        backup.DATABASE: work / "checkin.db",
        **{backup.PHOTO_PREFIX + n: work / "media" / "patient_images" / n for n in files},
    }
    listed = {
        name: {"size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for name, path in members.items()
    }
    manifest = {
        "format": backup.FORMAT,
        "format_version": 2,
        "app_version": "0.1.0",
        "created_at": "2026-01-02T21:30:00Z",
        "counts": {"patients": len(files), "waiting": 0, "credentials": 0, "photos": len(files)},
        "missing_photos": [],
        "members": listed,
    }
    text = json.dumps(manifest).encode()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in members.items():
            tar.add(path, arcname=name)
        info = tarfile.TarInfo(backup.MANIFEST)
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return files


async def test_an_older_backup_restores_with_its_photos(
    start_clinic: StartClinic, config: Config, tmp_path: Path
) -> None:
    old = tmp_path / "old-backup.tar"
    files = format_2_backup(old, tmp_path / "old-box")
    # The box has a photo of its own, in its database: it goes aside with that database.
    clinic = await start_clinic()
    await checked_in(clinic, encode(noise((64, 64)), "JPEG"))
    await clinic.client.close()

    restored = await asyncio.to_thread(backup.restore, config, old)
    assert (restored.counts.photos, restored.missing_photos) == (len(files), 0)
    (aside,) = config.data_dir.glob("before-restore-*")
    assert len(held(Config(data_dir=aside))) == 1

    clinic = await start_clinic()
    # (restore writes the files anew: they are stored as of then)
    await assert_served_from_the_database(clinic, files, file_times=False)
    assert not (config.data_dir / "media").exists()
    assert moved_aside(config.data_dir)[1] == files


async def test_a_backup_before_the_first_start_still_carries_the_photo_files(
    start_clinic: StartClinic, config: Config, tmp_path: Path
) -> None:
    # Upgraded, but its server has not started yet to move the files in: the database
    # names photos it does not hold, so they go into the backup as files (as format 2 did).
    files = old_box(tmp_path / "upgraded")
    out = tmp_path / "b.tar"
    made = await asyncio.to_thread(backup.backup, Config(data_dir=tmp_path / "upgraded"), out)
    assert (made.counts.photos, made.missing_photos) == (len(files), 0)
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile(backup.MANIFEST))  # type: ignore[arg-type]
        photo_members = [n for n in tar.getnames() if n.startswith(backup.PHOTO_PREFIX)]
    assert manifest["format_version"] == 3 and manifest["counts"]["photos"] == len(files)
    assert sorted(photo_members) == sorted(backup.PHOTO_PREFIX + name for name in files)

    await asyncio.to_thread(backup.restore, config, out)
    clinic = await start_clinic()
    await assert_served_from_the_database(clinic, files, file_times=False)
    assert not (config.data_dir / "media").exists()


async def test_a_file_that_cannot_be_moved_in_stays_and_is_named_nowhere(
    start_clinic: StartClinic,
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = old_box(config.data_dir)
    big = OLD_PHOTOS[0][0]
    files[big] = encode(noise((400, 300)), "JPEG")
    (config.photo_dir / big).write_bytes(files[big])
    # Larger than any photo the box wrote: not taken, left where it is.
    monkeypatch.setattr(photo_files, "MAX_FILE_BYTES", len(files[big]) - 1)
    assert all(len(data) < len(files[big]) for name, data in files.items() if name != big)

    clinic = await start_clinic()

    moved = {name: data for name, data in files.items() if name != big}
    assert held(config) == moved
    assert moved_aside(config.data_dir)[1] == moved
    assert [p.name for p in config.photo_dir.iterdir()] == [big]
    status, _, _ = await get_photo(clinic, big)
    assert status == 404
    (warning,) = [r for r in caplog.records if r.name == photo_files.__name__ and r.levelno >= 30]
    assert "1 photo file(s)" in warning.getMessage() and "not a photo the box wrote" in (
        warning.getMessage()
    )
    for name in files:  # a photo's name is its key: never in a log line
        assert all(name not in record.getMessage() for record in caplog.records)


async def test_photos_in_a_batch_with_a_failing_write_are_stored_whole(tmp_path: Path) -> None:
    # Check-ins queued together share a transaction; one that fails (a credential that does
    # not exist) makes the writer roll the batch back and run it again, a savepoint each.
    # Every other photo is then stored whole, exactly once; the failed one's is not.
    store = Store(tmp_path / "checkin.db")
    await store.open()
    try:
        sent = {f"{n:032x}.jpg": encode(noise((160, 120), seed=n), "JPEG") for n in range(6)}
        broken = NewPhoto(f"{99:032x}.jpg", encode(noise((160, 120), seed=99), "JPEG"))
        async with Gate(store):
            writes = [
                asyncio.ensure_future(store.check_in(f"P {n}", NewPhoto(name, jpeg), CLI))
                for n, (name, jpeg) in enumerate(sent.items())
            ]
            await asyncio.sleep(0)
            failing = asyncio.ensure_future(store.check_in("X", broken, Actor(999, "127.0.0.1")))
            await asyncio.sleep(0)
        with pytest.raises(sqlite3.IntegrityError):
            await asyncio.wait_for(failing, 10)
        await asyncio.wait_for(asyncio.gather(*writes), 10)
        for name, jpeg in sent.items():
            found = await store.photo(name)
            assert found is not None and found.size == len(jpeg)
            assert await store.photo_bytes(found.id, 0, found.size) == jpeg
        assert await store.photo(broken.name) is None
    finally:
        await store.close()
    assert rows(Config(data_dir=tmp_path), "SELECT count(*) FROM photos") == [(len(sent),)]
