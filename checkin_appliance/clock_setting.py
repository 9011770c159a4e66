"""Setting the box's clock from an admin's browser, through a narrow privileged helper.

The server (ProtectClock=yes, no CAP_SYS_TIME, and it stays that way) only writes a small
validated request into the data directory: the time the admin's browser gave, and when it
asked by CLOCK_BOOTTIME (which no one sets and which counts suspend). A systemd path unit
(systemd/checkin-appliance-clock.path) sees the file and starts
`checkin-appliance set-clock --request FILE` with CAP_SYS_TIME and nothing else: it reads the
request again, refuses anything malformed, stale or implausible, sets CLOCK_REALTIME to the
asked time plus the time the request waited, writes the RTC if `hwclock` is there, and
removes the request. The clock service then sees the jump and restates sessions and visits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from checkin_appliance import errors
from checkin_appliance.domain import InvalidInput, format_time

log = logging.getLogger(__name__)

REQUEST_FILE = "clock-request.json"  # in the data directory, which the path unit watches
# Where the .deb puts the path unit; without it nobody would act on a request (a dev box).
HELPER_UNITS = tuple(
    Path(root) / "checkin-appliance-clock.path"
    for root in ("/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system")
)
MAX_WAIT = 60.0  # seconds a request may wait for the helper before it is stale
EARLIEST = datetime(2024, 1, 1, tzinfo=UTC)  # before this program existed
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
HWCLOCK_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ClockRequest:
    to: datetime  # what the admin's browser said, UTC
    boottime: float  # CLOCK_BOOTTIME when asked
    by: int | None  # the admin's credential id


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def parse_requested(value: object) -> datetime:
    """The time an admin's browser sent: ISO 8601 with a zone, between EARLIEST and LATEST;
    InvalidInput (clock_time_invalid) otherwise."""
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput("time must be an ISO 8601 text with a zone.", errors.CLOCK_TIME_INVALID)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            "time must be an ISO 8601 text with a zone.", errors.CLOCK_TIME_INVALID
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput("time must carry its zone (e.g. Z).", errors.CLOCK_TIME_INVALID)
    if not EARLIEST <= moment <= LATEST:
        raise InvalidInput("time is not a plausible time.", errors.CLOCK_TIME_INVALID)
    return moment.astimezone(UTC)


@dataclass
class ClockHelper:
    """Where the helper's path unit would be (tests point it into tmp_path)."""

    units: Sequence[Path] = HELPER_UNITS

    def installed(self) -> bool:
        return any(unit.exists() for unit in self.units)


def write_request(data_dir: Path, request: ClockRequest) -> Path:
    """The request file, written whole (rename) so the helper never reads half of one."""
    path = data_dir / REQUEST_FILE
    partial = path.with_name(f".{REQUEST_FILE}.partial")
    body = {"to": format_time(request.to), "boottime": request.boottime, "by": request.by}
    partial.write_text(json.dumps(body), encoding="utf-8")
    os.replace(partial, path)
    return path


def read_request(path: Path, now_boottime: float) -> ClockRequest:
    """In the helper: the request, validated again; ValueError says what is wrong."""
    try:
        body = json.loads(path.read_text(encoding="utf-8")[:1000])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable request: {exc}") from None
    if not isinstance(body, dict) or set(body) != {"to", "boottime", "by"}:
        raise ValueError("the request is not {to, boottime, by}")
    try:
        to = parse_requested(body["to"])
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    asked = body["boottime"]
    if not isinstance(asked, int | float) or isinstance(asked, bool):
        raise ValueError("boottime is not a number")
    waited = now_boottime - asked
    if not 0 <= waited <= MAX_WAIT:
        raise ValueError(f"stale request (asked {waited:.0f} s ago)")
    by = body["by"]
    if by is not None and (not isinstance(by, int) or isinstance(by, bool)):
        raise ValueError("by is not a credential id")
    return ClockRequest(to, float(asked), by)


def set_realtime(moment: datetime) -> None:
    time.clock_settime(time.CLOCK_REALTIME, moment.timestamp())


def write_rtc() -> str:
    """The RTC from the system clock, when the box has one and hwclock is installed. Under
    the package's helper unit /dev/rtc0 is out of reach (root's, and PrivateDevices=yes):
    checkin-appliance-rtc.service writes it next, as root with CAP_SYS_TIME alone."""
    hwclock = shutil.which("hwclock")
    if hwclock is None or not any(Path("/dev").glob("rtc*")):
        return "no RTC or no hwclock here (as installed, checkin-appliance-rtc.service writes it)"
    try:
        subprocess.run(  # noqa: S603 - hwclock found on PATH, fixed arguments
            [hwclock, "--systohc", "--utc"],
            check=True,
            capture_output=True,
            timeout=HWCLOCK_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"RTC not written: {exc}"
    return "RTC written"


def apply_request(
    path: Path,
    *,
    setter: Callable[[datetime], None] = set_realtime,
    rtc: Callable[[], str] = write_rtc,
    now_boottime: Callable[[], float] = boottime,
) -> datetime:
    """The helper's work: validate, set the clock (the asked time plus the wait), the RTC,
    and remove the request whatever happened (a bad one must not be retried for ever)."""
    try:
        request = read_request(path, now_boottime())
        moment = request.to + timedelta(seconds=now_boottime() - request.boottime)
        setter(moment)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    log.warning(
        "the box's clock was set to %s (asked by credential %s); %s",
        format_time(moment),
        request.by,
        rtc(),
    )
    return moment
