"""Sign-in, first-run setup, role routing and the catalog: the pages' server side over HTTP."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import DummyCookieJar

from checkin_appliance import errors
from checkin_appliance.app import create_app
from checkin_appliance.config import Config
from checkin_appliance.domain import Role
from checkin_appliance.web.i18n import LANGUAGES, catalog
from checkin_appliance.web.keys import ACCESS
from tests.conftest import PASSWORD, Clinic

WEB = Path(__file__).resolve().parent.parent / "checkin_appliance" / "web"
DAY = 24 * 3600


def origin(clinic: Clinic) -> dict[str, str]:
    return {"Origin": f"http://{clinic.client.host}:{clinic.client.port}"}


def session_cookie(resp: Any) -> Any:
    return resp.cookies["checkin_session"]


async def page_login(clinic: Clinic, role: Role, next_page: str = "") -> Any:
    return await clinic.client.post(
        "/login",
        data={"token": clinic.tokens[role], "password": PASSWORD, "next": next_page},
        headers=origin(clinic),
        allow_redirects=False,
    )


def cookie_header(resp: Any) -> dict[str, str]:
    return {"Cookie": f"checkin_session={session_cookie(resp).value}"}


# --- the catalog --------------------------------------------------------------------------


def test_every_text_exists_in_every_language() -> None:
    texts = catalog()
    assert set(texts) == set(LANGUAGES)
    assert texts["en"].keys() == texts["es"].keys()
    assert all(value.strip() for lang in LANGUAGES for value in texts[lang].values())


def test_every_key_the_templates_and_scripts_use_is_in_the_catalog() -> None:
    used: set[str] = set()
    pattern = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_.]+)["']""")
    data_pattern = re.compile(r"""data-i18n(?:-[a-z-]+)?=["']([a-z_]+\.[a-z0-9_.]+)["']""")
    for path in [*WEB.glob("templates/*.html"), *WEB.glob("static/js/*.js")]:
        text = path.read_text()
        used |= set(pattern.findall(text)) | set(data_pattern.findall(text))
    assert used, "no catalog keys found: the pattern is wrong"
    missing = used - catalog()["en"].keys()
    assert not missing, f"keys used but not in the catalog: {sorted(missing)}"


def test_the_scripts_branch_on_error_codes_the_server_has_and_show_catalog_texts() -> None:
    """Pages map the server's codes (errors.py) to their own texts, never its wording."""
    codes = {code.code for code in errors.ALL}
    known: set[str] = set()
    keys: set[str] = set()
    for path in WEB.glob("static/js/*.js"):
        text = path.read_text()
        for block in re.findall(r"const (?:PROBLEMS|ERROR_TEXTS) = \{(.*?)\n\};", text, re.S):
            known |= set(re.findall(r"^\s+([a-z_]+):", block, re.M))
        for listed in re.findall(r"\[([^\]]*)\]\.includes\(error\.code\)", text):
            known |= set(re.findall(r'"([a-z_]+)"', listed))
        keys |= set(
            re.findall(r'"((?:kiosk|admin|doctor|display|common|intake)\.[a-z0-9_.]+)"', text)
        )
    assert {"photo_too_large", "name_required", "password_too_short"} <= known
    assert known <= codes, f"codes the server never sends: {sorted(known - codes)}"
    assert keys - catalog()["en"].keys() == set()


# --- first run ----------------------------------------------------------------------------


async def test_first_run_goes_to_setup_and_creates_the_admin(
    aiohttp_client: Any, config: Config
) -> None:
    client = await aiohttp_client(create_app(config), cookie_jar=DummyCookieJar())
    home = await client.get("/", allow_redirects=False)
    assert (home.status, home.headers["Location"]) == (303, "/setup")
    form = await client.get("/setup")
    assert form.status == 200
    assert 'name="code"' in await form.text()

    code = client.app[ACCESS].setup_code
    fields = {"code": code, "password": "adm1n password", "confirm": "adm1n password"}
    foreign = await client.post("/setup", data=fields, headers={"Origin": "http://evil.example"})
    assert foreign.status == 403
    ours = {"Origin": f"http://{client.host}:{client.port}"}
    mismatch = await client.post("/setup", data={**fields, "confirm": "other"}, headers=ours)
    assert mismatch.status == 400
    wrong = await client.post("/setup", data={**fields, "code": "AAAA-BBBB-CCCC"}, headers=ours)
    assert wrong.status == 403
    short = {**fields, "password": "short", "confirm": "short"}
    too_short = await client.post("/setup", data=short, headers=ours)
    assert too_short.status == 400
    assert "at least 12 characters" in await too_short.text()  # an administrator's
    done = await client.post("/setup", data=fields, headers=ours)
    assert done.status == 200
    token = re.search(r"data-admin-token>(\d{8})<", await done.text()).group(1)
    cookie = {"Cookie": f"checkin_session={done.cookies['checkin_session'].value}"}
    home = await client.get("/", headers=cookie, allow_redirects=False)
    assert home.headers["Location"] == "/admin"
    login = await client.post("/api/login/", json={"token": token, "password": "adm1n password"})
    assert (await login.json())["role"] == "admin"
    # Setup is closed for good: the page now sends people to sign in.
    again = await client.get("/setup", allow_redirects=False)
    assert (again.status, again.headers["Location"]) == (303, "/login")


