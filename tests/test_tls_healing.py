"""Certificates that heal while the box runs (issue 19, items 12 and 13), IPv6, the banner.

A new address, a clock set right after the certificate was made on a wrong one, or a
certificate gone: the running server serves a new one to new connections, without a
restart, signed by the same CA every device already trusts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from checkin_appliance import own_names, tls
from checkin_appliance.config import Config
from checkin_appliance.server import reachable_urls
from tests.serverproc import HOST, cli_command, free_port, launched
from tests.test_tls import TIMEOUT, https, serving, trusting

TODAY = dt.datetime.now(dt.UTC)


def names(*ips: str, host: str = "clinic-box") -> tls.ServerNames:
    return tls.server_names(host, {ipaddress.ip_address(ip) for ip in ips})


@contextlib.asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    """A real TLS listener on a loopback port serving with `context` (answers nothing)."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, HOST, 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def served_certificate(port: int) -> x509.Certificate:
    """The certificate a new connection gets (not verified: that is the next helper's job);
    the blocking client runs in a thread so the listener on this loop can answer it."""
    pem = await asyncio.to_thread(ssl.get_server_certificate, (HOST, port), timeout=TIMEOUT)
    return x509.load_pem_x509_certificate(pem.encode())


def _verifies(port: int, ca_file: Path, name: str) -> bool:
    with socket.create_connection((HOST, port), TIMEOUT) as sock:
        try:
            with trusting(ca_file).wrap_socket(sock, server_hostname=name):
                return True
        except ssl.SSLCertVerificationError:
            return False


async def verifies(port: int, ca_file: Path, name: str = "localhost") -> bool:
    """Whether a client trusting only `ca_file`, with this machine's (right) clock, accepts."""
    return await asyncio.to_thread(_verifies, port, ca_file, name)


def ips_of(cert: x509.Certificate) -> set[str]:
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in alt.get_values_for_type(x509.IPAddress)}


def empty_context() -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


# --- in-process: the keeper and a real TLS listener ---------------------------------------


async def test_a_new_address_is_served_a_new_certificate_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(data_dir=tmp_path)
    current = names("192.168.1.20")
    context = empty_context()
    keeper = tls.CertificateKeeper(config, context, names=lambda: current)
    assert await keeper.check()  # the first certificate
    ca_before = config.tls_dir.joinpath("ca.crt").read_bytes()
    async with tls_server(context) as port:
        first = await served_certificate(port)
        assert "192.168.1.20" in ips_of(first)
        key_made = config.tls_dir.joinpath("server.key").stat().st_mtime_ns

        assert not await keeper.check()  # nothing changed: no new key, nothing logged
        assert config.tls_dir.joinpath("server.key").stat().st_mtime_ns == key_made

        current = names("192.168.1.20", "10.0.0.7", "fd00::2")  # DHCP, an interface came up
        with caplog.at_level(logging.INFO, logger="checkin_appliance.tls"):
            assert await keeper.check()
        second = await served_certificate(port)  # same listener, same SSLContext object
    assert second.serial_number != first.serial_number
    assert {"192.168.1.20", "10.0.0.7", "fd00::2"} <= ips_of(second)
    assert config.tls_dir.joinpath("ca.crt").read_bytes() == ca_before  # devices keep trust
    made = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(made) == 1 and "names or addresses changed" in made[0].getMessage()


@pytest.mark.parametrize(
    "clock_error", [-3 * 365, -20_000, 2 * 365], ids=["behind", "1970", "ahead"]
)
async def test_a_certificate_made_on_a_wrong_clock_is_replaced_once_the_clock_is_right(
    tmp_path: Path, clock_error: int
) -> None:
    """A box without a battery-backed clock boots on a wrong date and makes its CA and
    certificate before NTP answers; once the clock is right the certificate is remade and
    served, under the same CA (made on the wrong clock, it is still valid today)."""
    config = Config(data_dir=tmp_path)
    clock = {"now": TODAY + dt.timedelta(days=clock_error)}
    context = empty_context()
    keeper = tls.CertificateKeeper(
        config, context, names=lambda: names("192.168.1.20"), now=lambda: clock["now"]
    )
    assert await keeper.check()
    ca_file = config.tls_dir / "ca.crt"
    ca_before = ca_file.read_bytes()
    async with tls_server(context) as port:
        assert not await verifies(port, ca_file)  # expired, or not valid yet, by the right clock
        clock["now"] = TODAY  # NTP answered, or the admin set the clock
        assert await keeper.check()
        assert await verifies(port, ca_file)
        cert = await served_certificate(port)
    assert cert.not_valid_before_utc < TODAY - dt.timedelta(minutes=5)  # skew between devices
    assert ca_file.read_bytes() == ca_before


