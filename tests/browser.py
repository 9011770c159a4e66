"""Real Chromium for the page tests: Debian's /usr/bin/chromium driven by Playwright.

Fixtures: `browser` (one Chromium per test, fake camera allowed) and `appliance` (the real
server as a subprocess on a loopback port). `sign_in` logs a new page in as a fresh
credential of a role; `screenshot` saves a PNG under tests/artifacts/ for people to look at.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.serverproc import PASSWORD, Server, running

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
UI_TIMEOUT_MS = 5000  # Playwright's waits; every expect/wait is bounded by it

TABLET_PORTRAIT = {"width": 768, "height": 1024}
TABLET_LANDSCAPE = {"width": 1024, "height": 768}
TV = {"width": 1920, "height": 1080}
LAPTOP = {"width": 1366, "height": 768}


# A name that is not loopback, so not a "potentially trustworthy" origin over plain HTTP:
# what a tablet sees at http://<box>/ (no Sec-Fetch-Site headers). The `lan_browser`
# resolves it to 127.0.0.1 itself; the server must list it in allowed_hosts.
LAN_NAME = "clinic-box.lan"


@contextlib.asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package).")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*LAUNCH_ARGS, *extra_args]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def lan_browser() -> AsyncIterator[Browser]:
    async with chromium(f"--host-resolver-rules=MAP {LAN_NAME} 127.0.0.1") as launched:
        yield launched


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Server]:
    with running(tmp_path / "server") as server:
        yield server


async def new_page(
    browser: Browser, server: Server, viewport: dict[str, int] = LAPTOP
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(
        base_url=server.base_url, viewport=viewport, permissions=["camera"]
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    return context, page


async def sign_in(
    browser: Browser,
    server: Server,
    role: str,
    label: str | None = None,
    *,
    viewport: dict[str, int] = LAPTOP,
    room: str | None = None,
) -> Page:
    """A fresh credential of `role`, signed in through the real /login form."""
    token = server.create_token(role, label or f"Test {role}", room=room)
    return await sign_in_with(browser, server, token, viewport)


async def sign_in_with(
    browser: Browser, server: Server, token: str, viewport: dict[str, int] = LAPTOP
) -> Page:
    """Signs in through the real /login form with a credential that already exists."""
    _, page = await new_page(browser, server, viewport)
    await page.goto("/login")
    await page.get_by_label("Access token").fill(token)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/login" not in url)
    return page


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path
