"""REST handlers: /api/…, /healthz, /ca.crt and /media/…; each turns HTTP into one domain call."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from checkin_appliance import (
    __version__,
    errors,
    intake,
    photos,
    retention,
    speech,
    system,
    visits,
)
from checkin_appliance.config import Config
from checkin_appliance.domain import (
    TRANSITIONS,
    Audience,
    InvalidInput,
    NotFound,
    Role,
    TooLarge,
    audience_for,
    parse_time,
    patient_view,
    queue_item,
    utc_now,
)
from checkin_appliance.intake import Upload
from checkin_appliance.store import DiskFull, StoreUnavailable
from checkin_appliance.web import cors, visit
from checkin_appliance.web import photo as web_photo
from checkin_appliance.web.auth import (
    SESSION_COOKIE,
    client_address,
    identify,
    not_authenticated,
    refuse_other_sites,
    require,
    same_origin,
    set_session_cookie,
)
from checkin_appliance.web.errors import DISK_FULL as DISK_FULL_TEXT
from checkin_appliance.web.errors import ApiError, error_response, health_error, json_response
from checkin_appliance.web.keys import (
    ACCESS,
    CLOCK,
    CONFIG,
    HUB,
    RECEPTION,
    REPLICATOR,
    SPEECH,
    STORE,
)

if TYPE_CHECKING:
    from checkin_appliance.tls import LocalCA

routes = web.RouteTableDef()

FIELD_LIMIT = 64 * 1024  # a text field of a check-in form
MAX_ID = 2**63 - 1  # the largest integer SQLite stores
INVALID_ACTION = "Invalid action or missing patient."
NO_BODY = "The request body must be a JSON object."
# A kiosk's retry key (the page sends a UUID); answers are kept for 24 hours.
IDEMPOTENCY_KEY = re.compile(r"\A[A-Za-z0-9_-]{1,100}\Z")
TEXT_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


async def read_body(request: web.Request) -> dict[str, Any]:
    """A JSON object, or the text fields of a form (as the original accepted); else 400/415."""
    if request.content_type == "multipart/form-data":
        fields, _ = await read_multipart(request, None)
        return fields
    if request.content_type == "application/x-www-form-urlencoded":
        _check_charset(request.charset)
        try:
            form = await request.post()  # bounded by client_max_size
        except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
            raise InvalidInput("The form body is malformed.", errors.FORM_MALFORMED) from exc
        return {key: value for key, value in form.items() if isinstance(value, str)}
    if request.content_type not in (
        "application/json",
        "application/octet-stream",
        "text/plain",
        "",
    ):
        raise ApiError(errors.UNSUPPORTED_MEDIA_TYPE, "Send the request body as application/json.")
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        # JSON between systems is UTF-8 (RFC 8259), as the original read it; a BOM is allowed.
        text = raw.decode("utf-8-sig")
        body = json.loads(text)
        # A lone surrogate ("\ud800") is valid JSON but no text: refuse it here, not in
        # SQLite or on the way out. Only an escape can make one.
        if "\\u" in text:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise InvalidInput("The request body is not valid JSON text.", errors.INVALID_JSON) from exc
    if not isinstance(body, dict):
        raise InvalidInput(NO_BODY, errors.BODY_NOT_AN_OBJECT)
    return body


async def _read_part(
    part: BodyPartReader, limit: int, too_large: str, code: errors.ErrorCode
) -> bytes:
    """Reads one multipart part, counting bytes as they arrive (client_max_size does not)."""
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TooLarge(too_large, code)
        chunks.append(chunk)
    return b"".join(chunks)


def _size_text(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MB"
    return f"{max(1, round(size / 1024))} KB"


def _check_charset(charset: str | None) -> None:
    """Form text is UTF-8 (ASCII is part of it): any other declared charset is refused, not
    handed to Python's codecs (`unicode_escape` raised a 500, `utf-7` was honoured)."""
    if charset is not None and charset.strip().lower() not in TEXT_CHARSETS:
        raise InvalidInput(
            "Form fields must be UTF-8 text (charset utf-8).", errors.CHARSET_UNSUPPORTED
        )


