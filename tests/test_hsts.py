"""HSTS (issue 13, item 23): HTTPS answers tell browsers to stay on HTTPS; the plain-HTTP
port (redirects and /ca.crt) never sends it, as RFC 6797 says and /ca.crt needs."""

from __future__ import annotations

import http.client
from pathlib import Path

from tests.serverproc import running
from tests.test_tls import HOST, TLSServer, box, https, plain

__all__ = ["box"]  # the module-scoped HTTPS server of test_tls.py, used here too

ONE_YEAR = 31_536_000


def test_https_answers_carry_hsts_without_subdomains(box: TLSServer) -> None:
    for path in ("/healthz", "/login", "/static/css/app.css", "/nope"):
        _, headers, _, _ = https(box.port, box.context(), path=path)
        assert headers["Strict-Transport-Security"] == f"max-age={ONE_YEAR}", path


def test_the_plain_http_port_sends_no_hsts(box: TLSServer) -> None:
    for method, path in (("GET", "/kiosk"), ("GET", "/ca.crt"), ("POST", "/api/login/")):
        response = plain(box.http_port, method, path)
        assert response.getheader("Strict-Transport-Security") is None, path


def test_a_plain_http_box_sends_no_hsts(tmp_path: Path) -> None:
    with running(tmp_path) as server:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert response.status == 200
        assert response.getheader("Strict-Transport-Security") is None
