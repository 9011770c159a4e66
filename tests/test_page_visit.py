"""The patient's own phone (issue 17) in real Chromium against the real server: check in at
the kiosk, take the QR's link, open it in a second browser context without any cookie on a
phone's viewport, and follow the visit until "Called — go to Room 3", with the vibration
and the sound requests observed; the page's HTML, its feed and its URL carry no name."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, Response, expect
from playwright.async_api import Error as PlaywrightError

from tests.browser import TABLET_PORTRAIT, UI_TIMEOUT_MS, screenshot, sign_in
from tests.serverproc import Server

PHONE = {"width": 390, "height": 844}
PATIENT = "Zoe Quartermaine"
OTHERS = ("Ann Example", "Bob Sample")
EARLIER = "Olwen Brightwater"  # the patients seen before this test's
# Visits seconds apart: a range from zero, on the five-minute steps.
ESTIMATE = re.compile(r"^0\u20135 min$")
ESTIMATE_ON_KIOSK = re.compile(r"^Estimated wait: 0\u20135 min$")
LINK = re.compile(r"\Ahttp://127\.0\.0\.1:[0-9]+/v/[A-Za-z0-9_-]{22}\Z")

# Records what the page asks of the phone: each navigator.vibrate pattern and each beep
# (an oscillator started), without changing what the browser does.
RECORD_ALERTS = """
window.__vibrations = [];
navigator.vibrate = (pattern) => { window.__vibrations.push(pattern); return true; };
window.__beeps = 0;
window.__contexts = 0;
const Original = window.AudioContext;
window.AudioContext = class extends Original {
  constructor(...args) { super(...args); window.__contexts += 1; }
  createOscillator() {
    const osc = super.createOscillator();
    const start = osc.start.bind(osc);
    osc.start = (...a) => { window.__beeps += 1; return start(...a); };
    return osc;
  }
};
"""


class Desk:
    """The clinic over the real API: others check in, the doctor in Room 3 calls."""

    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server, self.http = server, http
        self.form = {"Authorization": f"Bearer {server.login(server.create_token('form', 'Desk'))}"}
        doctor = server.create_token("doctor", "Dr Lee", room="Room 3")
        self.doctor = {"Authorization": f"Bearer {server.login(doctor)}"}

    async def check_in(self, fname: str) -> None:
        url = f"{self.server.base_url}/api/patients/"
        async with self.http.post(url, json={"fname": fname}, headers=self.form) as resp:
            assert resp.status == 201, await resp.text()

    async def call_next(self) -> int:
        return int((await self.act("call_next"))["patient"]["id"])

    async def act(self, action: str, **fields: Any) -> dict[str, Any]:
        url = f"{self.server.base_url}/api/doctors/"
        async with self.http.post(url, json={"action": action, **fields}, headers=self.doctor) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())

    async def see_patients(self, count: int) -> None:
        """The morning so far: `count` patients checked in, called, seen and done, so the
        line has a pace and the box can estimate waits."""
        for _ in range(count):
            await self.check_in(EARLIER)
            patient_id = await self.call_next()
            await self.act("start", patient_id=patient_id)
            await self.act("done", patient_id=patient_id)


async def kiosk_check_in(browser: Browser, appliance: Server, fname: str) -> tuple[Page, str]:
    """The kiosk's thank-you screen with its QR code; the link the code carries."""
    page = await sign_in(browser, appliance, "form", "Kiosk 1", viewport=TABLET_PORTRAIT)
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    await page.get_by_label("Your full name").fill(fname)
    await page.get_by_role("button", name="Check in").click()
    await expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    qr = page.locator("#status-qr")
    await expect(qr).to_be_visible()
    await expect(qr).to_contain_text("Scan to follow your place on your phone")
    # The code itself is an image the box made, loaded from the kiosk's own origin.
    code = page.locator("#status-qr-code")
    await page.wait_for_function(
        "() => { const img = document.getElementById('status-qr-code');"
        " return img.complete && img.naturalWidth > 0; }"
    )
    assert re.fullmatch(r"/v/[A-Za-z0-9_-]{22}/qr\.svg", await code.get_attribute("src") or "")
    link = await qr.get_attribute("data-status-url")
    assert link and LINK.match(link), link
    # Long enough to take out a phone: a minute, not the usual 10 s.
    await expect(page.locator("#countdown")).to_contain_text(re.compile(r"clears in (60|59|58) s"))
    return page, link


