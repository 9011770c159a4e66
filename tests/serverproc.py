"""The real appliance as a subprocess: `python -m checkin_appliance serve` on a free loopback
port, plus its command-line interface run against the same data directory.

Used by the end-to-end tests (test_seed_clients.py, test_cli.py); they wrap `running()` in
their own fixtures. Every wait here is a poll with a deadline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

HOST = "127.0.0.1"
PASSWORD = "correct horse battery"
START_TIMEOUT = 20.0  # seconds until /healthz must answer 200
CLI_TIMEOUT = 30.0  # seconds one CLI command may take
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
POLL_INTERVAL = 0.05
TOKEN_LINE = re.compile(r"\d{8}")
SETUP_CODE = re.compile(r"One-time setup code: (\S+)")
# Only loopback traffic: no client in the test process may route through a proxy.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# The checkout under test: a server started in another cwd (launched()) would otherwise
# import whatever checkin_appliance the interpreter has installed.
CHECKOUT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "checkin_appliance", *args]


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the CLI to completion (bounded by CLI_TIMEOUT); output is captured as text."""
    return subprocess.run(
        cli_command(*args),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=_env(),
        check=False,
    )


async def run_cli_async(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Like run_cli, without blocking the event loop (open WebSockets keep being served)."""
    command = cli_command(*args)
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        async with asyncio.timeout(CLI_TIMEOUT):
            out, err = await proc.communicate((stdin or "").encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(command, proc.returncode, out.decode(), err.decode())


def http_request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, http.client.HTTPMessage]:
    """A small blocking JSON request: (status, parsed body or text, response headers).

    Plain http.client on purpose: no proxy settings apply, only loopback is ever reached.
    """
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "http" and parts.hostname == HOST, url
    request_headers = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request_headers["Content-Type"] = "application/json"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(HOST, parts.port, timeout=5)
    try:
        conn.request(method, target, body=data, headers=request_headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return response.status, parsed, response.headers


def http_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """http_request without the response headers, for fixtures."""
    status, parsed, _ = http_request(method, url, body, headers)
    return status, parsed


@dataclass
class Server:
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    secure: ClassVar[bool] = False  # HTTPS and wss:// (the TLS tests' subclass)

    @property
    def base_url(self) -> str:
        return f"http{'s' if self.secure else ''}://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws{'s' if self.secure else ''}://{HOST}:{self.port}/ws/queue/"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        """The server's output, for assertion messages."""
        return f"--- server stdout ---\n{self.stdout()}\n--- server stderr ---\n{self.stderr()}"

    # --- the CLI on this server's data directory ------------------------------------

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--data-dir", str(self.data_dir), stdin=stdin)

    async def cli_async(
        self, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return await run_cli_async(*args, "--data-dir", str(self.data_dir), stdin=stdin)

    def create_token(
        self, role: str, label: str, password: str = PASSWORD, room: str | None = None
    ) -> str:
        """`token create … --password-stdin`; returns the one 8-digit line it prints."""
        rooms = ("--room", room) if room else ()
        result = self.cli(
            "token",
            "create",
            "--role",
            role,
            "--label",
            label,
            *rooms,
            "--password-stdin",
            stdin=password + "\n",
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 1 and TOKEN_LINE.fullmatch(lines[0]), result.stdout
        return lines[0]

    def login(self, token: str, password: str = PASSWORD) -> str:
        status, body = http_json(
            "POST", f"{self.base_url}/api/login/", {"token": token, "password": password}
        )
        assert status == 200, body
        return body["access"]

    def wait_for_output(self, pattern: re.Pattern[str], timeout: float = 5.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = pattern.search(self.stdout())
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern.pattern!r} not printed\n{self.describe()}")
            time.sleep(POLL_INTERVAL)

    # --- lifecycle -------------------------------------------------------------------

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode} before it was healthy\n"
                    + self.describe()
                )
            with contextlib.suppress(OSError):
                status, _ = http_json("GET", f"{self.base_url}/healthz")
                if status == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"/healthz not 200 within {timeout}s\n{self.describe()}")
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def launched(
    workdir: Path,
    command: list[str],
    port: int,
    data_dir: Path,
    make: Callable[..., Server] = Server,
    **fields: Any,
) -> Iterator[Server]:
    """Runs a server command (no proxy settings, output to files in workdir), waits for
    /healthz 200 and always stops it after. `make` builds the Server (or a subclass)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path = workdir / f"server-{port}.out"
    stderr_path = workdir / f"server-{port}.err"
    with pytest.MonkeyPatch.context() as env:
        for name in PROXY_VARIABLES:
            env.delenv(name, raising=False)
            env.delenv(name.upper(), raising=False)
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=_env(), cwd=workdir
            )
        server = make(port, data_dir, proc, stdout_path, stderr_path, **fields)
        try:
            server.wait_healthy()
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def running(workdir: Path, data_dir: Path | None = None) -> Iterator[Server]:
    """Starts `serve` on a free port, waits for /healthz 200, and always stops it after."""
    data_dir = data_dir or workdir / "data"
    port = free_port()
    command = cli_command("serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir))
    with launched(workdir, command, port, data_dir) as server:
        yield server


def new_database(data_dir: Path) -> None:
    """An empty, current database in data_dir, as a first `serve` leaves it: the commands
    other than serve, restore and import-original never make one."""
    from checkin_appliance.store import Store

    async def run() -> None:
        store = Store(data_dir / "checkin.db")
        await store.open()
        await store.close()

    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(run())
