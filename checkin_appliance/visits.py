"""The patient's own phone: a per-visit status link (a capability), what it shows, how long
it works, and the fan-out that keeps every open status page current.

A link is `/v/<token>`: 128 random bits made at check-in; the database keeps only its
SHA-256. It shows a ticket, a line, a place, a room: never a name or a photo. It works while
the visit is open and for VISIT_LINK_GRACE after it ended; it is never a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from checkin_appliance import errors
from checkin_appliance.domain import (
    OPEN_STATES,
    NotFound,
    QueueEntry,
    QueueEvent,
    format_time,
    parse_time,
)
from checkin_appliance.estimates import WaitRange
from checkin_appliance.lines import Line

log = logging.getLogger(__name__)

VISIT_LINK_GRACE = timedelta(minutes=30)
TOKEN_BYTES = 16  # 128 bits: secrets.token_urlsafe(16) is 22 characters
# The exact shape token_urlsafe(16) makes: anything else is not looked up at all.
TOKEN_SHAPE = re.compile(r"\A[A-Za-z0-9_-]{22}\Z")
LINK_PREFIX = "/v/"
# Status pages open at once, over all phones; one more is refused (503, Retry-After).
MAX_STATUS_STREAMS = 2000


def new_link() -> tuple[str, bytes]:
    """(token, its SHA-256): the token goes to the kiosk once, the hash to the database."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def well_formed(token: str) -> bool:
    return bool(TOKEN_SHAPE.match(token))


def link_not_found() -> NotFound:
    """One answer for a link that is malformed, unknown or ended: they cannot be told apart."""
    return NotFound("This link has ended or never existed.", errors.VISIT_LINK_NOT_FOUND)


@dataclass(frozen=True, slots=True)
class Visit:
    """What a status link may know of its visit: no name, no photo, no other visit."""

    entry_id: int
    ticket: str | None
    line_id: int
    status: str
    room: str | None
    call_count: int
    ended_at: str | None  # when it reached a final state; None while open

    @classmethod
    def of(cls, entry: QueueEntry, changed_at: str | None) -> Visit:
        """The visit as `entry` shows it; `changed_at`: the time of its last change."""
        ended = None if entry.status in OPEN_STATES else changed_at
        return cls(
            entry.id,
            entry.ticket,
            entry.line_id,
            entry.status,
            entry.room,
            entry.call_count,
            ended,
        )

    def expires_at(self) -> str | None:
        """When the link stops working (UTC timestamp as stored), None while open."""
        if self.ended_at is None:
            return None
        return format_time(parse_time(self.ended_at) + VISIT_LINK_GRACE)

    def expired(self, now: str) -> bool:
        until = self.expires_at()
        return until is not None and parse_time(now) >= parse_time(until)


def line_view(line: Line | None) -> dict[str, Any]:
    if line is None:
        return {"prefix": None, "name": {}, "colour": None}
    return {"prefix": line.prefix, "name": line.name, "colour": line.colour}


@dataclass(frozen=True, slots=True)
class Wait:
    """A waiting visit's place in its line's call order and its estimated wait."""

    place: int
    estimate: WaitRange | None  # None: too little known yet (the page shows "—")


def status_message(visit: Visit, line: Line | None, wait: Wait | None) -> dict[str, Any]:
    """The status JSON (GET /v/<token>/status and every live message)."""
    if visit.status != "waiting":
        wait = None
    estimate = None if wait is None else wait.estimate
    return {
        "ticket": visit.ticket,
        "line": line_view(line),
        "status": visit.status,
        "place": None if wait is None else wait.place,
        "room": visit.room if visit.status != "waiting" else None,
        "call_count": visit.call_count,
        "estimate": estimate_view(estimate),
    }


def estimate_view(estimate: WaitRange | None) -> dict[str, int] | None:
    """A range as the status JSON and the staff's queue carry it; None: "—"."""
    if estimate is None:
        return None
    return {"low_minutes": estimate.low_minutes, "high_minutes": estimate.high_minutes}


