"""Lines (services): what a line is, when it is open, its tickets, and the call order across
the lines a doctor serves (over ordering.py's rule for each line). Owns no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from checkin_appliance import errors, estimates, ordering
from checkin_appliance.domain import InvalidInput, format_time, has_control_characters

PRIORITIES = ("normal", "priority", "urgent")
# The priorities a kiosk may ask for (with the priority_question setting on); urgent is staff's.
KIOSK_PRIORITIES = ("normal", "priority")
# Our own SVG icons (the pages draw them from local files): a line's icon is one of these.
ICONS = ("doctor", "nurse", "lab", "pharmacy", "dentist", "eye", "child", "xray", "vaccine",
         "heart", "info", "desk")  # fmt: skip
LANGUAGES = ("en", "es")
MAX_LINES = 50
MAX_NAME = 60
MAX_HOURS = 8
HISTORY = 20  # a line's recent calls its streak is read from (more than any P + N)
PREFIX = re.compile(r"\A[A-Za-z]{1,2}\Z")  # stored in capitals
_COLOUR = re.compile(r"\A#[0-9a-fA-F]{6}\Z")
_CLOCK = re.compile(r"\A([01][0-9]|2[0-3]):[0-5][0-9]\Z")
FIELDS = ("prefix", "name", "colour", "icon", "active", "hours", "call_rule", "position")


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, errors.LINE_INVALID)


# --- time zone and the clinic's day ----------------------------------------------------


def zone(name: str) -> tzinfo:
    """The clinic's time zone; UTC if the stored name is unknown here (never a crash).
    zoneinfo (and the sysconfig it loads) only for another zone than UTC: a default box
    serves without it (make bench: the server's RSS goal)."""
    if name == "UTC":
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def checked_time_zone(value: object) -> str:
    """An IANA time zone name this box has data for (the time_zone setting)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if isinstance(value, str) and value and len(value) <= 64 and ".." not in value:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            pass
        else:
            return value
    raise InvalidInput(
        'time_zone must be an IANA time zone name, e.g. "America/New_York" or "UTC".',
        errors.SETTING_VALUE_INVALID,
    )


def clinic_day(now: str, time_zone: str) -> str:
    """The clinic's local day (YYYY-MM-DD) of a stored UTC timestamp: tickets restart at
    local midnight, whatever the OS's zone, on days the clock changes too."""
    return datetime.fromisoformat(now).astimezone(zone(time_zone)).date().isoformat()


def ticket_text(prefix: str, number: int) -> str:
    return f"{prefix}-{number:03d}"


# --- a line ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    id: int
    prefix: str
    name: dict[str, str]
    colour: str
    icon: str | None
    active: bool
    hours: list[list[str]] | None
    call_rule: dict[str, Any] | None
    position: int
    created_at: str

    def open_at(self, now: str, time_zone: str) -> bool:
        """Whether `now` (a stored UTC timestamp) falls in the line's hours, local time."""
        if self.hours is None:
            return True
        clock = datetime.fromisoformat(now).astimezone(zone(time_zone)).strftime("%H:%M")
        return any(
            start <= clock < end if start < end else (clock >= start or clock < end)
            for start, end in self.hours
        )

    def public(self, now: str, time_zone: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "prefix": self.prefix,
            "name": self.name,
            "colour": self.colour,
            "icon": self.icon,
            "active": self.active,
            "hours": self.hours,
            "call_rule": self.call_rule,
            "position": self.position,
            "open_now": self.active and self.open_at(now, time_zone),
        }


def line_from_row(row: Any) -> Line:
    """A `lines` row (read by column name)."""
    return Line(
        id=row["id"],
        prefix=row["prefix"],
        name=json.loads(row["name"]),
        colour=row["colour"],
        icon=row["icon"],
        active=bool(row["active"]),
        hours=json.loads(row["hours"]) if row["hours"] is not None else None,
        call_rule=json.loads(row["call_rule"]) if row["call_rule"] is not None else None,
        position=row["position"],
        created_at=row["created_at"],
    )


def checked_fields(body: object, *, creating: bool) -> dict[str, Any]:
    """A line's new or changed fields, checked; the keys of FIELDS only. Creating needs
    prefix and name; colour defaults to a blue, the rest to always open, default rule."""
    if not isinstance(body, dict):
        raise _invalid("Send a JSON object with the line's fields.")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise _invalid(f"Unknown line field '{unknown[0]}'.")
    if not creating and not body:
        raise _invalid("Send at least one of the line's fields to change.")
    if creating:
        for required in ("prefix", "name"):
            if required not in body:
                raise _invalid(f"{required} is required.")
    checked: dict[str, Any] = {}
    for key, value in body.items():
        checked[key] = _CHECKS[key](value)
    return checked


def _prefix(value: object) -> str:
    if isinstance(value, str) and PREFIX.match(value):
        return value.upper()
    raise _invalid("prefix must be one or two letters A-Z.")


def _name(value: object) -> dict[str, str]:
    if isinstance(value, str):
        value = {"en": value}
    if not isinstance(value, dict) or not value or set(value) - set(LANGUAGES):
        raise _invalid('name must be an object of texts by language, e.g. {"en": "Lab"}.')
    name = {}
    for language, text in value.items():
        if not isinstance(text, str) or not text.strip() or len(text.strip()) > MAX_NAME:
            raise _invalid(f"name.{language} must be 1-{MAX_NAME} characters.")
        if has_control_characters(text):
            raise _invalid(f"name.{language} must not contain control characters.")
        name[language] = text.strip()
    return name


def _colour(value: object) -> str:
    if isinstance(value, str) and _COLOUR.match(value):
        return value.lower()
    raise _invalid('colour must be "#rrggbb".')


def _icon(value: object) -> str | None:
    if value is None or value in ICONS:
        return value  # type: ignore[return-value]
    raise _invalid(f"icon must be null or one of {', '.join(ICONS)}.")


def _active(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _invalid("active must be true or false.")


def _hours(value: object) -> list[list[str]] | None:
    """[["08:00", "12:00"], ...]: local opening times from start to end; an end not after
    its start runs past midnight (["22:00", "06:00"]; the same time twice: all day)."""
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_HOURS:
        raise _invalid(f'hours must be null or 1-{MAX_HOURS} ["HH:MM", "HH:MM"] pairs.')
    hours = []
    for pair in value:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(t, str) and _CLOCK.match(t) for t in pair)
        ):
            raise _invalid('each hours entry is ["HH:MM", "HH:MM"] (local times).')
        hours.append([pair[0], pair[1]])
    return sorted(hours)