async def read_check_in(request: web.Request) -> tuple[dict[str, Any], Upload | None, bool]:
    """A check-in's answers, its photo (if any) and whether they came as a form (where an
    empty value stands for null), from multipart, urlencoded or JSON."""
    if request.content_type.startswith("multipart/"):
        fields, photo = await read_multipart(request, request.app[CONFIG].max_photo_bytes)
        return fields, photo, True
    body = await read_body(request)
    image = body.get("image")  # JSON has no files: any value but null is text, not a file
    photo = Upload(str(image).encode(), None, is_file=False) if image is not None else None
    return body, photo, request.content_type == "application/x-www-form-urlencoded"


async def read_multipart(
    request: web.Request, max_photo: int | None
) -> tuple[dict[str, Any], Upload | None]:
    """A multipart form's text fields (the last of each name wins, as the original read
    them) and, when `max_photo` is given, its `image` part; other file parts are read and
    dropped. Counted as they arrive: the photo up to `max_photo`, everything else up to
    1 MB."""
    too_large = f"The photo is larger than the {_size_text(max_photo or 0)} limit."
    fields: dict[str, Any] = {}
    photo: Upload | None = None
    budget = (max_photo or 0) + 1024 * 1024  # everything that is not the photo
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidInput(
                    "Nested multipart bodies are not supported.", errors.MULTIPART_NESTED
                )
            if max_photo is not None and part.name == "image" and part.filename is not None:
                data = await _read_part(part, max_photo, too_large, errors.PHOTO_TOO_LARGE)
                photo = Upload(data, part.filename)
                continue
            if max_photo is None:  # a form posted to the JSON endpoints: 1 MB in all, as before
                data = await _read_part(
                    part, budget, "Request body is too large.", errors.REQUEST_TOO_LARGE
                )
            else:
                data = await _read_part(
                    part,
                    min(FIELD_LIMIT, budget),
                    "A form field is too large.",
                    errors.FIELD_TOO_LARGE,
                )
            budget -= len(data)
            if max_photo is not None and part.name == "image":  # text where a file should be
                photo = Upload(data, None, is_file=False) if data else None  # empty: none
            elif part.name and part.filename is None:
                _check_charset(part.get_charset("utf-8"))
                fields[part.name] = data.decode("utf-8", errors="replace")
    except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
        raise InvalidInput("The multipart body is malformed.", errors.FORM_MALFORMED) from exc
    return fields, photo


# --- first run and sessions -------------------------------------------------------------


@routes.post("/api/setup/")
async def setup(request: web.Request) -> web.Response:
    access = request.app[ACCESS]
    await access.require_setup_open()  # before reading the body, as the original did
    body = await read_body(request)
    credential = await access.complete_setup(
        body.get("code"), body.get("password"), client_address(request)
    )
    return json_response({"token": credential.token, **credential.public()}, 201)


@routes.post("/api/login/")
async def login(request: web.Request) -> web.Response:
    if not cors.from_listed_origin(request):  # the operator's apps sign in with a header
        refuse_other_sites(request)  # it sets the page cookie: no login CSRF
    body = await read_body(request)
    tokens = await request.app[ACCESS].login(
        body.get("token"), body.get("password"), client_address(request)
    )
    response = json_response(
        {"access": tokens.access, "refresh": tokens.refresh, "role": tokens.credential.role.value}
    )
    # The page cookie only for our own pages: a script or an integrator (no Sec-Fetch-Site,
    # no Origin of ours) gets none, so no cookie it kept by accident can ride along later.
    if same_origin(request):
        set_session_cookie(response, request, tokens.access, tokens.lifetime)
    return response


@routes.post("/api/token/refresh/")
async def refresh(request: web.Request) -> web.Response:
    body = await read_body(request)
    access, rotated = await request.app[ACCESS].refresh(
        body.get("refresh"), client_address(request)
    )
    # The refresh token rotates: the one sent is used up ("refresh" is ours; the original's
    # clients read only "access").
    return json_response({"access": access, "refresh": rotated})


@routes.post("/api/logout/")
async def logout(request: web.Request) -> web.Response:
    caller = await require(request)
    await request.app[ACCESS].logout(caller.session, caller.actor, "logged out")
    response = json_response({"message": "Logged out."})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# --- the seed's endpoints ---------------------------------------------------------------


