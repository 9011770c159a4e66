"""Issue 14 "Done when", written from the spec, not from our code: the original CheckIn's
intake form (../shared/contract/original-intake.md, cited as §N) as our box answers it
(briefs/i14-intake-spec.md), against the real app on a real SQLite file.

1. a client that behaves like the original's clients, end to end;
2. every documented validation failure: the original's field-keyed lists, plus our keys;
3. the quirks the original's clients rely on (empty values stored as null, last value wins);
4. privacy: no intake answer reaches a wall display, a feed or the queue; the name preset is
   unchanged for old clients.

Each table row is one case; `post_check_in` is the one way a case is posted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import os
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, MultipartWriter, WSMsgType
from PIL import Image

from checkin_appliance.config import Config
from checkin_appliance.domain import Role
from tests.conftest import PASSWORD, Clinic, StartClinic, next_message

# --- the original's form (§5, §6, §7.1) -------------------------------------------------

# The 22 text-like inputs and the photo, in the original's field order (§6.1).
FIELDS = (
    "fname",
    "dob",
    "gender",
    "pronoun",
    "phone",
    "emergency_contact",
    "ssn",
    "street1",
    "street2",
    "last_known_address",
    "city",
    "state",
    "zip",
    "medicaid_no",
    "id_card",
    "insurance",
    "race",
    "pref_service_area",
    "employed",
    "shower",
    "hungry",
    "homeless",
    "image",
)
OPTIONAL = ("street2", "medicaid_no", "image")
REQUIRED = tuple(field for field in FIELDS if field not in OPTIONAL)
# The original's 201 body (§7.1): the inputs plus four read-only keys; ours follow (§ spec).
ORIGINAL_KEYS = ("id", *FIELDS, "wait_time", "created_at", "updated_at")
OUR_KEYS = (
    "status", "check_in_time", "queue_entry_id", "position", "ticket", "line", "priority",
    "status_url",
)  # fmt: skip
# The name preset's 201, as before issue 14.
NAME_PRESET_KEYS = ("id", "fname", "status", "image", "check_in_time", "queue_entry_id", "position")
TIMESTAMP = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z\Z")
PHOTO_PATH = "/media/patient_images/"

# Patient 13 of the observed run (§7.1): every field valid.
VALID: dict[str, str] = {
    "fname": "Test Patient One",
    "dob": "1970-01-01",
    "gender": "male",
    "pronoun": "he_him",
    "phone": "8045550101",
    "emergency_contact": "Fake Contact One (friend) 8045550201",
    "ssn": "0000000001",
    "street1": "101 Fixture Street",
    "street2": "Apt 1",
    "last_known_address": "101 Fixture Street, Apt 1",
    "city": "Richmond",
    "state": "VA",
    "zip": "23220",
    "medicaid_no": "000000000001",
    "id_card": "yes",
    "insurance": "humana",
    "race": "caucasian",
    "pref_service_area": "east_end",
    "employed": "yes",
    "shower": "no",
    "hungry": "yes",
    "homeless": "no",
}

# §5.2: every choice field's keys, in the order "Invalid choice. Available options are:" lists.
CHOICES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female", "non_binary", "other"),
    "pronoun": ("he_him", "she_her", "they_them", "other"),
    "state": ("VA", "MD", "NC", "SC"),
    "id_card": ("yes", "no", "lost"),
    "insurance": ("humana", "aetna", "magellan", "anthem", "sentara", "united", "dont_know"),
    "race": (
        "black_african_american",
        "caucasian",
        "hispanic_latino",
        "american_indian_alaskan_native",
        "biracial",
        "asian",
        "middle_eastern",
        "hawaiian_pacific_islander",
        "other",
    ),
    "pref_service_area": (
        "petersburg",
        "east_end",
        "west_end",
        "chesterfield",
        "chester",
        "colonial_heights",
        "north_side_richmond",
        "southside_richmond",
        "church_hill",
        "ashland",
        "hopewell",
    ),
    "employed": ("yes", "no", "disabled", "retired"),
    "shower": ("yes", "no"),
    "hungry": ("yes", "no"),
    "homeless": ("yes", "no"),
}
# The choice fields that refuse an empty value ("state" has no custom check, §5.1).
STRICT_CHOICES = tuple(field for field in CHOICES if field != "state")
# The required fields whose empty multipart value (or JSON null) is stored as NULL (§5.1),
# fname aside: we refuse a blank name (our chosen difference).
NULLABLE_WHEN_EMPTY = (
    "dob",
    "phone",
    "emergency_contact",
    "ssn",
    "street1",
    "last_known_address",
    "city",
    "state",
    "zip",
)
# Free-text and digit fields: whitespace-only (any body) or JSON "" is "may not be blank".
BLANK_CHECKED = (
    "emergency_contact",
    "street1",
    "last_known_address",
    "city",
    "phone",
    "ssn",
    "zip",
)

# §6.2's messages, byte for byte.
REQUIRED_MSG = "This field is required."
BLANK_MSG = "This field may not be blank."
NOT_STRING = "Not a valid string."
DATE_FORMAT = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
DATE_FUTURE = "Date of birth cannot be in the future."
PHONE_FORMAT = "Phone number must be a 10-digit number."
SSN_FORMAT = "SSN must be a 10-digit number."
ZIP_FORMAT = "ZIP code must be a 5-digit number."
MEDICAID_FORMAT = "Medicaid number must be a 12-digit number."
NOT_A_FILE = "The submitted data was not a file. Check the encoding type on the form."
EMPTY_FILE = "The submitted file is empty."
NOT_AN_IMAGE = (
    "Upload a valid image. The file you uploaded was either not an image or a corrupted image."
)
UNSUPPORTED_TYPE = "Unsupported image type. Only JPEG and PNG are allowed."
PHOTO_TOO_BIG = "Image size should not exceed 5 MB."
FIVE_MB = 5 * 1024 * 1024


def too_long(limit: int) -> str:
    return f"Ensure this field has no more than {limit} characters."


def not_a_choice(value: str) -> str:
    return f'"{value}" is not a valid choice.'


def invalid_choice(field: str) -> str:
    return f"Invalid choice. Available options are: {', '.join(CHOICES[field])}."


def filename_too_long(length: int) -> str:
    return f"Ensure this filename has at most 100 characters (it has {length})."


class Prefix(str):
    """An expected message whose start is fixed: the extension message lists Pillow's
    extensions, which depend on its version (§5.4 step 5)."""


def extension_not_allowed(extension: str) -> Prefix:
    return Prefix(
        f"File extension \u201c{extension}\u201d is not allowed. Allowed extensions are: "
    )


ANY_MESSAGE = Prefix("")  # a refusal whose wording the spec leaves to us


# Our codes (intake spec). fname keeps the name codes; where the spec allows either reading
# (a blank, long or non-text name), both are accepted.
FIELD_REQUIRED = "field_required"
FIELD_BLANK = "field_blank"
FIELD_TOO_LONG = "field_too_long"
FIELD_NOT_TEXT = "field_not_text"
CHOICE_INVALID = "choice_invalid"
FORMAT_INVALID = "format_invalid"
DATE_IN_FUTURE = "date_in_future"
NAME_REQUIRED = "name_required"
NAME_BLANK = frozenset({"name_required", FIELD_BLANK})
NAME_TOO_LONG = frozenset({"name_too_long", FIELD_TOO_LONG})
NAME_NOT_TEXT = frozenset({"name_not_text", FIELD_NOT_TEXT})

Code = str | frozenset[str]
Expected = dict[str, tuple[str, Code]]  # field -> (message, code), in the original's order


# --- building and posting check-ins -----------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """A file part of a multipart body."""

    data: bytes
    filename: str = "photo.jpg"
    content_type: str = "image/jpeg"


ABSENT: Any = object()  # a key left out of the body


def form(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The valid form with `changes` applied (ABSENT removes a key)."""
    body: dict[str, Any] = dict(VALID)
    for key, value in (changes or {}).items():
        if value is ABSENT:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def multipart(pairs: list[tuple[str, Any]]) -> MultipartWriter:
    """A browser-like multipart/form-data body: text parts, and file parts for Photos."""
    writer = MultipartWriter("form-data")
    for name, value in pairs:
        if isinstance(value, Photo):
            part = writer.append(value.data, {"Content-Type": value.content_type})
            part.set_content_disposition("form-data", name=name, filename=value.filename)
        else:
            part = writer.append(str(value))
            part.set_content_disposition("form-data", name=name)
    return writer


