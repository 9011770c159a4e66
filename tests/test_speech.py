"""Spoken calls rendered on the box (speech.py, GET /api/speech/call/): real espeak-ng, real
app, real SQLite. The tests that need espeak-ng skip without it (CI installs it)."""

from __future__ import annotations

import array
import io
import math
import shutil
import wave
from pathlib import Path

import pytest

from checkin_appliance import speech
from checkin_appliance.domain import QueueEntry, Role, Settings
from checkin_appliance.web.keys import SPEECH
from tests.conftest import Clinic

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed here (apt-get install espeak-ng; CI installs it)",
)
URL = "/api/speech/call/"


async def called_twelfth(clinic: Clinic, room: str = "3") -> int:
    """Twelve check-ins on line A; a doctor in `room` calls the twelfth (ticket A-012)."""
    checked = [await clinic.check_in(f"Patient {n}") for n in range(12)]
    assert checked[-1]["ticket"] == "A-012"
    doctor = await clinic.login(await clinic.add_credential(Role.DOCTOR, "Dr. Lee", room=room))
    resp = await clinic.client.post(
        "/api/doctors/",
        json={"action": "complete", "patient_id": checked[-1]["id"]},
        headers={"Authorization": f"Bearer {doctor}"},
    )
    assert resp.status == 200, await resp.text()
    return int(checked[-1]["queue_entry_id"])


def samples(audio: bytes) -> tuple[float, float]:
    """(seconds, RMS of the 16-bit samples in 0-1) of a mono PCM WAV."""
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getcomptype()) == (1, 2, "NONE")
        frames = wav.readframes(wav.getnframes())
        seconds = wav.getnframes() / wav.getframerate()
    values = array.array("h", frames)
    assert len(values) * 2 == len(frames), "the header's sizes are the real ones"
    rms = math.sqrt(sum(v * v for v in values) / max(1, len(values))) / 32768
    return seconds, rms


def spoken(clinic: Clinic) -> list[tuple[str, str]]:
    return list(clinic.app[SPEECH]._cache)


@needs_espeak
@pytest.mark.parametrize(
    ("lang", "phrase"),
    [("en", "Ticket A 12, Room 3."), ("es", "Turno A 12, consultorio 3.")],
)
async def test_a_call_is_spoken_offline_as_plausible_speech(
    clinic: Clinic, lang: str, phrase: str
) -> None:
    entry = await called_twelfth(clinic)
    resp = await clinic.client.get(
        URL,
        params={"entry": entry, "lang": lang, "show": "ticket"},
        headers=clinic.headers(Role.QUEUE),
    )
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "audio/wav"
    assert resp.headers["Cache-Control"] == "private, max-age=86400"
    audio = await resp.read()
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    seconds, rms = samples(audio)
    assert 1.0 <= seconds <= 6.0, seconds
    assert rms > 0.02, f"silent: RMS {rms:.4f}"
    assert spoken(clinic) == [(lang, phrase)]


@needs_espeak
async def test_a_cache_hit_runs_no_espeak_and_recalls_sound_the_same(clinic: Clinic) -> None:
    entry = await called_twelfth(clinic)
    params = {"entry": entry, "lang": "en", "show": "ticket"}
    first = await clinic.client.get(URL, params=params, headers=clinic.headers(Role.QUEUE))
    assert first.status == 200
    assert clinic.app[SPEECH].renders == 1
    # Another display, a doctor, the same display again: all from the cache.
    for role in (Role.QUEUE, Role.DOCTOR, Role.ADMIN):
        again = await clinic.client.get(URL, params=params, headers=clinic.headers(role))
        assert again.status == 200
        assert await again.read() == await first.read()
    assert clinic.app[SPEECH].renders == 1
    other = await clinic.client.get(
        URL, params={**params, "lang": "es"}, headers=clinic.headers(Role.QUEUE)
    )
    assert other.status == 200
    assert clinic.app[SPEECH].renders == 2


@needs_espeak
async def test_the_name_is_said_only_as_the_display_shows_it(clinic: Clinic) -> None:
    entry_id = (await clinic.check_in("Maria Lopez Garcia"))["queue_entry_id"]
    doctor = await clinic.login(await clinic.add_credential(Role.DOCTOR, "Dr. Ng", room="Lab"))
    resp = await clinic.client.post(
        "/api/doctors/", json={"action": "call_next"}, headers={"Authorization": f"Bearer {doctor}"}
    )
    assert resp.status == 200
    for show in ("name", "ticket_name", "ticket"):
        resp = await clinic.client.get(
            URL, params={"entry": entry_id, "show": show}, headers=clinic.headers(Role.QUEUE)
        )
        assert resp.status == 200, await resp.text()
    # first_initial (the default): never the whole name, not even spoken.
    assert spoken(clinic) == [
        ("en", "Maria G., Lab."),
        ("en", "Ticket A 1, Maria G., Lab."),
        ("en", "Ticket A 1, Lab."),
    ]


