"""Statistics over a range of local days: percentiles, fixed-bin histograms, rates, the
weekday x hour arrivals map and the period before, from what the store's aggregate queries
return. Pure: no I/O, no clock (like estimates.py), so each rule is tested on its own."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from checkin_appliance import errors, lines
from checkin_appliance.domain import InvalidInput, format_time, parse_day

# The longest range asked for at once: a year (a leap year's 366 days). make bench's
# bench.stats times a year of a busy clinic against the 300 ms target.
MAX_DAYS = 366
# Arrivals are counted by UTC quarter hour in SQL (store.arrival_buckets), then moved to the
# clinic's local weekday and hour here: every zone's offset is a whole number of quarters.
QUARTER_SECONDS = 900
# The histograms' fixed bins, in minutes: [0, 5), [5, 10), ... [120, ∞). Fixed, so two periods,
# lines or doctors are drawn on the same axis.
BIN_EDGES_MINUTES = (0, 5, 10, 15, 20, 30, 45, 60, 90, 120)
# Waiting and service times are counted per whole BUCKET_SECONDS in SQL
# (store.visit_time_buckets): a year is a few thousand counts instead of 51,000 durations
# (bench.stats, times year all). Medians and p90s are to 10 s; the bins' edges are whole
# buckets, so the histograms are exact.
BUCKET_SECONDS = 10
BIN_EDGE_BUCKETS = tuple(minutes * 60 // BUCKET_SECONDS for minutes in BIN_EDGES_MINUTES)
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
    day = parse_day(text)
    if day is None:
        raise InvalidInput(f"{name} must be a date, YYYY-MM-DD.", errors.STATS_RANGE_INVALID)
    return day


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile (0-1) of sorted values, linear between the two nearest ranks (numpy's
    default: the median of an even count is the mean of the middle two); None when empty."""
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def weighted_percentile(pairs: Sequence[tuple[float, int]], q: float) -> float | None:
    """percentile() of the values each repeated `count` times, from (value, count) pairs
    sorted by value, without building that list; None when the counts sum to 0."""
    total = sum(count for _, count in pairs)
    if not total:
        return None
    rank = q * (total - 1)
    low_rank = math.floor(rank)
    high_rank = min(low_rank + 1, total - 1)
    low = high = None
    seen = 0
    for value, count in pairs:
        seen += count
        if low is None and seen > low_rank:
            low = value
        if seen > high_rank:
            high = value
            break
    assert low is not None and high is not None  # both ranks are below total
    return low + (high - low) * (rank - low_rank)


def bucket(seconds: float) -> int:
    """The bucket a duration is counted in: whole BUCKET_SECONDS, rounded down; a negative
    duration (a clock set back between two moves) is 0. Stored times are whole milliseconds
    but a julianday difference is off by up to 0.1 ms: half a millisecond more keeps exactly
    300 s in bucket 30, not 29. Store.visit_time_buckets does the same in SQL."""
    return max(0, math.floor((seconds + 0.0005) / BUCKET_SECONDS))


def histogram(buckets: Iterable[tuple[int, int]]) -> list[dict[str, Any]]:
    """Counts in BIN_EDGES_MINUTES' bins from (bucket, count) pairs; the last bin has no upper
    end (null). Exact: every edge is a whole number of buckets."""
    counts = [0] * len(BIN_EDGES_MINUTES)
    for index, count in buckets:
        edge = bisect.bisect_right(BIN_EDGE_BUCKETS, index)
        counts[edge - 1] += count
    uppers = [*BIN_EDGES_MINUTES[1:], None]
    return [
        {"from_minutes": low, "to_minutes": high, "count": count}
        for low, high, count in zip(BIN_EDGES_MINUTES, uppers, counts, strict=True)
    ]


def bucket_distribution(buckets: Mapping[int, int]) -> dict[str, Any]:
    """count, median and p90 in whole seconds (null when there are none), and the histogram,
    from durations counted per bucket (bucket -> count). The median and p90 are those of the
    durations rounded down to whole BUCKET_SECONDS (10 s): each is to 10 s, at most 10 s
    below the exact figure, and exact when every duration is a whole multiple of 10 s."""
    pairs = sorted(buckets.items())
    median = weighted_percentile(pairs, 0.5)
    p90 = weighted_percentile(pairs, 0.9)
    return {
        "count": sum(buckets.values()),
        "median_seconds": None if median is None else round(median * BUCKET_SECONDS),
        "p90_seconds": None if p90 is None else round(p90 * BUCKET_SECONDS),
        "bins": histogram(pairs),
    }


def distribution(seconds: Iterable[float]) -> dict[str, Any]:
    """bucket_distribution() of durations in seconds, bucketed as the store buckets them."""
    return bucket_distribution(Counter(bucket(value) for value in seconds))


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
