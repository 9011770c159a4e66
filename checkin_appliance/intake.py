"""The kiosk's intake form: which questions a check-in asks, and how each answer is checked.

Three forms (the `intake_form` setting): the name only (the default), the original CheckIn's
form with its every field, rule and message (../shared/contract/original-intake.md), or the
clinic's own selection from the same catalogue, with its own labels and required flags.

Answers are checked all at once; the problems come back keyed by field, one message each,
in the form's order, as the original answered (`IntakeInvalid`). Imports nothing of the web.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from PIL import Image, UnidentifiedImageError

from checkin_appliance import errors
from checkin_appliance.domain import InvalidInput, clean_name, has_control_characters
from checkin_appliance.errors import ErrorCode

NAME, ORIGINAL, CUSTOM = "name", "original", "custom"
PRESETS = (NAME, ORIGINAL, CUSTOM)
LANGUAGES = ("en", "es")
MISSING: Any = object()  # a key the request did not send (not the same as null or "")
LABEL_LENGTH = 100

REQUIRED = "This field is required."
BLANK = "This field may not be blank."
NOT_TEXT = "Not a valid string."
TOO_LONG = "Ensure this field has no more than {} characters."
BAD_DATE = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
FUTURE_DATE = "Date of birth cannot be in the future."
NOT_A_CHOICE = '"{}" is not a valid choice.'
NO_CHOICE = "Invalid choice. Available options are: {}."
CONTROL = "This field must not contain control characters."
# The original's photo checks, in its order (original-intake.md §5.4).
NOT_A_FILE = "The submitted data was not a file. Check the encoding type on the form."
EMPTY_FILE = "The submitted file is empty."
LONG_FILENAME = "Ensure this filename has at most 100 characters (it has {})."
NOT_AN_IMAGE = (
    "Upload a valid image. The file you uploaded was either not an image or a corrupted image."
)
BAD_EXTENSION = "File extension \u201c{}\u201d is not allowed. Allowed extensions are: {}."
BAD_IMAGE_TYPE = "Unsupported image type. Only JPEG and PNG are allowed."
IMAGE_TOO_BIG = "Image size should not exceed 5 MB."
ORIGINAL_PHOTO_BYTES = 5 * 1024 * 1024
ORIGINAL_FILENAME_LENGTH = 100
# Dates as the original read them: ISO 8601 (also 19880808), or month and day unpadded.
LOOSE_DATE = re.compile(r"\A(\d{4})-(\d{1,2})-(\d{1,2})\Z")


def _labels(en: str, es: str) -> dict[str, str]:
    return {"en": en, "es": es}


@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    label: dict[str, str]


@dataclass(frozen=True, slots=True)
class Field:
    """One question of the catalogue, with the original's rules for it."""

    key: str
    kind: str  # text, date, digits, choice, photo (what the kiosk renders)
    label: dict[str, str]
    required: bool = True
    sensitive: bool = False
    max_length: int | None = None
    digits: int | None = None  # digits fields: exactly this many
    # Digits fields: the characters taken out before counting (phone: every non-digit).
    strip: str = ""
    format_message: str = ""
    choices: tuple[Choice, ...] = ()
    # The original's loophole: an empty form value (or JSON null) of a "required" field is
    # stored as null, except for the choice fields with a custom check (all but state).
    choice_check: bool = False  # "Invalid choice. Available options are: …" for empty/null
    blank_allowed: bool = False  # optional text: "" is kept as ""

    def public(self) -> dict[str, Any]:
        view: dict[str, Any] = {
            "key": self.key,
            "kind": self.kind,
            "required": self.required,
            "sensitive": self.sensitive,
            "max_length": self.max_length,
            "digits": self.digits,
            "label": self.label,
        }
        if self.choices:
            view["choices"] = [{"value": c.value, "label": c.label} for c in self.choices]
            view["yes_no"] = [c.value for c in self.choices] == ["yes", "no"]
        return view


