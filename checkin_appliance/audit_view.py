"""The audit viewer: the trail's rows by who, what and when, newest first, a page at a time;
the chain's verdict as `checkin-appliance audit verify` gives it; and the CSV export, which
is itself one audit row (its filters as ids, how many rows).

Below the web: the API and the page call it; it imports no aiohttp. A row shows what the
trail holds: credential and patient ids, an address and the action's own facts; never a
patient's name (the trail never holds one) and never a credential's token.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checkin_appliance import audit, domain, errors, lines
from checkin_appliance.audit import AuditEntry, AuditQuery
from checkin_appliance.domain import Actor, Credential, InvalidInput, format_time, parse_time

if TYPE_CHECKING:
    from checkin_appliance.store import Store

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# An export holds at most this many rows, the newest first (narrow from/to for older ones):
# the box builds the file in memory.
EXPORT_MAX_ROWS = 50_000
EXPORT_CHUNK = 1000
SYSTEM = "system"  # who=system: the rows no credential wrote (setup code, CLI, timers)
WHO_LENGTH = 100  # a label's longest
ACTION = re.compile(r"\A[a-z_]{1,40}\Z")
WHOLE = re.compile(r"\A[0-9]{1,9}\Z")
SUBJECT_KEYS = ("credential", "line")  # ids an action's detail names beside the patient
CSV_COLUMNS = (
    "id",
    "at",
    "credential",
    "label",
    "role",
    "address",
    "action",
    "patient_id",
    "detail",
)


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, errors.AUDIT_QUERY_INVALID)


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    day = domain.parse_day(value)
    if day is None:
        raise _invalid(f"Send {name} as YYYY-MM-DD.")
    return day


def _whole(value: str | None, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if WHOLE.match(value) and low <= int(value) <= high:
        return int(value)
    raise _invalid(f"{name} is a whole number from {low} to {high}.")


def _local_midnight(day: date, time_zone: str) -> str:
    """The stored timestamp (UTC) of `day`'s local midnight; the calendar's ends clamp."""
    try:
        moment = datetime.combine(day, time(), tzinfo=lines.zone(time_zone)).astimezone(UTC)
    except OverflowError:  # year 1 or 9999 east or west of UTC: its UTC midnight will do
        moment = datetime.combine(day, time(), tzinfo=UTC)
    return format_time(moment)


def _who(value: str, credentials: list[Credential]) -> tuple[tuple[int, ...], bool]:
    """(credential ids, system) for who=: a token, a label (any case) or "system"."""
    if value.strip().casefold() == SYSTEM:
        return (), True
    if len(value) > WHO_LENGTH:
        raise InvalidInput("who is a credential's token or label.", errors.AUDIT_WHO_UNKNOWN)
    wanted = value.strip().casefold()
    found = tuple(
        c.id for c in credentials if c.token == value.strip() or c.label.casefold() == wanted
    )
    if not found:
        raise InvalidInput("No credential has that token or label.", errors.AUDIT_WHO_UNKNOWN)
    return found, False


def parse_query(
    words: Mapping[str, str], credentials: list[Credential], time_zone: str, *, export: bool
) -> AuditQuery:
    """The request's who, action, from, to (the clinic's local days, both included), and
    for a page limit and before. Refused values: audit_query_invalid, audit_who_unknown."""
    actors: tuple[int, ...] = ()
    system = False
    who = words.get("who")
    if who is not None and who.strip():
        actors, system = _who(who, credentials)
    action = words.get("action")
    if action is not None and not ACTION.match(action):
        raise _invalid("action is one of the trail's actions (letters and _).")
    first, last = _day(words.get("from"), "from"), _day(words.get("to"), "to")
    if first and last and last < first:
        raise InvalidInput("from must not be after to.", errors.AUDIT_RANGE_INVALID)
    start = _local_midnight(first, time_zone) if first else None
    end = None
    if last is not None:
        end = _local_midnight(last + timedelta(days=1), time_zone) if last < date.max else None
    if export:
        limit, before = EXPORT_CHUNK, None
    else:
        limit = _whole(words.get("limit"), "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
        before = _whole(words.get("before"), "before", 1, 10**9 - 1)
    return AuditQuery(limit, actors, system, action, start, end, before)


@dataclass(frozen=True)
class Export:
    body: bytes
    filename: str
    rows: int


class AuditView:
    """The viewer's three operations over the store and the data directory's audit.key."""

    def __init__(self, store: Store, data_dir: Path, time_zone: Callable[[], str]) -> None:
        self.store = store
        self.data_dir = data_dir
        self.time_zone = time_zone

    async def query(self, words: Mapping[str, str], *, export: bool = False) -> AuditQuery:
        credentials = await self.store.list_credentials()
        return parse_query(words, credentials, self.time_zone(), export=export)

    async def page(self, words: Mapping[str, str]) -> dict[str, Any]:
        """A page of rows, newest first; `next_before` asks for the page after it."""
        query = await self.query(words)
        entries = await self.store.audit_page(query)
        people = await self._people()
        full = len(entries) == query.limit
        return {
            "rows": [row(entry, people) for entry in entries],
            "next_before": entries[-1].id if full and entries[-1].id > 1 else None,
            "actions": sorted(audit.ACTIONS),
        }

    async def verify(self) -> dict[str, Any]:
        """The chain's verdict: ok, unkeyed (intact, no audit.key yet), broken (with the
        first row that does not verify) or key_unreadable. Walked in a thread over its own
        read-only connection, a row at a time, as the CLI does."""
        from checkin_appliance.store.database import read_audit_log

        try:
            key = audit.load_key(self.data_dir)
        except audit.KeyFileError:
            return {
                "status": "key_unreadable",
                "count": 0,
                "head": None,
                "row": None,
                "problem": None,
            }
        path = self.store.path
        verdict = await asyncio.to_thread(lambda: audit.verify(read_audit_log(path), key))
        if not verdict.ok:
            status = "broken"
        else:
            status = "unkeyed" if key is None and verdict.count else "ok"
        return {
            "status": status,
            "count": verdict.count,
            "head": verdict.head,
            "row": verdict.row,
            "problem": verdict.problem,
        }

    async def export(self, words: Mapping[str, str], actor: Actor) -> Export:
        """The filtered rows as CSV, newest first (at most EXPORT_MAX_ROWS); audited."""
        from checkin_appliance.records import csv_bytes  # with the csv module, on first use

        query = await self.query(words, export=True)
        people = await self._people()
        rows: list[list[Any]] = []
        before = None
        while len(rows) < EXPORT_MAX_ROWS:
            chunk = await self.store.audit_page(
                AuditQuery(
                    min(EXPORT_CHUNK, EXPORT_MAX_ROWS - len(rows)),
                    query.actors,
                    query.system,
                    query.action,
                    query.start,
                    query.end,
                    before,
                )
            )
            rows.extend(_csv_row(entry, people) for entry in chunk)
            if len(chunk) < EXPORT_CHUNK:
                break
            before = chunk[-1].id
        detail = {
            "credentials": list(query.actors),
            "system": query.system,
            "action": query.action,
            "from": words.get("from") or None,
            "to": words.get("to") or None,
            "rows": len(rows),
        }
        await self.store.record_audit(audit.AUDIT_EXPORTED, actor, detail)
        stamp = parse_time(self.store.now()).strftime("%Y%m%d-%H%M%S")
        return Export(csv_bytes(CSV_COLUMNS, rows), f"audit-{stamp}.csv", len(rows))

    async def _people(self) -> dict[int, Credential]:
        return {c.id: c for c in await self.store.list_credentials()}


def row(entry: AuditEntry, people: Mapping[int, Credential]) -> dict[str, Any]:
    """One row as the API shows it: who by label and role (the system when no credential),
    the subjects by id, the action's detail as stored."""
    detail = json.loads(entry.detail) if entry.detail else None
    subjects: dict[str, Any] = {}
    if entry.patient_id is not None:
        subjects["patient"] = entry.patient_id
    if isinstance(detail, dict):
        subjects |= {k: detail[k] for k in SUBJECT_KEYS if isinstance(detail.get(k), int)}
    return {
        "id": entry.id,
        "at": entry.at,
        "who": _who_of(entry, people),
        "address": entry.address,
        "action": entry.action,
        "patient_id": entry.patient_id,
        "subjects": subjects,
        "detail": detail,
    }


def _who_of(entry: AuditEntry, people: Mapping[int, Credential]) -> dict[str, Any]:
    credential = people.get(entry.actor) if entry.actor is not None else None
    if credential is None:
        system = entry.actor is None
        return {"credential": entry.actor, "label": None, "role": None, "system": system}
    return {
        "credential": credential.id,
        "label": credential.label,
        "role": credential.role.value,
        "system": False,
    }


def _csv_row(entry: AuditEntry, people: Mapping[int, Credential]) -> list[Any]:
    who = _who_of(entry, people)
    return [
        entry.id,
        entry.at,
        who["credential"],
        who["label"],
        who["role"],
        entry.address,
        entry.action,
        entry.patient_id,
        entry.detail,
    ]
