"""The `checkin-appliance` command line, run as a subprocess against a real running server.

`python -m checkin_appliance serve` runs on a free loopback port; the other commands work on
the same data directory while it runs, and their effects are checked over HTTP and on
open WebSockets. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from checkin_appliance import __version__
from tests.serverproc import (
    HOST,
    PASSWORD,
    SETUP_CODE,
    TOKEN_LINE,
    Server,
    free_port,
    http_json,
    run_cli,
    running,
)

TIMEOUT = 5.0  # seconds for one event or one HTTP answer
PICKUP_TIMEOUT = 5.0  # the server looks for CLI changes every second
CLOSE_DEADLINE = 3.0  # a deactivated credential's feed must be closed by then
CLOSE_ACCESS_REVOKED = 4403
SETUP_COMPLETE = {"error": "Setup is already complete.", "code": "setup_complete"}
BAD_LOGIN = {"error": "Invalid credentials or inactive token.", "code": "bad_login"}
DEFAULT_SETTINGS = {
    "clinic_name": "Clinic",
    "language": "en",
    "display_names": "first_initial",
    "display_photos": False,
    "anonymous_feed": False,
    "announce_voice": False,
    "intake_form": {"preset": "name"},
    "time_zone": "UTC",
    "priority_question": False,
    "undo_seconds": 120,
    "end_of_day": None,
    "no_show_minutes": None,
    "status_link_base": None,
    "photo_retention_days": 0,
    "name_retention_days": 30,
    "audit_retention_days": 2190,
}


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that only add credentials of their own."""
    with running(tmp_path_factory.mktemp("cli")) as srv:
        yield srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server (first start, default settings) for tests that change global state."""
    with running(tmp_path) as srv:
        yield srv


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def login_status(server: Server, token: str, password: str = PASSWORD) -> tuple[int, Any]:
    body = {"token": token, "password": password}
    return http_json("POST", f"{server.base_url}/api/login/", body)


def token_line(listing: str, token: str) -> str:
    """The one line of a `token list` output that shows `token`."""
    lines = [line for line in listing.splitlines() if line.split(maxsplit=1)[:1] == [token]]
    assert len(lines) == 1, listing
    return lines[0]


def database_rows(server: Server, sql: str) -> list[tuple[Any, ...]]:
    """Reads the server's database directly (read-only), to check what a command stored."""
    path = server.data_dir / "checkin.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


async def check_in(server: Server, access: str, fname: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.base_url}/api/patients/", json={"fname": fname}, headers=bearer(access)
        ) as resp,
    ):
        body = await resp.json()
        assert resp.status == 201, body
        return body


