"""The clinic's queue rules: what a check-in, a call and an event are, and who may see what.

Owns no I/O: the store persists, the hub fans out, the web layer speaks HTTP.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from checkin_appliance import errors
from checkin_appliance.errors import ErrorCode

MAX_NAME_LENGTH = 255
PHOTO_URL_PREFIX = "/media/patient_images/"
MESSAGE_TYPE = "send.queue.update"
PhotoUrl = Callable[[str], str]  # a stored photo's name -> the URL clients get


class Role(enum.StrEnum):
    FORM = "form"
    DOCTOR = "doctor"
    QUEUE = "queue"
    ADMIN = "admin"


class Audience(enum.Enum):
    """Who reads a live-feed message: staff see everything, a wall display the minimum."""

    STAFF = "staff"
    DISPLAY = "display"


def audience_for(role: Role | None) -> Audience:
    """Doctors and admins see full names and photos. The kiosk (form) sees what a wall
    display sees: its tablet faces the patients, and it needs only the position its own
    check-in answer carries."""
    return Audience.STAFF if role in (Role.DOCTOR, Role.ADMIN) else Audience.DISPLAY


# --- errors; the web layer maps each kind to one status code ---------------------------


class DomainError(Exception):
    """A request the rules refuse; the message is safe to show (never a name or secret), and
    the code (errors.py) says which case it is, for clients and pages to branch on."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def extra(self) -> dict[str, Any] | None:
        """Keys the error body carries before `error` and `code` (the intake form's fields)."""
        return None


class InvalidInput(DomainError):
    pass


class NotFound(DomainError):
    pass


class TooLarge(DomainError):
    pass


class Conflict(DomainError):
    pass


class NotAllowed(DomainError):
    pass


class Unavailable(DomainError):
    pass


class NotAuthenticated(DomainError):
    """Wrong credentials; the caller may sign in again."""


class TooManyAttempts(DomainError):
    """Repeated failed logins: refused for `retry_after` seconds."""

    def __init__(self, message: str, code: ErrorCode, retry_after: int) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


# --- records -------------------------------------------------------------------------


