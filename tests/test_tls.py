"""HTTPS on the LAN: `serve --tls self-signed` makes a local CA that devices trust once.

The real server runs as a subprocess on free loopback ports; every HTTPS client here trusts
ONLY the CA file the server wrote (never the system's roots), so a passing request proves the
box's certificate chain works for the names and addresses a tablet would use.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import aiohttp
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from checkin_appliance import tls
from checkin_appliance.app import create_app
from checkin_appliance.config import Config, ConfigError, load_config
from checkin_appliance.domain import Role
from tests.conftest import Clinic
from tests.serverproc import (
    HOST,
    PASSWORD,
    POLL_INTERVAL,
    START_TIMEOUT,
    Server,
    cli_command,
    free_port,
    launched,
    run_cli,
)
from tests.test_pages import cookie_header, page_login

TIMEOUT = 5.0
FINGERPRINT = re.compile(r'id="ca-fingerprint">((?:[0-9A-F]{2}:(?:<wbr>)?){31}[0-9A-F]{2})</code>')
CA_URL = re.compile(r'id="trust-url">([^<]+)<')


# --- helpers: HTTPS that trusts only a given CA -------------------------------------------


def trusting(ca_file: Path) -> ssl.SSLContext:
    """A client context whose only trust root is `ca_file` (hostname checks on)."""
    return ssl.create_default_context(cafile=str(ca_file))


class _Loopback(http.client.HTTPSConnection):
    """Connects to 127.0.0.1 whatever the name; the name is only what TLS verifies."""

    def __init__(self, name: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(name, port, timeout=TIMEOUT, context=context)
        self.tls_context = context

    def connect(self) -> None:
        sock = socket.create_connection((HOST, self.port), self.timeout)
        self.sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)


def https(
    port: int,
    context: ssl.SSLContext,
    method: str = "GET",
    path: str = "/healthz",
    *,
    name: str = HOST,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes, bytes]:
    """(status, headers, body, the server's certificate in DER) of one HTTPS request."""
    conn = _Loopback(name, port, context)
    try:
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        assert conn.sock is not None
        peer = conn.sock.getpeercert(binary_form=True)
        return response.status, response.headers, response.read(), peer or b""
    finally:
        conn.close()


def plain(port: int, method: str = "GET", path: str = "/") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    conn.request(method, path, headers={"Host": f"{HOST}:{port}"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def handshake(
    ca_file: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, name: str
) -> None:
    """One TLS handshake in memory: a client trusting only `ca_file` (OpenSSL, as in most
    tablets' browsers) meets a server with `cert` for `name`; raises if the client refuses."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server_context.load_cert_chain(cert_file, key_file)
    to_client, to_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_client, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = trusting(ca_file).wrap_bio(to_client, from_client, server_hostname=name)
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    for _ in range(10):  # a TLS 1.3 handshake takes three rounds
        finished = True
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                finished = False
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if finished:
            return
    raise AssertionError("the in-memory handshake did not finish")


def sha256_fingerprint(pem_file: Path) -> str:
    """Computed independently of the code under test: the SHA-256 of the DER bytes."""
    der = ssl.PEM_cert_to_DER_cert(pem_file.read_text())
    return hashlib.sha256(der).hexdigest().upper()


def colon_hex(hex_digits: str) -> str:
    return ":".join(hex_digits[i : i + 2] for i in range(0, len(hex_digits), 2))


# --- the server under test ----------------------------------------------------------------


@dataclass
class TLSServer(Server):
    secure: ClassVar[bool] = True
    http_port: int = 0
    trust_file: Path | None = None  # what clients trust; default: the CA the box writes

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.crt"

    def context(self) -> ssl.SSLContext:
        return trusting(self.trust_file or self.ca_file)

    def login(self, token: str, password: str = PASSWORD) -> str:
        status, _, body, _ = https(
            self.port,
            self.context(),
            "POST",
            "/api/login/",
            body={"token": token, "password": password},
        )
        assert status == 200, body
        return json.loads(body)["access"]

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode} before it was healthy\n"
                    + self.describe()
                )
            if (self.trust_file or self.ca_file).exists():
                with contextlib.suppress(OSError):
                    if https(self.port, self.context())[0] == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"/healthz not 200 within {timeout}s\n{self.describe()}")
            time.sleep(POLL_INTERVAL)


@contextlib.contextmanager
def serving(
    workdir: Path, data_dir: Path, *args: str, trust_file: Path | None = None
) -> Iterator[TLSServer]:
    """`serve --tls self-signed` (unless args say otherwise) on two free ports; always stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, http_port = free_port(), free_port()
    while http_port == port:
        http_port = free_port()
    command = cli_command(
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--http-port",
        str(http_port),
        "--data-dir",
        str(data_dir),
        *(args or ("--tls", "self-signed")),
    )
    with launched(
        workdir, command, port, data_dir, TLSServer, http_port=http_port, trust_file=trust_file
    ) as server:
        yield cast(TLSServer, server)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    workdir = tmp_path_factory.mktemp("tls")
    with serving(workdir, workdir / "data") as server:
        yield server


# --- the running box ----------------------------------------------------------------------


def test_healthz_answers_over_https_trusting_only_the_generated_ca(box: TLSServer) -> None:
    for name in (HOST, "localhost"):
        status, _, body, _ = https(box.port, box.context(), name=name)
        assert status == 200, (name, body)
        assert json.loads(body)["status"] == "ok"
    # The system's own roots do not vouch for it: the trust really comes from our CA file.
    with pytest.raises(ssl.SSLCertVerificationError):
        https(box.port, ssl.create_default_context())
    # A name the certificate does not carry is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        https(box.port, box.context(), name="elsewhere.example")


def test_the_certificate_names_the_box_and_its_lan_addresses(box: TLSServer) -> None:
    *_, der = https(box.port, box.context())
    cert = x509.load_der_x509_certificate(der)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(names.get_values_for_type(x509.DNSName))
    ips = set(names.get_values_for_type(x509.IPAddress))
    short = socket.gethostname().split(".")[0].lower()
    assert {"localhost", short, f"{short}.local"} <= dns
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= ips
    assert tls.lan_addresses() <= ips
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=398)


async def test_a_check_in_reaches_a_wss_subscriber(box: TLSServer) -> None:
    kiosk = box.login(box.create_token("form", "Kiosk"))
    display = box.login(box.create_token("queue", "Lobby TV"))
    context = box.context()
    async with websockets.connect(f"{box.ws_url}?token={display}", ssl=context) as ws:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{box.base_url}/api/patients/",
                json={"fname": "Ann Lee"},
                headers={"Authorization": f"Bearer {kiosk}"},
                ssl=context,
            ) as resp,
        ):
            assert resp.status == 201, await resp.text()
            patient = await resp.json()
        async with asyncio.timeout(TIMEOUT):
            while (event := json.loads(await ws.recv()))["event"] != "PATIENT_ADDED":
                pass
    assert event["patient"]["id"] == patient["id"]


