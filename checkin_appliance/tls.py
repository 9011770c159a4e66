"""HTTPS on the LAN: the box's own certificate authority, its server certificate, the SSL context.

With `tls = "self-signed"` the first start makes a local CA (kept for ten years: every tablet
trusts it once) and a server certificate signed by it for the box's names and addresses. The
server certificate is remade whenever those change or it nears its end; the CA is kept.
Files live in <data_dir>/tls/: ca.crt, ca.key, server.crt, server.key (keys mode 0600).

The CA carries critical X.509 Name Constraints: it may vouch only for `.local` and `localhost`
names, the hostname it was made under, private and loopback addresses, and the addresses the
box had then. A device that trusts it therefore trusts it for no website on the internet,
even if ca.key leaks. `_name_constraints` says why they are not exactly the box's own names.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from checkin_appliance.config import Config
from checkin_appliance.files import write_atomically
from checkin_appliance.own_names import (  # here first; kept importable from tls
    LOOPBACK,
    IPAddress,
    host_names,
    lan_addresses,
)
from checkin_appliance.own_names import ipv6_addresses as ipv6_addresses  # tests read it here

log = logging.getLogger(__name__)

CA_LIFETIME = dt.timedelta(days=3650)
# Browsers refuse server certificates valid for more than 398 days (Apple, Chrome).
SERVER_LIFETIME = dt.timedelta(days=397)
RENEW_BEFORE = dt.timedelta(days=30)
# A tablet whose clock is a little behind still accepts a certificate made a moment ago.
BACKDATE = dt.timedelta(hours=1)
# No clock that reads earlier than this is right: this code did not exist before. A box
# without a battery-backed clock may boot in 1970 (or at its last shutdown) and make its CA
# before NTP answers; the CA's validity is stretched to cover this date whichever way the
# clock was wrong, so fixing the clock never needs a new CA (and every device's trust).
PLAUSIBLE_SINCE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CA_NAME_PREFIX = "checkin-appliance local CA"
# Names no public website can have: mDNS (RFC 6762) and loopback (RFC 6761). A constraint
# covers the name and every name under it.
LOCAL_DOMAINS = ("local", "localhost")
# Addresses no public website has: RFC 1918, loopback, link-local, IPv6 unique-local.
PRIVATE_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)
CN_MAX = 64  # X.509 upper bound for a common name


class TLSError(Exception):
    """HTTPS cannot be set up; the message says what to fix."""


@dataclass(frozen=True)
class LocalCA:
    """The CA certificate devices download from /ca.crt, and what they compare it with."""

    pem: bytes
    fingerprint: str  # SHA-256 of the DER certificate, "AB:CD:…"


@dataclass(frozen=True)
class ServerNames:
    """What the server certificate must name: DNS names and IP addresses."""

    dns: frozenset[str]
    ips: frozenset[IPAddress]


@dataclass(frozen=True)
class TLSFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def in_dir(cls, tls_dir: Path) -> TLSFiles:
        return cls(
            tls_dir / "ca.crt", tls_dir / "ca.key", tls_dir / "server.crt", tls_dir / "server.key"
        )


# --- serving ------------------------------------------------------------------------------


def server_context(config: Config) -> ssl.SSLContext | None:
    """The SSL context to serve with (making or renewing our own files first); None: plain."""
    mode = config.tls_mode
    if mode == "off":
        return None
    if mode == "self-signed":
        files = ensure_certificates(config.tls_dir, server_names(extra=config.allowed_hosts))
        cert, key = files.server_cert, files.server_key
    else:
        assert config.tls_cert is not None and config.tls_key is not None
        cert, key = config.tls_cert, config.tls_key
    return _context(cert, key)


class CertificateKeeper:
    """Keeps the running server's certificate fitting the box while it runs: a new address
    from DHCP, an interface come up, the end near, or a clock set right after the certificate
    was made on a wrong one. `check()` remakes it when needed (one INFO line says why) and
    loads it into the serving SSLContext: new handshakes get it, no restart, open
    connections keep theirs. `names` and `now` are injectable for tests."""

    def __init__(
        self,
        config: Config,
        context: ssl.SSLContext,
        names: Callable[[], ServerNames] | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.tls_dir = config.tls_dir
        self.context = context
        allowed = config.allowed_hosts
        self.names = names or (lambda: server_names(extra=allowed))
        self.now = now or (lambda: dt.datetime.now(dt.UTC))

    def _renew(self) -> TLSFiles | None:
        files, reason = renew_certificates(self.tls_dir, self.names(), self.now(), remind=False)
        return files if reason is not None else None

    async def check(self) -> bool:
        """Whether a new certificate is now served. The file work (and a new key, if one is
        made) runs in a thread; the context is loaded on the loop, between handshakes."""
        files = await asyncio.to_thread(self._renew)
        if files is None:
            return False
        self.context.load_cert_chain(files.server_cert, files.server_key)
        return True


def _context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def no_passphrase() -> bytes:
        # Without this OpenSSL would prompt on a terminal that a service does not have.
        raise TLSError(f"{key} is encrypted; give an unencrypted key (readable only by us)")

    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as exc:  # before OSError, of which it is a kind
        raise TLSError(
            f"{cert} and {key} are not a PEM certificate and its matching private key "
            f"({exc.reason or exc})"
        ) from exc
    except OSError as exc:
        raise TLSError(f"cannot read {exc.filename or cert}: {exc.strerror or exc}") from exc
    return context


def local_ca(config: Config) -> LocalCA | None:
    """Our CA certificate, when the box serves with its own local CA (else None)."""
    if config.tls_mode != "self-signed":
        return None
    path = TLSFiles.in_dir(config.tls_dir).ca_cert
    try:
        info = path.stat()
    except OSError:
        return None
    return _read_ca(str(path), info.st_mtime_ns, info.st_size)


@lru_cache(maxsize=4)
def _read_ca(path: str, mtime_ns: int, size: int) -> LocalCA | None:
    """Keyed by the file's mtime and size, so a new CA is picked up at once."""
    try:
        pem = Path(path).read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError):
        return None
    return LocalCA(pem, fingerprint(cert))


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


