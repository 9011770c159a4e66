"""Every error the box answers with: a stable code, its HTTP status and its body key.

Pages and clients branch on `code` and show their own catalog text; the human `error` or
`detail` text beside it keeps the original system's exact wording. Imports nothing of the
web, so the domain, the services and the CLI raise the same codes the API answers with.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str  # snake_case, stable: clients and page scripts branch on it
    status: int  # the HTTP status it is answered with
    when: str  # for the README's table and the reader
    key: str = "error"  # "detail" for authentication and roles, as the original wrote them
    # The original's `messages` (djangorestframework-simplejwt's), for the codes that had them.
    token_messages: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.code


def error_body(code: ErrorCode, message: str) -> dict[str, object]:
    """The one shape of every error body: the original's key and text, and our code; plus the
    original's `messages` list where it had one, so its clients find the keys they read."""
    body: dict[str, object] = {code.key: message, "code": code.code}
    if code.token_messages:
        body["messages"] = [
            {"token_class": "AccessToken", "token_type": "access", "message": text}
            for text in code.token_messages
        ]
    return body


def _code(
    code: str, status: int, when: str, key: str = "error", token_messages: tuple[str, ...] = ()
) -> ErrorCode:
    made = ErrorCode(code, status, when, key, token_messages)
    ALL.append(made)
    return made


ALL: list[ErrorCode] = []

# --- check-in --------------------------------------------------------------------------
NAME_REQUIRED = _code("name_required", 400, "a check-in without fname (or one that shows nothing)")
NAME_NOT_TEXT = _code("name_not_text", 400, "fname is not text")
NAME_TOO_LONG = _code("name_too_long", 400, "fname longer than 255 characters")
NAME_INVALID_CHARACTER = _code(
    "name_invalid_character", 400, "fname holds NUL, another control character or a bidi control"
)
PHOTO_EMPTY = _code("photo_empty", 400, "an empty image part")
PHOTO_NOT_AN_IMAGE = _code("photo_not_an_image", 400, "the image is not a JPEG, PNG or WebP")
PHOTO_TOO_MANY_PIXELS = _code("photo_too_many_pixels", 400, "the image has too many pixels")
PHOTO_TOO_LARGE_TO_DECODE = _code(
    "photo_too_large_to_decode",
    400,
    "decoding would need more memory than one photo may (big PNG, WebP, progressive JPEG)",
)
PHOTO_TOO_MANY_SCANS = _code(
    "photo_too_many_scans", 400, "a JPEG of more than 50 scans (a progressive-JPEG scan bomb)"
)
PHOTO_TOO_SLOW_TO_DECODE = _code(
    "photo_too_slow_to_decode", 400, "decoding the image took more than its second of CPU time"
)
PHOTO_DAMAGED = _code("photo_damaged", 400, "the image is truncated or cannot be decoded")
PHOTO_TOO_LARGE = _code("photo_too_large", 413, "the image is larger than max_photo_bytes")
FIELD_TOO_LARGE = _code("field_too_large", 413, "a text field of a multipart form over 64 KB")
# The intake form's answers (intake.py): each field's problem, keyed by field in the body.
FIELD_REQUIRED = _code("field_required", 400, "an intake question the form requires was not sent")
FIELD_BLANK = _code("field_blank", 400, 'an intake answer that is only white space (or JSON "")')
FIELD_NOT_TEXT = _code(
    "field_not_text", 400, "an intake answer that is true/false, a list or an object"
)
FIELD_TOO_LONG = _code("field_too_long", 400, "an intake answer longer than its field allows")
FIELD_INVALID_CHARACTER = _code(
    "field_invalid_character", 400, "an intake answer holding a control character or bidi control"
)
CHOICE_INVALID = _code("choice_invalid", 400, "an answer that is not one of the field's choices")
FORMAT_INVALID = _code(
    "format_invalid", 400, "a phone, SSN, ZIP or Medicaid number of the wrong digits; a bad date"
)
DATE_IN_FUTURE = _code("date_in_future", 400, "a date of birth after today")
PHOTO_NOT_A_FILE = _code("photo_not_a_file", 400, "original form: `image` is text, not a file part")
PHOTO_FILENAME_TOO_LONG = _code(
    "photo_filename_too_long", 400, "original form: the photo's file name is over 100 characters"
)
PHOTO_EXTENSION_NOT_ALLOWED = _code(
    "photo_extension_not_allowed", 400, "original form: the file name's extension is no image's"
)
PHOTO_TYPE_NOT_ALLOWED = _code(
    "photo_type_not_allowed", 400, "original form: the image is not a JPEG or PNG"
)
PHOTO_OVER_ORIGINAL_LIMIT = _code(
    "photo_over_original_limit", 400, "original form: the image is over 5 MB"
)
IDEMPOTENCY_KEY_INVALID = _code(
    "idempotency_key_invalid", 400, "Idempotency-Key is not 1-100 letters, digits, - or _"
)
IDEMPOTENCY_KEY_REUSED = _code(
    "idempotency_key_reused", 422, "the Idempotency-Key was used before with another name or photo"
)
REQUEST_TIMEOUT = _code("request_timeout", 408, "the upload took longer than upload_timeout")
HOST_NOT_ALLOWED = _code(
    "host_not_allowed", 421, "the Host header is not one of the box's names (allowed_hosts)"
)
TOO_MANY_FEEDS = _code(
    "too_many_feeds", 429, "a live feed over max_feeds_per_credential open with one credential"
)