def test_plain_http_redirects_to_https_and_serves_the_ca(box: TLSServer) -> None:
    page = plain(box.http_port, "GET", "/kiosk?lang=es")
    assert page.status == 301
    assert page.headers["Location"] == f"https://{HOST}:{box.port}/kiosk?lang=es"
    post = plain(box.http_port, "POST", "/api/login/")
    assert post.status == 308  # keeps the method and the body
    assert post.headers["Location"] == f"https://{HOST}:{box.port}/api/login/"

    conn = http.client.HTTPConnection(HOST, box.http_port, timeout=TIMEOUT)
    conn.request("GET", "/ca.crt")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-x509-ca-cert"
    assert body == box.ca_file.read_bytes()
    # The same file over HTTPS, on the main port.
    status, _, over_https, _ = https(box.port, box.context(), path="/ca.crt")
    assert (status, over_https) == (200, body)


def test_the_session_cookie_is_secure_over_https(box: TLSServer) -> None:
    token = box.create_token("doctor", "Dr. Lee")
    status, headers, _, _ = https(
        box.port,
        box.context(),
        "POST",
        "/api/login/",
        body={"token": token, "password": PASSWORD},
        headers={"Sec-Fetch-Site": "same-origin"},  # our sign-in page: only it gets the cookie
    )
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("checkin_session=")
    assert "; Secure" in cookie and "HttpOnly" in cookie


