"""The audit trail: who did what, to which patient (by id), when and from where.

Rows are append-only (triggers refuse UPDATE and DELETE) and chained: each row's hash covers
its own fields and the previous row's hash, so editing or removing a row breaks the chain at
that row. Removing the newest rows leaves a shorter chain that still verifies, which is why
the server logs the chain's head (count and hash) every hour: compare with the journal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
_compact = json.JSONEncoder(separators=(",", ":")).encode  # built once, not per row

# What the trail records (`action`); `detail` never holds a patient's name.
SETUP = "setup"
LOGIN = "login"
LOGIN_FAILED = "login_failed"
LOGOUT = "logout"
CHECK_IN = "check_in"
CALL = "call"  # call next: the longest-waiting patient
COMPLETE = "complete"  # a chosen patient, by id
CREDENTIAL_CREATED = "credential_created"
CREDENTIAL_DEACTIVATED = "credential_deactivated"
SETTINGS_CHANGED = "settings_changed"
BACKUP = "backup"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: str
    actor: int | None  # credential id; None for the setup code, an unknown token or the CLI
    action: str
    patient_id: int | None
    address: str
    detail: str | None  # compact JSON, keys sorted
    prev_hash: str = GENESIS
    hash: str = ""

    def digest(self, prev_hash: str) -> str:
        """The hash this row must carry when it follows a row whose hash is `prev_hash`."""
        fields = [self.id, self.at, self.actor, self.action, self.patient_id, self.address]
        payload = _compact([prev_hash, *fields, self.detail])
        return hashlib.sha256(payload.encode()).hexdigest()

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "patient_id": self.patient_id,
            "address": self.address,
            "detail": json.loads(self.detail) if self.detail else None,
        }


def encode_detail(detail: dict[str, Any] | None) -> str | None:
    return json.dumps(detail, sort_keys=True, separators=(",", ":")) if detail else None


@dataclass(frozen=True)
class Verdict:
    count: int
    head: str  # the last row's hash (GENESIS when empty)
    problem: str | None = None  # None: the chain is intact

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(entries: Iterable[AuditEntry]) -> Verdict:
    """Walks the chain in id order; reports the first row that was edited, or a gap."""
    prev_hash, expected_id, count = GENESIS, 1, 0
    for entry in entries:
        if entry.id != expected_id:
            return Verdict(count, prev_hash, f"row {expected_id} is missing (next is {entry.id})")
        if entry.prev_hash != prev_hash:
            return Verdict(count, prev_hash, f"row {entry.id} does not follow row {entry.id - 1}")
        if entry.digest(prev_hash) != entry.hash:
            return Verdict(count, prev_hash, f"row {entry.id} was changed after it was written")
        prev_hash, expected_id, count = entry.hash, expected_id + 1, count + 1
    return Verdict(count, prev_hash)
