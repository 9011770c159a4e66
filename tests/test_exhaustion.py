"""Connection exhaustion against the real `serve` (issue 13, item 3): idle sockets from one
address and live feeds with one credential must not use up the box's open files.

The server runs with RLIMIT_NOFILE lowered to 256 (the unit allows 4096) and the limits
shrunk through its config file. Attackers connect from other loopback source addresses
(127.0.0.2, 127.0.0.3: still loopback, routed by `lo`), so the clinic's own client on
127.0.0.1 is a different address, as a kiosk on the LAN would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from checkin_appliance.connections import ConnectionGuard
from tests.serverproc import HOST, POLL_INTERVAL, Server, cli_command, free_port, launched

OPEN_FILES = 256
PER_ADDRESS = 40
FEEDS_PER_CREDENTIAL = 8
HEADER_TIMEOUT = 2.0
IDLE_ATTACKERS = 300  # sockets from 127.0.0.2 that send nothing
FEED_ATTEMPTS = 120  # live feeds from 127.0.0.3, all with one wall-display credential
ATTACKER = "127.0.0.2"
FEED_ATTACKER = "127.0.0.3"


def _lower_open_files() -> None:  # runs in the server's process, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


@contextlib.contextmanager
def _limited_server(tmp_path: Path) -> Iterator[Server]:
    config = tmp_path / "config.toml"
    config.write_text(
        f"max_connections_per_address = {PER_ADDRESS}\n"
        f"max_feeds_per_credential = {FEEDS_PER_CREDENTIAL}\n"
        f"header_timeout = {HEADER_TIMEOUT}\n"
    )
    data_dir = tmp_path / "data"
    port = free_port()
    command = cli_command(
        "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir),
        "--config", str(config),
    )  # fmt: skip
    # launched() takes no preexec_fn: wrap Popen for this one server.
    real_popen = subprocess.Popen

    def popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        return real_popen(*args, preexec_fn=_lower_open_files, **kwargs)  # type: ignore[call-overload]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "Popen", popen)
        with launched(tmp_path, command, port, data_dir) as server:
            patch.undo()
            yield server


def _open_idle(port: int, count: int) -> list[socket.socket]:
    """Up to `count` connections from ATTACKER that send nothing (bounded, 1 s per connect)."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        try:
            sock.bind((ATTACKER, 0))
            sock.connect((HOST, port))
        except OSError:
            sock.close()
            continue
        socks.append(sock)
    return socks


def _check_in(server: Server, access: str) -> int:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=5)
    try:
        conn.request(
            "POST",
            "/api/patients/",
            body=json.dumps({"fname": "Exhaustion Test"}),
            headers={"Authorization": f"Bearer {access}", "Content-Type": "application/json"},
        )
        return conn.getresponse().status
    finally:
        conn.close()


async def _open_feeds(
    session: aiohttp.ClientSession, server: Server, access: str
) -> tuple[list[aiohttp.ClientWebSocketResponse], list[int]]:
    """FEED_ATTEMPTS feeds with one credential: the open ones, and the refusals' statuses."""
    opened, refused = [], []
    for _ in range(FEED_ATTEMPTS):
        try:
            opened.append(await session.ws_connect(f"{server.ws_url}?token={access}"))
        except aiohttp.WSServerHandshakeError as exc:
            refused.append(exc.status)
        except (aiohttp.ClientError, TimeoutError, OSError):
            refused.append(0)
    return opened, refused


async def _attack_then_check_in(server: Server, wall: str, kiosk: str) -> None:
    idle = _open_idle(server.port, IDLE_ATTACKERS)
    connector = aiohttp.TCPConnector(local_addr=(FEED_ATTACKER, 0), limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=3)
    feeds: list[aiohttp.ClientWebSocketResponse] = []
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            feeds, refused = await _open_feeds(session, server, wall)
            # The clinic's kiosk still checks in, on a fresh connection.
            assert await asyncio.to_thread(_check_in, server, kiosk) == 201, server.describe()
            assert server.proc.poll() is None
            # Feeds beyond the credential's limit were refused with 429 and a code, not
            # left to take the box's descriptors.
            assert len(feeds) <= FEEDS_PER_CREDENTIAL, len(feeds)
            assert 429 in refused, refused[:5]
            # Idle sockets beyond the address's limit were closed at once, and the
            # admitted ones once header_timeout passed without a request.
            await asyncio.to_thread(_wait_all_closed, idle, HEADER_TIMEOUT + 5.0)
            for ws in feeds:
                await ws.close()
    finally:
        for sock in idle:
            sock.close()


def test_idle_sockets_and_feeds_leave_the_box_answering(tmp_path: Path) -> None:
    with _limited_server(tmp_path) as server:
        kiosk = server.login(server.create_token("form", "Kiosk"))
        wall = server.login(server.create_token("queue", "Wall"))
        asyncio.run(asyncio.wait_for(_attack_then_check_in(server, wall, kiosk), 120))
        assert _check_in(server, kiosk) == 201
        stderr = server.stderr()
        refusals = [line for line in stderr.splitlines() if "WARNING" in line and "refused" in line]
        assert refusals, stderr[-2000:]
        assert len(refusals) <= 6, refusals  # rate-limited, not one per refused socket
        assert "Traceback" not in stderr, stderr[-3000:]


def _wait_all_closed(socks: list[socket.socket], timeout: float) -> None:
    """Polls until the server has closed every socket (recv gives EOF or a reset)."""
    deadline = time.monotonic() + timeout
    pending = list(socks)
    for sock in pending:
        sock.setblocking(False)
    while pending:
        still = []
        for sock in pending:
            try:
                if sock.recv(1) == b"":
                    continue
            except BlockingIOError:
                still.append(sock)
            except OSError:
                continue
        pending = still
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} idle connections still open after {timeout}s")
        time.sleep(POLL_INTERVAL)


def test_guard_keeps_spare_descriptors_and_counts_per_address() -> None:
    async def scenario() -> None:
        guard = ConnectionGuard(per_address=2, header_timeout=1.0, fd_limit=100, fd_reserve=10)
        assert guard.admit("192.0.2.1", 5) and guard.admit("192.0.2.1", 6)
        assert not guard.admit("192.0.2.1", 7)  # third from one address
        assert guard.admit("192.0.2.2", 89)
        assert not guard.admit("192.0.2.3", 90)  # inside the reserve of 10 below 100
        guard.release("192.0.2.1")
        assert guard.admit("192.0.2.1", 8)

    asyncio.run(scenario())
