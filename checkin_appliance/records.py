"""The clinic's records: a day's visits with every transition, and CSV exports of visits and
of each day's figures, in the clinic's time zone; sensitive intake answers only when asked.

Below the web: the API and the pages call it; it imports no aiohttp. Reading a day with the
sensitive answers, and every export, is one audit row (who, which days, whether the
sensitive answers were in it, how many rows; never a name).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from checkin_appliance import audit, domain, errors, intake, lines
from checkin_appliance.domain import Actor, InvalidInput, Settings, parse_time
from checkin_appliance.estimates import median

if TYPE_CHECKING:
    import sqlite3

    from checkin_appliance.store import Store

MAX_RANGE_DAYS = 366  # an export covers at most a year (and a leap day)
TICKET_QUERY_LENGTH = 20
CALLS = frozenset({"call", "complete"})  # a doctor's call (next, or a chosen patient)
ENDED = frozenset({"done", "no_show", "cancelled", "not_seen"})
OUTCOMES = ("waiting", "called", "in_service", "done", "no_show", "cancelled", "not_seen")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV
# injection"); such a cell gets a leading apostrophe, which shows the text as typed.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
VISIT_COLUMNS = (
    "day",
    "ticket",
    "line",
    "priority",
    "name",
    "check_in",
    "called",
    "started",
    "ended",
    "wait_seconds",
    "room",
    "doctor",
    "outcome",
    "call_count",
)
FIGURE_COLUMNS = (
    "checked_in",
    "called",
    "done",
    "no_show",
    "cancelled",
    "not_seen",
    "open",
    "median_wait_seconds",
    "p90_wait_seconds",
)
ALL_LINES = "all"  # the line column of a day's row over every line


# --- the request's words -----------------------------------------------------------------


def parse_day(value: str | None, today: date) -> date:
    """A YYYY-MM-DD day (absent: `today`, the clinic's); else records_date_invalid."""
    if value is None:
        return today
    day = domain.parse_day(value)
    if day is None:
        raise InvalidInput("Send the day as YYYY-MM-DD.", errors.RECORDS_DATE_INVALID)
    return day


def parse_range(first: str | None, last: str | None, today: date) -> tuple[date, date]:
    """An export's days, both included: `from` (absent: today) to `to` (absent: `from`)."""
    start = parse_day(first, today)
    end = parse_day(last, start)
    if end < start or (end - start).days >= MAX_RANGE_DAYS:
        raise InvalidInput(
            f"from must not be after to, and a range is at most {MAX_RANGE_DAYS} days.",
            errors.RECORDS_RANGE_INVALID,
        )
    return start, end


def parse_sensitive(value: str | None) -> bool:
    if value in (None, "0"):
        return False
    if value == "1":
        return True
    raise InvalidInput("sensitive is 0 or 1.", errors.RECORDS_QUERY_INVALID)


def parse_ticket(value: str | None) -> str | None:
    """The ticket searched for; None: every visit."""
    if value is None or not value.strip():
        return None
    if len(value) > TICKET_QUERY_LENGTH:
        raise InvalidInput(
            f"A ticket search is at most {TICKET_QUERY_LENGTH} characters.",
            errors.RECORDS_QUERY_INVALID,
        )
    return value


def _ticket_key(text: str) -> str:
    """A ticket as searched: its letters and digits, upper case. "a-012" and "A012" find
    A-012; "12" finds every ticket with 12 in it."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


def ticket_matches(query: str | None, ticket: str | None) -> bool:
    if query is None:
        return True
    return ticket is not None and _ticket_key(query) in _ticket_key(ticket)


# --- times -------------------------------------------------------------------------------


def local_today(now: str, time_zone: str) -> date:
    return parse_time(now).astimezone(lines.zone(time_zone)).date()


def utc_bounds(first: date, last: date, tz: tzinfo) -> tuple[str, str]:
    """Local midnight of `first` to local midnight after `last`, as stored timestamps (UTC).
    A day at the calendar's very ends cannot be converted: it holds no visit either."""
    try:
        start = datetime.combine(first, time(), tzinfo=tz).astimezone(UTC)
        end = datetime.combine(last + timedelta(days=1), time(), tzinfo=tz).astimezone(UTC)
    except OverflowError:
        return "", ""
    return _stored(start), _stored(end)


def _stored(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def local_iso(stored: str | None, tz: tzinfo) -> str | None:
    """A stored UTC time as ISO 8601 in the clinic's zone, to the second, with its offset."""
    if stored is None:
        return None
    return parse_time(stored).astimezone(tz).isoformat(timespec="seconds")


# --- a visit -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    at: str  # local ISO 8601
    action: str
    from_status: str
    to_status: str
    from_line: str
    to_line: str
    room: str | None
    by: str | None  # the credential's label; None: the box (end of day, no-show grace)
    undone: bool  # reverted by a later undo

    def public(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "action": self.action,
            "from": self.from_status,
            "to": self.to_status,
            "from_line": self.from_line,
            "to_line": self.to_line,
            "room": self.room,
            "by": self.by,
            "undone": self.undone,
        }


@dataclass(frozen=True, slots=True)
class Visit:
    id: int
    patient_id: int
    day: str  # the clinic's local day of the check-in
    ticket: str | None
    line: str
    priority: str
    name: str | None  # None once a retention purge took it
    check_in: str
    called: str | None  # the first call that stands (undone calls do not count)
    started: str | None  # the last start that stands
    ended: str | None  # when it reached done, no_show, cancelled or not_seen
    wait_seconds: int | None  # check-in to the first call
    room: str | None
    doctor: str | None  # the label of the credential that called
    outcome: str  # the visit's state now
    call_count: int
    answers: dict[str, str | None]
    transitions: tuple[Transition, ...]

    def public(self, fields: Sequence[str]) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in VISIT_COLUMNS},
            "id": self.id,
            "patient_id": self.patient_id,
            "intake": {key: self.answers.get(key) for key in fields},
            "transitions": [t.public() for t in self.transitions],
        }