def roni(access: str) -> dict[str, str]:
    """The header the original's clients send (§3)."""
    return {"RoniAuthorization": f"Bearer {access}"}


async def post_check_in(
    clinic: Clinic,
    body: dict[str, Any] | list[tuple[str, Any]] | None,
    *,
    as_json: bool = False,
    access: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST /api/patients/ as the original's kiosk did: multipart (a list of pairs repeats a
    field), or JSON; None sends no body at all. Returns (status, body in the server's order)."""
    headers = roni(access or clinic.access[Role.FORM])
    if body is None:
        resp = await clinic.client.post("/api/patients/", headers=headers)
    elif as_json:
        assert isinstance(body, dict)
        resp = await clinic.client.post("/api/patients/", json=body, headers=headers)
    else:
        pairs = list(body.items()) if isinstance(body, dict) else body
        resp = await clinic.client.post("/api/patients/", data=multipart(pairs), headers=headers)
    text = await resp.text()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        pytest.fail(f"{resp.status}, not JSON: {text[:300]!r}")


async def use_intake_form(clinic: Clinic, preset: str) -> None:
    resp = await clinic.client.patch(
        "/api/settings/",
        json={"intake_form": {"preset": preset}},
        headers=clinic.headers(Role.ADMIN),
    )
    assert resp.status == 200, await resp.text()


@pytest.fixture
async def original(clinic: Clinic) -> Clinic:
    """A clinic whose admin chose the original's form (PATCH /api/settings/)."""
    await use_intake_form(clinic, "original")
    return clinic


# --- images (Pillow) ----------------------------------------------------------------------


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), noise: bool = False) -> bytes:
    if noise:
        img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        img = Image.new("RGB", size, (30, 90, 160))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


JPEG = image_bytes("JPEG")
PNG = image_bytes("PNG")
GIF = image_bytes("GIF")
WEBP = image_bytes("WEBP")
BMP = image_bytes("BMP")
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def jpeg_of_size(size: int) -> bytes:
    """A valid JPEG of exactly `size` bytes: comment segments (COM) after SOI pad it."""
    base = image_bytes("JPEG", (32, 32))
    padding = size - len(base)
    segments = []
    while padding > 0:
        # A segment is marker (2) + length (2) + payload; keep the last one at least 4 bytes.
        take = min(padding, 65537)
        if 0 < padding - take < 4:
            take -= 4
        payload = take - 4
        segments.append(b"\xff\xfe" + (payload + 2).to_bytes(2, "big") + b"x" * payload)
        padding -= take
    data = base[:2] + b"".join(segments) + base[2:]
    assert len(data) == size
    return data


def photo_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PHOTO_PATH)


# --- assertions -----------------------------------------------------------------------------


def assert_refused(status: int, body: dict[str, Any], expected: Expected) -> None:
    """The original's field-keyed body (each failing field, in its order, a list with one
    exact message) plus our "error", "code" and "codes" (the first field's message and code)."""
    assert status == 400, body
    fields = [key for key in body if key not in ("error", "code", "codes")]
    assert fields == list(expected), body
    for field, (message, _) in expected.items():
        got = body[field]
        assert isinstance(got, list) and len(got) == 1, (field, got)
        if isinstance(message, Prefix):
            assert got[0].startswith(message), (field, got[0])
        else:
            assert got[0] == message, (field, got[0])
    codes = body.get("codes")
    assert isinstance(codes, dict) and list(codes) == list(expected), body
    for field, (_, code) in expected.items():
        allowed = code if isinstance(code, frozenset) else {code}
        assert codes[field] in allowed, (field, codes[field], allowed)
    first, (first_message, _) = next(iter(expected.items()))
    assert body.get("code") == codes[first], body
    assert isinstance(body.get("error"), str) and body["error"], body
    if first != "fname" and not isinstance(first_message, Prefix):
        assert body["error"] == first_message, body


def assert_original_record(body: dict[str, Any], values: dict[str, Any]) -> None:
    """A 201 in the original's shape (§7.1): its 27 keys first, in its order, then ours."""
    assert tuple(body)[: len(ORIGINAL_KEYS)] == ORIGINAL_KEYS, list(body)
    assert tuple(body)[len(ORIGINAL_KEYS) :] == OUR_KEYS, list(body)
    assert isinstance(body["id"], int)
    for key, value in values.items():
        assert body[key] == value, (key, body[key], value)
    assert body["wait_time"] is None
    assert TIMESTAMP.match(body["created_at"]), body["created_at"]
    assert TIMESTAMP.match(body["updated_at"]), body["updated_at"]
    assert body["status"] == "waiting"


async def frame_texts(ws: ClientWebSocketResponse, count: int) -> list[str]:
    texts = []
    for _ in range(count):
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.TEXT, (msg.type, msg.data)
        texts.append(msg.data)
    return texts


# === 1. an original client, end to end ====================================================