def utc_now() -> str:
    """Now as the contract writes timestamps: ISO 8601, milliseconds, UTC with Z."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    # isoformat: "2026-11-26T08:31:42.123+00:00", twice as fast as strftime.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


ISO_DAY = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def parse_day(text: str) -> date | None:
    """A calendar day as a query gives it, YYYY-MM-DD only (date.fromisoformat alone also
    takes 20260105 and week dates); None for anything else, an impossible day included."""
    if not ISO_DAY.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Credential:
    id: int
    token: str
    role: Role
    label: str
    room: str | None
    active: bool
    created_at: str
    imported: bool = False  # brought over from the original CheckIn (import-original)
    # Its imported password was too weak: refused at login until the admin sets a new one.
    password_reset_required: bool = False
    lines: tuple[str, ...] = ()  # prefixes of the lines a doctor serves; none: every line

    def public(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "role": self.role.value,
            "label": self.label,
            "room": self.room,
            "lines": list(self.lines),
            "active": self.active,
            "created_at": self.created_at,
            "imported": self.imported,
            "password_reset_required": self.password_reset_required,
        }


def credential_fields(role: object, label: object, room: object) -> tuple[Role, str, str | None]:
    """A new credential's role, label and room, checked the same for the API and the CLI."""
    try:
        checked_role = Role(role)
    except ValueError as exc:
        raise InvalidInput(
            "role must be one of form, doctor, queue, admin.", errors.ROLE_INVALID
        ) from exc
    if not isinstance(label, str) or not label.strip() or len(label.strip()) > 100:
        raise InvalidInput("label must be 1-100 characters.", errors.LABEL_INVALID)
    if room is not None and (not isinstance(room, str) or len(room.strip()) > 50):
        raise InvalidInput("room must be at most 50 characters.", errors.ROOM_TOO_LONG)
    # One line of plain text: an escape sequence in a label would run in the terminal of
    # whoever types `token list`, a bidi override would turn the admin page around.
    if has_control_characters(label):
        raise InvalidInput(
            "label must not contain control characters.", errors.LABEL_INVALID_CHARACTER
        )
    if room is not None and has_control_characters(room):
        raise InvalidInput(
            "room must not contain control characters.", errors.ROOM_INVALID_CHARACTER
        )
    return checked_role, label.strip(), (room or "").strip() or None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something, for the audit trail: a credential and the address it came from.

    `credential_id` is None for the one-time setup code, an unknown token and the box's CLI.
    """

    credential_id: int | None
    address: str


CLI = Actor(None, "cli")


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    credential: Credential
    expires: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    clinic_name: str = "Clinic"
    language: str = "en"
    display_names: str = "first_initial"  # or "full"
    display_photos: bool = False
    anonymous_feed: bool = False
    announce_voice: bool = False
    # The kiosk's questions (intake.py): {"preset": "name"}, "original" or a custom form.
    intake_form: dict[str, Any] = dataclasses.field(default_factory=lambda: {"preset": "name"})
    # IANA name: the clinic's day (tickets, today's figures) starts at its local midnight.
    time_zone: str = "UTC"
    # The kiosk asks whether the patient needs priority (elderly, pregnant, disability).
    priority_question: bool = False
    # A credential may undo its last action on a visit this many seconds after it.
    undo_seconds: int = 120
    # Local "HH:MM" (time_zone) at which every open visit is closed as not seen; None: never.
    end_of_day: str | None = None
    # A visit called and left untouched this many minutes becomes a no-show; None: never.
    no_show_minutes: int | None = None
    # The origin the kiosk's QR (a patient's status link) points to, e.g. http://192.168.1.10
    # when guest Wi-Fi reaches the box only there; None: the kiosk's own address (README).
    status_link_base: str | None = None
    # Retention (retention.py): a closed visit's photo is removed this many days after its
    # local day ends (0: at the first purge after that day), its name and intake answers
    # after name_retention_days. The visits' times, tickets and outcomes stay for statistics.
    photo_retention_days: int = 0
    name_retention_days: int = 30
    # The audit trail's rows go this many days after their local day (0: kept for good).
    # Six years by default: the period clinics under HIPAA keep their compliance records.
    audit_retention_days: int = 2190

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# One switch for a clinic moving from the original CheckIn, and one back to our defaults.
SETTING_PRESETS: dict[str, dict[str, Any]] = {
    "original": {
        "anonymous_feed": True,
        "display_names": "full",
        "display_photos": True,
        "intake_form": {"preset": "original"},
    },
    "private": {
        "anonymous_feed": False,
        "display_names": "first_initial",
        "display_photos": False,
        "intake_form": {"preset": "name"},
    },
}


def preset_changes(name: object) -> dict[str, Any]:
    if not isinstance(name, str) or name not in SETTING_PRESETS:
        raise InvalidInput("name must be one of original, private.", errors.PRESET_UNKNOWN)
    return SETTING_PRESETS[name]


MAX_UNDO_SECONDS = 3600
MAX_NO_SHOW_MINUTES = 240
MAX_RETENTION_DAYS = 3650
_HH_MM = re.compile(r"\A(?:[01][0-9]|2[0-3]):[0-5][0-9]\Z")

SETTING_CHOICES: dict[str, tuple[Any, ...]] = {
    "language": ("en", "es"),
    "display_names": ("first_initial", "full"),
    "display_photos": (True, False),
    "anonymous_feed": (True, False),
    "announce_voice": (True, False),
    "priority_question": (True, False),
}


def updated_settings(current: Settings, changes: dict[str, Any]) -> Settings:
    """Validate a partial update; unknown keys and bad values are refused, naming the key."""
    if not isinstance(changes, dict) or not changes:
        raise InvalidInput("Send a JSON object with the settings to change.", errors.SETTINGS_EMPTY)
    values = current.public()
    for key, value in changes.items():
        if key not in values:
            raise InvalidInput(f"Unknown setting '{key}'.", errors.SETTING_UNKNOWN)
        if key == "clinic_name":
            if not isinstance(value, str) or not value.strip() or len(value) > 100:
                raise InvalidInput(
                    "clinic_name must be 1-100 characters.", errors.CLINIC_NAME_INVALID
                )
            value = value.strip()
        elif key == "intake_form":
            from checkin_appliance import intake  # intake builds on this module

            value = intake.checked_form(value)
        elif key == "time_zone":
            from checkin_appliance import lines  # lines builds on this module

            value = lines.checked_time_zone(value)
        elif key == "undo_seconds":
            if type(value) is not int or not 0 <= value <= MAX_UNDO_SECONDS:
                raise InvalidInput(
                    f"undo_seconds must be a whole number from 0 to {MAX_UNDO_SECONDS}.",
                    errors.SETTING_VALUE_INVALID,
                )
        elif key == "no_show_minutes":
            if value is not None and (
                type(value) is not int or not 1 <= value <= MAX_NO_SHOW_MINUTES
            ):
                raise InvalidInput(
                    f"no_show_minutes must be a whole number from 1 to {MAX_NO_SHOW_MINUTES}"
                    " or null.",
                    errors.SETTING_VALUE_INVALID,
                )
        elif key == "status_link_base":
            value = checked_link_base(value)
        elif key in ("photo_retention_days", "name_retention_days", "audit_retention_days"):
            if type(value) is not int or not 0 <= value <= MAX_RETENTION_DAYS:
                raise InvalidInput(
                    f"{key} must be a whole number of days from 0 to {MAX_RETENTION_DAYS}.",
                    errors.SETTING_VALUE_INVALID,
                )
        elif key == "end_of_day":
            if value is not None and not (isinstance(value, str) and _HH_MM.match(value)):
                raise InvalidInput(
                    'end_of_day must be a local time "HH:MM" or null.',
                    errors.SETTING_VALUE_INVALID,
                )
        elif value not in SETTING_CHOICES[key] or type(value) is not type(SETTING_CHOICES[key][0]):
            allowed = ", ".join(json.dumps(choice) for choice in SETTING_CHOICES[key])
            raise InvalidInput(f"{key} must be one of {allowed}.", errors.SETTING_VALUE_INVALID)
        values[key] = value
    return Settings(**values)


_LINK_BASE = re.compile(
    r"\A(https?)://([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::([0-9]{1,5}))?/?\Z"
)


def checked_link_base(value: object) -> str | None:
    """status_link_base: an origin (http or https, a host, an optional port; no path, query
    or user) without its trailing slash, or None."""
    if value is None:
        return None
    match = _LINK_BASE.match(value) if isinstance(value, str) else None
    if match is None or (match.group(3) is not None and not 1 <= int(match.group(3)) <= 65535):
        raise InvalidInput(
            "status_link_base must be an origin such as http://192.168.1.10 or "
            "http://checkin.local:8080 (http or https, a host, an optional port), or null.",
            errors.SETTING_VALUE_INVALID,
        )
    return value.rstrip("/").lower()


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One visit: a patient in the queue, with the state the event log last recorded."""

    id: int
    patient_id: int
    fname: str
    image: str | None  # the stored photo's name (photos table), or None
    status: str
    check_in_time: str
    called_at: str | None = None
    room: str | None = None  # the calling doctor's room, once called
    line_id: int = 1
    line: str | None = None  # the line's ticket prefix
    ticket: str | None = None  # "A-012"; None for entries from before tickets
    priority: str = "normal"  # normal | priority | urgent
    call_count: int = 0  # times called: the call and each recall

    @property
    def image_url(self) -> str | None:
        return PHOTO_URL_PREFIX + self.image if self.image else None