# --- calls -----------------------------------------------------------------------------
INVALID_ACTION = _code("invalid_action", 400, "a doctor's action or patient_id is not valid")
NOBODY_WAITING = _code("nobody_waiting", 404, "call_next with nobody waiting")
NO_SUCH_PATIENT = _code("no_such_patient", 404, "complete names no waiting patient")
VISIT_NOT_FOUND = _code("visit_not_found", 404, "a doctor's action names a patient with no visit")
TRANSITION_NOT_ALLOWED = _code(
    "transition_not_allowed", 409, "the action does not apply to the visit's state (README states)"
)
NOTHING_TO_UNDO = _code("nothing_to_undo", 409, "undo with no action of this credential to undo")
UNDO_EXPIRED = _code("undo_expired", 409, "undo after the undo_seconds setting has passed")
UNDO_SUPERSEDED = _code(
    "undo_superseded", 409, "undo of an action after which the visit changed again"
)
PATIENT_NOT_FOUND = _code("patient_not_found", 404, "the patient detail view names no patient")
PRIORITY_INVALID = _code(
    "priority_invalid", 400, "priority is not normal, priority or urgent (urgent: staff only)"
)

# --- lines -----------------------------------------------------------------------------
LINE_INVALID = _code(
    "line_invalid", 400, "a line's prefix, name, colour, icon, hours or position is not valid"
)
LINE_NOT_FOUND = _code("line_not_found", 404, "PATCH /api/lines/{id}/ names no line")
LINE_PREFIX_TAKEN = _code("line_prefix_taken", 409, "another line already has that ticket prefix")
LINE_LAST_ACTIVE = _code("line_last_active", 409, "deactivating the only active line")
TOO_MANY_LINES = _code("too_many_lines", 409, "a new line beyond the box's 50")
LINE_UNKNOWN = _code("line_unknown", 400, "a credential's lines name a prefix no line has")
LINE_UNAVAILABLE = _code(
    "line_unavailable", 400, "a check-in for a line that does not exist, is inactive or is closed"
)

# --- request bodies --------------------------------------------------------------------
INVALID_JSON = _code("invalid_json", 400, "the body is not UTF-8 JSON text")
BODY_NOT_AN_OBJECT = _code("body_not_an_object", 400, "the JSON body is not an object")
FORM_MALFORMED = _code("form_malformed", 400, "a urlencoded or multipart form cannot be read")
MULTIPART_NESTED = _code("multipart_nested", 400, "a multipart part is itself multipart")
CHARSET_UNSUPPORTED = _code(
    "charset_unsupported", 400, "a form or form field declares a charset other than UTF-8"
)
UNSUPPORTED_MEDIA_TYPE = _code("unsupported_media_type", 415, "a body that is not JSON or a form")
REQUEST_TOO_LARGE = _code("request_too_large", 413, "a body over the 1 MB limit")

# --- sign-in and sessions --------------------------------------------------------------
NOT_AUTHENTICATED = _code("not_authenticated", 401, "no credentials were sent", "detail")
TOKEN_NOT_VALID = _code(
    "token_not_valid",
    401,
    "an access token or session that is invalid or ended",
    "detail",
    ("Token is invalid or expired",),
)
BAD_AUTHORIZATION_HEADER = _code(
    "bad_authorization_header",
    401,
    "a bearer header without exactly one token after `Bearer`",
    "detail",
)
REFRESH_NOT_VALID = _code(
    "refresh_not_valid", 401, "a refresh token that is invalid or expired", "detail"
)
REFRESH_REUSED = _code(
    "refresh_reused",
    401,
    "a refresh token already used once: taken as stolen, its session has ended",
    "detail",
)
PERMISSION_DENIED = _code("permission_denied", 403, "the credential lacks the role", "detail")
CROSS_ORIGIN = _code(
    "cross_origin", 403, "a cookie request that did not come from our own pages", "detail"
)
LOGIN_FIELDS_REQUIRED = _code("login_fields_required", 400, "a login without token or password")
TOKEN_INVALID = _code(
    "token_invalid",
    400,
    "a login token that is not 8 digits (text or number); while credentials imported from "
    "CheckIn have other tokens, one that is not 1-100 characters or holds a control character",
)
REFRESH_REQUIRED = _code("refresh_required", 400, "a refresh without the refresh token")
BAD_LOGIN = _code("bad_login", 401, "wrong token or password, or an inactive credential")
PASSWORD_RESET_REQUIRED = _code(
    "password_reset_required",
    403,
    "the right password of a credential imported with a weak one: an administrator must set "
    "a new password first (token password)",
    "detail",
)
TOO_MANY_ATTEMPTS = _code(
    "too_many_attempts", 429, "repeated failed logins; wait Retry-After seconds"
)

