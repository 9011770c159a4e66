"""Acknowledged means durable: the real server is SIGKILLed at random moments under load.

Each round starts `checkin-appliance serve` on the same data directory, checks everything
acknowledged so far survived (and the audit chain verifies), then lets several clients check
patients in (half with a photo, as multipart) and call them, with one `/ws/queue/?since=…`
subscriber recording the feed, and SIGKILLs the server after a random short delay. Requests
in flight at the kill may fail; only what got its 201/200 (and every event a client saw)
must survive.

CI runs CHECKIN_CRASH_ROUNDS=20 (the default); a soak run:

    CHECKIN_CRASH_ROUNDS=200 .venv/bin/pytest -m soak tests/test_durability.py -s

The random seed is printed (run with -s to see it) and can be fixed with
CHECKIN_CRASH_SEED to replay a failing schedule.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import random
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from checkin_appliance import audit
from checkin_appliance.store.database import read_audit_log
from tests.serverproc import HOST, Server, running

ROUNDS = int(os.environ.get("CHECKIN_CRASH_ROUNDS", "20"))
SEED = int(os.environ.get("CHECKIN_CRASH_SEED", str(random.SystemRandom().randrange(2**32))))
KILL_AFTER = (0.05, 0.6)  # seconds of traffic before the SIGKILL
CHECK_IN_CLIENTS = 4
CALLERS = 2
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=5)
KILL_TIMEOUT = 10.0
REPLAY_TIMEOUT = 10.0
IDLE_PAUSE = 0.02  # a caller finding nobody waiting backs off this long before asking again

pytestmark = pytest.mark.soak
# What a client in flight sees when the server dies under it.
_KILL_ERRORS = (aiohttp.ClientError, ConnectionError, TimeoutError, asyncio.CancelledError)


def _small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(out, "JPEG", quality=80)
    return out.getvalue()


@dataclass
class Acknowledged:
    """What the server confirmed, and every event any subscriber saw, across all rounds."""

    check_ins: dict[str, bool] = field(default_factory=dict)  # fname -> sent with a photo
    calls: set[int] = field(default_factory=set)  # patient ids a caller got a 200 for
    seen: dict[int, tuple[str, int]] = field(default_factory=dict)  # seq -> (event, patient)

    def saw(self, message: dict[str, Any]) -> None:
        seq, event = message["seq"], (message["event"], message["patient"]["id"])
        assert self.seen.setdefault(seq, event) == event, f"seq {seq} changed meaning"

    @property
    def last_seen(self) -> int:
        return max(self.seen, default=0)


@dataclass
class Traffic:
    server: Server
    session: aiohttp.ClientSession
    form: dict[str, str]
    doctor_access: str
    acked: Acknowledged
    names: itertools.count[int]
    jpeg: bytes

    @property
    def doctor(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.doctor_access}"}

    async def check_ins(self, client: int) -> None:
        while True:
            fname = f"Patient {next(self.names)}"
            with_photo = client % 2 == 0  # half the kiosks send a photo
            if with_photo:
                data = aiohttp.FormData()
                data.add_field("fname", fname)
                data.add_field("image", self.jpeg, filename="p.jpg", content_type="image/jpeg")
                request = {"data": data}
            else:
                request = {"json": {"fname": fname}}
            async with self.session.post(
                f"{self.server.base_url}/api/patients/", headers=self.form, **request
            ) as resp:
                if resp.status == 201:
                    body = await resp.json()
                    assert body["fname"] == fname
                    self.acked.check_ins[fname] = with_photo
                else:
                    assert resp.status < 500, await resp.text()

    async def calls(self) -> None:
        while True:
            async with self.session.post(
                f"{self.server.base_url}/api/doctors/",
                json={"action": "call_next"},
                headers=self.doctor,
            ) as resp:
                if resp.status == 200:
                    self.acked.calls.add((await resp.json())["patient"]["id"])
                    continue
                assert resp.status == 404, await resp.text()
            await asyncio.sleep(IDLE_PAUSE)

    async def subscribe(self) -> None:
        url = f"{self.server.ws_url}?token={self.doctor_access}&since={self.acked.last_seen}"
        async with self.session.ws_connect(url) as ws:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                message = json.loads(msg.data)
                if "seq" in message and "event" in message:
                    self.acked.saw(message)


async def _drive_and_kill(traffic: Traffic, delay: float) -> None:
    tasks = [asyncio.create_task(traffic.check_ins(i)) for i in range(CHECK_IN_CLIENTS)]
    tasks += [asyncio.create_task(traffic.calls()) for _ in range(CALLERS)]
    tasks.append(asyncio.create_task(traffic.subscribe()))
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # a 5xx or a changed event fails the test here, before the kill
        traffic.server.proc.kill()
        await asyncio.to_thread(traffic.server.proc.wait, KILL_TIMEOUT)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        # After the kill, broken connections are expected; anything else is a finding.
        if isinstance(result, Exception) and not isinstance(result, _KILL_ERRORS):
            raise result


async def _replay_from_start(server: Server, access: str, last: int) -> list[tuple[int, str, int]]:
    """Every event in the log, via the feed's `since=0` replay, until seq `last`."""
    replayed: list[tuple[int, str, int]] = []
    if last == 0:
        return replayed
    async with (
        aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session,
        session.ws_connect(f"{server.ws_url}?token={access}&since=0") as ws,
    ):
        async with asyncio.timeout(REPLAY_TIMEOUT):
            while not replayed or replayed[-1][0] < last:
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                message = json.loads(msg.data)
                assert "seq" in message and "event" in message, message
                replayed.append((message["seq"], message["event"], message["patient"]["id"]))
    return replayed