# --- the local CA and the server certificate ----------------------------------------------


def ensure_certificates(
    tls_dir: Path, names: ServerNames | None = None, now: dt.datetime | None = None
) -> TLSFiles:
    """Makes the CA if there is none, and a server certificate if the current one does not fit."""
    return renew_certificates(tls_dir, names, now)[0]


def renew_certificates(
    tls_dir: Path,
    names: ServerNames | None = None,
    now: dt.datetime | None = None,
    *,
    remind: bool = True,
) -> tuple[TLSFiles, str | None]:
    """ensure_certificates, also saying why the server certificate was made anew (None: the
    one on disk still fits). Cheap when nothing changed: two small files read, no new key.
    `remind`: repeat the warnings about a state that lasts (an unconstrained CA, a wrong
    clock); the periodic check says them at start only, not every minute."""
    now = now or dt.datetime.now(dt.UTC)
    names = names or server_names()
    files = TLSFiles.in_dir(tls_dir)
    _private_dir(tls_dir)
    ca_key, ca_cert = _load_or_make_ca(files, now, names, remind=remind)
    wanted = names
    names = vouched_names(ca_cert, wanted)
    reason = _server_cert_misfit(files, ca_cert, names, now)
    if reason is None:
        return files, None
    if left_out := _listed(wanted.dns - names.dns, wanted.ips - names.ips):
        # Not fatal: the box still answers as <hostname>.local and on its private addresses.
        log.warning(
            "the local CA may not vouch for %s (it was made when the box had other names or "
            "addresses), so the server certificate leaves them out; devices reach the box as "
            "<hostname>.local or on a private address. To cover them, make a new CA (README: "
            "HTTPS on the LAN)",
            left_out,
        )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _server_certificate(key, ca_key, ca_cert, names, now)
    # Key first: a crash in between leaves a mismatched pair, which the next start replaces.
    write_atomically(files.server_key, _private_pem(key), 0o600)
    write_atomically(files.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info(
        "server certificate made (%s) for %s (valid until %s)",
        reason,
        _listed(names.dns, names.ips),
        cert.not_valid_after_utc.date().isoformat(),
    )
    return files, reason


def _listed(dns: frozenset[str], ips: frozenset[IPAddress]) -> str:
    return ", ".join([*sorted(dns), *(str(ip) for ip in sorted(ips, key=_ip_order))])


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        os.chmod(path, 0o700)  # an existing folder (made by hand, restored from backup)


def _load_or_make_ca(
    files: TLSFiles, now: dt.datetime, names: ServerNames, *, remind: bool = True
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    if files.ca_cert.exists() and files.ca_key.exists():
        try:
            key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise TLSError(
                f"cannot read the local CA in {files.ca_cert.parent} ({exc}). Restore ca.crt "
                "and ca.key from a backup, or delete both to make a new CA (every device must "
                "then trust the new one)"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or _spki(key.public_key()) != _spki(
            cert.public_key()
        ):
            raise TLSError(
                f"{files.ca_key} does not belong to {files.ca_cert}. Restore the pair from a "
                "backup, or delete both to make a new CA (every device must then trust it)"
            )
        if now < PLAUSIBLE_SINCE:
            # The clock is wrong, not the CA: keep it (a new one would need every device's
            # trust again); the server certificate is made for now and remade once it is set.
            if remind:
                log.warning(
                    "the clock says %s, before this version existed: keeping the local CA; set the "
                    "clock (NTP, or /admin) and the server certificate is remade within a minute",
                    now.date().isoformat(),
                )
            return key, cert
        if cert.not_valid_before_utc > now:
            # Made by an older version on a clock that ran ahead: no device accepts it until
            # then, so no device can trust it now and a new one costs nothing that works.
            log.warning(
                "the local CA is not valid until %s (it was made while the clock was wrong): "
                "making a new one. Every device must trust the new CA (README: HTTPS on the LAN)",
                cert.not_valid_before_utc.date().isoformat(),
            )
        elif cert.not_valid_after_utc - now > RENEW_BEFORE:
            if remind and not _has_name_constraints(cert):
                _warn_unconstrained(files)
            return key, cert
        else:
            log.warning(
                "the local CA ends on %s: making a new one", cert.not_valid_after_utc.date()
            )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca_certificate(key, now, names)
    write_atomically(files.ca_key, _private_pem(key), 0o600)
    write_atomically(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("made a new local certificate authority, SHA-256 %s", fingerprint(cert))
    return key, cert


def _warn_unconstrained(files: TLSFiles) -> None:
    """A CA made before name constraints keeps working (replacing it silently would break every
    device's trust at once), but the operator hears at every start what it risks and the fix."""
    log.warning(
        "the local CA in %s has no name constraints (it was made by an older version): if "
        "ca.key leaks, it can vouch for any website on every device that trusts it. To replace "
        "it: stop the box, delete %s, start the box, then remove the old CA from every device "
        "and trust the new one (README: HTTPS on the LAN)",
        files.ca_cert,
        files.ca_cert.parent,
    )


def _has_name_constraints(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return False
    return True


def _name_constraints(names: ServerNames) -> x509.NameConstraints:
    """What the CA may ever vouch for: local names and private addresses, and the box's own.

    Not exactly the box's own names: the CA lives ten years and every device trusts it by
    hand, so renaming or re-addressing the box must not need a new CA; `.local` and the
    private ranges keep covering it. Its hostname (and any public address it has now) are
    added because a tablet may use them. A DNS constraint covers every name under it too,
    so nothing broader goes in: a one-word hostname that is also a top-level domain
    (`clinic`, `doctor` and `health` are) covers every site under that domain (README).
    """
    local_suffixes = tuple(f".{domain}" for domain in LOCAL_DOMAINS)
    domains = [
        name
        for name in sorted(names.dns)
        if name not in LOCAL_DOMAINS and not name.endswith(local_suffixes)
    ]
    own_public = [
        ip
        for ip in sorted(names.ips, key=_ip_order)
        if not any(ip in network for network in PRIVATE_NETWORKS)
    ]
    permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in (*LOCAL_DOMAINS, *domains)]
    permitted += [x509.IPAddress(network) for network in PRIVATE_NETWORKS]
    permitted += [x509.IPAddress(ipaddress.ip_network(ip)) for ip in own_public]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)


def vouched_names(ca_cert: x509.Certificate, names: ServerNames) -> ServerNames:
    """The part of `names` that `ca_cert`'s name constraints let it vouch for.

    Devices refuse a server certificate whole if one of its names is outside the constraints,
    so it must carry only these."""
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return names  # a CA from before name constraints
    permitted = constraints.permitted_subtrees or []
    domains = [n.value.lower().lstrip(".") for n in permitted if isinstance(n, x509.DNSName)]
    networks = [n.value for n in permitted if isinstance(n, x509.IPAddress)]
    # A kind of name the constraints do not mention is not constrained (RFC 5280, 4.2.1.10).
    dns = frozenset(
        name
        for name in names.dns
        if not domains or any(name == d or name.endswith(f".{d}") for d in domains)
    )
    ips = frozenset(
        ip
        for ip in names.ips
        if not networks or any(ip.version == net.version and ip in net for net in networks)
    )
    return ServerNames(dns, ips)


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, now: dt.datetime, names: ServerNames
) -> x509.Certificate:
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    name = x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"{CA_NAME_PREFIX} {socket.gethostname()}"[:CN_MAX]
            ),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "checkin-appliance"),
            # Two boxes with the same hostname still get distinct CA names.
            x509.NameAttribute(NameOID.SERIAL_NUMBER, ski.digest[:8].hex()),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # Both ends stretched over PLAUSIBLE_SINCE: made on a wrong clock, it is still valid
        # once the clock is right (the server certificates it signs are what is remade).
        .not_valid_before(min(now, PLAUSIBLE_SINCE) - BACKDATE)
        .not_valid_after(max(now, PLAUSIBLE_SINCE) + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(ski, critical=False)
        # Critical: a device that cannot apply the constraints must refuse the CA, not ignore them.
        .add_extension(_name_constraints(names), critical=True)
        .sign(key, hashes.SHA256())
    )


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """KeyUsage with only the named uses allowed (the rest False, as x509 wants them all)."""
    uses = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    if unknown := set(allowed) - set(uses):
        raise TypeError(f"not a key usage: {sorted(unknown)}")
    return x509.KeyUsage(**{use: allowed.get(use, False) for use in uses})


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: ServerNames,
    now: dt.datetime,
) -> x509.Certificate:
    common_name = min(names.dns - {"localhost"}, key=len, default="localhost")[:CN_MAX]
    general_names: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(names.dns)]
    general_names += [x509.IPAddress(ip) for ip in sorted(names.ips, key=_ip_order)]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _server_cert_misfit(
    files: TLSFiles, ca_cert: x509.Certificate, names: ServerNames, now: dt.datetime
) -> str | None:
    """Why the current server certificate must be remade, or None: it is ours, valid now and
    for a while yet, and names all we are."""
    try:
        cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        key = serialization.load_pem_private_key(files.server_key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except OSError:
        return "none yet"
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return "the old one is unreadable or not from this CA"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or _spki(key.public_key()) != _spki(
        cert.public_key()
    ):
        return "the key does not match"
    if cert.not_valid_before_utc > now:
        return "the old one starts in the future: made while the clock was wrong"
    if cert.not_valid_after_utc <= now:
        return "the old one has expired"
    if cert.not_valid_after_utc - now <= RENEW_BEFORE:
        return "the old one ends soon"
    if (
        frozenset(alt.get_values_for_type(x509.DNSName)) != names.dns
        or frozenset(alt.get_values_for_type(x509.IPAddress)) != names.ips
    ):
        return "the box's names or addresses changed"
    return None


def _spki(public: object) -> bytes:
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --- which names and addresses the server certificate covers ------------------------------


def server_names(
    hostname: str | None = None,
    addresses: set[IPAddress] | None = None,
    extra: Iterable[str] = (),
) -> ServerNames:
    """The hostname, <hostname>.local, localhost, every LAN address, 127.0.0.1 and ::1, and
    `extra` (the operator's allowed_hosts: names, or addresses)."""
    if addresses is None:
        addresses = lan_addresses()
    dns, ips = set(host_names(hostname)), set(addresses) | LOOPBACK
    for name in extra:
        name = name.strip().rstrip(".").lower()
        try:
            ips.add(ipaddress.ip_address(name))
        except ValueError:
            if name:
                dns.add(name)
    return ServerNames(frozenset(dns), frozenset(ips))


def _ip_order(address: IPAddress) -> tuple[int, int]:
    return address.version, int(address)
