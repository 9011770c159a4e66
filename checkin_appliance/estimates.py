"""A waiting patient's wait as a range of minutes, from the line's calls today and in the past.

Pure: no I/O, no clock, no hidden state (like ordering.py). The store hands in the line's
calls (`LineActivity`), who waits, the line's rule and streak (`estimate_line`, which hands
out the calls ahead with ordering.next_up); this module answers "10-20 min", or None ("—")
when the box knows too little. The rule in words is
docs/wait-estimates.md; bench/estimate.py measures it against simulated clinic days.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from checkin_appliance import ordering
from checkin_appliance.ordering import Priority

MINUTE = 60.0
RECENT_INTERVALS = 30  # today's newest service intervals the estimate reads (today's pace)
MIN_TODAY = 8  # fewer intervals today than this: the same weekday and hour in the past join
MIN_INTERVALS = 3  # fewer than this, today and past together: no estimate ("—")
TURNAROUND_CAP = 5 * MINUTE  # a doctor's gap before their next call counts when shorter
ACTIVE_GRACE = 15 * MINUTE  # a doctor whose last visit ended this recently still serves
IDLE_CAP = 60 * MINUTE  # ... and up to this long when nobody else called meanwhile
WEEK = 7 * 86400.0
# Doctors coming and going are read from the past weeks every FORECAST_STEP up to
# FORECAST_HORIZON ahead: within the hour either side of now that `past` holds.
FORECAST_STEP = 10 * MINUTE
FORECAST_HORIZON = 50 * MINUTE
# What the box cannot foresee (a doctor leaving or arriving unannounced, a burst of urgent
# patients): a relative spread on top of the service times' own and the overtakers' count.
# Chosen from what clinics report (a quarter of the wait either way), not fitted to the bench.
UNFORESEEN = 0.25
# Overtakers never take more than half of the calls: whatever today's rate, a wait at most
# doubles (a rate that high is a burst, not a pace to extrapolate).
MAX_OVERTAKEN = 0.5
PAST_SPAN = 2 * 3600.0  # the past weeks' slice of one week: an hour either side of now
Z_80 = 1.2816  # the 10th and 90th percentiles of a normal: the range's width
CAP_MEDIANS = 4.0  # an interval counts at most this many times the median one


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a visit of this line (call or call_next; a recall of the same visit is the
    same Call). Times in epoch seconds, on the scale of `LineActivity.now`."""

    at: float  # when the call was made
    by: int | None  # the credential that called (a doctor or room); None: unknown
    # When the visit left that doctor (done, no_show, requeue, cancel, transfer, not_seen);
    # None: still with them (called or in service).
    ended_at: float | None
    priority: Priority = Priority.NORMAL  # the called patient's class
    # The visit had been called before and was put back in line (a no-show who came back):
    # such a call can go ahead of patients who checked in before it came back.
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class LineActivity:
    """What the box knows about one line at `now`."""

    now: float
    today: Sequence[Call]  # this line's calls today (local clinic day), oldest first
    # This line's calls on the same local weekday within an hour either side of now's local
    # time, in the last few weeks (the store uses 4), oldest first.
    past: Sequence[Call] = ()


@dataclass(frozen=True, slots=True)
class WaitRange:
    """A wait in whole minutes, both ends on the rounding steps (see `rounded`)."""

    low_minutes: int
    high_minutes: int

    def __str__(self) -> str:
        return f"{self.low_minutes}\u2013{self.high_minutes} min"  # an en dash


@dataclass(frozen=True, slots=True)
class _Pace:
    mean: float  # seconds a doctor spends per call of this line, turnaround included
    sd: float  # the spread of that time, seconds
    free_at: tuple[float, ...]  # per serving doctor: seconds from now until they call again
    # Doctors arriving (+) or leaving (-) at seconds from now, as on this weekday and hour in
    # the past weeks; oldest first.
    changes: tuple[tuple[float, int], ...] = ()


