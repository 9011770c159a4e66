"""The OpenAPI document: served as packaged, valid, complete, and true of the live server.

Schemathesis generates requests from the document (bounded, deterministic) and sends them to
the real appliance (`python -m checkin_appliance serve` on a loopback port); every answer must
be documented: its status, content type, headers and body. Two servers, so that the login
fuzzing (which trips the 429 throttle for 127.0.0.1) cannot lock out the logged-in identities.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from checkin_appliance import errors
from checkin_appliance.app import create_app
from checkin_appliance.config import Config
from checkin_appliance.web import openapi
from tests.conftest import PASSWORD
from tests.serverproc import SETUP_CODE, Server, http_json, running

DOCUMENT: dict[str, Any] = json.loads(openapi.document())
SEED = 20261126
MAX_EXAMPLES = 25  # per operation and identity; the coverage phase adds its own few
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
    positive_data_acceptance,
    negative_data_rejection,
]
# Routes the document leaves out on purpose: the browser pages, their static files and the
# WebSocket feed (described in the README).
PAGE_HANDLER_MODULE = "checkin_appliance.web.pages"
# The patient's status pages (HTML), and the rest of /v/ answering as an unknown link does.
VISIT_PAGES = {"visit_page", "reach_test_page"}
UNDOCUMENTED_PATHS = {"/ws/queue/", "/v/{tail}"}


def _load_schema(*, generate_auth: bool) -> Any:
    """The packaged document for Schemathesis: fixed seed, bounded, no example database."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # Staff runs send their own token; anonymous runs let it make up bad ones.
                "with-security-parameters": generate_auth,
            },
        }
    )
    return schemathesis.openapi.from_dict(DOCUMENT, config=config)


def _needs_auth(method: str, path: str) -> bool:
    operation = DOCUMENT["paths"][path][method.lower()]
    return bool(operation.get("security", DOCUMENT["security"]))


staff_schema = _load_schema(generate_auth=False).include(
    lambda ctx: _needs_auth(ctx.operation.method, ctx.operation.path)
)
admin_schema = staff_schema.include(tag="admin")
anonymous_schema = _load_schema(generate_auth=True)


@staff_schema.hook("filter_failure")
def beyond_json_schema(ctx: Any, failure: Any, case: Any, response: schemathesis.Response) -> bool:
    """Rules of the server that JSON Schema cannot state, so that a schema-valid request
    rightly gets its documented 400, 409 or 422 (ST202 would call that a rejected valid
    request): the `image` part must be the bytes of a JPEG, PNG or WebP image (codes
    photo_...), and an Idempotency-Key already used with another body is refused
    (idempotency_key_reused: state across requests). Lines are state too: a check-in's line
    must exist and be open, a kiosk may ask `urgent` only while the priority question is off
    (then it is ignored), a prefix may be taken, the last active line stays active, a
    credential's lines must exist, and a time zone must be one the box has data for.

    Every other failure, and these anywhere else, still fail the test."""
    if failure.code != "ST202":
        return True
    code = response.json().get("code", "")
    if case.operation.label == "POST /api/patients/":
        return not (
            code.startswith("photo_")
            or code in ("idempotency_key_reused", "line_unavailable", "priority_invalid")
        )
    return code not in STATE_CODES.get(case.operation.label, ())


# A statistics range's `from` after its `to`, and a line or doctor the box does not have.
STATS_CODES = ("stats_range_invalid", "stats_line_unknown", "stats_doctor_unknown")
# What a schema-valid request may still be refused with, by the state the server is in.
STATE_CODES = {
    "POST /api/lines/": ("line_prefix_taken", "too_many_lines"),
    "PATCH /api/lines/{line_id}/": ("line_prefix_taken", "line_last_active"),
    "POST /api/credentials/": ("line_unknown",),
    "PATCH /api/credentials/{token}/": ("line_unknown",),
    "GET /api/stats/arrivals/": STATS_CODES,
    "GET /api/stats/times/": STATS_CODES,
    "GET /api/stats/outcomes/": STATS_CODES,
    "PATCH /api/settings/": ("setting_value_invalid",),  # a time_zone without data here
    # The call cycle: the visit's state, the lines that exist, and keys used before.
    "POST /api/doctors/": ("idempotency_key_reused", "line_not_found"),
    # A range's ends in order and at most 366 days apart: JSON Schema cannot compare them.
    "GET /api/records/visits.csv": ("records_range_invalid",),
    "GET /api/records/days.csv": ("records_range_invalid",),
    # The audit viewer: from after to, and a who no credential has (the box's state).
    "GET /api/audit/": ("audit_range_invalid", "audit_who_unknown"),
    "GET /api/audit.csv": ("audit_range_invalid", "audit_who_unknown"),
    # Backups: a folder that exists on this box, a passphrase kept from before, and a file
    # that is one of our backups (no schema can say any of these).
    "PUT /api/backups/schedule/": ("backup_folder_invalid", "backup_passphrase_invalid"),
    "POST /api/backups/restore/": ("restore_refused",),
}


