"""Slow and vanished clients: trickled uploads, slowloris headers, idle keep-alive, dead feeds.

The issue's guarantees, each with a test that fails when it breaks:

- A client trickling its upload is cut off (`upload_timeout`, 30 s by default); one
  trickling its request headers is cut off too (by aiohttp's `keepalive_timeout`, which
  also bounds how long a new connection may take to send its first request). 200 such
  connections do not delay a normal request past 1 s. `keepalive_timeout` is <= 75 s.
- The live feed's heartbeat drops a subscriber that vanished without closing (no FIN, no
  RST) within 1.5 heartbeats (ping after `heartbeat` s of silence, pong due `heartbeat`/2
  later), and keeps one that is merely slow but still answers.

The first group runs the real `serve` code path as a subprocess; the second runs the app
in-process (to see the hub) behind a TCP relay on 127.0.0.1 that can turn into a black hole.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import re
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, web

from checkin_appliance.config import Config, load_config
from checkin_appliance.domain import Role
from checkin_appliance.web.keys import HUB
from tests.conftest import StartClinic, wait_until
from tests.serverproc import HOST, Server, free_port, http_json, launched

# --- the real server, with short limits -------------------------------------------------

UPLOAD_TIMEOUT = 5.0  # set through the config file, as an operator would
# aiohttp has no separate header-read timeout: `keepalive_timeout` is armed when a connection
# opens and closes it if no complete request has arrived by then (a slowloris). The value
# `serve` passes is recorded and checked (<= 75 s); only for these tests the launcher below
# swaps in a short one, so that the cut-off can be seen without waiting a minute.
TEST_KEEPALIVE = 7.0
PRODUCTION_KEEPALIVE_LIMIT = 75.0  # the bound for the value `serve` uses
SLOW_CLIENTS = 200
HEADER_TRICKLERS = 60  # of SLOW_CLIENTS; the rest trickle a multipart check-in body
TRICKLE_PACE = 0.5  # seconds between two writes of a trickling client
TRICKLE_BYTES = 3  # bytes per write
ROUNDS = 5  # normal requests of each kind timed while the slow clients are connected
# A request on loopback to an idle server takes a few milliseconds. 1 s is the issue's
# bound; it leaves two orders of magnitude for a loaded 2-core CI machine, so exceeding
# it means the slow connections really hold up the server, not that the machine was busy.
NORMAL_REQUEST_BOUND = 1.0
# After answering a request whose body it did not read, aiohttp reads and discards the rest
# for up to `lingering_time` before it closes; the 408's response.force_close() does not skip
# this. So a trickled body gets its 408 after upload_timeout and the close that long after.
LINGERING = inspect.signature(web.RequestHandler).parameters["lingering_time"].default
CUT_OFF_MARGIN = 5.0  # seconds past the configured limit in which a cut-off must happen
EARLY_TOLERANCE = 0.5  # a cut-off this much before the limit is not that limit at work

# `python -c LAUNCHER <keepalive> serve …`: runs checkin_appliance.cli.main unchanged, except
# that the keepalive_timeout `serve` hands to aiohttp's AppRunner is printed, then replaced.
LAUNCHER = """\
import sys
from aiohttp import web
from checkin_appliance import cli

real_app_runner = web.AppRunner

def app_runner(*args, **kwargs):
    print(f"serve keepalive_timeout={kwargs['keepalive_timeout']!r}", flush=True)
    kwargs["keepalive_timeout"] = float(sys.argv[1])
    return real_app_runner(*args, **kwargs)

web.AppRunner = app_runner
sys.exit(cli.main(sys.argv[2:]))
"""
SERVE_KEEPALIVE = re.compile(r"serve keepalive_timeout=(\S+)")


def ensure_open_files(needed: int) -> None:
    """Raises this process's soft RLIMIT_NOFILE if needed (the server inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextlib.contextmanager