def build_visit(
    row: sqlite3.Row, transitions: Sequence[sqlite3.Row], tz: tzinfo
) -> tuple[Visit, float | None]:
    """A visit from its row and its transitions (oldest first), and its wait in seconds."""
    standing = [t for t in transitions if t["undone_by"] is None and t["action"] != audit.UNDO]
    calls = [t["at"] for t in standing if t["action"] in CALLS]
    starts = [t["at"] for t in standing if t["action"] == "start"]
    ended = standing[-1]["at"] if standing and row["status"] in ENDED else None
    wait = None
    if calls:
        wait = (parse_time(calls[0]) - parse_time(row["check_in_time"])).total_seconds()
    visit = Visit(
        id=row["id"],
        patient_id=row["patient_id"],
        day=parse_time(row["check_in_time"]).astimezone(tz).date().isoformat(),
        ticket=row["ticket"],
        line=row["line"],
        priority=row["priority"],
        name=row["fname"] or None,
        check_in=local_iso(row["check_in_time"], tz) or "",
        called=local_iso(calls[0] if calls else None, tz),
        started=local_iso(starts[-1] if starts else None, tz),
        ended=local_iso(ended, tz),
        wait_seconds=None if wait is None else max(round(wait), 0),
        room=row["room"],
        doctor=row["doctor"],
        outcome=row["status"],
        call_count=row["call_count"],
        answers=_answers(row["intake"]),
        transitions=tuple(
            Transition(
                at=local_iso(t["at"], tz) or "",
                action=t["action"],
                from_status=t["from_status"],
                to_status=t["to_status"],
                from_line=t["from_line"],
                to_line=t["to_line"],
                room=t["room"],
                by=t["by_label"],
                undone=t["undone_by"] is not None,
            )
            for t in transitions
        ),
    )
    return visit, wait


