"""Quick end-to-end benchmark of the real server: check-ins, call-nexts and live-feed fan-out.

Starts `python -m checkin_appliance serve` as a subprocess on 127.0.0.1 with a fresh data
directory (one server per subscriber count), creates form/doctor/queue credentials with the
CLI, opens N WebSocket subscribers on /ws/queue/ (in this process, one ClientSession), then
for each concurrency level C:

  1. C workers POST /api/patients/ until --checkins check-ins were sent;
  2. every subscriber must receive each PATIENT_ADDED exactly once (matched by patient id);
  3. C workers POST /api/doctors/ {"action": "call_next"} the same number of times, and every
     subscriber must receive each PATIENT_COMPLETED exactly once.

Fan-out latency of one (event, subscriber) pair = time the subscriber received the frame
minus the time just before its HTTP request was sent (both time.perf_counter() in this
process), so it includes the request, the durable commit and the fan-out. The subscribers
run in the load generator's process: its CPU time is reported so you can tell when the
generator, not the server, is the bottleneck (gen CPU near 100 % means: don't trust the
latency tail).

Example:  .venv/bin/python bench/quick.py --subscribers 1 200 --checkins 200 --concurrency 1 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

HOST = "127.0.0.1"  # never anything else
REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HEALTH_TIMEOUT = 20.0
CLI_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0
CONNECT_PARALLEL = 50
POLL = 0.01
OTHER_CPU_WARN_PCT = 20.0  # background CPU (% of one core) above which numbers are suspect
CLOSED_TYPES = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.CLOSED,
    aiohttp.WSMsgType.ERROR,
)

# Every Server ever started, so the outermost `finally` can make sure none survives.
_servers: list[Server] = []


# --- small helpers ------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def summary_ms(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    out: dict[str, Any] = {"n": len(ordered)}
    for name, p in (("p50", 50), ("p95", 95), ("p99", 99)):
        v = percentile(ordered, p)
        out[name] = None if v is None else round(v * 1000, 3)
    out["max"] = round(ordered[-1] * 1000, 3) if ordered else None
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def fs_type(path: Path) -> str:
    """Filesystem type under `path` (durability cost differs a lot between ext4 and tmpfs)."""
    best, kind = "", "?"
    path_s = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                mount = parts[1]
                inside = path_s == mount or path_s.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, parts[2]
    return kind


def raise_fd_limit() -> int:
    """Many sockets in one process: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_busy_s() -> float | None:
    """CPU seconds all cores of the machine spent busy since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLK_TCK


def loadavg() -> str | None:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"overall timeout reached during {what}")


# --- the server under test ----------------------------------------------------------------


class Server:
    def __init__(self, data_dir: Path, log_level: str) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.parent / "server.log"
        self.log_level = log_level
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self) -> None:
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "checkin_appliance",
                "serve",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                self.log_level,
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        _servers.append(self)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def wait_healthy(self, session: aiohttp.ClientSession, deadline: Deadline) -> float:
        """Bounded poll of /healthz; returns seconds until the first 200."""
        start = time.perf_counter()
        limit = min(HEALTH_TIMEOUT, deadline.left())
        attempts = int(limit / 0.05) + 1
        for _ in range(attempts):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    f"{self.base}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                ) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            await asyncio.sleep(0.05)
        raise RuntimeError(f"/healthz not 200 within {limit:.0f} s:\n{self.log_tail()}")

    def _status_kb(self, key: str) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return None

    def rss_kb(self) -> int | None:
        return self._status_kb("VmRSS")

    def hwm_kb(self) -> int | None:
        return self._status_kb("VmHWM")  # the kernel's own peak RSS

    def cpu_s(self) -> float | None:
        """utime + stime of the whole server process (all threads), in seconds."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> int | None:
        """terminate, wait, kill; returns the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(timeout=5)
            code = self.proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_problems(self) -> dict[str, Any]:
        """Warnings, errors and tracebacks the server logged, plus non-2xx access-log lines."""
        warnings, errors, tracebacks = [], [], 0
        for line in self.log_text().splitlines():
            if " WARNING " in line:
                warnings.append(line)
            elif " ERROR " in line or " CRITICAL " in line:
                errors.append(line)
            if line.startswith("Traceback"):
                tracebacks += 1
        return {
            "warnings": len(warnings),
            "errors": len(errors),
            "tracebacks": tracebacks,
            "first_warnings": warnings[:5],
            "first_errors": errors[:5],
        }


async def create_credential(data_dir: Path, role: str, label: str, password: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "checkin_appliance",
        "token",
        "create",
        "--role",
        role,
        "--label",
        label,
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate((password + "\n").encode()), CLI_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    lines = out.decode().split()
    if proc.returncode != 0 or not lines or not lines[-1].isdigit():
        raise RuntimeError(f"token create --role {role} failed: {err.decode().strip()}")
    return lines[-1]


async def login(api: aiohttp.ClientSession, base: str, token: str, password: str) -> str:
    async with api.post(f"{base}/api/login/", json={"token": token, "password": password}) as r:
        body = await r.json(content_type=None)
        if r.status != 200:
            raise RuntimeError(f"login {token} -> {r.status} {body}")
        return body["access"]


# --- memory / CPU sampling ----------------------------------------------------------------


class Sampler:
    """Samples the server's RSS every `interval` seconds; tracks the peak since `mark()`."""

    def __init__(self, server: Server, interval: float) -> None:
        self.server = server
        self.interval = interval
        self.t0 = time.perf_counter()
        self.samples: list[tuple[float, int]] = []
        self.peak_kb = 0
        self.window_peak_kb = 0

    def sample(self) -> None:
        kb = self.server.rss_kb()
        if kb is not None:
            self.samples.append((round(time.perf_counter() - self.t0, 3), kb))
            self.peak_kb = max(self.peak_kb, kb)
            self.window_peak_kb = max(self.window_peak_kb, kb)

    def mark(self) -> None:
        self.window_peak_kb = 0
        self.sample()

    async def run(self, deadline: Deadline) -> None:
        while deadline.left() > 0:  # bounded by the overall deadline (and cancelled earlier)
            self.sample()
            await asyncio.sleep(self.interval)


