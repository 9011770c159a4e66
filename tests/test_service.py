"""Running under systemd: READY=1 once listening, WATCHDOG=1 while alive, a clean SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp

from tests.serverproc import HOST, cli_command, free_port

READY_TIMEOUT = 20.0
STOP_WITHIN = 5.0


def receive_until(sock: socket.socket, wanted: str, deadline: float) -> list[str]:
    got: list[str] = []
    while wanted not in got:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError as exc:
            raise AssertionError(f"{wanted} not received; got {got}") from exc
    return got


async def test_notify_ready_watchdog_and_clean_sigterm(tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    port = free_port()
    proc = subprocess.Popen(
        cli_command(
            "serve", "--host", HOST, "--port", str(port), "--data-dir", str(tmp_path / "d")
        ),
        env={
            "PATH": "/usr/bin:/bin",
            "NOTIFY_SOCKET": str(notify_path),
            "WATCHDOG_USEC": "1000000",  # WatchdogSec=1s: a ping every 0.5 s
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        messages = receive_until(listener, "READY=1", time.monotonic() + READY_TIMEOUT)
        # READY means listening: the port answers at once.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{HOST}:{port}/healthz") as resp:
                assert resp.status == 200
            # An open live feed must not hold up the stop.
            access = await _admin_feed_token(http, port, tmp_path)
            ws = await http.ws_connect(f"ws://{HOST}:{port}/ws/queue/?token={access}")
            messages += receive_until(listener, "WATCHDOG=1", time.monotonic() + 3)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            msg = await ws.receive(timeout=STOP_WITHIN)
            # The code the server sent (the client's reply may then find the socket gone).
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
        assert proc.wait(timeout=STOP_WITHIN) == 0
        assert time.monotonic() - started < STOP_WITHIN
        messages += receive_until(listener, "STOPPING=1", time.monotonic() + 1)
        assert messages.index("READY=1") < messages.index("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        listener.close()


async def _admin_feed_token(http: aiohttp.ClientSession, port: int, tmp_path: Path) -> str:
    created = subprocess.run(
        cli_command(
            "token",
            "create",
            "--role",
            "queue",
            "--label",
            "TV",
            "--password-stdin",
            "--data-dir",
            str(tmp_path / "d"),
        ),
        input="tv password\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    async with http.post(
        f"http://{HOST}:{port}/api/login/",
        data=json.dumps({"token": created.stdout.strip(), "password": "tv password"}),
        headers={"Content-Type": "application/json"},
    ) as resp:
        return (await resp.json())["access"]