def _choices(*pairs: tuple[str, str, str]) -> tuple[Choice, ...]:
    return tuple(Choice(value, _labels(en, es)) for value, en, es in pairs)


YES_NO = _choices(("yes", "Yes", "Sí"), ("no", "No", "No"))


def _choice(key: str, en: str, es: str, choices: tuple[Choice, ...], **rules: Any) -> Field:
    return Field(key, "choice", _labels(en, es), choices=choices, choice_check=True, **rules)


def _digits(
    key: str, en: str, es: str, count: int, limit: int, strip: str, message: str, **rules: Any
) -> Field:
    return Field(
        key,
        "digits",
        _labels(en, es),
        sensitive=True,
        max_length=limit,
        digits=count,
        strip=strip,
        format_message=message,
        **rules,
    )


def _text(key: str, en: str, es: str, limit: int = 255, **rules: Any) -> Field:
    return Field(key, "text", _labels(en, es), max_length=limit, **rules)


NON_DIGITS = "non-digits"
# Every field of the original's form, in its order (original-intake.md §5.1, §5.2).
CATALOGUE: tuple[Field, ...] = (
    _text("fname", "Full name", "Nombre completo"),
    Field("dob", "date", _labels("Date of birth", "Fecha de nacimiento"), sensitive=True),
    _choice(
        "gender",
        "Gender",
        "Género",
        _choices(
            ("male", "Male", "Masculino"),
            ("female", "Female", "Femenino"),
            ("non_binary", "Non-binary", "No binario"),
            ("other", "Other", "Otro"),
        ),
    ),
    _choice(
        "pronoun",
        "Pronouns",
        "Pronombres",
        _choices(
            ("he_him", "He/Him", "Él"),
            ("she_her", "She/Her", "Ella"),
            ("they_them", "They/Them", "Elle"),
            ("other", "Other", "Otro"),
        ),
    ),
    _digits(
        "phone",
        "Phone number",
        "Teléfono",
        10,
        10,
        NON_DIGITS,
        "Phone number must be a 10-digit number.",
    ),
    _text(
        "emergency_contact",
        "Emergency contact (name and phone)",
        "Contacto de emergencia (nombre y teléfono)",
        sensitive=True,
    ),
    _digits(
        "ssn",
        "Social Security number",
        "Número de Seguro Social",
        10,
        10,
        "-",
        "SSN must be a 10-digit number.",
    ),
    _text("street1", "Street address", "Dirección", sensitive=True),
    _text(
        "street2",
        "Address line 2",
        "Dirección (línea 2)",
        sensitive=True,
        required=False,
        blank_allowed=True,
    ),
    _text("last_known_address", "Last known address", "Última dirección conocida", sensitive=True),
    _text("city", "City", "Ciudad", 100, sensitive=True),
    Field(
        "state",
        "choice",
        _labels("State", "Estado"),
        sensitive=True,
        choices=_choices(
            ("VA", "Virginia", "Virginia"),
            ("MD", "Maryland", "Maryland"),
            ("NC", "North Carolina", "Carolina del Norte"),
            ("SC", "South Carolina", "Carolina del Sur"),
        ),
    ),
    _digits("zip", "ZIP code", "Código postal", 5, 10, "", "ZIP code must be a 5-digit number."),
    _digits(
        "medicaid_no",
        "Medicaid number",
        "Número de Medicaid",
        12,
        12,
        NON_DIGITS,
        "Medicaid number must be a 12-digit number.",
        required=False,
        blank_allowed=True,
    ),
    _choice(
        "id_card",
        "Do you have a valid ID card?",
        "¿Tiene una identificación válida?",
        _choices(
            ("yes", "Yes", "Sí"), ("no", "No", "No"), ("lost", "Lost/stolen", "Perdida/robada")
        ),
    ),
    _choice(
        "insurance",
        "Insurance",
        "Seguro médico",
        _choices(
            ("humana", "Humana", "Humana"),
            ("aetna", "Aetna", "Aetna"),
            ("magellan", "Magellan", "Magellan"),
            ("anthem", "Anthem", "Anthem"),
            ("sentara", "Sentara", "Sentara"),
            ("united", "United", "United"),
            ("dont_know", "I don't know", "No lo sé"),
        ),
    ),
    _choice(
        "race",
        "Race",
        "Raza",
        _choices(
            ("black_african_american", "Black/African American", "Negra/afroamericana"),
            ("caucasian", "Caucasian", "Caucásica"),
            ("hispanic_latino", "Hispanic/Latino", "Hispana/latina"),
            (
                "american_indian_alaskan_native",
                "American Indian or Alaskan Native",
                "Indígena americana o nativa de Alaska",
            ),
            ("biracial", "Biracial", "Birracial"),
            ("asian", "Asian", "Asiática"),
            ("middle_eastern", "Middle Eastern", "De Oriente Medio"),
            (
                "hawaiian_pacific_islander",
                "Hawaiian/Pacific Islander",
                "Hawaiana/de las islas del Pacífico",
            ),
            ("other", "Other", "Otra"),
        ),
    ),
    _choice(
        "pref_service_area",
        "Preferred service area",
        "Zona de servicio preferida",
        _choices(
            *(
                (value, label, label)
                for value, label in (
                    ("petersburg", "Petersburg"),
                    ("east_end", "East End"),
                    ("west_end", "West End"),
                    ("chesterfield", "Chesterfield"),
                    ("chester", "Chester"),
                    ("colonial_heights", "Colonial Heights"),
                    ("north_side_richmond", "North side Richmond"),
                    ("southside_richmond", "Southside Richmond"),
                    ("church_hill", "Church Hill"),
                    ("ashland", "Ashland"),
                    ("hopewell", "Hopewell"),
                )
            )
        ),
    ),
    _choice(
        "employed",
        "Are you employed?",
        "¿Tiene empleo?",
        _choices(
            ("yes", "Yes", "Sí"),
            ("no", "No", "No"),
            ("disabled", "Disabled", "Discapacidad"),
            ("retired", "Retired", "Jubilado/a"),
        ),
    ),
    _choice("shower", "Do you need a shower?", "¿Necesita una ducha?", YES_NO),
    _choice("hungry", "Are you hungry?", "¿Tiene hambre?", YES_NO),
    _choice("homeless", "Are you homeless?", "¿Está sin hogar?", YES_NO),
    Field("image", "photo", _labels("Photo", "Foto"), required=False),
)
BY_KEY = {field.key: field for field in CATALOGUE}
ANSWER_KEYS = tuple(f.key for f in CATALOGUE if f.key not in ("fname", "image"))
NAME_ONLY = (BY_KEY["fname"], BY_KEY["image"])
DEFAULT_FORM: dict[str, Any] = {"preset": NAME}


