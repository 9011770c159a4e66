"""The call order of one line: urgent first, aged next, then priority and normal by the rule.

Pure: no I/O, no clock, no hidden state. The store hands in who waits, the line's rule, the
streak derived from the line's recent calls and the time; this module answers who is next
(`next_up`) and the whole predicted order (`call_order`, each patient's place in line).
The rule in words, with a worked example, is docs/call-order.md.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from checkin_appliance import errors
from checkin_appliance.domain import InvalidInput

MIN_TURN = 1  # calls in a row a class gets in interleave mode (its P or N)
MAX_TURN = 10
MIN_WAIT_MINUTES = 5
MAX_WAIT_MINUTES = 480


class Priority(enum.StrEnum):
    """A waiting patient's class, set at the kiosk or by staff."""

    NORMAL = "normal"
    PRIORITY = "priority"  # elderly, pregnant, disability
    URGENT = "urgent"


class CallClass(enum.StrEnum):
    """What a call counts as in the line's history: the patient's class, or AGED when the
    patient had waited max_wait_minutes (whatever their class, urgent aside)."""

    NORMAL = "normal"
    PRIORITY = "priority"
    URGENT = "urgent"
    AGED = "aged"


class Mode(enum.StrEnum):
    STRICT = "strict"
    INTERLEAVE = "interleave"


@dataclass(frozen=True, slots=True)
class Waiting:
    """One waiting patient as the order sees them. `check_in_time` is in seconds (the scale of
    time.time(), e.g. datetime.timestamp()); `now` passed beside it must be on the same scale.
    Ties in check_in_time go to the lower entry_id."""

    entry_id: int
    priority: Priority
    check_in_time: float