def test_private_keys_are_0600_in_a_0700_folder(box: TLSServer) -> None:
    folder = box.data_dir / "tls"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert sorted(p.name for p in folder.iterdir()) == [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
    ]


def test_the_setup_page_shows_the_fingerprint_of_the_ca_file(box: TLSServer) -> None:
    status, _, body, _ = https(box.port, box.context(), path="/setup")
    page = body.decode()
    assert status == 200
    shown = FINGERPRINT.search(page)
    assert shown, page
    fingerprint = shown.group(1).replace("<wbr>", "")
    assert fingerprint == colon_hex(sha256_fingerprint(box.ca_file))
    # A device that does not trust the box yet fetches the CA over plain HTTP.
    url = CA_URL.search(page)
    assert url and url.group(1) == f"http://{HOST}:{box.http_port}/ca.crt"
    assert 'href="/ca.crt"' in page
    # The start-up message names it too, for the person at the console.
    assert fingerprint in box.stdout()


def test_the_boxs_ca_cannot_vouch_for_websites_even_with_its_key(box: TLSServer) -> None:
    ca = load(box.ca_file)
    assert ca.extensions.get_extension_for_class(x509.NameConstraints).critical
    ca_key = load_key(box.data_dir / "tls" / "ca.key")
    for name in ("www.example.com", "8.8.8.8"):
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(box.ca_file, *signed_by(ca, ca_key, name), name)
    handshake(box.ca_file, *signed_by(ca, ca_key, "localhost"), "localhost")


# --- across starts ------------------------------------------------------------------------


def test_fresh_boxes_get_their_own_ca_and_a_restart_keeps_it(tmp_path: Path) -> None:
    with serving(tmp_path / "a", tmp_path / "a" / "data") as first:
        first_ca = sha256_fingerprint(first.ca_file)
        first_key = (first.data_dir / "tls" / "ca.key").read_bytes()
    with serving(tmp_path / "b", tmp_path / "b" / "data") as other:
        assert sha256_fingerprint(other.ca_file) != first_ca
    # A restart on the same data keeps the CA every device already trusts.
    with serving(tmp_path / "a", tmp_path / "a" / "data") as again:
        assert sha256_fingerprint(again.ca_file) == first_ca
        assert (again.data_dir / "tls" / "ca.key").read_bytes() == first_key
        assert https(again.port, trusting(first.ca_file))[0] == 200