async def next_event(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return json.loads(await ws.recv())


async def closed_with(ws: ClientConnection, timeout: float) -> int | None:
    """The close code the server sent, waiting at most `timeout` seconds."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return closed.value.rcvd.code if closed.value.rcvd else None


async def connect_when_allowed(url: str) -> ClientConnection:
    """Retries a refused (401) handshake until the server has picked up a settings change."""
    async with asyncio.timeout(PICKUP_TIMEOUT):
        while True:
            try:
                return await websockets.connect(url)
            except InvalidStatus as exc:
                assert exc.response.status_code == 401, exc
            await asyncio.sleep(0.1)


async def refused_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(TIMEOUT), websockets.connect(url):
            pass
    return refused.value.response.status_code


# --- help and version ---------------------------------------------------------------------


HELP_CASES = [
    ([], ["serve", "token", "settings", "--version"]),
    (["serve"], ["--host", "--port", "--data-dir", "--config", "--log-level", "setup code"]),
    (["token"], ["create", "list", "deactivate"]),
    (
        ["token", "create"],
        ["--role", "--label", "--room", "--password", "--password-stdin", "--data-dir"],
    ),
    (["token", "list"], ["--data-dir", "--config"]),
    (["token", "deactivate"], ["token", "--data-dir", "--config"]),
    (["settings"], ["show", "set", "preset"]),
    (["settings", "preset"], ["original", "private", "cors_origins", "--data-dir"]),
    (["settings", "show"], ["--data-dir", "--config"]),
    (
        ["settings", "set"],
        ["key", "value", "anonymous_feed", "display_names", "intake_form", "--data-dir"],
    ),
    (["audit"], ["verify", "show"]),
    (["audit", "verify"], ["--data-dir", "--config"]),
    (["audit", "show"], ["--limit", "--json", "--data-dir"]),
]


@pytest.mark.parametrize(
    ("command", "mentions"),
    HELP_CASES,
    ids=[" ".join(command) or "checkin-appliance" for command, _ in HELP_CASES],
)
def test_help_of_every_command(command: list[str], mentions: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: checkin-appliance"), result.stdout
    for word in mentions:
        assert word in result.stdout, f"{word!r} missing from `{' '.join(command)} --help`"


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(
        rf"checkin-appliance {re.escape(__version__)} \(aiohttp (\d+)\.(\d+)\.(\d+), "
        r"Pillow (\d+)\.(\d+)\.\d+, SQLite 3\.\d+\.\d+, Python 3\.\d+\.\d+, "
        r"uvloop \d+\.\d+\.\d+\)\n",
        result.stdout,
    )
    assert match, result.stdout
    aiohttp_version = tuple(int(part) for part in match.groups()[:3])
    pillow_version = tuple(int(part) for part in match.groups()[3:])
    assert aiohttp_version >= (3, 14, 2) and pillow_version >= (12, 3)


# --- token create / list --------------------------------------------------------------------


def test_token_create_prints_exactly_one_token_line(shared_server: Server) -> None:
    created = {}
    for role in ("form", "doctor", "queue", "admin"):
        result = shared_server.cli(
            "token",
            "create",
            "--role",
            role,
            "--label",
            f"{role} one",
            "--password-stdin",
            stdin=f"{PASSWORD}\n",
        )
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"\d{8}\n", result.stdout), repr(result.stdout)
        assert result.stderr == ""
        created[result.stdout.strip()] = role
    # --password instead of stdin, and a doctor's room.
    result = shared_server.cli(
        "token",
        "create",
        "--role",
        "doctor",
        "--label",
        "Dr. Lee",
        "--room",
        "Room 3",
        "--password",
        PASSWORD,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d{8}\n", result.stdout), repr(result.stdout)
    created[result.stdout.strip()] = "doctor"
    assert len(created) == 5

    # The running server accepts each new credential at once, with its role.
    for token, role in created.items():
        status, body = login_status(shared_server, token)
        assert status == 200, body
        assert body["role"] == role


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--role", "nurse", "--label", "X", "--password-stdin"], PASSWORD, "invalid choice"),
        (["--role", "form", "--label", "X", "--password-stdin"], "short", "at least 8 characters"),
        (["--role", "form", "--label", "X", "--password", "short"], None, "at least 8 characters"),
        (["--role", "form", "--label", "X", "--password-stdin"], "", "A password is required."),
        (["--role", "form", "--password-stdin"], PASSWORD, "--label"),
        (["--role", "form", "--label", "X"], None, "--password"),
    ],
    ids=["bad-role", "short-stdin", "short-flag", "empty-stdin", "no-label", "no-password"],
)
def test_token_create_refuses_bad_input(
    shared_server: Server, args: list[str], stdin: str | None, message: str
) -> None:
    count = "SELECT count(*) FROM credentials"
    before = database_rows(shared_server, count)
    line = None if stdin is None else (f"{stdin}\n" if stdin else "")
    result = shared_server.cli("token", "create", *args, stdin=line)
    assert result.returncode != 0
    assert result.stdout == ""
    assert message in result.stderr, result.stderr
    assert database_rows(shared_server, count) == before


@pytest.mark.parametrize("label", ["   ", "x" * 101], ids=["blank", "too-long"])
def test_token_create_refuses_a_label_the_api_would_refuse(
    shared_server: Server, label: str
) -> None:
    result = shared_server.cli(
        "token", "create", "--role", "form", "--label", label, "--password", PASSWORD
    )
    assert result.returncode != 0, f"created {result.stdout.strip()} with label {label!r}"
    assert "label" in result.stderr


def test_token_list_shows_tokens_roles_and_labels_but_no_secret(shared_server: Server) -> None:
    kiosk = shared_server.create_token("form", "Front desk kiosk")
    wall = shared_server.create_token("queue", "Waiting room TV")
    result = shared_server.cli(
        "token",
        "create",
        "--role",
        "doctor",
        "--label",
        "Dr. Amara Okafor",
        "--room",
        "Room 3",
        "--password",
        PASSWORD,
    )
    assert result.returncode == 0, result.stderr
    doctor = result.stdout.strip()

    listing = shared_server.cli("token", "list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[0].split() == ["TOKEN", "ROLE", "ACTIVE", "ROOM", "LABEL"]
    shown = listing.stdout
    assert re.fullmatch(rf"{kiosk} +form +yes +- +Front desk kiosk", token_line(shown, kiosk))
    assert re.fullmatch(rf"{wall} +queue +yes +- +Waiting room TV", token_line(shown, wall))
    doctor_line = token_line(shown, doctor)
    assert re.fullmatch(rf"{doctor} +doctor +yes +Room 3 +Dr\. Amara Okafor", doctor_line)

    # Neither the password nor anything of its stored hash is shown.
    stored = database_rows(shared_server, "SELECT password_hash FROM credentials")
    hashes = [password_hash for (password_hash,) in stored]
    assert hashes
    assert PASSWORD not in listing.stdout
    assert "scrypt" not in listing.stdout
    for password_hash in hashes:
        for part in password_hash.split("$")[-2:]:  # the salt and the digest
            assert part not in listing.stdout


ESCAPE_LABEL = "Kiosk\x1b]0;pwned\x07\x1b[2J"  # sets the terminal title, clears the screen


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--label", ESCAPE_LABEL),
        ("--label", "Kiosk\nfake 00000000 admin yes"),  # a forged row in the listing
        ("--label", "Kiosk \u202eksed tnorF"),  # right-to-left override
        ("--room", "Room\x1b[31m 3"),
    ],
)
def test_labels_and_rooms_with_control_characters_are_refused(
    shared_server: Server, option: str, value: str
) -> None:
    args = ["--label", "Dr. Okafor", "--room", "Room 3"]
    args[args.index(option) + 1] = value
    result = shared_server.cli("token", "create", "--role", "doctor", *args, "--password", PASSWORD)
    assert result.returncode != 0, f"created {result.stdout.strip()} with {value!r}"
    assert option[2:] in result.stderr and "\x1b" not in result.stderr
    admin = shared_server.login(shared_server.create_token("admin", "Admin for labels"))
    body = {"role": "doctor", "label": "Dr. Okafor", "room": "Room 3", "password": PASSWORD}
    body[option[2:]] = value
    status, answer = http_json(
        "POST", f"{shared_server.base_url}/api/credentials/", body, bearer(admin)
    )
    assert (status, answer["code"]) == (400, f"{option[2:]}_invalid_character"), answer


def test_token_list_escapes_control_characters_already_stored(shared_server: Server) -> None:
    """A label saved before they were refused (or written into the database) is shown with
    its control characters escaped: the listing never drives the admin's terminal."""
    token = shared_server.create_token("form", "Lobby kiosk")
    path = shared_server.data_dir / "checkin.db"
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db, db:
        db.execute(
            "UPDATE credentials SET label = ?, room = ? WHERE token = ?",
            (ESCAPE_LABEL + "\u202e", "R\x9b1", token),
        )
    listing = shared_server.cli("token", "list")
    assert listing.returncode == 0, listing.stderr
    line = token_line(listing.stdout, token)
    assert line.endswith(r"Kiosk\x1b]0;pwned\x07\x1b[2J\u202e"), line
    assert r"R\x9b1" in line
    assert not any(
        ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in listing.stdout if char != "\n"
    )
    assert "\u202e" not in listing.stdout


# --- token deactivate while the server runs -------------------------------------------------


async def test_token_deactivate_closes_its_feeds_and_ends_its_sessions(
    shared_server: Server,
) -> None:
    doomed = shared_server.create_token("queue", "Hall TV")
    kept = shared_server.create_token("queue", "Lobby TV")
    kiosk = shared_server.create_token("form", "Kiosk")
    doomed_access = shared_server.login(doomed)
    kept_access = shared_server.login(kept)
    kiosk_access = shared_server.login(kiosk)
    ws_url = shared_server.ws_url

    async with (
        websockets.connect(f"{ws_url}?token={doomed_access}") as doomed_ws,
        websockets.connect(f"{ws_url}?token={kept_access}") as kept_ws,
    ):
        result = await shared_server.cli_async("token", "deactivate", doomed)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"deactivated {doomed} (queue, Hall TV)\n"

        assert await closed_with(doomed_ws, CLOSE_DEADLINE) == CLOSE_ACCESS_REVOKED

        # Its access token is dead for REST too, and it can no longer log in.
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{shared_server.base_url}/api/queue/", headers=bearer(doomed_access)) as resp,
        ):
            assert resp.status == 401
            assert (await resp.json()) == {
                "detail": "Authentication credentials were invalid or expired.",
                "code": "token_not_valid",
                "messages": [  # the original's list too (issue 14)
                    {
                        "token_class": "AccessToken",
                        "token_type": "access",
                        "message": "Token is invalid or expired",
                    }
                ],
            }
        assert login_status(shared_server, doomed) == (401, BAD_LOGIN)
        assert await refused_status(f"{ws_url}?token={doomed_access}") == 401

        # Other credentials are untouched: the other display still gets every event.
        patient = await check_in(shared_server, kiosk_access, "Olga Berg")
        event = await next_event(kept_ws)
        assert event["event"] == "PATIENT_ADDED"
        assert event["patient"]["id"] == patient["id"]

    listing = shared_server.cli("token", "list").stdout
    assert re.match(rf"{doomed} +queue +no +- +Hall TV$", token_line(listing, doomed))
    assert re.match(rf"{kept} +queue +yes +- +Lobby TV$", token_line(listing, kept))