@dataclass(frozen=True, slots=True)
class Rule:
    """A line's call order rule. `priority`/`normal` are P and N (interleave only, else None);
    `max_wait_minutes` is M, None for no ageing."""

    mode: Mode = Mode.INTERLEAVE
    priority: int | None = 2
    normal: int | None = 1
    max_wait_minutes: int | None = 45

    @classmethod
    def from_json(cls, obj: object) -> Rule:
        """The rule from its stored or submitted JSON form. `mode` is required; a missing
        priority/normal/max_wait_minutes takes the default (2, 1, 45) and
        `"max_wait_minutes": null` turns ageing off. Raises InvalidInput (call_rule_invalid)
        for anything else (unknown keys included), naming the key."""
        if not isinstance(obj, dict):
            raise _invalid('must be an object such as {"mode": "strict"}.')
        mode_value = obj.get("mode")
        if not isinstance(mode_value, str) or mode_value not in (Mode.STRICT, Mode.INTERLEAVE):
            raise _invalid('mode must be "strict" or "interleave".')
        mode = Mode(mode_value)
        allowed = {"mode", "max_wait_minutes"}
        if mode is Mode.INTERLEAVE:
            allowed |= {"priority", "normal"}
        unknown = sorted(str(key) for key in obj if key not in allowed)
        if unknown:
            raise _invalid(f"{unknown[0]} is not a key of a {mode.value} rule.")
        max_wait = obj.get("max_wait_minutes", 45)
        if max_wait is not None:
            max_wait = _whole(obj, "max_wait_minutes", MIN_WAIT_MINUTES, MAX_WAIT_MINUTES, 45)
        if mode is Mode.STRICT:
            return cls(Mode.STRICT, None, None, max_wait)
        return cls(
            Mode.INTERLEAVE,
            _whole(obj, "priority", MIN_TURN, MAX_TURN, 2),
            _whole(obj, "normal", MIN_TURN, MAX_TURN, 1),
            max_wait,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form, every key written out (from_json(to_json()) == self)."""
        if self.mode is Mode.STRICT:
            return {"mode": "strict", "max_wait_minutes": self.max_wait_minutes}
        return {
            "mode": "interleave",
            "priority": self.priority,
            "normal": self.normal,
            "max_wait_minutes": self.max_wait_minutes,
        }


DEFAULT_RULE = Rule()


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(f"call rule: {message}", errors.CALL_RULE_INVALID)


def _whole(obj: dict[str, Any], key: str, low: int, high: int, default: int) -> int:
    value = obj.get(key, default)
    # bool is an int in Python; 2.0 is not a whole number in our JSON either.
    if type(value) is not int or not low <= value <= high:
        raise _invalid(f"{key} must be a whole number from {low} to {high}.")
    return value


@dataclass(frozen=True, slots=True)
class Streak:
    """The trailing run of the line's counted calls: its class (PRIORITY or NORMAL, None when
    no call counted yet) and length, capped at MAX_TURN (longer runs behave the same).
    Urgent and aged calls do not count: they leave the streak as it was."""

    run: CallClass | None = None
    length: int = 0


NO_STREAK = Streak()
_COUNTED = (CallClass.PRIORITY, CallClass.NORMAL)


def streak_after(streak: Streak, called: CallClass | str) -> Streak:
    """The streak once a patient was called as `called` (what call_class said for them)."""
    called = CallClass(called)
    if called not in _COUNTED:
        return streak
    if called == streak.run:
        return Streak(called, min(streak.length + 1, MAX_TURN))
    return Streak(called, 1)


def streak_of(history: Iterable[CallClass | str]) -> Streak:
    """The streak from the line's call history, oldest first and newest last (the classes
    call_class gave those calls). Only the trailing run matters: the store may pass just the
    calls back to the last change of counted class, or the last MAX_TURN counted ones."""
    # streak_after over the history, without a Streak per call (every call reads this).
    run: str | None = None
    length = 0
    for called in history:
        if called == CallClass.PRIORITY or called == CallClass.NORMAL:
            length = min(length + 1, MAX_TURN) if called == run else 1
            run = called
    return Streak(CallClass(run), length) if run is not None else NO_STREAK


def call_class(patient: Waiting, rule: Rule, now: float) -> CallClass:
    """What calling this patient now counts as in the line's history. The store records it
    for every call, including a "call this patient" override."""
    if patient.priority == Priority.URGENT:
        return CallClass.URGENT
    if rule.max_wait_minutes is not None and now - patient.check_in_time >= (
        rule.max_wait_minutes * 60
    ):
        return CallClass.AGED
    # As _classes sorts them: anything but urgent or priority waits as normal.
    return CallClass.PRIORITY if patient.priority == Priority.PRIORITY else CallClass.NORMAL


def priority_turn(rule: Rule, streak: Streak) -> bool:
    """True when the rule gives the next counted call to the priority class (it goes to the
    other class when nobody of this one waits)."""
    if rule.mode is Mode.STRICT:
        return True
    if streak.run == CallClass.PRIORITY:
        return streak.length < (rule.priority or MAX_TURN)
    if streak.run == CallClass.NORMAL:
        return streak.length >= (rule.normal or MAX_TURN)
    return True


def _key(patient: Waiting) -> tuple[float, int]:
    return (patient.check_in_time, patient.entry_id)


def _classes(
    waiting: Iterable[Waiting], rule: Rule, now: float
) -> tuple[list[Waiting], list[Waiting], list[Waiting], list[Waiting]]:
    """Urgent, aged, priority and normal patients, each oldest first."""
    urgent: list[Waiting] = []
    aged: list[Waiting] = []
    priority: list[Waiting] = []
    normal: list[Waiting] = []
    # Aged means check_in_time <= cutoff: the same test as call_class, done once per patient.
    cutoff = None if rule.max_wait_minutes is None else now - rule.max_wait_minutes * 60
    for patient in waiting:
        if patient.priority == Priority.URGENT:
            urgent.append(patient)
        elif cutoff is not None and patient.check_in_time <= cutoff:
            aged.append(patient)
        elif patient.priority == Priority.PRIORITY:
            priority.append(patient)
        else:
            normal.append(patient)
    for group in (urgent, aged, priority, normal):
        group.sort(key=_key)
    return urgent, aged, priority, normal


def next_up(waiting: Sequence[Waiting], rule: Rule, streak: Streak, now: float) -> Waiting | None:
    """Who *Call next* takes from this line now, None when nobody waits:
    the oldest urgent; else the oldest aged; else the oldest of the class whose turn it is
    (priority_turn), or of the other class when that one is empty."""
    best: dict[str, Waiting] = {}
    cutoff = None if rule.max_wait_minutes is None else now - rule.max_wait_minutes * 60
    for patient in waiting:
        if patient.priority == Priority.URGENT:
            group = "urgent"
        elif cutoff is not None and patient.check_in_time <= cutoff:
            group = "aged"
        elif patient.priority == Priority.PRIORITY:
            group = "priority"
        else:
            group = "normal"
        held = best.get(group)
        if held is None or _key(patient) < _key(held):
            best[group] = patient
    if "urgent" in best:
        return best["urgent"]
    if "aged" in best:
        return best["aged"]
    first, second = (
        ("priority", "normal") if priority_turn(rule, streak) else ("normal", "priority")
    )
    return best.get(first) or best.get(second)


def call_order(waiting: Sequence[Waiting], rule: Rule, streak: Streak, now: float) -> list[Waiting]:
    """Everyone waiting, in the order repeated next_up calls would take them if nobody new
    arrived and time stood still (ageing frozen at `now`): each patient's place in line is
    their index + 1 here."""
    urgent, aged, priority, normal = _classes(waiting, rule, now)
    order = urgent + aged  # these calls leave the streak as it is
    if rule.mode is Mode.STRICT:
        return order + priority + normal
    # A whole turn at a time: what is left of the class's P (or N) calls in a row.
    p = n = 0
    while p < len(priority) and n < len(normal):
        if priority_turn(rule, streak):
            turn = CallClass.PRIORITY
            taken = priority[p : p + _left(streak, turn, rule.priority)]
            p += len(taken)
        else:
            turn = CallClass.NORMAL
            taken = normal[n : n + _left(streak, turn, rule.normal)]
            n += len(taken)
        order.extend(taken)
        in_row = len(taken) + (streak.length if streak.run == turn else 0)
        streak = Streak(turn, min(in_row, MAX_TURN))
    order.extend(priority[p:])
    order.extend(normal[n:])
    return order


def _left(streak: Streak, turn: CallClass, quota: int | None) -> int:
    """Calls in a row still due to the class whose turn it is. At least 1 as priority_turn
    gave it the turn; the max() only makes sure call_order's loop always moves on."""
    quota = quota or MAX_TURN
    return max(quota - streak.length, 1) if streak.run == turn else quota