def encoded(message: dict[str, Any]) -> bytes:
    """A status as the stream carries it: compact UTF-8 JSON (as the feed's, without
    importing the web side: this module is below it)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# How the fan-out reads what every open page needs, once per burst of events:
# each waiting visit's place and estimated wait (reception.waits) and every line by id.
ReadWaits = Callable[[], Awaitable[dict[int, Wait]]]
ReadLines = Callable[[], Awaitable[list[Line]]]
# Told which visits (entry id, line id) were just sent a status, with the waits read for them
# (reception.note_shown: the calibration keeps the ranges patients were shown).
NoteShown = Callable[[list[tuple[int, int]], dict[int, Wait]], Awaitable[None]]


@dataclass(eq=False)
class StatusStream:
    """One open status page: the newest message it has not been sent yet (a full status, so
    only the newest matters: a slow phone never piles up a backlog)."""

    visit: Visit
    sent: bytes | None = None
    latest: bytes | None = None
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, data: bytes) -> None:
        if data != self.sent and data != self.latest:
            self.latest = data
            self.wakeup.set()

    def take(self) -> bytes | None:
        data, self.latest = self.latest, None
        self.wakeup.clear()
        if data is not None:
            self.sent = data
        return data


class StatusFeed:
    """Every open status page, by visit. Told of each published event (Hub.watch); after a
    burst it reads the places and the lines once and hands each page its new status."""

    def __init__(
        self,
        read_waits: ReadWaits,
        read_lines: ReadLines,
        note_shown: NoteShown | None = None,
        limit: int = MAX_STATUS_STREAMS,
    ) -> None:
        self._read_waits = read_waits
        self._read_lines = read_lines
        self._note_shown = note_shown
        self.limit = limit
        self._streams: dict[int, set[StatusStream]] = {}
        self._count = 0
        self._pending: asyncio.Task[None] | None = None
        self._changed: dict[int, QueueEvent] = {}  # the newest event of each followed visit
        self._dirty = False  # an event came since the last read of the places
        self.fan_outs = 0  # bursts handled (tests: one read per burst, not per page)
        self.closing = False  # shutting down: every stream ends

    def __len__(self) -> int:
        return self._count

    def full(self) -> bool:
        return self._count >= self.limit

    def open(self, visit: Visit) -> StatusStream:
        stream = StatusStream(visit)
        self._streams.setdefault(visit.entry_id, set()).add(stream)
        self._count += 1
        return stream

    def close(self, stream: StatusStream) -> None:
        streams = self._streams.get(stream.visit.entry_id)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        self._count -= 1
        if not streams:
            del self._streams[stream.visit.entry_id]

    def published(self, event: QueueEvent) -> None:
        """Called for each event the hub sends (in seq order); never awaits. Any event may
        move places in its line, so every page is refreshed once the burst is over."""
        if not self._streams:
            return
        self._dirty = True
        if event.entry.id in self._streams:
            self._changed[event.entry.id] = event
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_task(self._fan_out())

    async def _fan_out(self) -> None:
        try:
            await asyncio.sleep(0)  # the rest of the burst (end of day: one event per visit)
            while self._dirty:
                self._dirty = False
                changed, self._changed = self._changed, {}
                waits = await self._read_waits()
                lines = {line.id: line for line in await self._read_lines()}
                self.fan_outs += 1
                shown = []
                for entry_id, streams in list(self._streams.items()):
                    event = changed.get(entry_id)
                    for stream in streams:
                        if event is not None:
                            stream.visit = Visit.of(event.entry, event.at)
                        visit = stream.visit
                        message = status_message(
                            visit, lines.get(visit.line_id), waits.get(entry_id)
                        )
                        stream.offer(encoded(message))
                    if stream.visit.status == "waiting":
                        shown.append((entry_id, stream.visit.line_id))
                if self._note_shown is not None:
                    await self._note_shown(shown, waits)
        except Exception:
            log.exception("refreshing the status pages failed")
        finally:
            self._pending = None

    async def close_all(self) -> None:
        """Shutdown: every open page's stream ends now (its phone reconnects elsewhen)."""
        self.closing = True
        for streams in self._streams.values():
            for stream in streams:
                stream.wakeup.set()
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending
