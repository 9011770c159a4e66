"""Bringing a clinic over from the original CheckIn: its credentials, patients with their
intake answers, queue entries and photos (`checkin-appliance import-original`).

The plan is made first, from the original database (read-only) and what earlier imports
brought: every row mapped, every password checked and hashed, every photo re-encoded. Only
then is everything, photos included, committed in one transaction; should that fail,
nothing was changed. Running it
again adds nothing: original_imports remembers each credential by its token and each
patient by "<id>@<created_at>".

The summary holds counts only: never a name, an answer, a token or a password.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checkin_appliance import photos
from checkin_appliance.access import MAX_IMPORTED_TOKEN_LENGTH, Access
from checkin_appliance.domain import (
    BIDI_CONTROLS,
    Actor,
    InvalidInput,
    NewPhoto,
    Role,
    format_time,
    has_control_characters,
)
from checkin_appliance.store import Store, importing, original
from checkin_appliance.store.importing import NewCredential, NewEntry, NewPatient
from checkin_appliance.store.original import OriginalCredential, OriginalPatient

log = logging.getLogger(__name__)

LABEL = "Imported from CheckIn"
UNNAMED = "Unnamed patient"
# What migration 0002 of the original put into every existing row: not a chosen password.
LEGACY_UNUSABLE_PASSWORD = "2"
# A photo file larger than this is not read (the original took any size; a kiosk photo of
# ours is at most max_photo_bytes): counted as unreadable.
MAX_PHOTO_FILE_BYTES = 32 * 1024 * 1024

# Roles by the original's name for them (`staff` before its migration 0003).
ROLES = {"form": Role.FORM, "staff": Role.FORM, "doctor": Role.DOCTOR, "queue": Role.QUEUE}
# Values older versions of the original left behind, by column (original-database.md §8).
LEGACY_VALUES: dict[str, dict[str, str]] = {
    "pronoun": {"he/him": "he_him", "she/her": "she_her"},
    "id_card": {"lost/stolen": "lost"},
    "race": {"american_indian_or_alaskan_native": "american_indian_alaskan_native"},
}
# employed, shower, hungry, homeless were booleans (0/1) in migrations 0004-0007, whose
# defaults were also spelled NO, No and Yes.
YES_NO_FIELDS = ("employed", "shower", "hungry", "homeless")
YES_NO_LEGACY = {"0": "no", "1": "yes", "NO": "no", "No": "no", "Yes": "yes", "YES": "yes"}


class ImportFailed(Exception):
    """The import cannot go on; nothing was changed. The message names rows by their
    original id only."""


@dataclass
class Summary:
    """What an import brings (or, with --dry-run, would bring): counts only."""

    credentials: int = 0  # new credentials
    flagged: int = 0  # of those, the ones that must get a new password before signing in
    inactive: int = 0  # of those, inactive ones (they stay inactive)
    credentials_already: int = 0  # brought by an earlier import
    conflicts: int = 0  # the token exists here already (not from an import): skipped
    unusable_tokens: int = 0  # a token this box cannot hold (empty, too long, control chars)
    unknown_roles: int = 0  # a role the original does not have: skipped
    patients: int = 0
    patients_already: int = 0
    unnamed: int = 0  # NULL or blank fname: imported as UNNAMED
    waiting: int = 0
    completed: int = 0
    without_entry: int = 0  # patients the original's admin added: no queue entry
    photos: int = 0
    photos_missing: int = 0
    photos_unreadable: int = 0
    orphan_entries: int = 0  # queue entries whose patient does not exist: skipped

    @property
    def nothing_new(self) -> bool:
        return not self.credentials and not self.patients

    def counts(self) -> dict[str, int]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value}

    def lines(self, dry_run: bool) -> list[str]:
        would = "would be " if dry_run else ""
        skipped = self.credentials_already + self.conflicts + self.unusable_tokens
        skipped += self.unknown_roles
        out = [
            f"credentials {would}imported: {self.credentials} "
            f"({self.flagged} flagged for a password reset, {self.inactive} inactive)",
            f"credentials skipped: {skipped} ({self.credentials_already} already imported, "
            f"{self.conflicts} token already in use here, {self.unusable_tokens} unusable "
            f"token, {self.unknown_roles} unknown role)",
            f"patients {would}imported: {self.patients} ({self.unnamed} without a name; "
            f"{self.patients_already} already imported)",
            f"queue entries: {self.waiting} waiting, {self.completed} completed, "
            f"{self.without_entry} patients without one, {self.orphan_entries} without a "
            "patient (skipped)",
            f"photos: {self.photos} ({self.photos_missing} missing, "
            f"{self.photos_unreadable} unreadable: those patients come without a photo)",
        ]
        if self.nothing_new:
            out.append(
                "nothing new to import: everything in this database was imported before"
                if self.credentials_already or self.patients_already
                else "nothing to import"
            )
        return out


@dataclass
class Plan:
    summary: Summary
    credentials: list[NewCredential] = field(default_factory=list)
    patients: list[NewPatient] = field(default_factory=list)


# --- values ----------------------------------------------------------------------------


def convert_time(value: Any, what: str) -> str:
    """The original's UTC "YYYY-MM-DD HH:MM:SS[.ffffff]" as we store times (ms, Z)."""
    if not isinstance(value, str):
        raise ImportFailed(f"{what} has no date and time")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ImportFailed(f"{what} is not a date and time the original writes") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_time(moment)