@dataclass(frozen=True, slots=True)
class NewPhoto:
    """A re-encoded photo and the random name (<32 hex>.jpg) it is stored and served under;
    written in the transaction that writes the row naming it."""

    name: str
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class StoredPhoto:
    """A photo in the database, without its bytes (read in chunks when it is served)."""

    id: int
    size: int  # bytes of JPEG
    created_at: str


@dataclass(frozen=True, slots=True)
class Patient:
    """A patient as the staff's detail view shows them: intake answers and latest visit."""

    id: int
    fname: str
    image: str | None
    created_at: str
    intake: str | None  # JSON of the intake form's other answers, or None (name only)
    entry_id: int | None
    status: str | None
    check_in_time: str | None
    called_at: str | None
    room: str | None

    def answers(self) -> dict[str, str | None]:
        return json.loads(self.intake) if self.intake else {}


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """A committed change, as the event log holds it."""

    seq: int
    event: str  # PATIENT_ADDED | PATIENT_COMPLETED | PATIENT_UPDATED | PATIENT_RECALLED | ..
    at: str
    entry: QueueEntry
    # A transition's state before it (status, line prefix); None for the seed's events.
    from_status: str | None = None

    def legacy(self) -> str | None:
        """The event a client without ?events=all gets for this one, or None: a patient
        leaving the waiting list for any reason is PATIENT_COMPLETED, one coming back is
        PATIENT_ADDED (both are already sent as themselves); a change that keeps them out of
        it (recall, start, done, no-show) is none of the seed's business."""
        if self.event in SEED_EVENTS:
            return self.event
        if self.event == PATIENT_STATUS and self.from_status == "waiting":
            return PATIENT_COMPLETED if self.entry.status != "waiting" else None
        return None