# --- subscribers --------------------------------------------------------------------------


@dataclass(eq=False)
class Subscriber:
    index: int
    ws: aiohttp.ClientWebSocketResponse | None = None
    frames: list[tuple[float, str]] = field(default_factory=list)
    last_seq: int = 0
    closed_at: float | None = None
    close_code: int | None = None
    task: asyncio.Task[None] | None = None

    async def connect(self, session: aiohttp.ClientSession, url: str, timeout: float) -> None:
        """Connects with ?snapshot=1 and waits for the snapshot: then it is surely subscribed."""
        async with asyncio.timeout(timeout):
            self.ws = await session.ws_connect(url, autoping=True, heartbeat=None)
            msg = await self.ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"subscriber {self.index}: expected a snapshot, got {msg.type}")
        first = json.loads(msg.data)
        if first.get("event") != "QUEUE_SNAPSHOT":
            raise RuntimeError(f"subscriber {self.index}: first frame {first.get('event')}")
        self.last_seq = int(first["seq"])
        self.task = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        """Records (receive time, raw text); parsing waits until the phase is over."""
        assert self.ws is not None
        while True:  # ends when the socket closes; cancelled at the end of the run
            msg = await self.ws.receive()
            now = time.perf_counter()
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append((now, msg.data))
            elif msg.type in CLOSED_TYPES:
                self.closed_at = now
                self.close_code = self.ws.close_code
                return

    @property
    def open(self) -> bool:
        return self.closed_at is None

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def connect_subscribers(
    session: aiohttp.ClientSession, url: str, count: int, deadline: Deadline
) -> tuple[list[Subscriber], list[str]]:
    gate = asyncio.Semaphore(CONNECT_PARALLEL)
    subs = [Subscriber(i) for i in range(count)]

    async def one(sub: Subscriber) -> None:
        async with gate:
            await sub.connect(session, url, min(30.0, max(1.0, deadline.left())))

    results = await asyncio.gather(*(one(s) for s in subs), return_exceptions=True)
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    connected = [s for s, r in zip(subs, results, strict=True) if not isinstance(r, BaseException)]
    for s, r in zip(subs, results, strict=True):
        if isinstance(r, BaseException):
            await s.close()
    return connected, errors