# --- sign-in ------------------------------------------------------------------------------


async def test_login_page_is_served_under_a_strict_policy(clinic: Clinic) -> None:
    resp = await clinic.client.get("/login")
    assert resp.status == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    html = await resp.text()
    assert '<label class="field">' in html and 'type="password"' in html
    assert not re.search(r"<script(?![^>]*(type=\"application/json\"|src=))", html)
    assert " style=" not in html and " onclick=" not in html


@pytest.mark.parametrize(
    ("role", "page", "max_age"),
    [
        (Role.FORM, "/kiosk", 400 * DAY),
        (Role.QUEUE, "/display", 400 * DAY),
        (Role.DOCTOR, "/doctor", 12 * 3600),
        (Role.ADMIN, "/admin", 12 * 3600),
    ],
)
async def test_signing_in_sends_each_device_to_its_page(
    clinic: Clinic, role: Role, page: str, max_age: int
) -> None:
    resp = await page_login(clinic, role)
    assert (resp.status, resp.headers["Location"]) == (303, page)
    cookie = session_cookie(resp)
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert int(cookie["max-age"]) == max_age
    home = await clinic.client.get("/", headers=cookie_header(resp), allow_redirects=False)
    assert home.headers["Location"] == page


async def test_wrong_password_shows_the_form_again_with_a_message(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/login",
        data={"token": clinic.tokens[Role.FORM], "password": "nope"},
        headers=origin(clinic),
        allow_redirects=False,
    )
    assert resp.status == 401
    html = await resp.text()
    assert "do not match an active credential" in html
    assert "checkin_session" not in resp.cookies
    assert f'value="{clinic.tokens[Role.FORM]}"' in html  # the token stays typed in


async def test_sign_in_from_another_site_is_refused(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/login",
        data={"token": clinic.tokens[Role.FORM], "password": PASSWORD},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
    )
    assert resp.status == 403


async def test_next_only_leads_to_our_own_pages(clinic: Clinic) -> None:
    admin = await page_login(clinic, Role.ADMIN, "/display")
    assert admin.headers["Location"] == "/display"
    for target in ("//evil.example/x", "https://evil.example", "/api/credentials/"):
        resp = await page_login(clinic, Role.ADMIN, target)
        assert resp.headers["Location"] == "/admin"
    # A kiosk asked to go to the doctor page still lands on its own page.
    kiosk = await page_login(clinic, Role.FORM, "/doctor")
    assert kiosk.headers["Location"] == "/kiosk"


async def test_pages_need_a_session_and_the_right_role(clinic: Clinic) -> None:
    anonymous = await clinic.client.get("/doctor", allow_redirects=False)
    assert (anonymous.status, anonymous.headers["Location"]) == (303, "/login?next=/doctor")
    kiosk = await page_login(clinic, Role.FORM)
    refused = await clinic.client.get("/doctor", headers=cookie_header(kiosk))
    assert refused.status == 403
    html = await refused.text()
    assert 'href="/kiosk"' in html and "form 1" in html