async def test_an_original_client_checks_in_with_the_full_form_and_the_queue_follows(
    clinic: Clinic,
) -> None:
    """§2 login, §3 header, §4 multipart with a photo and JSON, §7.1 body, §8 queue and
    call_next, and the seed's two feed events (websocket-events.md)."""
    resp = await clinic.client.post(
        "/api/settings/preset/", json={"name": "original"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200, await resp.text()

    async def login(role: Role) -> str:
        resp = await clinic.client.post(
            "/api/login/", json={"token": clinic.tokens[role], "password": PASSWORD}
        )
        assert resp.status == 200, await resp.text()
        tokens = await resp.json()
        assert {"refresh", "access", "role"} <= set(tokens) and tokens["role"] == role.value
        return tokens["access"]

    kiosk, doctor = await login(Role.FORM), await login(Role.DOCTOR)
    ws = await clinic.client.ws_connect("/ws/queue/")  # the original's feed needs no token
    try:
        # Multipart with a photo; values as a kiosk sends them (spaces, a short date).
        sent = form({"fname": "  Test Patient One ", "dob": "1970-1-1", "zip": " 23220 "})
        status, first = await post_check_in(
            clinic, [*sent.items(), ("image", Photo(JPEG, "Test Patient One.jpeg"))], access=kiosk
        )
        assert status == 201, first
        assert_original_record(first, VALID)
        assert photo_url(first["image"]), first["image"]
        resp = await clinic.client.get(first["image"])  # the signed link serves the photo
        assert resp.status == 200 and Image.open(io.BytesIO(await resp.read())).format == "JPEG"

        # JSON: a compact date and JSON numbers for the digit fields (§5.3, §6.2).
        sent = form(
            {
                "fname": "Test Patient Two",
                "dob": "19880808",
                "phone": 8045550108,
                "ssn": 1234567890,
                "zip": 23224,
                "medicaid_no": 123456789012,
                "street2": "",
            }
        )
        status, second = await post_check_in(clinic, sent, as_json=True, access=kiosk)
        assert status == 201, second
        assert_original_record(
            second,
            form(
                {
                    "fname": "Test Patient Two",
                    "dob": "1988-08-08",
                    "phone": "8045550108",
                    "ssn": "1234567890",
                    "zip": "23224",
                    "medicaid_no": "123456789012",
                    "street2": "",
                    "image": None,
                }
            ),
        )
        assert second["id"] != first["id"]

        resp = await clinic.client.get("/api/queue/", headers=roni(doctor))
        assert resp.status == 200
        queue = await resp.json()
        assert [item["patient"]["id"] for item in queue] == [first["id"], second["id"]]
        assert [item["patient"]["fname"] for item in queue] == [
            "Test Patient One",
            "Test Patient Two",
        ]
        for item in queue:
            assert list(item)[:4] == ["id", "patient", "status", "check_in_time"], item
            assert list(item["patient"]) == ["id", "fname", "image"], item
            assert item["status"] == "waiting" and TIMESTAMP.match(item["check_in_time"])

        resp = await clinic.client.post(
            "/api/doctors/", json={"action": "call_next"}, headers=roni(doctor)
        )
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
        assert answer["message"] == "Action successful.", answer
        called = answer["patient"]
        assert list(called) == ["id", "fname", "status", "image"], called
        assert called["id"] == first["id"] and called["status"] == "completed"

        frames = [await next_message(ws) for _ in range(3)]
    finally:
        await ws.close()
    expected = [
        ("PATIENT_ADDED", first, "waiting"),
        ("PATIENT_ADDED", second, "waiting"),
        ("PATIENT_COMPLETED", first, "completed"),
    ]
    for frame, (event, patient, status) in zip(frames, expected, strict=True):
        assert frame["type"] == "send.queue.update" and frame["event"] == event, frame
        assert list(frame["patient"]) == ["id", "fname", "status", "image"], frame
        assert frame["patient"]["id"] == patient["id"]
        assert frame["patient"]["fname"] == patient["fname"]
        assert frame["patient"]["status"] == status
        assert (frame["patient"]["image"] is None) is (patient["image"] is None), frame


async def test_the_admin_chooses_the_form_and_the_settings_say_so(clinic: Clinic) -> None:
    resp = await clinic.client.patch(
        "/api/settings/",
        json={"intake_form": {"preset": "original"}},
        headers=clinic.headers(Role.ADMIN),
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["intake_form"] == {"preset": "original"}
    resp = await clinic.client.get("/api/settings/", headers=clinic.headers(Role.ADMIN))
    assert (await resp.json())["intake_form"] == {"preset": "original"}


async def test_the_original_preset_sets_what_the_original_did(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/api/settings/preset/", json={"name": "original"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200, await resp.text()
    settings = await resp.json()
    assert settings["intake_form"] == {"preset": "original"}
    assert settings["anonymous_feed"] is True
    assert settings["display_names"] == "full"
    assert settings["display_photos"] is True


async def test_the_record_times_are_utc_with_milliseconds(original: Clinic) -> None:
    """A chosen difference (README, Moving from CheckIn): every time we write carries
    milliseconds, the original's microseconds; both are ISO 8601 UTC with Z."""
    _, body = await post_check_in(original, VALID)
    milli = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
    assert milli.match(body["created_at"]) and body["updated_at"] == body["created_at"], body


# === 2. every documented validation failure ================================================


def case(case_id: str, changes: dict[str, Any], expected: Expected, *, as_json: bool = False):
    return pytest.param(changes, as_json, expected, id=f"{'json' if as_json else 'mp'}-{case_id}")


def required_cases() -> list[Any]:
    """One required key left out of a valid form: that key alone (§6.1, observed for 20)."""
    return [
        case(
            f"absent-{field}",
            {field: ABSENT},
            {field: (REQUIRED_MSG, NAME_REQUIRED if field == "fname" else FIELD_REQUIRED)},
            as_json=as_json,
        )
        for field in REQUIRED
        if field != "image"
        for as_json in (False, True)
    ]


def blank_cases() -> list[Any]:
    cases = []
    for field in BLANK_CHECKED:
        cases += [
            case(f"spaces-{field}", {field: "   "}, {field: (BLANK_MSG, FIELD_BLANK)}),
            case(
                f"spaces-{field}", {field: " \t "}, {field: (BLANK_MSG, FIELD_BLANK)}, as_json=True
            ),
            case(f"empty-{field}", {field: ""}, {field: (BLANK_MSG, FIELD_BLANK)}, as_json=True),
        ]
    # Ours: a blank name is refused in every body (the queue needs a name).
    cases += [
        case("empty-fname", {"fname": ""}, {"fname": (BLANK_MSG, NAME_BLANK)}),
        case("spaces-fname", {"fname": "   "}, {"fname": (BLANK_MSG, NAME_BLANK)}),
        case("empty-fname", {"fname": ""}, {"fname": (BLANK_MSG, NAME_BLANK)}, as_json=True),
        case("spaces-fname", {"fname": "  "}, {"fname": (BLANK_MSG, NAME_BLANK)}, as_json=True),
    ]
    return cases


def length_cases() -> list[Any]:
    limits = {"fname": 255, "emergency_contact": 255, "street1": 255, "street2": 255}
    limits |= {"last_known_address": 255, "city": 100}
    return [
        case(
            f"too-long-{field}",
            {field: "a" * (limit + 1)},
            {field: (too_long(limit), NAME_TOO_LONG if field == "fname" else FIELD_TOO_LONG)},
            as_json=as_json,
        )
        for field, limit in limits.items()
        for as_json in (False, True)
    ]


def format_cases() -> list[Any]:
    """§6.2: the length is checked before the format (`804-555-0100` is too long)."""
    rules = {
        "phone": (
            10,
            ("80455501000", "(804) 555-0100", "804-555-0100", "+18045550100"),
            PHONE_FORMAT,
            ("804555010", "804-555-01", "80455501ab", "abcdefghij"),
        ),
        "ssn": (
            10,
            ("000-00-0001", "00000000001", "000-000-0001"),
            SSN_FORMAT,
            ("000000001", "000000000a", "0000-00001"),
        ),
        "zip": (10, ("23220123456",), ZIP_FORMAT, ("2322", "232201", "23220-1234", "abcde")),
        "medicaid_no": (
            12,
            ("1234567890123", "1234-5678-9012"),
            MEDICAID_FORMAT,
            ("12345678901", "12345678901a", "1234 5678 90"),
        ),
    }
    cases = []
    for field, (limit, long_values, message, bad_values) in rules.items():
        for value in long_values:
            cases.append(
                case(f"{field}-{value}", {field: value}, {field: (too_long(limit), FIELD_TOO_LONG)})
            )
        for value in bad_values:
            cases.append(
                case(f"{field}-{value}", {field: value}, {field: (message, FORMAT_INVALID)})
            )
    cases.append(
        case(
            "phone-json",
            {"phone": "804-555-01"},
            {"phone": (PHONE_FORMAT, FORMAT_INVALID)},
            as_json=True,
        )
    )
    return cases


def date_cases() -> list[Any]:
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    bad = ("03/15/1985", "15-03-1985", "1985-02-30", "1985-03-15T10:00:00")
    cases = [
        case(f"dob-{value}", {"dob": value}, {"dob": (DATE_FORMAT, FORMAT_INVALID)})
        for value in bad
    ]
    cases += [
        case("dob-empty", {"dob": ""}, {"dob": (DATE_FORMAT, FORMAT_INVALID)}, as_json=True),
        case("dob-number", {"dob": 19850315}, {"dob": (DATE_FORMAT, FORMAT_INVALID)}, as_json=True),
        case("dob-tomorrow", {"dob": tomorrow}, {"dob": (DATE_FUTURE, DATE_IN_FUTURE)}),
        case("dob-2099", {"dob": "2099-01-01"}, {"dob": (DATE_FUTURE, DATE_IN_FUTURE)}),
        case(
            "dob-2099", {"dob": "2099-01-01"}, {"dob": (DATE_FUTURE, DATE_IN_FUTURE)}, as_json=True
        ),
    ]
    return cases


def choice_cases() -> list[Any]:
    cases = []
    for field in CHOICES:
        cases.append(
            case(f"{field}-zzz", {field: "zzz"}, {field: (not_a_choice("zzz"), CHOICE_INVALID)})
        )
        cases.append(
            case(
                f"{field}-empty",
                {field: ""},
                {field: (not_a_choice(""), CHOICE_INVALID)},
                as_json=True,
            )
        )
        cases.append(
            case(
                f"{field}-spaces",
                {field: "   "},
                {field: (not_a_choice("   "), CHOICE_INVALID)},
                as_json=True,
            )
        )
    for field in STRICT_CHOICES:
        expected = {field: (invalid_choice(field), CHOICE_INVALID)}
        cases.append(case(f"{field}-empty", {field: ""}, expected))
        cases.append(case(f"{field}-null", {field: None}, expected, as_json=True))
    # §5.2: strings only, exact keys, case-sensitive, not trimmed; labels are not keys.
    shown = {
        "homeless": [(True, "True"), (False, "False"), (0, "0"), (["yes"], "['yes']")],
        "state": [(["VA"], "['VA']"), ("Virginia", "Virginia")],
        "gender": [("Male", "Male")],
        "shower": [("true", "true"), ("1", "1"), ("YES", "YES"), ("Yes", "Yes")],
        "hungry": [("no ", "no ")],
        "pref_service_area": [("East End", "East End")],
        "id_card": [("lost/stolen", "lost/stolen")],
    }
    for field, values in shown.items():
        for value, text in values:
            expected = {field: (not_a_choice(text), CHOICE_INVALID)}
            cases.append(case(f"{field}-{text}", {field: value}, expected, as_json=True))
    return cases


def name_type_cases() -> list[Any]:
    return [
        case(
            f"fname-{kind}", {"fname": value}, {"fname": (NOT_STRING, NAME_NOT_TEXT)}, as_json=True
        )
        for kind, value in (("true", True), ("list", ["Ana"]), ("object", {"a": "b"}))
    ]


def several_cases() -> list[Any]:
    """All failing fields at once, in the original's order whatever order they were sent in."""
    changes = {
        "homeless": "maybe",
        "zip": "2322",
        "gender": "zzz",
        "phone": "804-555-0100",
        "fname": "a" * 256,
        "street2": "b" * 256,
    }
    expected: Expected = {
        "fname": (too_long(255), NAME_TOO_LONG),
        "gender": (not_a_choice("zzz"), CHOICE_INVALID),
        "phone": (too_long(10), FIELD_TOO_LONG),
        "street2": (too_long(255), FIELD_TOO_LONG),
        "zip": (ZIP_FORMAT, FORMAT_INVALID),
        "homeless": (not_a_choice("maybe"), CHOICE_INVALID),
    }
    reordered = dict(reversed(list(form(changes).items())))
    return [
        case(
            "gender-and-zip",
            {"zip": "2322", "gender": "zzz"},
            {
                "gender": (not_a_choice("zzz"), CHOICE_INVALID),
                "zip": (ZIP_FORMAT, FORMAT_INVALID),
            },
        ),
        pytest.param(reordered, False, expected, id="mp-six-fields-reversed"),
        pytest.param(reordered, True, expected, id="json-six-fields-reversed"),
    ]


VALIDATION_CASES = [
    *required_cases(),
    *blank_cases(),
    *length_cases(),
    *format_cases(),
    *date_cases(),
    *choice_cases(),
    *name_type_cases(),
    *several_cases(),
]


@pytest.mark.parametrize(("changes", "as_json", "expected"), VALIDATION_CASES)
async def test_a_refused_field_answers_as_the_original_did(
    original: Clinic, changes: dict[str, Any], as_json: bool, expected: Expected
) -> None:
    body = changes if set(changes) >= set(VALID) else form(changes)
    status, answer = await post_check_in(original, body, as_json=as_json)
    assert_refused(status, answer, expected)


EVERY_REQUIRED: Expected = {
    field: (REQUIRED_MSG, NAME_REQUIRED if field == "fname" else FIELD_REQUIRED)
    for field in REQUIRED
}


@pytest.mark.parametrize(
    ("body", "as_json"),
    [
        pytest.param(None, False, id="no-body"),
        pytest.param({}, True, id="json-empty-object"),
        pytest.param({"nickname": "Bob", "id": "7"}, False, id="mp-only-unknown-keys"),
        pytest.param({"nickname": "Bob"}, True, id="json-only-unknown-keys"),
    ],
)
async def test_an_empty_post_names_all_20_required_fields_in_order(
    original: Clinic, body: dict[str, Any] | None, as_json: bool
) -> None:
    status, answer = await post_check_in(original, body, as_json=as_json)
    assert_refused(status, answer, EVERY_REQUIRED)


async def test_a_name_only_check_in_is_refused_by_the_original_form(original: Clinic) -> None:
    """An old name-only kiosk against a clinic that chose the original's form: 19 fields."""
    status, answer = await post_check_in(original, {"fname": "John Doe"}, as_json=True)
    assert_refused(status, answer, {f: e for f, e in EVERY_REQUIRED.items() if f != "fname"})


async def test_a_null_name_is_refused(original: Clinic) -> None:
    """The original stored a JSON null name as NULL; we refuse it (the queue needs a name).
    The wording is ours to choose."""
    status, answer = await post_check_in(original, form({"fname": None}), as_json=True)
    assert status == 400 and next(iter(answer)) == "fname", answer
    assert answer["codes"]["fname"] in NAME_BLANK | {FIELD_REQUIRED}, answer


# --- the photo (§5.4) ----------------------------------------------------------------------

TRUNCATED_JPEG = image_bytes("JPEG", (320, 240), noise=True)[:2000]

PHOTO_CASES = [
    pytest.param("hello", NOT_A_FILE, "photo_not_a_file", id="text-part"),
    pytest.param(Photo(b""), EMPTY_FILE, "photo_empty", id="empty-file"),
    pytest.param(Photo(b"", "a" * 101), EMPTY_FILE, "photo_empty", id="empty-before-filename"),
    pytest.param(
        Photo(JPEG, "a" * 97 + ".jpg"),
        filename_too_long(101),
        "photo_filename_too_long",
        id="filename-101",
    ),
    pytest.param(
        Photo(b"hello\n", "notes.txt", "text/plain"),
        NOT_AN_IMAGE,
        "photo_not_an_image",
        id="text-txt",
    ),
    pytest.param(Photo(b"hello\n", "photo.jpg"), NOT_AN_IMAGE, "photo_not_an_image", id="text-jpg"),
    pytest.param(
        Photo(PDF, "scan.pdf", "application/pdf"), NOT_AN_IMAGE, "photo_not_an_image", id="pdf"
    ),
    pytest.param(
        Photo(b"hello\n", "blob"),
        NOT_AN_IMAGE,
        "photo_not_an_image",
        id="not-image-before-extension",
    ),
    pytest.param(
        Photo(JPEG, "blob", "application/octet-stream"),
        extension_not_allowed(""),
        "photo_extension_not_allowed",
        id="jpeg-no-extension",
    ),
    pytest.param(
        Photo(JPEG, "photo.txt"),
        extension_not_allowed("txt"),
        "photo_extension_not_allowed",
        id="jpeg-as-txt",
    ),
    pytest.param(
        Photo(GIF, "blob", "image/gif"),
        extension_not_allowed(""),
        "photo_extension_not_allowed",
        id="extension-before-type",
    ),
    pytest.param(
        Photo(GIF, "fake.jpg"), UNSUPPORTED_TYPE, "photo_type_not_allowed", id="gif-as-jpeg"
    ),
    pytest.param(
        Photo(GIF, "photo.gif", "image/gif"), UNSUPPORTED_TYPE, "photo_type_not_allowed", id="gif"
    ),
    pytest.param(
        Photo(WEBP, "fake.png", "image/png"),
        UNSUPPORTED_TYPE,
        "photo_type_not_allowed",
        id="webp-as-png",
    ),
    pytest.param(
        Photo(BMP, "photo.bmp", "image/bmp"), UNSUPPORTED_TYPE, "photo_type_not_allowed", id="bmp"
    ),
    # Ours: photos are re-encoded, so a truncated JPEG is refused (the original kept it).
    # The spec names no code for it: "not an image" or our older "damaged" both say what it is.
    pytest.param(
        Photo(TRUNCATED_JPEG),
        ANY_MESSAGE,
        frozenset({"photo_not_an_image", "photo_damaged"}),
        id="truncated-jpeg",
    ),
]


@pytest.mark.parametrize(("image", "message", "code"), PHOTO_CASES)
async def test_a_refused_photo_answers_as_the_original_did(
    original: Clinic, image: Any, message: str, code: str
) -> None:
    status, answer = await post_check_in(original, [*VALID.items(), ("image", image)])
    assert_refused(status, answer, {"image": (message, code)})


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("hello", id="string"),
        pytest.param("", id="empty"),
    ],
)
async def test_a_photo_cannot_come_in_json(original: Clinic, value: str) -> None:
    status, answer = await post_check_in(original, form({"image": value}), as_json=True)
    assert_refused(status, answer, {"image": (NOT_A_FILE, "photo_not_a_file")})


async def post_over_5_mb(clinic: Clinic) -> tuple[int, dict[str, Any]]:
    return await post_check_in(
        clinic, [*VALID.items(), ("image", Photo(jpeg_of_size(FIVE_MB + 1)))]
    )


async def test_a_photo_over_5_mb_is_refused_with_the_originals_words(original: Clinic) -> None:
    """5,242,881 bytes: over max_photo_bytes (5 MB by default) while reading, and answered
    as the original did: 400, "Image size should not exceed 5 MB." """
    status, answer = await post_over_5_mb(original)
    assert_refused(status, answer, {"image": (PHOTO_TOO_BIG, "photo_over_original_limit")})


async def test_a_box_that_reads_larger_photos_keeps_the_originals_5_mb_rule(
    start_clinic: StartClinic, config: Config
) -> None:
    clinic = await start_clinic(dataclasses.replace(config, max_photo_bytes=8 * 1024 * 1024))
    await use_intake_form(clinic, "original")
    status, answer = await post_over_5_mb(clinic)
    assert_refused(
        status,
        answer,
        {"image": (PHOTO_TOO_BIG, frozenset({"photo_too_large", "photo_over_original_limit"}))},
    )


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(Photo(PNG, "photo.png", "image/jpeg"), id="png-as-jpeg"),
        pytest.param(Photo(PNG, "photo.png", "image/gif"), id="png-as-gif"),
        pytest.param(Photo(JPEG, "photo.jpg", "application/octet-stream"), id="jpeg-octet-stream"),
        pytest.param(Photo(JPEG, "photo.jpg", "image/jpg"), id="jpeg-image-jpg"),
        pytest.param(Photo(JPEG, "photo.jpg", "image/pjpeg"), id="jpeg-pjpeg"),
        pytest.param(Photo(JPEG, "PHOTO.JPG"), id="upper-case-extension"),
        pytest.param(Photo(JPEG, "kiosk capture (1).jpeg"), id="spaces-in-filename"),
        pytest.param(Photo(JPEG, "a" * 96 + ".jpg"), id="filename-100"),
        pytest.param(Photo(jpeg_of_size(FIVE_MB)), id="exactly-5-mb"),
    ],
)
async def test_an_accepted_photo_is_stored_and_served(original: Clinic, image: Photo) -> None:
    status, body = await post_check_in(original, [*VALID.items(), ("image", image)])
    assert status == 201, body
    assert_original_record(body, VALID)
    assert photo_url(body["image"]), body["image"]
    resp = await original.client.get(body["image"])
    assert resp.status == 200 and Image.open(io.BytesIO(await resp.read())).format == "JPEG"