def estimate_wait(place: int, activity: LineActivity) -> WaitRange | None:
    """The wait until their call of a normal patient at `place` (1-based) of a line where
    nobody ages: estimate_waits for one place."""
    return estimate_waits([place], activity)[0]


def estimate_waits(places: Sequence[int], activity: LineActivity) -> list[WaitRange | None]:
    """The waits of normal patients at `places` (1-based) of a line where nobody ages, as
    estimate_line would answer them; None when the box knows too little."""
    if any(place < 1 for place in places):
        raise ValueError("a place in line starts at 1")
    pace = _pace(activity)
    if pace is None or not places:
        return [None] * len(places)
    called_at = _call_times(pace, max(places))
    rates = _overtaking(activity)[Priority.NORMAL]
    ranges = list(_monotone(_range(pace, i, *at, rates, None) for i, at in enumerate(called_at, 1)))
    return [rounded(*ranges[place - 1]) for place in places]


def estimate_line(
    waiting: Sequence[ordering.Waiting],
    rule: ordering.Rule,
    streak: ordering.Streak,
    activity: LineActivity,
) -> dict[int, WaitRange | None]:
    """Each waiting patient's wait until their call (entry id -> range), None when the box
    knows too little (no service intervals, or no doctor serving). The calls ahead go out
    in the line's real order as time passes: who has aged by each call changes who is next."""
    pace = _pace(activity)
    if pace is None:
        return dict.fromkeys((patient.entry_id for patient in waiting), None)
    called_at = _call_times(pace, len(waiting))
    order, aged_from = _order_ahead(
        waiting, rule, streak, [activity.now + at for at, _ in called_at]
    )
    rates = _overtaking(activity)
    limit = None if rule.max_wait_minutes is None else rule.max_wait_minutes * MINUTE
    result: dict[int, WaitRange | None] = {}
    # A patient behind another of the same class never shows less than them (the spread
    # grows faster than the expected wait when doctors free up together).
    ahead: dict[Priority, tuple[float, float]] = {}
    for place, (patient, (expected, doctors)) in enumerate(zip(order, called_at, strict=True), 1):
        # Priority patients go ahead only until this patient, or anyone ahead, has aged.
        window = None if aged_from is None else aged_from - activity.now
        if limit is not None:
            ages_in = limit - (activity.now - patient.check_in_time)
            window = ages_in if window is None else min(window, ages_in)
        low, high = _range(pace, place, expected, doctors, rates[patient.priority], window)
        before = ahead.get(patient.priority, (0.0, 0.0))
        ahead[patient.priority] = low, high = max(low, before[0]), max(high, before[1])
        result[patient.entry_id] = rounded(low, high)
    return result


def _order_ahead(
    waiting: Sequence[ordering.Waiting],
    rule: ordering.Rule,
    streak: ordering.Streak,
    moments: Sequence[float],
) -> tuple[list[ordering.Waiting], float | None]:
    """Who each of the next calls takes, made at `moments`: ordering.next_up at each
    moment, so a patient who reaches the line's limit meanwhile goes ahead as aged. Only
    each class's oldest can be next, so next_up is handed those (a line of n costs n)."""
    classes: dict[Priority, list[ordering.Waiting]] = {}
    for patient in sorted(waiting, key=lambda w: (w.check_in_time, w.entry_id), reverse=True):
        classes.setdefault(patient.priority, []).append(patient)  # oldest last
    order = []
    aged_from = None
    for moment in moments[: len(waiting)]:
        heads = [people[-1] for people in classes.values() if people]
        chosen = ordering.next_up(heads, rule, streak, moment)
        assert chosen is not None  # someone waits while moments remain
        classes[chosen.priority].pop()
        called = ordering.call_class(chosen, rule, moment)
        if called == ordering.CallClass.AGED and aged_from is None:
            aged_from = moment
        streak = ordering.streak_after(streak, called)
        order.append(chosen)
    return order, aged_from


