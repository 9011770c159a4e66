"""The audit trail: who did what, to which patient (by id), when and from where.

Rows are append-only (triggers refuse UPDATE and DELETE) and chained: each row's hash covers
its own fields and the previous row's hash, so editing or removing a row breaks the chain at
that row. Removing the newest rows leaves a shorter chain that still verifies, which is why
the server logs the chain's head (count and hash) every hour: compare with the journal.

The chain is keyed: a row's hash is an HMAC-SHA-256 with the secret in DATA_DIR/audit.key
(mode 0600, in every backup), so someone who can change the database but not read that file
cannot delete rows and recompute the hashes after them. Rows written before the key existed
keep their plain SHA-256: the key file says from which row on the chain is keyed (its version
marker), and those older rows still verify as they did.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
KEY_FILE = "audit.key"
KEY_FORMAT = 1
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
CREDENTIAL_REACTIVATED = "credential_reactivated"  # a deactivated credential works again
SETTINGS_CHANGED = "settings_changed"
BACKUP = "backup"
PATIENT_VIEWED = "patient_viewed"  # a staff member opened a patient's intake answers
PRIORITY_CHANGED = "priority_changed"  # staff set a waiting patient's priority class
LINE_CREATED = "line_created"
LINE_CHANGED = "line_changed"
CREDENTIAL_CHANGED = "credential_changed"  # a credential's label, room or lines
PASSWORD_CHANGED = "password_changed"  # an admin set a credential's password (a reset)
IMPORT_ORIGINAL = "import_original"  # import-original: counts only
# The call cycle (issue 16): each with from, to and the action's own facts.
RECALL = "recall"
START = "start"
DONE = "done"
NO_SHOW = "no_show"
REQUEUE = "requeue"
CANCEL = "cancel"
TRANSFER = "transfer"
UNDO = "undo"
END_OF_DAY = "end_of_day"  # one row: how many open visits were closed as not seen
# The day's history (issue 18): who looked or exported, which days, whether the sensitive
# intake answers were included; never a name.
RECORDS_VIEWED = "records_viewed"  # a day view with the sensitive answers in it
RECORDS_EXPORTED = "records_exported"  # a CSV export: its kind, range, rows, sensitive
PURGE = "purge"  # the retention purge (retention.py): counts and cutoffs, never a name
AUDIT_EXPORTED = "audit_exported"  # the audit viewer's CSV: its filters (ids) and rows
# The retention purge removed the trail's rows before a cutoff (audit_retention_days):
# {"before", "removed", "kept_from"}; verify starts the chain at `kept_from`.
AUDIT_PRUNED = "audit_pruned"
# Backups from /admin (issue 19): the nightly schedule set or removed (folder, time, keep;
# never the passphrase); a restore uploaded and checked ({"staged": true}), then, in the
# restored database's trail, put in place at the next start.
BACKUP_SCHEDULE_CHANGED = "backup_schedule_changed"
RESTORE = "restore"
# The box's clock (clock.py): a jump seen while running, and the stored times it restated
# ({"seconds", "sessions", "visits"}); an admin setting the clock from /admin ({"to", "from"}).
CLOCK_JUMP = "clock_jump"
CLOCK_SET = "clock_set"
# A standby promoted to be the live box (promote.py): the old box's hostname, the replica's
# transaction it holds, whether it caught up with the replica or how old its copy was.
PROMOTE = "promote"
# Every action above: the audit viewer offers them as filters (a new action goes here too).
ACTIONS = (
    SETUP, LOGIN, LOGIN_FAILED, LOGOUT, CHECK_IN, CALL, COMPLETE, CREDENTIAL_CREATED,
    CREDENTIAL_DEACTIVATED, CREDENTIAL_REACTIVATED, SETTINGS_CHANGED, BACKUP, PATIENT_VIEWED,
    PRIORITY_CHANGED, LINE_CREATED, LINE_CHANGED, CREDENTIAL_CHANGED, PASSWORD_CHANGED,
    IMPORT_ORIGINAL, RECALL, START, DONE, NO_SHOW, REQUEUE, CANCEL, TRANSFER, UNDO, END_OF_DAY,
    RECORDS_VIEWED, RECORDS_EXPORTED, PURGE, AUDIT_EXPORTED, AUDIT_PRUNED,
    BACKUP_SCHEDULE_CHANGED, RESTORE, CLOCK_JUMP, CLOCK_SET, PROMOTE,
)  # fmt: skip


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

    def digest(self, prev_hash: str, key: ChainKey | None = None) -> str:
        """The hash this row must carry when it follows a row whose hash is `prev_hash`:
        an HMAC with `key` from its first keyed row on, a plain SHA-256 before."""
        fields = [self.id, self.at, self.actor, self.action, self.patient_id, self.address]
        payload = _compact([prev_hash, *fields, self.detail]).encode()
        if key is not None and self.id >= key.from_row:
            return hmac.new(key.secret, payload, hashlib.sha256).hexdigest()
        return hashlib.sha256(payload).hexdigest()

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


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which rows the audit viewer asks for (audit_view.py reads the request's words)."""

    limit: int
    actors: tuple[int, ...] = ()  # credential ids (a label several credentials share)
    system: bool = False  # only rows without a credential (setup code, CLI, timers)
    action: str | None = None
    start: str | None = None  # stored timestamps (UTC): at >= start
    end: str | None = None  # at < end
    before: int | None = None  # ids below this: the next page