@pytest.mark.parametrize(
    ("pairs", "as_json"),
    [
        pytest.param([*VALID.items(), ("image", "")], False, id="mp-empty-value"),
        pytest.param(list(VALID.items()), False, id="mp-absent"),
        pytest.param(form({"image": None}), True, id="json-null"),
    ],
)
async def test_no_photo_is_image_null(original: Clinic, pairs: Any, as_json: bool) -> None:
    status, body = await post_check_in(original, pairs, as_json=as_json)
    assert status == 201, body
    assert_original_record(body, {**VALID, "image": None})


# === accepted values, normalised (§5.1, §5.3, §6.2) ========================================

TODAY = dt.date.today().isoformat()

NORMALISED = [
    # (id, sent changes, JSON body?, what the 201 shows)
    ("dob-not-padded", {"dob": "1960-2-29"}, False, {"dob": "1960-02-29"}),
    ("dob-compact", {"dob": "19880808"}, False, {"dob": "1988-08-08"}),
    ("dob-compact", {"dob": "19880808"}, True, {"dob": "1988-08-08"}),
    ("dob-today", {"dob": TODAY}, False, {"dob": TODAY}),
    ("dob-1800", {"dob": "1800-01-01"}, False, {"dob": "1800-01-01"}),
    ("dob-year-1", {"dob": "0001-01-01"}, True, {"dob": "0001-01-01"}),
    ("fname-trimmed", {"fname": "  Ana Maria Lopez \t"}, False, {"fname": "Ana Maria Lopez"}),
    ("fname-255", {"fname": "n" * 255}, False, {"fname": "n" * 255}),
    ("fname-number", {"fname": 12345}, True, {"fname": "12345"}),
    ("phone-trimmed", {"phone": " 8045550100 "}, False, {"phone": "8045550100"}),
    ("ssn-trimmed", {"ssn": " 0000000002 "}, True, {"ssn": "0000000002"}),
    ("zip-trimmed", {"zip": " 23224 "}, False, {"zip": "23224"}),
    ("medicaid-trimmed", {"medicaid_no": " 000000000002 "}, False, {"medicaid_no": "000000000002"}),
    ("city-trimmed", {"city": "  Petersburg "}, False, {"city": "Petersburg"}),
    ("city-100", {"city": "c" * 100}, True, {"city": "c" * 100}),
    ("street1-255", {"street1": "s" * 255}, False, {"street1": "s" * 255}),
    ("phone-number", {"phone": 8045550108}, True, {"phone": "8045550108"}),
    ("ssn-number", {"ssn": 1234567890}, True, {"ssn": "1234567890"}),
    ("zip-number", {"zip": 23224}, True, {"zip": "23224"}),
    ("medicaid-number", {"medicaid_no": 123456789012}, True, {"medicaid_no": "123456789012"}),
    ("street2-spaces", {"street2": "   "}, False, {"street2": ""}),
    ("medicaid-spaces", {"medicaid_no": "   "}, True, {"medicaid_no": ""}),
    (
        "every-other-choice",
        {f: c[-1] for f, c in CHOICES.items()},
        True,
        {f: c[-1] for f, c in CHOICES.items()},
    ),
]