def test_token_deactivate_unknown_token_fails(shared_server: Server) -> None:
    result = shared_server.cli("token", "deactivate", "00000000")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "no credential with token 00000000" in result.stderr


# --- settings -------------------------------------------------------------------------------


async def test_settings_set_takes_effect_on_the_running_server(server: Server) -> None:
    kiosk_access = server.login(server.create_token("form", "Kiosk"))
    assert await refused_status(server.ws_url) == 401  # anonymous feed is off by default

    result = await server.cli_async("settings", "set", "anonymous_feed", "true")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {**DEFAULT_SETTINGS, "anonymous_feed": True}

    anonymous = await connect_when_allowed(server.ws_url)
    try:
        # A token-less wall display gets the reduced names of the default display_names.
        mary = await check_in(server, kiosk_access, "Mary Major")
        event = await next_event(anonymous)
        assert event["patient"] == {
            "id": mary["id"],
            "fname": "Mary M.",
            "status": "waiting",
            "image": None,
        }

        result = await server.cli_async("settings", "set", "display_names", "full")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["display_names"] == "full"
        async with asyncio.timeout(PICKUP_TIMEOUT):
            while True:
                status, body = http_json(
                    "GET", f"{server.base_url}/api/settings/", headers=bearer(kiosk_access)
                )
                assert status == 200, body
                if body["display_names"] == "full":
                    break
                await asyncio.sleep(0.1)
        nora = await check_in(server, kiosk_access, "Nora North")
        event = await next_event(anonymous)
        assert event["patient"]["id"] == nora["id"]
        assert event["patient"]["fname"] == "Nora North"

        shown = await server.cli_async("settings", "show")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == {
            **DEFAULT_SETTINGS,
            "anonymous_feed": True,
            "display_names": "full",
        }

        # Withdrawing anonymous access closes the token-less feed and refuses new ones.
        result = await server.cli_async("settings", "set", "anonymous_feed", "false")
        assert result.returncode == 0, result.stderr
        assert await closed_with(anonymous, PICKUP_TIMEOUT) == CLOSE_ACCESS_REVOKED
        assert await refused_status(server.ws_url) == 401
    finally:
        await anonymous.close()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("colour", "blue", "Unknown setting 'colour'."),
        ("anonymous_feed", "maybe", "anonymous_feed must be one of true, false."),
        ("anonymous_feed", "True", "anonymous_feed must be one of true, false."),
        ("display_names", "short", 'display_names must be one of "first_initial", "full".'),
        ("language", "fr", 'language must be one of "en", "es".'),
        ("clinic_name", "   ", "clinic_name must be 1-100 characters."),
        ("intake_form", "original", "intake_form is JSON"),
        ("intake_form", '{"preset": "everything"}', "intake_form: send"),
        ("intake_form", '{"preset": "custom", "fields": [{"key": "pin"}]}', "key is one of"),
    ],
)
def test_settings_set_refuses_bad_key_or_value(
    shared_server: Server, key: str, value: str, message: str
) -> None:
    stored = "SELECT key, value FROM settings ORDER BY key"
    before = database_rows(shared_server, stored)
    result = shared_server.cli("settings", "set", key, value)
    assert result.returncode != 0
    assert result.stdout == ""
    assert message in result.stderr, result.stderr
    assert database_rows(shared_server, stored) == before


