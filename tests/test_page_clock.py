"""/admin's clock banner in real Chromium against the real app in-process, so that the box's
clocks can be moved (issue 19, item 12): a box whose clock is far from the browser's says
both times, and its button asks the clock helper, or says the helper is missing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Browser, Dialog, Page, expect

from checkin_appliance import __version__, clock_setting
from checkin_appliance.domain import Role, format_time
from checkin_appliance.web.keys import CLOCK, CLOCK_HELPER, CONFIG, STORE
from tests.browser import LAPTOP, UI_TIMEOUT_MS
from tests.conftest import PASSWORD, Clinic

BROWSER_TIME = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)  # this browser's clock, held still
BEHIND = timedelta(days=365)  # the box booted without RTC a year behind


def move_the_box_clock(clinic: Clinic, by: timedelta) -> None:
    """Both of the app's clocks `by` off the real one; the watch starts again on it (no jump)."""
    watch = clinic.app[CLOCK]
    watch.wall = lambda: datetime.now(UTC) + by
    watch.start(None)
    clinic.app[STORE].set_clock(lambda: format_time(datetime.now(UTC) + by))


async def admin_page(browser: Browser, clinic: Clinic) -> Page:
    token = await clinic.add_credential(Role.ADMIN, "Manager")
    context = await browser.new_context(
        base_url=str(clinic.client.make_url("")).rstrip("/"), viewport=LAPTOP
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    await page.clock.set_fixed_time(BROWSER_TIME)
    await page.goto("/login")
    await page.get_by_label("Access token").fill(token)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/admin$"))
    return page


def shown(moment: datetime) -> str:
    """system.js's when() in English for the clinic's default zone (UTC)."""
    return f"{moment:%b} {moment.day}, {moment:%Y}, {moment:%-I:%M:%S %p}"


async def test_a_box_clock_far_from_the_browsers_offers_to_set_it(
    browser: Browser, clinic: Clinic, tmp_path: Path
) -> None:
    clinic.app[CLOCK_HELPER].units = (tmp_path / "checkin-appliance-clock.path",)  # none yet
    move_the_box_clock(clinic, -BEHIND)
    page = await admin_page(browser, clinic)
    banner = page.locator("#system-clock")
    await banner.scroll_into_view_if_needed()
    await expect(banner).to_be_visible()
    compare = banner.locator("#system-clock-compare")
    await expect(compare).to_contain_text(f"this browser says {shown(BROWSER_TIME)}.")
    box_year = (datetime.now(UTC) - BEHIND).year
    await expect(compare).to_have_text(re.compile(rf"^The box's clock says \w+ \d+, {box_year},"))

    confirms: list[str] = []

    async def accept(dialog: Dialog) -> None:
        confirms.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    button = banner.get_by_role("button", name="Set the box's clock to this browser's time")
    status = banner.locator("#system-clock-status")

    # No helper on this box (a checkout): the page explains that the package brings it.
    await button.click()
    await expect(status).to_contain_text("This box cannot set its own clock")
    await expect(status).to_contain_text("checkin-appliance package")
    assert confirms and shown(BROWSER_TIME) in confirms[0]
    request = clinic.app[CONFIG].data_dir / clock_setting.REQUEST_FILE
    assert not request.exists()

    # The package's helper is there: the request the helper reads is written, with the
    # browser's time.
    (tmp_path / "checkin-appliance-clock.path").touch()
    await button.click()
    await expect(status).to_have_text(
        f"Asked: the box sets its clock to {shown(BROWSER_TIME)} within a few seconds."
    )
    body = json.loads(request.read_text())
    assert body["to"] == format_time(BROWSER_TIME)
    assert len(confirms) == 2


async def test_a_box_clock_close_to_the_browsers_shows_no_banner(
    browser: Browser, clinic: Clinic
) -> None:
    move_the_box_clock(clinic, BROWSER_TIME + timedelta(seconds=30) - datetime.now(UTC))
    page = await admin_page(browser, clinic)
    await expect(page.locator('#system-figures [data-system="version"]')).to_have_text(__version__)
    await expect(page.locator("#system-clock")).to_be_hidden()