@routes.get("/api/patients/")
async def patients_welcome(request: web.Request) -> web.Response:
    caller = await require(request, Role.FORM)
    return json_response(
        {"message": f"Welcome {caller.credential.label}, you can check patients in."}
    )


@routes.post("/api/patients/")
async def check_in(request: web.Request) -> web.Response:
    caller = await require(request, Role.FORM)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise InvalidInput(
            "Idempotency-Key must be 1-100 letters, digits, '-' or '_'.",
            errors.IDEMPOTENCY_KEY_INVALID,
        )
    reception = request.app[RECEPTION]
    try:
        async with asyncio.timeout(request.app[CONFIG].upload_timeout):
            fields, photo, from_form = await read_check_in(request)
    except TimeoutError:
        response = error_response(
            errors.REQUEST_TIMEOUT, "The upload took too long; please try again."
        )
        response.force_close()  # do not linger reading the rest of a trickle
        return response
    except TooLarge as exc:
        if exc.code is errors.PHOTO_TOO_LARGE:  # keyed by field, like the other answers
            limit = request.app[CONFIG].max_photo_bytes
            raise intake.photo_over_limit(
                reception.settings.intake_form, limit, exc.message
            ) from exc
        raise
    checking_in = reception.check_in(
        fields,
        photo,
        caller.actor,
        key,
        from_form=from_form,
        staff=caller.credential.role is Role.ADMIN,
    )
    del photo  # the upload is reception's now: it lets go of it once the photo is re-encoded
    done = await checking_in
    entry = done.entry
    # The original's 201: the patient record with every stored answer; then ours.
    body: dict[str, Any] = {"id": entry.patient_id, "fname": entry.fname, **done.answers}
    body.update(
        image=reception.photo_links.url(entry.image) if entry.image else None,
        wait_time=None,
        created_at=entry.check_in_time,
        updated_at=entry.check_in_time,
        status=entry.status,
        check_in_time=entry.check_in_time,
        queue_entry_id=entry.id,
        position=done.position,
        ticket=entry.ticket,
        line=entry.line,
        priority=entry.priority,
    )
    if done.link_token is not None:  # ours: the patient's own status page (/v/<token>)
        body["status_url"] = visit.status_url(request, done.link_token)
    return json_response(body, 201, {"Idempotent-Replayed": "true"} if done.replayed else None)


@routes.get("/api/patients/{patient_id:[0-9]+}/")
async def patient_detail(request: web.Request) -> web.Response:
    """Ours: one patient's intake answers, for staff (doctor, admin); each look is audited."""
    caller = await require(request, Role.DOCTOR, Role.ADMIN)
    reception = request.app[RECEPTION]
    patient_id = _patient_id(request.match_info["patient_id"])
    if patient_id is None:
        raise NotFound("No patient with that id.", errors.PATIENT_NOT_FOUND)
    patient = await reception.patient(patient_id, caller.actor)
    answers = patient.answers()
    return json_response(
        {
            "id": patient.id,
            "fname": patient.fname,
            "image": reception.photo_links.url(patient.image) if patient.image else None,
            "created_at": patient.created_at,
            "intake": answers,
            "form": intake.describe_answers(reception.settings.intake_form, answers),
            "status": patient.status,
            "check_in_time": patient.check_in_time,
            "called_at": patient.called_at,
            "room": patient.room,
        }
    )


@routes.get("/api/intake-form/catalogue/")
async def intake_catalogue(request: web.Request) -> web.Response:
    """Ours: every question a clinic's own form may ask, with its default flags and labels
    (the admin page builds its form editor from it)."""
    await require(request, Role.ADMIN)
    return json_response({"fields": [field.public() for field in intake.CATALOGUE]})


@routes.get("/api/intake-form/")
async def intake_form(request: web.Request) -> web.Response:
    """Ours: the questions the kiosk asks (the intake_form setting), to render them."""
    await require(request)
    return json_response(intake.describe(request.app[RECEPTION].settings.intake_form))