def _answers(text: str | None) -> dict[str, str | None]:
    if not text:
        return {}
    try:
        answers = json.loads(text)
    except ValueError:
        return {}
    return answers if isinstance(answers, dict) else {}


# --- the intake answers a record shows ----------------------------------------------------


def answer_fields(
    form: dict[str, Any], visits: Iterable[Visit], sensitive: bool
) -> list[intake.Field]:
    """The questions answered in `visits`, the form's order first, then the catalogue's;
    the sensitive ones only with `sensitive`. A question is sensitive as today's form says
    (as the catalogue says when the form no longer asks it); a key the catalogue does not
    know is never shown."""
    asked = {f.key: f for f in intake.form_fields(form)}
    answered = {key for visit in visits for key in visit.answers}
    chosen: dict[str, intake.Field] = {}
    for key in [*asked, *intake.BY_KEY]:
        question = asked.get(key) or intake.BY_KEY[key]
        if key in answered and key not in chosen and (sensitive or not question.sensitive):
            chosen[key] = question
    return list(chosen.values())


# --- figures -----------------------------------------------------------------------------


@dataclass
class Figures:
    checked_in: int = 0
    called: int = 0
    done: int = 0
    no_show: int = 0
    cancelled: int = 0
    not_seen: int = 0
    open: int = 0  # still waiting, called or in service
    waits: list[float] = field(default_factory=list)

    def add(self, visit: Visit, wait: float | None) -> None:
        self.checked_in += 1
        if visit.called is not None:
            self.called += 1
        if visit.outcome in ENDED:
            setattr(self, visit.outcome, getattr(self, visit.outcome) + 1)
        else:
            self.open += 1
        if wait is not None:
            self.waits.append(max(wait, 0.0))

    def public(self) -> dict[str, Any]:
        return {
            "checked_in": self.checked_in,
            "called": self.called,
            "done": self.done,
            "no_show": self.no_show,
            "cancelled": self.cancelled,
            "not_seen": self.not_seen,
            "open": self.open,
            "median_wait_seconds": round(median(self.waits)) if self.waits else None,
            "p90_wait_seconds": round(percentile(self.waits, 90)) if self.waits else None,
        }


def percentile(values: Sequence[float], p: int) -> float:
    """The nearest-rank percentile: the smallest value with at least p% at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def figures_by_line(visits: Iterable[tuple[Visit, float | None]]) -> dict[str, Figures]:
    """Each line's figures (the line a visit is in now), and every line's under ALL_LINES."""
    by_line: dict[str, Figures] = {ALL_LINES: Figures()}
    for visit, wait in visits:
        by_line[ALL_LINES].add(visit, wait)
        by_line.setdefault(visit.line, Figures()).add(visit, wait)
    return by_line


# --- CSV ---------------------------------------------------------------------------------


def csv_cell(value: object) -> str:
    """A value as a CSV cell: empty for None, a formula-looking text made inert."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """RFC 4180 (CRLF, quotes where needed) in UTF-8 with a byte-order mark: without it,
    the spreadsheet programs clinics use read the file as the PC's legacy code page and
    mangle "José"; Python's csv module reads it with encoding="utf-8-sig"."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_cell(name) for name in header])
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    return ("\ufeff" + out.getvalue()).encode()


@dataclass(frozen=True)
class Export:
    body: bytes
    filename: str
    rows: int


# --- the service ---------------------------------------------------------------------------


