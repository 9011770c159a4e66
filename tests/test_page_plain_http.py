"""Signing in over plain HTTP from another device (issue 19, item 14).

With `tls = "off"` a tablet opens http://<box>/: not a trustworthy origin, so Chromium
sends no Sec-Fetch-Site, and only the Origin header tells our own forms from another
site's. Real Chromium reaches the real server as `clinic-box.lan` (resolved to loopback by
the browser itself), a name the server answers to through allowed_hosts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from checkin_appliance.web.messages.common import MESSAGES
from tests.browser import LAN_NAME, UI_TIMEOUT_MS
from tests.serverproc import PASSWORD, SETUP_CODE, Server, cli_command, free_port, launched

REFUSED = MESSAGES["en"]["signin.cross_origin"]
OTHER_SITE = "http://other-site.example"


@pytest.fixture
def lan_box(tmp_path: Path) -> Iterator[Server]:
    """The box with plain HTTP, answering to LAN_NAME as well as its own names."""
    config = tmp_path / "config.toml"
    config.write_text(f'tls = "off"\nallowed_hosts = ["{LAN_NAME}"]\n')
    port, data = free_port(), tmp_path / "data"
    command = cli_command(
        "serve", "--port", str(port), "--data-dir", str(data), "--config", str(config)
    )
    with launched(tmp_path, command, port, data) as server:
        yield server


def lan_url(server: Server, path: str) -> str:
    return f"http://{LAN_NAME}:{server.port}{path}"


async def test_setup_and_sign_in_work_from_another_device_over_plain_http(
    lan_browser: Browser, lan_box: Server
) -> None:
    code = lan_box.wait_for_output(SETUP_CODE).group(1)
    context = await lan_browser.new_context()
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(lan_url(lan_box, "/"))
    await expect(page).to_have_url(re.compile(r"/setup$"))
    await page.get_by_label("Setup code").fill(code)
    await page.get_by_label("New administrator password").fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_role("button", name="Create administrator").click()
    token_shown = page.locator("[data-admin-token]")
    await expect(token_shown).to_have_text(re.compile(r"\d{8}"))
    token = await token_shown.inner_text()
    await page.get_by_role("link", name="Continue to administration").click()
    await expect(page).to_have_url(lan_url(lan_box, "/admin"))

    other = await lan_browser.new_context()
    other.set_default_timeout(UI_TIMEOUT_MS)
    login = await other.new_page()
    await login.goto(lan_url(lan_box, "/login"))
    await login.get_by_label("Access token").fill(token.strip())
    await login.get_by_label("Password").fill(PASSWORD)
    await login.get_by_role("button", name="Sign in").click()
    await expect(login).to_have_url(lan_url(lan_box, "/admin"))


@pytest.mark.parametrize(
    "policy", ["", "sandbox allow-forms allow-scripts"], ids=["other-site", "opaque-origin"]
)
async def test_a_sign_in_posted_from_another_site_is_refused_with_a_page(
    lan_browser: Browser, lan_box: Server, policy: str
) -> None:
    """Login CSRF: another site's page (or a sandboxed one, whose origin is `null`) posts the
    attacker's credential to the box's sign-in form. The browser is not signed in, and sees
    the sign-in page saying why, never raw JSON."""
    token = lan_box.create_token("form", "Attacker's kiosk")
    context = await lan_browser.new_context()
    context.set_default_timeout(UI_TIMEOUT_MS)
    form = (
        f'<form method="post" action="{lan_url(lan_box, "/login")}">'
        f'<input name="token" value="{token}"><input name="password" value="{PASSWORD}">'
        '<button type="submit">Go</button></form>'
    )
    headers = {"Content-Type": "text/html"} | (
        {"Content-Security-Policy": policy} if policy else {}
    )
    await context.route(
        f"{OTHER_SITE}/**", lambda route: route.fulfill(status=200, headers=headers, body=form)
    )
    page = await context.new_page()
    await page.goto(f"{OTHER_SITE}/")
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="Go").click()
    response = await navigation.value
    assert response is not None and response.status == 403
    await expect(page.get_by_role("alert")).to_have_text(REFUSED)
    assert not [c for c in await context.cookies() if c["name"] == "checkin_session"]
