"""The intake form in real Chromium against the real server: the kiosk asks the original
CheckIn's questions and a patient answers them all (read back by a doctor over the API), our
own messages for a missing answer and for one the server refuses, the form emptied for the
next patient; the admin switching the intake form and the compatibility preset (behind its
privacy warning); the doctor opening a patient's details with the SSN hidden until "Show"."""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser import LAPTOP, TABLET_PORTRAIT, screenshot, sign_in
from tests.serverproc import Server

ANSWERS: dict[str, str] = {
    "dob": "1985-03-15",
    "gender": "female",
    "pronoun": "she_her",
    "phone": "8045550100",
    "emergency_contact": "Luis Ruiz 8045550199",
    "ssn": "1234567890",
    "street1": "12 Main St",
    "street2": "Apt 4",
    "last_known_address": "12 Main St",
    "city": "Midlothian",
    "state": "VA",
    "zip": "23220",
    "medicaid_no": "123456789012",
    "id_card": "lost",
    "insurance": "dont_know",
    "race": "hispanic_latino",
    "pref_service_area": "east_end",
    "employed": "retired",
    "shower": "yes",
    "hungry": "no",
    "homeless": "no",
}


class Api:
    """The clinic's side over the real API: an admin (settings, queue) and a doctor (details)."""

    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.admin = self.bearer(server.create_token("admin", "Front office"))
        self.doctor = self.bearer(server.create_token("doctor", "Dr Api", room="Room 9"))

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.login(token)}"}

    def url(self, path: str) -> str:
        return f"{self.server.base_url}{path}"

    async def call(
        self, method: str, path: str, json: Any = None, *, as_doctor: bool = False
    ) -> tuple[int, Any]:
        headers = self.doctor if as_doctor else self.admin
        async with self.http.request(method, self.url(path), json=json, headers=headers) as r:
            return r.status, await r.json()

    async def ok(self, method: str, path: str, json: Any = None, **kw: Any) -> Any:
        status, body = await self.call(method, path, json, **kw)
        assert 200 <= status < 300, (status, body)
        return body

    async def waiting(self) -> list[dict[str, Any]]:
        return [item["patient"] for item in await self.ok("GET", "/api/queue/")]


@pytest.fixture
async def clinic_api(appliance: Server) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(appliance, http)


async def open_kiosk(browser, appliance: Server) -> Page:
    page = await sign_in(browser, appliance, "form", "Kiosk 1", viewport=TABLET_PORTRAIT)
    await expect(page).to_have_url(re.compile(r"/kiosk$"))
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    return page


def question(page: Page, key: str):
    return page.locator(f'.question[data-key="{key}"]')


async def pick(page: Page, key: str, value: str) -> None:
    await page.locator(f'#q-{key} [role="radio"][data-value="{value}"]').click()


async def answer_everything(page: Page, form: dict[str, Any], answers: dict[str, str]) -> None:
    for field in form["fields"]:
        key = field["key"]
        if key in ("fname", "image") or key not in answers:
            continue
        if field["kind"] == "choice":
            await pick(page, key, answers[key])
        else:
            await page.locator(f"#q-{key}").fill(answers[key])


# --- the kiosk ------------------------------------------------------------------------------


