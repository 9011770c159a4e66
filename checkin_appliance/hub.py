"""Live-feed fan-out: serialise each event once per audience, never wait for a client.

Each event becomes one WebSocket frame per audience, byte for byte the same for every
client (server frames are unmasked and the feed is uncompressed). A subscriber that is
keeping up gets it written straight into its socket's buffer. One that is behind (its
buffer is full, or frames are already waiting) gets it through its own bounded queue,
emptied by its writer task; when that queue is full it is disconnected with 1013 (try again
later), so one frozen TV never slows the clinic or grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from checkin_appliance.domain import (
    MESSAGE_TYPE,
    SETTINGS_CHANGED,
    Audience,
    QueueEvent,
    Settings,
    event_message,
)

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = WSCloseCode.TRY_AGAIN_LATER  # 1013: the client fell behind
CLOSE_ACCESS_REVOKED = 4403  # the credential was deactivated or the session ended
CLOSE_TIMEOUT = 2.0
# Bytes a client may have unsent in its socket buffer before frames go through its queue.
DIRECT_WRITE_LIMIT = 64 * 1024


# Built once: json.dumps with options other than the defaults builds an encoder per call.
encode: Callable[[object], str] = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked TEXT frame (RFC 6455, section 5.2) as a server sends it."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


@dataclass(frozen=True, slots=True)
class Frame:
    """One event, encoded once (UTF-8 JSON) and sent as is to every subscriber of an audience."""

    seq: int | None  # None: not a queue change (settings); always sent, never replayed
    data: bytes
    wire: bytes = b""  # the whole WebSocket frame, for writing straight to a socket

    @classmethod
    def of(cls, seq: int | None, message: object) -> Frame:
        data = encode(message).encode("utf-8")
        return cls(seq, data, text_frame(data))

    async def send(self, ws: web.WebSocketResponse) -> None:
        await ws.send_frame(self.data, WSMsgType.TEXT)


@dataclass(eq=False)
class Subscriber:
    ws: web.WebSocketResponse
    audience: Audience
    session_id: int | None
    credential_id: int | None
    limit: int  # frames that may wait; one more and the client is cut off
    wants_settings: bool = False
    transport: asyncio.Transport | None = None  # asyncio's or uvloop's (not a subclass)
    closing: bool = False
    # True while the writer waits on an empty queue: publish may write to the socket itself.
    idle: bool = False
    last_seq: int = 0  # the newest event this client has (from the snapshot, replay or live)
    writer: asyncio.Task[None] | None = field(default=None, repr=False)
    # Frames waiting for the writer, oldest first, and the future it waits on when there
    # are none. Not an asyncio.Queue: that is four deques, 2.5 KiB for every open screen.
    waiting: list[Frame] = field(default_factory=list, repr=False)
    wakeup: asyncio.Future[None] | None = field(default=None, repr=False)

    def put(self, frame: Frame) -> bool:
        """Queues a frame for the writer; False if `limit` frames are already waiting."""
        if len(self.waiting) >= self.limit:
            return False
        self.waiting.append(frame)
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)
        return True

    async def get(self) -> Frame:
        while not self.waiting:
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup
        return self.waiting.pop(0)

    def write_now(self, frame: Frame) -> bool:
        """Writes the frame straight into the socket's buffer if the client is keeping up."""
        transport = self.transport
        if (
            not self.idle
            or self.waiting
            or transport is None
            or transport.is_closing()
            or self.ws.closed
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return False
        if frame.seq is not None:
            if frame.seq <= self.last_seq:
                return True  # the snapshot or the replay already had it
            self.last_seq = frame.seq
        transport.write(frame.wire)
        return True


class Hub:
    def __init__(self, settings: Callable[[], Settings], queue_size: int = 512) -> None:
        self._settings = settings
        self._queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._closers: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._subscribers)

    def render(self, event: QueueEvent, audience: Audience) -> Frame:
        return Frame.of(event.seq, event_message(event, audience, self._settings()))

    def publish(self, event: QueueEvent) -> None:
        """Called once per committed event, in seq order; never awaits."""
        frames: dict[Audience, Frame] = {}
        for sub in self._subscribers:  # disconnect() defers removal, so no copy is needed
            frame = frames.get(sub.audience)
            if frame is None:
                frame = frames[sub.audience] = self.render(event, sub.audience)
            self._offer(sub, frame)

    def publish_settings(self, settings: Settings) -> None:
        """Ours, to subscribers that asked (?settings=1): the pages update without a reload."""
        message = {"type": MESSAGE_TYPE, "event": SETTINGS_CHANGED, "settings": settings.public()}
        frame = Frame.of(None, message)
        for sub in self._subscribers:
            if sub.wants_settings:
                self._offer(sub, frame)

    def _offer(self, sub: Subscriber, frame: Frame) -> None:
        if sub.closing or sub.write_now(frame) or sub.put(frame):
            return
        log.warning("live-feed subscriber fell behind; disconnecting it (1013)")
        self.disconnect(sub, CLOSE_TRY_AGAIN_LATER, "too slow")

    def subscribe(
        self,
        ws: web.WebSocketResponse,
        audience: Audience,
        session_id: int | None = None,
        credential_id: int | None = None,
        wants_settings: bool = False,
        transport: asyncio.Transport | None = None,
    ) -> Subscriber:
        """`transport` (the socket under `ws`) lets frames skip the queue; None: never."""
        sub = Subscriber(
            ws, audience, session_id, credential_id, self._queue_size, wants_settings, transport
        )
        self._subscribers.add(sub)
        return sub

    def start_writer(self, sub: Subscriber, send_backlog: Callable[[], Awaitable[int]]) -> None:
        """One task per subscriber sends its backlog (replay), then live frames in order."""
        sub.writer = asyncio.create_task(self._write(sub, send_backlog))

    async def _write(self, sub: Subscriber, send_backlog: Callable[[], Awaitable[int]]) -> None:
        try:
            sub.last_seq = await send_backlog()
            while True:
                sub.idle = True
                frame = await sub.get()
                sub.idle = False
                if frame.seq is None:
                    await frame.send(sub.ws)
                elif frame.seq > sub.last_seq:  # else covered by the snapshot or the replay
                    sub.last_seq = frame.seq
                    await frame.send(sub.ws)
        except (ConnectionError, RuntimeError):
            # The peer went away mid-send; the handler's receive loop notices and cleans up.
            pass
        except Exception:
            log.exception("live-feed writer failed; closing that connection")
            self.disconnect(sub, WSCloseCode.INTERNAL_ERROR, "internal error")

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        if sub.writer is not None:
            sub.writer.cancel()

    def disconnect(self, sub: Subscriber, code: int, reason: str) -> None:
        """Close one subscriber's socket without waiting (called from publish)."""
        if sub.closing:
            return
        sub.closing = True
        task = asyncio.create_task(self._close(sub, code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _close(self, sub: Subscriber, code: int, reason: str) -> None:
        self.unsubscribe(sub)
        if sub.writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await sub.writer
        try:
            # Drain, so the close frame really leaves (over TLS it waits in a buffer that a
            # shutdown would otherwise discard: the peer saw 1006). A stalled peer may never
            # drain nor answer: give up quickly, which drops the TCP connection instead.
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await sub.ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            if sub.transport is not None:
                sub.transport.abort()  # what it had not read goes, and the socket with it

    def disconnect_where(
        self, predicate: Callable[[Subscriber], bool], code: int, reason: str
    ) -> int:
        chosen = [sub for sub in self._subscribers if predicate(sub)]
        for sub in chosen:
            self.disconnect(sub, code, reason)
        return len(chosen)

    def session_ids(self) -> set[int]:
        return {sub.session_id for sub in self._subscribers if sub.session_id is not None}

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        """Shutdown: every socket gets GOING_AWAY, and we wait (briefly) for the closes."""
        self.disconnect_where(lambda sub: True, code, "server shutting down")
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)