# --- load phases --------------------------------------------------------------------------


@dataclass
class Request:
    sent: float
    done: float
    status: int | str
    patient_id: int | None


async def run_requests(
    api: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    bodies: list[dict[str, Any]],
    concurrency: int,
    ok_status: int,
    deadline: Deadline,
) -> list[Request]:
    """`concurrency` workers share one list of bodies; each body is sent exactly once."""
    records: list[Request] = []
    next_index = 0

    def patient_id(status: int, body: Any) -> int | None:
        if status != ok_status or not isinstance(body, dict):
            return None
        value = body["id"] if ok_status == 201 else (body.get("patient") or {}).get("id")
        return value if isinstance(value, int) else None

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(bodies):  # bounded by len(bodies)
            deadline.check("requests")
            body = bodies[next_index]
            next_index += 1
            status: int | str
            pid = None
            sent = time.perf_counter()
            try:
                async with api.post(url, json=body, headers=headers) as r:
                    status = r.status
                    data = await r.json(content_type=None)
                    pid = patient_id(status, data)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                status = type(exc).__name__
            records.append(Request(sent, time.perf_counter(), status, pid))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return records


async def wait_for_frames(subs: list[Subscriber], expected: int, limit: float) -> float:
    """Until every open subscriber holds `expected` frames, or `limit` seconds; bounded."""
    start = time.perf_counter()
    for _ in range(int(limit / POLL) + 1):
        if all(len(s.frames) >= expected for s in subs if s.open):
            break
        await asyncio.sleep(POLL)
    return time.perf_counter() - start


def analyse_fanout(
    subs: list[Subscriber], event: str, sent_by_patient: dict[int, float]
) -> dict[str, Any]:
    """Latency of every (event, subscriber) pair; missed / duplicated / unexpected frames."""
    latencies: list[float] = []
    missed_per_sub: list[int] = []
    dup_per_sub: list[int] = []
    unexpected = seq_gaps = seq_backwards = 0
    for sub in subs:
        seen: set[int] = set()
        dups = 0
        for received, text in sub.frames:
            try:
                msg = json.loads(text)
                seq = msg.get("seq")
                pid = msg["patient"]["id"]
                kind = msg["event"]
            except (ValueError, KeyError, TypeError):
                unexpected += 1
                continue
            if isinstance(seq, int):
                if seq <= sub.last_seq:
                    seq_backwards += 1
                else:
                    seq_gaps += seq - sub.last_seq - 1
                    sub.last_seq = seq
            if kind != event or pid not in sent_by_patient:
                unexpected += 1
            elif pid in seen:
                dups += 1
            else:
                seen.add(pid)
                latencies.append(received - sent_by_patient[pid])
        missed_per_sub.append(len(sent_by_patient) - len(seen))
        dup_per_sub.append(dups)
    return {
        "pairs_expected": len(sent_by_patient) * len(subs),
        "latency_ms": summary_ms(latencies),
        "missed": sum(missed_per_sub),
        "missed_max_per_subscriber": max(missed_per_sub, default=0),
        "subscribers_missing_events": sum(1 for m in missed_per_sub if m),
        "duplicated": sum(dup_per_sub),
        "duplicated_max_per_subscriber": max(dup_per_sub, default=0),
        "unexpected_frames": unexpected,
        "seq_gaps": seq_gaps,
        "seq_backwards": seq_backwards,
    }


