"""Is the box's clock believable? Before the build, behind the database, or jumping.

A box with no RTC and no internet boots with a wrong clock (1970, or the image's build day),
then NTP or a person corrects it while it runs. This service notices both: at start it
compares the wall clock with the build time and with the newest time the database already
holds; while running it compares the wall clock's progress with time.monotonic() (which no
one sets) every few seconds, and reports a jump of more than JUMP_THRESHOLD either way. It
decides and remembers; the app restates sessions and open visits for a jump (store.clock).
No aiohttp here: the app, /healthz and /admin read `state()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from checkin_appliance.domain import format_time

log = logging.getLogger(__name__)

JUMP_THRESHOLD = timedelta(minutes=2)  # NTP's slews and a slow loop stay well below it
CHECK_INTERVAL = 2.0  # seconds between looks: also the most a jump can go unnoticed
# Slack for "behind the database": another process's clock, rounding.
BEHIND_SLACK = timedelta(minutes=2)
JUMP_WARNED_FOR = timedelta(hours=24)  # /admin's System section mentions a jump this long

OK = "ok"
IMPLAUSIBLE = "implausible"
BEFORE_BUILD = "before_build"  # earlier than the build of the program it runs
BEHIND_DATABASE = "behind_database"  # earlier than what the box already wrote


@dataclass(frozen=True, slots=True)
class Jump:
    """The wall clock moved by `delta` more than the time that passed; seen at `at` (UTC,
    on the new clock)."""

    at: datetime
    delta: timedelta

    @property
    def before(self) -> datetime:
        """What the old clock would say at `at`: times written on it are at or before this."""
        return self.at - self.delta


@dataclass(frozen=True, slots=True)
class ClockState:
    status: str  # OK or IMPLAUSIBLE
    reason: str | None  # BEFORE_BUILD, BEHIND_DATABASE; None when OK
    now: str  # the box's clock, as stored
    last_jump: Jump | None

    def as_json(self) -> dict[str, object]:
        jump = self.last_jump
        return {
            "status": self.status,
            "reason": self.reason,
            "now": self.now,
            "last_jump": None
            if jump is None
            else {"at": format_time(jump.at), "seconds": round(jump.delta.total_seconds(), 3)},
        }


def build_time() -> datetime | None:
    """When this program was built (`checkin_appliance.__build_time__`, set at build time:
    a datetime, an ISO 8601 text or epoch seconds); None when unknown (a checkout)."""
    import checkin_appliance

    value = getattr(checkin_appliance, "__build_time__", None)
    try:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, int | float):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str) and value:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            return None
    except (ValueError, OverflowError, OSError):
        log.warning("ignoring an unreadable build time %r", value)
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _utc_wall() -> datetime:
    return datetime.now(UTC)


class ClockWatch:
    """The box's clock against what it knows; `wall` and `monotonic` are injectable (tests)."""

    def __init__(
        self,
        build_time: datetime | None = None,
        *,
        wall: Callable[[], datetime] = _utc_wall,
        monotonic: Callable[[], float] = time.monotonic,
        threshold: timedelta = JUMP_THRESHOLD,
    ) -> None:
        self.build_time = build_time
        self.wall = wall
        self.monotonic = monotonic
        self.threshold = threshold
        self.newest_stored: datetime | None = None
        self.last_jump: Jump | None = None
        self._mark: tuple[datetime, float] | None = None
        self._warned: str | None = None

    def start(self, newest_stored: datetime | None) -> ClockState:
        """At start: remember the newest time the database holds, warn if we are before it
        or before the build, and begin watching for jumps."""
        self.newest_stored = newest_stored
        self._mark = (self.wall(), self.monotonic())
        return self.state()

    def check(self) -> Jump | None:
        """One look: the jump since the last look, if more than the threshold either way."""
        wall, mono = self.wall(), self.monotonic()
        if self._mark is None:
            self._mark = (wall, mono)
            return None
        last_wall, last_mono = self._mark
        self._mark = (wall, mono)
        delta = (wall - last_wall) - timedelta(seconds=mono - last_mono)
        if abs(delta) <= self.threshold:
            return None
        jump = Jump(at=wall, delta=delta)
        self.last_jump = jump
        log.warning(
            "the box's clock jumped by %+.0f s (from about %s to %s)",
            delta.total_seconds(),
            format_time(jump.before),
            format_time(wall),
        )
        self.state()  # a clock that is still wrong says so again
        return jump

    def state(self) -> ClockState:
        """What /healthz and /admin show; logs a WARNING once per new reason."""
        now = self.wall()
        reason = None
        if self.build_time is not None and now < self.build_time:
            reason = BEFORE_BUILD
        elif self.newest_stored is not None and now < self.newest_stored - BEHIND_SLACK:
            reason = BEHIND_DATABASE
        if reason is not None and reason != self._warned:
            log.warning(
                "the box's clock (%s) is implausible: %s (build %s, newest stored %s); set it"
                " from /admin or check NTP",
                format_time(now),
                reason.replace("_", " "),
                format_time(self.build_time) if self.build_time else "unknown",
                format_time(self.newest_stored) if self.newest_stored else "none",
            )
        self._warned = reason
        return ClockState(IMPLAUSIBLE if reason else OK, reason, format_time(now), self.last_jump)

    def warnings(self) -> list[dict[str, object]]:
        """The System section's clock warnings (app[SYSTEM].add_warnings): `clock_implausible`
        with its reason, and `clock_jumped` with its size for a jump in the last 24 hours."""
        state = self.state()
        found: list[dict[str, object]] = []
        if state.status == IMPLAUSIBLE:
            found.append({"code": "clock_implausible", "reason": state.reason, "now": state.now})
        jump = self.last_jump
        if jump is not None and self.wall() - jump.at <= JUMP_WARNED_FOR:
            found.append(
                {
                    "code": "clock_jumped",
                    "at": format_time(jump.at),
                    "seconds": round(jump.delta.total_seconds()),
                }
            )
        return found
