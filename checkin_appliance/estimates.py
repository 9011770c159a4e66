"""A waiting patient's wait as a range of minutes, from the line's calls today and in the past.

Pure: no I/O, no clock, no hidden state (like ordering.py). The store hands in the line's
calls (`LineActivity`) and the patient's place in ordering.call_order; this module answers
"10-20 min", or None ("—") when the box knows too little. The rule in words is
docs/wait-estimates.md; bench/estimate.py measures it against simulated clinic days.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
# What the box cannot foresee (a doctor leaving or arriving, urgent and priority patients
# overtaking, a no-show coming back): a relative spread on top of the service times' own.
# Chosen from what clinics report (a quarter of the wait either way), not fitted to the bench.
UNFORESEEN = 0.25
Z_80 = 1.2816  # the 10th and 90th percentiles of a normal: a range meant to hold 80 %
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
    """The wait of the patient at `place` (1-based, in ordering.call_order) until their call,
    None when the box knows too little (no service intervals, or no doctor serving)."""
    return estimate_waits([place], activity)[0]


def estimate_waits(places: Sequence[int], activity: LineActivity) -> list[WaitRange | None]:
    """estimate_wait for many places of one line, reading the line's calls once."""
    if any(place < 1 for place in places):
        raise ValueError("a place in line starts at 1")
    pace = _pace(activity)
    if pace is None or not places:
        return [None] * len(places)
    called_at = _call_times(pace, max(places))
    # Every place up to the last asked for: a place behind never shows less than one ahead
    # (the spread grows faster than the expected wait when doctors free up together).
    bounds: list[tuple[float, float]] = []
    low = high = 0.0
    for place, (expected, doctors) in enumerate(called_at, 1):
        # The k-th call among c doctors: the spread of ~k/c service times on each
        # (renewal theory: sd * sqrt(k) / c), and the unforeseen on top.
        spread = math.hypot(pace.sd * math.sqrt(place) / doctors, UNFORESEEN * expected)
        place_low, place_high = _bounds(expected, spread)
        low, high = max(low, place_low), max(high, place_high)
        bounds.append((low, high))
    return [rounded(*bounds[place - 1]) for place in places]


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
    """The 10th and 90th percentiles, in seconds, of a lognormal wait with that mean and
    spread: a wait cannot go below zero and runs long more often than short (doctors leave,
    priority patients overtake)."""
    if expected <= 0:
        return 0.0, 0.0
    sigma = math.sqrt(math.log1p((spread / expected) ** 2))
    median = expected / math.exp(sigma * sigma / 2)
    return median * math.exp(-Z_80 * sigma), median * math.exp(Z_80 * sigma)


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
