"""A line's call order (ordering.py): examples of each rule, then Hypothesis against a model.

The model is a clinic simulated tick by tick: patients arrive at any second, the doctor calls
next every `s` seconds while anyone waits, the line's history is what call_class said of each
call. Over every run the tests assert: call_order[0] is next_up; priority never takes more than
P counted calls in a row while a normal waits (nor normal more than N while a priority waits);
strict mode never calls a normal while a priority waits; FIFO within each class; and with
ageing on, the bound on every wait stated in docs/call-order.md:

    wait(x) < 60·M + (U + A + 1)·s

where M is max_wait_minutes, A the patients (non-urgent) who checked in before x and still
waited when x reached M minutes, U the urgent patients called from that moment until x's call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkin_appliance import errors
from checkin_appliance.domain import InvalidInput
from checkin_appliance.ordering import (
    DEFAULT_RULE,
    NO_STREAK,
    CallClass,
    Mode,
    Priority,
    Rule,
    Streak,
    Waiting,
    call_class,
    call_order,
    next_up,
    streak_after,
    streak_of,
)

N, P, U = Priority.NORMAL, Priority.PRIORITY, Priority.URGENT
MINUTE = 60
NO_AGEING = Rule.from_json(
    {"mode": "interleave", "priority": 2, "normal": 1, "max_wait_minutes": None}
)
STRICT = Rule.from_json({"mode": "strict", "max_wait_minutes": None})
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def patients(*classes: Priority, start: float = 0, gap: float = MINUTE) -> list[Waiting]:
    """Entries 1, 2, … of the given classes, checked in one `gap` apart from `start`."""
    return [Waiting(i + 1, c, start + i * gap) for i, c in enumerate(classes)]


def ids(order: list[Waiting]) -> list[int]:
    return [w.entry_id for w in order]


def called_one_by_one(
    waiting: list[Waiting], rule: Rule, streak: Streak, now: float
) -> list[Waiting]:
    """What repeated next_up calls give with nobody arriving and the clock stopped."""
    left, order = list(waiting), []
    while (chosen := next_up(left, rule, streak, now)) is not None:
        order.append(chosen)
        streak = streak_after(streak, call_class(chosen, rule, now))
        left.remove(chosen)
    return order


# --- examples ------------------------------------------------------------------------------


def test_nobody_waiting() -> None:
    assert next_up([], DEFAULT_RULE, NO_STREAK, 0) is None
    assert call_order([], DEFAULT_RULE, NO_STREAK, 0) == []


def test_urgent_goes_first_oldest_first_and_does_not_count_in_the_streak() -> None:
    waiting = patients(N, P, U, P, U, N)
    order = call_order(waiting, NO_AGEING, streak_of(["priority"]), now=10 * MINUTE)
    # 3 and 5 first; then priority 2 completes the 2-priority turn; normal 1; priority 4; 6.
    assert ids(order) == [3, 5, 2, 1, 4, 6]
    assert streak_after(Streak(CallClass.PRIORITY, 1), "urgent") == Streak(CallClass.PRIORITY, 1)


def test_strict_calls_every_priority_before_any_normal() -> None:
    waiting = patients(N, N, P, N, P, P)
    assert ids(call_order(waiting, STRICT, streak_of(["priority"] * 9), 600)) == [3, 5, 6, 1, 2, 4]


def test_interleave_two_priority_then_one_normal() -> None:
    waiting = patients(N, N, N, P, P, P, P, P)
    order = call_order(waiting, NO_AGEING, NO_STREAK, now=600)
    assert ids(order) == [4, 5, 1, 6, 7, 2, 8, 3]


def test_interleave_turns_continue_from_the_history() -> None:
    waiting = patients(N, N, P, P)
    # Two priority calls just happened: it is a normal's turn.
    assert (
        next_up(waiting, NO_AGEING, streak_of(["normal", "priority", "priority"]), 600)
        == (waiting[0])
    )
    # One priority call since the last normal: priority again.
    assert (
        next_up(waiting, NO_AGEING, streak_of(["priority", "normal", "priority"]), 600)
        == (waiting[2])
    )


def test_when_a_class_is_empty_the_other_goes_on() -> None:
    only_priority = patients(P, P, P, P)
    assert ids(call_order(only_priority, NO_AGEING, NO_STREAK, 600)) == [1, 2, 3, 4]
    only_normal = patients(N, N, N)
    assert ids(call_order(only_normal, NO_AGEING, streak_of(["normal"]), 600)) == [1, 2, 3]


def test_a_normal_turn_started_by_an_empty_priority_class_lasts_n_calls() -> None:
    """1 priority : 3 normal. Nobody priority waited, so a normal was called: that call
    starts the normals' turn, and a priority arriving now waits for its other 2 calls."""
    rule = Rule.from_json(
        {"mode": "interleave", "priority": 1, "normal": 3, "max_wait_minutes": None}
    )
    waiting = [*patients(N, N, N, N), Waiting(9, P, 30 * MINUTE)]
    assert ids(call_order(waiting, rule, streak_of(["normal"]), 40 * MINUTE)) == [1, 2, 9, 3, 4]


