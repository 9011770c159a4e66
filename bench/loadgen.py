"""Load generation and measurement: subscribers, request workers, fan-out latency per pair.

Fan-out latency of one (event, subscriber) pair = the time the subscriber's socket delivered
the frame minus the time just before the HTTP request that caused it was sent (both
`time.perf_counter()` in this process), so it includes the request, the durable commit, the
fan-out and the delivery. Every subscriber must receive every event exactly once; events are
matched by patient id.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from PIL import Image, ImageDraw

from bench.feedclient import FeedClient, open_feed
from bench.servers import Target, cpu_s, machine_busy_s, rss_kb, status_kb

PHOTO_SIZE = (1600, 1200)
PHOTO_BYTES = 200_000
CONNECT_PARALLEL = 50
CONNECT_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0
# Percentiles kept per cell for the CDF charts: every 1 % and a finer tail.
CDF_POINTS = [float(p) for p in range(100)] + [99.5, 99.9, 100.0]


# --- numbers ------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def summary_ms(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    out: dict[str, Any] = {"n": len(ordered)}
    for name, p in (("p50", 50), ("p95", 95), ("p99", 99)):
        v = percentile(ordered, p)
        out[name] = None if v is None else round(v * 1000, 3)
    out["max"] = round(ordered[-1] * 1000, 3) if ordered else None
    return out


def quantiles_ms(values: list[float]) -> list[list[float]]:
    """[[percentile, ms], …] on CDF_POINTS: enough to draw the CDF from the JSON file."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [[p, round(percentile(ordered, p) * 1000, 3)] for p in CDF_POINTS]


def rate(records: list[Sent]) -> float | None:
    ok = [r for r in records if r.patient_id is not None]
    if not records or not ok:
        return None
    wall = max(r.done for r in records) - min(r.sent for r in records)
    return round(len(ok) / wall, 1) if wall > 0 else None


