"""The front desk's decisions: check a patient in, call the next one, complete one.

Photos are processed in a worker thread and stored in the check-in's own transaction; the
store publishes each event after its commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from checkin_appliance import (
    audit,
    calibration,
    errors,
    estimates,
    intake,
    lines,
    photos,
    visits,
)
from checkin_appliance.domain import (
    CANCEL_REASONS,
    REQUEUE_POSITIONS,
    Actor,
    Audience,
    InvalidInput,
    NewPhoto,
    NotFound,
    Patient,
    QueueEntry,
    Settings,
    check_in_fingerprint,
    event_message,
    format_time,
    parse_time,
    preset_changes,
    settings_from_stored,
    snapshot_message,
    updated_settings,
)
from checkin_appliance.photo_links import PhotoLinks
from checkin_appliance.store import Store

log = logging.getLogger(__name__)

NOBODY_WAITING = "No patients in the waiting."
NO_SUCH_PATIENT = "No waiting patient with that id."
INVALID_PARAMETER = "Invalid action or missing patient."
REPLAY_BATCH = 500  # events read from the log at a time when a feed client catches up
# A good write probe vouches for the disk this long: /healthz is anonymous, and a commit per
# call let any LAN client wear the SD card (issue 13, 17). A failure is never remembered.
WRITE_PROBE_INTERVAL = 5.0


def photo_decoders() -> int:
    """Photos decoded at once: the event loop keeps a core to itself, and each decode holds
    about 2 MB of pixels. One on a 2-core box (a second adds memory, not photos per second:
    the loop and the uploads need the other core), two on a 4-core Pi."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return min(2, max(1, cores - 1))


def local_day_bounds(now: datetime | None = None, time_zone: str = "UTC") -> tuple[str, str]:
    """Midnight to midnight of the clinic's local day (the time_zone setting, not the OS's),
    as UTC timestamps like the stored ones."""
    day = (now or datetime.now(UTC)).astimezone(lines.zone(time_zone)).date()
    return _midnights(day, 1, time_zone)


def local_week_bounds(now: datetime | None = None, time_zone: str = "UTC") -> tuple[str, str]:
    """Monday 00:00 of the clinic's local week to the next Monday's, as UTC timestamps."""
    day = (now or datetime.now(UTC)).astimezone(lines.zone(time_zone)).date()
    return _midnights(day - timedelta(days=day.weekday()), 7, time_zone)


def _midnights(first: date, days: int, time_zone: str) -> tuple[str, str]:
    # Wall-clock midnights in the zone (fold 0): right on days when the clock changes.
    tz = lines.zone(time_zone)
    start = datetime.combine(first, time(), tzinfo=tz)
    end = datetime.combine(first + timedelta(days=days), time(), tzinfo=tz)
    return format_time(start), format_time(end)


# Wait estimates read today's calls and those of the same weekday, within an hour either
# side of now's local time, in the weeks before (docs/wait-estimates.md).
PAST_WEEKS = 4
PAST_WINDOW = timedelta(hours=1)


def call_windows(now: datetime, time_zone: str = "UTC") -> list[tuple[str, str]]:
    """The windows (UTC start, end) whose calls a wait estimate reads: the clinic's local
    day of `now` first, then the same weekday around the same local time, week by week
    back (wall-clock weeks: right across a change of the clocks)."""
    tz = lines.zone(time_zone)
    local = now.astimezone(tz).replace(tzinfo=None)
    windows = [local_day_bounds(now, time_zone)]
    for weeks in range(1, PAST_WEEKS + 1):
        then = (local - timedelta(weeks=weeks)).replace(tzinfo=tz)
        windows.append((format_time(then - PAST_WINDOW), format_time(then + PAST_WINDOW)))
    return windows


@dataclass(frozen=True, slots=True)
class CheckedIn:
    entry: QueueEntry
    position: int  # 1-based place in its line's call order when checked in
    replayed: bool  # the answer to a retried Idempotency-Key: nobody was added
    answers: dict[str, str | None]  # the intake form's answers beyond the name, as stored
    link_token: str | None = None  # the visit's status link (/v/<token>): only here, once


@dataclass(frozen=True, slots=True)
class Acted:
    entry: QueueEntry  # the visit as the action left it
    from_status: str  # its state before
    replayed: bool  # the answer to a retried Idempotency-Key: nothing changed now