@pytest.mark.parametrize(
    ("changes", "as_json", "shown"),
    [pytest.param(c, j, s, id=f"{'json' if j else 'mp'}-{i}") for i, c, j, s in NORMALISED],
)
async def test_an_accepted_value_is_stored_normalised(
    original: Clinic, changes: dict[str, Any], as_json: bool, shown: dict[str, Any]
) -> None:
    status, body = await post_check_in(original, form(changes), as_json=as_json)
    assert status == 201, body
    assert_original_record(body, {**VALID, **shown, "image": None})


# === 3. the quirks the original's clients rely on ==========================================


async def test_a_names_runs_of_spaces_become_one(original: Clinic) -> None:
    """A chosen difference (README): names are stored as they show, one space between
    words, so two spellings of one name compare alike; the original kept "Ana  Maria"."""
    status, body = await post_check_in(original, form({"fname": " Ana  Maria "}))
    assert status == 201 and body["fname"] == "Ana Maria", body


@pytest.mark.parametrize("field", NULLABLE_WHEN_EMPTY)
@pytest.mark.parametrize("as_json", [False, True], ids=["mp-empty", "json-null"])
async def test_an_empty_required_text_value_is_stored_as_null(
    original: Clinic, field: str, as_json: bool
) -> None:
    """§5.1: "required" means the key is present; an empty multipart value or a JSON null
    of these nine is stored as NULL (patients 12 and 19)."""
    status, body = await post_check_in(
        original, form({field: None if as_json else ""}), as_json=as_json
    )
    assert status == 201, body
    assert_original_record(body, {**VALID, field: None, "image": None})