# --- the form setting --------------------------------------------------------------------


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(f"intake_form: {message}", errors.SETTING_VALUE_INVALID)


def checked_form(value: object) -> dict[str, Any]:
    """The `intake_form` setting as stored: {"preset": "name"|"original"} or a custom
    selection {"preset": "custom", "fields": [{"key", "required", "sensitive", "label"}]}."""
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("preset"), str)
        or value["preset"] not in PRESETS
    ):
        raise _invalid('send {"preset": "name"}, {"preset": "original"} or a custom form.')
    if value["preset"] != CUSTOM:
        if set(value) != {"preset"}:
            raise _invalid("only a custom form has fields.")
        return {"preset": value["preset"]}
    if set(value) - {"preset", "fields"} or not isinstance(value.get("fields"), list):
        raise _invalid('a custom form is {"preset": "custom", "fields": [...]}.')
    fields: dict[str, dict[str, Any]] = {}
    for item in value["fields"]:
        key = item.get("key") if isinstance(item, dict) else None
        if not isinstance(key, str) or key not in BY_KEY:
            raise _invalid(f"each field is an object whose key is one of {', '.join(BY_KEY)}.")
        if set(item) - {"key", "required", "sensitive", "label"}:
            raise _invalid("a field has key, required, sensitive and label only.")
        entry: dict[str, Any] = {"key": key}
        for flag in ("required", "sensitive"):
            if flag in item:
                if not isinstance(item[flag], bool):
                    raise _invalid(f"{key}.{flag} must be true or false.")
                entry[flag] = item[flag]
        if key == "fname" and entry.get("required") is False:
            raise _invalid("fname is always required: the queue calls patients by name.")
        if "label" in item:
            entry["label"] = _checked_label(key, item["label"])
        fields[key] = entry  # listed again: the later entry replaces the earlier
    return {"preset": CUSTOM, "fields": list(fields.values())}