async def test_settings_preset_opens_like_the_original_and_private_closes_again(
    server: Server,
) -> None:
    result = server.cli("settings", "preset", "original")
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "SSN" in result.stderr  # says what opens up
    opened = json.loads(result.stdout)
    assert opened["anonymous_feed"] is True and opened["display_photos"] is True
    assert opened["display_names"] == "full"
    assert opened["intake_form"] == {"preset": "original"}
    await anonymous_queue_reads(server, 200)  # open, as the original

    result = server.cli("settings", "preset", "private")
    assert result.returncode == 0 and "warning" not in result.stderr
    closed = json.loads(result.stdout)
    assert closed == {**opened, **{
        "anonymous_feed": False, "display_photos": False, "display_names": "first_initial",
        "intake_form": {"preset": "name"},
    }}  # fmt: skip
    await anonymous_queue_reads(server, 401)
    assert server.cli("settings", "preset", "everything").returncode == 2  # argparse refuses


async def anonymous_queue_reads(server: Server, status: int) -> None:
    """Waits until the running server answers GET /api/queue/ without credentials so (it
    picks a CLI change up within a second)."""
    async with asyncio.timeout(PICKUP_TIMEOUT):
        while (await asyncio.to_thread(http_json, "GET", f"{server.base_url}/api/queue/"))[
            0
        ] != status:
            await asyncio.sleep(0.1)


