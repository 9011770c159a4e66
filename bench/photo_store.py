"""Photos in the database: what photo check-ins add to the data directory, and the server's
memory while many screens load photos at once.

    .venv/bin/python -m bench.photo_store [--photos 1000] [--concurrency 4] [--readers 200]
                                          [--rounds 5] [--out FILE.json]

Starts the real server (`python -m checkin_appliance serve`, loopback) on a fresh data
directory with a kiosk and a doctor made by the CLI, and checks in `photos` patients at
`concurrency`, each with the bench's ~200 KB 1600x1200 JPEG (bench.loadgen.make_photo; stored
re-encoded, ~60 KB). Growth: the data directory's bytes (checkin.db, its -wal, media/) once the
server has stopped (its last connection folds the WAL into the file), against the empty
database it started with; per 1,000 photos, and against the stored JPEGs' own bytes.

Then, on a second start, `readers` clients (a doctor's session each, as `readers` staff
screens) load the newest photo at the same moment, `rounds` times, each round a newer
photo: the server's RSS is sampled every 20 ms, and its peak during the loads is given above
its idle RSS just before (the photo check-ins' peaks are `make bench`'s photo cells).
Prints the figures and writes bench/results/<date>-<host>-photo-store.json. Run from another
tree (a release before the database held photos), it measures that tree's server the same
way: photo files in media/ count in the growth, and FileResponse serves them.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import socket
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import Deadline, make_photo
from bench.servers import (
    HOST,
    ServerProcess,
    create_credential,
    fs_type,
    git_commit,
    login,
    rss_kb,
    write_results,
)

PASSWORD = "bench photo store password"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)
SAMPLE_INTERVAL = 0.02
SETTLE_S = 1.0  # idle before the loads, after the start's purge and the logins


def data_bytes(data_dir: Path) -> dict[str, int]:
    """The database file, its WAL, and every photo file in media/ (a release before): their
    bytes, and what they take on the disk (whole blocks: a file's last one is part empty)."""
    files = {
        "db": [data_dir / "checkin.db"],
        "wal": [data_dir / "checkin.db-wal"],
        "media": [p for p in (data_dir / "media").rglob("*") if p.is_file()],
    }
    found = {}
    for kind, paths in files.items():
        stats = [p.stat() for p in paths if p.exists()]
        found[kind] = sum(st.st_size for st in stats)
        found[f"{kind}_on_disk"] = sum(st.st_blocks * 512 for st in stats)
    return found


def total(found: dict[str, int], *, on_disk: bool) -> int:
    return sum(v for k, v in found.items() if k.endswith("_on_disk") == on_disk)


def stored_jpeg_bytes(data_dir: Path) -> int:
    """The stored photos' own bytes, wherever this release keeps them."""
    media = data_dir / "media" / "patient_images"
    if media.is_dir() and any(media.iterdir()):
        return sum(p.stat().st_size for p in media.iterdir() if p.is_file())
    uri = f"{(data_dir / 'checkin.db').resolve().as_uri()}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        return int(db.execute("SELECT coalesce(sum(length(data)), 0) FROM photos").fetchone()[0])
    finally:
        db.close()


async def started(workdir: Path, deadline: Deadline) -> ServerProcess:
    server = ServerProcess("ours", workdir, "WARNING")
    server.start()
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        await server.wait_healthy(session, deadline.left())
    return server


async def check_ins(
    base: str, form: dict[str, str], photo: bytes, count: int, concurrency: int
) -> list[str]:
    """`count` photo check-ins; the photo URL of each (a signed link), in order."""
    urls: list[str] = []
    numbers = iter(range(count))

    async def kiosk(session: aiohttp.ClientSession) -> None:
        for n in numbers:
            data = aiohttp.FormData()
            data.add_field("fname", f"Bench Photo {n}")
            data.add_field("image", photo, filename="kiosk.jpg", content_type="image/jpeg")
            async with session.post(f"{base}/api/patients/", data=data, headers=form) as r:
                body = await r.json(content_type=None)
                if r.status != 201:
                    raise RuntimeError(f"check-in {n} -> {r.status} {body}")
                urls.append(body["image"])

    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        await asyncio.gather(*(kiosk(session) for _ in range(concurrency)))
    return urls


async def loads(
    base: str, doctor: dict[str, str], paths: list[str], readers: int, pid: int | None
) -> dict[str, Any]:
    """`readers` clients load each of `paths` at the same moment, one path after another;
    the server's RSS is sampled meanwhile."""
    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            kb = rss_kb(pid)
            if kb is not None:
                samples.append(kb)
            await asyncio.sleep(SAMPLE_INTERVAL)

    await asyncio.sleep(SETTLE_S)
    idle = rss_kb(pid)
    connector = aiohttp.TCPConnector(limit=readers)
    loaded = 0
    sampler = asyncio.create_task(sample())
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT, connector=connector) as session:

        async def one(path: str) -> int:
            async with session.get(f"{base}{path}", headers=doctor) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"GET photo -> {r.status}")
                return len(body)

        for path in paths:
            sizes = await asyncio.gather(*(one(path) for _ in range(readers)))
            loaded += len(sizes)
    elapsed = time.perf_counter() - t0
    done.set()
    await sampler
    peak = max(samples) if samples else None
    return {
        "readers": readers,
        "rounds": len(paths),
        "loads": loaded,
        "loads_per_s": round(loaded / elapsed, 1),
        "rss_idle_kb": idle,
        "rss_peak_kb": peak,
        "rss_peak_above_idle_kb": None if peak is None or idle is None else peak - idle,
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    deadline = Deadline(args.timeout)
    data_dir = workdir / "data"
    photo = make_photo()
    server = await started(workdir, deadline)
    base = f"http://{HOST}:{server.port}"
    try:
        kiosk = await create_credential(data_dir, "form", "Bench Kiosk", PASSWORD)
        doctor = await create_credential(data_dir, "doctor", "Bench Doctor", PASSWORD)
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            form = {"Authorization": f"Bearer {await login(session, base, kiosk, PASSWORD)}"}
        server.stop()  # an empty box, settled: what the photos are measured against
        before = data_bytes(data_dir)
        server = await started(workdir, deadline)
        base = f"http://{HOST}:{server.port}"
        t0 = time.perf_counter()
        urls = await check_ins(base, form, photo, args.photos, args.concurrency)
        checkin_s = time.perf_counter() - t0
        server.stop()
        after = data_bytes(data_dir)
        jpegs = stored_jpeg_bytes(data_dir)
        server = await started(workdir, deadline)
        base = f"http://{HOST}:{server.port}"
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            staff = {"Authorization": f"Bearer {await login(session, base, doctor, PASSWORD)}"}
        newest = [url.partition("?")[0] for url in urls[-args.rounds :]]
        served = await loads(base, staff, newest, args.readers, server.pid)
    finally:
        server.stop()
    grown = total(after, on_disk=False) - total(before, on_disk=False)
    on_disk = total(after, on_disk=True) - total(before, on_disk=True)
    return {
        "photo_bytes_sent": len(photo),
        "checkins_per_s": round(args.photos / checkin_s, 1),
        "bytes_before": before,
        "bytes_after": after,
        "growth_bytes": grown,
        "growth_on_disk_bytes": on_disk,
        "growth_per_1000_photos_mb": round(grown / args.photos * 1000 / 1e6, 1),
        "growth_on_disk_per_1000_photos_mb": round(on_disk / args.photos * 1000 / 1e6, 1),
        "stored_jpeg_bytes": jpegs,
        "growth_over_jpegs": round(grown / jpegs, 3) if jpegs else None,
        "serving": served,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=4, help="kiosks checking in at once")
    p.add_argument("--readers", type=int, default=200, help="screens loading a photo at once")
    p.add_argument("--rounds", type=int, default=5, help="photos they load, one after another")
    p.add_argument("--timeout", type=float, default=900.0, help="overall limit in s")
    p.add_argument(
        "--out", type=Path, help="JSON file (default bench/results/...-photo-store.json)"
    )
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= args.photos or min(args.concurrency, args.readers) < 1:
        p.error("--photos, --concurrency, --readers and --rounds must be at least 1")
    started_at = datetime.now(UTC)
    host = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix="bench-photo-store-") as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
        data_fs = fs_type(Path(tmp))
    result = {
        "started_utc": started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": host,
        "commit": git_commit(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "data_dir_fs": data_fs,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        **figures,
    }
    serving = figures["serving"]
    print(
        f"{args.photos} photo check-ins at C={args.concurrency}: {figures['checkins_per_s']}/s; "
        f"the data directory grew {figures['growth_bytes'] / 1e6:.1f} MB "
        f"({figures['growth_per_1000_photos_mb']} MB per 1,000 photos, "
        f"{figures['growth_over_jpegs']}x the stored JPEGs' "
        f"{figures['stored_jpeg_bytes'] / 1e6:.1f} MB; on the disk "
        f"{figures['growth_on_disk_per_1000_photos_mb']} MB per 1,000)"
    )
    print(
        f"{serving['readers']} screens loading a photo at once, {serving['rounds']} rounds: "
        f"{serving['loads_per_s']} loads/s; server RSS idle {serving['rss_idle_kb'] / 1024:.1f} "
        f"MiB, peak {serving['rss_peak_kb'] / 1024:.1f} MiB "
        f"(+{serving['rss_peak_above_idle_kb'] / 1024:.2f} MiB)"
    )
    write_results(result, args.out, started_at, "photo-store")
    return 0


if __name__ == "__main__":
    sys.exit(main())