class Records:
    """The day view and the exports; `settings` gives the clinic's settings now."""

    def __init__(self, store: Store, settings: Callable[[], Settings]) -> None:
        self.store = store
        self.settings = settings

    def today(self) -> date:
        return local_today(self.store.now(), self.settings().time_zone)

    async def _visits(self, first: date, last: date) -> list[tuple[Visit, float | None]]:
        tz = lines.zone(self.settings().time_zone)
        start, end = utc_bounds(first, last, tz)
        if not start:
            return []
        rows, transitions = await self.store.visits_checked_in(start, end)
        by_entry: dict[int, list[sqlite3.Row]] = {}
        for transition in transitions:
            by_entry.setdefault(transition["entry_id"], []).append(transition)
        return [build_visit(row, by_entry.get(row["id"], []), tz) for row in rows]

    async def day(
        self, day: date, *, ticket: str | None, sensitive: bool, actor: Actor
    ) -> dict[str, Any]:
        """A day's visits (those whose ticket matches `ticket`), with every transition, and
        the whole day's figures per line; sensitive answers (audited) only with `sensitive`."""
        settings = self.settings()
        visits = await self._visits(day, day)
        shown = [visit for visit, _ in visits if ticket_matches(ticket, visit.ticket)]
        fields = answer_fields(settings.intake_form, shown, sensitive)
        if sensitive:
            detail = {"day": day.isoformat(), "sensitive": True, "visits": len(shown)}
            await self.store.record_audit(audit.RECORDS_VIEWED, actor, detail)
        figures = figures_by_line(visits)
        keys = [f.key for f in fields]
        return {
            "date": day.isoformat(),
            "time_zone": settings.time_zone,
            "ticket": ticket,
            "sensitive": sensitive,
            "figures": figures.pop(ALL_LINES).public(),
            "lines": [{"line": line, **f.public()} for line, f in sorted(figures.items())],
            "intake_fields": [
                {"key": f.key, "label": f.label, "sensitive": f.sensitive} for f in fields
            ],
            "visits": [visit.public(keys) for visit in shown],
        }

    async def visits_csv(self, first: date, last: date, *, sensitive: bool, actor: Actor) -> Export:
        """One row per visit checked in from `first` to `last`; audited."""
        visits = [visit for visit, _ in await self._visits(first, last)]
        fields = [f.key for f in answer_fields(self.settings().intake_form, visits, sensitive)]
        rows = [
            [
                *(getattr(visit, name) for name in VISIT_COLUMNS),
                *(visit.answers.get(k) for k in fields),
            ]
            for visit in visits
        ]
        body = csv_bytes([*VISIT_COLUMNS, *fields], rows)
        await self._audit_export(actor, "visits", first, last, len(rows), sensitive)
        return Export(body, _filename("visits", first, last), len(rows))

    async def days_csv(self, first: date, last: date, *, actor: Actor) -> Export:
        """One row per day and line (and one per day over every line, line "all"); audited."""
        by_day: dict[str, list[tuple[Visit, float | None]]] = {}
        for visit, wait in await self._visits(first, last):
            by_day.setdefault(visit.day, []).append((visit, wait))
        rows = []
        for day, visits in sorted(by_day.items()):
            figures = figures_by_line(visits)
            every = figures.pop(ALL_LINES)
            for line, figure in [(ALL_LINES, every), *sorted(figures.items())]:
                public = figure.public()
                rows.append([day, line, *(public[name] for name in FIGURE_COLUMNS)])
        body = csv_bytes(["day", "line", *FIGURE_COLUMNS], rows)
        await self._audit_export(actor, "days", first, last, len(rows), False)
        return Export(body, _filename("days", first, last), len(rows))

    async def _audit_export(
        self, actor: Actor, kind: str, first: date, last: date, rows: int, sensitive: bool
    ) -> None:
        detail = {
            "kind": kind,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "rows": rows,
            "sensitive": sensitive,
        }
        await self.store.record_audit(audit.RECORDS_EXPORTED, actor, detail)


def _filename(kind: str, first: date, last: date) -> str:
    if first == last:
        return f"{kind}-{first.isoformat()}.csv"
    return f"{kind}-{first.isoformat()}-to-{last.isoformat()}.csv"