PATIENT_ADDED = "PATIENT_ADDED"
PATIENT_COMPLETED = "PATIENT_COMPLETED"
QUEUE_SNAPSHOT = "QUEUE_SNAPSHOT"
SETTINGS_CHANGED = "SETTINGS_CHANGED"  # ours, only to subscribers that ask for it
# Ours: a waiting patient's priority changed. Only to subscribers that ask for every event
# (?events=all): the original's clients never see an event type they do not know.
PATIENT_UPDATED = "PATIENT_UPDATED"
# Ours (issue 16), only to ?events=all: a called patient called again (call_count), and any
# other change of a visit's state (`status`, `from`) that is not a call (PATIENT_COMPLETED)
# nor a return to the waiting list (PATIENT_ADDED). Without ?events=all, a PATIENT_STATUS
# taking a patient off the waiting list is sent as PATIENT_COMPLETED (QueueEvent.legacy).
PATIENT_RECALLED = "PATIENT_RECALLED"
PATIENT_STATUS = "PATIENT_STATUS"
SEED_EVENTS = frozenset({PATIENT_ADDED, PATIENT_COMPLETED})
EVENT_STATUS = {
    PATIENT_ADDED: "waiting",
    PATIENT_COMPLETED: "called",
    PATIENT_UPDATED: "waiting",
    PATIENT_RECALLED: "called",
}
# A visit's states (issue 16); the open ones are closed as not_seen at the end of the day.
STATES = ("waiting", "called", "in_service", "done", "no_show", "cancelled", "not_seen")
OPEN_STATES = ("waiting", "called", "in_service")


# The actions a doctor takes on a visit: the states each applies to and the state it leads
# to (README "States and transitions"). The call itself is call_next / complete.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "recall": (("called",), "called"),
    "start": (("called",), "in_service"),
    "done": (("called", "in_service"), "done"),
    "no_show": (("called",), "no_show"),
    "requeue": (("called", "no_show"), "waiting"),
    "cancel": (("waiting",), "cancelled"),
    "transfer": (("waiting", "called", "in_service", "no_show"), "waiting"),
}
REQUEUE_POSITIONS = ("front", "back")
CANCEL_REASONS = ("left", "request")


def transition_target(action: str, status: str) -> str:
    """The state `action` takes a visit in `status` to; Conflict when it does not apply."""
    sources, target = TRANSITIONS[action]
    if status not in sources:
        raise Conflict(
            f"{action} does not apply to a visit that is {status}.",
            errors.TRANSITION_NOT_ALLOWED,
        )
    return target


def legacy_status(status: str) -> str:
    """A state as the seed's clients know it: waiting, or completed (out of the list)."""
    return "waiting" if status == "waiting" else "completed"


# Characters that draw nothing though Unicode does not file them as format characters
# (Hangul fillers, the braille blank): a name of only these shows as empty.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Embeddings, overrides and isolates reorder the text after them: a name holding one can
# turn the names around it on a staff page or a wall display backwards (U+202A-202E,
# U+2066-2069). The marks LRM, RLM and ALM stay allowed: they only nudge neutral characters.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
WHITESPACE_CONTROLS = frozenset("\t\n\v\f\r")  # folded into single spaces below


def has_control_characters(text: str) -> bool:
    """Control characters (tab and newline too), line separators or bidi controls: what a
    one-line label or room must not hold."""
    return any(
        char in BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text
    )


def is_invisible(char: str) -> bool:
    """Draws nothing: whitespace, a format character (zero-width space, joiners, marks, BOM)
    or a blank letter."""
    return char.isspace() or unicodedata.category(char) == "Cf" or char in BLANK_LETTERS