async def phase(
    name: str,
    api: aiohttp.ClientSession,
    server: Server,
    sampler: Sampler,
    subs: list[Subscriber],
    url: str,
    headers: dict[str, str],
    bodies: list[dict[str, Any]],
    concurrency: int,
    ok_status: int,
    event: str,
    args: argparse.Namespace,
    deadline: Deadline,
) -> dict[str, Any]:
    for s in subs:
        s.frames = []
    sampler.mark()
    cpu_server0, cpu_gen0, busy0 = server.cpu_s(), time.process_time(), machine_busy_s()
    t0 = time.perf_counter()
    records = await run_requests(api, url, headers, bodies, concurrency, ok_status, deadline)
    t_requests = time.perf_counter()
    ok = [r for r in records if r.patient_id is not None]
    drain = await wait_for_frames(subs, len(ok), min(args.drain_timeout, max(0.0, deadline.left())))
    t_end = time.perf_counter()
    cpu_server1, cpu_gen1, busy1 = server.cpu_s(), time.process_time(), machine_busy_s()
    sampler.sample()

    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    wall = max(r.done for r in records) - min(r.sent for r in records) if records else 0.0
    window = t_end - t0
    srv_cpu = None
    if cpu_server0 is not None and cpu_server1 is not None:
        srv_cpu = cpu_server1 - cpu_server0
    gen_cpu = cpu_gen1 - cpu_gen0
    # Whatever else ran on this machine meanwhile (other builds, tests): it skews everything.
    other_cpu = None
    if busy0 is not None and busy1 is not None and srv_cpu is not None:
        other_cpu = max(0.0, busy1 - busy0 - srv_cpu - gen_cpu)
    tolerated = {str(ok_status)} | ({"404"} if name == "call_next" else set())
    result = {
        "op": name,
        "concurrency": concurrency,
        "subscribers": len(subs),
        "subscribers_open": sum(1 for s in subs if s.open),
        "requests": len(records),
        "ok": len(ok),
        "statuses": statuses,
        "errors": sum(n for st, n in statuses.items() if st not in tolerated),
        "wall_s": round(wall, 4),
        "per_s": round(len(ok) / wall, 1) if wall > 0 else None,
        "http_ms": summary_ms([r.done - r.sent for r in records]),
        "drain_s": round(drain, 4),
        "requests_s": round(t_requests - t0, 4),
        "cpu_window_s": round(window, 4),
        "server_cpu_s": None if srv_cpu is None else round(srv_cpu, 3),
        "server_cpu_pct": None if srv_cpu is None else round(100 * srv_cpu / window, 1),
        "generator_cpu_s": round(gen_cpu, 3),
        "generator_cpu_pct": round(100 * gen_cpu / window, 1),
        "other_cpu_pct": None if other_cpu is None else round(100 * other_cpu / window, 1),
        "server_rss_peak_kb": sampler.window_peak_kb,
    }
    if subs:
        result["fanout"] = analyse_fanout(subs, event, {r.patient_id: r.sent for r in ok})
    return result


# --- one server, one subscriber count -----------------------------------------------------


