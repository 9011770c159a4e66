"""How good the shown wait estimates were: every range a patient was shown, against the wait
that followed until their call. Pure, like estimates.py: the store hands in the rows.

An estimate counts once its visit was called from the line it was shown for. A visit that
left otherwise (cancelled, moved to another line, not seen) has no actual wait to compare.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from checkin_appliance.estimates import MINUTE, median


@dataclass(frozen=True, slots=True)
class Shown:
    """One range shown to a patient, and what happened to the visit after it."""

    line_id: int
    low_minutes: int
    high_minutes: int
    first: bool  # the first range this visit was shown (the kiosk's, at check-in)
    waited: float | None  # seconds from showing it to the visit's call; None: not called

    def inside(self) -> bool:
        assert self.waited is not None
        return self.low_minutes * MINUTE <= self.waited <= self.high_minutes * MINUTE

    def error_minutes(self) -> float:
        """How far the actual wait fell from the range's middle, in minutes."""
        assert self.waited is not None
        return abs(self.waited / MINUTE - (self.low_minutes + self.high_minutes) / 2)


@dataclass(frozen=True, slots=True)
class Score:
    """Some shown ranges: how many, how many were followed by a call, and of those the share
    whose actual wait fell inside and the median error of the range's middle."""

    shown: int
    compared: int
    inside_share: float | None  # None: nothing to compare yet
    median_error_minutes: float | None

    @classmethod
    def of(cls, shown: list[Shown]) -> Score:
        called = [item for item in shown if item.waited is not None]
        if not called:
            return cls(len(shown), 0, None, None)
        inside = sum(item.inside() for item in called)
        error = median([item.error_minutes() for item in called])
        return cls(len(shown), len(called), round(inside / len(called), 3), round(error, 1))

    def as_json(self) -> dict[str, Any]:
        return {
            "shown": self.shown,
            "compared": self.compared,
            "inside_share": self.inside_share,
            "median_error_minutes": self.median_error_minutes,
        }


def by_line(shown: Iterable[Shown]) -> dict[int, tuple[Score, Score]]:
    """Per line: (every range shown, only the first one each visit was shown)."""
    lines: dict[int, list[Shown]] = {}
    for item in shown:
        lines.setdefault(item.line_id, []).append(item)
    return {
        line_id: (Score.of(items), Score.of([item for item in items if item.first]))
        for line_id, items in lines.items()
    }