def clean_name(value: object) -> str:
    """A patient's name as stored and shown: NFC, runs of whitespace as one space; refused
    when it shows nothing, or holds NUL, another control character or a bidi control."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput("fname is required.", errors.NAME_REQUIRED)
    if not isinstance(value, str):
        raise InvalidInput("fname must be text.", errors.NAME_NOT_TEXT)
    for char in value:
        if char in BIDI_CONTROLS or (
            unicodedata.category(char) == "Cc" and char not in WHITESPACE_CONTROLS
        ):
            raise InvalidInput(
                "fname must not contain control characters or bidi overrides.",
                errors.NAME_INVALID_CHARACTER,
            )
    # NFC: one spelling per name ("e" + combining acute is stored as "é"), so equal names
    # compare, count and truncate alike.
    name = " ".join(unicodedata.normalize("NFC", value).split())
    if all(is_invisible(char) for char in name):
        raise InvalidInput("fname is required.", errors.NAME_REQUIRED)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"fname must be at most {MAX_NAME_LENGTH} characters.", errors.NAME_TOO_LONG
        )
    return name


def check_in_fingerprint(name: str, photo: bytes | None, intake: str | None = None) -> str:
    """SHA-256 of a check-in's body as the kiosk sent it (the cleaned name, the photo's
    bytes and the other answers), stored with its Idempotency-Key: a retry sends the same,
    a new patient not. A name-only check-in hashes as it did before intake forms."""
    digest = hashlib.sha256()
    parts = [name.encode(), photo if photo is not None else b""]
    if intake is not None:
        parts.append(intake.encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))  # lengths first: no two bodies collide
        digest.update(part)
    digest.update(b"photo" if photo is not None else b"none")
    return digest.hexdigest()


def idempotency_key_reused(what: str = "check-in") -> Conflict:
    return Conflict(
        f"This Idempotency-Key was used for a different {what}; send a new key.",
        errors.IDEMPOTENCY_KEY_REUSED,
    )


# Where one name part ends and the next begins, besides white space: a zero-width space or
# word joiner typed between given and family name, commas ("Smith,John", also the CJK and
# Arabic commas) and the middle dots of transcribed names ("Anna·Kowalska", "アンナ・コワルスカ").
COMMAS = ",\uff0c\u3001\u060c"  # comma, fullwidth, ideographic, Arabic
NAME_SEPARATORS = re.compile(f"[\\s\u200b\u2060\ufeff\u00b7\u30fb{COMMAS}]+")
ELLIPSIS = "\u2026"


def display_name(fname: str, style: str) -> str:
    """The wall display's short form of a name, unless the clinic chose full names.

    first_initial keeps the given name and only the first letter of the family name, and
    never shows a name whole:
    - "John Doe" -> "John D."; "Mary Ann Smith" -> "Mary S."; "Smith, John" -> "John S."
      (a comma means family name first); a zero-width space, a middle dot or a comma
      separates words as a space does ("Anna\u200bKowalska" -> "Anna K.").
    - A name in Chinese, Japanese or Korean script puts the family name first, often with
      no space: its first character and an ellipsis ("王小明" -> "王…", "김민준" -> "김…").
    - One word that cannot be split (a mononym, or parts run together): its first letter
      and an ellipsis ("Madonna" -> "M…").
    """
    if style == "full":
        return fname
    if _is_east_asian(fname):
        return _first_letter(fname) + ELLIPSIS
    head, comma, tail = _split_at_comma(fname)
    words = [w for w in NAME_SEPARATORS.split(f"{tail} {head}" if comma else fname) if w]
    if len(words) < 2:
        return _first_letter(words[0] if words else fname) + ELLIPSIS
    return f"{words[0]} {_first_letter(words[-1])}."


def _split_at_comma(fname: str) -> tuple[str, bool, str]:
    for index, char in enumerate(fname):
        if char in COMMAS:
            head, tail = fname[:index].strip(), fname[index + 1 :].strip()
            if head and tail:
                return head, True, tail
    return fname, False, ""


def _first_letter(text: str) -> str:
    """The first visible character with the marks that belong to it (so "É" stays whole)."""
    visible = [c for c in text if not is_invisible(c) and not NAME_SEPARATORS.match(c)]
    if not visible:
        return ""
    start = text.index(visible[0])
    end = start + 1
    while end < len(text) and unicodedata.category(text[end]) in ("Mn", "Mc", "Me"):
        end += 1
    return text[start:end]


def _is_east_asian(fname: str) -> bool:
    """Whether the name's first letter is Han, kana or Hangul."""
    letter = _first_letter(fname)
    if not letter:
        return False
    name = unicodedata.name(letter[0], "")
    return name.startswith(
        ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HANGUL", "HIRAGANA", "KATAKANA")
    )