def _monotone(ranges: Iterable[tuple[float, float]]) -> Iterable[tuple[float, float]]:
    low = high = 0.0
    for place_low, place_high in ranges:
        low, high = max(low, place_low), max(high, place_high)
        yield low, high


def _range(
    pace: _Pace,
    place: int,
    expected: float,
    doctors: int,
    rates: tuple[float, float],
    window: float | None,
) -> tuple[float, float]:
    """The unrounded range, seconds, of the patient called k-th (`place`) among `doctors`
    at `expected` seconds from now, overtaken at `rates` (_overtaking)."""
    return _bounds(*_with_overtakers(pace, place, expected, doctors, rates, window))


def _with_overtakers(
    pace: _Pace,
    place: int,
    expected: float,
    doctors: int,
    rates: tuple[float, float],
    window: float | None,
) -> tuple[float, float]:
    """The expected wait and its spread once overtakers are counted: patients who come
    during the wait and are called first, each taking a call of the pace. `rates` are
    _overtaking's (at any time, only while nobody aged waits), the second counted for
    `window` seconds (None: the whole wait). The wait W solves
    W = expected + (anytime * W + unaged * min(W, window)) * mean / doctors, and the number
    of overtakers is Poisson: its spread joins the service times' own."""
    per_call = pace.mean / doctors
    anytime = min(rates[0] * per_call, MAX_OVERTAKEN)
    unaged = min(rates[1] * per_call, MAX_OVERTAKEN - anytime)
    wait = expected / (1 - anytime - unaged)
    limit = math.inf if window is None else max(window, 0.0)
    if wait > limit:  # the unaged overtakers stop coming at the window
        wait = (expected + unaged * limit) / (1 - anytime)
    overtakers = (anytime * wait + unaged * min(wait, limit)) / per_call
    # The k-th call among c doctors: the spread of ~k/c service times on each (renewal
    # theory: sd * sqrt(k) / c), the overtakers' count, and the unforeseen on top.
    spread = math.hypot(
        pace.sd * math.sqrt(place + overtakers) / doctors,
        per_call * math.sqrt(overtakers),
        UNFORESEEN * wait,
    )
    return wait, spread


def _overtaking(activity: LineActivity) -> dict[Priority, tuple[float, float]]:
    """Per class of a waiting patient: (at any time, only while nobody aged waits), calls
    per second that go ahead of them though they came later. Urgent calls go ahead of
    everyone else, and a visit put back in line ahead of its own class and those below, at
    any time; priority calls go ahead of normal patients, but only while nobody who reached
    the line's limit waits (aged patients are called first, oldest first). Read from
    today's newest calls (those the pace reads), or from the past weeks at this hour while
    today has too few (the past slice spans PAST_SPAN a week)."""
    calls: Sequence[Call] = activity.today[-RECENT_INTERVALS:]
    if len(calls) >= MIN_TODAY:
        span = activity.now - calls[0].at
    else:
        weeks = {round((activity.now - call.at) / WEEK) for call in activity.past}
        weeks.discard(0)
        calls, span = activity.past, len(weeks) * PAST_SPAN
    anytime = dict.fromkeys(Priority, 0)
    unaged = dict.fromkeys(Priority, 0)
    for call in calls:
        if call.repeat:
            for waiting in _AT_OR_BELOW[call.priority]:
                anytime[waiting] += 1
        elif call.priority == Priority.URGENT:
            anytime[Priority.PRIORITY] += 1
            anytime[Priority.NORMAL] += 1
        elif call.priority == Priority.PRIORITY:
            unaged[Priority.NORMAL] += 1
    if span <= 0:
        return dict.fromkeys(Priority, (0.0, 0.0))
    return {p: (anytime[p] / span, unaged[p] / span) for p in Priority}