def _checked_label(key: str, label: object) -> dict[str, str]:
    if not isinstance(label, dict) or not set(label) <= set(LANGUAGES):
        raise _invalid(f"{key}.label maps languages ({', '.join(LANGUAGES)}) to text.")
    for text in label.values():
        if (
            not isinstance(text, str)
            or not text.strip()
            or len(text) > LABEL_LENGTH
            or has_control_characters(text)
        ):
            raise _invalid(f"{key}.label texts are 1-{LABEL_LENGTH} characters of plain text.")
    return {lang: text.strip() for lang, text in label.items()}


def form_fields(form: dict[str, Any]) -> tuple[Field, ...]:
    """The questions a form asks, in order: the name first, the photo last."""
    if form["preset"] == NAME:
        return NAME_ONLY
    if form["preset"] == ORIGINAL:
        return CATALOGUE
    chosen = {"fname": BY_KEY["fname"]}  # first, and asked whether listed or not
    for item in form["fields"]:
        base = BY_KEY[item["key"]]
        changes = {flag: item[flag] for flag in ("required", "sensitive") if flag in item}
        if "label" in item:
            changes["label"] = {**base.label, **item["label"]}
        chosen[base.key] = dataclasses.replace(base, **changes)
    photo = chosen.pop("image", BY_KEY["image"])  # last, and never required
    return (*chosen.values(), dataclasses.replace(photo, required=False))


def describe(form: dict[str, Any]) -> dict[str, Any]:
    """GET /api/intake-form/: what the kiosk renders."""
    return {"preset": form["preset"], "fields": [f.public() for f in form_fields(form)]}


def describe_answers(form: dict[str, Any], answers: dict[str, Any]) -> list[dict[str, Any]]:
    """The questions behind a patient's stored answers, with today's labels where the form
    still asks them (answers stay readable after the form changed)."""
    asked = {field.key: field for field in form_fields(form)}
    return [asked.get(key, BY_KEY[key]).public() for key in answers if key in BY_KEY]


# --- answers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upload:
    """The `image` of a request as it came: a file part (name, bytes), or text where a file
    should be (`is_file` False: a form's text field, a JSON value)."""

    data: bytes
    filename: str | None = None
    is_file: bool = True


@dataclass(frozen=True, slots=True)
class Answers:
    name: str
    values: dict[str, str | None]  # the enabled questions beyond the name and photo
    photo: bytes | None

    def stored(self) -> str | None:
        """patients.intake: the answers as JSON, or None for a name-only check-in."""
        return json.dumps(self.values, ensure_ascii=False) if self.values else None


Problem = tuple[str, ErrorCode]


class IntakeInvalid(InvalidInput):
    """Answers the form refuses: one (message, code) per field, in the form's order."""

    def __init__(self, problems: dict[str, Problem]) -> None:
        message, code = next(iter(problems.values()))
        super().__init__(message, code)
        self.problems = problems

    def extra(self) -> dict[str, Any]:
        """The original's field-keyed lists, and each field's code for pages to translate."""
        body: dict[str, Any] = {key: [message] for key, (message, _) in self.problems.items()}
        body["codes"] = {key: code.code for key, (_, code) in self.problems.items()}
        return body