async def test_the_kiosk_asks_the_original_form_and_a_patient_answers_every_question(
    browser, appliance: Server, clinic_api: Api
) -> None:
    await clinic_api.ok("PATCH", "/api/settings/", {"intake_form": {"preset": "original"}})
    form = await clinic_api.ok("GET", "/api/intake-form/")
    page = await open_kiosk(browser, appliance)
    await expect(question(page, "homeless")).to_be_visible()

    # The name box is the one of every day; the questions come after it, in the form's order.
    keys = [f["key"] for f in form["fields"] if f["key"] not in ("fname", "image")]
    shown = await page.locator(".question").evaluate_all("qs => qs.map(q => q.dataset.key)")
    assert shown == keys
    await expect(page.get_by_label("Your full name")).to_be_visible()
    by_key = {f["key"]: f for f in form["fields"]}
    today = datetime.date.today().isoformat()
    dob = page.locator("#q-dob")
    await expect(dob).to_have_attribute("type", "date")
    await expect(dob).to_have_attribute("max", today)
    await expect(page.get_by_label(by_key["dob"]["label"]["en"], exact=True)).to_be_visible()
    phone = page.locator("#q-phone")
    await expect(phone).to_have_attribute("inputmode", "numeric")
    await expect(phone).to_have_attribute("maxlength", "10")
    await expect(page.locator("#q-zip")).to_have_attribute("maxlength", "5")
    await expect(page.locator("#q-medicaid_no")).to_have_attribute("maxlength", "12")
    # Choices are radio groups of big buttons, labelled from the form.
    gender = page.get_by_role("radiogroup", name=by_key["gender"]["label"]["en"])
    labels = [c["label"]["en"] for c in by_key["gender"]["choices"]]
    await expect(gender.get_by_role("radio")).to_have_text(labels)
    assert by_key["shower"].get("yes_no") is True
    await expect(page.locator("#q-shower.choices--yes-no [role=radio]")).to_have_count(2)
    for button in await page.locator(".choice:visible").all():
        box = await button.bounding_box()
        assert box is not None and box["height"] >= 48
    # The SSN is hidden while typed, with a Show toggle; nothing is offered to autocomplete.
    ssn = page.locator("#q-ssn")
    await expect(ssn).to_have_attribute("type", "password")
    await expect(ssn).to_have_attribute("autocomplete", "off")
    await expect(page.locator("#q-medicaid_no")).to_have_attribute("type", "password")

    # Only the name typed: each required question says what is missing, nothing is sent.
    await page.get_by_label("Your full name").fill("Rosa Ruiz")
    await page.get_by_role("button", name="Check in").click()
    await expect(question(page, "dob").locator(".field-error")).to_have_text(
        "Please answer this question."
    )
    await expect(question(page, "gender").locator(".field-error")).to_have_text(
        "Please choose one of the answers."
    )
    await expect(dob).to_be_focused()
    await expect(gender).to_have_attribute("aria-invalid", "true")
    await expect(question(page, "street2").locator(".field-error")).to_be_hidden()  # optional
    assert await clinic_api.waiting() == []

    await answer_everything(page, form, ANSWERS)
    await expect(gender.get_by_role("radio", checked=True)).to_have_count(1)
    await expect(question(page, "dob").locator(".field-error")).to_be_hidden()
    await page.get_by_role("button", name=re.compile(r"^Show ")).first.click()
    await expect(ssn).to_have_attribute("type", "text")
    await expect(ssn).to_have_value(ANSWERS["ssn"])
    await screenshot(page, "kiosk-intake-original")
    await page.get_by_role("button", name="Check in").click()
    await expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()

    (patient,) = await clinic_api.waiting()
    detail = await clinic_api.ok("GET", f"/api/patients/{patient['id']}/", as_doctor=True)
    assert detail["fname"] == "Rosa Ruiz"
    assert detail["intake"] == ANSWERS

    # The next patient finds nothing of Rosa's: every box empty, no answer picked, SSN hidden.
    await page.get_by_role("button", name="Done").click()
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    await expect(page.get_by_label("Your full name")).to_have_value("")
    for field in form["fields"]:
        if field["key"] in ("fname", "image"):
            continue
        if field["kind"] == "choice":
            await expect(page.locator(f"#q-{field['key']} [aria-checked=true]")).to_have_count(0)
        else:
            await expect(page.locator(f"#q-{field['key']}")).to_have_value("")
    await expect(ssn).to_have_attribute("type", "password")
    body = await page.locator("body").inner_text()
    for typed in ("Rosa", "Midlothian", "Luis Ruiz", "Main St"):
        assert typed not in body


