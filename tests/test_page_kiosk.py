"""The check-in kiosk in real Chromium (fake camera) against the real server: a check-in with
a camera photo and without one, by touch and by keyboard, retries that add nobody twice, the
language switch, the page clearing itself for the next patient, and the server's refusals."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageDraw
from playwright.async_api import Page, Route, expect

from tests.browser import (
    TABLET_LANDSCAPE,
    TABLET_PORTRAIT,
    screenshot,
    sign_in,
)
from tests.serverproc import Server

# A signed, expiring link to the stored photo (photo_links.py).
PHOTO_URL = re.compile(r"/media/patient_images/[0-9a-f]{32,}\.jpg\?exp=[0-9]{10}&sig=[0-9a-f]{64}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

# Watches the camera without changing it: every stream the page opens is kept for the test.
WATCH_CAMERA = """
window.__streams = [];
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await original(constraints);
  window.__streams.push(stream);
  return stream;
};
"""
# What a tablet sees on plain http from another address: no camera API, no randomUUID.
NOT_SECURE = """
Object.defineProperty(Navigator.prototype, "mediaDevices", { get: () => undefined });
Object.defineProperty(Crypto.prototype, "randomUUID", { value: undefined });
"""
# The patient (or the tablet's settings) said no to the camera.
REFUSE_CAMERA = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""


class Staff:
    """The clinic's side, over the real API with an admin credential: reads the queue, checks
    people in at the desk, changes settings, fetches photos."""

    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        access = server.login(server.create_token("admin", "Front office"))
        self.auth = {"Authorization": f"Bearer {access}"}

    def url(self, path: str) -> str:
        return f"{self.server.base_url}{path}"

    async def queue(self) -> list[dict[str, Any]]:
        async with self.http.get(self.url("/api/queue/"), headers=self.auth) as resp:
            assert resp.status == 200, await resp.text()
            return [item["patient"] for item in await resp.json()]

    async def check_in(self, fname: str) -> None:
        body = {"fname": fname}
        async with self.http.post(self.url("/api/patients/"), json=body, headers=self.auth) as r:
            assert r.status == 201, await r.text()

    async def change_settings(self, body: dict[str, Any]) -> None:
        async with self.http.patch(self.url("/api/settings/"), json=body, headers=self.auth) as r:
            assert r.status == 200, await r.text()

    async def photo(self, path: str) -> tuple[str, bytes]:
        async with self.http.get(self.url(path)) as resp:
            assert resp.status == 200
            return resp.headers["Content-Type"], await resp.read()


@pytest.fixture
async def staff(appliance: Server) -> AsyncIterator[Staff]:
    async with aiohttp.ClientSession() as http:
        yield Staff(appliance, http)


def face_jpeg() -> bytes:
    image = Image.new("RGB", (900, 1200), (180, 210, 230))
    draw = ImageDraw.Draw(image)
    draw.ellipse((300, 200, 600, 560), fill=(236, 200, 170))
    draw.ellipse((150, 620, 750, 1400), fill=(60, 70, 90))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


async def open_kiosk(
    browser,
    appliance: Server,
    viewport: dict[str, int] = TABLET_PORTRAIT,
    init_script: str | None = None,
) -> Page:
    page = await sign_in(browser, appliance, "form", "Kiosk 1", viewport=viewport)
    await expect(page).to_have_url(re.compile(r"/kiosk$"))
    if init_script:
        await page.add_init_script(init_script)
        await page.reload()
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    return page


def name_field(page: Page):
    return page.get_by_label("Your full name")


async def camera_on(page: Page) -> None:
    await page.get_by_role("button", name="Use the camera").click()
    await expect(page.locator("#preview")).to_be_visible()
    await page.wait_for_function(
        "() => { const v = document.getElementById('preview');"
        " return v.readyState >= 2 && v.videoWidth > 0; }"
    )
    await expect(page.get_by_role("button", name="Take photo")).to_be_enabled()


async def all_cameras_off(page: Page) -> bool:
    return await page.evaluate(
        "() => window.__streams.length > 0 && window.__streams.every("
        "s => s.getTracks().every(t => t.readyState === 'ended'))"
        " && document.getElementById('preview').srcObject === null"
    )


async def assert_clean(page: Page, *names: str) -> None:
    """The form is back, empty, with nothing of the previous patient anywhere on the page."""
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    await expect(name_field(page)).to_have_value("")
    await expect(page.locator("#still")).to_be_hidden()
    assert await page.locator("#still").get_attribute("src") is None
    await expect(page.locator("#preview")).to_be_hidden()
    await expect(page.get_by_role("button", name="Use the camera")).to_be_visible()
    await expect(page.locator("#success-screen")).to_be_hidden()
    html = await page.content()
    for name in names:
        assert name not in html
        for part in name.split():
            assert part not in await page.locator("body").inner_text()


async def assert_fits(page: Page) -> None:
    """On the tablet: no sideways scrolling, the button within reach, big touch targets."""
    viewport = page.viewport_size
    assert viewport is not None
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"]
    submit = await page.get_by_role("button", name="Check in").bounding_box()
    assert submit is not None
    assert submit["y"] + submit["height"] <= viewport["height"]
    assert submit["height"] >= 80
    for button in await page.locator("button:visible, label.button:visible").all():
        box = await button.bounding_box()
        assert box is not None and box["height"] >= 48, await button.inner_text()


# --- checking in ----------------------------------------------------------------------------


async def test_a_patient_checks_in_with_a_camera_photo_and_sees_their_place_in_line(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    await staff.check_in("Ann Lee")  # someone is already waiting
    page = await open_kiosk(browser, appliance, init_script=WATCH_CAMERA)
    await expect(page.locator("#clinic-name")).to_have_text("Clinic")
    await expect(name_field(page)).to_have_attribute("maxlength", "255")
    await expect(name_field(page)).to_have_attribute("autocomplete", "off")
    await expect(page.get_by_text("Only the clinic's staff see it.")).to_be_visible()

    await name_field(page).fill("María José García  ")
    await camera_on(page)
    await assert_fits(page)
    await page.mouse.move(5, 1000)  # no hover effect in the picture
    await screenshot(page, "kiosk-portrait")

    await page.get_by_role("button", name="Take photo").click()
    await expect(page.get_by_role("img", name="Your photo")).to_be_visible()
    await expect(page.get_by_role("button", name="Retake")).to_be_visible()
    await expect(page.get_by_role("button", name="Take photo")).to_be_hidden()
    assert await all_cameras_off(page)  # the photo is taken: the camera is off

    await page.get_by_role("button", name="Check in").click()
    await expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    await expect(page.locator("#position")).to_have_text("You are number 2 in line.")
    await expect(
        page.get_by_text("Please take a seat; your name will appear on the screen.")
    ).to_be_visible()
    await expect(page.locator("#countdown")).to_have_text(
        re.compile(r"This screen clears in \d+ s")
    )
    await page.mouse.move(5, 1000)
    await screenshot(page, "kiosk-success")

    waiting = await staff.queue()
    assert [p["fname"] for p in waiting] == ["Ann Lee", "María José García"]
    image = waiting[1]["image"]
    assert image and PHOTO_URL.fullmatch(image), image
    content_type, photo = await staff.photo(image)
    assert content_type == "image/jpeg"
    with Image.open(io.BytesIO(photo)) as stored:
        assert stored.format == "JPEG" and stored.width > 100 and stored.height > 100

    await page.get_by_role("button", name="Done").click()
    await assert_clean(page, "María José García")
    assert await all_cameras_off(page)


async def test_a_patient_who_wants_no_photo_checks_in_without_one(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance, init_script=WATCH_CAMERA)
    # Check in with nothing typed: told kindly, nothing is sent.
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#fname-error")).to_have_text("Please type your name.")
    await expect(name_field(page)).to_have_attribute("aria-invalid", "true")
    await expect(name_field(page)).to_be_focused()
    await name_field(page).fill("   ")
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#fname-error")).to_be_visible()
    assert await staff.queue() == []

    await name_field(page).fill("Tom Okafor")
    await expect(page.locator("#fname-error")).to_be_hidden()
    await camera_on(page)
    await page.get_by_role("button", name="No photo").click()
    await expect(page.locator("#preview")).to_be_hidden()
    await expect(page.locator("#placeholder")).to_have_text("No photo")
    assert await all_cameras_off(page)

    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#position")).to_have_text("You are next in line.")
    assert await staff.queue() == [{"id": 1, "fname": "Tom Okafor", "image": None}]


# A slow tablet: making the JPEG of the picture takes half a second.
SLOW_PICTURE = """
const toBlob = HTMLCanvasElement.prototype.toBlob;
HTMLCanvasElement.prototype.toBlob = function (callback, ...rest) {
  toBlob.call(this, (blob) => setTimeout(() => callback(blob), 500), ...rest);
};
"""


async def test_check_in_pressed_while_the_picture_is_made_sends_the_photo(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance, init_script=WATCH_CAMERA + SLOW_PICTURE)
    await name_field(page).fill("Maria Lopez")
    await camera_on(page)
    await page.get_by_role("button", name="Take photo").click()
    await expect(page.get_by_role("button", name="Take photo")).to_be_disabled()
    await page.get_by_role("button", name="Check in").click()  # before the picture is ready

    await expect(page.locator("#position")).to_have_text("You are next in line.")
    waiting = await staff.queue()
    assert [p["fname"] for p in waiting] == ["Maria Lopez"]
    assert waiting[0]["image"] and PHOTO_URL.fullmatch(waiting[0]["image"]), waiting
    assert await all_cameras_off(page)


async def test_a_check_in_by_keyboard_alone(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance)

    async def tab_to(target) -> None:
        for _ in range(12):
            await page.keyboard.press("Tab")
            if await target.evaluate("el => el === document.activeElement"):
                return
        raise AssertionError("never reached by Tab")

    await tab_to(name_field(page))
    await page.keyboard.type("Lena Vogel")
    submit = page.get_by_role("button", name="Check in")
    await tab_to(submit)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Thank you!")).to_be_focused()
    await expect(page.locator("#position")).to_have_text("You are next in line.")
    assert [p["fname"] for p in await staff.queue()] == ["Lena Vogel"]

    done = page.get_by_role("button", name="Done")
    await page.keyboard.press("Tab")
    await expect(done).to_be_focused()
    await page.keyboard.press("Enter")
    await assert_clean(page, "Lena Vogel")

    # Enter in the name field checks in too.
    await tab_to(name_field(page))
    await page.keyboard.type("Omar Haddad")
    await page.keyboard.press("Enter")
    await expect(page.locator("#position")).to_have_text("You are number 2 in line.")
    assert [p["fname"] for p in await staff.queue()] == ["Lena Vogel", "Omar Haddad"]


# --- a network that fails ----------------------------------------------------------------


async def test_a_lost_answer_is_retried_with_the_same_key_and_adds_one_patient(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance)
    keys: list[str | None] = []
    seen_trying = asyncio.Event()

    async def flaky(route: Route) -> None:
        keys.append(await route.request.header_value("Idempotency-Key"))
        if len(keys) == 1:
            await route.fetch()  # the server checks the patient in…
            await route.abort("failed")  # …and the answer never reaches the kiosk
        elif len(keys) == 2:
            await route.fulfill(
                status=503,
                json={"error": "The database is unavailable.", "code": "database_unavailable"},
            )
        else:
            await seen_trying.wait()
            await route.continue_()

    await page.route("**/api/patients/", flaky)
    await name_field(page).fill("Rosa Díaz")
    await page.get_by_role("button", name="Check in").click()

    status = page.locator("#send-status")
    await expect(status).to_have_text(re.compile(r"^Still trying…"))
    await expect(page.get_by_role("button", name="Checking you in…")).to_have_attribute(
        "aria-disabled", "true"
    )
    await expect(name_field(page)).not_to_be_editable()
    assert [p["fname"] for p in await staff.queue()] == ["Rosa Díaz"]  # the first try counted
    seen_trying.set()  # the third try may go through

    await expect(page.get_by_role("heading", name="Thank you!")).to_be_visible(timeout=10_000)
    await expect(page.locator("#position")).to_have_text("You are next in line.")
    assert len(keys) == 3 and keys[0] and UUID.fullmatch(keys[0]), keys
    assert keys[0] == keys[1] == keys[2]
    assert [p["fname"] for p in await staff.queue()] == ["Rosa Díaz"]
    await page.unroute("**/api/patients/")

    # The next patient's check-in is a new submission with a new key.
    fresh: list[str | None] = []

    async def record(route: Route) -> None:
        fresh.append(await route.request.header_value("Idempotency-Key"))
        await route.continue_()

    await page.route("**/api/patients/", record)
    await page.get_by_role("button", name="Done").click()
    await name_field(page).fill("Ivan Petrov")
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#position")).to_have_text("You are number 2 in line.")
    assert len(fresh) == 1 and fresh[0] != keys[0] and UUID.fullmatch(fresh[0] or "")
    assert [p["fname"] for p in await staff.queue()] == ["Rosa Díaz", "Ivan Petrov"]


async def test_after_two_minutes_of_failures_pressing_again_reuses_the_key(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance)
    await page.clock.install()
    await page.reload()
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    await page.clock.pause_at(await page.evaluate("Date.now()") + 1000)
    keys: list[str | None] = []

    async def down(route: Route) -> None:
        keys.append(await route.request.header_value("Idempotency-Key"))
        if len(keys) == 1:
            await route.fetch()  # checked in, but the kiosk never hears so
        await route.abort("failed")

    await page.route("**/api/patients/", down)
    await name_field(page).fill("Noor Khan")
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#send-status")).to_have_text(re.compile(r"^Still trying…"))

    # Two minutes of backing off (at most 12 s between tries), then the kiosk stops.
    message = page.locator("#form-message")
    for _ in range(40):
        await page.clock.run_for(12_000)
        try:
            await expect(message).to_be_visible(timeout=250)
            break
        except AssertionError:
            continue
    await expect(message).to_have_text(re.compile(r"^We could not reach the check-in system\."))
    await expect(page.locator("#send-status")).to_have_text("")
    await expect(name_field(page)).to_have_value("Noor Khan")
    await expect(name_field(page)).to_be_editable()
    assert len(keys) > 5 and len(set(keys)) == 1, keys
    await page.unroute("**/api/patients/")

    # The network is back; pressing again sends the same key: the first check-in's answer.
    again: list[str | None] = []

    async def record(route: Route) -> None:
        again.append(await route.request.header_value("Idempotency-Key"))
        await route.continue_()

    await page.route("**/api/patients/", record)
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#position")).to_have_text("You are next in line.")
    assert again == keys[:1]
    assert [p["fname"] for p in await staff.queue()] == ["Noor Khan"]


# --- language -----------------------------------------------------------------------------


async def test_the_language_switches_at_once_and_the_next_patient_gets_the_clinics(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance, viewport=TABLET_LANDSCAPE)
    english = page.get_by_role("button", name="English")
    spanish = page.get_by_role("button", name="Español")
    await expect(english).to_have_attribute("aria-pressed", "true")
    await name_field(page).fill("Ana")

    await spanish.click()
    await expect(page.locator("html")).to_have_attribute("lang", "es")
    await expect(spanish).to_have_attribute("aria-pressed", "true")
    await expect(page.get_by_role("heading", name="Le damos la bienvenida")).to_be_visible()
    await expect(page.get_by_label("Su nombre completo")).to_have_value("Ana")  # kept
    await expect(page.get_by_role("button", name="Usar la cámara")).to_be_visible()
    await expect(page.get_by_role("button", name="Registrarme")).to_be_visible()
    await expect(page.get_by_text("Solo la ve el personal de la clínica.")).to_be_visible()
    await expect(page).to_have_title(re.compile(r"^Registro · Clinic$"))

    await english.click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    await expect(page.get_by_role("button", name="Check in")).to_be_visible()

    # A Spanish speaker checks in; the kiosk thanks them in Spanish, then the clinic's
    # language (English) is back for the next patient.
    await spanish.click()
    await page.get_by_label("Su nombre completo").fill("Ana Ruiz")
    await page.get_by_role("button", name="Registrarme").click()
    await expect(page.get_by_role("heading", name="¡Gracias!")).to_be_visible()
    await expect(page.locator("#position")).to_have_text("Su turno es el siguiente.")
    await page.get_by_role("button", name="Listo").click()
    await assert_clean(page, "Ana Ruiz")
    await expect(english).to_have_attribute("aria-pressed", "true")

    # The landscape layout, with the camera on.
    await name_field(page).fill("Jonathan Whitfield-Brown")
    await camera_on(page)
    await assert_fits(page)
    await page.mouse.move(5, 760)
    await screenshot(page, "kiosk-landscape")

    # A Spanish-speaking clinic: the kiosk starts in Spanish, and after a patient who chose
    # English it is Spanish again (the settings are read again between patients).
    await page.get_by_role("button", name="No photo").click()
    await staff.change_settings({"language": "es", "display_photos": True})
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    await page.get_by_role("button", name="Check in").click()
    await page.get_by_role("button", name="Done").click()
    await expect(page.get_by_role("heading", name="Le damos la bienvenida")).to_be_visible()
    await expect(spanish).to_have_attribute("aria-pressed", "true")
    # Photos are now shown on the waiting-room screen too, and the note says so.
    who = "La ve el personal de la clínica y aparece junto a su nombre en la pantalla"
    await expect(page.locator("#privacy-who")).to_have_text(re.compile(f"^{who}"))

    await page.reload()
    await expect(page.get_by_role("heading", name="Le damos la bienvenida")).to_be_visible()
    await expect(page.locator("#privacy-who")).to_have_text(re.compile(f"^{who}"))
    await english.click()
    await expect(page.locator("#privacy-who")).to_have_text(
        "The clinic's staff see it, and it is shown next to your name on the waiting-room screen."
    )


# --- clearing itself ------------------------------------------------------------------------


async def test_the_kiosk_clears_itself_after_a_check_in_and_when_left_half_done(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance, init_script=WATCH_CAMERA)
    await page.clock.install()
    await page.reload()
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    # Time stands still until the test moves it.
    await page.clock.pause_at(await page.evaluate("Date.now()") + 1000)

    # After a check-in: a minute to read it and scan the status link's QR code, counted
    # down, then the next patient, with nothing of that link left on the page.
    await name_field(page).fill("Priya Raman")
    await camera_on(page)
    await page.get_by_role("button", name="Take photo").click()
    await page.get_by_role("button", name="Check in").click()
    countdown = page.locator("#countdown")
    await expect(countdown).to_have_text("This screen clears in 60 s.")
    await expect(page.locator("#status-qr")).to_be_visible()
    await page.clock.run_for(4000)
    await expect(countdown).to_have_text("This screen clears in 56 s.")
    await page.clock.run_for(56_000)
    await assert_clean(page, "Priya Raman")
    assert await all_cameras_off(page)
    await expect(page.locator("#status-qr")).to_be_hidden()
    assert await page.locator("#status-qr").get_attribute("data-status-url") is None
    assert await page.locator("#status-qr-code").get_attribute("src") is None

    # Left half-done (a name, another language, the camera on): a minute without a touch
    # clears it all, and the camera goes off.
    await name_field(page).fill("Half Typ")
    await page.get_by_role("button", name="Español").click()
    await camera_on_es(page)
    await page.clock.run_for(59_000)
    await expect(page.get_by_label("Su nombre completo")).to_have_value("Half Typ")
    await page.clock.run_for(2_000)
    await assert_clean(page, "Half Typ")
    await expect(page.get_by_role("button", name="English")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert await all_cameras_off(page)

    # Touching the screen counts as being there.
    await name_field(page).fill("Still Here")
    await page.clock.run_for(50_000)
    await name_field(page).press("End")
    await page.clock.run_for(50_000)
    await expect(name_field(page)).to_have_value("Still Here")
    assert [p["fname"] for p in await staff.queue()] == ["Priya Raman"]


async def camera_on_es(page: Page) -> None:
    await page.get_by_role("button", name="Usar la cámara").click()
    await expect(page.locator("#preview")).to_be_visible()


# --- what the server refuses ------------------------------------------------------------------


async def test_without_a_camera_a_file_is_chosen_and_a_refused_one_is_explained(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance, init_script=REFUSE_CAMERA)
    await name_field(page).fill("Sam Patel")
    await page.get_by_role("button", name="Use the camera").click()
    await expect(page.locator("#camera-note")).to_have_text(
        re.compile(r"^The camera is not available\.")
    )
    file_input = page.locator("#photo-file")
    await expect(file_input).to_have_attribute("accept", "image/*")
    await expect(file_input).to_have_attribute("capture", "user")
    await expect(page.locator("#file-choose")).to_have_text("Take or choose a photo")
    await expect(page.get_by_role("button", name="Use the camera")).to_be_hidden()

    # Not a picture: the browser cannot read it, the server says 400, the kiosk says so.
    await file_input.set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture at all"}
    )
    await expect(page.locator("#placeholder")).to_have_text("Photo chosen")
    await page.get_by_role("button", name="Check in").click()
    error = page.locator("#photo-error")
    await expect(error).to_have_text(
        "This file is not a photo we can use. Please take the photo again, choose another "
        "one, or check in without a photo."
    )
    await expect(error).to_have_attribute("role", "alert")
    await expect(name_field(page)).to_have_value("Sam Patel")
    await expect(page.get_by_role("button", name="Check in")).to_have_attribute(
        "aria-disabled", "false"
    )
    await expect(page.locator("#placeholder")).to_have_text("No photo")
    assert await staff.queue() == []

    # The patient fixes it with a real photo.
    await file_input.set_input_files(
        {"name": "me.jpg", "mimeType": "image/jpeg", "buffer": face_jpeg()}
    )
    await expect(page.get_by_role("img", name="Your photo")).to_be_visible()
    await expect(error).to_be_hidden()
    await expect(page.locator("#file-choose")).to_have_text("Choose another photo")
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#position")).to_have_text("You are next in line.")
    (patient,) = await staff.queue()
    assert patient["fname"] == "Sam Patel" and PHOTO_URL.fullmatch(patient["image"] or "")
    content_type, _ = await staff.photo(patient["image"])
    assert content_type == "image/jpeg"


async def test_a_photo_the_server_finds_too_big_is_explained(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance)

    async def too_big(route: Route) -> None:
        await route.fulfill(
            status=413,
            json={"error": "The photo is larger than the 5 MB limit.", "code": "photo_too_large"},
        )

    await page.route("**/api/patients/", too_big)
    await name_field(page).fill("Bea Martín")
    await camera_on(page)
    await page.get_by_role("button", name="Take photo").click()
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#photo-error")).to_have_text(re.compile(r"^This photo is too big\."))
    await expect(name_field(page)).to_have_value("Bea Martín")
    await expect(page.get_by_role("button", name="Use the camera")).to_be_visible()
    assert await staff.queue() == []


async def test_on_plain_http_the_file_input_and_a_home_made_key_take_over(
    browser,
    appliance: Server,
    staff: Staff,
) -> None:
    page = await open_kiosk(browser, appliance, init_script=NOT_SECURE)
    assert await page.evaluate("navigator.mediaDevices === undefined && !crypto.randomUUID")
    await expect(page.get_by_role("button", name="Use the camera")).to_be_hidden()
    await expect(page.locator("#camera-note")).to_be_visible()
    await expect(page.locator("#file-choose")).to_have_text("Take or choose a photo")

    keys: list[str | None] = []

    async def record(route: Route) -> None:
        keys.append(await route.request.header_value("Idempotency-Key"))
        await route.continue_()

    await page.route("**/api/patients/", record)
    await name_field(page).fill("Kofi Mensah")
    await page.locator("#photo-file").set_input_files(
        {"name": "me.jpg", "mimeType": "image/jpeg", "buffer": face_jpeg()}
    )
    await expect(page.get_by_role("img", name="Your photo")).to_be_visible()
    await page.get_by_role("button", name="Check in").click()
    await expect(page.locator("#position")).to_have_text("You are next in line.")
    assert len(keys) == 1 and UUID.fullmatch(keys[0] or ""), keys
    (patient,) = await staff.queue()
    assert patient["fname"] == "Kofi Mensah" and PHOTO_URL.fullmatch(patient["image"] or "")