class Deadline:
    """The overall time limit; every wait below takes at most what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"overall timeout reached during {what}")


# --- the photo ----------------------------------------------------------------------------


def make_photo(size: tuple[int, int] = PHOTO_SIZE, target_bytes: int = PHOTO_BYTES) -> bytes:
    """A camera-like JPEG (gradients, shapes, sensor noise) whose quality is chosen to land
    near `target_bytes`: decoding it costs what a kiosk photo costs."""
    w, h = size
    rnd = random.Random(6)
    img = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize(size),
            Image.linear_gradient("L").rotate(90).resize(size),
            Image.radial_gradient("L").resize(size),
        ),
    )
    img = Image.blend(img, Image.effect_noise(size, 25).convert("RGB"), 0.25)
    draw = ImageDraw.Draw(img)
    for _ in range(60):
        x, y = rnd.randrange(w), rnd.randrange(h)
        box = (x, y, x + rnd.randrange(40, 300), y + rnd.randrange(40, 300))
        draw.ellipse(box, fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))

    def encode(quality: int) -> bytes:
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality)
        return out.getvalue()

    low, high = 20, 95
    best = encode(high)
    for _ in range(8):  # binary search on quality, bounded
        if low > high:
            break
        mid = (low + high) // 2
        data = encode(mid)
        if abs(len(data) - target_bytes) < abs(len(best) - target_bytes):
            best = data
        if len(data) < target_bytes:
            low = mid + 1
        else:
            high = mid - 1
    return best


# --- server memory ------------------------------------------------------------------------


class Sampler:
    """Samples the server's RSS every `interval` s; `window_peak_kb` is the peak since mark()."""

    def __init__(self, pid: int | None, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.t0 = time.perf_counter()
        self.samples: list[tuple[float, int]] = []
        self.peak_kb = 0
        self.window_peak_kb = 0

    def sample(self) -> int | None:
        kb = rss_kb(self.pid)
        if kb is not None:
            self.samples.append((round(time.perf_counter() - self.t0, 2), kb))
            self.peak_kb = max(self.peak_kb, kb)
            self.window_peak_kb = max(self.window_peak_kb, kb)
        return kb

    def mark(self) -> None:
        self.window_peak_kb = 0
        self.sample()

    async def run(self, deadline: Deadline) -> None:
        if self.pid is None:
            return
        while deadline.left() > 0:  # bounded by the deadline; cancelled at the end of a level
            self.sample()
            await asyncio.sleep(self.interval)

    def hwm_kb(self) -> int | None:
        return status_kb(self.pid, "VmHWM")


class CpuMeter:
    """CPU of the server, of this generator and of everything else, over one window."""

    def __init__(self, server_pid: int | None) -> None:
        self.pid = server_pid
        self.t0 = time.perf_counter()
        self.server0 = cpu_s(server_pid)
        self.gen0 = time.process_time()
        self.busy0 = machine_busy_s()

    def stop(self) -> dict[str, Any]:
        window = time.perf_counter() - self.t0
        server1, gen1, busy1 = cpu_s(self.pid), time.process_time(), machine_busy_s()
        server = None if self.server0 is None or server1 is None else server1 - self.server0
        gen = gen1 - self.gen0
        other = None
        if self.busy0 is not None and busy1 is not None:
            other = max(0.0, busy1 - self.busy0 - (server or 0.0) - gen)

        def pct(seconds: float | None) -> float | None:
            return None if seconds is None or window <= 0 else round(100 * seconds / window, 1)

        return {
            "window_s": round(window, 3),
            "server_cpu_s": None if server is None else round(server, 3),
            "generator_cpu_s": round(gen, 3),
            "other_cpu_s": None if other is None else round(other, 3),
            "server_cpu_pct": pct(server),
            "generator_cpu_pct": pct(gen),
            "other_cpu_pct": pct(other),
        }


# --- subscribers --------------------------------------------------------------------------


class Subscribers:
    """The N live-feed clients of one level, all in this process."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.clients: list[FeedClient] = []
        self.last_seq: dict[int, int] = {}
        self.connect_errors: list[str] = []

    def __len__(self) -> int:
        return len(self.clients)

    async def connect(self, count: int, deadline: Deadline) -> None:
        """Adds `count` subscribers with ?snapshot=1; each is live once its snapshot arrived."""
        gate = asyncio.Semaphore(CONNECT_PARALLEL)
        start = len(self.clients)

        async def one(index: int) -> FeedClient:
            async with gate:
                timeout = min(CONNECT_TIMEOUT, max(1.0, deadline.left()))
                path = self.target.feed_path("snapshot=1")
                client = await open_feed(self.target.host, self.target.port, path, index, timeout)
                if not await client.wait_frames(1, timeout):
                    client.drop()
                    raise RuntimeError(f"no snapshot (close code {client.close_code})")
                first = json.loads(client.frames[0][1])
                if first.get("event") != "QUEUE_SNAPSHOT":
                    client.drop()
                    raise RuntimeError(f"first frame was {first.get('event')}, not a snapshot")
                self.last_seq[index] = int(first["seq"])
                client.frames.clear()
                return client

        results = await asyncio.gather(
            *(one(start + i) for i in range(count)), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                self.connect_errors.append(f"{type(r).__name__}: {r}")
            else:
                self.clients.append(r)

    def reset(self) -> None:
        """Forget received frames, remembering the last seq each subscriber saw."""
        for client in self.clients:
            if client.frames:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    seq = json.loads(client.frames[-1][1]).get("seq")
                    if isinstance(seq, int):
                        self.last_seq[client.index] = seq
            client.frames.clear()

    async def drain(self, expected: int, limit: float) -> float:
        """Waits until every open subscriber holds `expected` frames, at most `limit` s."""
        start = time.perf_counter()
        end = start + limit
        for client in self.clients:  # one wait per subscriber, all within the same limit
            if client.open:
                await client.wait_frames(expected, max(0.0, end - time.perf_counter()))
        return time.perf_counter() - start

    def analyse(self, event: str, sent: dict[int, tuple[float, str]]) -> dict[str, Any]:
        """Latency of every (event, subscriber) pair, by stream; missed, duplicated, stray."""
        latencies: dict[str, list[float]] = {}
        missed = dup = unexpected = seq_gaps = seq_backwards = 0
        subs_missing = 0
        for client in self.clients:
            seen: set[int] = set()
            last = self.last_seq.get(client.index, 0)
            for received, text in client.frames:
                try:
                    msg = json.loads(text)
                    seq, pid, kind = msg.get("seq"), msg["patient"]["id"], msg["event"]
                except (ValueError, KeyError, TypeError):
                    unexpected += 1
                    continue
                if isinstance(seq, int):
                    if seq <= last:
                        seq_backwards += 1
                    else:
                        seq_gaps += seq - last - 1
                        last = seq
                if kind != event or pid not in sent:
                    unexpected += 1
                elif pid in seen:
                    dup += 1
                else:
                    seen.add(pid)
                    sent_at, stream = sent[pid]
                    latencies.setdefault(stream, []).append(received - sent_at)
            self.last_seq[client.index] = last
            missed += len(sent) - len(seen)
            subs_missing += len(seen) < len(sent)
        return {
            "pairs_expected": len(sent) * len(self.clients),
            "latencies": latencies,
            "missed": missed,
            "subscribers_missing_events": subs_missing,
            "duplicated": dup,
            "unexpected_frames": unexpected,
            "seq_gaps": seq_gaps,
            "seq_backwards": seq_backwards,
        }

    def closed_by_server(self) -> list[int | None]:
        return [c.close_code for c in self.clients if not c.open]

    async def close(self) -> None:
        for client in self.clients:
            client.close()
        await asyncio.sleep(0.1)  # let the close frames leave before the loop moves on
        for client in self.clients:
            client.drop()


# --- requests -----------------------------------------------------------------------------


Body = Callable[[int], dict[str, Any]]  # sequence number -> keyword arguments of session.post


@dataclass
class Stream:
    """One kind of request, sent `count` times by `concurrency` workers."""

    name: str  # "json", "photo" or "call_next": how results are grouped
    path: str
    headers: dict[str, str]
    body: Body
    count: int
    concurrency: int
    ok_status: int
    background: bool = False  # runs only while the other streams of its phase do
    interval: float = 0.0  # least seconds between two requests of one worker (pacing)


@dataclass
class Sent:
    stream: str
    sent: float
    done: float
    status: int | str
    patient_id: int | None


def json_body(n: int) -> dict[str, Any]:
    return {"json": {"fname": f"Bench Patient {n}"}}


def photo_body(photo: bytes) -> Body:
    def body(n: int) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("fname", f"Bench Patient {n}")
        form.add_field("image", photo, filename="kiosk.jpg", content_type="image/jpeg")
        return {"data": form}

    return body


def call_next_body(n: int) -> dict[str, Any]:
    return {"json": {"action": "call_next"}}


def check_in_stream(
    target: Target, kind: str, count: int, concurrency: int, photo: bytes, **extra: Any
) -> Stream:
    body = photo_body(photo) if kind == "photo" else json_body
    return Stream(
        kind, "/api/patients/", target.form_headers, body, count, concurrency, 201, **extra
    )


def call_next_stream(target: Target, count: int, concurrency: int) -> Stream:
    return Stream(
        "call_next",
        "/api/doctors/",
        target.doctor_headers,
        call_next_body,
        count,
        concurrency,
        200,
    )


async def run_stream(
    api: aiohttp.ClientSession,
    target: Target,
    stream: Stream,
    numbers: itertools.count[int],
    deadline: Deadline,
    stop: asyncio.Event | None = None,
) -> list[Sent]:
    """`concurrency` workers share `count` requests; each is sent exactly once."""
    records: list[Sent] = []
    remaining = stream.count
    url = target.base + stream.path

    def patient_id(status: int, body: Any) -> int | None:
        if status != stream.ok_status or not isinstance(body, dict):
            return None
        value = body.get("id") if stream.ok_status == 201 else (body.get("patient") or {}).get("id")
        return value if isinstance(value, int) else None

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and not (stop is not None and stop.is_set()):  # bounded by count
            deadline.check(f"{stream.name} requests")
            remaining -= 1
            kwargs = stream.body(next(numbers))
            status: int | str
            pid = None
            sent = time.perf_counter()
            try:
                async with api.post(url, headers=stream.headers, **kwargs) as r:
                    status = r.status
                    pid = patient_id(status, await r.json(content_type=None))
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                status = type(exc).__name__
            done = time.perf_counter()
            records.append(Sent(stream.name, sent, done, status, pid))
            if stream.interval > done - sent:
                await asyncio.sleep(stream.interval - (done - sent))

    await asyncio.gather(*(worker() for _ in range(stream.concurrency)))
    return records


# --- one level: a server, its subscribers, its phases ------------------------------------


@dataclass
class Level:
    """Everything one server's measurements share."""

    target: Target
    api: aiohttp.ClientSession
    subs: Subscribers
    sampler: Sampler
    photo: bytes
    deadline: Deadline
    drain_timeout: float
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(self, streams: list[Stream]) -> list[Sent]:
        """Runs the streams together; background ones stop when the others are done."""
        stop = asyncio.Event()
        front = [s for s in streams if not s.background]
        back = [s for s in streams if s.background]
        back_tasks = [
            asyncio.create_task(
                run_stream(self.api, self.target, s, self.numbers, self.deadline, stop)
            )
            for s in back
        ]
        try:
            done = await asyncio.gather(
                *(run_stream(self.api, self.target, s, self.numbers, self.deadline) for s in front)
            )
        finally:
            stop.set()  # the background streams end after their current request
            back = await asyncio.gather(*back_tasks, return_exceptions=True)
        for records in back:
            if isinstance(records, BaseException):
                raise records
            done.append(records)
        return [r for records in done for r in records]

    async def unmeasured(self, streams: list[Stream]) -> list[Sent]:
        """Warm-up and housekeeping: requests, then every subscriber's frames, then forget."""
        self.subs.reset()
        records = await self.send(streams)
        ok = sum(1 for r in records if r.patient_id is not None)
        await self.subs.drain(ok, min(self.drain_timeout, self.deadline.left()))
        self.subs.reset()
        return records

    async def phase(self, streams: list[Stream], event: str) -> dict[str, Any]:
        """One measured phase: requests, until every subscriber has every frame, analysis."""
        self.subs.reset()
        self.sampler.mark()
        meter = CpuMeter(self.target.pid)
        records = await self.send(streams)
        t_requests = time.perf_counter() - meter.t0
        ok = [r for r in records if r.patient_id is not None]
        drain = await self.subs.drain(len(ok), min(self.drain_timeout, self.deadline.left()))
        cpu = meter.stop()
        self.sampler.sample()
        fan = self.subs.analyse(event, {r.patient_id: (r.sent, r.stream) for r in ok})
        by_stream: dict[str, Any] = {}
        for stream in streams:
            mine = [r for r in records if r.stream == stream.name]
            statuses: dict[str, int] = {}
            for r in mine:
                statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
            ids = [r.patient_id for r in mine if r.patient_id is not None]
            by_stream[stream.name] = {
                "concurrency": stream.concurrency,
                "requests": len(mine),
                "ok": len(ids),
                "statuses": statuses,
                "errors": len(mine) - len(ids),
                "same_patient_twice": len(ids) - len(set(ids)),
                "per_s": rate(mine),
                "http_ms": summary_ms([r.done - r.sent for r in mine]),
                "fanout_ms": summary_ms(fan["latencies"].get(stream.name, [])),
            }
        latencies = fan.pop("latencies")
        return {
            "event": event,
            "streams": by_stream,
            "ok": len(ok),
            "requests_s": round(t_requests, 3),
            "drain_s": round(drain, 3),
            "fanout": fan,
            "cpu": cpu,
            "rss_peak_kb": self.sampler.window_peak_kb or None,
            "_latencies": latencies,  # raw, for the cell summary; not written to JSON
        }

    async def empty_queue(self, limit: int = 100_000) -> int:
        """Calls patients until the server answers 404 (a server we did not start may hold
        some); returns how many were called."""
        called = 0
        url = self.target.base + "/api/doctors/"
        for _ in range(limit):
            self.deadline.check("emptying the queue")
            async with self.api.post(
                url, headers=self.target.doctor_headers, json={"action": "call_next"}
            ) as r:
                if r.status != 200:
                    break
            called += 1
        await asyncio.sleep(0.2)
        self.subs.reset()
        return called


def new_api_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
    )