def action_fingerprint(
    action: str, patient_id: int | None, position: object, reason: object, line: object
) -> str:
    """What a retried action must repeat to be the same action (its Idempotency-Key)."""
    facts = [action, patient_id, position, reason, line]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()


class Reception:
    def __init__(
        self,
        store: Store,
        photo_max_side: int = 800,
        on_settings: Callable[[Settings], None] | None = None,
        photo_links: PhotoLinks | None = None,
    ) -> None:
        self.store = store
        # Photo URLs in bodies and feed messages are signed links (photo_links.py).
        self.photo_links = photo_links or PhotoLinks()
        self.photo_max_side = photo_max_side
        self.settings = Settings()
        # Told about every change of settings, wherever it came from (API or CLI).
        self.on_settings = on_settings
        # Decoding a large photo takes real memory and CPU: off the loop, few at a time.
        self._photo_slots = asyncio.Semaphore(photo_decoders())
        self._probed_ok_at: float | None = None  # loop time of the last good write probe
        self._probe: asyncio.Future[None] | None = None  # the one probe in flight
        # The range each waiting visit was last shown (note_shown): kept again only when it
        # changes. After a restart a visit's range is kept once more.
        self._last_shown: dict[int, tuple[int, int]] = {}

    async def load_settings(self) -> Settings:
        self._use(settings_from_stored(await self.store.load_settings()))
        return self.settings

    async def update_settings(self, changes: dict[str, object], actor: Actor) -> Settings:
        new = updated_settings(self.settings, changes)
        await self.store.save_settings(
            {key: json.dumps(new.public()[key]) for key in changes}, actor=actor
        )
        self._use(new)
        return new

    def _use(self, settings: Settings) -> None:
        changed = settings != self.settings
        self.settings = settings
        if changed and self.on_settings is not None:
            self.on_settings(settings)

    async def check_in(
        self,
        fields: dict[str, Any],
        photo: intake.Upload | None,
        actor: Actor,
        idempotency_key: str | None = None,
        *,
        from_form: bool = False,
        staff: bool = False,
    ) -> CheckedIn:
        """A patient checked in with the answers the intake form asks for (IntakeInvalid
        names every problem). A retried key returns the first answer and adds nobody; the
        key again with other answers or photo is refused (Conflict, 422).

        `line` (prefix or id) picks the line (default: the first active one open now, by
        position); `priority` is taken from the kiosk only while the priority_question
        setting is on (normal or priority), from `staff` (admin) always, urgent included."""
        fields = dict(fields)
        line = lines.line_selector(fields.pop("line", None))
        priority = lines.asked_priority(
            fields.pop("priority", None), staff=staff, question=self.settings.priority_question
        )
        # "Today" for a date of birth is the clinic's day (time_zone), not the machine's.
        today = parse_time(self.store.now()).astimezone(lines.zone(self.settings.time_zone))
        answers = intake.check(
            self.settings.intake_form, fields, photo, from_form=from_form, today=today.date()
        )
        stored = answers.stored()
        fingerprint = None
        if idempotency_key is not None:
            fingerprint = check_in_fingerprint(answers.name, answers.photo, stored)
        photo = None
        if answers.photo is not None:
            try:
                async with self._photo_slots:
                    jpeg = await asyncio.to_thread(photos.clean, answers.photo, self.photo_max_side)
            except InvalidInput as exc:  # keyed by field, like the form's other answers
                raise intake.IntakeInvalid({"image": (exc.message, exc.code)}) from exc
            photo = NewPhoto(photos.new_photo_name(), jpeg)
            # Only the stored JPEG is held while the check-in commits, not the upload too
            # (the caller lets go of its own reference: web/api.py check_in).
            answers = replace(answers, photo=None)
        link_token, link_hash = visits.new_link()
        # The photo goes into the database with the patient's row, or not at all.
        entry, position, replayed = await self.store.check_in(
            answers.name,
            photo,
            actor,
            idempotency_key,
            fingerprint,
            stored,
            line,
            priority,
            self.settings.time_zone,
            link_hash,
        )
        values = answers.values
        if replayed:
            patient = await self.store.patient(entry.patient_id)
            values = patient.answers() if patient else {}
        return CheckedIn(entry, position, replayed, values, link_token)

    async def patient(self, patient_id: int, actor: Actor) -> Patient:
        """The staff's detail view of one patient; every look is in the audit trail."""
        patient = await self.store.patient(patient_id)
        if patient is None:
            raise NotFound("No patient with that id.", errors.PATIENT_NOT_FOUND)
        await self.store.record_audit(audit.PATIENT_VIEWED, actor, patient_id=patient_id)
        return patient

    async def apply_preset(self, name: object, actor: Actor) -> Settings:
        return await self.update_settings(preset_changes(name), actor)

    async def call(
        self,
        patient_id: int | None,
        actor: Actor,
        room: str | None = None,
        idempotency_key: str | None = None,
    ) -> QueueEntry:
        """The longest-waiting patient (or the given one) is called, exactly once: a retry
        with the same Idempotency-Key answers the first call and calls nobody else."""
        fingerprint = None
        if idempotency_key is not None:
            fingerprint = action_fingerprint("call", patient_id, None, None, None)
        entry = await self.store.complete(patient_id, actor, room, idempotency_key, fingerprint)
        if entry is None:
            if patient_id is None:
                raise NotFound(NOBODY_WAITING, errors.NOBODY_WAITING)
            raise NotFound(NO_SUCH_PATIENT, errors.NO_SUCH_PATIENT)
        return entry

    async def act(
        self,
        action: str,
        patient_id: int | None,
        actor: Actor,
        *,
        room: str | None = None,
        position: object = None,
        reason: object = None,
        line: object = None,
        idempotency_key: str | None = None,
    ) -> Acted:
        """A doctor's action on a visit beyond the call (domain.TRANSITIONS, or undo): one
        transaction, audited and published. InvalidInput (invalid_action) for a missing
        patient or parameter; Conflict (409) when the visit's state does not allow it."""
        if action != "undo" and patient_id is None:
            raise InvalidInput(INVALID_PARAMETER, errors.INVALID_ACTION)
        if action == "requeue" and position not in REQUEUE_POSITIONS:
            raise InvalidInput('position must be "front" or "back".', errors.INVALID_ACTION)
        if action == "cancel" and reason not in CANCEL_REASONS:
            raise InvalidInput('reason must be "left" or "request".', errors.INVALID_ACTION)
        if action == "transfer":
            line = lines.line_selector(line)
            if line is None:
                raise InvalidInput("line must name a line.", errors.INVALID_ACTION)
        fingerprint = None
        if idempotency_key is not None:
            fingerprint = action_fingerprint(action, patient_id, position, reason, line)
        if action == "undo":
            entry, from_status, replayed = await self.store.undo(
                actor, self.settings.undo_seconds, patient_id, idempotency_key, fingerprint
            )
        else:
            assert patient_id is not None
            entry, from_status, replayed = await self.store.transition(
                patient_id,
                action,
                actor,
                room=room,
                position=position if action == "requeue" else None,
                reason=reason if action == "cancel" else None,
                line=line if action == "transfer" else None,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
            )
        return Acted(entry, from_status, replayed)

    async def end_of_day(self, actor: Actor, checked_in_before: str | None = None) -> int:
        """Every open visit closed as not seen (the button: all; the timer: those checked in
        before the end of day that passed)."""
        return await self.store.end_of_day(actor, checked_in_before)

    async def no_show_overdue(self, actor: Actor, now: datetime | None = None) -> int:
        """The no_show_minutes setting's grace: every visit called today and left untouched
        that long becomes a no-show. 0 when the setting is off."""
        minutes = self.settings.no_show_minutes
        if minutes is None:
            return 0
        now = now or datetime.now(UTC)
        day_start, _ = local_day_bounds(now, self.settings.time_zone)
        idle_since = format_time(now - timedelta(minutes=minutes))
        return await self.store.no_show_overdue(actor, idle_since, day_start)

    def last_end_of_day(self, now: datetime | None = None) -> str | None:
        """The most recent end-of-day moment at or before now (UTC timestamp), or None when
        the end_of_day setting is off."""
        if self.settings.end_of_day is None:
            return None
        tz = lines.zone(self.settings.time_zone)
        local = (now or datetime.now(UTC)).astimezone(tz)
        hour, minute = (int(part) for part in self.settings.end_of_day.split(":"))
        moment = datetime.combine(local.date(), time(hour, minute), tzinfo=tz)
        if moment > local:
            moment = datetime.combine(
                local.date() - timedelta(days=1), time(hour, minute), tzinfo=tz
            )
        return format_time(moment)

    async def set_priority(self, patient_id: int, priority: object, actor: Actor) -> QueueEntry:
        """Staff set a waiting patient's priority class (urgent included)."""
        checked = lines.checked_priority(priority, staff=True)
        done = await self.store.set_priority(patient_id, checked, actor)
        if done is None:
            raise NotFound(NO_SUCH_PATIENT, errors.NO_SUCH_PATIENT)
        return done[0]

    # --- lines -----------------------------------------------------------------------

    async def lines(self) -> list[dict[str, Any]]:
        now, tz = self.store.now(), self.settings.time_zone
        return [line.public(now, tz) for line in await self.store.list_lines()]

    async def create_line(self, body: object, actor: Actor) -> dict[str, Any]:
        line = await self.store.create_line(lines.checked_fields(body, creating=True), actor=actor)
        return line.public(self.store.now(), self.settings.time_zone)

    async def change_line(self, line_id: int, body: object, actor: Actor) -> dict[str, Any]:
        fields = lines.checked_fields(body, creating=False)
        line = await self.store.change_line(line_id, fields, actor=actor)
        return line.public(self.store.now(), self.settings.time_zone)

    async def places(self) -> dict[int, int]:
        """Each waiting entry's place in its own line's call order (now)."""
        waiting, rules, histories = await self.store.call_context()
        return lines.places(waiting, rules, histories, self.store.now())

    async def waits(self) -> dict[int, visits.Wait]:
        """Each waiting entry's place in its line's call order and its estimated wait (None:
        the box knows too little yet), from two reads whatever the number of patients."""
        now = self.store.now()
        waiting, rules, histories = await self.store.call_context()
        places = lines.places(waiting, rules, histories, now)
        if not places:
            return {}
        moment = parse_time(now)
        windows = call_windows(moment, self.settings.time_zone)
        today_starts = lines.seconds(windows[0][0])
        calls = await self.store.calls_between(windows)
        waits: dict[int, visits.Wait] = {}
        for line_id, people in waiting.items():
            line_calls = calls.get(line_id, [])
            activity = estimates.LineActivity(
                moment.timestamp(),
                [call for call in line_calls if call.at >= today_starts],
                [call for call in line_calls if call.at < today_starts],
            )
            ranges = lines.line_waits(
                people, rules.get(line_id), histories.get(line_id, ()), activity
            )
            waits.update((i, visits.Wait(places[i], wait)) for i, wait in ranges.items())
        return waits

    # --- the patient's phone -----------------------------------------------------------

    async def visit_for_link(self, token: str) -> visits.Visit:
        """The visit a status link opens, while it works; NotFound (visit_link_not_found) for a
        token that is malformed, unknown or past its visit's end plus the grace: one answer,
        so a link that ended and one that never was cannot be told apart."""
        found = None
        if visits.well_formed(token):
            found = await self.store.visit_by_link(visits.token_hash(token))
        if found is not None:
            visit = visits.Visit.of(*found)
            if not visit.expired(self.store.now()):
                return visit
        raise visits.link_not_found()

    async def visit_status(self, visit: visits.Visit) -> dict[str, Any]:
        """A status link's answer now (one page's first message, or GET .../status)."""
        wait = None
        if visit.status == "waiting":
            waits = await self.waits()
            wait = waits.get(visit.entry_id)
            await self.note_shown([(visit.entry_id, visit.line_id)], waits)
        line = next((ln for ln in await self.store.list_lines() if ln.id == visit.line_id), None)
        return visits.status_message(visit, line, wait)

    async def note_shown(
        self, shown: Iterable[tuple[int, int]], waits: dict[int, visits.Wait]
    ) -> None:
        """Keeps the ranges just shown to these visits ((entry id, line id) pairs; `waits`:
        every waiting visit's, as read for them) for the calibration /admin shows: each range
        a visit is shown, once, until it changes. Never fails the page that showed it."""
        now = self.store.now()  # when they were shown, whenever the write commits
        for gone in self._last_shown.keys() - waits.keys():
            del self._last_shown[gone]  # called or left: what it was shown is kept
        rows = []
        for entry_id, line_id in shown:
            wait = waits.get(entry_id)
            if wait is None or wait.estimate is None:
                continue
            shown_range = (wait.estimate.low_minutes, wait.estimate.high_minutes)
            if self._last_shown.get(entry_id) != shown_range:
                self._last_shown[entry_id] = shown_range
                rows.append((entry_id, line_id, now, wait.place, *shown_range))
        if not rows:
            return
        try:
            await self.store.record_shown(rows)
        except Exception:
            log.warning("could not keep %d shown wait estimate(s)", len(rows), exc_info=True)

    async def calibration(self) -> dict[str, Any]:
        """How the ranges shown this week (since Monday 00:00, the clinic's time) held, per
        line: every range shown, and the first one of each visit (the kiosk's)."""
        now = parse_time(self.store.now())
        start, end = local_week_bounds(now, self.settings.time_zone)
        scores = calibration.by_line(await self.store.shown_between(start, end))
        nothing = calibration.Score(0, 0, None, None)
        result = []
        for line in await self.store.list_lines():
            every, first = scores.get(line.id, (nothing, nothing))
            result.append(
                {
                    "line_id": line.id,
                    "prefix": line.prefix,
                    "name": line.name,
                    "shown": every.as_json(),
                    "first_shown": first.as_json(),
                }
            )
        return {"since": start, "until": end, "lines": result}

    async def today(self) -> dict[str, object]:
        """Today's figures (the clinic's local day): checked in, called, waiting, median wait."""
        start, end = local_day_bounds(time_zone=self.settings.time_zone)
        checked_in, called, waiting, waits = await self.store.day_figures(start, end)
        return {
            "checked_in": checked_in,
            "called": called,
            "waiting": waiting,
            "median_wait_seconds": round(estimates.median(waits)) if waits else None,
        }

    async def backlog(
        self, since: int | None, want_snapshot: bool, audience: Audience, all_events: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """What a feed client gets before live events, in order; each message's seq is the
        newest event the client has once it has that message.

        `since`: the client has every event up to it, so it gets the ones after it, read
        from the log in batches. A `since` the log cannot answer (newer than its newest
        event: another database; older than its oldest kept one: pruned) gets a snapshot
        instead, and so does a gap found mid-replay. No `since`: a snapshot if asked for.
        Without `all_events`, only the seed's event types are replayed (as live).
        """
        if since is None:
            if want_snapshot:
                yield await self._snapshot_message(audience)
            return
        oldest, newest = await self.store.event_log_bounds()
        if since > newest or since < oldest - 1:
            yield await self._snapshot_message(audience)
            return
        after = since
        while batch := await self.store.events_after(after, REPLAY_BATCH):
            if batch[0].seq != after + 1:
                # Pruned since the bounds were read: seq has no other gaps, so start over.
                yield await self._snapshot_message(audience)
                return
            for event in batch:
                if all_events or event.legacy() is not None:
                    yield event_message(
                        event,
                        audience,
                        self.settings,
                        self.photo_links.url,
                        legacy=not all_events,
                    )
            after = batch[-1].seq
            if len(batch) < REPLAY_BATCH:
                return

    async def _snapshot_message(self, audience: Audience) -> dict[str, Any]:
        """The waiting queue and today's recent calls, consistent with each other and `seq`."""
        since = local_day_bounds(time_zone=self.settings.time_zone)[0]
        seq, waiting, called = await self.store.snapshot(called_since=since)
        places = await self.places()
        return snapshot_message(
            seq, waiting, audience, self.settings, called, self.photo_links.url, places
        )

    async def waiting(self) -> list[QueueEntry]:
        return await self.store.waiting()

    async def check_writable(self) -> None:
        """A real committed write (/healthz); StoreUnavailable when the disk or lock says no.

        At most one commit per WRITE_PROBE_INTERVAL while the probes succeed; once one fails,
        every call probes again (a failed write commits nothing), so /healthz turns 503 no
        later than the interval after the disk or lock goes bad. Concurrent calls share one
        probe rather than queueing behind the writer."""
        loop = asyncio.get_running_loop()
        if (
            self._probed_ok_at is not None
            and loop.time() - self._probed_ok_at < WRITE_PROBE_INTERVAL
        ):
            return
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._write_probe())
        await asyncio.shield(self._probe)

    async def _write_probe(self) -> None:
        try:
            await self.store.write_probe()
        except BaseException:
            self._probed_ok_at = None
            raise
        else:
            self._probed_ok_at = asyncio.get_running_loop().time()
        finally:
            self._probe = None