async def test_an_answer_the_server_refuses_is_explained_beside_its_question(
    browser, appliance: Server, clinic_api: Api
) -> None:
    await clinic_api.ok("PATCH", "/api/settings/", {"intake_form": {"preset": "original"}})
    form = await clinic_api.ok("GET", "/api/intake-form/")
    page = await open_kiosk(browser, appliance)
    await expect(question(page, "homeless")).to_be_visible()
    await page.get_by_label("Your full name").fill("Tom Future")
    await answer_everything(page, form, {**ANSWERS, "dob": "2099-01-01"})
    # A ZIP code with too few digits is caught before sending, in our words.
    await page.locator("#q-zip").fill("2322")
    await page.get_by_role("button", name="Check in").click()
    await expect(question(page, "zip").locator(".field-error")).to_have_text(
        "Please type exactly 5 digits."
    )
    await expect(page.locator("#q-zip")).to_be_focused()
    await page.locator("#q-zip").fill("23220")
    await expect(question(page, "zip").locator(".field-error")).to_be_hidden()

    # The date picker offers no later day, but a typed one goes to the box, which refuses it.
    await page.get_by_role("button", name="Check in").click()
    error = question(page, "dob").locator(".field-error")
    await expect(error).to_have_text("This date cannot be in the future.")
    await expect(page.locator("#q-dob")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#q-dob")).to_be_focused()
    await expect(page.locator("#form-message")).to_have_text(
        "Please check the answers marked below."
    )
    assert "Date of birth cannot be in the future" not in await page.content()  # not theirs
    assert await clinic_api.waiting() == []
    await expect(page.get_by_label("Your full name")).to_have_value("Tom Future")  # kept

    await page.locator("#q-dob").fill("1990-07-01")
    await expect(error).to_be_hidden()
    await page.get_by_role("button", name="Check in").click()
    await expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    (patient,) = await clinic_api.waiting()
    detail = await clinic_api.ok("GET", f"/api/patients/{patient['id']}/", as_doctor=True)
    assert detail["intake"]["dob"] == "1990-07-01"


async def test_the_kiosk_shows_the_custom_form_in_the_patients_language(
    browser, appliance: Server, clinic_api: Api
) -> None:
    custom = {
        "preset": "custom",
        "fields": [
            {"key": "fname", "required": True},
            {
                "key": "shower",
                "required": True,
                "label": {"en": "Shower today?", "es": "¿Ducha hoy?"},
            },
            {"key": "street2", "required": False},
            {"key": "image", "required": False},
        ],
    }
    await clinic_api.ok("PATCH", "/api/settings/", {"intake_form": custom})
    page = await open_kiosk(browser, appliance)
    shower = page.get_by_role("radiogroup", name="Shower today?")
    await expect(shower).to_be_visible()
    await expect(page.locator(".question")).to_have_count(2)
    await expect(question(page, "street2").locator(".question__optional")).to_have_text(
        "(optional)"
    )
    await page.get_by_role("button", name="Español").click()
    await expect(page.get_by_role("radiogroup", name="¿Ducha hoy?")).to_be_visible()
    await page.get_by_label("Su nombre completo").fill("Ana Ruiz")
    # Keyboard: the arrows move through the answers and pick one.
    first = page.locator('#q-shower [role="radio"]').first
    await first.focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.locator('#q-shower [aria-checked="true"]')).to_have_attribute(
        "data-value", "no"
    )
    await page.get_by_role("button", name="Registrarme").click()
    await expect(page.get_by_role("heading", name="¡Gracias!")).to_be_visible()
    (patient,) = await clinic_api.waiting()
    detail = await clinic_api.ok("GET", f"/api/patients/{patient['id']}/", as_doctor=True)
    assert detail["intake"]["shower"] == "no"


# --- the admin ------------------------------------------------------------------------------