def serving(workdir: Path, settings: str, keepalive: float) -> Iterator[Server]:
    """`serve --config FILE` on a free loopback port through LAUNCHER; always stopped after.

    tests/serverproc.py's running() cannot pass a configuration file, hence this variant.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "checkin.toml"
    config_file.write_text(settings)
    data_dir, port = workdir / "data", free_port()
    serve = ["serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)]
    command = [sys.executable, "-c", LAUNCHER, str(keepalive), *serve, "--config", str(config_file)]
    with launched(workdir, command, port, data_dir) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    ensure_open_files(4 * SLOW_CLIENTS + 256)
    workdir = tmp_path_factory.mktemp("slow-clients")
    with serving(workdir, f"upload_timeout = {UPLOAD_TIMEOUT}\n", TEST_KEEPALIVE) as srv:
        yield srv


@dataclass
class SlowClient:
    """One raw connection that sends a request a few bytes at a time and never finishes it."""

    port: int
    kind: str  # "body": headers sent, multipart body trickled; "headers": headers trickled
    access: str  # a kiosk's bearer token
    opened_at: float = 0.0
    answered_at: float | None = None  # when the first response bytes came, by the loop clock
    closed_at: float | None = None  # when the server closed (EOF or reset)
    response: bytes = b""
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def first_bytes(self) -> tuple[bytes, bytes]:
        """What is sent at once, and what is then trickled."""
        host = f"Host: {HOST}:{self.port}\r\n"
        if self.kind == "headers":
            return (
                f"POST /api/patients/ HTTP/1.1\r\n{host}X-Slow: ".encode(),
                b"a" * 1000,  # one long header value; the blank line never comes
            )
        boundary = "slowclient"
        photo = b"\xff" * 4000
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="fname"\r\n\r\nAnn Lee\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"'
            "\r\nContent-Type: image/jpeg\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        request = (
            f"POST /api/patients/ HTTP/1.1\r\n{host}"
            f"Authorization: Bearer {self.access}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(head) + len(photo) + len(tail)}\r\n\r\n"
        ).encode()
        return request + head, photo

    async def run(self, deadline: float) -> None:
        """Trickles until the server closes the connection, or until `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        self.opened_at = loop.time()  # before the connect: the server's timers start after it
        reader, writer = await asyncio.open_connection(HOST, self.port)
        start, rest = self.first_bytes()
        try:
            writer.write(start)
            await writer.drain()
            self.connected.set()
            while loop.time() < deadline:
                try:
                    data = await asyncio.wait_for(reader.read(4096), TRICKLE_PACE)
                except TimeoutError:
                    if rest:  # a few more bytes, never the whole request
                        writer.write(rest[:TRICKLE_BYTES])
                        rest = rest[TRICKLE_BYTES:]
                        with contextlib.suppress(ConnectionError):
                            await writer.drain()  # the read then sees the close
                    continue
                except ConnectionError:
                    data = b""
                if not data:
                    self.closed_at = loop.time()
                    return
                if self.answered_at is None:
                    self.answered_at = loop.time()
                self.response += data
        finally:
            self.connected.set()
            writer.transport.abort()

    @property
    def lasted(self) -> float:
        assert self.closed_at is not None
        return self.closed_at - self.opened_at

    @property
    def answered_after(self) -> float:
        assert self.answered_at is not None
        return self.answered_at - self.opened_at


def timed(request: Callable[[], tuple[int, Any]]) -> tuple[float, int, Any]:
    """Runs a blocking request and times it in its own thread (the test's loop is busy)."""
    started = time.perf_counter()
    status, body = request()
    return time.perf_counter() - started, status, body


async def test_200_slow_clients_do_not_delay_others_and_are_all_cut_off(
    server: Server,
) -> None:
    access = server.login(server.create_token("form", "Kiosk 1"))
    bearer = {"Authorization": f"Bearer {access}"}
    loop = asyncio.get_running_loop()
    kinds = ["headers"] * HEADER_TRICKLERS + ["body"] * (SLOW_CLIENTS - HEADER_TRICKLERS)
    clients = [SlowClient(server.port, kind, access) for kind in kinds]
    deadline = loop.time() + 10.0 + max(UPLOAD_TIMEOUT + LINGERING, TEST_KEEPALIVE)
    tasks = [asyncio.create_task(c.run(deadline)) for c in clients]
    try:
        async with asyncio.timeout(10.0):
            await asyncio.gather(*(c.connected.wait() for c in clients))
        assert all(c.opened_at and c.closed_at is None for c in clients), "a connect failed"

        latencies: dict[str, list[float]] = {"healthz": [], "check-in": []}
        for i in range(ROUNDS):
            took, status, body = await asyncio.to_thread(
                timed, lambda: http_json("GET", f"{server.base_url}/healthz")
            )
            assert status == 200, body
            latencies["healthz"].append(took)
            took, status, body = await asyncio.to_thread(
                timed,
                lambda i=i: http_json(
                    "POST", f"{server.base_url}/api/patients/", {"fname": f"P{i}"}, bearer
                ),
            )
            assert status == 201, body
            latencies["check-in"].append(took)
        # Measured while every slow connection was still open and trickling.
        early = [c for c in clients if c.closed_at is not None]
        assert not early, f"{len(early)} slow clients were closed before the measurement ended"
        shown = {kind: [round(t * 1000) for t in times] for kind, times in latencies.items()}
        print(f"\nms per request with {SLOW_CLIENTS} slow clients open: {shown}")
        assert max(max(times) for times in latencies.values()) < NORMAL_REQUEST_BOUND, shown

        async with asyncio.timeout(deadline - loop.time() + 1.0):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    bodies = [c for c in clients if c.kind == "body"]
    headers = [c for c in clients if c.kind == "headers"]
    assert all(c.closed_at is not None for c in clients), (
        f"{sum(c.closed_at is None for c in clients)} slow clients were never cut off"
    )
    for c in bodies:  # the check-in handler's upload_timeout: 408, then the close
        assert c.response.startswith(b"HTTP/1.1 408"), c.response[:200]
        assert b"took too long" in c.response
        assert b"connection: close" in c.response.lower()
        assert c.answered_after >= UPLOAD_TIMEOUT - EARLY_TOLERANCE
        assert c.answered_after <= UPLOAD_TIMEOUT + CUT_OFF_MARGIN
        assert c.lasted <= c.answered_after + LINGERING + CUT_OFF_MARGIN
    for c in headers:  # no request ever completed: aiohttp's keepalive timer closes it
        assert c.response == b""
        assert TEST_KEEPALIVE - EARLY_TOLERANCE <= c.lasted <= TEST_KEEPALIVE + CUT_OFF_MARGIN

    def span(values: list[float]) -> str:
        return f"{min(values):.1f}-{max(values):.1f} s"

    print(
        f"trickled bodies: 408 after {span([c.answered_after for c in bodies])}"
        f" (upload_timeout {UPLOAD_TIMEOUT} s), closed after {span([c.lasted for c in bodies])}"
        f" (+ lingering_time {LINGERING} s); trickled headers: closed after"
        f" {span([c.lasted for c in headers])} (keepalive_timeout {TEST_KEEPALIVE} s)"
    )
    # The server is still healthy and held nothing back.
    status, body = http_json("GET", f"{server.base_url}/healthz")
    assert status == 200, body


async def test_serve_keeps_an_idle_connection_at_most_75_seconds(server: Server) -> None:
    # What `serve` itself passes to aiohttp (before the launcher shortened it for the tests).
    configured = float(server.wait_for_output(SERVE_KEEPALIVE).group(1))
    assert 0 < configured <= PRODUCTION_KEEPALIVE_LIMIT, configured
    # …and that the server honours the value it is given: an idle keep-alive connection,
    # after one answered request, is closed by the server once it has passed.
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(HOST, server.port)
    try:
        sent = loop.time()  # the server's idle timer starts after it has answered
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n\r\n".encode())
        async with asyncio.timeout(5.0):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"connection: close" not in head.lower()
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            assert length, head
            await reader.readexactly(int(length.group(1)))
        async with asyncio.timeout(TEST_KEEPALIVE + CUT_OFF_MARGIN):
            with contextlib.suppress(ConnectionError):
                assert await reader.read() == b""
        idle = loop.time() - sent
    finally:
        writer.transport.abort()
    print(
        f"\nserve passes keepalive_timeout={configured}; idle connection closed after {idle:.1f} s"
    )
    assert idle >= TEST_KEEPALIVE - EARLY_TOLERANCE


# --- the live feed's heartbeat ------------------------------------------------------------


class Relay:
    """A TCP relay on 127.0.0.1 between WebSocket clients and the server.

    `black_hole = True` makes the link go silent the way a peer that lost power or network
    does: whatever arrives from either side is swallowed, nothing is forwarded, and both
    sockets stay open (no FIN, no RST). `delay` adds latency to every chunk forwarded.
    """

    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self.black_hole = False
        self.to_server_bytes = 0
        self.server_closed = asyncio.Event()  # the server closed its side of a connection
        self.server_closed_at: float | None = None
        self._listener: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._listener = await asyncio.start_server(self._accept, HOST, 0)
        return self._listener.sockets[0].getsockname()[1]

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(HOST, self.target_port)
        self._writers += [client_w, server_w]
        for pump in (self._pump(client_r, server_w, up=True), self._pump(server_r, client_w)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool = False
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.black_hole:
                    continue
                if self.delay:
                    await asyncio.sleep(self.delay)  # pacing: the link's latency
                writer.write(chunk)
                await writer.drain()
                if up:
                    self.to_server_bytes += len(chunk)
        except ConnectionError:
            pass
        if not up:
            self.server_closed_at = asyncio.get_running_loop().time()
            self.server_closed.set()
        if not self.black_hole:
            writer.close()  # a live link passes the close on

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()


@contextlib.asynccontextmanager
async def relayed_feed(
    port: int, access: str, delay: float = 0.0
) -> AsyncIterator[tuple[Relay, ClientWebSocketResponse]]:
    """A feed subscriber (answering pings itself, autoping off) connected through a Relay."""
    relay = Relay(port, delay)
    relay_port = await relay.start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(
                f"http://{HOST}:{relay_port}/ws/queue/?token={access}", autoping=False
            )
            yield relay, ws
    finally:
        await relay.close()  # aborts the client's socket too: nothing waits on a black hole


async def test_heartbeat_drops_a_subscriber_that_vanished_without_closing(
    start_clinic: StartClinic, config: Config
) -> None:
    heartbeat = 1.0
    clinic = await start_clinic(dataclasses.replace(config, heartbeat=heartbeat))
    hub = clinic.app[HUB]
    async with relayed_feed(clinic.client.port, clinic.access[Role.QUEUE]) as (relay, ws):
        await wait_until(lambda: len(hub) == 1)
        # Answer one ping, so the server has just heard from us: the slowest case follows.
        ping = await ws.receive(timeout=3 * heartbeat)
        assert ping.type is WSMsgType.PING, ping
        sent = relay.to_server_bytes
        await ws.pong(ping.data)
        await wait_until(lambda: relay.to_server_bytes > sent)
        loop = asyncio.get_running_loop()
        relay.black_hole = True
        vanished = loop.time()
        await clinic.check_in("Ann Lee")  # the server still has something to send it
        await wait_until(lambda: len(hub) == 0, timeout=2 * heartbeat + 2.0)
        dropped = loop.time() - vanished
        # And the server let go of the TCP connection too (its FIN reached the relay).
        async with asyncio.timeout(2.0):
            await relay.server_closed.wait()
        assert relay.server_closed_at is not None
        closed = relay.server_closed_at - vanished
    print(
        f"\nheartbeat {heartbeat} s: vanished peer unsubscribed after {dropped:.2f} s,"
        f" its connection closed after {closed:.2f} s"
    )
    # A ping is only due a heartbeat after the server last heard from the peer.
    assert dropped >= heartbeat - 0.1


async def test_a_slow_subscriber_that_answers_pings_is_kept(
    start_clinic: StartClinic, config: Config
) -> None:
    heartbeat, latency = 2.0, 0.25  # a pong is due within heartbeat/2; the round trip is 0.5
    clinic = await start_clinic(dataclasses.replace(config, heartbeat=heartbeat))
    hub = clinic.app[HUB]
    access = clinic.access[Role.QUEUE]
    async with relayed_feed(clinic.client.port, access, latency) as (relay, ws):
        await wait_until(lambda: len(hub) == 1)
        pings = 0
        async with asyncio.timeout(3 * (heartbeat + 2 * latency) + 3.0):
            while pings < 3:
                msg = await ws.receive()
                assert msg.type is WSMsgType.PING, msg
                await ws.pong(msg.data)
                pings += 1
        assert len(hub) == 1
        await clinic.check_in("Ann Lee")
        async with asyncio.timeout(3.0):
            while (msg := await ws.receive()).type is WSMsgType.PING:
                await ws.pong(msg.data)
        assert msg.type is WSMsgType.TEXT and '"PATIENT_ADDED"' in msg.data, msg
        assert len(hub) == 1 and not relay.server_closed.is_set()


def test_the_default_heartbeat_drops_a_vanished_peer_within_30_seconds() -> None:
    # A ping goes out `heartbeat` s after the server last heard from the peer, and the peer
    # is dropped when its pong is heartbeat/2 late (aiohttp's rule, timed by the test above):
    # a vanished peer is gone within 1.5 heartbeats, 30 s with the default of 20 s.
    assert 1.5 * load_config().heartbeat <= 30.0