def _call_rule(value: object) -> dict[str, Any] | None:
    """The line's rule as ordering.Rule.from_json reads it, stored in its full JSON form.
    A whole number written 5.0 counts as 5 (as JSON Schema has it)."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = {
            key: int(item) if isinstance(item, float) and item.is_integer() else item
            for key, item in value.items()
        }
    return ordering.Rule.from_json(value).to_json()


def whole_number(value: object) -> int | None:
    """An integer as JSON may write it (7 or 7.0), not true/false; else None."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _position(value: object) -> int:
    number = whole_number(value)
    if number is not None and 1 <= number <= 1000:
        return number
    raise _invalid("position must be a whole number 1-1000.")


_CHECKS = {
    "prefix": _prefix,
    "name": _name,
    "colour": _colour,
    "icon": _icon,
    "active": _active,
    "hours": _hours,
    "call_rule": _call_rule,
    "position": _position,
}


def checked_priority(value: object, *, staff: bool) -> str:
    allowed = PRIORITIES if staff else KIOSK_PRIORITIES
    if isinstance(value, str) and value in allowed:
        return value
    raise InvalidInput(f"priority must be one of {', '.join(allowed)}.", errors.PRIORITY_INVALID)


def asked_priority(value: object, *, staff: bool, question: bool) -> str:
    """A check-in's `priority`: null, "" or one of PRIORITIES (else priority_invalid); taken
    from staff, from the kiosk only while the priority question is on (normal or priority),
    else normal."""
    if value is None or value == "":
        return "normal"
    if value not in PRIORITIES:
        raise InvalidInput(
            f"priority must be one of {', '.join(PRIORITIES)}.", errors.PRIORITY_INVALID
        )
    if not staff and not question:
        return "normal"
    return checked_priority(value, staff=staff)


