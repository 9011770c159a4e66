"""Running under systemd: READY=1 once listening, WATCHDOG=1 while alive, a clean SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp

from checkin_appliance import logs
from tests.serverproc import HOST, Server, cli_command, free_port

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
        input="tv in the hall\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    async with http.post(
        f"http://{HOST}:{port}/api/login/",
        data=json.dumps({"token": created.stdout.strip(), "password": "tv in the hall"}),
        headers={"Content-Type": "application/json"},
    ) as resp:
        return (await resp.json())["access"]


def test_under_the_journal_lines_carry_a_priority_and_no_time(tmp_path: Path) -> None:
    # systemd names the journal's stream in JOURNAL_STREAM ("device:inode"); here, a file.
    log_path = tmp_path / "stderr.log"
    log_path.touch()
    info = log_path.stat()
    lines = serve_once(tmp_path, log_path, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
    assert lines and all(line.startswith(("<6>INFO ", "<7>DEBUG ")) for line in lines), lines
    assert '<6>INFO aiohttp.access: 127.0.0.1 "GET /healthz" 200' in "\n".join(lines)

    warning = logging.LogRecord("x", logging.WARNING, __file__, 1, "careful", None, None)
    assert logs.JournalFormatter().format(warning) == "<4>WARNING x: careful"


def test_elsewhere_each_line_starts_with_the_time(tmp_path: Path) -> None:
    # A JOURNAL_STREAM inherited from elsewhere names another stream: not ours.
    lines = serve_once(tmp_path, tmp_path / "stderr.log", {"JOURNAL_STREAM": "1:2"})
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|DEBUG) ")
    assert lines and all(stamp.match(line) for line in lines), lines


def serve_once(tmp_path: Path, log_path: Path, env: dict[str, str]) -> list[str]:
    """The log lines (stderr) of a server that answered /healthz and was stopped."""
    port = free_port()
    with log_path.open("a") as stderr:
        proc = subprocess.Popen(
            cli_command(
                "serve", "--host", HOST, "--port", str(port), "--data-dir", str(tmp_path / "d")
            ),
            env={"PATH": "/usr/bin:/bin", **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    server = Server(port, tmp_path / "d", proc, Path(os.devnull), log_path)
    try:
        server.wait_healthy()
    finally:
        server.stop()
    assert proc.returncode == 0, server.stderr()
    return server.stderr().splitlines()
