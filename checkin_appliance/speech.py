"""Spoken calls rendered on the box itself, offline: "Ticket A 12, Room 3" as a WAV.

Most TV and kiosk browsers have no local voice for speechSynthesis, so the box speaks:
Debian's espeak-ng, run as a subprocess (an argument list, never a shell; the phrase on
stdin), one render at a time, each under a timeout. The phrase is built here from the queue
entry and the settings, never from text a client sent.

Rendered audio is kept in memory, least recently used first out, under a byte cap. Not on
disk: a phrase may hold a patient's name (which must not outlive the day in a cache file),
the SD card is spared a write per call, and a render costs some 50 ms, so a restart losing
the cache costs nothing a patient notices. A call is asked for by every display at once and
again on a recall: those are the hits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from checkin_appliance import errors
from checkin_appliance.domain import (
    DomainError,
    InvalidInput,
    NotFound,
    QueueEntry,
    Settings,
    display_name,
)
from checkin_appliance.store import Store

log = logging.getLogger(__name__)

BINARY = "espeak-ng"
RENDER_TIMEOUT = 10.0  # seconds; a phrase takes well under one on the box
CACHE_BYTES = 4 * 1024 * 1024  # about 40 phrases of 2-3 s (22 kHz, 16-bit mono)
MAX_PHRASE = 300  # characters; a name is at most 255, the display's short form much less
SPEED = 145  # words per minute: a little slower than espeak-ng's 175, for a waiting room
PITCH = 45  # 0-99, espeak-ng's default 50: a touch lower reads calmer
MAX_VERSION = 100  # characters of ?v= (the call's time)
SHOW = ("ticket", "ticket_name", "name")  # the display's ?show= (display.js)


class SpeechUnavailable(DomainError):
    """espeak-ng is missing, failed or took too long: the display falls back."""


@dataclass(frozen=True, slots=True)
class Phrases:
    """One language's spoken call. `{ticket}` is "A 12", `{room}` the room as the
    credential names it ("Room 3"; a bare number gets the language's word for a room)."""

    voice: str  # espeak-ng's voice
    ticket: str
    ticket_name: str
    name: str
    room: str  # added after any of the above when the call has a room
    no_room: str  # added when it has none
    room_number: str  # a room that is only a number, e.g. "3" -> "Room 3"


# The catalogue: a language is one entry here (and one espeak-ng voice).
PHRASES: dict[str, Phrases] = {
    "en": Phrases(
        voice="en",
        ticket="Ticket {ticket}",
        ticket_name="Ticket {ticket}, {name}",
        name="{name}",
        room=", {room}.",
        no_room=", please come in.",
        room_number="Room {room}",
    ),
    "es": Phrases(
        voice="es",
        ticket="Turno {ticket}",
        ticket_name="Turno {ticket}, {name}",
        name="{name}",
        room=", {room}.",
        no_room=", por favor, pase.",
        room_number="consultorio {room}",
    ),
}

_TICKET = re.compile(r"\A([A-Z]{1,2})-0*(\d+)\Z")
_BARE_ROOM = re.compile(r"\A\d{1,4}\Z")


def spoken_ticket(ticket: str) -> str:
    """ "A-012" -> "A 12": the letter, then the number as people say it."""
    match = _TICKET.match(ticket)
    return f"{match.group(1)} {match.group(2)}" if match else ticket.replace("-", " ")


def phrase_for(entry: QueueEntry, settings: Settings, lang: str, show: str) -> str:
    """What the display says for a call, in `lang`. The name is the display's form of it
    (display_names), and only where the display shows names (`show`); an entry from before
    tickets has only its name."""
    phrases = PHRASES[lang]
    name = display_name(entry.fname, settings.display_names).strip()
    if entry.ticket and (show == "ticket" or not name):
        head = phrases.ticket.format(ticket=spoken_ticket(entry.ticket))
    elif entry.ticket and show == "ticket_name":
        head = phrases.ticket_name.format(ticket=spoken_ticket(entry.ticket), name=name)
    else:
        head = phrases.name.format(name=name)
    room = (entry.room or "").strip()
    if not room:
        return (head + phrases.no_room)[:MAX_PHRASE]
    if _BARE_ROOM.match(room):
        room = phrases.room_number.format(room=room)
    return (head + phrases.room.format(room=room))[:MAX_PHRASE]


def checked_request(
    lang: object, show: object, version: object, default_lang: str
) -> tuple[str, str]:
    """(language, show) of a request; absent ones get their defaults. `version` (the
    display's cache key, ignored) is only checked for length."""
    lang = default_lang if lang is None else lang
    show = "ticket" if show is None else show
    too_long = isinstance(version, str) and len(version) > MAX_VERSION
    if lang not in PHRASES or show not in SHOW or too_long:
        raise InvalidInput(
            f"lang must be one of {', '.join(PHRASES)}; show one of {', '.join(SHOW)}; "
            f"v at most {MAX_VERSION} characters.",
            errors.SPEECH_REQUEST_INVALID,
        )
    return str(lang), str(show)


def fix_wav_sizes(data: bytes) -> bytes:
    """espeak-ng --stdout streams, so its RIFF and data sizes are placeholders: the real
    ones, so every browser knows the length."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV")
    at = data.find(b"data", 12)
    if at < 0:
        raise ValueError("a WAV without data")
    return b"".join(
        (
            data[:4],
            struct.pack("<I", len(data) - 8),
            data[8 : at + 4],
            struct.pack("<I", len(data) - at - 8),
            data[at + 8 :],
        )
    )


class Speech:
    """Renders phrases with espeak-ng, one at a time, with a bounded cache in memory."""

    def __init__(
        self, store: Store, cache_bytes: int = CACHE_BYTES, timeout: float = RENDER_TIMEOUT
    ) -> None:
        self.store = store
        self.cache_bytes = cache_bytes
        self.timeout = timeout
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cached_bytes = 0
        self._lock = asyncio.Lock()
        self.renders = 0  # espeak-ng runs so far (the tests count cache hits with it)

    @staticmethod
    def binary() -> str | None:
        """espeak-ng on PATH, looked up at each render: installing it later needs no restart."""
        return shutil.which(BINARY)

    async def call(self, entry_id: int, lang: str, show: str, settings: Settings) -> bytes:
        """The spoken call of a queue entry that has been called (else NotFound)."""
        entry = await self.store.entry(entry_id)
        if entry is None or entry.called_at is None:
            raise NotFound("No called queue entry has that id.", errors.SPEECH_ENTRY_NOT_FOUND)
        return await self.render(lang, phrase_for(entry, settings, lang, show))

    async def render(self, lang: str, phrase: str) -> bytes:
        key = (lang, phrase)
        if (hit := self._get(key)) is not None:
            return hit
        async with self._lock:  # one espeak-ng at a time on the box
            if (hit := self._get(key)) is not None:  # another display asked for it meanwhile
                return hit
            audio = await self._run(PHRASES[lang].voice, phrase)
            self._put(key, audio)
            return audio

    def _get(self, key: tuple[str, str]) -> bytes | None:
        audio = self._cache.get(key)
        if audio is not None:
            self._cache.move_to_end(key)
        return audio

    def _put(self, key: tuple[str, str], audio: bytes) -> None:
        if len(audio) > self.cache_bytes:
            return
        self._cache[key] = audio
        self._cached_bytes += len(audio)
        while self._cached_bytes > self.cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= len(dropped)

    async def _run(self, voice: str, phrase: str) -> bytes:
        binary = self.binary()
        if binary is None:
            raise SpeechUnavailable(
                "Spoken calls need espeak-ng, which is not installed on the box.",
                errors.SPEECH_UNAVAILABLE,
            )
        started = time.monotonic()
        args = [binary, "-v", voice, "-s", str(SPEED), "-p", str(PITCH), "--stdout", "--stdin"]
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Only PATH and a UTF-8 locale: the frozen executable's LD_LIBRARY_PATH (its
                # bundled libraries) must not reach the system's espeak-ng.
                env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
            )
        except OSError as exc:
            log.warning("espeak-ng could not start: %s", exc)
            raise self._failed() from exc
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await process.communicate(phrase.encode("utf-8") + b"\n")
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            log.warning("espeak-ng took over %.0f s; killed", self.timeout)
            raise self._failed() from exc
        self.renders += 1
        if process.returncode != 0:
            # Its stderr names the voice or the problem, never the phrase.
            log.warning(
                "espeak-ng failed (exit %s): %s",
                process.returncode,
                err[:200].decode("utf-8", "replace"),
            )
            raise self._failed()
        try:
            audio = fix_wav_sizes(out)
        except ValueError as exc:
            log.warning("espeak-ng gave no WAV (%d bytes)", len(out))
            raise self._failed() from exc
        # The phrase may hold a name: only its language and size are logged.
        log.debug(
            "spoke a %s phrase: %d bytes in %.0f ms",
            voice,
            len(audio),
            (time.monotonic() - started) * 1000,
        )
        return audio

    @staticmethod
    def _failed() -> SpeechUnavailable:
        return SpeechUnavailable(
            "The box could not render the spoken call; try again.", errors.SPEECH_UNAVAILABLE
        )