def line_selector(value: object) -> str | int | None:
    """A check-in's `line`: a prefix (any case) or an id, as JSON or form text; None: the
    default line."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.isdecimal() and len(text) < 10 else text.upper()
    raise _unavailable()


def _unavailable() -> InvalidInput:
    return InvalidInput(
        "That line is not taking check-ins now; choose another.", errors.LINE_UNAVAILABLE
    )


def choose_line(lines: Sequence[Line], selector: str | int | None, now: str, tz: str) -> Line:
    """The line a check-in joins: the one asked for, or the first active line open now by
    position. Unknown, inactive or closed: line_unavailable."""
    if selector is None:
        candidates = [line for line in lines if line.active]
    else:
        candidates = [
            line
            for line in lines
            if (line.id == selector if isinstance(selector, int) else line.prefix == selector)
        ]
    for line in candidates:
        if line.active and line.open_at(now, tz):
            return line
    raise _unavailable()


# --- the call order --------------------------------------------------------------------


# The waiting patients of each line as the call order reads them, by line id.
ByLine = dict[int, list[ordering.Waiting]]
_PRIORITY = {priority.value: priority for priority in ordering.Priority}
# SQL: a stored timestamp as the seconds ordering.Waiting takes (in C, rounded to the ms it
# was written with): on every check-in and call the store reads every waiting patient's.
SECONDS_SQL = "round((julianday({}) - 2440587.5) * 86400.0, 3)"


def waiting(entry_id: int, priority: str, seconds: float) -> ordering.Waiting:
    return ordering.Waiting(entry_id, _PRIORITY[priority], seconds)


def call(
    at: float, by: int | None, ended_at: float | None, priority: str, repeat: bool
) -> estimates.Call:
    """A line's call as the wait estimate reads it, from the stored priority's text."""
    return estimates.Call(at, by, ended_at, _PRIORITY[priority], repeat)


def seconds(text: str) -> float:
    """A stored UTC timestamp in seconds, as SECONDS_SQL gives it."""
    return round(datetime.fromisoformat(text).timestamp(), 3)


def _rule(rule: dict[str, Any] | None) -> ordering.Rule:
    return ordering.Rule.from_json(rule) if rule is not None else ordering.DEFAULT_RULE


def line_order(
    people: list[ordering.Waiting], rule: dict[str, Any] | None, history: Sequence[str], now: str
) -> list[ordering.Waiting]:
    """One line's predicted call order (what repeated calls would give, nobody arriving):
    ordering.call_order. `history`: the classes of the line's recent calls, newest last."""
    return ordering.call_order(people, _rule(rule), ordering.streak_of(history), seconds(now))


def places(
    by_line: ByLine,
    rules: dict[int, dict[str, Any] | None],
    histories: dict[int, list[str]],
    now: str,
) -> dict[int, int]:
    """Entry id -> its 1-based place in its own line's call order."""
    result: dict[int, int] = {}
    for line_id, people in by_line.items():
        order = line_order(people, rules.get(line_id), histories.get(line_id, ()), now)
        result.update({w.entry_id: place for place, w in enumerate(order, 1)})
    return result


def line_waits(
    people: list[ordering.Waiting],
    rule: dict[str, Any] | None,
    history: Sequence[str],
    activity: estimates.LineActivity,
) -> dict[int, estimates.WaitRange | None]:
    """One line's waiting patients' estimated waits (estimates.estimate_line) under its
    stored rule and its recent calls' classes (newest last), entry id -> range or None."""
    streak = ordering.streak_of(history)
    return estimates.estimate_line(people, _rule(rule), streak, activity)


