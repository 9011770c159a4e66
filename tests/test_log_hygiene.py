"""What the real server logs under probing (issue 13, item 15): photo names never reach the
access log, and malformed requests give one short WARNING each (rate-limited), not an
ERROR traceback quoting the bytes sent."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.serverproc import HOST, POLL_INTERVAL, Server, running

PHOTO_NAME = "0123456789abcdef0123456789abcdef.jpg"
SECRET = b"s3cr3t-marker"
MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: \x01\x02" + SECRET + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5" + SECRET + b"\r\n\r\n",
    b"GET /" + SECRET + b" HTTP/9.9\r\n\r\n",
    b"BL\x00AH /" + SECRET + b" HTTP/1.1\r\n\r\n",
]
ROUNDS = 5  # 20 malformed requests in all
MAX_WARNINGS = 12  # one per request at first, then the rate limit folds the rest


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("logs")) as srv:
        yield srv


def _send(port: int, raw: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(raw)
        return sock.recv(200)


def _wait_for(server: Server, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.stderr():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged\n{server.describe()}")
        time.sleep(POLL_INTERVAL)


def test_photo_names_stay_out_of_the_access_log(server: Server) -> None:
    raw = f"GET /media/patient_images/{PHOTO_NAME} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    # Refused (no staff session, no signed link): what matters here is what the log says.
    assert _send(server.port, raw.encode()).startswith(b"HTTP/1.1 401")
    _wait_for(server, '"GET /media/patient_images/')
    assert PHOTO_NAME not in server.stderr()
    assert PHOTO_NAME[:8] not in server.stderr()


def test_status_link_tokens_stay_out_of_the_access_log(server: Server) -> None:
    """A patient's status link (/v/<token>) opens their visit: its token is never logged."""
    access = server.login(server.create_token("form", "Kiosk log"))
    body = json.dumps({"fname": "Log Test"}).encode()
    conn = http.client.HTTPConnection(HOST, server.port, timeout=5)
    try:
        conn.request(
            "POST",
            "/api/patients/",
            body,
            {"Authorization": f"Bearer {access}", "Content-Type": "application/json"},
        )
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    token = answer["status_url"].rsplit("/", 1)[1]
    for path in (f"/v/{token}", f"/v/{token}/status", f"/v/{token}/qr.svg", f"/v/{token}x"):
        raw = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        assert _send(server.port, raw.encode()).startswith(b"HTTP/1.1 ")
    _wait_for(server, '"GET /v/<redacted>/qr.svg')
    assert token not in server.stderr() and token[:8] not in server.stderr()
    assert '"GET /v/<redacted>/status' in server.stderr()


def test_malformed_requests_log_one_short_warning_each(server: Server) -> None:
    for _ in range(ROUNDS):
        for raw in MALFORMED:
            assert _send(server.port, raw).startswith(b"HTTP/1.0 400")
    _wait_for(server, "malformed request")
    stderr = server.stderr()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert " ERROR " not in stderr, stderr[-3000:]
    assert SECRET.decode() not in stderr
    warnings = [line for line in stderr.splitlines() if "malformed request" in line]
    assert all(" WARNING " in line for line in warnings), warnings
    assert 1 <= len(warnings) <= MAX_WARNINGS, warnings
    assert all(len(line) < 300 for line in warnings), warnings