async def run_level(
    level: dict[str, Any], args: argparse.Namespace, deadline: Deadline, tmp_root: Path
) -> None:
    """Fills `level` in place, so a run cut short still reports what it measured."""
    n_subs = level["subscribers"]
    level_dir = Path(tempfile.mkdtemp(prefix=f"subs{n_subs}-", dir=tmp_root))
    data_dir = level_dir / "data"
    server = Server(data_dir, args.server_log_level)
    level["data_dir_fs"] = fs_type(level_dir)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    api = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=False), timeout=timeout
    )
    feed = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    )
    subs: list[Subscriber] = []
    sampler_task: asyncio.Task[None] | None = None
    try:
        server.start()
        level["startup_s"] = round(await server.wait_healthy(api, deadline), 3)
        level["rss_start_kb"] = server.rss_kb()
        password = secrets.token_urlsafe(18)
        tokens = {}
        for role, label in (("form", "Bench Kiosk"), ("doctor", "Bench Doctor")):
            tokens[role] = await create_credential(data_dir, role, label, password)
        tokens["queue"] = await create_credential(data_dir, "queue", "Bench Display", password)
        access = {role: await login(api, server.base, t, password) for role, t in tokens.items()}
        form_h = {"Authorization": f"Bearer {access['form']}"}
        doctor_h = {"Authorization": f"Bearer {access['doctor']}"}
        patients_url = f"{server.base}/api/patients/"
        doctors_url = f"{server.base}/api/doctors/"

        sampler = Sampler(server, args.sample_interval)
        sampler_task = asyncio.create_task(sampler.run(deadline))

        # Warm-up (unmeasured, before any subscriber): imports, caches, SQLite pages.
        warm = [{"fname": f"Warmup Patient {i}"} for i in range(args.warmup)]
        await run_requests(api, patients_url, form_h, warm, 1, 201, deadline)
        calls = [{"action": "call_next"}] * args.warmup
        await run_requests(api, doctors_url, doctor_h, calls, 1, 200, deadline)
        await asyncio.sleep(0.3)
        level["rss_idle_kb"] = server.rss_kb()

        ws_url = f"ws://{HOST}:{server.port}/ws/queue/?snapshot=1&token={access['queue']}"
        t = time.perf_counter()
        subs, connect_errors = await connect_subscribers(feed, ws_url, n_subs, deadline)
        level["connect_s"] = round(time.perf_counter() - t, 3)
        level["connected"] = len(subs)
        level["connect_errors"] = len(connect_errors)
        level["first_connect_errors"] = connect_errors[:5]
        await asyncio.sleep(0.5)
        level["rss_subscribed_kb"] = server.rss_kb()

        phases = level["phases"] = []
        counter = 0
        for c in args.concurrency:
            deadline.check("phases")
            bodies = []
            for _ in range(args.checkins):
                counter += 1
                bodies.append({"fname": f"Bench Patient {counter}"})
            added = await phase(
                "check_in",
                api,
                server,
                sampler,
                subs,
                patients_url,
                form_h,
                bodies,
                c,
                201,
                "PATIENT_ADDED",
                args,
                deadline,
            )
            phases.append(added)
            calls = [{"action": "call_next"}] * args.checkins
            called = await phase(
                "call_next",
                api,
                server,
                sampler,
                subs,
                doctors_url,
                doctor_h,
                calls,
                c,
                200,
                "PATIENT_COMPLETED",
                args,
                deadline,
            )
            phases.append(called)
            async with api.get(f"{server.base}/api/queue/", headers=doctor_h) as r:
                waiting = await r.json(content_type=None)
            called["queue_left_after"] = len(waiting) if isinstance(waiting, list) else None

        level["rss_peak_sampled_kb"] = sampler.peak_kb
        level["rss_hwm_kb"] = server.hwm_kb()
        level["rss_end_kb"] = server.rss_kb()
        level["rss_samples"] = sampler.samples
        closed = [s for s in subs if not s.open]
        level["subscribers_closed_by_server"] = len(closed)
        level["close_codes"] = sorted({s.close_code for s in closed if s.close_code is not None})
    finally:
        if sampler_task is not None:
            sampler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler_task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                await asyncio.gather(*(s.close() for s in subs), return_exceptions=True)
        await api.close()
        await feed.close()
        level["server_exit_code"] = await asyncio.to_thread(server.stop)
        level["server_log"] = server.log_problems()