def encode_detail(detail: dict[str, Any] | None) -> str | None:
    return json.dumps(detail, sort_keys=True, separators=(",", ":")) if detail else None


@dataclass(frozen=True)
class Verdict:
    count: int
    head: str  # the last row's hash (GENESIS when empty)
    problem: str | None = None  # None: the chain is intact
    row: int | None = None  # the first row that does not verify (or is missing)

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(entries: Iterable[AuditEntry], key: ChainKey | None = None) -> Verdict:
    """Walks the chain in id order; reports the first row that was edited, or a gap.

    A pruned trail (audit_retention_days) starts at the row its newest `audit_pruned` row
    names as kept: from that row's own prev_hash, which its hash covers. Rows missing before
    it are a gap like any other. Without `key` (no audit.key yet) every row is checked as a
    plain SHA-256 chain."""
    prev_hash, expected_id, count = GENESIS, 1, 0
    kept_from = 1  # where the chain starts: the newest audit_pruned row says
    for entry in entries:
        if count == 0 and entry.id > 1:  # pruned: trust the head's link, check it below
            prev_hash, expected_id = entry.prev_hash, entry.id
        if entry.action == AUDIT_PRUNED and entry.detail:
            kept_from = int(json.loads(entry.detail).get("kept_from", 1))
        if entry.id != expected_id:
            return Verdict(
                count, prev_hash, f"row {expected_id} is missing (next is {entry.id})", expected_id
            )
        if entry.prev_hash != prev_hash:
            problem = f"row {entry.id} does not follow row {entry.id - 1}"
            return Verdict(count, prev_hash, problem, entry.id)
        if not hmac.compare_digest(entry.digest(prev_hash, key), entry.hash):
            problem = f"row {entry.id} was changed after it was written"
            return Verdict(count, prev_hash, problem, entry.id)
        prev_hash, expected_id, count = entry.hash, expected_id + 1, count + 1
    first = expected_id - count
    if count and first > kept_from:  # rows before the first were removed, not pruned
        return Verdict(0, GENESIS, f"row {kept_from} is missing (next is {first})", kept_from)
    return Verdict(count, prev_hash)


@dataclass(frozen=True)
class ChainKey:
    """The audit chain's secret, and the first row it keys (the rows before are plain)."""

    secret: bytes
    from_row: int

    def __repr__(self) -> str:  # never the secret, in a traceback or a log
        return f"ChainKey(from_row={self.from_row})"


class KeyFileError(Exception):
    """audit.key exists but cannot be used; the message says which file and why."""


def load_key(data_dir: Path) -> ChainKey | None:
    """The chain key of `data_dir`, or None when there is none yet."""
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        text = f.read(4096)
    try:
        fields = json.loads(text)
        if fields["format"] != KEY_FORMAT:
            raise ValueError(fields["format"])
        key = ChainKey(bytes.fromhex(fields["key"]), int(fields["from_row"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an audit key file") from exc
    if len(key.secret) != 32 or key.from_row < 1:
        raise KeyFileError(f"{path} is not an audit key file")
    return key


def load_or_create_key(data_dir: Path, next_row: int) -> ChainKey:
    """The chain key; made on first use, keying the chain from `next_row` on.

    Called inside the write transaction that adds row `next_row`, so two processes cannot
    both make one (and if one did first, its file is the one used)."""
    existing = load_key(data_dir)
    if existing is not None:
        return existing
    path = data_dir / KEY_FILE
    body = {"format": KEY_FORMAT, "from_row": next_row, "key": secrets.token_hex(32)}
    temp = path.with_name(f"{KEY_FILE}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(body).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        if os.geteuid() == 0:  # a CLI run with sudo: the service must still read it
            owner = data_dir.stat()
            os.chown(temp, owner.st_uid, owner.st_gid)
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)  # never replaces a key another process made first
    finally:
        os.unlink(temp)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    key = load_key(data_dir)
    assert key is not None
    return key