@routes.get("/api/doctors/")
async def doctors_welcome(request: web.Request) -> web.Response:
    caller = await require(request, Role.DOCTOR)
    return json_response({"message": f"Welcome Doctor {caller.credential.label}."})


@routes.get("/api/doctors/current/")
async def doctors_current(request: web.Request) -> web.Response:
    """Ours: the visit this credential called last while it is still open (called, in
    service, no-show), so a reloaded console shows its call again; null when there is none."""
    caller = await require(request, Role.DOCTOR)
    reception = request.app[RECEPTION]
    entry = await request.app[STORE].open_call(caller.credential.id)
    if entry is None:
        return json_response({"current": None})
    patient = patient_view(
        entry, Audience.STAFF, reception.settings, status=False, photo_url=reception.photo_links.url
    )
    return json_response(
        {
            "current": {
                "id": entry.id,
                "patient": patient,
                "status": entry.status,
                "check_in_time": entry.check_in_time,
                "called_at": entry.called_at,
                "room": entry.room,
                "call_count": entry.call_count,
                "ticket": entry.ticket,
                "line": entry.line,
                "priority": entry.priority,
            }
        }
    )


def _patient_id(value: Any) -> int | None:
    """A positive id SQLite can hold, written as a number (7 or 7.0) or as text ("7")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 < value <= MAX_ID else None


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise InvalidInput(
            "Idempotency-Key must be 1-100 letters, digits, '-' or '_'.",
            errors.IDEMPOTENCY_KEY_INVALID,
        )
    return key


@routes.post("/api/doctors/")
async def doctors_action(request: web.Request) -> web.Response:
    caller = await require(request, Role.DOCTOR)
    key = _idempotency_key(request)
    body = await read_body(request)
    action = body.get("action")
    patient_id = None
    reception = request.app[RECEPTION]
    if isinstance(action, str) and (action in TRANSITIONS or action == "undo"):  # ours
        raw = body.get("patient_id")
        patient_id = None if raw in (None, "") else _patient_id(raw)
        if raw not in (None, "") and patient_id is None:
            raise InvalidInput(INVALID_ACTION, errors.INVALID_ACTION)
        acted = await reception.act(
            action,
            patient_id,
            caller.actor,
            room=caller.credential.room,
            position=body.get("position"),
            reason=body.get("reason"),
            line=body.get("line"),
            idempotency_key=key,
        )
        entry = acted.entry
        return json_response(
            {
                "message": "Action successful.",
                "patient": patient_view(
                    entry, Audience.STAFF, reception.settings, photo_url=reception.photo_links.url
                ),
                "id": entry.id,
                "ticket": entry.ticket,
                "line": entry.line,
                "priority": entry.priority,
                "status": entry.status,
                "from": acted.from_status,
                "room": entry.room,
                "call_count": entry.call_count,
            },
            headers={"Idempotent-Replayed": "true"} if acted.replayed else None,
        )
    if action == "set_priority":  # ours
        patient_id = _patient_id(body.get("patient_id"))
        if patient_id is None:
            raise InvalidInput(INVALID_ACTION, errors.INVALID_ACTION)
        entry = await reception.set_priority(patient_id, body.get("priority"), caller.actor)
        return json_response(
            {
                "message": "Action successful.",
                "patient": patient_view(
                    entry, Audience.STAFF, reception.settings, photo_url=reception.photo_links.url
                ),
                "id": entry.id,
                "ticket": entry.ticket,
                "line": entry.line,
                "priority": entry.priority,
            }
        )
    if action == "complete" and body.get("patient_id") not in (None, ""):
        patient_id = _patient_id(body["patient_id"])
        if patient_id is None:
            raise InvalidInput(INVALID_ACTION, errors.INVALID_ACTION)
    elif action not in ("call_next", "complete"):
        raise InvalidInput(INVALID_ACTION, errors.INVALID_ACTION)
    entry = await reception.call(patient_id, caller.actor, caller.credential.room, key)
    return json_response(
        {
            "message": "Action successful.",
            "patient": patient_view(
                entry, Audience.STAFF, reception.settings, photo_url=reception.photo_links.url
            ),
        }
    )


@routes.post("/api/queue/end-of-day/")
async def end_of_day(request: web.Request) -> web.Response:
    """Ours: every open visit (waiting, called, in service) closed as not seen (admin)."""
    caller = await require(request, Role.ADMIN)
    closed = await request.app[RECEPTION].end_of_day(caller.actor)
    return json_response({"closed": closed})


@routes.post("/api/records/purge/")
async def purge_records(request: web.Request) -> web.Response:
    """Ours: the retention purge now (admin): what the retention settings say is due."""
    caller = await require(request, Role.ADMIN)
    reception, store = request.app[RECEPTION], request.app[STORE]
    purged = await retention.purge(store, reception.settings, caller.actor, parse_time(store.now()))
    return json_response(purged.public())


@routes.get("/api/queue/")
async def queue(request: web.Request) -> web.Response:
    """Every role may read the queue (compat); the kiosk and wall displays get the reduced
    view (domain.audience_for), doctors and admins the full one. Without credentials (open
    in the original) only while `anonymous_feed` is on, like /ws/queue/: the display's view."""
    reception = request.app[RECEPTION]
    caller = await identify(request)  # a bad header is 401 here, open reads or not
    if caller is None and not reception.settings.anonymous_feed:
        raise not_authenticated()
    audience = audience_for(caller.credential.role) if caller else Audience.DISPLAY
    wanted = _line_filter(request.query.get("lines"))
    waiting = await reception.waiting()
    if wanted is not None:
        waiting = [entry for entry in waiting if entry.line in wanted]
    url = reception.photo_links.url
    if not _flag(request, "estimates"):
        places = await reception.places()
        return json_response(
            [queue_item(e, audience, reception.settings, url, places.get(e.id)) for e in waiting]
        )
    # ?estimates=1 (ours): each waiting patient's estimated wait too, as their phone shows it.
    waits = await reception.waits()
    items = []
    for entry in waiting:
        wait = waits.get(entry.id)
        item = queue_item(
            entry, audience, reception.settings, url, None if wait is None else wait.place
        )
        item["estimate"] = visits.estimate_view(None if wait is None else wait.estimate)
        items.append(item)
    return json_response(items)