# --- first run -------------------------------------------------------------------------
SETUP_FIELDS_REQUIRED = _code("setup_fields_required", 400, "setup without code or password")
SETUP_COMPLETE = _code("setup_complete", 403, "an administrator already exists")
SETUP_CODE_INVALID = _code("setup_code_invalid", 403, "the setup code is wrong")

# --- credentials and settings ----------------------------------------------------------
PASSWORD_REQUIRED = _code("password_required", 400, "a new credential without a password")
PASSWORD_TOO_SHORT = _code("password_too_short", 400, "a new password under 8 characters")
PASSWORD_TOO_LONG = _code("password_too_long", 400, "a new password over 1024 characters")
ADMIN_PASSWORD_TOO_SHORT = _code(
    "admin_password_too_short", 400, "a new administrator's password under 12 characters"
)
PASSWORD_TOO_WEAK = _code(
    "password_too_weak",
    400,
    "a new password that is common or easy to guess (the clinic's name, the token, "
    "repeats, sequences; stricter for an administrator)",
)
ROLE_INVALID = _code("role_invalid", 400, "role is not form, doctor, queue or admin")
LABEL_INVALID = _code("label_invalid", 400, "label is not 1-100 characters")
ROOM_TOO_LONG = _code("room_too_long", 400, "room is not text of at most 50 characters")
LABEL_INVALID_CHARACTER = _code(
    "label_invalid_character", 400, "label holds a control character or a bidi control"
)
ROOM_INVALID_CHARACTER = _code(
    "room_invalid_character", 400, "room holds a control character or a bidi control"
)
NO_SUCH_CREDENTIAL = _code("no_such_credential", 404, "no credential has that token")
CREDENTIAL_CHANGE_INVALID = _code(
    "credential_change_invalid",
    400,
    "a credential change that is not an object of label/room/lines",
)
SETTINGS_EMPTY = _code("settings_empty", 400, "a settings change that is not a non-empty object")
SETTING_UNKNOWN = _code("setting_unknown", 400, "a settings key the box does not have")
CLINIC_NAME_INVALID = _code("clinic_name_invalid", 400, "clinic_name is not 1-100 characters")
SETTING_VALUE_INVALID = _code("setting_value_invalid", 400, "a setting's value is not allowed")
PRESET_UNKNOWN = _code("preset_unknown", 400, "a settings preset that is not original or private")
CALL_RULE_INVALID = _code(
    "call_rule_invalid",
    400,
    "a line's call order rule (strict, or interleave P:N, max wait) is not valid",
)

# --- photos ----------------------------------------------------------------------------
PHOTO_LINK_INVALID = _code(
    "photo_link_invalid", 403, "a photo link whose signature is wrong or whose time ran out"
)
PHOTO_NOT_ALLOWED = _code(
    "photo_not_allowed", 403, "a photo without a link, from a kiosk (or a display without photos)"
)

# --- live feed -------------------------------------------------------------------------
NOT_A_WHOLE_NUMBER = _code("not_a_whole_number", 400, "?since= is not a whole number of 0 or more")
QUERY_INVALID = _code("query_invalid", 400, "a query parameter's value is not one it takes")

# --- the patient's phone --------------------------------------------------------------
VISIT_LINK_NOT_FOUND = _code(
    "visit_link_not_found",
    404,
    "a status link (/v/<token>) that is unknown, malformed or past its visit's end plus 30 min",
)
TOO_MANY_STATUS_PAGES = _code(
    "too_many_status_pages", 503, "more live status pages open than the box serves at once"
)

