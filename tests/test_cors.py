"""CORS for the configured origins: preflights answered, responses readable by those origins
with a bearer header, never with our cookie (still 403 cross_origin); nothing by default."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from checkin_appliance.config import Config
from checkin_appliance.domain import Role
from checkin_appliance.web.auth import SESSION_COOKIE
from tests.conftest import PASSWORD, Clinic, StartClinic, next_message
from tests.serverproc import HOST, Server, cli_command, free_port, launched

FRONT_DESK = "https://frontdesk.clinic.lan"
STRANGER = "https://evil.example"
BEARER_HEADERS = ("Authorization", "Roni-Authorization", "RoniAuthorization")


def preflight_headers(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }


def cors_headers(headers: object) -> dict[str, str]:
    return {
        k.lower(): v
        for k, v in headers.items()  # type: ignore[attr-defined]
        if k.lower().startswith("access-control-")
    }


def assert_preflight_allowed(status: int, headers: object, methods: set[str]) -> None:
    got = cors_headers(headers)
    assert status == 204, (status, got)
    assert got["access-control-allow-origin"] == FRONT_DESK
    assert {m.strip() for m in got["access-control-allow-methods"].split(",")} >= methods
    allowed = {h.strip().lower() for h in got["access-control-allow-headers"].split(",")}
    assert allowed >= {h.lower() for h in (*BEARER_HEADERS, "Content-Type", "Idempotency-Key")}
    assert int(got["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in got
    assert "Origin" in headers.getall("Vary")[0]  # type: ignore[attr-defined]


@pytest.fixture
async def cors_clinic(start_clinic: StartClinic, config: Config) -> Clinic:
    return await start_clinic(dataclasses.replace(config, cors_origins=(FRONT_DESK,)))


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/patients/", {"GET", "POST"}),
        ("/api/doctors/", {"GET", "POST"}),
        ("/api/login/", {"POST"}),
        ("/api/settings/", {"GET", "PATCH"}),
        ("/api/queue/", {"GET"}),
        ("/ws/queue/", {"GET"}),
    ],
)
async def test_preflight_from_an_allowed_origin(
    cors_clinic: Clinic, path: str, methods: set[str]
) -> None:
    method = sorted(methods)[-1]
    resp = await cors_clinic.client.options(path, headers=preflight_headers(FRONT_DESK, method))
    assert_preflight_allowed(resp.status, resp.headers, methods)
    # The security headers still go on it.
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_preflight_from_another_origin_gets_no_cors(cors_clinic: Clinic) -> None:
    resp = await cors_clinic.client.options("/api/patients/", headers=preflight_headers(STRANGER))
    assert resp.status == 405  # as without CORS: our JSON refusal, and nothing to allow
    assert (await resp.json())["code"] == "method_not_allowed"
    assert cors_headers(resp.headers) == {}


async def test_no_cors_at_all_by_default(clinic: Clinic) -> None:
    resp = await clinic.client.options("/api/patients/", headers=preflight_headers(FRONT_DESK))
    assert resp.status == 405
    assert (await resp.json())["code"] == "method_not_allowed"
    assert cors_headers(resp.headers) == {}
    resp = await clinic.client.get(
        "/api/queue/", headers={**clinic.headers(Role.QUEUE), "Origin": FRONT_DESK}
    )
    assert resp.status == 200 and cors_headers(resp.headers) == {}


async def test_the_host_check_still_comes_first(cors_clinic: Clinic) -> None:
    resp = await cors_clinic.client.options(
        "/api/patients/", headers={**preflight_headers(FRONT_DESK), "Host": "evil.test"}
    )
    assert resp.status == 421
    assert "access-control-allow-methods" not in cors_headers(resp.headers)


async def test_an_unknown_path_is_not_preflighted(cors_clinic: Clinic) -> None:
    resp = await cors_clinic.client.options("/api/nowhere/", headers=preflight_headers(FRONT_DESK))
    assert resp.status == 404


async def test_bearer_requests_from_an_allowed_origin_are_readable(cors_clinic: Clinic) -> None:
    client, origin = cors_clinic.client, {"Origin": FRONT_DESK, "Sec-Fetch-Site": "cross-site"}
    resp = await client.post(
        "/api/patients/",
        json={"fname": "Ada Lovelace"},
        headers={**cors_clinic.headers(Role.FORM), **origin, "Idempotency-Key": "k-1"},
    )
    assert resp.status == 201, await resp.text()
    got = cors_headers(resp.headers)
    assert got["access-control-allow-origin"] == FRONT_DESK
    exposed = {h.strip().lower() for h in got["access-control-expose-headers"].split(",")}
    assert exposed >= {"retry-after", "idempotent-replayed"}
    assert "access-control-allow-credentials" not in got
    assert "Origin" in resp.headers["Vary"]

    resp = await client.get("/api/queue/", headers={**cors_clinic.headers(Role.QUEUE), **origin})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == FRONT_DESK
    # Errors are readable too, so the app can show what went wrong.
    resp = await client.get("/api/queue/", headers=origin)
    assert resp.status == 401
    assert resp.headers["Access-Control-Allow-Origin"] == FRONT_DESK
    # Another origin's answer carries no permission to read it.
    resp = await client.get(
        "/api/queue/", headers={**cors_clinic.headers(Role.QUEUE), "Origin": STRANGER}
    )
    assert resp.status == 200 and cors_headers(resp.headers) == {}
    # Pages are not for other origins.
    resp = await client.get("/healthz", headers=origin)
    assert cors_headers(resp.headers) == {}


async def test_the_feed_opens_for_an_allowed_origin_with_a_token(cors_clinic: Clinic) -> None:
    access = cors_clinic.access[Role.QUEUE]
    ws = await cors_clinic.client.ws_connect(
        f"/ws/queue/?token={access}", headers={"Origin": FRONT_DESK}
    )
    try:
        await cors_clinic.check_in("Ada Lovelace")
        assert (await next_message(ws))["event"] == "PATIENT_ADDED"
    finally:
        await ws.close()
    # With only the cookie it is still refused, whatever the list says.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await cors_clinic.client.ws_connect(
            "/ws/queue/", headers={"Origin": FRONT_DESK, "Cookie": f"{SESSION_COOKIE}={access}"}
        )
    assert refused.value.status == 403


async def test_a_cookie_from_an_allowed_origin_is_still_refused(cors_clinic: Clinic) -> None:
    cookie = {"Cookie": f"{SESSION_COOKIE}={cors_clinic.access[Role.FORM]}"}
    for browser in ({"Sec-Fetch-Site": "cross-site"}, {}):
        resp = await cors_clinic.client.post(
            "/api/patients/",
            json={"fname": "Ada Lovelace"},
            headers={**cookie, "Origin": FRONT_DESK, **browser},
        )
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["code"] == "cross_origin"
        assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_an_app_on_an_allowed_origin_can_sign_in(cors_clinic: Clinic) -> None:
    body = {"token": cors_clinic.tokens[Role.FORM], "password": PASSWORD}
    for site in ("cross-site", "same-site"):  # frontdesk.clinic.lan beside checkin.clinic.lan
        resp = await cors_clinic.client.post(
            "/api/login/", json=body, headers={"Origin": FRONT_DESK, "Sec-Fetch-Site": site}
        )
        assert resp.status == 200, await resp.text()
        assert resp.headers["Access-Control-Allow-Origin"] == FRONT_DESK
    # Any other site is still refused: its form must not sign the clinic's browser in.
    resp = await cors_clinic.client.post(
        "/api/login/", json=body, headers={"Origin": STRANGER, "Sec-Fetch-Site": "cross-site"}
    )
    assert resp.status == 403
    assert (await resp.json())["code"] == "cross_origin"


# --- the real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("cors")
    config_file = workdir / "config.toml"
    config_file.write_text(f'cors_origins = ["{FRONT_DESK}"]\n')
    data_dir, port = workdir / "data", free_port()
    command = cli_command(
        "serve",
        *("--config", str(config_file), "--host", HOST, "--port", str(port)),
        *("--data-dir", str(data_dir)),
    )
    with launched(workdir, command, port, data_dir) as srv:
        yield srv


async def test_real_server_answers_the_front_desk_app(server: Server, tmp_path: Path) -> None:
    token = server.create_token("form", "Front desk")
    origin = {"Origin": FRONT_DESK, "Sec-Fetch-Site": "cross-site"}
    async with aiohttp.ClientSession(base_url=server.base_url) as http:
        async with http.options("/api/login/", headers=preflight_headers(FRONT_DESK)) as resp:
            assert_preflight_allowed(resp.status, resp.headers, {"POST"})
        login = {"token": token, "password": PASSWORD}
        async with http.post("/api/login/", json=login, headers=origin) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == FRONT_DESK
            access = (await resp.json())["access"]
        async with http.options("/api/patients/", headers=preflight_headers(FRONT_DESK)) as resp:
            assert_preflight_allowed(resp.status, resp.headers, {"GET", "POST"})
        async with http.options("/api/patients/", headers=preflight_headers(STRANGER)) as resp:
            assert resp.status == 405 and cors_headers(resp.headers) == {}

        bearer = {"Authorization": f"Bearer {access}"}
        async with http.get("/api/patients/", headers={**bearer, **origin}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == FRONT_DESK
        body = {"fname": "Ada Lovelace"}
        async with http.post("/api/patients/", json=body, headers={**bearer, **origin}) as resp:
            assert resp.status == 201
            assert resp.headers["Access-Control-Allow-Origin"] == FRONT_DESK
            assert "Access-Control-Allow-Credentials" not in resp.headers

        cookie = {"Cookie": f"{SESSION_COOKIE}={access}"}
        async with http.post("/api/patients/", json=body, headers={**cookie, **origin}) as resp:
            assert resp.status == 403
            assert (await resp.json())["code"] == "cross_origin"
