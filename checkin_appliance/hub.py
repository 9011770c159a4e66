"""Live-feed fan-out: serialise each event once per audience, never wait for a client.

Each event becomes one JSON text per audience, the same bytes for every client of that
audience. `publish` hands it to each subscriber through `Subscriber.deliver`: a client
that is keeping up gets it written into its socket at once (by the web side's `write_now`),
one that is behind gets it through its bounded deque, emptied by its writer task with
aiohttp's `send_frame`. A subscriber whose deque is full is disconnected with 1013 (try
again later), so one frozen TV never slows the clinic or grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from checkin_appliance.domain import (
    MESSAGE_TYPE,
    SEED_EVENTS,
    SETTINGS_CHANGED,
    Audience,
    PhotoUrl,
    QueueEvent,
    Settings,
    event_message,
)

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = WSCloseCode.TRY_AGAIN_LATER  # 1013: the client fell behind
CLOSE_ACCESS_REVOKED = 4403  # the credential was deactivated or the session ended
CLOSE_TIMEOUT = 2.0
# How the hub reads committed events after a seq, oldest first (store.events_after).
ReadEvents = Callable[[int], Awaitable[list[QueueEvent]]]


def feed_json(message: object) -> str:
    """A feed message as the wire carries it: compact, non-ASCII left as UTF-8."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Frame:
    """One message, encoded once (UTF-8 JSON) and sent as is to every subscriber of an audience."""

    seq: int | None  # None: not a queue change (settings); always sent, never replayed
    data: bytes

    @classmethod
    def of(cls, seq: int | None, message: object) -> Frame:
        return cls(seq, feed_json(message).encode("utf-8"))


@dataclass(eq=False)
class Subscriber:
    ws: web.WebSocketResponse
    audience: Audience
    session_id: int | None
    credential_id: int | None
    limit: int  # frames that may wait; one more and the client is cut off
    wants_settings: bool = False
    # ?events=all: our event types beyond the seed's two (PATIENT_UPDATED); without it a
    # subscriber never sees a type the original's clients do not know.
    wants_all_events: bool = False
    # The socket under `ws`, aborted when a close cannot get through to a stalled peer.
    transport: asyncio.Transport | None = None
    # Set by the web side: writes a frame's data into the socket now and says whether it
    # did (False: the client is behind). None: every frame goes through the writer task.
    write_now: Callable[[bytes], bool] | None = None
    closing: bool = False
    idle: bool = False  # the writer waits for frames: none of ours is being sent
    last_seq: int = 0  # the newest event this client has (from the snapshot, replay or live)
    writer: asyncio.Task[None] | None = field(default=None, repr=False)
    # Frames waiting for the writer, oldest first, and the future it waits on when there are
    # none. Not an asyncio.Queue: that is four deques and more, for every open screen.
    pending: deque[Frame] = field(default_factory=deque, repr=False)
    wakeup: asyncio.Future[None] | None = field(default=None, repr=False)

    def deliver(self, frame: Frame) -> bool:
        """Writes the frame now if the client keeps up, else hands it to the writer task;
        False if `limit` frames already wait."""
        if self.idle and not self.pending and self.write_now is not None:
            if not self._is_new(frame):
                return True
            if self.write_now(frame.data):
                self._has(frame)
                return True
        if len(self.pending) >= self.limit:
            return False
        self.pending.append(frame)
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)
        return True

    async def send_pending(self) -> None:
        """Waits for frames, then sends each one the client does not have yet, in order."""
        self.idle = True
        while not self.pending:
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup
        self.idle = False
        while self.pending:
            frame = self.pending.popleft()
            if self._is_new(frame):
                self._has(frame)
                # Without compression, send_frame writes at once and only waits when the
                # socket's buffer is over its limit: then this client is behind, and frames
                # pile up in `pending` until deliver() refuses them.
                await self.ws.send_frame(frame.data, WSMsgType.TEXT)

    def _is_new(self, frame: Frame) -> bool:
        """False for an event the snapshot or the replay already had; settings always."""
        return frame.seq is None or frame.seq > self.last_seq

    def _has(self, frame: Frame) -> None:
        if frame.seq is not None:
            self.last_seq = frame.seq