def test_ageing_puts_a_long_wait_ahead_of_every_non_urgent_patient() -> None:
    rule = DEFAULT_RULE  # interleave 2:1, 45 minutes
    waiting = [
        Waiting(1, N, 0),
        Waiting(2, P, 10 * MINUTE),
        Waiting(3, P, 20 * MINUTE),
        Waiting(4, U, 50 * MINUTE),
        Waiting(5, P, 1 * MINUTE),
    ]
    # At 45:00 patient 1 has waited exactly 45 minutes: aged (the bound is inclusive).
    assert call_class(waiting[0], rule, 45 * MINUTE) == CallClass.AGED
    assert call_class(waiting[0], rule, 45 * MINUTE - 1) == CallClass.NORMAL
    # At 46:00 patients 1 and 5 (a priority one) are aged: oldest first, after the urgent one.
    assert ids(call_order(waiting, rule, NO_STREAK, 46 * MINUTE)) == [4, 1, 5, 2, 3]
    # Before 45:00 the interleave applies: two priority, then the normal.
    assert ids(call_order(waiting, rule, NO_STREAK, 44 * MINUTE)) == [4, 5, 2, 1, 3]


def test_aged_calls_leave_the_streak_as_it_was() -> None:
    assert streak_of(["priority", "aged", "urgent", "priority"]) == Streak(CallClass.PRIORITY, 2)
    assert streak_of(["normal", "priority", "aged"]) == Streak(CallClass.PRIORITY, 1)
    assert streak_of([]) == NO_STREAK
    assert streak_of(["urgent", "aged"]) == NO_STREAK


def test_streak_is_capped_at_ten_which_no_rule_can_tell_apart() -> None:
    assert streak_of(["normal"] * 25) == Streak(CallClass.NORMAL, 10)


def test_ageing_off_waits_by_the_rule_alone() -> None:
    waiting = [Waiting(1, N, 0), Waiting(2, P, 100 * MINUTE)]
    assert ids(call_order(waiting, STRICT, NO_STREAK, 480 * MINUTE)) == [2, 1]
    strict_aged = Rule.from_json({"mode": "strict", "max_wait_minutes": 60})
    assert ids(call_order(waiting, strict_aged, NO_STREAK, 60 * MINUTE)) == [1, 2]


def test_equal_check_in_times_go_by_entry_id() -> None:
    waiting = [Waiting(7, N, 5.0), Waiting(3, N, 5.0), Waiting(5, N, 5.0)]
    assert ids(call_order(waiting, DEFAULT_RULE, NO_STREAK, 6.0)) == [3, 5, 7]


def test_call_this_patient_counts_as_the_class_it_was_called_as() -> None:
    """An override is recorded with call_class like any call: a normal called out of turn
    counts as that normal's call, and the next turn goes on from there."""
    waiting = patients(P, P, N, N)
    rule = NO_AGEING
    history = [call_class(waiting[3], rule, 600)]  # staff called patient 4 by hand
    assert history == [CallClass.NORMAL]
    left = waiting[:3]
    assert ids(call_order(left, rule, streak_of(history), 600)) == [1, 2, 3]