def _flag(request: web.Request, name: str) -> bool:
    """?name=1 or true: on; absent, 0 or false: off; anything else is refused."""
    value = request.query.get(name, "0")
    if value not in ("0", "1", "false", "true"):
        raise InvalidInput(f"{name} must be 1 or 0.", errors.QUERY_INVALID)
    return value in ("1", "true")


def _line_filter(value: str | None) -> set[str] | None:
    """?lines=A,N (ours): only those lines' entries; absent or empty: every line."""
    if not value:
        return None
    return {prefix.strip().upper() for prefix in value.split(",") if prefix.strip()} or None


# --- ours: lines ------------------------------------------------------------------------


def _line_id(request: web.Request) -> int:
    line_id = _patient_id(request.match_info["line_id"])
    if line_id is None:
        raise NotFound("No line has that id.", errors.LINE_NOT_FOUND)
    return line_id


@routes.get("/api/lines/")
async def list_lines(request: web.Request) -> web.Response:
    await require(request)
    return json_response(await request.app[RECEPTION].lines())


@routes.post("/api/lines/")
async def create_line(request: web.Request) -> web.Response:
    caller = await require(request, Role.ADMIN)
    body = await read_body(request)
    return json_response(await request.app[RECEPTION].create_line(body, caller.actor), 201)


@routes.patch("/api/lines/{line_id:[0-9]+}/")
async def change_line(request: web.Request) -> web.Response:
    caller = await require(request, Role.ADMIN)
    line_id = _line_id(request)
    body = await read_body(request)
    return json_response(await request.app[RECEPTION].change_line(line_id, body, caller.actor))


@routes.get("/api/stats/today/")
async def stats_today(request: web.Request) -> web.Response:
    """Ours: today's figures for the doctor console and the admin summary (no names)."""
    await require(request)
    return json_response(await request.app[RECEPTION].today())


@routes.get("/api/stats/estimates/")
async def stats_estimates(request: web.Request) -> web.Response:
    """Ours: how the wait ranges shown to patients this week held, per line (admin)."""
    await require(request, Role.ADMIN)
    return json_response(await request.app[RECEPTION].calibration())