def patient_view(
    entry: QueueEntry,
    audience: Audience,
    settings: Settings,
    *,
    status: bool = True,
    photo_url: PhotoUrl | None = None,
) -> dict[str, Any]:
    """The `patient` object of the seed's events and REST bodies, reduced for wall displays.

    `photo_url` turns a stored photo's name into the URL clients get (a signed link,
    photo_links.py); without it, the bare path."""
    image = None
    if entry.image and (audience is Audience.STAFF or settings.display_photos):
        image = photo_url(entry.image) if photo_url else entry.image_url
    if audience is Audience.DISPLAY:
        fname = display_name(entry.fname, settings.display_names)
    else:
        fname = entry.fname
    view: dict[str, Any] = {"id": entry.patient_id, "fname": fname}
    if status:
        view["status"] = legacy_status(entry.status)
    view["image"] = image
    return view


def event_message(
    event: QueueEvent,
    audience: Audience,
    settings: Settings,
    photo_url: PhotoUrl | None = None,
    *,
    legacy: bool = False,
) -> dict[str, Any]:
    """The seed's exact shape first; our additions are extra top-level keys old clients ignore.
    `legacy`: as a client without ?events=all gets it (QueueEvent.legacy names the event)."""
    name = (event.legacy() or event.event) if legacy else event.event
    message = {
        "type": MESSAGE_TYPE,
        "event": name,
        "patient": patient_view(event.entry, audience, settings, photo_url=photo_url),
        "seq": event.seq,
        "id": event.entry.id,
        "check_in_time": event.entry.check_in_time,
        "at": event.at,
        "ticket": event.entry.ticket,
        "line": event.entry.line,
        "priority": event.entry.priority,
    }
    if name == PATIENT_COMPLETED or name in (PATIENT_RECALLED, PATIENT_STATUS):
        message["room"] = event.entry.room
    if name in (PATIENT_RECALLED, PATIENT_STATUS):  # ours: the precise state
        message.update(status=event.entry.status, call_count=event.entry.call_count)
    if event.from_status is not None and not legacy:  # a transition's state before it
        message["from"] = event.from_status
    return message


def queue_item(
    entry: QueueEntry,
    audience: Audience,
    settings: Settings,
    photo_url: PhotoUrl | None = None,
    place: int | None = None,
) -> dict[str, Any]:
    """A queue entry as GET /api/queue/ lists it; ticket, line, priority and (waiting) place
    in its line's call order are ours (tickets are not personal: displays get them too)."""
    item = {
        "id": entry.id,
        "patient": patient_view(entry, audience, settings, status=False, photo_url=photo_url),
        "status": entry.status,
        "check_in_time": entry.check_in_time,
        "ticket": entry.ticket,
        "line": entry.line,
        "priority": entry.priority,
    }
    if entry.status != "waiting":
        item["status"] = legacy_status(entry.status)
        item.update(called_at=entry.called_at, room=entry.room, visit_status=entry.status)
    elif place is not None:
        item["place"] = place
    return item


def snapshot_message(
    seq: int,
    waiting: list[QueueEntry],
    audience: Audience,
    settings: Settings,
    called: list[QueueEntry] | None = None,
    photo_url: PhotoUrl | None = None,
    places: dict[int, int] | None = None,
) -> dict[str, Any]:
    """The waiting queue at `seq`, and (ours) today's most recent calls, newest first."""
    where = places or {}
    return {
        "type": MESSAGE_TYPE,
        "event": QUEUE_SNAPSHOT,
        "seq": seq,
        "queue": [
            queue_item(entry, audience, settings, photo_url, where.get(entry.id))
            for entry in waiting
        ],
        "called": [queue_item(entry, audience, settings, photo_url) for entry in called or []],
    }


def settings_from_stored(raw: dict[str, str]) -> Settings:
    """Settings from their stored JSON texts; a damaged or stale value falls back to its default."""
    settings = Settings()
    for key, text in raw.items():
        try:
            settings = updated_settings(settings, {key: json.loads(text)})
        except (ValueError, InvalidInput):
            continue
    return settings
