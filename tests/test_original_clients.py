"""Clients written for the original CheckIn, against the real server: its header spelling
(RoniAuthorization), its open queue reads, its trailing-slash redirects and its auth errors."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import WSServerHandshakeError

from checkin_appliance.domain import Role
from tests.conftest import Clinic, next_message
from tests.serverproc import HOST, PASSWORD, Server, http_request, running

# Every spelling a client of the original (or of its docs) sends; aiohttp matches names
# case-insensitively, as the original does.
SPELLINGS = ("RoniAuthorization", "roniauthorization", "Roni-Authorization", "Authorization")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("original-clients")) as srv:
        yield srv


def call(
    server: Server,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, http.client.HTTPMessage]:
    """(status, parsed JSON or text, headers) of one plain request to the real server."""
    return http_request(method, f"{server.base_url}{path}", body, headers)


def login(server: Server, token: str, headers: dict[str, str] | None = None) -> tuple[str, Any]:
    status, body, answer = call(
        server, "POST", "/api/login/", {"token": token, "password": PASSWORD}, headers
    )
    assert status == 200, body
    return body["access"], answer.get("Set-Cookie")


# --- item 1: the three header spellings --------------------------------------------------


@pytest.mark.parametrize("header", SPELLINGS)
def test_an_original_client_checks_in_reads_and_calls_with_its_header(
    server: Server, header: str
) -> None:
    kiosk, _ = login(server, server.create_token("form", f"Kiosk {header}"))
    doctor, _ = login(server, server.create_token("doctor", f"Dr. {header}"))
    status, body, _ = call(
        server,
        "POST",
        "/api/patients/",
        {"fname": f"Pat {header}"},
        {header: f"Bearer {kiosk}"},
    )
    assert status == 201, body
    status, queue, _ = call(server, "GET", "/api/queue/", headers={header: f"Bearer {doctor}"})
    assert status == 200 and body["id"] in [item["patient"]["id"] for item in queue]
    status, called, _ = call(
        server, "POST", "/api/doctors/", {"action": "call_next"}, {header: f"Bearer {doctor}"}
    )
    assert status == 200 and called["patient"]["status"] == "completed", called


def test_a_header_wins_over_a_cookie_and_escapes_the_cookies_origin_rule(server: Server) -> None:
    """A client that kept our login cookie and sends its header: the header decides, and no
    Origin is asked of it (it was 403 "Cross-origin request refused." on every POST)."""
    kiosk, _ = login(server, server.create_token("form", "Kiosk with cookie"))
    doctor, _ = login(server, server.create_token("doctor", "Dr. with cookie"))
    call(
        server,
        "POST",
        "/api/patients/",
        {"fname": "Cookie Pat"},
        {"Authorization": f"Bearer {kiosk}"},
    )
    kept = {"Cookie": f"checkin_session={kiosk}"}
    status, body, _ = call(
        server,
        "POST",
        "/api/doctors/",
        {"action": "call_next"},
        {**kept, "RoniAuthorization": f"Bearer {doctor}"},
    )
    assert status == 200, body  # the doctor's header, not the kiosk's cookie
    # The cookie alone still needs our own origin for a state change.
    status, body, _ = call(server, "POST", "/api/patients/", {"fname": "X Y"}, kept)
    assert (status, body["code"]) == (403, "cross_origin")
    # A header that is present but bad is refused, even beside a good cookie.
    status, body, _ = call(
        server, "GET", "/api/queue/", headers={**kept, "RoniAuthorization": "Bearer nope"}
    )
    assert (status, body["code"]) == (401, "token_not_valid")


def test_api_login_sets_the_page_cookie_only_for_our_pages(server: Server) -> None:
    token = server.create_token("doctor", "Dr. Cookie")
    _, cookie = login(server, token)  # a script or an integrator
    assert cookie is None
    _, cookie = login(server, token, {"Sec-Fetch-Site": "same-origin"})
    assert cookie is not None and cookie.startswith("checkin_session=")
    _, cookie = login(server, token, {"Origin": f"http://{HOST}:{server.port}"})
    assert cookie is not None and cookie.startswith("checkin_session=")


@pytest.mark.parametrize("header", ["RoniAuthorization", "Roni-Authorization", "Authorization"])
async def test_the_feed_handshake_takes_every_spelling(clinic: Clinic, header: str) -> None:
    ws = await clinic.client.ws_connect(
        "/ws/queue/", headers={header: f"Bearer {clinic.access[Role.QUEUE]}"}
    )
    try:
        await clinic.check_in("John Doe")
        assert (await next_message(ws))["event"] == "PATIENT_ADDED"
    finally:
        await ws.close()
    with pytest.raises(WSServerHandshakeError) as refused:
        await clinic.client.ws_connect("/ws/queue/", headers={header: "Bearer nope"})
    assert refused.value.status == 401


# --- item 2: open reads follow anonymous_feed ---------------------------------------------


def test_open_queue_reads_follow_anonymous_feed(server: Server) -> None:
    admin, _ = login(server, server.create_token("admin", "Admin open reads"))
    as_admin = {"Authorization": f"Bearer {admin}"}
    kiosk, _ = login(server, server.create_token("form", "Kiosk open reads"))
    call(
        server,
        "POST",
        "/api/patients/",
        {"fname": "Open Reader"},
        {"RoniAuthorization": f"Bearer {kiosk}"},
    )
    status, body, _ = call(server, "GET", "/api/queue/")
    assert (status, body["code"]) == (401, "not_authenticated")
    try:
        status, _, _ = call(server, "PATCH", "/api/settings/", {"anonymous_feed": True}, as_admin)
        assert status == 200
        status, queue, _ = call(server, "GET", "/api/queue/")
        assert status == 200
        names = [item["patient"]["fname"] for item in queue]
        assert "Open R." in names and "Open Reader" not in names  # the display's view
        assert all(item["patient"]["image"] is None for item in queue)
        # What anonymous readers see follows the display settings.
        call(server, "PATCH", "/api/settings/", {"display_names": "full"}, as_admin)
        status, queue, _ = call(server, "GET", "/api/queue/")
        assert "Open Reader" in [item["patient"]["fname"] for item in queue]
        # A bad header is still refused, open reads or not.
        status, body, _ = call(
            server, "GET", "/api/queue/", headers={"RoniAuthorization": "Bearer nope"}
        )
        assert (status, body["code"]) == (401, "token_not_valid")
    finally:
        call(
            server,
            "PATCH",
            "/api/settings/",
            {"anonymous_feed": False, "display_names": "first_initial"},
            as_admin,
        )
    status, body, _ = call(server, "GET", "/api/queue/")
    assert (status, body["code"]) == (401, "not_authenticated")


# --- item 6: trailing slashes and the original's auth error keys -------------------------


def test_a_missing_trailing_slash_redirects_keeping_the_method(server: Server) -> None:
    for method in ("GET", "HEAD"):
        status, _, headers = call(server, method, "/api/queue?x=1&y=2")
        assert (status, headers["Location"]) == (301, "/api/queue/?x=1&y=2"), method
    # A POST that followed a 301 would come back as a GET without its body: 308 keeps both.
    for method, path in (("POST", "/api/patients"), ("POST", "/api/login"), ("PUT", "/api/queue")):
        status, _, headers = call(server, method, path, {"fname": "A B"})
        assert (status, headers["Location"]) == (308, path + "/"), (method, path)
    status, _, headers = call(server, "GET", "/api/credentials/12345678/deactivate")
    assert (status, headers["Location"]) == (301, "/api/credentials/12345678/deactivate/")
    status, _, headers = call(server, "GET", "/ws/queue")
    assert (status, headers["Location"]) == (301, "/ws/queue/")
    # Unknown paths stay 404 JSON; pages and files have no slashed form.
    for path in ("/api/nothing", "/api", "/kiosk/", "/api/openapi.json/", "/api/x%25y%3F"):
        status, body, _ = call(server, "GET", path)
        assert (status, body["code"]) == (404, "not_found"), path
    status, _, _ = call(server, "GET", "/api/openapi.json")
    assert status == 200


def test_a_bad_token_answers_with_the_originals_keys_and_ours(server: Server) -> None:
    """The original (simplejwt) says code token_not_valid and a messages list; we add our
    detail text and stable code in the same body."""
    for headers in ({"RoniAuthorization": "Bearer nope"}, {"Authorization": "Bearer a.b.c"}):
        status, body, _ = call(server, "GET", "/api/patients/", headers=headers)
        assert status == 401
        assert body["code"] == "token_not_valid" and body["detail"]
        (message,) = body["messages"]
        assert message["token_class"] == "AccessToken" and message["token_type"] == "access"
        assert message["message"]
    # No credentials at all: the original has no messages there, nor do we.
    status, body, _ = call(server, "GET", "/api/patients/")
    assert (status, body["code"]) == (401, "not_authenticated") and "messages" not in body


# The original's answers to malformed headers (original-intake.md §3): another scheme counts
# as no header at all; `Bearer` must be followed by exactly one token.
MALFORMED_HEADERS = [
    ("JWT abc", 401, "not_authenticated"),
    ("abc", 401, "not_authenticated"),
    ("Basic dXNlcjpwYXNz", 401, "not_authenticated"),
    ("Bearer", 401, "bad_authorization_header"),
    ("Bearer a b", 401, "bad_authorization_header"),
    ("Bearer nope", 401, "token_not_valid"),
]


@pytest.mark.parametrize(("value", "status", "code"), MALFORMED_HEADERS)
def test_every_401_names_its_scheme_and_malformed_headers_answer_as_the_original(
    server: Server, value: str, status: int, code: str
) -> None:
    answer_status, body, headers = call(
        server, "GET", "/api/patients/", headers={"RoniAuthorization": value}
    )
    assert (answer_status, body["code"]) == (status, code)
    assert headers["WWW-Authenticate"] == 'Bearer realm="api"'
    if code == "bad_authorization_header":
        assert body["detail"] == "Authorization header must contain two space-delimited values"


def test_a_header_of_another_scheme_leaves_the_cookie_and_open_reads_alone(server: Server) -> None:
    """A proxy's Basic header (or a bare token) is not ours: the queue stays an open read
    while anonymous_feed is on, and the page cookie still signs the request in."""
    admin, _ = login(server, server.create_token("admin", "Admin schemes"))
    as_admin = {"Authorization": f"Bearer {admin}"}
    status, _, _ = call(server, "PATCH", "/api/settings/", {"anonymous_feed": True}, as_admin)
    assert status == 200
    try:
        status, body, _ = call(server, "GET", "/api/queue/", headers={"Authorization": "JWT x"})
        assert status == 200 and isinstance(body, list)
    finally:
        call(server, "PATCH", "/api/settings/", {"anonymous_feed": False}, as_admin)
    doctor, _ = login(server, server.create_token("doctor", "Doctor schemes"))
    status, body, _ = call(
        server,
        "GET",
        "/api/doctors/",
        headers={"Authorization": "Basic dXNlcjpwYXNz", "Cookie": f"checkin_session={doctor}"},
    )
    assert status == 200, body
    # A 403 is not a 401: no WWW-Authenticate there.
    kiosk, _ = login(server, server.create_token("form", "Kiosk schemes"))
    status, _, headers = call(
        server, "GET", "/api/doctors/", headers={"RoniAuthorization": f"Bearer {kiosk}"}
    )
    assert status == 403 and "WWW-Authenticate" not in headers