def intake_value(name: str, value: Any) -> Any:
    """A stored answer as we keep it: NULL stays null, '' stays '', text as stored, with the
    legacy values of older versions mapped; a value of another type becomes its text."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif not isinstance(value, str):
        value = str(value)  # e.g. a 0/1 left by the boolean columns of migrations 0004-0007
    if name in YES_NO_FIELDS:
        return YES_NO_LEGACY.get(value, value)
    return LEGACY_VALUES.get(name, {}).get(value, value)


def patient_name(value: Any) -> str | None:
    """The name trimmed (inner spaces kept, as the original shows them); control
    characters and bidi controls become spaces. None when it shows nothing."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = "".join(
        " " if char in BIDI_CONTROLS or has_control_characters(char) else char for char in text
    ).strip()
    return text or None


def usable_token(value: Any) -> str | None:
    """The token as the original stores it (text; a number is compared as its text), or
    None if this box cannot hold or look it up."""
    if value is None:
        return None
    token = value if isinstance(value, str) else str(value)
    if (
        not token
        or len(token) > MAX_IMPORTED_TOKEN_LENGTH
        or token != token.strip()
        or has_control_characters(token)
    ):
        return None
    return token


# --- the plan --------------------------------------------------------------------------


async def _plan_credential(
    c: OriginalCredential,
    access: Access,
    state: importing.ImportState,
    accept_weak: bool,
    plan: Plan,
) -> None:
    summary = plan.summary
    token = usable_token(c.token)
    if token is None:
        summary.unusable_tokens += 1
        return
    if token in state.imported_tokens:
        summary.credentials_already += 1
        return
    if token in state.local_tokens:
        summary.conflicts += 1
        return
    role = ROLES.get(c.role) if isinstance(c.role, str) else None
    if role is None:
        summary.unknown_roles += 1
        return
    password = c.password if isinstance(c.password, str) else ""
    reset = not password or password == LEGACY_UNUSABLE_PASSWORD
    if not reset and not accept_weak:
        try:
            await access.check_password(password, role, token, LABEL)
        except InvalidInput:
            reset = True
    created_at = convert_time(c.created_at, f"credential #{c.id}'s created_at")
    # Hashed even when flagged: the right password then answers password_reset_required.
    password_hash = await access.hasher.hash(password or os.urandom(16).hex())
    plan.credentials.append(
        NewCredential(token, role.value, LABEL, password_hash, c.is_active, created_at, reset)
    )
    summary.credentials += 1
    summary.flagged += reset
    summary.inactive += not c.is_active


def _read_photo(media: Path, image: Any, max_side: int) -> tuple[bytes | None, str]:
    """(re-encoded JPEG, "") or (None, "missing" | "unreadable"). Never leaves `media`."""
    if not isinstance(image, str) or not image:
        return None, ""
    root = media.resolve()
    path = (root / image).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None, "missing"
    try:
        if path.stat().st_size > MAX_PHOTO_FILE_BYTES:
            return None, "unreadable"
        data = path.read_bytes()
    except OSError:
        return None, "missing"
    try:
        return photos.reencode(data, max_side), ""
    except InvalidInput:
        return None, "unreadable"