def test_the_worked_example_of_the_docs() -> None:
    """docs/call-order.md's table: interleave 2:1, max wait 45 minutes, one call every
    5 minutes from 9:00; arrivals at the minutes shown."""
    arrivals = {
        1: (N, 8 * 60 + 40),
        2: (N, 8 * 60 + 45),
        3: (P, 8 * 60 + 50),
        4: (N, 8 * 60 + 52),
        5: (P, 8 * 60 + 55),
        6: (P, 8 * 60 + 58),
        7: (U, 9 * 60 + 7),
        8: (P, 9 * 60 + 12),
        9: (P, 9 * 60 + 16),
    }
    clock = [9 * 60 + 5 * k for k in range(9)]  # 9:00 … 9:40
    history: list[CallClass] = []
    called: list[tuple[int, int, CallClass]] = []
    waiting: list[Waiting] = []
    for minute in clock:
        waiting += [
            Waiting(i, c, at * MINUTE)
            for i, (c, at) in arrivals.items()
            if minute - 5 < at <= minute or (minute == clock[0] and at <= minute)
        ]
        now = minute * MINUTE
        if minute == 9 * 60 + 20:  # the places shown at 9:16, once entry 9 checked in
            shown = call_order(waiting, DEFAULT_RULE, streak_of(history), (9 * 60 + 16) * MINUTE)
            assert ids(shown) == [6, 8, 2, 9, 4]
        chosen = next_up(waiting, DEFAULT_RULE, streak_of(history), now)
        assert chosen is not None
        history.append(call_class(chosen, DEFAULT_RULE, now))
        called.append((minute, chosen.entry_id, history[-1]))
        waiting.remove(chosen)
    assert called == [
        (9 * 60 + 0, 3, CallClass.PRIORITY),
        (9 * 60 + 5, 5, CallClass.PRIORITY),
        (9 * 60 + 10, 7, CallClass.URGENT),
        (9 * 60 + 15, 1, CallClass.NORMAL),
        (9 * 60 + 20, 6, CallClass.PRIORITY),
        (9 * 60 + 25, 8, CallClass.PRIORITY),
        (9 * 60 + 30, 2, CallClass.AGED),
        (9 * 60 + 35, 4, CallClass.NORMAL),
        (9 * 60 + 40, 9, CallClass.PRIORITY),
    ]


# --- the rule's JSON -------------------------------------------------------------------


def test_default_rule_is_interleave_two_to_one_with_45_minutes() -> None:
    assert DEFAULT_RULE.to_json() == {
        "mode": "interleave",
        "priority": 2,
        "normal": 1,
        "max_wait_minutes": 45,
    }
    assert Rule.from_json({"mode": "interleave"}) == DEFAULT_RULE


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"mode": "strict"}, Rule(Mode.STRICT, None, None, 45)),
        ({"mode": "strict", "max_wait_minutes": None}, Rule(Mode.STRICT, None, None, None)),
        (
            {"mode": "interleave", "priority": 10, "normal": 1, "max_wait_minutes": 480},
            Rule(Mode.INTERLEAVE, 10, 1, 480),
        ),
        (
            {"mode": "interleave", "priority": 1, "normal": 10, "max_wait_minutes": 5},
            Rule(Mode.INTERLEAVE, 1, 10, 5),
        ),
    ],
)
def test_valid_rules_round_trip(obj: dict[str, object], expected: Rule) -> None:
    rule = Rule.from_json(obj)
    assert rule == expected
    assert Rule.from_json(rule.to_json()) == rule


