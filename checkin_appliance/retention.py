"""The retention purge: how long a patient's name, intake answers and photo are kept.

A closed visit's photo goes `photo_retention_days` after the visit's local day ends (0: at
the first purge after that day), its patient's name and intake answers (and the photo, if
still there) `name_retention_days` after it, in one transaction (the photo's bytes with
the name that pointed at them: the photo_blobs migration's trigger). What the statistics read stays:
the visit's ticket, line, times, outcome and doctor (queue_entries, visit_transitions), with
a blank patient row. The server purges at start and daily at PURGE_AT local time; `POST
/api/records/purge/` and `checkin-appliance purge` purge on demand. Purged bytes leave the
database file and its WAL too: secure_delete on every connection, then VACUUM and a
TRUNCATE checkpoint (Store.compact).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from checkin_appliance import lines
from checkin_appliance.domain import Actor, Settings, format_time

if TYPE_CHECKING:
    from checkin_appliance.store import Store

# The daily purge's local time (the clinic's time_zone): after the day's last visits, before
# the next day's first.
PURGE_AT = time(3, 0)


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge removed: counts (for the audit row and the answer), never a name."""

    names: int  # patients whose name, intake answers and photo were blanked
    photos: int  # photos removed (with a name purge or by the photo rule)
    events: int  # event-log rows dropped (the log's head up to the last blanked patient's)
    idempotency_keys: int
    names_before: str  # the cutoffs: patients checked in before these
    photos_before: str
    compacted: bool = False  # VACUUM ran and the WAL was emptied

    def counts(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "photos": self.photos,
            "events": self.events,
            "idempotency_keys": self.idempotency_keys,
            "names_before": self.names_before,
            "photos_before": self.photos_before,
        }

    def public(self) -> dict[str, Any]:
        return {**self.counts(), "compacted": self.compacted}

    @property
    def anything(self) -> bool:
        return bool(self.names or self.photos or self.events or self.idempotency_keys)


def cutoffs(settings: Settings, now: datetime) -> tuple[str, str]:
    """(names_before, photos_before): the local midnights that many days before today's."""
    tz = lines.zone(settings.time_zone)
    today = now.astimezone(tz).date()

    def midnight(days: int) -> str:
        return format_time(datetime.combine(today - timedelta(days=days), time(), tzinfo=tz))

    return midnight(settings.name_retention_days), midnight(settings.photo_retention_days)


def audit_cutoff(settings: Settings, now: datetime) -> str:
    """The audit trail's rows from before this local midnight go (audit_retention_days)."""
    tz = lines.zone(settings.time_zone)
    day = now.astimezone(tz).date() - timedelta(days=settings.audit_retention_days)
    return format_time(datetime.combine(day, time(), tzinfo=tz))


def last_scheduled(now: datetime, time_zone: str) -> datetime:
    """The most recent PURGE_AT (local) at or before now."""
    tz = lines.zone(time_zone)
    local = now.astimezone(tz)
    moment = datetime.combine(local.date(), PURGE_AT, tzinfo=tz)
    if moment > local:
        moment = datetime.combine(local.date() - timedelta(days=1), PURGE_AT, tzinfo=tz)
    return moment


def due(done_at: datetime | None, now: datetime, time_zone: str) -> bool:
    """Whether a purge is due: none yet in this process (at start), or none since the last
    PURGE_AT."""
    return done_at is None or done_at < last_scheduled(now, time_zone)


async def purge(
    store: Store,
    settings: Settings,
    actor: Actor,
    now: datetime,
    *,
    quiet: bool = False,
) -> Purged:
    """One purge with the settings' retention: one transaction (names, answers, photos, one
    audit row), then the file compacted. `quiet` (the timer): when nothing is due, no audit
    row and no VACUUM."""
    names_before, photos_before = cutoffs(settings, now)
    purged = await store.purge_identities(names_before, photos_before, actor, quiet=quiet)
    if settings.audit_retention_days:  # its own audit_pruned row; 0 keeps the trail for good
        await store.prune_audit(audit_cutoff(settings, now), actor)
    if quiet and not purged.anything:
        return purged
    return dataclasses.replace(purged, compacted=await store.compact())