def call_class(patient: ordering.Waiting, rule: dict[str, Any] | None, now: str) -> str:
    """What calling this patient now counts as in the line's history (ordering.call_class):
    urgent, aged (waited the rule's max_wait_minutes), else its priority."""
    return str(ordering.call_class(patient, _rule(rule), seconds(now)))


def next_across(
    by_line: ByLine,
    rules: dict[int, dict[str, Any] | None],
    histories: dict[int, list[str]],
    now: str,
) -> tuple[int, ordering.Waiting] | None:
    """(line id, patient) a doctor serving these lines calls next: each line's next by its
    rule (ordering.next_up), then across lines urgent first, then aged, then the longest
    waiting."""
    at = seconds(now)
    heads = []
    for line_id, people in by_line.items():
        rule = _rule(rules.get(line_id))
        streak = ordering.streak_of(histories.get(line_id, ()))
        head = ordering.next_up(people, rule, streak, at)
        if head is not None:
            rank = {"urgent": 0, "aged": 1}.get(ordering.call_class(head, rule, at), 2)
            heads.append((rank, head.check_in_time, head.entry_id, line_id, head))
    if not heads:
        return None
    best = min(heads, key=lambda head: head[:3])
    return best[3], best[4]


# --- fast paths for the writer (make bench: the check-in and call-next cells) -------------


@dataclass(frozen=True, slots=True)
class Counts:
    """A line's waiting patients by class, as the call order sorts them."""

    urgent: int = 0
    aged: int = 0  # not urgent, waited the rule's max_wait_minutes
    priority: int = 0  # not aged
    normal: int = 0  # not aged


def aged_cutoff(rule: dict[str, Any] | None, now: str) -> str | None:
    """The stored timestamp at or before which a check-in has aged under `rule`; None: no
    ageing. (Stored timestamps compare as text.)"""
    minutes = _rule(rule).max_wait_minutes
    if minutes is None:
        return None
    return format_time(datetime.fromisoformat(now) - timedelta(minutes=minutes))


def newcomer_place(
    counts: Counts, priority: str, rule: dict[str, Any] | None, history: Sequence[str]
) -> int:
    """The place in ordering.call_order of the newest check-in (counted in `counts`, of
    class `priority`, not aged), from the counts alone: what a check-in answers without
    reading every waiting patient. Equal to the index in call_order + 1 (tests/test_lines.py
    checks it against call_order)."""
    if priority == "urgent":
        return counts.urgent
    before = counts.urgent + counts.aged
    p, n = counts.priority, counts.normal
    checked = _rule(rule)
    if checked.mode is ordering.Mode.STRICT:
        return before + (p if priority == "priority" else p + n)
    streak = ordering.streak_of(history)
    taken_p = taken_n = 0
    while taken_p < p and taken_n < n:  # call_order's loop, a whole turn at a time
        if ordering.priority_turn(checked, streak):
            turn, quota = ordering.CallClass.PRIORITY, checked.priority or ordering.MAX_TURN
        else:
            turn, quota = ordering.CallClass.NORMAL, checked.normal or ordering.MAX_TURN
        left = max(quota - streak.length, 1) if streak.run == turn else quota
        if turn == ordering.CallClass.PRIORITY:
            step = min(left, p - taken_p)
            taken_p += step
            if priority == "priority" and taken_p == p:
                return before + taken_p + taken_n
        else:
            step = min(left, n - taken_n)
            taken_n += step
            if priority == "normal" and taken_n == n:
                return before + taken_p + taken_n
        in_row = step + (streak.length if streak.run == turn else 0)
        streak = ordering.Streak(turn, min(in_row, ordering.MAX_TURN))
    # The other class ran out first: the newcomer's class follows to its end, last of all.
    return before + p + n