# --- spoken calls ----------------------------------------------------------------------
SPEECH_REQUEST_INVALID = _code(
    "speech_request_invalid", 400, "a spoken call's entry, lang or show is not valid"
)
SPEECH_ENTRY_NOT_FOUND = _code(
    "speech_entry_not_found",
    404,
    "a spoken call for a queue entry that does not exist or was never called",
)
SPEECH_UNAVAILABLE = _code(
    "speech_unavailable",
    503,
    "the box cannot speak: espeak-ng is not installed, or it failed or took too long; the "
    "display falls back to the browser's voice or the chime",
)

# --- records: the day's history and its exports -----------------------------------------
RECORDS_DATE_INVALID = _code(
    "records_date_invalid", 400, "date, from or to of a records request is not a YYYY-MM-DD day"
)
RECORDS_RANGE_INVALID = _code(
    "records_range_invalid", 400, "an export's from is after its to, or the range is over 366 days"
)
RECORDS_QUERY_INVALID = _code(
    "records_query_invalid",
    400,
    "a records request's ticket is over 20 characters or sensitive is not 0 or 1",
)

# --- the audit viewer ------------------------------------------------------------------
AUDIT_QUERY_INVALID = _code(
    "audit_query_invalid",
    400,
    "an audit viewer's action, from, to, limit or before is not one it takes",
)
AUDIT_RANGE_INVALID = _code("audit_range_invalid", 400, "the audit viewer's from is after its to")
AUDIT_WHO_UNKNOWN = _code(
    "audit_who_unknown", 400, "the audit viewer's who is no credential's token or label"
)

# --- statistics ------------------------------------------------------------------------
STATS_RANGE_INVALID = _code(
    "stats_range_invalid",
    400,
    "a statistics range whose from or to is not a YYYY-MM-DD date, from after to, or longer "
    "than 366 days",
)
STATS_LINE_UNKNOWN = _code("stats_line_unknown", 400, "statistics for a line prefix no line has")
STATS_DOCTOR_UNKNOWN = _code(
    "stats_doctor_unknown", 400, "statistics for a doctor token no credential has"
)

# --- backups from /admin ----------------------------------------------------------------
BACKUP_PASSPHRASE_INVALID = _code(
    "backup_passphrase_invalid",
    400,
    "a backup's passphrase is missing, under 12 characters, over 1024 or not one line",
)
BACKUP_FAILED = _code(
    "backup_failed", 503, "the backup could not be written (disk full, damaged database)"
)
BACKUP_FOLDER_INVALID = _code(
    "backup_folder_invalid",
    400,
    "the nightly backups' folder is not an absolute path to an existing folder the box can "
    "write in",
)
BACKUP_SCHEDULE_INVALID = _code(
    "backup_schedule_invalid",
    400,
    "a backup schedule whose at is not HH:MM, or not exactly one of keep_days and keep_copies",
)
BACKUP_NOT_SCHEDULED = _code("backup_not_scheduled", 409, "run now without a backup folder set")
BACKUP_TARGET_MISSING = _code(
    "backup_target_missing",
    503,
    "the backup folder or its marker file is not there: the disk or share is not mounted",
)
RESTORE_TOO_LARGE = _code("restore_too_large", 413, "an uploaded backup over the box's limit")
RESTORE_REFUSED = _code(
    "restore_refused",
    400,
    "an uploaded backup that restore refuses: wrong passphrase, not encrypted, damaged, "
    "altered, or from a newer schema; nothing was changed",
)

# --- the box ---------------------------------------------------------------------------
NOT_FOUND = _code("not_found", 404, "no such path (or photo)")
METHOD_NOT_ALLOWED = _code("method_not_allowed", 405, "the path does not take this method")
BAD_REQUEST = _code("bad_request", 400, "a request HTTP itself refuses (e.g. not a WebSocket)")
HTTP_ERROR = _code("http_error", 400, "any other HTTP refusal; the status says which")
DATABASE_DAMAGED = _code(
    "database_damaged", 503, "the database is corrupt: maintenance mode, restore a backup"
)
CLOCK_TIME_INVALID = _code(
    "clock_time_invalid",
    400,
    "a time to set the box's clock to that is not ISO 8601 with a zone, or "
    "not between 2024 and 2100",
)
CLOCK_HELPER_MISSING = _code(
    "clock_helper_missing",
    409,
    "the box's clock cannot be set from the web: no clock helper "
    "(checkin-appliance-clock.path) is installed",
)
DATABASE_UNAVAILABLE = _code(
    "database_unavailable", 503, "the database cannot be written right now (disk, lock)"
)
DISK_FULL = _code(
    "disk_full",
    507,
    "the box's disk has no room for the check-in (photo or database); nothing was stored, "
    "reads go on: free space (README, disk full) and send it again",
)
INTERNAL_ERROR = _code("internal_error", 500, "a bug: the log has the traceback")