# --- the reconnect probe ------------------------------------------------------------------


async def reconnect_probe(level: Level, k: int) -> dict[str, Any]:
    """A subscriber drops, k check-ins happen, it reconnects with ?since=<last seq seen>:
    it must receive exactly those k events, in seq order, and then live ones again."""
    target = level.target
    timeout = min(CONNECT_TIMEOUT, max(1.0, level.deadline.left()))
    probe = await open_feed(target.host, target.port, target.feed_path("snapshot=1"), -1, timeout)
    result: dict[str, Any] = {"k": k, "received": 0, "duplicated": 0, "in_order": False}
    again: FeedClient | None = None
    try:
        if not await probe.wait_frames(1, timeout):
            result["error"] = "no snapshot"
            return result
        last_seq = int(json.loads(probe.frames[-1][1])["seq"])
        probe.drop()
        records = await level.unmeasured([check_in_stream(target, "json", k, 1, level.photo)])
        missed_ids = {r.patient_id for r in records if r.patient_id is not None}
        again = await open_feed(
            target.host, target.port, target.feed_path(f"since={last_seq}"), -2, timeout
        )
        await again.wait_frames(len(missed_ids), min(level.drain_timeout, timeout))
        replayed = len(again.frames)
        live = await level.unmeasured([check_in_stream(target, "json", 1, 1, level.photo)])
        live_ids = {r.patient_id for r in live if r.patient_id is not None}
        await again.wait_frames(replayed + len(live_ids), min(level.drain_timeout, timeout))
        seen: list[int] = []
        seqs: list[int] = []
        for _, text in again.frames:
            msg = json.loads(text)
            seqs.append(msg.get("seq", -1))
            if msg.get("event") == "PATIENT_ADDED":
                seen.append(msg["patient"]["id"])
        result.update(
            received=len(set(seen) & missed_ids),
            duplicated=len(seen) - len(set(seen)),
            in_order=seqs == sorted(seqs) and len(set(seqs)) == len(seqs),
            live_after=bool(live_ids) and live_ids <= set(seen),
            checkins_ok=len(missed_ids),
        )
        await level.unmeasured([call_next_stream(target, len(missed_ids) + len(live_ids), 1)])
    finally:
        probe.drop()
        if again is not None:
            again.close()
    return result
