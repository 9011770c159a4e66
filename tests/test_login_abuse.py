"""Login abuse against the real server: memory pinned by failed logins, the throttle's reset,
and the throttle as a weapon (issue 13, items 4-6). Other addresses come from the loopback
range: a client socket bound to 127.0.0.2, 127.0.0.3, … reaches the server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import DummyCookieJar

from checkin_appliance import errors
from checkin_appliance.access import LoginThrottle
from checkin_appliance.app import create_app
from checkin_appliance.config import Config
from checkin_appliance.domain import InvalidInput, Role
from checkin_appliance.web.keys import ACCESS
from tests.conftest import Clinic
from tests.serverproc import HOST, PASSWORD, Server, http_json, running

TOKEN_SIZE = 1_000_000  # under the 1 MiB body limit with the JSON around it
MB = 1024 * 1024


def post_login(
    server: Server, token: Any, password: str, source: str = HOST, timeout: float = 30
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST /api/login/ from `source` (a loopback address); (status, body, headers)."""
    conn = http.client.HTTPConnection(
        HOST, server.port, timeout=timeout, source_address=(source, 0)
    )
    try:
        body = json.dumps({"token": token, "password": password})
        conn.request("POST", "/api/login/", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw), dict(response.getheaders())
    finally:
        conn.close()


def rss_bytes(server: Server) -> int:
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def big_token(n: int) -> str:
    """A different 1 MB "token" each time (as an attacker would send)."""
    return f"{n:06d}".ljust(TOKEN_SIZE, "9")


def source(n: int) -> str:
    return f"127.0.0.{n + 2}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(tmp_path) as srv:
        yield srv


# --- item 4: what a failed login keeps --------------------------------------------------