async def _check_survivors(server: Server, access: str, acked: Acknowledged) -> None:
    db = sqlite3.connect(f"file:{server.data_dir / 'checkin.db'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        verdict = audit.verify(
            read_audit_log(server.data_dir / "checkin.db"), audit.load_key(server.data_dir)
        )
        assert verdict.ok, f"audit trail broken after a crash: {verdict.problem}"
        rows = db.execute(
            "SELECT p.id, p.fname, p.image, e.status FROM patients p "
            "JOIN queue_entries e ON e.patient_id = p.id"
        ).fetchall()
        photos = dict(db.execute("SELECT name, data FROM photos").fetchall())
        seqs = [row[0] for row in db.execute("SELECT seq FROM events ORDER BY seq")]
        log = db.execute(
            "SELECT ev.seq, ev.event, e.patient_id FROM events ev "
            "JOIN queue_entries e ON e.id = ev.entry_id ORDER BY ev.seq"
        ).fetchall()
    finally:
        db.close()

    by_name = {fname: (pid, image, status) for pid, fname, image, status in rows}
    for fname, with_photo in acked.check_ins.items():
        assert fname in by_name, f"acknowledged check-in {fname!r} was lost"
        image = by_name[fname][1]
        assert (image is not None) == with_photo, (fname, image)
        if image is not None:
            with Image.open(io.BytesIO(photos[image])) as img:
                img.load()  # the whole photo is there and decodes
    status = {pid: status for pid, _, status in by_name.values()}
    for pid in acked.calls:
        assert status.get(pid) == "called", f"acknowledged call of patient {pid} was lost"

    assert seqs == list(range(1, len(seqs) + 1)), "the event log's seq has a gap"
    recorded = {seq: (event, pid) for seq, event, pid in log}
    for seq, event in acked.seen.items():
        assert recorded.get(seq) == event, f"event {seq} a client saw is not in the log"
    replay = await _replay_from_start(server, access, seqs[-1] if seqs else 0)
    assert replay == [tuple(row) for row in log], "replay since=0 differs from the log"

    # A photo is committed with the row naming it, or not at all: no orphan, no file.
    images = {image for _, image, _ in by_name.values() if image}
    assert set(photos) == images, f"photos without their row: {sorted(set(photos) - images)[:5]}"
    assert not (server.data_dir / "media").exists()


async def test_acknowledged_work_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"\ncrash rounds: {ROUNDS}, seed: {SEED} (CHECKIN_CRASH_SEED={SEED} replays it)")
    data_dir = tmp_path / "data"
    acked = Acknowledged()
    names = itertools.count(1)
    jpeg = _small_jpeg()
    started = time.monotonic()

    with running(tmp_path, data_dir) as server:
        form_token = server.create_token("form", "Kiosk")
        doctor_token = server.create_token("doctor", "Dr Crash", room="1")
        form = {"Authorization": f"Bearer {server.login(form_token)}"}
        doctor_access = server.login(doctor_token)  # sessions live in the db: they survive

    for round_ in range(ROUNDS):
        with running(tmp_path, data_dir) as server:
            assert server.base_url.startswith(f"http://{HOST}:")
            await _check_survivors(server, doctor_access, acked)
            async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
                traffic = Traffic(server, session, form, doctor_access, acked, names, jpeg)
                delay = rng.uniform(*KILL_AFTER)
                try:
                    await _drive_and_kill(traffic, delay)
                except AssertionError as exc:
                    raise AssertionError(f"round {round_} (seed {SEED}): {exc}") from exc
            assert server.proc.returncode == -9

    with running(tmp_path, data_dir) as server:
        await _check_survivors(server, doctor_access, acked)
    elapsed = time.monotonic() - started
    print(
        f"{ROUNDS} kills in {elapsed:.1f}s: {len(acked.check_ins)} check-ins, "
        f"{len(acked.calls)} calls and {len(acked.seen)} events acknowledged and kept"
    )
    assert acked.check_ins and acked.calls and acked.seen, "the rounds did too little to prove much"
