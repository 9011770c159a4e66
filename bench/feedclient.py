"""A minimal live-feed subscriber: RFC 6455 over an asyncio.Protocol, frames timestamped on arrival.

The load generator holds hundreds of these in one process. aiohttp's client wakes one task per
message (~25 µs of CPU a frame here), which saturated the generator at ~40,000 frames/s, below
what the targets need (250 check-ins/s times 200 subscribers). This protocol has no task per
subscriber: `data_received` cuts complete frames out of the buffer, records
`(time.perf_counter(), payload)` and answers pings; JSON is parsed only after a phase.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HANDSHAKE = 64 * 1024
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002


class HandshakeError(Exception):
    """The server did not switch protocols (e.g. 401: the token was refused)."""


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame, as a client must send (only pongs and closes here, ≤ 125 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:125]))
    return bytes([0x80 | opcode, 0x80 | len(masked)]) + mask + masked


class FeedClient(asyncio.Protocol):
    """One subscriber of /ws/queue/. `frames` holds (arrival time, text payload) in order."""

    def __init__(self, index: int, host: str, port: int, path: str) -> None:
        self.index = index
        self.host = host
        self.port = port
        self.path = path
        self.frames: list[tuple[float, bytes]] = []
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.protocol_errors = 0
        self._key = base64.b64encode(os.urandom(16))
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] | None = None
        loop = asyncio.get_running_loop()
        self._handshake: asyncio.Future[None] = loop.create_future()
        self._waiter: tuple[int, asyncio.Future[None]] | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        request = (
            f"GET {self.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode("ascii"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()  # before any parsing: the frame's arrival in user space
        self._buffer += data
        if not self._upgraded and not self._read_handshake():
            return
        self._read_frames(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed_at is None:
            self.closed_at = time.perf_counter()
        if not self._handshake.done():
            self._handshake.set_exception(ConnectionError("closed during the handshake"))
        self._wake(force=True)

    # --- parsing --------------------------------------------------------------------------

    def _read_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HANDSHAKE:
                self._fail_handshake("handshake response too large")
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        status = head[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail_handshake(f"handshake answered {head[0]!r}")
            return False
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(
            hashlib.sha1(self._key + GUID, usedforsecurity=False).digest()
        ).decode()
        if headers.get("sec-websocket-accept") != expected:
            self._fail_handshake("wrong Sec-WebSocket-Accept")
            return False
        self._upgraded = True
        self._handshake.set_result(None)
        return True

    def _fail_handshake(self, reason: str) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(HandshakeError(reason))
        if self._transport is not None:
            self._transport.close()

    def _read_frames(self, now: float) -> None:
        buf = self._buffer
        pos, size = 0, len(buf)
        while size - pos >= 2:  # bounded: every round consumes a whole frame or stops
            first, second = buf[pos], buf[pos + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if second & 0x80:  # a server never masks
                self.protocol_errors += 1
                self.close(CLOSE_PROTOCOL_ERROR)
                return
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buf[pos + head : end])
            pos = end
            self._on_frame(now, first & 0x80 != 0, first & 0x0F, payload)
        del buf[:pos]
        self._wake()

    def _on_frame(self, now: float, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            if fin:
                self.frames.append((now, payload))
            else:
                self._fragments = [payload]
        elif opcode == OP_CONTINUATION and self._fragments is not None:
            self._fragments.append(payload)
            if fin:
                self.frames.append((now, b"".join(self._fragments)))
                self._fragments = None
        elif opcode == OP_PING:
            self._send(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            if len(payload) >= 2:
                self.close_code = int.from_bytes(payload[:2], "big")
            self.close(CLOSE_NORMAL)
        elif opcode != OP_PONG:
            self.protocol_errors += 1

    def _send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # --- what the load generator uses -----------------------------------------------------

    @property
    def open(self) -> bool:
        return self.closed_at is None

    async def wait_handshake(self) -> None:
        await self._handshake

    async def wait_frames(self, count: int, timeout: float) -> bool:
        """True once `count` frames arrived; False on timeout or when the socket closed first."""
        if len(self.frames) >= count:
            return True
        if not self.open:
            return False
        future = asyncio.get_running_loop().create_future()
        self._waiter = (count, future)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return len(self.frames) >= count

    def _wake(self, force: bool = False) -> None:
        if self._waiter is None:
            return
        count, future = self._waiter
        if not future.done() and (force or len(self.frames) >= count):
            future.set_result(None)

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """A clean close: our close frame, then the connection (the server needs no reply)."""
        with contextlib.suppress(Exception):
            self._send(client_frame(OP_CLOSE, code.to_bytes(2, "big")))
        if self._transport is not None:
            self._transport.close()

    def drop(self) -> None:
        """Vanish without a close frame, like a display whose Wi-Fi went away."""
        if self._transport is not None:
            self._transport.abort()


async def open_feed(
    host: str, port: int, path: str, index: int = 0, timeout: float = 30.0
) -> FeedClient:
    """Connects and completes the handshake; frames then arrive in `client.frames`."""
    loop = asyncio.get_running_loop()
    client = FeedClient(index, host, port, path)
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: client, host, port)
            await client.wait_handshake()
    except BaseException:
        client.drop()
        raise
    return client