# --- live servers -------------------------------------------------------------------------


@dataclass
class Clinic:
    """A live server whose first admin was made through /api/setup/, and one login per role."""

    server: Server
    setup_answer: requests.Response
    tokens: dict[str, str] = field(default_factory=dict)  # role -> 8-digit credential token
    access: dict[str, str] = field(default_factory=dict)  # role -> access token

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def login(self, role: str) -> str:
        return self.server.login(self.tokens[role])

    def headers(self, role: str) -> dict[str, str]:
        # The doctor uses the original's header, so both documented schemes are exercised.
        name = "Roni-Authorization" if role == "doctor" else "Authorization"
        return {name: f"Bearer {self.access[role]}"}


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clinic]:
    with running(tmp_path_factory.mktemp("openapi-clinic")) as server:
        code = server.wait_for_output(SETUP_CODE).group(1)
        answer = requests.post(
            f"{server.base_url}/api/setup/",
            json={"code": code, "password": PASSWORD},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        clinic = Clinic(server, answer)
        clinic.tokens["admin"] = answer.json()["token"]
        clinic.access["admin"] = clinic.login("admin")
        for role in ("form", "doctor", "queue"):
            status, body = http_json(
                "POST",
                f"{server.base_url}/api/credentials/",
                {"role": role, "label": f"{role} 1", "room": "Room 1", "password": PASSWORD},
                {"Authorization": f"Bearer {clinic.access['admin']}"},
            )
            assert status == 201, body
            clinic.tokens[role] = body["token"]
            clinic.access[role] = clinic.login(role)
        yield clinic


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server still waiting for its first admin: anonymous fuzzing and the login throttle."""
    with running(tmp_path_factory.mktemp("openapi-fresh")) as server:
        yield server


# --- the document itself ----------------------------------------------------------------


def test_served_document_is_the_packaged_file(clinic: Clinic) -> None:
    answer = requests.get(f"{clinic.base_url}/api/openapi.json", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.content == openapi.document()
    packaged = Path(openapi.__file__).with_name(openapi.DOCUMENT).read_bytes()
    assert answer.content == packaged


def test_document_is_valid_openapi() -> None:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    assert DOCUMENT["openapi"].startswith("3.1.")
    problems = [str(r.err()) for r in schema.get_all_operations() if isinstance(r, Err)]
    assert problems == []


def _documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    }


def _served(tmp_path: Path) -> set[tuple[str, str]]:
    """Every (method, path) the app routes, but the pages, static files and the feed."""
    app = create_app(Config(data_dir=tmp_path / "data"))
    served = set()
    for route in app.router.routes():
        resource = route.resource
        if isinstance(resource, web.StaticResource):
            continue
        if getattr(route.handler, "__module__", None) == PAGE_HANDLER_MODULE:
            continue
        if getattr(route.handler, "__name__", None) in VISIT_PAGES:
            continue
        if resource is None or resource.canonical in UNDOCUMENTED_PATHS:
            continue
        served.add((route.method, resource.canonical))
    # aiohttp answers HEAD for every GET route; the document describes the GET.
    return {(m, p) for m, p in served if not (m == "HEAD" and ("GET", p) in served)}


def test_the_documented_error_codes_are_the_ones_the_server_answers_with() -> None:
    document = json.loads(openapi.document())
    documented = document["components"]["schemas"]["ErrorCode"]["enum"]
    assert documented == [code.code for code in errors.ALL]
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [code.code for code in errors.ALL if f"| `{code.code}` |" not in readme]
    assert missing == [], "the README's API overview lists every code"


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    served, documented = _served(tmp_path), _documented()
    assert served - documented == set(), "routes missing from openapi.json"
    assert documented - served == set(), "openapi.json documents routes the app does not have"


def _resolved(node: dict[str, Any]) -> dict[str, Any]:
    """A local `$ref` followed to what it names."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


ERROR_SCHEMAS = {"#/components/schemas/" + name for name in ("Error", "Detail", "HealthError")}


def test_every_operation_documents_its_errors() -> None:
    """Authenticated operations answer 401 and 503, body readers 400/413/415; every error is
    one of the JSON error shapes."""
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if _needs_auth(method, path):
                assert {"401", "503"} <= set(responses), (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= set(responses), (method, path)
            for status, response in responses.items():
                if int(status) >= 400:
                    content = _resolved(response)["content"]
                    assert list(content) == ["application/json"], (method, path, status)
                    ref = content["application/json"]["schema"].get("$ref")
                    assert ref in ERROR_SCHEMAS, (method, path, status)


# --- Schemathesis against the live server -------------------------------------------------


SQLITE_INTEGER_LIMIT = 2**63  # the first patient_id SQLite cannot hold
STRONG_PASSWORD = "violet kettle harbour"


def _call_as(case: Any, role: str, clinic: Clinic) -> None:
    if case.operation.path == "/api/logout/":
        # Each logout ends its own session, not the one the other cases go on using.
        headers = {"Authorization": f"Bearer {clinic.login(role)}"}
    else:
        headers = clinic.headers(role)
    body = case.body
    password = body.get("password") if isinstance(body, dict) else None
    if case.operation.path == "/api/credentials/" and isinstance(password, str):
        # How guessable a password is, the document can only say in words (NewPassword):
        # what was generated goes in, behind words that make it strong enough.
        body["password"] = f"{STRONG_PASSWORD} {password}"[:1024]
    case.call_and_validate(base_url=clinic.base_url, headers=headers, checks=CHECKS)


@pytest.mark.parametrize("role", ["form", "doctor"])
@staff_schema.parametrize()
def test_staff_requests_conform(case: Any, role: str, clinic: Clinic) -> None:
    """Every authenticated operation, as a kiosk and as a doctor (403 where the role may not)."""
    _call_as(case, role, clinic)


@admin_schema.parametrize()
def test_admin_requests_conform(case: Any, clinic: Clinic) -> None:
    """Settings and credentials, as the admin who may change them."""
    _call_as(case, "admin", clinic)


@anonymous_schema.parametrize()
def test_anonymous_requests_conform(case: Any, fresh_server: Server) -> None:
    """No credentials, or made-up ones: setup codes, logins and tokens are all guesses here."""
    case.call_and_validate(base_url=fresh_server.base_url, checks=CHECKS)


# --- the journeys fuzzing cannot reach, each answer checked against the document -----------


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


def _call(case: Any, base_url: str, **kwargs: Any) -> schemathesis.Response:
    return case.call_and_validate(base_url=base_url, checks=CHECKS, **kwargs)


def _header(response: schemathesis.Response, name: str) -> str:
    (value,) = response.headers[name.lower()]
    return value


def test_setup_login_refresh_and_logout_answers_conform(clinic: Clinic) -> None:
    schema = _load_schema(generate_auth=False)
    schema["/api/setup/"]["POST"].validate_response(clinic.setup_answer)

    login = schema["/api/login/"]["POST"].Case(
        body={"token": clinic.tokens["queue"], "password": PASSWORD, "role": "queue"},
        media_type="application/json",
    )
    tokens = _call(login, clinic.base_url)
    assert tokens.status_code == 200
    assert tokens.json()["role"] == "queue"

    refresh = schema["/api/token/refresh/"]["POST"].Case(
        body={"refresh": tokens.json()["refresh"]}, media_type="application/json"
    )
    refreshed = _call(refresh, clinic.base_url)
    assert refreshed.status_code == 200

    logout = schema["/api/logout/"]["POST"].Case()
    bearer = {"Authorization": f"Bearer {refreshed.json()['access']}"}
    assert _call(logout, clinic.base_url, headers=bearer).status_code == 200
    assert _call(logout, clinic.base_url, headers=bearer).status_code == 401

    setup_again = schema["/api/setup/"]["POST"].Case(
        body={"code": "ABCD-EFGH-JKLM", "password": PASSWORD}, media_type="application/json"
    )
    assert _call(setup_again, clinic.base_url).status_code == 403


def test_check_in_with_photo_replay_call_and_photo_answers_conform(clinic: Clinic) -> None:
    # The admin fuzzing before it may have left the original's intake form (every field
    # required) or anything else in the settings: our defaults first.
    reset = requests.post(
        f"{clinic.base_url}/api/settings/preset/",
        json={"name": "private"},
        headers=clinic.headers("admin"),
        timeout=10,
    )
    assert reset.status_code == 200, reset.text
    schema = _load_schema(generate_auth=False)
    check_in = schema["/api/patients/"]["POST"].Case(
        headers={"Idempotency-Key": "openapi-journey-1"},
        body={"fname": "Test Patient", "image": _photo()},
        media_type="multipart/form-data",
    )
    first = _call(check_in, clinic.base_url, headers=clinic.headers("form"))
    assert first.status_code == 201, first.text
    assert first.json()["image"] is not None
    again = _call(check_in, clinic.base_url, headers=clinic.headers("form"))
    assert again.status_code == 201
    assert _header(again, "Idempotent-Replayed") == "true"
    # Ours: a replay carries a new status link (only the first one's hash was kept).
    assert {**again.json(), "status_url": None} == {**first.json(), "status_url": None}

    photo = schema["/media/patient_images/{name}"]["GET"].Case(
        path_parameters={"name": first.json()["image"].rsplit("/", 1)[1]}
    )
    answer = _call(photo, clinic.base_url)
    assert answer.status_code == 200
    assert _header(answer, "Content-Type") == "image/jpeg"

    complete = schema["/api/doctors/"]["POST"].Case(
        body={"action": "complete", "patient_id": first.json()["id"]},
        media_type="application/json",
    )
    called = _call(complete, clinic.base_url, headers=clinic.headers("doctor"))
    assert called.status_code == 200, called.text
    assert called.json()["patient"]["status"] == "completed"
    again = _call(complete, clinic.base_url, headers=clinic.headers("doctor"))
    assert again.status_code == 404


def test_admin_answers_conform(clinic: Clinic) -> None:
    schema = _load_schema(generate_auth=False)
    admin = clinic.headers("admin")
    create = schema["/api/credentials/"]["POST"].Case(
        body={"role": "doctor", "label": "Dr. Test", "room": " ", "password": PASSWORD},
        media_type="application/json",
    )
    created = _call(create, clinic.base_url, headers=admin)
    assert created.status_code == 201
    assert created.json()["room"] is None
    deactivate = schema["/api/credentials/{token}/deactivate/"]["POST"].Case(
        path_parameters={"token": created.json()["token"]}
    )
    gone = _call(deactivate, clinic.base_url, headers=admin)
    assert gone.status_code == 200
    assert gone.json()["active"] is False
    for role in ("form", "queue"):
        queue = schema["/api/queue/"]["GET"].Case()
        assert _call(queue, clinic.base_url, headers=clinic.headers(role)).status_code == 200


@pytest.mark.parametrize(
    "patient_id", [SQLITE_INTEGER_LIMIT, str(SQLITE_INTEGER_LIMIT), 1e300, -(2**70)]
)
def test_patient_id_beyond_64_bits_is_refused(clinic: Clinic, patient_id: object) -> None:
    schema = _load_schema(generate_auth=False)
    complete = schema["/api/doctors/"]["POST"].Case(
        body={"action": "complete", "patient_id": patient_id}, media_type="application/json"
    )
    answer = complete.call(base_url=clinic.base_url, headers=clinic.headers("doctor"))
    assert answer.status_code == 400, answer.text


def test_login_throttle_answer_conforms(fresh_server: Server) -> None:
    schema = _load_schema(generate_auth=False)
    bad = schema["/api/login/"]["POST"].Case(
        body={"token": "00000000", "password": "not the password"}, media_type="application/json"
    )
    statuses = [_call(bad, fresh_server.base_url).status_code for _ in range(6)]
    assert statuses[-1] == 429, statuses
    answer = _call(bad, fresh_server.base_url)
    assert answer.status_code == 429
    assert int(_header(answer, "Retry-After")) >= 1