async def _plan_patient(
    p: OriginalPatient, media: Path, max_side: int, state: importing.ImportState, plan: Plan
) -> None:
    summary = plan.summary
    created_raw = p.created_at if isinstance(p.created_at, str) else str(p.created_at)
    key = f"{p.id}@{created_raw}"
    if key in state.imported_patients:
        summary.patients_already += 1
        return
    created_at = convert_time(p.created_at, f"patient #{p.id}'s created_at")
    name = patient_name(p.fname)
    if name is None:
        summary.unnamed += 1
        name = UNNAMED
    intake = {
        field_name: intake_value(field_name, p.answers.get(field_name))
        for field_name in original.INTAKE_FIELDS
    }
    entry = None
    if p.entry is not None:
        what = f"queue entry #{p.entry.id}"
        check_in_time = convert_time(p.entry.check_in_time, f"{what}'s check_in_time")
        if p.entry.status == "waiting":
            entry = NewEntry("waiting", check_in_time, order=p.entry.id)
            summary.waiting += 1
        else:  # completed, and in_consultation (the original completes on call)
            called = p.entry.called_at or p.entry.check_out_time
            called_at = convert_time(called, f"{what}'s called_at") if called else check_in_time
            out = p.entry.check_out_time
            completed_at = convert_time(out, f"{what}'s check_out_time") if out else called_at
            entry = NewEntry("called", check_in_time, called_at, completed_at, p.entry.id)
            summary.completed += 1
    else:
        summary.without_entry += 1
    jpeg, problem = await asyncio.to_thread(_read_photo, media, p.image, max_side)
    if problem == "missing":
        summary.photos_missing += 1
    elif problem == "unreadable":
        summary.photos_unreadable += 1
    photo = None
    if jpeg is not None:
        photo = NewPhoto(photos.new_photo_name(), jpeg)
        summary.photos += 1
    plan.patients.append(NewPatient(key, name, intake, photo, created_at, entry))
    summary.patients += 1


async def make_plan(
    db: Path, media: Path, store: Store, access: Access, max_side: int, accept_weak: bool
) -> Plan:
    """Everything the import would do; ImportFailed (or NotAnOriginalDatabase) if it cannot."""
    try:
        data = await asyncio.to_thread(original.read_file, db)
    except original.NotAnOriginalDatabase:
        raise
    except Exception as exc:  # a damaged original: say so, change nothing
        raise ImportFailed(f"cannot read {db}: {exc}") from exc
    state = await importing.import_state(store)
    plan = Plan(Summary(orphan_entries=data.orphan_entries))
    for credential in data.credentials:
        await _plan_credential(credential, access, state, accept_weak, plan)
    for patient in data.patients:
        await _plan_patient(patient, media, max_side, state, plan)
    return plan


# --- doing it --------------------------------------------------------------------------


async def run(
    db: Path,
    media: Path,
    store: Store,
    access: Access,
    max_side: int,
    actor: Actor,
    *,
    dry_run: bool = False,
    accept_weak: bool = False,
) -> Summary:
    """Plans, then (unless `dry_run`) commits it all, photos included, at once."""
    plan = await make_plan(db, media, store, access, max_side, accept_weak)
    if dry_run or plan.summary.nothing_new:
        return plan.summary
    committed = await importing.run_import(
        store, plan.credentials, plan.patients, actor, plan.summary.counts()
    )
    summary = plan.summary
    if (committed.credentials, committed.patients) != (summary.credentials, summary.patients):
        # Another import ran meanwhile: report what this one committed.
        summary.credentials_already += summary.credentials - committed.credentials
        summary.credentials, summary.flagged = committed.credentials, committed.flagged
        summary.patients_already += summary.patients - committed.patients
        summary.patients, summary.photos = committed.patients, committed.photos
        summary.waiting, summary.completed = committed.waiting, committed.completed
    await access.refresh_token_shapes()
    return summary