_AT_OR_BELOW = {
    Priority.URGENT: (Priority.URGENT, Priority.PRIORITY, Priority.NORMAL),
    Priority.PRIORITY: (Priority.PRIORITY, Priority.NORMAL),
    Priority.NORMAL: (Priority.NORMAL,),
}


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count). Not the
    statistics module: with decimal and fractions it costs the server half a MiB."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def rounded(low_seconds: float, high_seconds: float) -> WaitRange:
    """The range on steps people read at a glance: 5 minutes below 30, 15 below 120, then 30;
    the low end rounded down and the high end up (so the range holds the unrounded one), and
    at least one step wide."""
    low = max(low_seconds, 0.0) / MINUTE
    high = max(high_seconds, low_seconds, 0.0) / MINUTE
    low_step = _step(low)
    low_minutes = int(math.floor(low / low_step + 1e-9) * low_step)
    high_step = _step(high)
    high_minutes = int(math.ceil(high / high_step - 1e-9) * high_step)
    if high_minutes <= low_minutes:
        high_minutes = low_minutes + _step(low_minutes)
    return WaitRange(low_minutes, high_minutes)


def _step(minutes: float) -> int:
    return 5 if minutes < 30 else 15 if minutes < 120 else 30


def _bounds(expected: float, spread: float) -> tuple[float, float]:
    """The range, in seconds, for a lognormal wait with that mean and spread (a wait cannot
    go below zero and runs long more often than short): as wide as from its 10th to its
    90th percentile, centred on its median, so that the middle a patient reads is as often
    too early as too late (the 10th-90th span itself has its middle above the median)."""
    if expected <= 0:
        return 0.0, 0.0
    sigma = math.sqrt(math.log1p((spread / expected) ** 2))
    median = expected / math.exp(sigma * sigma / 2)
    half = median * math.sinh(Z_80 * sigma)  # half of median * (e^(z s) - e^(-z s))
    return max(median - half, 0.0), median + half


def _call_times(pace: _Pace, count: int) -> list[tuple[float, int]]:
    """Seconds from now until each of the next `count` calls, with the doctors serving then:
    each call goes to the doctor free first, who is then busy for the mean time per call. A
    doctor arriving is free at once; one leaving finishes their visit (the one free last
    goes); one doctor always stays (everyone checked in is seen)."""
    free = sorted(pace.free_at)
    changes = list(pace.changes)
    times = []
    for _ in range(count):
        while changes and changes[0][0] <= free[0]:
            at, change = changes.pop(0)
            for _ in range(change):
                bisect.insort(free, at)
            for _ in range(min(-change, len(free) - 1)):
                free.pop()
        at = free[0]
        times.append((at, len(free)))
        free.pop(0)
        bisect.insort(free, at + pace.mean)
    return times


def _intervals(calls: Sequence[Call]) -> list[float]:
    """Each ended call's time with its doctor, plus the doctor's turnaround to their next
    call of the line when shorter than TURNAROUND_CAP (a longer gap is a pause or an empty
    line, not the pace). Oldest first."""
    next_call: dict[int | None, float] = {}
    result: list[float] = []
    for call in reversed(calls):
        if call.ended_at is not None and call.ended_at >= call.at:
            interval = call.ended_at - call.at
            following = next_call.get(call.by) if call.by is not None else None
            if following is not None and 0 <= following - call.ended_at < TURNAROUND_CAP:
                interval = following - call.at
            result.append(interval)
        next_call[call.by] = call.at
    result.reverse()
    return result