# --- ours: spoken calls ------------------------------------------------------------------


@routes.get("/api/speech/call/")
async def speech_call(request: web.Request) -> web.Response:
    """A called entry's spoken call as a WAV ("Ticket A 12, Room 3"), rendered on the box;
    the phrase is the server's, from the entry and the settings, never the client's text."""
    await require(request, Role.QUEUE, Role.DOCTOR)
    settings = request.app[RECEPTION].settings
    entry_id = _patient_id(request.query.get("entry", ""))
    lang, show = speech.checked_request(
        request.query.get("lang"),
        request.query.get("show"),
        request.query.get("v"),
        settings.language,
    )
    if entry_id is None:
        raise InvalidInput("entry must be a queue entry's id.", errors.SPEECH_REQUEST_INVALID)
    audio = await request.app[SPEECH].call(entry_id, lang, show, settings)
    return web.Response(
        body=audio,
        content_type="audio/wav",
        # The same call sounds the same all day; the display adds the call's time to the
        # URL, so a recall to another room is a new URL. Private: it may say a name.
        headers={"Cache-Control": "private, max-age=86400"},
    )


# --- ours: settings and credentials (admin) ---------------------------------------------


@routes.get("/api/settings/")
async def get_settings(request: web.Request) -> web.Response:
    await require(request)
    return json_response(request.app[RECEPTION].settings.public())


@routes.patch("/api/settings/")
async def change_settings(request: web.Request) -> web.Response:
    caller = await require(request, Role.ADMIN)
    settings = await request.app[RECEPTION].update_settings(await read_body(request), caller.actor)
    return json_response(settings.public())


@routes.post("/api/settings/preset/")
async def apply_preset(request: web.Request) -> web.Response:
    """Ours: the original CheckIn's openness in one step ("original"), or our privacy
    defaults back ("private")."""
    caller = await require(request, Role.ADMIN)
    body = await read_body(request)
    settings = await request.app[RECEPTION].apply_preset(body.get("name"), caller.actor)
    return json_response(settings.public())


@routes.get("/api/credentials/")
async def list_credentials(request: web.Request) -> web.Response:
    """Each with its last contact (`last_seen`, null: never signed in) and whether a live
    feed of it is open now (`online`): derived, never stored (Access.last_contacts)."""
    await require(request, Role.ADMIN)
    access = request.app[ACCESS]
    credentials = await access.list_credentials()
    online = request.app[HUB].credential_ids()
    contacts = await access.last_contacts(credentials)
    now = utc_now()
    return json_response(
        [
            {
                **c.public(),
                "last_seen": now if c.id in online else contacts.get(c.id),
                "online": c.id in online,
            }
            for c in credentials
        ]
    )


@routes.post("/api/credentials/")
async def create_credential(request: web.Request) -> web.Response:
    caller = await require(request, Role.ADMIN)
    body = await read_body(request)
    credential = await request.app[ACCESS].create_credential(
        body.get("role"),
        body.get("label"),
        body.get("room"),
        body.get("password"),
        caller.actor,
        body.get("lines"),
    )
    return json_response(credential.public(), 201)


@routes.patch("/api/credentials/{token}/")
async def change_credential(request: web.Request) -> web.Response:
    """Ours: a credential's label, room and the lines it serves."""
    caller = await require(request, Role.ADMIN)
    body = await read_body(request)
    credential = await request.app[ACCESS].change_credential(
        request.match_info["token"], body, caller.actor
    )
    return json_response(credential.public())


@routes.post("/api/credentials/{token}/deactivate/")
async def deactivate_credential(request: web.Request) -> web.Response:
    caller = await require(request, Role.ADMIN)
    credential = await request.app[ACCESS].deactivate(request.match_info["token"], caller.actor)
    return json_response(credential.public())


@routes.post("/api/credentials/{token}/reactivate/")
async def reactivate_credential(request: web.Request) -> web.Response:
    """Ours: a deactivated credential works again; its device signs in again."""
    caller = await require(request, Role.ADMIN)
    credential = await request.app[ACCESS].reactivate(request.match_info["token"], caller.actor)
    return json_response(credential.public())


