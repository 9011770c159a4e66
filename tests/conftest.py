"""Shared fixtures: a real app on a real SQLite file in tmp_path, and logged-in clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, DummyCookieJar, WSMsgType, web
from aiohttp.test_utils import TestClient

from checkin_appliance.app import create_app
from checkin_appliance.config import Config
from checkin_appliance.domain import CLI, Role
from checkin_appliance.security import hash_password, new_credential_token
from checkin_appliance.web.keys import STORE

# The Chromium and live-server fixtures (browser, appliance) for the page tests; a real sshd
# on 127.0.0.1 (sshd) for SFTP replicas.
pytest_plugins = ("tests.browser", "tests.sshd")

PASSWORD = "correct horse battery"
EVENT_TIMEOUT = 5.0

# One scrypt hash for every test credential: hashing is deliberately slow.
_PASSWORD_HASH = hash_password(PASSWORD)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(data_dir=tmp_path / "data")


@dataclass
class Clinic:
    """A running app plus one logged-in credential per role."""

    client: TestClient
    tokens: dict[Role, str] = field(default_factory=dict)  # the 8-digit credential tokens
    access: dict[Role, str] = field(default_factory=dict)  # session access tokens

    @property
    def app(self) -> web.Application:
        return self.client.app

    def headers(self, role: Role | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access[role]}"} if role else {}

    async def add_credential(self, role: Role, label: str = "Test", room: str | None = None) -> str:
        credential = await self.app[STORE].create_credential(
            new_credential_token, role, label, room, _PASSWORD_HASH, actor=CLI
        )
        assert credential is not None
        return credential.token

    async def login(self, token: str, password: str = PASSWORD) -> str:
        resp = await self.client.post("/api/login/", json={"token": token, "password": password})
        assert resp.status == 200, await resp.text()
        return (await resp.json())["access"]

    async def check_in(self, fname: str, role: Role = Role.FORM) -> dict[str, Any]:
        resp = await self.client.post(
            "/api/patients/", json={"fname": fname}, headers=self.headers(role)
        )
        assert resp.status == 201, await resp.text()
        return await resp.json()

    async def call_next(self, role: Role = Role.DOCTOR) -> Any:
        return await self.client.post(
            "/api/doctors/", json={"action": "call_next"}, headers=self.headers(role)
        )

    async def subscribe(
        self, role: Role | None = Role.QUEUE, query: str = ""
    ) -> ClientWebSocketResponse:
        params = f"token={self.access[role]}" if role else ""
        if query:
            params = f"{params}&{query}" if params else query
        return await self.client.ws_connect(f"/ws/queue/?{params}")


StartClinic = Callable[..., Awaitable[Clinic]]


@pytest.fixture
def start_clinic(aiohttp_client: Any, config: Config) -> StartClinic:
    """Starts the real app on `config`'s data dir; call again (after stopping) to restart."""

    async def start(cfg: Config | None = None, tokens: dict[Role, str] | None = None) -> Clinic:
        # No cookie jar: every request authenticates explicitly (cookie tests set their own).
        client = await aiohttp_client(create_app(cfg or config), cookie_jar=DummyCookieJar())
        clinic = Clinic(client)
        for role in Role:
            token = tokens[role] if tokens else await clinic.add_credential(role, f"{role} 1")
            clinic.tokens[role] = token
            clinic.access[role] = await clinic.login(token)
        return clinic

    return start


@pytest.fixture
async def clinic(start_clinic: StartClinic) -> Clinic:
    return await start_clinic()


async def next_message(
    ws: ClientWebSocketResponse, timeout: float = EVENT_TIMEOUT
) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is WSMsgType.TEXT, f"expected a text frame, got {msg.type}: {msg.data!r}"
    return json.loads(msg.data)


async def messages(
    ws: ClientWebSocketResponse, count: int, timeout: float = EVENT_TIMEOUT
) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        return [await next_message(ws, timeout) for _ in range(count)]


async def wait_until(predicate: Callable[[], bool], timeout: float = EVENT_TIMEOUT) -> None:
    """Polls a condition on the server's state (never a bare sleep as synchronisation)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def raw_ws_client(port: int, path: str) -> socket.socket:
    """A bare WebSocket client: handshake done, then it never reads (a frozen TV)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    sock.settimeout(5)
    assert b"101" in sock.recv(1024).split(b"\r\n")[0]
    return sock