def test_an_old_unconstrained_ca_keeps_working_and_says_how_to_replace_it(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    folder = data_dir / "tls"
    folder.mkdir(parents=True, mode=0o700)
    ca, ca_key = unconstrained_ca()
    (folder / "ca.key").write_bytes(private_pem(ca_key))
    (folder / "ca.key").chmod(0o600)
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    old = (folder / "ca.crt").read_bytes()
    # Replacing it would silently break every device's trust: it is kept, and still works.
    with serving(tmp_path, data_dir) as server:
        assert https(server.port, server.context())[0] == 200
        output = server.stdout() + server.stderr()
    assert (folder / "ca.crt").read_bytes() == old
    assert "WARNING" in output and "has no name constraints" in output, output
    assert f"delete {folder}" in output


def test_sigterm_stops_the_https_box_cleanly(tmp_path: Path) -> None:
    with serving(tmp_path, tmp_path / "data") as server:
        server.proc.terminate()
        assert server.proc.wait(timeout=5) == 0, server.describe()
        for port in (server.port, server.http_port):
            with pytest.raises(OSError):
                socket.create_connection((HOST, port), timeout=1).close()


def _own_certificate(folder: Path) -> tuple[Path, Path, bytes]:
    """A clinic's certificate for 127.0.0.1 (self-issued here); returns its files and DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clinic.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "clinic.crt", folder / "clinic.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


def test_the_clinics_own_certificate_is_served_as_is(tmp_path: Path) -> None:
    cert_path, key_path, der = _own_certificate(tmp_path / "clinic")
    data = tmp_path / "data"
    args = ("--tls-cert", str(cert_path), "--tls-key", str(key_path))
    # It starts healthy only once HTTPS verifies against the clinic's certificate alone.
    with serving(tmp_path, data, *args, trust_file=cert_path) as server:
        status, _, _, served = https(server.port, server.context())
        assert (status, served) == (200, der)
        # No local CA in this mode: nothing to download, no trust section, no files made.
        status, _, body, _ = https(server.port, server.context(), path="/ca.crt")
        assert status == 404 and json.loads(body) == {"error": "Not found.", "code": "not_found"}
        _, _, setup, _ = https(server.port, server.context(), path="/setup")
        assert b"ca-fingerprint" not in setup
        assert not (data / "tls").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tls-cert", "x.crt"), "tls_cert and tls_key go together"),
        (("--tls", "on"), "invalid choice: 'on'"),
        (("--tls", "self-signed", "--port", "8443", "--http-port", "8443"), "is the HTTPS port"),
        (("--http-port", "70000"), "http_port must be a port number"),
    ],
)
def test_bad_tls_flags_are_refused_with_a_reason(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path / "data"), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_an_unusable_certificate_stops_the_start_with_a_reason(tmp_path: Path) -> None:
    cert_path, key_path, _ = _own_certificate(tmp_path / "clinic")
    _, other_key, _ = _own_certificate(tmp_path / "other")
    port = str(free_port())
    mismatched = run_cli(
        "serve",
        *("--port", port, "--data-dir", str(tmp_path / "data")),
        *("--tls-cert", str(cert_path), "--tls-key", str(other_key)),
    )
    assert mismatched.returncode == 1
    assert "not a PEM certificate and its matching private key" in mismatched.stderr
    missing = run_cli(
        "serve",
        *("--port", port, "--data-dir", str(tmp_path / "data")),
        *("--tls-cert", str(tmp_path / "absent.crt"), "--tls-key", str(key_path)),
    )
    assert missing.returncode == 1
    assert "absent.crt" in missing.stderr
    # An encrypted key would make OpenSSL prompt on a terminal a service does not have.
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    encrypted = run_cli(
        "serve",
        *("--port", port, "--data-dir", str(tmp_path / "data")),
        *("--tls-cert", str(cert_path), "--tls-key", str(locked)),
    )
    assert encrypted.returncode == 1
    assert "is encrypted" in encrypted.stderr


# --- the files, in-process ----------------------------------------------------------------


def names(*ips: str, host: str = "clinicbox") -> tls.ServerNames:
    return tls.server_names(host, {ipaddress.ip_address(ip) for ip in ips})


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def signed_by(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *names: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """What someone holding the CA's key could sign: a server certificate for any `names`,
    with the same profile as the box's own."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([general_name(n) for n in names]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def verify(ca: x509.Certificate, leaf: x509.Certificate, name: str) -> None:
    """cryptography's RFC 5280 path validation (name constraints included), for `name`."""
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca]))
        .build_server_verifier(general_name(name))  # type: ignore[arg-type]
    )
    verifier.verify(leaf, [])