def check(
    form: dict[str, Any],
    raw: dict[str, Any],
    photo: Upload | None,
    *,
    from_form: bool,
    today: date | None = None,
) -> Answers:
    """Every answer checked, the problems reported together. `from_form`: the values came
    from a multipart or urlencoded form, where an empty value stands for null."""
    preset = form["preset"]
    values: dict[str, str | None] = {}
    problems: dict[str, Problem] = {}
    name = ""
    for field in form_fields(form):
        if field.kind == "photo":
            continue
        value = raw.get(field.key, MISSING)
        try:
            if field.key == "fname":
                name = _name(value, preset, from_form)
            else:
                values[field.key] = _answer(field, value, preset, from_form, today)
        except _Refused as refused:
            problems[field.key] = refused.problem
    image: bytes | None = None
    try:
        image = _photo(photo, preset)
    except _Refused as refused:
        problems["image"] = refused.problem
    if problems:
        raise IntakeInvalid(problems)
    return Answers(name, values, image)


class _Refused(Exception):
    def __init__(self, message: str, code: ErrorCode) -> None:
        self.problem = (message, code)


def _name(value: object, preset: str, from_form: bool) -> str:
    if preset == NAME:  # as before the intake form existed: our rules and wording
        try:
            return clean_name(None if value is MISSING else value)
        except InvalidInput as exc:
            raise _Refused(exc.message, exc.code) from exc
    if value is MISSING:
        raise _Refused(REQUIRED, errors.NAME_REQUIRED)
    if isinstance(value, bool | list | dict):
        raise _Refused(NOT_TEXT, errors.NAME_NOT_TEXT)
    text = "" if value is None else str(value).strip()
    if not text:  # the original stored a blank name as null; the queue calls by name
        raise _Refused(BLANK, errors.NAME_REQUIRED)
    if len(text) > BY_KEY["fname"].max_length:  # type: ignore[operator]
        raise _Refused(TOO_LONG.format(BY_KEY["fname"].max_length), errors.NAME_TOO_LONG)
    try:
        return clean_name(text)
    except InvalidInput as exc:
        message = BLANK if exc.code is errors.NAME_REQUIRED else exc.message
        raise _Refused(message, exc.code) from exc


def _answer(
    field: Field, value: object, preset: str, from_form: bool, today: date | None
) -> str | None:
    """One answer as stored (None: null), or _Refused."""
    strict = preset == CUSTOM  # a clinic's own required question must be answered
    if value is MISSING:
        if field.required:
            raise _Refused(REQUIRED, errors.FIELD_REQUIRED)
        return None
    if from_form and value == "" and not field.blank_allowed:
        value = None  # the original read an empty form value as null
    if value is None:
        if strict and field.required:
            raise _Refused(REQUIRED, errors.FIELD_REQUIRED)
        if field.choice_check and not strict:
            options = ", ".join(c.value for c in field.choices)
            raise _Refused(NO_CHOICE.format(options), errors.CHOICE_INVALID)
        return None
    if field.kind == "choice":
        return _choice_value(field, value)
    if field.kind == "date":
        return _date(value, today)
    if isinstance(value, bool | list | dict):
        raise _Refused(NOT_TEXT, errors.FIELD_NOT_TEXT)
    text = str(value).strip()
    if not text:
        if field.blank_allowed and not (strict and field.required):
            return ""
        raise _Refused(BLANK, errors.FIELD_BLANK)
    if field.max_length is not None and len(text) > field.max_length:
        raise _Refused(TOO_LONG.format(field.max_length), errors.FIELD_TOO_LONG)
    if has_control_characters(text):
        raise _Refused(CONTROL, errors.FIELD_INVALID_CHARACTER)
    if field.kind == "digits":
        if field.strip == NON_DIGITS:
            kept = re.sub(r"\D", "", text)
        else:
            kept = text.replace(field.strip, "") if field.strip else text
        if len(kept) != field.digits or not kept.isascii() or not kept.isdigit():
            raise _Refused(field.format_message, errors.FORMAT_INVALID)
        return kept
    return text