class Hub:
    def __init__(self, queue_size: int = 512, photo_url: PhotoUrl | None = None) -> None:
        self._photo_url = photo_url  # how photo names become URLs in events (signed links)
        # The settings events are rendered with; Reception pushes each change through
        # publish_settings(), starting from the same defaults.
        self._settings = Settings()
        self._queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._closers: set[asyncio.Task[None]] = set()
        # The newest event published. Events reach publish() from our own writer in seq
        # order; one that skips seqs follows events another process (the CLI's
        # import-original) committed, which are read back from the log and published first.
        self.last_seq = 0
        self._read_events: ReadEvents | None = None
        self._held: list[QueueEvent] = []  # ours, waiting behind a catch-up
        self._catching_up: asyncio.Task[None] | None = None
        # Told of every event sent, in seq order, after the feeds got it (the status pages'
        # StatusFeed.published); never awaited.
        self._watchers: list[Callable[[QueueEvent], None]] = []

    def watch(self, watcher: Callable[[QueueEvent], None]) -> None:
        """`watcher(event)` for every event published from now on, ours or caught up."""
        self._watchers.append(watcher)

    def start_at(self, last_seq: int, read_events: ReadEvents) -> None:
        """The log's newest seq when the store opened, and how to read events after a seq
        (store.events_after): from now on no committed event is skipped."""
        self.last_seq = last_seq
        self._read_events = read_events

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, event: QueueEvent) -> None:
        """Called once per committed event, in seq order; never awaits. An event already
        published is ignored; one after a gap waits for the gap to be read (catch_up)."""
        if event.seq <= self.last_seq:
            return
        if self._read_events is not None and (
            self._catching_up is not None or event.seq != self.last_seq + 1
        ):
            self._held.append(event)
            self.catch_up()
            return
        self._send(event)

    def catch_up(self) -> asyncio.Task[None] | None:
        """Publishes the events committed after `last_seq` that did not come through
        publish() (another process wrote them); the task doing it, None if it cannot."""
        if self._read_events is None:
            return None
        if self._catching_up is None:
            self._catching_up = asyncio.create_task(self._catch_up(self._read_events))
        return self._catching_up

    async def _catch_up(self, read_events: ReadEvents) -> None:
        try:
            while batch := await read_events(self.last_seq):
                for event in batch:
                    if event.seq > self.last_seq:
                        self._send(event)
        except Exception:
            log.exception("reading events committed by another process failed")
        finally:
            held, self._held = sorted(self._held, key=lambda e: e.seq), []
            self._catching_up = None
            for event in held:
                if event.seq > self.last_seq:
                    self._send(event)

    def _send(self, event: QueueEvent) -> None:
        self.last_seq = event.seq
        frames: dict[tuple[Audience, bool], Frame] = {}
        # Without ?events=all: the seed's events, and ours mapped to them (QueueEvent.legacy).
        legacy_kind = event.legacy()
        # A seed event of the seed's kind reads the same either way: one frame for both.
        same = event.event in SEED_EVENTS and event.from_status is None
        for sub in self._subscribers:  # disconnect() defers removal, so no copy is needed
            if legacy_kind is None and not sub.wants_all_events:
                continue
            legacy = not sub.wants_all_events and not same
            frame = frames.get((sub.audience, legacy))
            if frame is None:
                message = event_message(
                    event, sub.audience, self._settings, self._photo_url, legacy=legacy
                )
                frame = frames[(sub.audience, legacy)] = Frame.of(event.seq, message)
            self._deliver(sub, frame)
        for watcher in self._watchers:
            watcher(event)

    def publish_settings(self, settings: Settings) -> None:
        """New settings: events are rendered with them from now on, and subscribers that
        asked (?settings=1) get them, so the pages update without a reload."""
        self._settings = settings
        message = {"type": MESSAGE_TYPE, "event": SETTINGS_CHANGED, "settings": settings.public()}
        frame = Frame.of(None, message)
        for sub in self._subscribers:
            if sub.wants_settings:
                self._deliver(sub, frame)

    def _deliver(self, sub: Subscriber, frame: Frame) -> None:
        if sub.closing or sub.deliver(frame):
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
        write_now: Callable[[bytes], bool] | None = None,
        wants_all_events: bool = False,
    ) -> Subscriber:
        """From now on every event is delivered to `ws`; start_writer() starts sending."""
        sub = Subscriber(
            ws,
            audience,
            session_id,
            credential_id,
            self._queue_size,
            wants_settings,
            wants_all_events,
            transport,
            write_now,
        )
        self._subscribers.add(sub)
        return sub

    def start_writer(self, sub: Subscriber, send_backlog: Callable[[], Awaitable[int]]) -> None:
        """One task per subscriber sends its backlog, then live frames in order.

        `send_backlog` sends the snapshot or the replay and returns the newest seq the client
        then has: the live frames delivered meanwhile wait, and those it covered are skipped.
        """
        sub.writer = asyncio.create_task(self._write(sub, send_backlog))

    async def _write(self, sub: Subscriber, send_backlog: Callable[[], Awaitable[int]]) -> None:
        try:
            sub.last_seq = await send_backlog()
            while True:
                await sub.send_pending()
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

    def feeds_of(self, credential_id: int) -> int:
        """Live feeds open with this credential, over all its sessions."""
        return sum(1 for sub in self._subscribers if sub.credential_id == credential_id)

    def credential_ids(self) -> set[int]:
        """The credentials with a live feed open now (the admin's "online now")."""
        return {sub.credential_id for sub in self._subscribers if sub.credential_id is not None}

    def session_ids(self) -> set[int]:
        return {sub.session_id for sub in self._subscribers if sub.session_id is not None}

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        """Shutdown: every socket gets GOING_AWAY, and we wait (briefly) for the closes."""
        if self._catching_up is not None:
            self._catching_up.cancel()
        self.disconnect_where(lambda sub: True, code, "server shutting down")
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)