# --- serve: the one-time setup code ---------------------------------------------------------


def test_serve_prints_a_one_time_setup_code(server: Server, tmp_path: Path) -> None:
    code = server.wait_for_output(SETUP_CODE).group(1)
    assert code not in server.stderr(), "the setup code must be printed, never logged"
    setup_url = f"{server.base_url}/api/setup/"

    assert http_json("POST", setup_url, {"code": "AAAA-BBBB-CCCC", "password": PASSWORD}) == (
        403,
        {"error": "Invalid setup code.", "code": "setup_code_invalid"},
    )
    status, body = http_json("POST", setup_url, {"code": code, "password": PASSWORD})
    assert status == 201, body
    assert TOKEN_LINE.fullmatch(body["token"]), body
    assert body["role"] == "admin"
    status, login = login_status(server, body["token"])
    assert status == 200, login
    assert login["role"] == "admin"

    # Used once, it is gone: a second use (same or other password) is refused.
    for password in (PASSWORD, "another password"):
        status, again = http_json("POST", setup_url, {"code": code, "password": password})
        assert (status, again) == (403, SETUP_COMPLETE)

    # A restart with an administrator in the database prints no code at all.
    server.stop()
    with running(tmp_path / "restart", data_dir=server.data_dir) as restarted:
        restarted.wait_for_output(re.compile("serving on"))
        assert not SETUP_CODE.search(restarted.stdout()), restarted.stdout()
        status, body = http_json(
            "POST", f"{restarted.base_url}/api/setup/", {"code": code, "password": PASSWORD}
        )
        assert (status, body) == (403, SETUP_COMPLETE)


def test_serve_on_a_busy_port_fails_with_a_clear_message(
    shared_server: Server, tmp_path: Path
) -> None:
    port = str(shared_server.port)
    result = run_cli("serve", "--host", HOST, "--port", port, "--data-dir", str(tmp_path / "d"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert port in result.stderr and "in use" in result.stderr, result.stderr
    assert "ERROR" in result.stderr  # logged with its priority, not printed


def test_the_commands_and_the_services_below_the_web_load_no_aiohttp() -> None:
    """access.py, errors.py and reception.py speak no HTTP; only `serve` loads the web side."""
    probe = (
        "import sys, checkin_appliance.cli, checkin_appliance.access, checkin_appliance.errors; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_no_command_pays_for_the_dummy_password_hash_at_start() -> None:
    """It costs a 16 MiB scrypt; only a login with an unknown token needs it."""
    probe = (
        "import checkin_appliance.cli as cli, checkin_appliance.security as security; "
        "print(security.dummy_hash.cache_info().currsize)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "0"


def test_a_data_directory_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data directory should be")
    data_dir = blocker / "data"
    result = run_cli(
        "serve", "--host", HOST, "--port", str(free_port()), "--data-dir", str(data_dir)
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert f"cannot create the data directory {data_dir}" in result.stderr, result.stderr
    assert "ERROR" in result.stderr  # logged with its priority, not printed


def test_a_second_server_on_the_same_data_directory_refuses_to_start(
    shared_server: Server,
) -> None:
    result = run_cli(
        "serve",
        "--host",
        HOST,
        "--port",
        str(free_port()),
        "--data-dir",
        str(shared_server.data_dir),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "in use by another server" in result.stderr, result.stderr
    status, _ = http_json("GET", f"{shared_server.base_url}/healthz")
    assert status == 200  # the first one carries on
