"""The box's own names and addresses: what its certificate covers and what a request's Host
header may say. No cryptography here, so the plain-HTTP server can use it too."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import socket
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK: frozenset[IPAddress] = frozenset(
    {ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")}
)
SIOCGIFADDR = 0x8915  # Linux ioctl: the IPv4 address of one interface
# /proc/net/if_inet6 flags of addresses that come and go (privacy addresses, old prefixes).
IFA_F_TEMPORARY = 0x01
IFA_F_DEPRECATED = 0x20


def host_names(hostname: str | None = None) -> list[str]:
    name = (hostname if hostname is not None else socket.gethostname()).strip().rstrip(".")
    name = name.lower()
    names: list[str] = []
    if name and not _is_address(name) and name != "localhost":
        short = name.split(".")[0]
        names += [name, short, f"{short}.local"]
    names.append("localhost")
    return list(dict.fromkeys(names))


def lan_addresses() -> set[IPAddress]:
    """This machine's own addresses, asked of the kernel: nothing is sent anywhere."""
    found: set[IPAddress] = set()
    if sys.platform.startswith("linux"):
        found |= _ipv4_by_interface()  # one address per interface: the primary
        found |= ipv4_addresses(Path("/proc/net/fib_trie"))  # secondary ones too
        found |= ipv6_addresses(Path("/proc/net/if_inet6"))
    else:  # a developer's laptop: what the hostname resolves to locally is good enough
        with contextlib.suppress(OSError):
            for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None):
                with contextlib.suppress(ValueError):
                    found.add(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
    return {address for address in found if _reachable_on_lan(address)}


def _ipv4_by_interface() -> set[IPAddress]:
    import fcntl  # Unix only; imported here so the module loads anywhere

    found: set[IPAddress] = set()
    try:
        interfaces = socket.if_nameindex()
        # A socket only to ask the kernel about interfaces; it is never bound or connected.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return found
    with sock:
        for _, name in interfaces:
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
            except OSError:
                continue  # no IPv4 address on this interface
            found.add(ipaddress.IPv4Address(reply[20:24]))  # struct ifreq → sockaddr_in.sin_addr
    return found


def ipv4_addresses(path: Path) -> set[IPAddress]:
    """Every local IPv4 address of every interface, secondary ones included, from
    /proc/net/fib_trie: an address line (`|-- 192.168.1.20`) then its `/32 host LOCAL`."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return set()
    found: set[IPAddress] = set()
    for above, line in itertools.pairwise(lines):
        if line.split() == ["/32", "host", "LOCAL"] and above.strip().startswith("|--"):
            with contextlib.suppress(ValueError):
                found.add(ipaddress.IPv4Address(above.strip()[3:].strip()))
    return found


def ipv6_addresses(path: Path) -> set[IPAddress]:
    """Stable IPv6 addresses from /proc/net/if_inet6 (temporary and deprecated ones skipped)."""
    try:
        text = path.read_text()
    except OSError:
        return set()
    found: set[IPAddress] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            flags = int(fields[4], 16)
        except ValueError:
            continue
        if not flags & (IFA_F_TEMPORARY | IFA_F_DEPRECATED):
            found.add(address)
    return found


def _reachable_on_lan(address: IPAddress) -> bool:
    # Loopback is named separately; IPv6 link-local needs a zone a URL cannot carry well.
    return not (
        address.is_loopback
        or address.is_unspecified
        or address.is_multicast
        or (address.version == 6 and address.is_link_local)
    )


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


LAN_RECHECK_INTERVAL = 10.0  # seconds between looks for a new LAN address (DHCP) on a miss


class HostAllowList:
    """Which Host headers this box answers: its own names and addresses (those its
    certificate has) and the operator's `allowed_hosts`. A page served under any other name
    is a DNS-rebinding attacker's page reading ours (issue 13, item 13)."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.names = frozenset(host_names()) | {_normal(name) for name in extra}
        self.addresses = frozenset(lan_addresses()) | LOOPBACK
        self._checked = time.monotonic()

    def allows(self, host_header: str) -> bool:
        host = _normal(_without_port(host_header))
        if host in self.names:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if address in self.addresses:
            return True
        # An address given by DHCP after the start: look again, at most every 10 s.
        now = time.monotonic()
        if now - self._checked >= LAN_RECHECK_INTERVAL:
            self._checked = now
            self.addresses = frozenset(lan_addresses()) | LOOPBACK
            return address in self.addresses
        return False


def _normal(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _without_port(host: str) -> str:
    """ "box.local:8443" → "box.local", "[::1]:8000" → "::1", "::1" stays (no brackets)."""
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host