async def test_a_phone_follows_its_visit_from_the_kiosk_qr_to_the_call(
    browser: Browser, appliance: Server
) -> None:
    async with aiohttp.ClientSession() as http:
        desk = Desk(appliance, http)
        await desk.see_patients(5)
        for name in OTHERS:
            await desk.check_in(name)
        kiosk, link = await kiosk_check_in(browser, appliance, PATIENT)
        # The wait the patient's page will show, on the thank-you screen too.
        await expect(kiosk.locator("#estimate")).to_have_text(ESTIMATE_ON_KIOSK)
        await screenshot(kiosk, "visit-kiosk-qr")

        # The phone: another browser context, no cookie of the kiosk's, a phone's screen.
        phone_context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        phone_context.set_default_timeout(UI_TIMEOUT_MS)
        assert await phone_context.cookies() == []
        await phone_context.add_init_script(RECORD_ALERTS)
        phone = await phone_context.new_page()
        bodies: list[str] = []
        stream_chunks: list[str] = []

        async def keep(response: Response) -> None:
            if "/events" in response.url:
                return  # an endless stream: read below through the page itself
            with contextlib.suppress(PlaywrightError):  # a body the browser did not keep
                bodies.append(await response.text())

        phone.on("response", lambda r: asyncio.ensure_future(keep(r)))
        # The stream's messages as the page's own EventSource sees them.
        await phone.add_init_script(
            "window.__stream = [];"
            "const ES = window.EventSource;"
            "window.EventSource = class extends ES { constructor(u, o) { super(u, o);"
            " this.addEventListener('message', (e) => window.__stream.push(e.data)); } };"
        )
        await phone.goto(link)
        assert await phone_context.cookies() == []

        await expect(phone.locator("#ticket")).to_have_text(re.compile(r"^[A-Z]{1,2}-\d{3}$"))
        await expect(phone.locator("#place")).to_have_text("You are 3rd in line")
        await expect(phone.locator("#estimate")).to_have_text(ESTIMATE)
        await expect(phone.locator("#offline")).to_be_hidden()
        # The patient turns sound on (browsers allow it only after a tap).
        await phone.get_by_role("button", name="Turn on sound").click()
        await expect(phone.get_by_role("button", name="Sound is on")).to_be_visible()
        await screenshot(phone, "visit-phone-waiting")

        await desk.call_next()  # Ann
        await expect(phone.locator("#place")).to_have_text("You are 2nd in line")
        await desk.call_next()  # Bob
        await expect(phone.locator("#place")).to_have_text("You are next in line")
        assert await phone.evaluate("window.__vibrations.length") == 0

        await desk.call_next()  # this patient
        await expect(phone.locator("#call-text")).to_have_text("Called — go to Room 3")
        await expect(phone.locator("#place")).to_be_hidden()
        await phone.wait_for_function("window.__vibrations.length === 1")
        vibration: list[Any] = await phone.evaluate("window.__vibrations[0]")
        assert isinstance(vibration, list) and len(vibration) >= 3
        await phone.wait_for_function("window.__beeps >= 1 && window.__contexts === 1")
        # The title flashes until the patient looks (a tap).
        await phone.wait_for_function("document.title.includes('Your turn')")
        await screenshot(phone, "visit-phone-called")
        await phone.locator("#ticket").click()
        await phone.wait_for_function("!document.title.includes('Your turn')")

        # No name anywhere: the page's HTML, what it fetched, its stream, its URL.
        html = await phone.content()
        stream = await phone.evaluate("window.__stream")
        stream_chunks.extend(stream)
        assert len(stream) >= 4  # the first status, two moves, the call
        for name in (PATIENT, *OTHERS, EARLIER):
            for part in (name, *name.split()):
                assert part not in html, part
                assert part not in phone.url, part
                assert all(part not in body for body in bodies), part
                assert all(part not in chunk for chunk in stream_chunks), part
        await phone_context.close()


async def test_the_admin_sets_where_the_qr_points_and_tests_it_from_a_phone(
    browser: Browser, appliance: Server
) -> None:
    admin = await sign_in(browser, appliance, "admin", "Manager")
    field = admin.get_by_label("Address for patients' phones")
    await field.fill("http://192.168.1.10/some/path")
    await admin.locator("#settings-submit").click()
    await expect(admin.locator("#settings-status")).to_contain_text("no path")
    # The guest network reaches the box at this address (here: the test's own).
    await field.fill(appliance.base_url)
    await admin.locator("#settings-submit").click()
    await expect(admin.locator("#settings-status")).to_have_text("Saved.")
    await admin.wait_for_function(
        "() => { const img = document.getElementById('phone-test-code');"
        " return img.complete && img.naturalWidth > 0 && img.src.includes('for=http'); }"
    )
    phone_context = await browser.new_context(viewport=PHONE, is_mobile=True)
    phone = await phone_context.new_page()
    await phone.goto(f"{appliance.base_url}/v/test")
    await expect(phone.get_by_role("heading")).to_have_text("Your phone reaches the check-in box")
    await phone_context.close()
    async with aiohttp.ClientSession() as http:
        desk = Desk(appliance, http)
        url = f"{appliance.base_url}/api/patients/"
        async with http.post(url, json={"fname": "Ann Example"}, headers=desk.form) as resp:
            link = (await resp.json())["status_url"]
    assert link.startswith(f"{appliance.base_url}/v/")


async def test_staff_see_each_patients_estimate_and_how_the_shown_ranges_held(
    browser: Browser, appliance: Server
) -> None:
    async with aiohttp.ClientSession() as http:
        desk = Desk(appliance, http)
        await desk.see_patients(5)
        url = f"{appliance.base_url}/api/patients/"
        for name in OTHERS:
            async with http.post(url, json={"fname": name}, headers=desk.form) as resp:
                link = (await resp.json())["status_url"]
            async with http.get(f"{link}/status") as resp:  # the kiosk shows its range
                assert (await resp.json())["estimate"] == {"low_minutes": 0, "high_minutes": 5}

        doctor = await sign_in(browser, appliance, "doctor", "Dr. Ray")
        rows = doctor.locator("#queue-list > li")
        await expect(rows).to_have_count(2)
        for n in range(2):
            await expect(rows.nth(n).locator(".patient__estimate")).to_have_text(
                "Estimated wait 0\u20135 min"
            )

        admin = await sign_in(browser, appliance, "admin", "Manager")
        row = admin.locator('#estimates-body tr[data-prefix="A"] td')
        await expect(row.nth(1)).to_have_text("2")  # shown
        await expect(row.nth(2)).to_have_text("0")  # nobody called since
        await desk.call_next()
        await desk.call_next()
        # Both called within the minute their 0-5 range promised; the middle was 2.5 min off.
        await expect(row).to_have_text(
            [re.compile(r"A"), "2", "2", "100 %", re.compile(r"^2\.[45] min$"), "100 % of 2"]
        )
        await screenshot(admin, "admin-estimates")
