"""Our side of `import-original`: what an earlier import brought, and the one transaction that
adds what the original database holds (credentials, patients, queue entries, their events).

The service (import_original.py) decides what each row becomes; this module only writes it,
checking again inside the transaction what it checked before (a concurrent run, a token made
meanwhile), so the counts it returns are what was committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from checkin_appliance import audit
from checkin_appliance.domain import PATIENT_ADDED, Actor, NewPhoto, QueueEntry
from checkin_appliance.lines import clinic_day, ticket_text
from checkin_appliance.store.database import Store, put_photo, take_ticket
from checkin_appliance.store.writer import Transaction

CREDENTIAL = "credential"
PATIENT = "patient"


@dataclass(frozen=True, slots=True)
class NewCredential:
    token: str  # also its key in original_imports
    role: str
    label: str
    password_hash: str
    active: bool
    created_at: str
    reset_required: bool


@dataclass(frozen=True, slots=True)
class NewEntry:
    status: str  # waiting | called (the original completed on call)
    check_in_time: str
    called_at: str | None = None
    completed_at: str | None = None
    order: int = 0  # the original entry's id: ties in check_in_time keep the original order


@dataclass(frozen=True, slots=True)
class NewPatient:
    key: str  # "<original id>@<original created_at>"
    fname: str
    intake: dict[str, Any]
    photo: NewPhoto | None  # stored with the row, in the import's transaction
    created_at: str
    entry: NewEntry | None


@dataclass
class Committed:
    """What the transaction added (and what it found already there)."""

    credentials: int = 0
    flagged: int = 0
    credentials_already: int = 0
    conflicts: int = 0
    patients: int = 0
    patients_already: int = 0
    waiting: int = 0
    completed: int = 0
    photos: int = 0


@dataclass(frozen=True, slots=True)
class ImportState:
    imported_tokens: set[str]
    imported_patients: set[str]
    local_tokens: set[str]


async def import_state(store: Store) -> ImportState:
    rows = await store.reader.execute_fetchall("SELECT kind, original_key FROM original_imports")
    tokens = await store.reader.execute_fetchall("SELECT token FROM credentials")
    return ImportState(
        imported_tokens={r["original_key"] for r in rows if r["kind"] == CREDENTIAL},
        imported_patients={r["original_key"] for r in rows if r["kind"] == PATIENT},
        local_tokens={r["token"] for r in tokens},
    )


def _known(tx: Transaction, kind: str, key: str) -> bool:
    return (
        tx.one("SELECT 1 FROM original_imports WHERE kind = ? AND original_key = ?", (kind, key))
        is not None
    )


def _remember(tx: Transaction, kind: str, key: str, local_id: int) -> None:
    tx.run(
        "INSERT INTO original_imports (kind, original_key, local_id, imported_at) "
        "VALUES (?, ?, ?, ?)",
        (kind, key, local_id, tx.now),
    )


def _add_credential(tx: Transaction, c: NewCredential, actor: Actor, done: Committed) -> None:
    if _known(tx, CREDENTIAL, c.token):
        done.credentials_already += 1
        return
    if tx.one("SELECT 1 FROM credentials WHERE token = ?", (c.token,)):
        done.conflicts += 1
        return
    credential_id = tx.insert(
        "INSERT INTO credentials (token, role, label, room, password_hash, active, created_at,"
        " deactivated_at, imported, password_reset_required)"
        " VALUES (?, ?, ?, NULL, ?, ?, ?, ?, 1, ?)",
        (
            c.token,
            c.role,
            c.label,
            c.password_hash,
            int(c.active),
            c.created_at,
            None if c.active else tx.now,
            int(c.reset_required),
        ),
    )
    _remember(tx, CREDENTIAL, c.token, credential_id)
    tx.audit(
        audit.CREDENTIAL_CREATED,
        actor,
        detail={"credential": credential_id, "role": c.role, "label": c.label, "imported": True},
    )
    done.credentials += 1
    done.flagged += c.reset_required


def _add_entry(tx: Transaction, patient_id: int, entry: NewEntry) -> int:
    return tx.insert(
        "INSERT INTO queue_entries (patient_id, status, check_in_time, called_at, completed_at,"
        " queue_time, call_count) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            patient_id,
            entry.status,
            entry.check_in_time,
            entry.called_at,
            entry.completed_at,
            entry.check_in_time,
            0 if entry.status == "waiting" else 1,
        ),
    )


def _time_zone(tx: Transaction) -> str:
    """The clinic's time zone setting as stored (UTC when unset or unreadable)."""
    row = tx.one("SELECT value FROM settings WHERE key = 'time_zone'")
    try:
        value = json.loads(row["value"]) if row is not None else "UTC"
    except ValueError:
        value = "UTC"
    return value if isinstance(value, str) else "UTC"