def test_huge_tokens_are_400_and_pin_no_memory(server: Server) -> None:
    """60 failures with 1 MB tokens (from 12 addresses), then 5 from each of 20 addresses:
    each is refused at once, and the server's memory stays where it was."""
    post_login(server, "12345678", "warm up the path")  # imports and first allocations
    before = rss_bytes(server)
    attempts = [source(n % 12) for n in range(60)] + [source(n // 5) for n in range(100)]
    for n, address in enumerate(attempts):
        status, body, _ = post_login(server, big_token(n), "x" * 9, address)
        assert (status, body["code"]) == (400, "token_invalid"), body
    grown = rss_bytes(server) - before
    assert grown < 8 * MB, f"RSS grew by {grown / MB:.1f} MB"
    # Nothing was counted against those addresses: the right password still works there.
    token = server.create_token("form", "Kiosk")
    assert post_login(server, token, PASSWORD, source(0))[0] == 200


@pytest.mark.parametrize("token", [12345678, 12345678.0, " 12345678 "])
def test_an_8_digit_number_or_padded_text_is_still_a_token(server: Server, token: Any) -> None:
    """A JSON number with a zero fraction (12345678.0) is that integer, as JSON Schema says."""
    real = server.create_token("form", "Kiosk")
    typed = type(token)(int(real)) if isinstance(token, int | float) else f" {real} "
    status, body, _ = post_login(server, typed, PASSWORD)
    assert status == 200, body


FULLWIDTH_DIGITS = "".join(chr(0xFF10 + d) for d in range(1, 9))  # isdigit(), but not ours


@pytest.mark.parametrize(
    "token", ["1234567", "123456789", "1234567a", FULLWIDTH_DIGITS, 1234567, 1.5, [1]]
)
def test_tokens_that_are_not_8_digits_are_400(server: Server, token: Any) -> None:
    status, body, _ = post_login(server, token, "x" * 9)
    assert (status, body["code"]) == (400, "token_invalid"), body


def test_the_throttle_table_is_bounded_by_entries_and_bytes() -> None:
    throttle = LoginThrottle(max_entries=1000, max_bytes=100_000)
    now = time.monotonic()
    for n in range(20_000):  # a spray of addresses and tokens, each failing once
        throttle.failed(str(10_000_000 + n), f"fd00::{n:x}", now)
    assert len(throttle) <= 1000
    assert throttle.size_bytes <= 100_000
    # Locked entries are kept over unlocked ones while there is room to choose.
    for _ in range(5):
        throttle.failed("12345678", "attacker", now)
    for n in range(500):
        throttle.failed("87654321", f"10.0.{n // 250}.{n % 250}", now)
    assert throttle.retry_after("12345678", "attacker", now) > 0
    assert throttle.size_bytes == sum(  # the running count is the real one
        len(key) + throttle.ENTRY_OVERHEAD for key in throttle._by_key
    )


# --- item 5: a success resets only its own counter -------------------------------------


def test_signing_in_with_one_token_does_not_reset_the_guesses_at_another(server: Server) -> None:
    """A kiosk's credential in hand, an attacker sprays a guessed password over many tokens
    from the kiosk's address, signing in with the kiosk between guesses: the address still
    runs out of tries."""
    kiosk = server.create_token("form", "Kiosk")
    guessed = [server.create_token("doctor", "Dr. Lee"), server.create_token("admin", "Boss")]
    guessed += [str(20_000_000 + n) for n in range(10)]  # and tokens that may exist
    attacker = source(0)
    statuses = []
    for round_ in range(3):
        for token in guessed[round_ * 4 : round_ * 4 + 4]:
            statuses.append(post_login(server, token, "clinic2026", attacker)[0])
        assert post_login(server, kiosk, PASSWORD, attacker)[0] in (200, 429)
    assert statuses[:5] == [401] * 5, statuses
    assert set(statuses[5:]) == {429}, statuses


# --- item 6: nobody can lock a token out for everyone ---------------------------------------


def test_guessing_a_token_from_one_device_does_not_lock_out_the_others(server: Server) -> None:
    doctor = server.create_token("doctor", "Dr. Lee")
    own_pc, new_pc, attacker = source(50), source(60), source(0)
    assert post_login(server, doctor, PASSWORD, own_pc)[0] == 200  # the doctor's PC is known
    statuses = [post_login(server, doctor, "guess 1234", attacker)[0] for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    status, _, headers = post_login(server, doctor, PASSWORD, attacker)
    assert status == 429 and int(headers["Retry-After"]) >= 1  # the guesser stays locked
    started = time.monotonic()
    assert post_login(server, doctor, PASSWORD, own_pc)[0] == 200
    assert time.monotonic() - started < 0.5  # a known device is not held
    started = time.monotonic()
    assert post_login(server, doctor, PASSWORD, new_pc)[0] == 200
    assert time.monotonic() - started >= 0.5  # another device is slowed down, not refused


def test_the_slowdown_grows_with_the_failures_and_is_capped() -> None:
    throttle = LoginThrottle(allowed=5, base_delay=0.5, max_delay=10.0)
    now = 1000.0
    delays = []
    for n in range(12):
        throttle.failed("12345678", f"10.0.0.{n}", now)  # one failure each from many places
        delays.append(throttle.delay("12345678", "10.0.0.200", now))
    assert delays[:4] == [0.0] * 4
    assert delays[4:9] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert set(delays[9:]) == {10.0}
    assert throttle.retry_after("12345678", "10.0.0.200", now) == 0  # never a lock for it
    throttle.succeeded("12345678", "10.0.0.200")
    assert throttle.delay("12345678", "10.0.0.200", now) == 0.0  # known from now on
    # Quiet for the longest lock: everything is forgotten.
    later = now + throttle.max_lock + 1
    assert throttle.delay("12345678", "10.0.0.201", later) == 0.0
    assert throttle.retry_after("12345678", "10.0.0.1", later) == 0


# --- item 24: refresh tokens rotate, and a reused one ends the session --------------------


async def test_a_reused_refresh_token_ends_the_session_and_its_feeds(server: Server) -> None:
    token = server.create_token("queue", "TV")
    status, tokens = http_json(
        "POST", f"{server.base_url}/api/login/", {"token": token, "password": PASSWORD}
    )
    assert status == 200
    stolen = tokens["refresh"]
    # The rightful client refreshes a few times: each answer brings the next refresh token.
    current = stolen
    for _ in range(3):
        status, renewed = refresh(server, current)
        assert status == 200 and set(renewed) == {"access", "refresh"}, renewed
        assert renewed["refresh"] != current
        current, access = renewed["refresh"], renewed["access"]
    async with aiohttp.ClientSession() as http:
        feed = await http.ws_connect(f"{server.ws_url}?token={access}")
        try:
            # The thief presents the copy it took at the start: the session ends.
            status, body = await asyncio.to_thread(refresh, server, stolen)
            assert (status, body["code"]) == (401, "refresh_reused"), body
            closed = await feed.receive(timeout=5)
            assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 4403)
        finally:
            await feed.close()
    # Neither holder gets in any more: not with the access token, nor with the newest refresh.
    status, body = http_json(
        "GET", f"{server.base_url}/api/queue/", headers={"Authorization": f"Bearer {access}"}
    )
    assert (status, body["code"]) == (401, "token_not_valid")
    assert refresh(server, current)[0] == 401
    assert refresh(server, "never-issued")[1]["code"] == "refresh_not_valid"


def refresh(server: Server, token: str) -> tuple[int, Any]:
    return http_json("POST", f"{server.base_url}/api/token/refresh/", {"refresh": token})


# --- item 10: no login CSRF through the API --------------------------------------------------


def raw_login(
    server: Server, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any], str | None]:
    """(status, body, Set-Cookie) of a POST /api/login/ sent exactly as given."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        conn.request("POST", "/api/login/", body, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response.getheader("Set-Cookie")
    finally:
        conn.close()


def test_a_form_on_another_site_cannot_sign_the_browser_in(server: Server) -> None:
    """What a page on any site can make the clinic's browser send, without a preflight."""
    token = server.create_token("admin", "Attacker's own", PASSWORD)
    form = f"token={token}&password={PASSWORD.replace(' ', '+')}".encode()
    # enctype="text/plain": the field name and value join into JSON that we would read.
    plain = json.dumps({"token": token, "password": PASSWORD, "x": "="}).encode()
    cross_site = [
        (
            form,
            {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"},
        ),
        (form, {"Content-Type": "application/x-www-form-urlencoded", "Origin": "null"}),
        (plain, {"Content-Type": "text/plain", "Origin": "http://evil.example"}),
        (plain, {"Content-Type": "text/plain", "Sec-Fetch-Site": "same-site"}),
    ]
    for body, headers in cross_site:
        status, answer, cookie = raw_login(server, body, headers)
        assert (status, answer.get("code"), cookie) == (403, "cross_origin", None), headers
    # Our own origin, and scripts (which send neither header), sign in as before; only our
    # own pages get the page cookie (issue 14: a script's kept cookie must never ride along).
    own = {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"}
    status, answer, cookie = raw_login(server, form, own)
    assert status == 200 and cookie is not None and cookie.startswith("checkin_session=")
    script = {"Content-Type": "application/json"}
    status, answer, cookie = raw_login(server, plain, script)
    assert status == 200 and answer["role"] == "admin" and cookie is None
    status, _, _ = raw_login(server, form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200


# --- item 20: weak passwords --------------------------------------------------------------

WEAK_FOR_EVERYONE = [
    "12345678",
    "password",
    "clinic2026",
    "Sunrise Clinic 1",  # the clinic's name (set below)
    "aaaaaaaaaaaa",  # repeated
    "abcdefghijkl",  # sequential
    "qwertyuiop12",  # a keyboard row
    "P@ssw0rd2026",  # l33t spelling of a common one
]


def test_common_and_guessable_passwords_are_refused(server: Server) -> None:
    """Through the API and the CLI; an admin needs a longer and stronger one."""
    admin = server.create_token("admin", "Boss")
    headers = {"Authorization": f"Bearer {server.login(admin)}"}
    base = server.base_url
    status, _ = http_json(
        "PATCH", f"{base}/api/settings/", {"clinic_name": "Sunrise Clinic"}, headers
    )
    assert status == 200

    def create(role: str, password: str) -> tuple[int, Any]:
        body = {"role": role, "label": "Dr. Lee", "password": password}
        return http_json("POST", f"{base}/api/credentials/", body, headers)

    for password in WEAK_FOR_EVERYONE:
        for role in ("form", "doctor", "admin"):
            status, body = create(role, password)
            assert status == 400, (role, password, body)
            expected = {"password_too_weak"}
            if role == "admin" and len(password) < 12:
                expected = {"admin_password_too_short"}
            assert body["code"] in expected, (role, password, body)
            assert password == "password" or password not in json.dumps(body)  # not echoed
    # Stricter for an admin: fine for a kiosk, not for the key to everything.
    assert create("form", "s3cret pass")[0] == 201
    assert create("admin", "s3cret pass")[1]["code"] == "admin_password_too_short"
    assert create("form", "blue elephant")[0] == 201  # two common words: enough online
    assert create("admin", "blue elephant")[1]["code"] == "password_too_weak"
    assert create("admin", "violet kettle harbour")[0] == 201
    cli = server.cli(
        "token",
        "create",
        "--role",
        "doctor",
        "--label",
        "Dr. Kim",
        "--password-stdin",
        stdin="clinic2026\n",
    )
    assert cli.returncode == 2 and "too easy to guess" in cli.stderr


async def test_the_token_itself_and_its_label_are_refused(clinic: Clinic) -> None:
    access = clinic.app[ACCESS]
    for password, context in [
        ("48213377", ["48213377"]),
        ("4821337748213377", ["48213377"]),
        ("Front desk kiosk", ["Front desk kiosk"]),
    ]:
        with pytest.raises(InvalidInput) as refused:
            await access.check_password(password, Role.FORM, *context)
        assert refused.value.code is errors.PASSWORD_TOO_WEAK


async def test_the_setup_page_explains_a_weak_password(aiohttp_client: Any, config: Config) -> None:
    client = await aiohttp_client(create_app(config), cookie_jar=DummyCookieJar())
    code = client.app[ACCESS].setup_code
    ours = {"Origin": f"http://{client.host}:{client.port}"}
    for password, text in [
        ("password1234", "too easy to guess"),
        ("clinic2026", "at least 12 characters"),
    ]:
        fields = {"code": code, "password": password, "confirm": password}
        resp = await client.post("/setup", data=fields, headers=ours)
        assert resp.status == 400
        assert text in await resp.text()
    strong = "violet kettle harbour"
    done = await client.post(
        "/setup", data={"code": code, "password": strong, "confirm": strong}, headers=ours
    )
    assert done.status == 200


async def test_the_sign_in_page_shows_a_malformed_token_as_a_failed_sign_in(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/login",
        data={"token": "not a token", "password": PASSWORD},
        headers={"Origin": f"http://{clinic.client.host}:{clinic.client.port}"},
        allow_redirects=False,
    )
    assert resp.status == 400
    assert "do not match an active credential" in await resp.text()