async def test_who_may_ask_and_for_what(clinic: Clinic) -> None:
    entry = await called_twelfth(clinic)
    params = {"entry": str(entry)}
    resp = await clinic.client.get(URL, params=params)
    assert resp.status == 401
    assert (await resp.json())["code"] == "not_authenticated"
    resp = await clinic.client.get(URL, params=params, headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    assert (await resp.json())["code"] == "token_not_valid"
    resp = await clinic.client.get(URL, params=params, headers=clinic.headers(Role.FORM))
    assert resp.status == 403  # the kiosk never speaks calls
    assert (await resp.json())["code"] == "permission_denied"
    for bad in (
        {"entry": "x"},
        {},
        {"entry": "0"},
        {**params, "lang": "fr"},
        {**params, "show": "all"},
        {**params, "lang": ""},
        {**params, "v": "x" * 101},
    ):
        resp = await clinic.client.get(URL, params=bad, headers=clinic.headers(Role.QUEUE))
        assert resp.status == 400, bad
        assert (await resp.json())["code"] == "speech_request_invalid"
    # No such entry, and one still waiting (not called: nothing to announce).
    waiting = await clinic.check_in("Still Waiting")
    for missing in ("999", str(waiting["queue_entry_id"])):
        resp = await clinic.client.get(
            URL, params={"entry": missing}, headers=clinic.headers(Role.QUEUE)
        )
        assert resp.status == 404, missing
        assert (await resp.json())["code"] == "speech_entry_not_found"


async def test_without_espeak_the_answer_is_a_clear_503(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = await called_twelfth(clinic)
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng there
    resp = await clinic.client.get(URL, params={"entry": entry}, headers=clinic.headers(Role.QUEUE))
    assert resp.status == 503
    body = await resp.json()
    assert body["code"] == "speech_unavailable"
    assert "espeak-ng" in body["error"]
    assert "Patient" not in body["error"]


async def test_a_failing_or_hanging_engine_is_a_503_not_a_hang(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = await called_twelfth(clinic)
    fake = tmp_path / "espeak-ng"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + ":/usr/bin:/bin")
    clinic.app[SPEECH].timeout = 0.5
    resp = await clinic.client.get(URL, params={"entry": entry}, headers=clinic.headers(Role.QUEUE))
    assert resp.status == 503
    assert (await resp.json())["code"] == "speech_unavailable"
    fake.write_text("#!/bin/sh\necho 'no voice' >&2\nexit 1\n")
    resp = await clinic.client.get(URL, params={"entry": entry}, headers=clinic.headers(Role.QUEUE))
    assert resp.status == 503


def test_the_phrase_catalogue() -> None:
    entry = QueueEntry(
        1, 1, "Ana Ruiz", None, "completed", "t", called_at="t", room="3", ticket="B-007"
    )
    settings = Settings()
    assert speech.phrase_for(entry, settings, "en", "ticket") == "Ticket B 7, Room 3."
    assert speech.phrase_for(entry, settings, "es", "name") == "Ana R., consultorio 3."
    no_room = QueueEntry(1, 1, "Ana Ruiz", None, "completed", "t", called_at="t", ticket="A-100")
    assert speech.phrase_for(no_room, settings, "en", "ticket") == "Ticket A 100, please come in."
    full = Settings(display_names="full")
    legacy = QueueEntry(1, 1, "Ana Ruiz", None, "completed", "t", called_at="t", room="Lab 2")
    assert speech.phrase_for(legacy, full, "es", "ticket") == "Ana Ruiz, Lab 2."
    assert speech.spoken_ticket("A-000") == "A 0"
    assert set(speech.PHRASES) == {"en", "es"}


async def test_the_cache_is_bounded(clinic: Clinic) -> None:
    box = speech.Speech(clinic.app[SPEECH].store, cache_bytes=100)
    box._put(("en", "a"), b"x" * 60)
    box._put(("en", "b"), b"x" * 60)
    box._put(("en", "c"), b"x" * 200)  # larger than the whole cache: not kept
    assert list(box._cache) == [("en", "b")]
    assert box._cached_bytes == 60