async def test_the_admin_chooses_the_intake_form_and_the_compatibility_preset(
    browser, appliance: Server, clinic_api: Api
) -> None:
    page = await sign_in(browser, appliance, "admin", "Boss", viewport=LAPTOP)
    section = page.locator("#intake")
    await expect(section.get_by_label("Name only (and an optional photo)")).to_be_checked()
    await expect(page.locator("#compat-state")).to_have_text("Now: privacy defaults.")

    # A custom form: date of birth and the shower question, with a Spanish label of our own.
    await section.get_by_label("Questions I choose").check()
    await expect(page.locator("#intake-custom")).to_be_visible()
    name_ask = section.get_by_label("Ask: Full name")
    await expect(name_ask).to_be_checked()
    await expect(name_ask).to_be_disabled()
    await section.get_by_label("Ask: Date of birth").check()
    await expect(section.get_by_label("Sensitive: Date of birth")).to_be_checked()
    await section.get_by_label("Ask: Are you employed?").check()
    await section.get_by_label("Required: Are you employed?").uncheck()
    await section.get_by_label("Spanish label for Are you employed?").fill("¿Trabaja usted?")
    await section.get_by_role("button", name="Save the intake form").click()
    await expect(page.locator("#intake-status")).to_have_text(
        "Intake form saved. The kiosk uses it from the next patient."
    )
    form = await clinic_api.ok("GET", "/api/intake-form/")
    assert form["preset"] == "custom"
    fields = {f["key"]: f for f in form["fields"]}
    assert [k for k in fields if k not in ("image",)] == ["fname", "dob", "employed"]
    assert fields["dob"]["required"] is True and fields["dob"]["sensitive"] is True
    assert fields["employed"]["required"] is False
    assert fields["employed"]["label"]["es"] == "¿Trabaja usted?"
    await page.reload()
    await expect(page.locator("#intake-custom")).to_be_visible()
    await expect(section.get_by_label("Ask: Are you employed?")).to_be_checked()
    await expect(section.get_by_label("Spanish label for Are you employed?")).to_have_value(
        "¿Trabaja usted?"
    )

    # Compatibility with the original CheckIn: a clear warning, then a confirmation.
    compat = page.locator("#compat")
    await expect(compat.locator("#compat-warning")).to_contain_text(
        "patients' full names and photos are shown on the waiting-room screen"
    )
    await expect(compat.locator("#compat-warning")).to_contain_text("Social Security number")
    await compat.get_by_role("button", name="Turn on").click()
    dialog = page.get_by_role("dialog", name="Turn on compatibility with the original CheckIn?")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#preset-warning")).to_contain_text("without signing in")
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await screenshot(page, "admin-compat-confirm")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    settings = await clinic_api.ok("GET", "/api/settings/")
    assert settings["anonymous_feed"] is False  # cancelled: nothing changed

    await compat.get_by_role("button", name="Turn on").click()
    await dialog.get_by_role("button", name="Yes, turn it on").click()
    await expect(page.locator("#compat-status")).to_have_text(
        "Compatibility with the original CheckIn is on."
    )
    await expect(page.locator("#compat-state")).to_have_text(
        "Now: compatible with the original CheckIn."
    )
    settings = await clinic_api.ok("GET", "/api/settings/")
    assert settings["anonymous_feed"] is True
    assert settings["display_names"] == "full" and settings["display_photos"] is True
    assert (await clinic_api.ok("GET", "/api/intake-form/"))["preset"] == "original"
    await expect(section.get_by_label("The original CheckIn's full form")).to_be_checked()
    settings_form = page.locator("#settings")
    await expect(
        settings_form.get_by_label("Let devices read the live queue without signing in")
    ).to_be_checked()
    await expect(
        settings_form.get_by_label("Show patients' photos on the waiting-room display")
    ).to_be_checked()

    await compat.get_by_role("button", name="Restore privacy defaults").click()
    restore = page.get_by_role("dialog", name="Restore the privacy defaults?")
    await expect(restore.locator("#preset-warning")).to_be_hidden()
    await restore.get_by_role("button", name="Restore privacy defaults").click()
    await expect(page.locator("#compat-state")).to_have_text("Now: privacy defaults.")
    settings = await clinic_api.ok("GET", "/api/settings/")
    assert settings["anonymous_feed"] is False and settings["display_photos"] is False
    assert (await clinic_api.ok("GET", "/api/intake-form/"))["preset"] == "name"
    await expect(section.get_by_label("Name only (and an optional photo)")).to_be_checked()


