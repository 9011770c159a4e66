"""Statistics over a range of local days: percentiles, fixed-bin histograms, rates, the
weekday x hour arrivals map and the period before, from what the store's aggregate queries
return. Pure: no I/O, no clock (like estimates.py), so each rule is tested on its own."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from checkin_appliance import errors, lines
from checkin_appliance.domain import InvalidInput, format_time

# The longest range asked for at once: a year (a leap year's 366 days). make bench's
# bench.stats times a year of a busy clinic against the 300 ms target.
MAX_DAYS = 366
# Arrivals are counted by UTC quarter hour in SQL (store.arrival_buckets), then moved to the
# clinic's local weekday and hour here: every zone's offset is a whole number of quarters.
QUARTER_SECONDS = 900
# The histograms' fixed bins, in minutes: [0, 5), [5, 10), ... [120, ∞). Fixed, so two periods,
# lines or doctors are drawn on the same axis.
BIN_EDGES_MINUTES = (0, 5, 10, 15, 20, 30, 45, 60, 90, 120)
# Final states a visit ends in; the open ones (waiting, called, in_service) are counted apart.
OUTCOMES = ("done", "no_show", "cancelled", "not_seen")
OPEN_STATES = ("waiting", "called", "in_service")


@dataclass(frozen=True, slots=True)
class Period:
    """Local days `first` to `last`, both included."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def previous(self) -> Period:
        """As many days, ending the day before this one starts (a week before a week, the
        31 days before a 31-day month)."""
        return Period(self.first - timedelta(days=self.days), self.first - timedelta(days=1))

    def utc_bounds(self, time_zone: str) -> tuple[str, str]:
        """Local midnight of `first` to local midnight after `last`, as stored timestamps
        (wall-clock midnights: a day with a change of the clocks has 23 or 25 hours)."""
        tz = lines.zone(time_zone)
        start = datetime.combine(self.first, time(), tzinfo=tz)
        end = datetime.combine(self.last + timedelta(days=1), time(), tzinfo=tz)
        return format_time(start), format_time(end)

    def as_json(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}


def period(first: str | None, last: str | None, today: date) -> Period:
    """The query's `from` and `to` (local dates, YYYY-MM-DD, both included). `to` defaults to
    today, `from` to `to` (one day). stats_range_invalid for a malformed date, `from` after
    `to`, or more than MAX_DAYS days."""
    end = _date(last, "to") if last is not None else today
    start = _date(first, "from") if first is not None else end
    if start > end:
        raise InvalidInput("from must not be after to.", errors.STATS_RANGE_INVALID)
    chosen = Period(start, end)
    if chosen.days > MAX_DAYS:
        raise InvalidInput(f"A range is at most {MAX_DAYS} days.", errors.STATS_RANGE_INVALID)
    try:  # the period before, and the midnight after `to`, must be dates too
        if chosen.previous().first.year < 2:  # its midnight may be in year 0 in UTC
            raise OverflowError
        chosen.last + timedelta(days=1)
    except OverflowError:
        raise InvalidInput("That range is out of bounds.", errors.STATS_RANGE_INVALID) from None
    return chosen


def _date(text: str, name: str) -> date:
    # fromisoformat alone takes "20260105" and week dates too: only YYYY-MM-DD is ours.
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise InvalidInput(f"{name} must be a date, YYYY-MM-DD.", errors.STATS_RANGE_INVALID)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{name} must be a date, YYYY-MM-DD.", errors.STATS_RANGE_INVALID
        ) from None


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile (0-1) of sorted values, linear between the two nearest ranks (numpy's
    default: the median of an even count is the mean of the middle two); None when empty."""
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def histogram(ordered: Sequence[float]) -> list[dict[str, Any]]:
    """Counts of seconds in BIN_EDGES_MINUTES' bins; the last bin has no upper end (null)."""
    counts = [0] * len(BIN_EDGES_MINUTES)
    edge = 1
    for value in ordered:  # sorted: one walk along the edges
        while edge < len(BIN_EDGES_MINUTES) and value >= BIN_EDGES_MINUTES[edge] * 60:
            edge += 1
        counts[edge - 1] += 1
    uppers = [*BIN_EDGES_MINUTES[1:], None]
    return [
        {"from_minutes": low, "to_minutes": high, "count": count}
        for low, high, count in zip(BIN_EDGES_MINUTES, uppers, counts, strict=True)
    ]


def distribution(seconds: Iterable[float]) -> dict[str, Any]:
    """count, median and p90 in whole seconds (null when there are none), and the histogram.
    A negative duration (a clock set back between two moves) counts as 0."""
    ordered = sorted(max(value, 0.0) for value in seconds)
    median = percentile(ordered, 0.5)
    p90 = percentile(ordered, 0.9)
    return {
        "count": len(ordered),
        "median_seconds": None if median is None else round(median),
        "p90_seconds": None if p90 is None else round(p90),
        "bins": histogram(ordered),
    }


def heat_map(quarters: Iterable[tuple[int, int]], time_zone: str) -> list[list[int]]:
    """7 x 24 counts, [weekday][hour] in the clinic's local time (Monday = 0), from counts
    per UTC quarter hour (its index: epoch seconds // QUARTER_SECONDS). The local hour is
    read at each quarter's own instant: right on both sides of a change of the clocks."""
    tz = lines.zone(time_zone)
    cells = [[0] * 24 for _ in range(7)]
    day_offsets: dict[int, int | None] = {}
    for quarter, count in quarters:
        at = quarter * QUARTER_SECONDS
        day = at // 86400
        if day not in day_offsets:  # one zone look-up per UTC day, not per quarter (a year:
            # 16,000 quarters, 35 ms of the answer), unless the clocks change that day
            first, last = _offset(day * 86400, tz), _offset(day * 86400 + 86399, tz)
            day_offsets[day] = first if first == last else None
        offset = day_offsets[day]
        local = at + (offset if offset is not None else _offset(at, tz))
        # 1970-01-01 was a Thursday (weekday 3).
        cells[(local // 86400 + 3) % 7][local % 86400 // 3600] += count
    return cells


def _offset(at: int, tz: tzinfo) -> int:
    return int(datetime.fromtimestamp(at, tz).utcoffset().total_seconds())  # type: ignore[union-attr]


def outcomes(counts: dict[str, int]) -> dict[str, Any]:
    """Visits by final state, open ones apart, and the no-show and cancel shares of all
    visits (null when there are none; 4 decimals)."""
    visits = sum(counts.values())
    result: dict[str, Any] = {"visits": visits}
    for state in OUTCOMES:
        result[state] = counts.get(state, 0)
    result["open"] = sum(counts.get(state, 0) for state in OPEN_STATES)
    result["no_show_share"] = _share(result["no_show"], visits)
    result["cancel_share"] = _share(result["cancelled"], visits)
    return result


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