def test_an_implausible_clock_never_replaces_the_ca(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "tls"
    files = tls.ensure_certificates(folder, names())
    ca = files.ca_cert.read_bytes()
    with caplog.at_level(logging.WARNING, logger="checkin_appliance.tls"):
        tls.ensure_certificates(folder, names(), now=dt.datetime(1970, 1, 2, tzinfo=dt.UTC))
    assert files.ca_cert.read_bytes() == ca
    assert "before this version existed" in caplog.text


def test_an_old_ca_made_on_a_clock_ahead_is_replaced_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older version made its CA valid from its (wrong) now: no device could ever accept
    it before that date, so a right clock makes a new one and says so at WARNING."""
    folder = tmp_path / "tls"
    ahead = TODAY + dt.timedelta(days=400)
    with monkeypatch.context() as old_version:
        old_version.setattr(tls, "PLAUSIBLE_SINCE", ahead)  # as before: validity from "now"
        files = tls.ensure_certificates(folder, names(), now=ahead)
    ca = files.ca_cert.read_bytes()
    with caplog.at_level(logging.WARNING, logger="checkin_appliance.tls"):
        tls.ensure_certificates(folder, names())
    assert files.ca_cert.read_bytes() != ca
    assert "Every device must trust the new CA" in caplog.text
    new_ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    assert new_ca.not_valid_before_utc <= TODAY


def test_allowed_hosts_are_in_the_certificate_when_the_ca_may_vouch_for_them() -> None:
    found = tls.server_names("clinic-box", set(), extra=["Front.local.", "192.168.9.9", "x.lan"])
    assert {"front.local", "x.lan", "clinic-box.local"} <= found.dns
    assert ipaddress.ip_address("192.168.9.9") in found.ips


# --- the real server ------------------------------------------------------------------------


def test_the_running_server_heals_a_lost_certificate_in_the_same_process(
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text("certificate_check_interval = 0.2\n")
    args = ("--tls", "self-signed", "--config", str(config_file))
    with serving(tmp_path / "work", tmp_path / "data", *args) as box:
        _, _, _, first = https(box.port, box.context())
        pid = box.proc.pid
        (box.data_dir / "tls" / "server.crt").unlink()
        (box.data_dir / "tls" / "server.key").unlink()
        deadline = time.monotonic() + 10
        while True:
            status, _, _, now_served = https(box.port, box.context())
            if now_served != first:
                break
            assert time.monotonic() < deadline, box.describe()
            time.sleep(0.05)
        assert status == 200 and box.proc.pid == pid and box.proc.poll() is None
        assert (box.data_dir / "tls" / "server.crt").exists()
    made = re.findall(r"server certificate made \(([^)]*)\)", box.stderr())
    assert made[-1] == "none yet", box.describe()


def test_host_double_colon_serves_ipv4_and_ipv6_and_prints_reachable_urls(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = tmp_path / "data"
    command = cli_command("serve", "--host", "::", "--port", str(port), "--data-dir", str(data))
    with launched(tmp_path, command, port, data) as server:  # waits for 127.0.0.1 to answer
        conn = http.client.HTTPConnection("::1", port, timeout=TIMEOUT)
        try:
            conn.request("GET", "/healthz", headers={"Host": f"[::1]:{port}"})
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        server.wait_for_output(re.compile("Devices on the LAN open|serving on"))
        out = server.stdout()
    assert "0.0.0.0" not in out and "[::]" not in out  # noqa: S104 - looked for, not bound
    short = socket.gethostname().split(".")[0]
    assert f"serving on http://{short}.local:{port}" in out


def test_reachable_urls_name_the_box_and_each_address_never_0000() -> None:
    found = {ipaddress.ip_address(a) for a in ("192.168.1.20", "fd00::2")}
    short = socket.gethostname().split(".")[0]
    both = reachable_urls(Config(host="::", port=443), https=True, addresses=found)
    assert both == [f"https://{short}.local/", "https://192.168.1.20/", "https://[fd00::2]/"]
    every_ipv4 = Config(host="0.0.0.0", port=8000)  # noqa: S104 - a value, never bound
    ipv4 = reachable_urls(every_ipv4, https=False, addresses=found)
    assert ipv4 == [f"http://{short}.local:8000/", "http://192.168.1.20:8000/"]
    one = reachable_urls(Config(host="127.0.0.1", port=8000), https=False, addresses=found)
    assert one == ["http://127.0.0.1:8000/"]


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.168.1.0/24 2 0 2
           |-- 192.168.1.0
              /24 link UNICAST
           |-- 192.168.1.20
              /32 host LOCAL
           |-- 192.168.1.21
              /32 host LOCAL
        |-- 192.168.1.255
           /32 link BROADCAST
"""


def test_every_ipv4_address_of_an_interface_is_found_secondary_ones_too(tmp_path: Path) -> None:
    trie = tmp_path / "fib_trie"
    trie.write_text(FIB_TRIE)
    found = {str(ip) for ip in own_names.ipv4_addresses(trie)}
    assert found == {"127.0.0.1", "192.168.1.20", "192.168.1.21"}
    assert own_names.ipv4_addresses(tmp_path / "missing") == set()