def unconstrained_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA as versions before name constraints made it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "checkin-appliance local CA old")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def test_the_ca_and_server_certificates_have_the_right_profile(tmp_path: Path) -> None:
    files = tls.ensure_certificates(tmp_path / "tls", names("192.168.1.20"))
    ca, server = load(files.ca_cert), load(files.server_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    common_name = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == f"checkin-appliance local CA {socket.gethostname()}"[:64]
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= dt.timedelta(days=3650)
    server.verify_directly_issued_by(ca)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    alt = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(alt.get_values_for_type(x509.DNSName)) == {
        "clinicbox",
        "clinicbox.local",
        "localhost",
    }
    assert {str(ip) for ip in alt.get_values_for_type(x509.IPAddress)} == {
        "192.168.1.20",
        "127.0.0.1",
        "::1",
    }


def test_new_addresses_get_a_new_server_certificate_under_the_same_ca(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    files = tls.ensure_certificates(folder, names("192.168.1.20"))
    ca_bytes, first = files.ca_cert.read_bytes(), files.server_cert.read_bytes()
    tls.ensure_certificates(folder, names("192.168.1.20"))
    assert files.server_cert.read_bytes() == first  # nothing changed: nothing remade
    tls.ensure_certificates(folder, names("192.168.1.20", "10.0.0.7"))
    assert files.server_cert.read_bytes() != first
    tls.ensure_certificates(folder, names("10.0.0.7", host="frontdesk"))
    alt = load(files.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "frontdesk.local" in alt.value.get_values_for_type(x509.DNSName)
    assert files.ca_cert.read_bytes() == ca_bytes


def test_a_server_certificate_near_its_end_is_renewed(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    files = tls.ensure_certificates(folder, names())
    ca_bytes, first = files.ca_cert.read_bytes(), load(files.server_cert)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=380)  # 17 days before it ends
    tls.ensure_certificates(folder, names(), now=later)
    renewed = load(files.server_cert)
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    assert files.ca_cert.read_bytes() == ca_bytes


def test_a_damaged_ca_is_reported_not_silently_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    files = tls.ensure_certificates(folder, names())
    files.ca_key.write_bytes(b"not a key")
    with pytest.raises(tls.TLSError, match="delete both to make a new CA"):
        tls.ensure_certificates(folder, names())
    other = tls.ensure_certificates(tmp_path / "other", names())
    files.ca_key.write_bytes(other.ca_key.read_bytes())
    with pytest.raises(tls.TLSError, match="does not belong to"):
        tls.ensure_certificates(folder, names())


def test_a_new_ca_may_vouch_only_for_local_names_and_private_addresses(tmp_path: Path) -> None:
    files = tls.ensure_certificates(tmp_path / "tls", names("192.168.1.20", "203.0.113.5"))
    extension = load(files.ca_cert).extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical
    assert extension.value.excluded_subtrees is None
    permitted = extension.value.permitted_subtrees or []
    assert {n.value for n in permitted if isinstance(n, x509.DNSName)} == {
        "local",
        "localhost",
        "clinicbox",
    }
    assert {str(n.value) for n in permitted if isinstance(n, x509.IPAddress)} == {
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "203.0.113.5/32",  # the box's own public address, and only that one
    }


def test_the_server_certificate_verifies_under_the_constraints(tmp_path: Path) -> None:
    files = tls.ensure_certificates(tmp_path / "tls", names("192.168.1.20", "fd00::2"))
    ca, server, key = load(files.ca_cert), load(files.server_cert), load_key(files.server_key)
    for name in ("clinicbox", "clinicbox.local", "localhost", "192.168.1.20", "fd00::2", "::1"):
        verify(ca, server, name)
        handshake(files.ca_cert, server, key, name)


@pytest.mark.parametrize(
    "names_signed",
    [
        ("www.example.com",),
        ("8.8.8.8",),
        ("2001:4860:4860::8888",),
        ("www.clinicbox.example",),
        # One permitted name does not carry a forbidden one: the whole certificate is refused.
        ("clinicbox.local", "www.example.com"),
        ("clinicbox.local", "192.0.2.1"),
    ],
)
def test_a_leaked_ca_key_cannot_forge_a_website(tmp_path: Path, names_signed: tuple[str]) -> None:
    files = tls.ensure_certificates(tmp_path / "tls", names("192.168.1.20"))
    ca, ca_key = load(files.ca_cert), load_key(files.ca_key)
    forged, forged_key = signed_by(ca, ca_key, *names_signed)
    target = names_signed[-1]
    with pytest.raises(verification.VerificationError):
        verify(ca, forged, target)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(files.ca_cert, forged, forged_key, target)
    # The same key signing for a name it may vouch for passes both: the refusal is the constraints.
    allowed, allowed_key = signed_by(ca, ca_key, "printer.local", "10.1.2.3")
    verify(ca, allowed, "printer.local")
    handshake(files.ca_cert, allowed, allowed_key, "10.1.2.3")


def test_a_renamed_box_keeps_its_ca_and_its_local_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "tls"
    files = tls.ensure_certificates(folder, names("192.168.1.20"))
    ca_bytes = files.ca_cert.read_bytes()
    caplog.set_level(logging.WARNING, logger=tls.__name__)
    tls.ensure_certificates(folder, names("192.168.1.20", "198.51.100.7", host="frontdesk"))
    assert files.ca_cert.read_bytes() == ca_bytes  # every device keeps trusting the box
    server = load(files.server_cert)
    alt = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(alt.get_values_for_type(x509.DNSName)) == {"frontdesk.local", "localhost"}
    assert ipaddress.ip_address("198.51.100.7") not in alt.get_values_for_type(x509.IPAddress)
    verify(load(files.ca_cert), server, "frontdesk.local")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "frontdesk, 198.51.100.7" in warnings[0], warnings
    # Nothing changed: the certificate is not remade and the warning not repeated.
    tls.ensure_certificates(folder, names("192.168.1.20", "198.51.100.7", host="frontdesk"))
    assert load(files.server_cert).serial_number == server.serial_number
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_an_unconstrained_ca_is_kept_with_a_warning_at_every_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "tls"
    folder.mkdir(mode=0o700)
    ca, ca_key = unconstrained_ca()
    (folder / "ca.key").write_bytes(private_pem(ca_key))
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    caplog.set_level(logging.WARNING, logger=tls.__name__)
    for start in (1, 2):
        files = tls.ensure_certificates(folder, names("192.168.1.20", "198.51.100.7"))
        assert load(files.ca_cert) == ca
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == start and "has no name constraints" in warnings[-1]
        assert f"delete {folder}" in warnings[-1] and "trust the new one" in warnings[-1]
    # Unconstrained, it still vouches for every name the box has, as before.
    alt = load(files.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert ipaddress.ip_address("198.51.100.7") in alt.value.get_values_for_type(x509.IPAddress)
    verify(ca, load(files.server_cert), "clinicbox")


def test_a_wider_tls_folder_is_narrowed_to_its_owner(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    folder.mkdir()
    os.chmod(folder, 0o755)  # noqa: S103 - the too-wide folder under test
    tls.ensure_certificates(folder, names())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# --- address discovery --------------------------------------------------------------------


def test_lan_addresses_are_this_machines_own() -> None:
    found = tls.lan_addresses()
    for address in found:
        assert not address.is_loopback
        # Only an address this machine has can be bound; nothing is sent.
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((str(address), 0))


def test_ipv6_addresses_skip_temporary_deprecated_and_malformed_lines(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(
        "fd000000000000000000000000000002 04 40 00 80 eth0\n"  # stable ULA
        "20010db8000000000000000000000010 04 40 00 01 eth0\n"  # temporary (privacy)
        "20010db8000000000000000000000020 04 40 00 20 eth0\n"  # deprecated
        "fe800000000000000000000000000001 04 40 20 80 eth0\n"  # link-local: read, later dropped
        "garbage\n"
    )
    found = tls.ipv6_addresses(table)
    assert found == {ipaddress.ip_address("fd00::2"), ipaddress.ip_address("fe80::1")}
    assert tls.ipv6_addresses(tmp_path / "absent") == set()


def test_host_names_cover_the_short_name_mdns_and_localhost() -> None:
    assert tls.host_names("FrontDesk.clinic.lan.") == [
        "frontdesk.clinic.lan",
        "frontdesk",
        "frontdesk.local",
        "localhost",
    ]
    assert tls.host_names("192.168.1.20") == ["localhost"]
    assert tls.host_names("") == ["localhost"]


# --- configuration ------------------------------------------------------------------------


def test_the_plain_http_port_follows_the_https_port() -> None:
    assert Config().redirect_port is None  # TLS off
    assert Config(tls="self-signed", port=443).redirect_port == 80
    assert Config(tls="self-signed", port=8443).redirect_port is None
    assert Config(tls="self-signed", port=8443, http_port=8080).redirect_port == 8080
    assert Config(tls="self-signed", port=443, http_port=0).redirect_port is None
    own = Config(tls_cert=Path("c.pem"), tls_key=Path("k.pem"), port=443)
    assert (own.tls_mode, own.redirect_port) == ("own", 80)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('tls = "on"', "tls must be one of 'off', 'self-signed'"),
        ('tls_cert = "/etc/c.pem"', "tls_cert and tls_key go together"),
        ("tls_key = 3", "tls_key must be the path of a PEM file"),
        ("http_port = -1", "http_port must be a port number"),
        ('tls = "self-signed"\nport = 443\nhttp_port = 443', "is the HTTPS port too"),
    ],
)
def test_bad_tls_settings_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


# --- /ca.crt and the trust section, in-process --------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The clinic fixtures (conftest) run on a box whose local CA exists."""
    config = Config(data_dir=tmp_path / "data", tls="self-signed")
    tls.ensure_certificates(config.tls_dir, names())
    return config


async def test_the_admin_page_shows_how_to_trust_the_box(clinic: Clinic, config: Config) -> None:
    login = await page_login(clinic, Role.ADMIN)
    page = await clinic.client.get("/admin", headers=cookie_header(login))
    text = await page.text()
    assert page.status == 200
    shown = FINGERPRINT.search(text)
    assert shown, text
    expected = colon_hex(sha256_fingerprint(config.tls_dir / "ca.crt"))
    assert shown.group(1).replace("<wbr>", "") == expected
    for device in ("iPad", "Android tablet", "Chromebook", "Windows PC"):
        assert f">{device}</summary>" in text
    # The page's script can re-render the section in the other language.
    assert '"tls.heading": "Confiar en este equipo desde sus dispositivos"' in text


async def test_ca_crt_is_there_only_with_the_local_ca(aiohttp_client: Any, tmp_path: Path) -> None:
    off = await aiohttp_client(create_app(Config(data_dir=tmp_path / "off")))
    resp = await off.get("/ca.crt")
    assert (resp.status, await resp.json()) == (404, {"error": "Not found.", "code": "not_found"})
    setup = await (await off.get("/setup")).text()
    assert "ca-fingerprint" not in setup

    on_config = Config(data_dir=tmp_path / "on", tls="self-signed")
    tls.ensure_certificates(on_config.tls_dir, names())
    on = await aiohttp_client(create_app(on_config))
    resp = await on.get("/ca.crt")
    assert resp.status == 200
    assert resp.content_type == "application/x-x509-ca-cert"
    assert await resp.read() == (on_config.tls_dir / "ca.crt").read_bytes()
    setup = await (await on.get("/setup")).text()
    assert "ca-fingerprint" in setup