def _choice_value(field: Field, value: object) -> str:
    """Exact keys, case-sensitive, not trimmed; anything else is named as the original
    named it (JSON true as "True", a list as "['VA']")."""
    if isinstance(value, str) and any(c.value == value for c in field.choices):
        return value
    shown = json.dumps(_python_text(value), ensure_ascii=False)[1:-1]
    raise _Refused(NOT_A_CHOICE.format(shown), errors.CHOICE_INVALID)


def _python_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    return repr(value) if isinstance(value, list | dict) else str(value)


def _date(value: object, today: date | None) -> str:
    if not isinstance(value, str):
        raise _Refused(BAD_DATE, errors.FORMAT_INVALID)
    text = value.strip()
    try:
        parsed = date.fromisoformat(text)
    except ValueError:
        loose = LOOSE_DATE.match(text)
        try:
            parsed = date(*(int(part) for part in loose.groups())) if loose else None
        except ValueError:
            parsed = None
    if parsed is None or "W" in text.upper():  # ISO week dates are not birth dates
        raise _Refused(BAD_DATE, errors.FORMAT_INVALID)
    if parsed > (today or datetime.now().astimezone().date()):
        raise _Refused(FUTURE_DATE, errors.DATE_IN_FUTURE)
    return parsed.isoformat()


def _photo(upload: Upload | None, preset: str) -> bytes | None:
    """The photo's bytes for our pipeline; the original's form also runs its own checks
    first, in its order (§5.4). Our re-encoding checks come after, in the store."""
    if upload is None or (upload.is_file and not upload.data and not upload.filename):
        return None  # a file input left empty: no photo
    if preset != ORIGINAL:
        return upload.data if upload.is_file and upload.data else None
    if not upload.is_file:
        raise _Refused(NOT_A_FILE, errors.PHOTO_NOT_A_FILE)
    if not upload.data:
        raise _Refused(EMPTY_FILE, errors.PHOTO_EMPTY)
    filename = upload.filename or ""
    if len(filename) > ORIGINAL_FILENAME_LENGTH:
        raise _Refused(LONG_FILENAME.format(len(filename)), errors.PHOTO_FILENAME_TOO_LONG)
    kind = _image_format(upload.data)
    if kind is None:
        raise _Refused(NOT_AN_IMAGE, errors.PHOTO_NOT_AN_IMAGE)
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    allowed = image_extensions()
    if extension not in allowed:
        raise _Refused(
            BAD_EXTENSION.format(extension, ", ".join(allowed)),
            errors.PHOTO_EXTENSION_NOT_ALLOWED,
        )
    if kind not in ("JPEG", "PNG", "MPO"):
        raise _Refused(BAD_IMAGE_TYPE, errors.PHOTO_TYPE_NOT_ALLOWED)
    if len(upload.data) > ORIGINAL_PHOTO_BYTES:
        raise _Refused(IMAGE_TOO_BIG, errors.PHOTO_OVER_ORIGINAL_LIMIT)
    return upload.data


def photo_over_limit(form: dict[str, Any], limit: int, message: str) -> IntakeInvalid:
    """A photo bigger than the box reads (max_photo_bytes): 413, keyed by field; with the
    original's form and a limit of at least its 5 MB, its 400 and words."""
    if form["preset"] == ORIGINAL and limit >= ORIGINAL_PHOTO_BYTES:
        return IntakeInvalid({"image": (IMAGE_TOO_BIG, errors.PHOTO_OVER_ORIGINAL_LIMIT)})
    return IntakeInvalid({"image": (message, errors.PHOTO_TOO_LARGE)})


def _image_format(data: bytes) -> str | None:
    """What Pillow says the file is, from its header (as the original asked it)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def image_extensions() -> list[str]:
    """The file extensions Pillow knows, as the original listed them."""
    Image.init()
    return list(dict.fromkeys(ext.lower()[1:] for ext in Image.registered_extensions()))