# --- reporting ----------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def print_report(report: dict[str, Any]) -> None:
    print()
    print(
        f"checkin-appliance quick bench  {report['started_utc']}  host={report['host']}  "
        f"cpus={report['cpus']}  python={report['python']}  aiohttp={report['aiohttp']}  "
        f"commit={report['commit']}"
    )
    print(
        f"checkins per level={report['args']['checkins']}  warmup={report['args']['warmup']}  "
        f"server log level={report['args']['server_log_level']}  "
        f"loadavg start={report.get('loadavg_start')} end={report.get('loadavg_end')}"
    )
    head = (
        f"{'subs':>5} {'C':>3} {'op':<9} {'ok/sent':>9} {'non-ok':<10} {'per s':>6} "
        f"{'http p50':>8} {'p99':>6} | {'fan p50':>7} {'p95':>6} {'p99':>6} {'max':>6} "
        f"{'miss':>4} {'dup':>3} | {'cpu srv':>7} {'gen':>4} {'oth':>4} | {'rss MB':>6}"
    )
    print()
    print(head)
    print("-" * len(head))
    for level in report["levels"]:
        for p in level.get("phases", []):
            others = {
                k: v
                for k, v in p["statuses"].items()
                if k != ("201" if p["op"] == "check_in" else "200")
            }
            other = ",".join(f"{k}:{v}" for k, v in sorted(others.items())) or "-"
            fan = p.get("fanout")
            lat = fan["latency_ms"] if fan else {}
            print(
                f"{p['subscribers']:>5} {p['concurrency']:>3} {p['op']:<9} "
                f"{p['ok']:>4}/{p['requests']:<4} {other:<10} {fmt(p['per_s']):>6} "
                f"{fmt(p['http_ms']['p50']):>8} {fmt(p['http_ms']['p99']):>6} | "
                f"{fmt(lat.get('p50')):>7} {fmt(lat.get('p95')):>6} {fmt(lat.get('p99')):>6} "
                f"{fmt(lat.get('max')):>6} {fmt(fan['missed'] if fan else None):>4} "
                f"{fmt(fan['duplicated'] if fan else None):>3} | "
                f"{fmt(p['server_cpu_pct'], 0):>6}% {fmt(p['generator_cpu_pct'], 0):>3}% "
                f"{fmt(p.get('other_cpu_pct'), 0):>3}% | {mb(p['server_rss_peak_kb']):>6}"
            )
    print()
    print("latencies in ms; fan = request sent -> frame received, over all (event, subscriber)")
    print("pairs; cpu = % of ONE core during requests + drain: srv = server process, gen = this")
    print("load generator (its subscribers included), oth = everything else on the machine.")
    print()
    mem = (
        f"{'subs':>5} {'connected':>9} {'connect s':>9} | {'RSS MB: start':>13} {'idle':>6} "
        f"{'subscribed':>10} {'peak(100ms)':>11} {'VmHWM':>6} | {'fs':<6} {'srv log W/E/TB':<14}"
    )
    print(mem)
    print("-" * len(mem))
    for level in report["levels"]:
        log = level.get("server_log", {})
        print(
            f"{level['subscribers']:>5} {fmt(level.get('connected')):>9} "
            f"{fmt(level.get('connect_s'), 2):>9} | {mb(level.get('rss_start_kb')):>13} "
            f"{mb(level.get('rss_idle_kb')):>6} {mb(level.get('rss_subscribed_kb')):>10} "
            f"{mb(level.get('rss_peak_sampled_kb')):>11} {mb(level.get('rss_hwm_kb')):>6} | "
            f"{level.get('data_dir_fs', '?'):<6} "
            f"{log.get('warnings', '-')}/{log.get('errors', '-')}/{log.get('tracebacks', '-')}"
        )


def problems(report: dict[str, Any]) -> list[str]:
    found = []
    if report.get("aborted"):
        found.append(f"aborted: {report['aborted']}")
    for level in report["levels"]:
        s = level["subscribers"]
        if level.get("connect_errors"):
            found.append(f"subs={s}: {level['connect_errors']} subscribers failed to connect")
        if level.get("subscribers_closed_by_server"):
            found.append(
                f"subs={s}: server closed {level['subscribers_closed_by_server']} subscribers "
                f"(codes {level.get('close_codes')})"
            )
        log = level.get("server_log", {})
        if log.get("warnings") or log.get("errors") or log.get("tracebacks"):
            found.append(f"subs={s}: server logged {log}")
        for p in level.get("phases", []):
            where = f"subs={s} C={p['concurrency']} {p['op']}"
            if p["errors"]:
                found.append(f"{where}: unexpected statuses {p['statuses']}")
            if p["op"] == "call_next" and p["statuses"].get("404"):
                found.append(f"{where}: {p['statuses']['404']} call_next got 404 (queue empty?)")
            if p.get("queue_left_after"):
                found.append(f"{where}: {p['queue_left_after']} patients still waiting")
            fan = p.get("fanout")
            if fan:
                for key in ("missed", "duplicated", "unexpected_frames", "seq_gaps"):
                    if fan[key]:
                        found.append(f"{where}: {key}={fan[key]}")
                if fan["seq_backwards"]:
                    found.append(f"{where}: seq_backwards={fan['seq_backwards']}")
    return found


# --- main ---------------------------------------------------------------------------------