@pytest.mark.parametrize(
    ("obj", "named"),
    [
        (None, "object"),
        (["strict"], "object"),
        ({}, "mode"),
        ({"mode": "fifo"}, "mode"),
        ({"mode": ["strict"]}, "mode"),
        ({"mode": "strict", "priority": 2}, "priority"),
        ({"mode": "interleave", "ratio": "2:1"}, "ratio"),
        ({"mode": "interleave", "priority": 0}, "priority"),
        ({"mode": "interleave", "priority": 11}, "priority"),
        ({"mode": "interleave", "priority": 2.0}, "priority"),
        ({"mode": "interleave", "priority": True}, "priority"),
        ({"mode": "interleave", "normal": "1"}, "normal"),
        ({"mode": "interleave", "normal": None}, "normal"),
        ({"mode": "interleave", "max_wait_minutes": 4}, "max_wait_minutes"),
        ({"mode": "strict", "max_wait_minutes": 481}, "max_wait_minutes"),
        ({"mode": "strict", "max_wait_minutes": False}, "max_wait_minutes"),
    ],
)
def test_invalid_rules_are_call_rule_invalid_naming_the_key(obj: object, named: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        Rule.from_json(obj)
    assert raised.value.code is errors.CALL_RULE_INVALID
    assert raised.value.code.status == 400
    assert named in raised.value.message


# --- Hypothesis: the order itself ---------------------------------------------------------

CLASSES = st.sampled_from([N, P, U])
WAITS = st.one_of(st.integers(5, 30), st.integers(5, 480))


def rules(max_wait: st.SearchStrategy[int | None]) -> st.SearchStrategy[Rule]:
    return st.builds(
        Rule,
        mode=st.sampled_from([Mode.STRICT, Mode.INTERLEAVE]),
        priority=st.integers(1, 10),
        normal=st.integers(1, 10),
        max_wait_minutes=max_wait,
    ).map(lambda rule: Rule.from_json(rule.to_json()))


RULES = rules(st.one_of(st.none(), WAITS))
HISTORY = st.lists(st.sampled_from(list(CallClass)), max_size=30)


@st.composite
def lines(draw: st.DrawFn) -> list[Waiting]:
    """Waiting patients with distinct ids; check-in times in whole seconds, ties allowed."""
    count = draw(st.integers(0, 40))
    entry_ids = draw(st.lists(st.integers(1, 10_000), min_size=count, max_size=count, unique=True))
    return [
        Waiting(entry_id, draw(CLASSES), draw(st.integers(0, 8 * 3600))) for entry_id in entry_ids
    ]


def model_next(waiting: list[Waiting], rule: Rule, history: list[CallClass], now: int) -> Waiting:
    """The rule restated from the whole history, as one sort: urgent, then aged, then the
    class whose turn it is, then the other; oldest (then lowest id) first within each."""
    counted = [c for c in history if c in (CallClass.PRIORITY, CallClass.NORMAL)]
    run = 0
    while run < len(counted) and counted[-1 - run] == counted[-1]:
        run += 1
    if rule.mode is Mode.STRICT or not counted:
        turn = Priority.PRIORITY
    elif counted[-1] == CallClass.PRIORITY:
        turn = Priority.PRIORITY if run < rule.priority else Priority.NORMAL
    else:
        turn = Priority.NORMAL if run < rule.normal else Priority.PRIORITY

    def rank(w: Waiting) -> tuple[int, float, int]:
        if w.priority is Priority.URGENT:
            group = 0
        elif (
            rule.max_wait_minutes is not None
            and now - w.check_in_time >= rule.max_wait_minutes * 60
        ):
            group = 1
        else:
            group = 2 if w.priority is turn else 3
        return (group, w.check_in_time, w.entry_id)

    return min(waiting, key=rank)


@SETTINGS
@given(waiting=lines(), rule=RULES, history=HISTORY, now=st.integers(0, 10 * 3600))
def test_call_order_is_what_repeated_next_up_gives(
    waiting: list[Waiting], rule: Rule, history: list[CallClass], now: int
) -> None:
    streak = streak_of(history)
    order = call_order(waiting, rule, streak, now)
    assert order == called_one_by_one(waiting, rule, streak, now)
    assert sorted(ids(order)) == sorted(ids(waiting))
    if waiting:
        assert order[0] == next_up(waiting, rule, streak, now)
        assert order[0] == model_next(waiting, rule, history, now)


@SETTINGS
@given(history=HISTORY)
def test_streak_of_history_is_streak_after_each_call(history: list[CallClass]) -> None:
    streak = NO_STREAK
    for called in history:
        streak = streak_after(streak, called)
    assert streak_of(history) == streak


# --- Hypothesis: a clinic simulated --------------------------------------------------------


@dataclass
class Call:
    at: int
    patient: Waiting
    as_class: CallClass
    waiting: list[Waiting]  # who waited when the call was made, the called one included


@dataclass
class Clinic:
    rule: Rule
    seconds_per_call: int
    calls: list[Call] = field(default_factory=list)

    def run(self, arrivals: list[list[tuple[Priority, int]]]) -> None:
        """Tick k is at k·s seconds: the tick's arrivals (offsets within the tick before it)
        join, then the doctor calls next if anyone waits. After the last arrivals the ticks
        go on until the line is empty, so every patient is called."""
        s = self.seconds_per_call
        waiting: list[Waiting] = []
        history: list[CallClass] = []
        entry_id = 0
        tick = 0
        while tick < len(arrivals) or waiting:
            now = tick * s
            for priority, offset in arrivals[tick] if tick < len(arrivals) else []:
                entry_id += 1
                waiting.append(Waiting(entry_id, priority, now - s + 1 + offset % s))
            if waiting:
                streak = streak_of(history)
                chosen = next_up(waiting, self.rule, streak, now)
                assert chosen is not None
                assert call_order(waiting, self.rule, streak, now)[0] == chosen
                as_class = call_class(chosen, self.rule, now)
                self.calls.append(Call(now, chosen, as_class, list(waiting)))
                history.append(as_class)
                waiting.remove(chosen)
            tick += 1


ARRIVAL = st.tuples(CLASSES, st.integers(0, 10_000))
# A crowd before the first call, then up to 3 arrivals per tick against 1 call: the line
# stays long, so the turns and ageing both matter.
ARRIVALS = st.tuples(
    st.lists(ARRIVAL, max_size=30),
    st.lists(st.lists(ARRIVAL, max_size=3), min_size=5, max_size=40),
).map(lambda crowd_then_ticks: [crowd_then_ticks[0], *crowd_then_ticks[1]])


def simulate(rule: Rule, seconds_per_call: int, arrivals: list[list[tuple[Priority, int]]]):
    clinic = Clinic(rule, seconds_per_call)
    clinic.run(arrivals)
    return clinic.calls


@SETTINGS
@given(rule=RULES, s=st.integers(30, 900), arrivals=ARRIVALS)
def test_simulated_clinic_keeps_every_promise(
    rule: Rule, s: int, arrivals: list[list[tuple[Priority, int]]]
) -> None:
    calls = simulate(rule, s, arrivals)
    assert len(calls) == sum(len(tick) for tick in arrivals)
    counted = [c for c in calls if c.as_class in (CallClass.PRIORITY, CallClass.NORMAL)]

    for call in calls:
        # FIFO within each class: nobody of the called patient's class who checked in
        # earlier was still waiting.
        same = [w for w in call.waiting if w.priority == call.patient.priority]
        assert min(same, key=lambda w: (w.check_in_time, w.entry_id)) == call.patient
        # Urgent always first.
        if any(w.priority is U for w in call.waiting):
            assert call.patient.priority is U

    if rule.mode is Mode.STRICT:
        for call in counted:
            if call.as_class == CallClass.NORMAL:
                assert not any(w.priority is P for w in call.waiting)
    else:
        # Fairness: the (P+1)th priority call in a row only when no normal waits, the
        # (N+1)th normal call in a row only when no priority waits (urgent and aged aside).
        for i, call in enumerate(counted):
            cls = call.as_class
            quota = rule.priority if cls == CallClass.PRIORITY else rule.normal
            other = N if cls == CallClass.PRIORITY else P
            if i >= quota and all(c.as_class == cls for c in counted[i - quota : i]):
                assert not any(w.priority is other for w in call.waiting), (cls, i)


@SETTINGS
@given(
    rule=rules(WAITS),
    s=st.integers(120, 900),
    arrivals=ARRIVALS,
)
def test_ageing_bounds_every_wait(
    rule: Rule, s: int, arrivals: list[list[tuple[Priority, int]]]
) -> None:
    """wait(x) < 60·M + (U + A + 1)·s for every non-urgent x (see the module docstring)."""
    calls = simulate(rule, s, arrivals)
    assert rule.max_wait_minutes is not None
    limit = rule.max_wait_minutes * MINUTE
    called_at = {c.patient.entry_id: c.at for c in calls}
    for call in calls:
        x = call.patient
        if x.priority is U:
            continue
        aged_at = x.check_in_time + limit
        before = (x.check_in_time, x.entry_id)
        ahead = [
            c.patient
            for c in calls
            if c.patient.priority is not U
            and (c.patient.check_in_time, c.patient.entry_id) < before
            and called_at[c.patient.entry_id] >= aged_at
        ]
        meanwhile = [c for c in calls if aged_at <= c.at < call.at]
        urgent = [c for c in meanwhile if c.patient.priority is U]
        # Precisely: once x had aged, every call before x's took an urgent patient or one of
        # those who had checked in before x (all of them aged too).
        assert all(
            c.patient.priority is U or (c.patient.check_in_time, c.patient.entry_id) < before
            for c in meanwhile
        )
        assert call.at - x.check_in_time < limit + (len(urgent) + len(ahead) + 1) * s


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(CallClass)), max_size=40))
def test_the_streak_of_a_history_is_the_streak_after_each_of_its_calls(history: list) -> None:
    """streak_of (what every call reads) agrees with streak_after applied call by call,
    as the classes come from the database: plain text."""
    streak = NO_STREAK
    for called in history:
        streak = streak_after(streak, called)
    assert streak_of([str(c) for c in history]) == streak == streak_of(history)