async def test_cookie_api_calls_need_our_origin(clinic: Clinic) -> None:
    kiosk = cookie_header(await page_login(clinic, Role.FORM))
    without = await clinic.client.post("/api/patients/", json={"fname": "Ann Lee"}, headers=kiosk)
    assert without.status == 403
    cross = await clinic.client.post(
        "/api/patients/",
        json={"fname": "Ann Lee"},
        headers={**kiosk, **origin(clinic), "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status == 403
    ok = await clinic.client.post(
        "/api/patients/", json={"fname": "Ann Lee"}, headers={**kiosk, **origin(clinic)}
    )
    assert ok.status == 201
    reading = await clinic.client.get("/api/queue/", headers=kiosk)  # reads need no Origin
    assert reading.status == 200


async def test_a_device_session_slides_forward_while_in_use(clinic: Clinic, config: Config) -> None:
    resp = await page_login(clinic, Role.QUEUE)
    cookie = cookie_header(resp)
    db = sqlite3.connect(config.db_path)
    # Pretend the display signed in 300 days ago: 100 days left, under half its life.
    db.execute(
        "UPDATE sessions SET access_expires = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+100 days')"
    )
    db.commit()
    page = await clinic.client.get("/", headers=cookie, allow_redirects=False)
    renewed = session_cookie(page)
    assert int(renewed["max-age"]) == 400 * DAY
    (expires, still_300_days_ahead) = db.execute(
        "SELECT access_expires, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+300 days') "
        "FROM sessions ORDER BY id DESC LIMIT 1"
    ).fetchone()
    # Pushed past the 100 days it had left: a fixed year here could not fail.
    assert expires > still_300_days_ahead


async def test_signing_out_ends_the_session(clinic: Clinic) -> None:
    cookie = cookie_header(await page_login(clinic, Role.DOCTOR))
    resp = await clinic.client.post(
        "/logout", headers={**cookie, **origin(clinic)}, allow_redirects=False
    )
    assert (resp.status, resp.headers["Location"]) == (303, "/login")
    after = await clinic.client.get("/doctor", headers=cookie, allow_redirects=False)
    assert after.headers["Location"].startswith("/login")


async def test_static_assets_are_local_and_versioned(clinic: Clinic) -> None:
    html = await (await clinic.client.get("/login")).text()
    urls = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls)
    css = next(url for url in urls if url.endswith(".css") or ".css?" in url)
    assert "?v=" in css
    resp = await clinic.client.get(css)
    assert resp.status == 200
    assert "immutable" in resp.headers["Cache-Control"]
    # A module a page script imports (./feed.js) has no hash: revalidated every time, so an
    # upgraded page never runs beside an old cached copy of it.
    module = await clinic.client.get("/static/js/feed.js")
    assert module.status == 200 and module.headers["Cache-Control"] == "no-cache"
    again = await clinic.client.get(
        "/static/js/feed.js", headers={"If-None-Match": module.headers["ETag"]}
    )
    assert again.status == 304


async def test_browser_form_posts_count_as_ours_by_sec_fetch_site(clinic: Clinic) -> None:
    # Over HTTPS Chromium marks our own form posts Sec-Fetch-Site: same-origin; that decides.
    fields = {"token": clinic.tokens[Role.FORM], "password": PASSWORD}
    ours = await clinic.client.post(
        "/login",
        data=fields,
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert ours.status == 303
    for headers in ({"Origin": "null"}, {"Origin": "null", "Sec-Fetch-Site": "same-site"}):
        refused = await clinic.client.post(
            "/login", data=fields, headers=headers, allow_redirects=False
        )
        assert refused.status == 403, headers


def csp_directives(header: str) -> dict[str, str]:
    directives = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {name: (rest[0] if rest else "") for name, *rest in directives}


@pytest.mark.parametrize(
    ("role", "page"),
    [
        (Role.FORM, "/kiosk"),
        (Role.QUEUE, "/display"),
        (Role.DOCTOR, "/doctor"),
        (Role.ADMIN, "/admin"),
    ],
)
async def test_every_role_page_is_served_under_the_strict_policy_and_never_cached(
    clinic: Clinic, role: Role, page: str
) -> None:
    # Signed in the way the device really is (the cookie): a bearer header only gets a redirect.
    resp = await clinic.client.get(page, headers=cookie_header(await page_login(clinic, role)))
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/html"
    csp = csp_directives(resp.headers["Content-Security-Policy"])
    # Scripts and styles only from our own files: no inline code, no eval, nothing remote.
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["default-src"] == "'self'" and csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    assert csp["base-uri"] == "'none'"
    assert "unsafe" not in resp.headers["Content-Security-Policy"]
    # A shared tablet or the browser's back button must never show a stale patient list.
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"
