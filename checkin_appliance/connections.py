"""Admission at the socket: connections per client address, spare file descriptors, and a
deadline for a new connection's first request headers.

aiohttp sees a connection only once it is accepted (and, with HTTPS, once its handshake is
done), and keeps an idle one for keepalive_timeout (60 s): a few thousand sockets that send
nothing used up the unit's 4096 open files. This sits between the listening socket and
aiohttp's protocol, so a refused connection costs one accept and one close.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from collections.abc import Callable

log = logging.getLogger(__name__)

# Descriptors kept free for what an admitted request needs: the database and its WAL, a
# backup's temp file, the log, a fresh accept to refuse. New connections are refused inside
# this margin.
FD_RESERVE = 64
REFUSAL_LOG_INTERVAL = 10.0  # seconds between WARNING lines about refused connections
HEADERS_END = (b"\r\n\r\n", b"\n\n")


def open_file_limit() -> int | None:
    """The soft RLIMIT_NOFILE (the unit's LimitNOFILE), or None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class RefusalLog:
    """One WARNING per interval with how many were refused and why, however hard the attack."""

    def __init__(self, what: str, interval: float = REFUSAL_LOG_INTERVAL) -> None:
        self.what = what
        self.interval = interval
        self._reasons: Counter[str] = Counter()
        self._last: float | None = None

    def refused(self, reason: str) -> None:
        self._reasons[reason] += 1
        now = asyncio.get_running_loop().time()
        if self._last is None or now - self._last >= self.interval:
            summary = ", ".join(f"{n} {why}" for why, n in self._reasons.most_common())
            log.warning("refused %s: %s", self.what, summary)
            self._reasons.clear()
            self._last = now


class ConnectionGuard:
    """Counts open connections per client address; shared by every port the box serves."""

    def __init__(
        self,
        per_address: int,
        header_timeout: float,
        fd_limit: int | None = None,
        fd_reserve: int = FD_RESERVE,
    ) -> None:
        self.per_address = per_address
        self.header_timeout = header_timeout
        self.fd_limit = fd_limit
        self.fd_reserve = fd_reserve
        self.open = 0
        self._by_address: Counter[str] = Counter()
        self._refusals = RefusalLog("connections")

    def admit(self, address: str, fileno: int) -> bool:
        """Whether a new connection from `address` on descriptor `fileno` may be served."""
        if self._by_address[address] >= self.per_address:
            self._refusals.refused(f"from {address} over max_connections_per_address")
            return False
        # The kernel hands out the lowest free descriptor, so a high one means nearly all
        # below it are taken; our own count covers the holes.
        if self.fd_limit is not None and max(fileno, self.open) >= self.fd_limit - self.fd_reserve:
            self._refusals.refused("near the open-file limit")
            return False
        self._by_address[address] += 1
        self.open += 1
        return True

    def release(self, address: str) -> None:
        self.open -= 1
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]

    def protocol_factory(
        self, make_protocol: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """What loop.create_server takes: aiohttp's protocol behind the admission check.

        With HTTPS the loop's TLS sits below this, so a connection is counted once its
        handshake is done; the handshake itself is bounded by header_timeout (the site's
        ssl_handshake_timeout). Starting TLS here (loop.start_tls) would count it earlier,
        but uvloop's start_tls stalled most server-side handshakes when tried (2026-12)."""
        return lambda: _Admission(self, make_protocol)


class _Admission(asyncio.Protocol):
    """Admits or closes one connection, then hands every call on to aiohttp's protocol."""

    def __init__(
        self,
        guard: ConnectionGuard,
        make_protocol: Callable[[], asyncio.Protocol],
    ) -> None:
        self.guard = guard
        self.make_protocol = make_protocol
        self.inner: asyncio.Protocol | None = None
        self.address: str | None = None  # set while admitted (counted)
        self.transport: asyncio.BaseTransport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.head_tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        sock = transport.get_extra_info("socket")
        fileno = sock.fileno() if sock is not None else -1
        if not self.guard.admit(address, fileno):
            transport.abort()  # type: ignore[attr-defined]
            return
        self.address = address
        self.transport = transport
        self.deadline = asyncio.get_running_loop().call_later(
            self.guard.header_timeout, self._too_slow
        )
        self.inner = self.make_protocol()
        self.inner.connection_made(transport)

    def _too_slow(self) -> None:
        """No complete request headers within header_timeout: close."""
        self.deadline = None
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.deadline is not None:
            seen = self.head_tail + data
            if any(end in seen for end in HEADERS_END):
                self.deadline.cancel()
                self.deadline = None
            else:
                self.head_tail = seen[-3:]
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)

    def _release(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.address is not None:
            self.guard.release(self.address)
            self.address = None
        self.transport = None