# --- the doctor -----------------------------------------------------------------------------


async def test_the_doctor_opens_a_patients_details_with_the_ssn_hidden_until_show(
    browser, appliance: Server, clinic_api: Api
) -> None:
    await clinic_api.ok("PATCH", "/api/settings/", {"intake_form": {"preset": "original"}})
    form = await clinic_api.ok("GET", "/api/intake-form/")
    labels = {f["key"]: f["label"]["en"] for f in form["fields"]}
    gender_label = next(
        c["label"]["en"]
        for f in form["fields"]
        if f["key"] == "gender"
        for c in f["choices"]
        if c["value"] == "female"
    )
    await clinic_api.ok("POST", "/api/patients/", {"fname": "Rosa Ruiz", **ANSWERS})
    await clinic_api.ok("POST", "/api/patients/", {"fname": "Bob Stone", **ANSWERS})
    page = await sign_in(browser, appliance, "doctor", "Dr Who", viewport=LAPTOP, room="Room 2")
    await expect(page.locator("#queue-list .patient__name")).to_have_text(
        ["Rosa Ruiz", "Bob Stone"]
    )

    opener = page.get_by_role("button", name="Rosa Ruiz", exact=True)
    await opener.click()
    dialog = page.get_by_role("dialog", name="Rosa Ruiz")
    await expect(dialog).to_be_visible()
    answers = dialog.locator("#detail-answers")
    await expect(answers.locator('[data-key="gender"] dd')).to_have_text(gender_label)
    await expect(answers.locator('[data-key="gender"] dt')).to_have_text(labels["gender"])
    ssn = answers.locator('[data-key="ssn"]')
    await expect(ssn.locator("dd")).to_contain_text("••••••")
    assert ANSWERS["ssn"] not in await dialog.inner_text()
    assert ANSWERS["ssn"] not in await page.content()
    await screenshot(page, "doctor-detail")
    show = ssn.get_by_role("button", name=f"Show {labels['ssn']}")
    await expect(show).to_have_attribute("aria-pressed", "false")
    await show.click()
    await expect(ssn.locator(".detail__value")).to_have_text(ANSWERS["ssn"])
    await expect(ssn.get_by_role("button", name=f"Hide {labels['ssn']}")).to_be_focused()
    # Not sensitive: shown at once.
    await expect(answers.locator('[data-key="hungry"] .detail__masked')).to_have_count(0)

    # Escape closes it, the focus goes back to the name, and the SSN leaves the page.
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(opener).to_be_focused()
    # The dialog's close event (a task after it hides) empties it.
    await expect(answers.locator("[data-key]")).to_have_count(0)
    assert ANSWERS["ssn"] not in await page.content()
    assert [p["fname"] for p in await clinic_api.waiting()] == ["Rosa Ruiz", "Bob Stone"]

    # By keyboard alone, from a recently called patient; the Close button closes it.
    await page.get_by_role("button", name="Call next").click()
    recent = page.locator("#recent-list").get_by_role("button", name="Rosa Ruiz")
    await recent.focus()
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    await expect(dialog.locator("#detail-facts")).to_contain_text("Room 2")
    await expect(ssn.locator("dd")).to_contain_text("••••••")  # hidden again
    await page.keyboard.press("Enter")  # on Close: closes, calls nobody
    await expect(dialog).to_be_hidden()
    assert [p["fname"] for p in await clinic_api.waiting()] == ["Bob Stone"]