@routes.post("/api/credentials/{token}/password/")
async def set_credential_password(request: web.Request) -> web.Response:
    """A new password (a reset): clears password_reset_required, ends the sessions."""
    caller = await require(request, Role.ADMIN)
    body = await read_body(request)
    credential = await request.app[ACCESS].set_password(
        request.match_info["token"], body.get("password"), caller.actor
    )
    return json_response(credential.public())


# --- health and media -------------------------------------------------------------------


HEALTH_WRITE_TIMEOUT = 5.0  # seconds /healthz waits for its write probe


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    disk = system.disk(config.data_dir, config.disk_warn_free_mb)
    fields = {"disk": disk.state, "disk_free_bytes": disk.free_bytes}
    try:
        # A wedged writer answers 503 in seconds; a monitor must not hang with it (the
        # watchdog then restarts the service).
        async with asyncio.timeout(HEALTH_WRITE_TIMEOUT):
            await request.app[RECEPTION].check_writable()
    except TimeoutError:
        message = f"The database did not answer within {HEALTH_WRITE_TIMEOUT:g} s."
        return health_error("error", errors.DATABASE_UNAVAILABLE, message, fields)
    except DiskFull:
        fields["disk"] = "full"  # whatever statvfs says (e.g. root's reserved blocks)
        return health_error("error", errors.DISK_FULL, DISK_FULL_TEXT, fields)
    except StoreUnavailable:
        message = "The database cannot be written."
        return health_error("error", errors.DATABASE_UNAVAILABLE, message, fields)
    clock = request.app[CLOCK].state().status  # "implausible": still 200, /admin explains
    body = {"status": "ok", "db": "ok", "version": __version__, "clock": clock, **fields}
    replicator = request.app.get(REPLICATOR)
    if replicator is not None:  # a failing replica: still 200, the box serves; /admin explains
        body["replica"] = replicator.health()
    return json_response(body)


def local_ca(config: Config) -> LocalCA | None:
    """The box's local CA when it serves with one; only then is cryptography loaded (~5 MB
    of a plain-HTTP server's memory otherwise)."""
    if config.tls_mode != "self-signed":
        return None
    from checkin_appliance import tls

    return tls.local_ca(config)


@routes.get("/ca.crt")
async def ca_certificate(request: web.Request) -> web.Response:
    """The box's local CA, for devices to trust (also served on the plain-HTTP port)."""
    ca = local_ca(request.app[CONFIG])
    if ca is None:  # plain HTTP, or the clinic's own certificate: nothing to trust here
        raise web.HTTPNotFound()
    return web.Response(
        body=ca.pem,
        content_type="application/x-x509-ca-cert",
        headers={
            "Content-Disposition": 'attachment; filename="checkin-appliance-ca.crt"',
            "Cache-Control": "no-cache",
        },
    )


async def _may_see_photo(request: web.Request, name: str) -> None:
    """A signed link (?exp=&sig=, from a body or the feed), or a session that may see photos:
    doctors and admins, a wall display while display_photos is on; never the kiosk. Checked
    before the name, so the answer says nothing about which photos exist."""
    reception = request.app[RECEPTION]
    if "sig" in request.query or "exp" in request.query:
        expires, signature = request.query.get("exp", ""), request.query.get("sig", "")
        if not reception.photo_links.valid(name, expires, signature):
            raise ApiError(
                errors.PHOTO_LINK_INVALID,
                "This photo link has expired or is not valid; reload the queue for a new one.",
            )
        return
    caller = await identify(request)
    if caller is None:
        raise not_authenticated()
    role = caller.credential.role
    if role in (Role.DOCTOR, Role.ADMIN) or (
        role is Role.QUEUE and reception.settings.display_photos
    ):
        return
    raise ApiError(errors.PHOTO_NOT_ALLOWED, "This credential may not load patients' photos.")


@routes.get("/media/patient_images/{name}")
async def photo(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    await _may_see_photo(request, name)
    if not photos.PHOTO_NAME.match(name):
        raise web.HTTPNotFound()
    return await web_photo.send(request, request.app[STORE], name)