def _shape(intervals: list[float]) -> tuple[float, float, list[float]] | None:
    """The mean and spread of the intervals, each capped at CAP_MEDIANS times their median:
    a visit left open for hours (done pressed late) must not swing the pace, while the long
    visits every clinic has still count (a wait is a sum of visits: its mean, not a median,
    is what adds up). With the capped intervals, for _residual."""
    positive = sorted(x for x in intervals if x > 0)
    if len(positive) < MIN_INTERVALS:
        return None
    cap = CAP_MEDIANS * positive[len(positive) // 2]
    capped = [min(x, cap) for x in positive]
    mean = math.fsum(capped) / len(capped)
    variance = math.fsum((x - mean) ** 2 for x in capped) / len(capped)
    return mean, math.sqrt(variance), capped


def _residual(capped: Sequence[float], elapsed: float, mean: float) -> float:
    """What remains, on average, of a visit already `elapsed` long: read from the (capped)
    intervals that lasted longer; with none, a tenth of the mean (it is overdue, or its end
    was not recorded: either way no reason to expect much more)."""
    longer = [x - elapsed for x in capped if x > elapsed]
    return math.fsum(longer) / len(longer) if longer else mean / 10


def _past_doctors(past: Sequence[Call], now: float, mean: float) -> list[int]:
    """How many doctors served the line at now + 0, FORECAST_STEP, ... FORECAST_HORIZON on
    this weekday in the past weeks (the median over the weeks). A doctor serves from their
    first call to the end of their last one in the slice, give or take a visit."""
    spans: dict[tuple[int, int | None], list[float]] = {}
    for call in past:
        weeks = round((now - call.at) / WEEK)
        if weeks < 1:
            continue
        start = call.at + weeks * WEEK - now
        end = (call.ended_at if call.ended_at is not None else call.at) + weeks * WEEK - now
        span = spans.setdefault((weeks, call.by), [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    if not spans:
        return []
    weeks_seen = sorted({weeks for weeks, _ in spans})
    grace = max(mean, TURNAROUND_CAP)
    counts = []
    for step in range(int(FORECAST_HORIZON // FORECAST_STEP) + 1):
        moment = step * FORECAST_STEP
        present = dict.fromkeys(weeks_seen, 0)
        for (weeks, _), (start, end) in spans.items():
            if start - grace <= moment <= end + grace:
                present[weeks] += 1
        counts.append(round(median(list(present.values()))))
    return counts


def _pace(activity: LineActivity) -> _Pace | None:
    now = activity.now
    today = _intervals(activity.today)[-RECENT_INTERVALS:]
    samples = today
    if len(today) < MIN_TODAY:
        samples = today + _intervals(activity.past)
    shape = _shape(samples)
    if shape is None:
        return None
    mean, sd, capped = shape
    free_at = list(_serving(activity.today, now, capped, mean))
    past_doctors = _past_doctors(activity.past, now, mean)
    if not free_at and past_doctors:
        # Nobody serves the line just now (first call of the day, or a pause): as many
        # doctors as on this weekday and hour before, none of them known to be busy.
        free_at = [0.0] * max(1, past_doctors[0])
    if not free_at:
        return None
    changes = tuple(
        (step * FORECAST_STEP, count - previous)
        for step, (previous, count) in enumerate(itertools.pairwise(past_doctors), 1)
        if count != previous
    )
    return _Pace(mean, sd, tuple(free_at), changes)


def _serving(
    calls: Sequence[Call], now: float, capped: Sequence[float], mean: float
) -> Iterable[float]:
    """Seconds until each doctor serving the line calls again: what remains of the visit
    they have now, or 0 for one who is free. A free doctor still serves when their last visit
    ended less than ACTIVE_GRACE ago, or when nobody called since (the line was empty, they
    wait for patients) and it ended less than IDLE_CAP ago; a doctor who let others call for
    them has left (a break, the end of their shift)."""
    latest: dict[int | None, Call] = {}
    for call in calls:
        latest[call.by] = call  # oldest first: the last one wins
    last_call = calls[-1].at if calls else 0.0
    for call in latest.values():
        if call.ended_at is None:
            yield _residual(capped, max(now - call.at, 0.0), mean)
        elif now - call.ended_at < ACTIVE_GRACE or (
            last_call <= call.ended_at + TURNAROUND_CAP and now - call.ended_at < IDLE_CAP
        ):
            yield 0.0
