"""The REST contract: every compat status and body, both auth headers, and the role matrix."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, time, timedelta
from typing import Any

import aiohttp
import pytest
from yarl import URL

from checkin_appliance import errors
from checkin_appliance.domain import Role, format_time
from checkin_appliance.web.keys import ACCESS, STORE
from tests.conftest import PASSWORD, Clinic, StartClinic

NOT_PROVIDED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}
INVALID_TOKEN = {
    "detail": "Authentication credentials were invalid or expired.",
    "code": "token_not_valid",
    # The original's list (simplejwt's shape), for its clients (issue 14).
    "messages": [
        {
            "token_class": "AccessToken",
            "token_type": "access",
            "message": "Token is invalid or expired",
        }
    ],
}

ERROR_CODES = {code.code: code for code in errors.ALL}
# Every credential says whether import-original brought it and whether it needs a new password.
IMPORT_KEYS = ("imported", "password_reset_required")


# --- login, refresh, logout -------------------------------------------------------------


async def test_login_returns_tokens_and_role(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/api/login/",
        json={"token": clinic.tokens[Role.DOCTOR], "password": PASSWORD, "role": "doctor"},
    )
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"access", "refresh", "role"}
    assert body["role"] == "doctor"
    assert body["access"] != body["refresh"]


@pytest.mark.parametrize(
    "body",
    [{}, {"token": "12345678"}, {"password": "x"}, {"token": "", "password": ""}],
)
async def test_login_without_token_or_password_is_400(clinic: Clinic, body: dict[str, Any]) -> None:
    resp = await clinic.client.post("/api/login/", json=body)
    assert resp.status == 400
    assert await resp.json() == {
        "error": "Please provide both token and password.",
        "code": "login_fields_required",
    }


async def test_wrong_password_and_unknown_token_get_the_same_401(clinic: Clinic) -> None:
    wrong = await clinic.client.post(
        "/api/login/", json={"token": clinic.tokens[Role.FORM], "password": "wrong password"}
    )
    unknown = await clinic.client.post(
        "/api/login/", json={"token": "99999999", "password": PASSWORD}
    )
    expected = {"error": "Invalid credentials or inactive token.", "code": "bad_login"}
    assert (wrong.status, await wrong.json()) == (401, expected)
    assert (unknown.status, await unknown.json()) == (401, expected)


async def test_repeated_failures_are_throttled_with_retry_after(clinic: Clinic) -> None:
    token = clinic.tokens[Role.FORM]
    statuses = []
    for _ in range(7):
        resp = await clinic.client.post("/api/login/", json={"token": token, "password": "nope"})
        statuses.append(resp.status)
    assert statuses[:5] == [401] * 5
    assert statuses[-1] == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert "error" in await resp.json()
    # Even the right password waits out the lockout.
    resp = await clinic.client.post("/api/login/", json={"token": token, "password": PASSWORD})
    assert resp.status == 429


async def test_refresh_gives_a_new_working_access_token(clinic: Clinic) -> None:
    login = await clinic.client.post(
        "/api/login/", json={"token": clinic.tokens[Role.QUEUE], "password": PASSWORD}
    )
    tokens = await login.json()
    resp = await clinic.client.post("/api/token/refresh/", json={"refresh": tokens["refresh"]})
    assert resp.status == 200
    access = (await resp.json())["access"]
    ok = await clinic.client.get("/api/queue/", headers={"Authorization": f"Bearer {access}"})
    assert ok.status == 200
    old = await clinic.client.get(
        "/api/queue/", headers={"Authorization": f"Bearer {tokens['access']}"}
    )
    assert old.status == 401
    bad = await clinic.client.post("/api/token/refresh/", json={"refresh": "not-a-token"})
    assert bad.status == 401
    assert "detail" in await bad.json()


async def test_logout_ends_the_session(clinic: Clinic) -> None:
    headers = clinic.headers(Role.FORM)
    resp = await clinic.client.post("/api/logout/", headers=headers)
    assert resp.status == 200
    after = await clinic.client.get("/api/patients/", headers=headers)
    assert after.status == 401
    assert await after.json() == INVALID_TOKEN


# --- authentication headers and roles ---------------------------------------------------


async def test_missing_credentials_is_401_with_detail(clinic: Clinic) -> None:
    resp = await clinic.client.get("/api/queue/")
    assert resp.status == 401
    assert await resp.json() == NOT_PROVIDED


@pytest.mark.parametrize("header", ["Authorization", "Roni-Authorization"])
async def test_both_bearer_headers_are_accepted(clinic: Clinic, header: str) -> None:
    resp = await clinic.client.post(
        "/api/patients/",
        json={"fname": "Ada Lovelace"},
        headers={header: f"Bearer {clinic.access[Role.FORM]}"},
    )
    assert resp.status == 201


@pytest.mark.parametrize("value", ["Bearer nonsense", "bearer nonsense"])
async def test_invalid_bearer_is_401(clinic: Clinic, value: str) -> None:
    resp = await clinic.client.get("/api/queue/", headers={"Authorization": value})
    assert resp.status == 401
    assert await resp.json() == INVALID_TOKEN


# (method, path, json body, roles allowed besides admin)
ROUTES: list[tuple[str, str, dict[str, Any] | None, set[Role]]] = [
    ("GET", "/api/patients/", None, {Role.FORM}),
    ("POST", "/api/patients/", {"fname": "Role Matrix"}, {Role.FORM}),
    ("GET", "/api/doctors/", None, {Role.DOCTOR}),
    ("POST", "/api/doctors/", {"action": "call_next"}, {Role.DOCTOR}),
    ("GET", "/api/queue/", None, {Role.FORM, Role.DOCTOR, Role.QUEUE}),
    ("GET", "/api/settings/", None, {Role.FORM, Role.DOCTOR, Role.QUEUE}),
    ("PATCH", "/api/settings/", {"clinic_name": "Elm Street Clinic"}, set()),
    ("GET", "/api/credentials/", None, set()),
    (
        "POST",
        "/api/credentials/",
        {"role": "queue", "label": "TV 2", "password": "long enough pw"},
        set(),
    ),
    ("POST", "/api/credentials/00000000/deactivate/", None, set()),
]
ROLE_NAMES = {Role.FORM: "form", Role.DOCTOR: "doctor", Role.QUEUE: "queue", Role.ADMIN: "admin"}


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES)
async def test_role_matrix(
    clinic: Clinic, method: str, path: str, body: dict[str, Any] | None, allowed: set[Role]
) -> None:
    await clinic.check_in("Somebody Waiting")  # so call_next has someone
    anonymous = await clinic.client.request(method, path, json=body)
    assert anonymous.status == 401, path
    assert await anonymous.json() == NOT_PROVIDED
    for role in Role:
        resp = await clinic.client.request(method, path, json=body, headers=clinic.headers(role))
        if role in allowed or role is Role.ADMIN:
            assert resp.status < 400 or resp.status == 404, (path, role, await resp.text())
        else:
            assert resp.status == 403, (path, role)
            needed = "admin" if not allowed else ROLE_NAMES[min(allowed, key=list(Role).index)]
            assert await resp.json() == {
                "detail": f"Access Denied: You must have the '{needed}' role to access "
                "this resource.",
                "code": "permission_denied",
            }


async def test_welcome_messages(clinic: Clinic) -> None:
    form = await clinic.client.get("/api/patients/", headers=clinic.headers(Role.FORM))
    doctor = await clinic.client.get("/api/doctors/", headers=clinic.headers(Role.DOCTOR))
    assert (await form.json())["message"].startswith("Welcome")
    assert (await doctor.json())["message"].startswith("Welcome Doctor")


# --- check-in ---------------------------------------------------------------------------


async def test_check_in_json_returns_the_contract_body(clinic: Clinic) -> None:
    await clinic.check_in("First Patient")
    resp = await clinic.client.post(
        "/api/patients/",
        json={"fname": "  John   Doe ", "dob": "1970-01-01", "phone": "555"},
        headers=clinic.headers(Role.FORM),
    )
    assert resp.status == 201
    body = await resp.json()
    # The original's patient record (with the name-only form: no other answers), then ours;
    # questions the form does not ask are neither stored nor echoed.
    assert list(body) == [
        "id",
        "fname",
        "image",
        "wait_time",
        "created_at",
        "updated_at",
        "status",
        "check_in_time",
        "queue_entry_id",
        "position",
        "ticket",
        "line",
        "priority",
        "status_url",
    ]
    assert body["fname"] == "John Doe"
    assert body["wait_time"] is None and body["created_at"] == body["check_in_time"]
    assert body["status"] == "waiting"
    assert body["image"] is None
    assert body["position"] == 2
    assert body["check_in_time"].endswith("Z") and len(body["check_in_time"]) == 24


async def test_check_in_form_urlencoded(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/api/patients/", data={"fname": "Grace Hopper"}, headers=clinic.headers(Role.FORM)
    )
    assert resp.status == 201
    assert (await resp.json())["fname"] == "Grace Hopper"


@pytest.mark.parametrize(
    "body", [{}, {"fname": ""}, {"fname": "   "}, {"fname": 42}, {"fname": "x" * 256}]
)
async def test_check_in_rejects_bad_names(clinic: Clinic, body: dict[str, Any]) -> None:
    resp = await clinic.client.post("/api/patients/", json=body, headers=clinic.headers(Role.FORM))
    assert resp.status == 400
    assert "fname" in (await resp.json())["error"]


async def test_a_255_character_name_is_accepted(clinic: Clinic) -> None:
    body = await clinic.check_in("x" * 255)
    assert len(body["fname"]) == 255


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"<xml/>", "application/xml", 415),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x", 400),
    ],
)
async def test_malformed_bodies_are_clear_4xx(
    clinic: Clinic, data: bytes, content_type: str, status: int
) -> None:
    committed = await clinic.check_in("Already Waiting")
    resp = await clinic.client.post(
        "/api/patients/",
        data=data,
        headers={**clinic.headers(Role.FORM), "Content-Type": content_type},
    )
    assert resp.status == status
    assert "error" in await resp.json()
    queue = await (await clinic.client.get("/api/queue/", headers=clinic.headers(Role.FORM))).json()
    assert [item["id"] for item in queue] == [committed["queue_entry_id"]]


async def test_oversized_json_body_is_413(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/api/patients/",
        json={"fname": "A B", "junk": "x" * (2 * 1024 * 1024)},
        headers=clinic.headers(Role.FORM),
    )
    assert resp.status == 413
    assert "error" in await resp.json()


# --- calling patients -------------------------------------------------------------------


async def test_call_next_completes_the_longest_waiting(clinic: Clinic) -> None:
    first = await clinic.check_in("John Doe")
    await clinic.check_in("Jane Roe")
    resp = await clinic.call_next()
    assert resp.status == 200
    assert await resp.json() == {
        "message": "Action successful.",
        "patient": {"id": first["id"], "fname": "John Doe", "status": "completed", "image": None},
    }


async def test_complete_without_id_is_call_next(clinic: Clinic) -> None:
    first = await clinic.check_in("John Doe")
    resp = await clinic.client.post(
        "/api/doctors/", json={"action": "complete"}, headers=clinic.headers(Role.DOCTOR)
    )
    assert resp.status == 200
    assert (await resp.json())["patient"]["id"] == first["id"]


async def test_complete_a_given_patient(clinic: Clinic) -> None:
    await clinic.check_in("John Doe")
    second = await clinic.check_in("Jane Roe")
    resp = await clinic.client.post(
        "/api/doctors/",
        json={"action": "complete", "patient_id": second["id"]},
        headers=clinic.headers(Role.DOCTOR),
    )
    assert resp.status == 200
    assert (await resp.json())["patient"]["fname"] == "Jane Roe"
    again = await clinic.client.post(
        "/api/doctors/",
        json={"action": "complete", "patient_id": second["id"]},
        headers=clinic.headers(Role.DOCTOR),
    )
    assert again.status == 404
    assert await again.json() == {
        "error": "No waiting patient with that id.",
        "code": "no_such_patient",
    }
    queue = await (
        await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    ).json()
    assert [item["patient"]["fname"] for item in queue] == ["John Doe"]


async def test_nobody_waiting_is_404(clinic: Clinic) -> None:
    resp = await clinic.call_next()
    assert resp.status == 404
    assert await resp.json() == {"error": "No patients in the waiting.", "code": "nobody_waiting"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"action": "dance"},
        {"action": None},
        {"action": "complete", "patient_id": "abc"},
        {"action": "complete", "patient_id": -3},
        {"action": "complete", "patient_id": True},
        {"action": "complete", "patient_id": [1]},
    ],
)
async def test_invalid_action_is_400(clinic: Clinic, body: dict[str, Any]) -> None:
    await clinic.check_in("Still Waiting")
    resp = await clinic.client.post("/api/doctors/", json=body, headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 400
    assert await resp.json() == {
        "error": "Invalid action or missing patient.",
        "code": "invalid_action",
    }


async def test_concurrent_call_next_never_hands_out_a_patient_twice(clinic: Clinic) -> None:
    ids = {(await clinic.check_in(f"Patient {i:02d}"))["id"] for i in range(20)}
    doctors = [clinic.access[Role.DOCTOR], clinic.access[Role.ADMIN]]
    for i in range(3):
        token = await clinic.add_credential(Role.DOCTOR, f"Dr. {i}")
        doctors.append(await clinic.login(token))

    async def call(n: int) -> tuple[int, Any]:
        resp = await clinic.client.post(
            "/api/doctors/",
            json={"action": "call_next"},
            headers={"Authorization": f"Bearer {doctors[n % len(doctors)]}"},
        )
        return resp.status, await resp.json()

    results = await asyncio.gather(*(call(n) for n in range(50)))
    called = [body["patient"]["id"] for status, body in results if status == 200]
    assert sorted(called) == sorted(ids)
    assert [status for status, _ in results].count(404) == 30
    assert all(status in (200, 404) for status, _ in results)


# --- queue and privacy ------------------------------------------------------------------


async def test_queue_lists_waiting_in_check_in_order(clinic: Clinic) -> None:
    a = await clinic.check_in("John Doe")
    b = await clinic.check_in("Mary Ann Smith")
    c = await clinic.check_in("Cher")
    await clinic.client.post(
        "/api/doctors/",
        json={"action": "complete", "patient_id": b["id"]},
        headers=clinic.headers(Role.DOCTOR),
    )
    staff = await (
        await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    ).json()
    assert staff == [
        {
            "id": a["queue_entry_id"],
            "patient": {"id": a["id"], "fname": "John Doe", "image": None},
            "status": "waiting",
            "check_in_time": a["check_in_time"],
            "ticket": "A-001",
            "line": "A",
            "priority": "normal",
            "place": 1,
        },
        {
            "id": c["queue_entry_id"],
            "patient": {"id": c["id"], "fname": "Cher", "image": None},
            "status": "waiting",
            "check_in_time": c["check_in_time"],
            "ticket": "A-003",
            "line": "A",
            "priority": "normal",
            "place": 2,
        },
    ]


async def test_wall_display_sees_first_name_and_initial_unless_configured(clinic: Clinic) -> None:
    await clinic.check_in("John Doe")
    await clinic.check_in("Mary Ann Smith")

    async def display_names() -> list[str]:
        resp = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.QUEUE))
        return [item["patient"]["fname"] for item in await resp.json()]

    assert await display_names() == ["John D.", "Mary S."]
    resp = await clinic.client.patch(
        "/api/settings/", json={"display_names": "full"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    assert await display_names() == ["John Doe", "Mary Ann Smith"]


@pytest.mark.parametrize(
    "body",
    [
        {"display_names": "shout"},
        {"display_photos": "yes"},
        {"colour": "red"},
        {},
        {"clinic_name": ""},
    ],
)
async def test_bad_settings_are_400_and_change_nothing(
    clinic: Clinic, body: dict[str, Any]
) -> None:
    resp = await clinic.client.patch(
        "/api/settings/", json=body, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 400
    assert "error" in await resp.json()
    settings = await (
        await clinic.client.get("/api/settings/", headers=clinic.headers(Role.QUEUE))
    ).json()
    assert settings["display_names"] == "first_initial"
    assert settings["display_photos"] is False


async def test_settings_survive_a_restart(clinic: Clinic, start_clinic: StartClinic) -> None:
    await clinic.client.patch(
        "/api/settings/",
        json={"clinic_name": "Elm Street", "display_photos": True},
        headers=clinic.headers(Role.ADMIN),
    )
    tokens = dict(clinic.tokens)
    await clinic.client.close()
    again = await start_clinic(tokens=tokens)
    settings = await (
        await again.client.get("/api/settings/", headers=again.headers(Role.QUEUE))
    ).json()
    assert settings["clinic_name"] == "Elm Street"
    assert settings["display_photos"] is True


# --- credentials (admin) and first-run setup --------------------------------------------


async def test_admin_creates_and_deactivates_a_credential(clinic: Clinic) -> None:
    admin = clinic.headers(Role.ADMIN)
    resp = await clinic.client.post(
        "/api/credentials/",
        json={"role": "doctor", "label": "Dr. Lee", "room": "Room 3", "password": "s3cret pass"},
        headers=admin,
    )
    assert resp.status == 201
    created = await resp.json()
    assert created["token"].isdecimal() and len(created["token"]) == 8
    assert created["room"] == "Room 3"
    assert "password" not in created and "password_hash" not in created
    access = await clinic.login(created["token"], "s3cret pass")
    listing = await (await clinic.client.get("/api/credentials/", headers=admin)).json()
    assert created["token"] in [c["token"] for c in listing]
    assert all(
        set(c)
        == {"token", "role", "label", "room", "lines", "active", "created_at", *IMPORT_KEYS}
        | {"last_seen", "online"}
        for c in listing
    )

    resp = await clinic.client.post(
        f"/api/credentials/{created['token']}/deactivate/", headers=admin
    )
    assert resp.status == 200
    assert (await resp.json())["active"] is False
    denied = await clinic.client.get("/api/doctors/", headers={"Authorization": f"Bearer {access}"})
    assert denied.status == 401
    relogin = await clinic.client.post(
        "/api/login/", json={"token": created["token"], "password": "s3cret pass"}
    )
    assert relogin.status == 401


@pytest.mark.parametrize(
    "body",
    [
        {"role": "janitor", "label": "X", "password": "long enough"},
        {"role": "form", "label": "", "password": "long enough"},
        {"role": "form", "label": "Kiosk", "password": "short"},
        {"role": "form", "label": "Kiosk"},
    ],
)
async def test_bad_credential_requests_are_400(clinic: Clinic, body: dict[str, Any]) -> None:
    resp = await clinic.client.post(
        "/api/credentials/", json=body, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 400
    assert "error" in await resp.json()


async def test_setup_code_creates_the_first_admin_exactly_once(
    aiohttp_client: Any, config: Any
) -> None:
    from checkin_appliance.app import create_app

    client = await aiohttp_client(create_app(config))
    code = client.app[ACCESS].setup_code
    assert code
    wrong = await client.post(
        "/api/setup/", json={"code": "AAAA-BBBB-CCCC", "password": "adm1n password"}
    )
    assert wrong.status == 403
    short = await client.post("/api/setup/", json={"code": code, "password": "short"})
    assert short.status == 400

    attempts = await asyncio.gather(
        *(
            client.post("/api/setup/", json={"code": code, "password": "adm1n password"})
            for _ in range(20)
        )
    )
    statuses = sorted(r.status for r in attempts)
    assert statuses == [201] + [403] * 19
    created = next([await r.json() for r in attempts if r.status == 201].__iter__())
    assert created["role"] == "admin"
    login = await client.post(
        "/api/login/", json={"token": created["token"], "password": "adm1n password"}
    )
    assert (await login.json())["role"] == "admin"
    again = await client.post("/api/setup/", json={"code": code, "password": "adm1n password"})
    assert again.status == 403
    assert await again.json() == {"error": "Setup is already complete.", "code": "setup_complete"}


# --- health, errors, headers, storage ---------------------------------------------------


async def test_healthz(clinic: Clinic) -> None:
    resp = await clinic.client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok" and body["db"] == "ok" and body["version"]


async def test_healthz_is_503_when_the_database_cannot_be_written(
    clinic: Clinic, config: Any
) -> None:
    # Another connection holds the write lock longer than the busy timeout allows.
    blocker = sqlite3.connect(config.db_path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        resp = await clinic.client.get("/healthz")
        assert resp.status == 503
        assert (await resp.json())["db"] == "error"
    finally:
        blocker.rollback()
        blocker.close()
    assert (await clinic.client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("DELETE", "/api/patients/"),
        ("PUT", "/api/queue/"),
        ("GET", "/api/login/"),
    ],
)
async def test_unknown_routes_and_methods_are_json(clinic: Clinic, method: str, path: str) -> None:
    resp = await clinic.client.request(method, path)
    assert resp.status in (404, 405)
    assert resp.content_type == "application/json"
    assert "error" in await resp.json()


async def test_security_headers_on_api_responses(clinic: Clinic) -> None:
    for path in ("/api/queue/", "/healthz", "/nope"):
        resp = await clinic.client.get(path, headers=clinic.headers(Role.QUEUE))
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Referrer-Policy"] == "same-origin"
    resp = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.QUEUE))
    assert resp.headers["Cache-Control"] == "no-store"


async def test_database_holds_no_clear_session_secrets_or_passwords(
    clinic: Clinic, config: Any
) -> None:
    await clinic.check_in("John Doe")
    dump = "\n".join(sqlite3.connect(config.db_path).iterdump())
    for secret in [*clinic.access.values(), PASSWORD]:
        assert secret not in dump


async def test_check_in_is_on_disk_when_acknowledged(clinic: Clinic, config: Any) -> None:
    body = await clinic.check_in("Durable Dan")
    # An independent connection sees the committed row and its event.
    db = sqlite3.connect(config.db_path)
    row = db.execute("SELECT fname FROM patients WHERE id = ?", (body["id"],)).fetchone()
    event = db.execute(
        "SELECT event FROM events WHERE entry_id = ?", (body["queue_entry_id"],)
    ).fetchone()
    assert row == ("Durable Dan",)
    assert event == ("PATIENT_ADDED",)


async def test_an_admin_made_elsewhere_closes_setup(clinic: Clinic) -> None:
    # The clinic fixture adds its admin after start-up, as `token create --role admin` would.
    code = clinic.app[ACCESS].setup_code
    assert code is not None
    resp = await clinic.client.post(
        "/api/setup/", json={"code": code, "password": "adm1n password"}
    )
    assert resp.status == 403
    assert await resp.json() == {"error": "Setup is already complete.", "code": "setup_complete"}


async def test_form_bodies_work_like_json_for_actions_and_login(clinic: Clinic) -> None:
    await clinic.check_in("John Doe")
    resp = await clinic.client.post(
        "/api/doctors/", data={"action": "call_next"}, headers=clinic.headers(Role.DOCTOR)
    )
    assert resp.status == 200
    form = aiohttp.FormData({"token": clinic.tokens[Role.FORM], "password": PASSWORD})
    form.add_field("photo", b"ignored", filename="x.bin")  # forces multipart/form-data
    resp = await clinic.client.post("/api/login/", data=form)
    assert resp.status == 200
    assert (await resp.json())["role"] == "form"


async def test_every_route_answers_bad_requests_with_one_json_error_shape(clinic: Clinic) -> None:
    """Walks the router: anonymous, wrong-role and garbage-body requests all get JSON errors."""
    routes = [
        (route.method, route.resource.canonical)
        for route in clinic.app.router.routes()
        if route.method not in ("HEAD", "*")
        and route.resource is not None
        # A patient's status page answers an unknown link with an HTML page (its JSON and
        # stream routes with this shape); the sign-in and setup forms answer with their page
        # saying what went wrong (a browser shows it, never raw JSON).
        and getattr(route.handler, "__name__", None)
        not in ("visit_page", "login_submit", "setup_submit")
    ]
    assert len(routes) >= 15
    assert len(ERROR_CODES) == len(errors.ALL), "two errors share a code"
    attempts = [
        {},
        {"data": b"\x00garbage{", "headers": {"Content-Type": "application/json"}},
        {
            "data": b"\x00garbage{",
            "headers": {**clinic.headers(Role.QUEUE), "Content-Type": "application/json"},
        },
        {
            "data": b"\x00garbage{",
            "headers": {**clinic.headers(Role.ADMIN), "Content-Type": "application/json"},
        },
    ]
    for method, path in routes:
        path = path.replace("{token}", "00000000").replace("{name}", "nope.jpg")
        for kwargs in attempts:
            resp = await clinic.client.request(method, path, **kwargs)
            if resp.status < 400:
                continue
            assert resp.content_type == "application/json", (method, path, resp.status)
            body = await resp.json()
            # One shape: the original's key with its text, and our code, which says the
            # status and the key it comes with (errors.py).
            code = ERROR_CODES.get(body.get("code"))
            assert code is not None, (method, path, body)
            # (and the original's `messages`, exactly for the codes it had them with)
            keys = {code.key, "code"} | ({"messages"} if code.token_messages else set())
            assert set(body) == keys, (method, path, body)
            assert code.status == resp.status or code is errors.HTTP_ERROR, (method, path, body)
            assert isinstance(body[code.key], str) and body[code.key]
            assert "Traceback" not in body[code.key]
    assert (await clinic.client.get("/healthz")).status == 200


# --- ours: idempotent kiosk submissions, rooms, today's figures -------------------------


async def test_a_retried_check_in_with_the_same_key_adds_nobody(clinic: Clinic) -> None:
    headers = {**clinic.headers(Role.FORM), "Idempotency-Key": "3f1c9a6e-kiosk-retry"}
    first = await clinic.client.post("/api/patients/", json={"fname": "Ann Lee"}, headers=headers)
    again = await asyncio.gather(
        *(
            clinic.client.post("/api/patients/", json={"fname": "Ann Lee"}, headers=headers)
            for _ in range(5)
        )
    )
    assert first.status == 201
    body = await first.json()
    links = [body.pop("status_url")]
    for resp in again:
        assert resp.status == 201
        answer = await resp.json()
        links.append(answer.pop("status_url"))
        assert answer == body
        assert resp.headers["Idempotent-Replayed"] == "true"
    # Ours: each replay carries a new status link (only a hash is kept) and the one before
    # it ends, so one link works: the newest.
    works = [(await clinic.client.get(URL(link).path + "/status")).status for link in links]
    assert sorted(works) == [200] + [404] * 5
    queue = await (
        await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    ).json()
    assert [item["patient"]["fname"] for item in queue] == ["Ann Lee"]
    # A new key is a new check-in; the same key from another kiosk is its own.
    other = await clinic.client.post(
        "/api/patients/",
        json={"fname": "Ann Lee"},
        headers={**clinic.headers(Role.ADMIN), "Idempotency-Key": "3f1c9a6e-kiosk-retry"},
    )
    assert (await other.json())["id"] != body["id"]


async def test_a_replayed_key_answers_as_at_check_in_even_after_a_call(clinic: Clinic) -> None:
    headers = {**clinic.headers(Role.FORM), "Idempotency-Key": "k1"}
    first = await (
        await clinic.client.post("/api/patients/", json={"fname": "Bo Chen"}, headers=headers)
    ).json()
    assert (await clinic.call_next()).status == 200
    replay = await clinic.client.post("/api/patients/", json={"fname": "Bo Chen"}, headers=headers)
    again = await replay.json()
    # Ours: only the status link's hash was kept, so the replay carries a new link (the
    # kiosk that missed the first answer never showed the first one), and the first ends.
    first_link, new_link = first.pop("status_url"), again.pop("status_url")
    assert again == first
    assert first_link != new_link
    new_path, first_path = (URL(link).path + "/status" for link in (new_link, first_link))
    assert (await clinic.client.get(new_path)).status == 200
    assert (await clinic.client.get(first_path)).status == 404


@pytest.mark.parametrize("key", ["", "x" * 101, "has space", "ümlaut"])
async def test_bad_idempotency_keys_are_400(clinic: Clinic, key: str) -> None:
    resp = await clinic.client.post(
        "/api/patients/",
        json={"fname": "Ann Lee"},
        headers={**clinic.headers(Role.FORM), "Idempotency-Key": key},
    )
    assert resp.status == 400
    assert "Idempotency-Key" in (await resp.json())["error"]


async def test_a_call_records_the_doctors_room(clinic: Clinic) -> None:
    token = await clinic.add_credential(Role.DOCTOR, "Dr. Lee", room="Room 3")
    access = await clinic.login(token)
    ws = await clinic.subscribe(Role.QUEUE)
    await clinic.check_in("John Doe")
    resp = await clinic.client.post(
        "/api/doctors/", json={"action": "call_next"}, headers={"Authorization": f"Bearer {access}"}
    )
    assert resp.status == 200
    events = [json.loads((await ws.receive(timeout=5)).data) for _ in range(2)]
    assert events[1]["event"] == "PATIENT_COMPLETED"
    assert events[1]["room"] == "Room 3"
    assert events[1]["patient"]["fname"] == "John D."


async def test_today_figures(clinic: Clinic) -> None:
    for name in ("A One", "B Two", "C Three"):
        await clinic.check_in(name)
    await clinic.call_next()
    resp = await clinic.client.get("/api/stats/today/", headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 200
    figures = await resp.json()
    assert figures["checked_in"] == 3
    assert figures["called"] == 1
    assert figures["waiting"] == 2
    assert isinstance(figures["median_wait_seconds"], int)
    assert 0 <= figures["median_wait_seconds"] < 60


async def test_the_median_wait_is_the_middle_of_todays_waits(clinic: Clinic) -> None:
    """Waits of 100 s and 300 s: the median is 200 s; a third of 650 s makes it 300 s."""
    now = datetime.now(UTC)
    start = max(now - timedelta(minutes=15), datetime.combine(now.date(), time(), UTC))
    clock = [start]
    clinic.app[STORE].set_clock(lambda: format_time(clock[0]))

    async def median() -> Any:
        resp = await clinic.client.get("/api/stats/today/", headers=clinic.headers(Role.DOCTOR))
        return (await resp.json())["median_wait_seconds"]

    for name in ("A One", "B Two", "C Three"):
        await clinic.check_in(name)
    for seconds in (100, 300):
        clock[0] = start + timedelta(seconds=seconds)
        assert (await clinic.call_next()).status == 200
    assert await median() == 200
    clock[0] = start + timedelta(seconds=650)
    assert (await clinic.call_next()).status == 200
    assert await median() == 300


LONE_SURROGATE = '"\\ud800"'  # valid JSON, but no text: SQLite and UTF-8 refuse it


@pytest.mark.parametrize(
    ("method", "path", "role", "body"),
    [
        ("PATCH", "/api/settings/", Role.ADMIN, '{"clinic_name": %s}'),
        ("POST", "/api/patients/", Role.FORM, '{"fname": %s}'),
        ("POST", "/api/credentials/", Role.ADMIN, '{"role": "form", "label": %s, "password": "x"}'),
        ("POST", "/api/credentials/", Role.ADMIN, '{"role": "form", "label": "K", "password": %s}'),
        ("POST", "/api/login/", None, '{"token": %s, "password": "x"}'),
        ("POST", "/api/token/refresh/", None, '{"refresh": %s}'),
        ("POST", "/api/setup/", None, '{"code": %s, "password": "long enough password"}'),
    ],
)
async def test_text_that_is_not_unicode_is_400_and_stores_nothing(
    start_clinic: StartClinic, method: str, path: str, role: Role | None, body: str
) -> None:
    clinic = await start_clinic()
    resp = await clinic.client.request(
        method,
        path,
        data=body % LONE_SURROGATE,
        headers={**clinic.headers(role), "Content-Type": "application/json"},
    )
    assert resp.status in (400, 403), await resp.text()  # 403: setup is already done
    assert (await clinic.client.get("/api/settings/", headers=clinic.headers(Role.FORM))).ok
    await clinic.client.close()
    again = await start_clinic(tokens=clinic.tokens)  # and the box still starts
    assert (await again.client.get("/api/queue/", headers=again.headers(Role.FORM))).ok


@pytest.mark.parametrize(
    "body",
    [
        b'{"fname": "\xed\xa0\x80"}',  # a surrogate written out in UTF-8's pattern
        b'{"fname": "Jos\xe9"}',  # Latin-1
        '{"fname": "Ana"}'.encode("utf-16"),
    ],
    ids=["encoded-surrogate", "latin-1", "utf-16"],
)
async def test_a_json_body_that_is_not_utf8_is_400_and_stores_nothing(
    clinic: Clinic, body: bytes
) -> None:
    resp = await clinic.client.post(
        "/api/patients/",
        data=body,
        headers={**clinic.headers(Role.FORM), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "The request body is not valid JSON text."
    queue = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.FORM))
    assert await queue.json() == []


async def test_a_json_body_may_start_with_a_utf8_bom(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/api/patients/",
        data=b"\xef\xbb\xbf" + '{"fname": "Zoë"}'.encode(),
        headers={**clinic.headers(Role.FORM), "Content-Type": "application/json"},
    )
    assert resp.status == 201 and (await resp.json())["fname"] == "Zoë"


async def test_a_bearer_token_with_bytes_that_are_not_utf8_is_401(clinic: Clinic) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", clinic.client.port)
    writer.write(
        b"GET /api/queue/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Connection: close\r\n\r\n"
    )
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.split()[1] == b"401"


@pytest.mark.parametrize("patient_id", [7.0, "7", 7])
async def test_a_patient_id_may_be_written_as_any_json_integer(
    clinic: Clinic, patient_id: object
) -> None:
    for n in range(7):
        await clinic.check_in(f"Patient {n}")
    resp = await clinic.client.post(
        "/api/doctors/",
        json={"action": "complete", "patient_id": patient_id},
        headers=clinic.headers(Role.DOCTOR),
    )
    assert resp.status == 200 and (await resp.json())["patient"]["id"] == 7


# --- changes to a session take effect at once, even for a token just used ----------------


async def test_a_deactivated_credentials_token_stops_working_at_once(clinic: Clinic) -> None:
    kiosk = clinic.headers(Role.FORM)
    # Just used: whatever the server remembers about this token, it remembers now.
    assert (await clinic.client.get("/api/queue/", headers=kiosk)).status == 200
    resp = await clinic.client.post(
        f"/api/credentials/{clinic.tokens[Role.FORM]}/deactivate/",
        headers=clinic.headers(Role.ADMIN),
    )
    assert resp.status == 200
    after = await clinic.client.get("/api/queue/", headers=kiosk)
    assert after.status == 401
    refused = await clinic.client.post("/api/patients/", json={"fname": "Ann Lee"}, headers=kiosk)
    assert refused.status == 401
    assert (
        await clinic.client.get("/api/queue/", headers=clinic.headers(Role.ADMIN))
    ).status == 200


async def test_the_old_access_token_stops_working_at_once_after_a_refresh(clinic: Clinic) -> None:
    login = await clinic.client.post(
        "/api/login/", json={"token": clinic.tokens[Role.DOCTOR], "password": PASSWORD}
    )
    tokens = await login.json()
    old = {"Authorization": f"Bearer {tokens['access']}"}
    assert (await clinic.client.get("/api/queue/", headers=old)).status == 200  # just used
    resp = await clinic.client.post("/api/token/refresh/", json={"refresh": tokens["refresh"]})
    assert resp.status == 200
    new = {"Authorization": f"Bearer {(await resp.json())['access']}"}
    assert (await clinic.client.get("/api/queue/", headers=old)).status == 401
    assert (await clinic.client.get("/api/queue/", headers=new)).status == 200