async def test_a_form_with_every_text_box_empty_is_accepted(original: Clinic) -> None:
    """§5.1: all text boxes empty, all radio buttons picked: accepted, answers NULL."""
    status, body = await post_check_in(original, form(dict.fromkeys(NULLABLE_WHEN_EMPTY, "")))
    assert status == 201, body
    assert_original_record(body, {**VALID, **dict.fromkeys(NULLABLE_WHEN_EMPTY), "image": None})


@pytest.mark.parametrize("field", ["street2", "medicaid_no"])
@pytest.mark.parametrize(
    ("value", "as_json", "stored"),
    [
        pytest.param("", False, "", id="mp-empty"),
        pytest.param("", True, "", id="json-empty"),
        pytest.param(ABSENT, False, None, id="mp-absent"),
        pytest.param(ABSENT, True, None, id="json-absent"),
        pytest.param(None, True, None, id="json-null"),
    ],
)
async def test_the_optional_fields_keep_empty_apart_from_absent(
    original: Clinic, field: str, value: Any, as_json: bool, stored: str | None
) -> None:
    status, body = await post_check_in(original, form({field: value}), as_json=as_json)
    assert status == 201, body
    assert_original_record(body, {**VALID, field: stored, "image": None})


@pytest.mark.parametrize(
    ("repeated", "outcome"),
    [
        pytest.param(
            [("city", "Elsewhere"), ("city", "Richmond")], {"city": "Richmond"}, id="city"
        ),
        pytest.param(
            [("fname", "Old Name"), ("fname", "New Name")], {"fname": "New Name"}, id="fname"
        ),
        pytest.param(
            [("gender", "zzz"), ("gender", "female")], {"gender": "female"}, id="bad-then-good"
        ),
        pytest.param(
            [("gender", "female"), ("gender", "zzz")],
            {"gender": (not_a_choice("zzz"), CHOICE_INVALID)},
            id="good-then-bad",
        ),
    ],
)
async def test_the_last_value_of_a_repeated_field_wins(
    original: Clinic, repeated: list[tuple[str, str]], outcome: dict[str, Any]
) -> None:
    names = {name for name, _ in repeated}
    pairs = [(k, v) for k, v in VALID.items() if k not in names] + repeated
    status, body = await post_check_in(original, pairs)
    if any(isinstance(value, tuple) for value in outcome.values()):
        assert_refused(status, body, outcome)
    else:
        assert status == 201, body
        assert_original_record(body, {**VALID, **outcome, "image": None})