def write_import(
    tx: Transaction,
    credentials: list[NewCredential],
    patients: list[NewPatient],
    actor: Actor,
    summary: dict[str, int],
) -> Committed:
    """The whole import in the caller's transaction; `summary` (counts only) goes into the
    import_original audit row beside what was committed."""
    done = Committed()
    for credential in credentials:
        _add_credential(tx, credential, actor, done)
    waiting: list[tuple[NewPatient, int]] = []
    for patient in patients:
        if _known(tx, PATIENT, patient.key):
            done.patients_already += 1
            continue
        patient_id = tx.insert(
            "INSERT INTO patients (fname, image, created_at, intake) VALUES (?, ?, ?, ?)",
            (
                patient.fname,
                patient.photo.name if patient.photo else None,
                patient.created_at,
                json.dumps(patient.intake, ensure_ascii=False),
            ),
        )
        _remember(tx, PATIENT, patient.key, patient_id)
        done.patients += 1
        if patient.photo is not None:
            put_photo(tx, patient.photo)
            done.photos += 1
        if patient.entry is None:
            continue
        if patient.entry.status == "waiting":
            waiting.append((patient, patient_id))
        else:
            _add_entry(tx, patient_id, patient.entry)
            done.completed += 1
    # The waiting ones join the end of our queue (ordered by entry id) in their original order.
    # Each gets a ticket of the first line for the clinic's day of the import, as a check-in
    # then would: the wall display can tell them apart.
    waiting.sort(key=lambda item: (item[0].entry.check_in_time, item[0].entry.order))  # type: ignore[union-attr]
    line = tx.one("SELECT id, prefix FROM lines ORDER BY position, id LIMIT 1")
    day = clinic_day(tx.now, _time_zone(tx))
    for patient, patient_id in waiting:
        assert patient.entry is not None and line is not None
        number = take_ticket(tx, line["id"], day)
        ticket = ticket_text(line["prefix"], number)
        entry_id = _add_entry(tx, patient_id, patient.entry)
        tx.run(
            "UPDATE queue_entries SET line_id = ?, ticket_day = ?, ticket_number = ?, ticket = ?"
            " WHERE id = ?",
            (line["id"], day, number, ticket, entry_id),
        )
        tx.record(
            PATIENT_ADDED,
            QueueEntry(
                entry_id,
                patient_id,
                patient.fname,
                patient.photo.name if patient.photo else None,
                "waiting",
                patient.entry.check_in_time,
                line_id=line["id"],
                line=line["prefix"],
                ticket=ticket,
            ),
        )
        done.waiting += 1
    if not done.credentials and not done.patients:
        return done  # nothing new: no audit row either
    detail = {  # what was committed, over the plan's counts
        **summary,
        "credentials": done.credentials,
        "flagged": done.flagged,
        "patients": done.patients,
        "waiting": done.waiting,
        "completed": done.completed,
        "photos": done.photos,
    }
    tx.audit(audit.IMPORT_ORIGINAL, actor, detail=detail)
    return done


async def run_import(
    store: Store,
    credentials: list[NewCredential],
    patients: list[NewPatient],
    actor: Actor,
    summary: dict[str, int],
) -> Committed:
    """One write transaction: everything is committed, or (on any error) nothing."""
    return await store.write(lambda tx: write_import(tx, credentials, patients, actor, summary))