async def run(args: argparse.Namespace, report: dict[str, Any]) -> None:
    deadline = Deadline(args.timeout)
    async with asyncio.timeout(args.timeout + 30):  # belt and braces over Deadline
        with tempfile.TemporaryDirectory(prefix="checkin-bench-", dir=args.tmp_dir) as tmp:
            for n_subs in args.subscribers:
                deadline.check("levels")
                print(f"... {n_subs} subscriber(s): starting a fresh server", flush=True)
                level: dict[str, Any] = {"subscribers": n_subs}
                report["levels"].append(level)
                await run_level(level, args, deadline, Path(tmp))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--subscribers",
        type=int,
        nargs="+",
        default=[200],
        metavar="N",
        help="subscriber counts; one fresh server each (default: 200)",
    )
    p.add_argument(
        "--checkins",
        type=int,
        default=200,
        help="check-ins (and call-nexts) per concurrency level (default: 200)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 8],
        metavar="C",
        help="concurrent HTTP workers (default: 1 8)",
    )
    p.add_argument("--warmup", type=int, default=20, help="unmeasured check-ins first")
    p.add_argument("--timeout", type=float, default=300.0, help="overall limit, s (300)")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="how long subscribers may lag behind the last response, s (10)",
    )
    p.add_argument("--sample-interval", type=float, default=0.1, help="RSS sampling, s (0.1)")
    p.add_argument(
        "--server-log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="server log level; INFO (default) includes the access log",
    )
    p.add_argument(
        "--tmp-dir",
        type=Path,
        default=None,
        help="where the data directories go (default: the system temp dir)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON output file")
    args = p.parse_args(argv)
    for name, low, high in (
        ("checkins", 1, 100_000),
        ("warmup", 0, 10_000),
        ("timeout", 1, 3600),
        ("drain_timeout", 0.1, 600),
        ("sample_interval", 0.01, 10),
    ):
        if not low <= getattr(args, name) <= high:
            p.error(f"--{name.replace('_', '-')} must be within {low}..{high}")
    if any(not 0 <= n <= 10_000 for n in args.subscribers):
        p.error("--subscribers must be within 0..10000")
    if any(not 1 <= c <= 1_000 for c in args.concurrency):
        p.error("--concurrency must be within 1..1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fd_limit = raise_fd_limit()
    need = max(args.subscribers) + max(args.concurrency) + 64
    if fd_limit < need:
        print(f"warning: open-files limit {fd_limit} < ~{need} needed", file=sys.stderr)
    started = datetime.now(UTC)
    host = socket.gethostname()
    report: dict[str, Any] = {
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": host,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "commit": git_commit(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "method": (
            "subscribers run in the generator process; latency = perf_counter at frame "
            "receipt minus perf_counter just before the HTTP request; one fresh server "
            "(fresh data dir) per subscriber count; percentiles are nearest-rank"
        ),
        "loadavg_start": loadavg(),
        "levels": [],
    }
    code = 0
    try:
        asyncio.run(run(args, report))
    except (TimeoutError, RuntimeError) as exc:
        report["aborted"] = str(exc) or type(exc).__name__
        code = 2
    except KeyboardInterrupt:
        report["aborted"] = "interrupted"
        code = 130
    finally:
        for server in _servers:  # normally stopped already; never leave one behind
            server.stop()
    report["finished_utc"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    report["loadavg_end"] = loadavg()

    print_report(report)
    found = problems(report)
    print()
    if found:
        print("PROBLEMS:")
        for line in found:
            print(f"  - {line}")
        code = code or 1
    else:
        print("no errors, no missed or duplicated events")
    busy = [
        f"subs={p['subscribers']} C={p['concurrency']} {p['op']}: {p['other_cpu_pct']:.0f}%"
        for level in report["levels"]
        for p in level.get("phases", [])
        if (p.get("other_cpu_pct") or 0) > OTHER_CPU_WARN_PCT
    ]
    if busy:
        print("CAVEAT: other processes used the CPU during the run; the rates and latencies")
        print("above understate this server (rerun on a quiet machine): " + "; ".join(busy))

    safe_host = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in host)
    out = args.out or RESULTS / f"quick-{started.strftime('%Y%m%dT%H%M%SZ')}-{safe_host}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"results: {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