@pytest.mark.parametrize(
    ("images", "outcome"),
    [
        pytest.param([Photo(GIF, "a.gif", "image/gif"), Photo(JPEG)], "photo", id="gif-then-jpeg"),
        pytest.param(
            [Photo(JPEG), Photo(GIF, "a.gif", "image/gif")],
            {"image": (UNSUPPORTED_TYPE, "photo_type_not_allowed")},
            id="jpeg-then-gif",
        ),
        pytest.param([Photo(JPEG), ""], None, id="jpeg-then-empty"),
    ],
)
async def test_the_last_photo_part_wins(original: Clinic, images: list[Any], outcome: Any) -> None:
    status, body = await post_check_in(original, [*VALID.items(), *(("image", i) for i in images)])
    if isinstance(outcome, dict):
        assert_refused(status, body, outcome)
    else:
        assert status == 201, body
        assert photo_url(body["image"]) if outcome else body["image"] is None, body


@pytest.mark.parametrize("as_json", [False, True], ids=["mp", "json"])
async def test_unknown_and_read_only_keys_are_ignored(original: Clinic, as_json: bool) -> None:
    extra: dict[str, Any] = {
        "id": 424242,
        "wait_time": "01:00:00",
        "created_at": "2000-01-01T00:00:00Z",
        "updated_at": "2000-01-01T00:00:00Z",
        "status": "completed",
        "queue_entry_id": 424242,
        "position": 99,
        "nickname": "Bobby",
    }
    status, body = await post_check_in(
        original,
        {**VALID, **(extra if as_json else {k: str(v) for k, v in extra.items()})},
        as_json=as_json,
    )
    assert status == 201, body
    assert_original_record(body, {**VALID, "image": None})
    assert body["id"] != 424242 and body["queue_entry_id"] != 424242
    assert not body["created_at"].startswith("2000") and body["position"] == 1
    assert "nickname" not in body
    resp = await original.client.get("/api/queue/", headers=original.headers(Role.DOCTOR))
    assert [item["patient"]["id"] for item in await resp.json()] == [body["id"]]


# === 4. privacy, and the name preset for old clients =========================================

# Answers that could appear nowhere else in a frame or a body.
SECRET = form(
    {
        "fname": "Private Person",
        "dob": "1971-04-05",
        "phone": "8045550177",
        "emergency_contact": "Secret Contact 8045550299",
        "ssn": "0000004242",
        "street1": "42 Hidden Lane",
        "street2": "Unit Seven",
        "last_known_address": "42 Hidden Lane, Unit Seven",
        "city": "Secretville",
        "zip": "23299",
        "medicaid_no": "000000004242",
    }
)
SECRET_VALUES = [v for k, v in SECRET.items() if k != "fname" and k not in CHOICES]
INTAKE_KEYS = [field for field in FIELDS if field not in ("fname", "image")] + ["intake"]


def carries(text: str, value: str) -> bool:
    """Whether text holds the answer: a number only as a whole number, not as digits inside
    another one (a random token or a timestamp holds 23299 now and then)."""
    if not value.isdigit():
        return value in text
    return re.search(rf"(?<![0-9]){value}(?![0-9])", text) is not None


def assert_no_intake(text: str, where: str) -> None:
    for value in [*SECRET_VALUES, "19710405", "804-555-0177"]:
        assert not carries(text, value), (
            f"{where} carries an intake answer ({value!r}): {text[:400]}"
        )
    payload = json.loads(text)

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node).union(*(keys(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(keys(v) for v in node))
        return set()

    assert not keys(payload) & set(INTAKE_KEYS), f"{where} has intake keys: {text[:400]}"


async def test_no_intake_answer_reaches_a_display_a_feed_or_the_queue(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/api/settings/preset/", json={"name": "original"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200, await resp.text()
    audiences: dict[str, Role | None] = {
        "wall display": Role.QUEUE,
        "anonymous": None,
        "kiosk": Role.FORM,
        "doctor": Role.DOCTOR,
        "admin": Role.ADMIN,
    }
    live = {name: await clinic.subscribe(role) for name, role in audiences.items()}
    try:
        status, body = await post_check_in(clinic, [*SECRET.items(), ("image", Photo(JPEG))])
        assert status == 201, body
        status, body = await post_check_in(
            clinic, form({**SECRET, "fname": "Other Person"}), as_json=True
        )
        assert status == 201, body
        resp = await clinic.call_next()
        assert resp.status == 200
        assert_no_intake(await resp.text(), "call_next's answer")
        for name, ws in live.items():
            for text in await frame_texts(ws, 3):
                assert_no_intake(text, f"the {name} feed")
        # Late joiners: a snapshot and a replay from the durable log.
        for name, role in audiences.items():
            for query in ("snapshot=1", "since=0"):
                ws = await clinic.subscribe(role, query)
                try:
                    for text in await frame_texts(ws, 1 if query == "snapshot=1" else 3):
                        assert_no_intake(text, f"the {name} feed with ?{query}")
                finally:
                    await ws.close()
            resp = await clinic.client.get("/api/queue/", headers=clinic.headers(role))
            assert resp.status == 200, await resp.text()
            assert_no_intake(await resp.text(), f"GET /api/queue/ as {name}")
        for role in (Role.DOCTOR, Role.ADMIN):
            resp = await clinic.client.get("/api/stats/today/", headers=clinic.headers(role))
            assert resp.status == 200, await resp.text()
            assert_no_intake(await resp.text(), f"GET /api/stats/today/ as {role}")
    finally:
        for ws in live.values():
            await ws.close()


async def test_an_old_name_only_client_is_unchanged_by_the_name_preset(clinic: Clinic) -> None:
    status, body = await post_check_in(clinic, {"fname": "John Doe"}, as_json=True)
    assert status == 201, body
    assert set(NAME_PRESET_KEYS) <= set(body), list(body)
    assert body["fname"] == "John Doe" and body["image"] is None and body["status"] == "waiting"
    assert isinstance(body["id"], int) and isinstance(body["queue_entry_id"], int)
    assert TIMESTAMP.match(body["check_in_time"]) and body["position"] == 1
    status, body = await post_check_in(clinic, [("fname", "Jane Roe"), ("image", Photo(JPEG))])
    assert status == 201, body
    assert set(NAME_PRESET_KEYS) <= set(body) and photo_url(body["image"]), body
    assert body["position"] == 2


async def test_the_name_presets_201_is_the_originals_record_then_ours(clinic: Clinic) -> None:
    """Every key an old client read is there; the original's record keys come first."""
    status, body = await post_check_in(clinic, {"fname": "John Doe"}, as_json=True)
    assert status == 201, body
    assert list(body) == [
        "id", "fname", "image", "wait_time", "created_at", "updated_at",
        "status", "check_in_time", "queue_entry_id", "position", "ticket", "line", "priority",
        "status_url",
    ]  # fmt: skip


async def test_the_name_preset_ignores_the_originals_fields(clinic: Clinic) -> None:
    """A full original form sent to a name-only clinic: checked in by name, nothing else
    echoed (no intake field is enabled)."""
    status, body = await post_check_in(clinic, form({"gender": "zzz"}), as_json=True)
    assert status == 201, body
    assert set(NAME_PRESET_KEYS) <= set(body), list(body)
    assert not set(body) & set(INTAKE_KEYS), list(body)


async def test_switching_back_to_the_name_preset_restores_old_clients(original: Clinic) -> None:
    status, _ = await post_check_in(original, {"fname": "John Doe"}, as_json=True)
    assert status == 400
    await use_intake_form(original, "name")
    status, body = await post_check_in(original, {"fname": "John Doe"}, as_json=True)
    assert status == 201 and set(NAME_PRESET_KEYS) <= set(body), body


async def test_the_name_presets_errors_are_field_keyed(clinic: Clinic) -> None:
    status, body = await post_check_in(clinic, {}, as_json=True)
    assert status == 400
    assert isinstance(body["fname"], list) and len(body["fname"]) == 1, body
    assert body["error"] == "fname is required." and body["code"] == "name_required", body
    assert body["codes"] == {"fname": "name_required"}, body


async def test_the_name_presets_missing_name_keeps_our_words(clinic: Clinic) -> None:
    """The name-only form answers as before intake forms, keyed by field too."""
    _, body = await post_check_in(clinic, {}, as_json=True)
    assert body["fname"] == ["fname is required."] and body["error"] == "fname is required."


async def test_only_staff_read_the_answers_in_the_patient_detail(original: Clinic) -> None:
    """The staff detail view is the one place the answers are read back (intake spec)."""
    status, body = await post_check_in(original, SECRET, as_json=True)
    assert status == 201, body
    path = f"/api/patients/{body['id']}/"
    for role in (Role.DOCTOR, Role.ADMIN):
        resp = await original.client.get(path, headers=roni(original.access[role]))
        assert resp.status == 200, await resp.text()
        detail = await resp.json()
        assert detail["fname"] == "Private Person"
        assert detail["intake"]["ssn"] == SECRET["ssn"] and detail["intake"]["dob"] == "1971-04-05"
        assert "ssn" in [field["key"] for field in detail["form"]]
    for role in (Role.FORM, Role.QUEUE):
        resp = await original.client.get(path, headers=roni(original.access[role]))
        assert resp.status == 403, await resp.text()
        assert_no_intake(await resp.text(), f"the detail refused to {role}")
    resp = await original.client.get(path)
    assert resp.status == 401
    resp = await original.client.get("/api/patients/999999/", headers=original.headers(Role.DOCTOR))
    assert resp.status == 404 and (await resp.json())["code"] == "patient_not_found"


async def test_no_intake_answer_is_logged(
    original: Clinic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status, _ = await post_check_in(original, [*SECRET.items(), ("image", Photo(JPEG))])
    assert status == 201
    status, _ = await post_check_in(original, form({**SECRET, "zip": "2329"}), as_json=True)
    assert status == 400
    status, _ = await post_check_in(original, form({**SECRET, "ssn": "000004242"}))
    assert status == 400
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for value in [*SECRET_VALUES, "2329", "000004242", "Private Person"]:
        assert not carries(logged, value), f"the log carries {value!r}"


async def test_an_urlencoded_form_is_accepted(original: Clinic) -> None:
    """§4: application/x-www-form-urlencoded is accepted (no photo), as multipart is."""
    resp = await original.client.post(
        "/api/patients/",
        data=form({"city": ""}),  # aiohttp sends a dict of text as urlencoded
        headers=roni(original.access[Role.FORM]),
    )
    assert resp.status == 201, await resp.text()
    assert_original_record(await resp.json(), {**VALID, "city": None, "image": None})


async def test_the_answers_are_kept_in_the_patient_row_only(
    original: Clinic, config: Config
) -> None:
    """patients.intake holds the answers (intake spec); the event log, the audit trail and
    the idempotency record do not. A kiosk's retry replays the same 201 from the row."""
    headers = {**roni(original.access[Role.FORM]), "Idempotency-Key": "retry-1"}
    answers = []
    for _ in range(2):
        resp = await original.client.post("/api/patients/", json=SECRET, headers=headers)
        assert resp.status == 201, await resp.text()
        answers.append(await resp.json())
    # The same 201 but for the status link: a retry gets a new one (README, the phone).
    assert answers[0].pop("status_url") != answers[1].pop("status_url")
    assert answers[0] == answers[1] and resp.headers.get("Idempotent-Replayed") == "true"
    resp = await original.client.post(
        "/api/patients/", json={**SECRET, "city": "Elsewhere"}, headers=headers
    )
    assert resp.status == 422 and (await resp.json())["code"] == "idempotency_key_reused"
    await original.client.get(
        f"/api/patients/{answers[0]['id']}/", headers=original.headers(Role.DOCTOR)
    )
    with sqlite3.connect(config.data_dir / "checkin.db") as db:
        (stored,) = db.execute("SELECT intake FROM patients").fetchone()
        assert json.loads(stored) == {k: v for k, v in SECRET.items() if k != "fname"}
        tables = [
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            if table == "patients":
                continue
            for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 (our own table names)
                for value in SECRET_VALUES:
                    assert not carries(repr(row), value), f"{table} keeps {value!r}: {row!r}"


# --- §4: content types ------------------------------------------------------------------


async def test_a_text_plain_body_is_read_as_json(original: Clinic) -> None:
    """A chosen difference (README): JSON sent as text/plain is read (the original: 415)."""
    resp = await original.client.post(
        "/api/patients/",
        data=json.dumps(VALID),
        headers={**roni(original.access[Role.FORM]), "Content-Type": "text/plain"},
    )
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("raw", ["[1, 2]", '"x"', '{"fname": '], ids=["list", "str", "malformed"])
async def test_a_json_body_that_is_no_object_is_refused(original: Clinic, raw: str) -> None:
    """400 as in the original; the body is ours (code body_not_an_object / invalid_json)."""
    resp = await original.client.post(
        "/api/patients/",
        data=raw,
        headers={**roni(original.access[Role.FORM]), "Content-Type": "application/json"},
    )
    assert resp.status == 400, await resp.text()
