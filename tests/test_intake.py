"""The clinic's intake form: what the kiosk asks, what is stored, who sees the answers.

The original CheckIn's own form, rule by rule, is tested from its spec in
test_original_intake.py; here: the setting, a clinic's own form, the staff's detail view,
the preset, and retries.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from checkin_appliance.domain import Role
from checkin_appliance.web.keys import CONFIG
from tests.conftest import Clinic, next_message

CUSTOM = {
    "preset": "custom",
    "fields": [
        {"key": "dob", "required": True},
        {"key": "phone", "required": False, "label": {"en": "Mobile", "es": "Móvil"}},
        {"key": "shower", "required": True, "sensitive": True},
    ],
}


async def set_form(clinic: Clinic, form: dict[str, Any]) -> Any:
    resp = await clinic.client.patch(
        "/api/settings/", json={"intake_form": form}, headers=clinic.headers(Role.ADMIN)
    )
    return resp.status, await resp.json()


async def post(clinic: Clinic, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
    resp = await clinic.client.post(
        "/api/patients/", json=body, headers={**clinic.headers(Role.FORM), **headers}
    )
    return resp.status, await resp.json()


def stored_intake(clinic: Clinic, patient_id: int) -> Any:
    with sqlite3.connect(clinic.app[CONFIG].db_path) as db:
        (text,) = db.execute("SELECT intake FROM patients WHERE id = ?", (patient_id,)).fetchone()
    return None if text is None else json.loads(text)


async def test_the_kiosk_learns_the_form_it_must_ask(clinic: Clinic) -> None:
    resp = await clinic.client.get("/api/intake-form/", headers=clinic.headers(Role.FORM))
    assert resp.status == 200
    form = await resp.json()
    assert form["preset"] == "name"
    assert [f["key"] for f in form["fields"]] == ["fname", "image"]

    assert (await set_form(clinic, CUSTOM))[0] == 200
    resp = await clinic.client.get("/api/intake-form/", headers=clinic.headers(Role.FORM))
    fields = (await resp.json())["fields"]
    assert [f["key"] for f in fields] == ["fname", "dob", "phone", "shower", "image"]
    by_key = {f["key"]: f for f in fields}
    assert by_key["phone"]["label"] == {"en": "Mobile", "es": "Móvil"}
    assert by_key["phone"]["required"] is False and by_key["phone"]["sensitive"] is True
    assert by_key["phone"]["kind"] == "digits" and by_key["phone"]["digits"] == 10
    assert by_key["dob"]["kind"] == "date" and by_key["dob"]["label"]["es"]
    assert by_key["shower"]["yes_no"] is True
    assert [c["value"] for c in by_key["shower"]["choices"]] == ["yes", "no"]
    assert by_key["image"]["required"] is False

    assert (await clinic.client.get("/api/intake-form/")).status == 401


@pytest.mark.parametrize(
    "form",
    [
        {"preset": "all"},
        {"preset": "original", "fields": []},
        {"preset": "custom"},
        {"preset": "custom", "fields": [{"key": "pin"}]},
        {"preset": "custom", "fields": [{"key": {"a": 1}}]},
        {"preset": "custom", "fields": [{"key": "fname", "required": False}]},
        {"preset": "custom", "fields": [{"key": "dob", "required": "yes"}]},
        {"preset": "custom", "fields": [{"key": "dob", "label": {"fr": "Né le"}}]},
        {"preset": "custom", "fields": [{"key": "dob", "label": {"en": "   "}}]},
        {"preset": "custom", "fields": [{"key": "dob", "label": {"en": "a\u202eb"}}]},
        {"preset": "custom", "fields": [{"key": "dob", "colour": "red"}]},
        "original",
    ],
)
async def test_a_bad_form_is_refused_and_the_old_one_stays(clinic: Clinic, form: Any) -> None:
    status, body = await set_form(clinic, form)
    assert status == 400
    assert body["code"] == "setting_value_invalid" and body["error"].startswith("intake_form")
    resp = await clinic.client.get("/api/settings/", headers=clinic.headers(Role.ADMIN))
    assert (await resp.json())["intake_form"] == {"preset": "name"}


async def test_a_clinics_own_form_stores_only_what_it_asks(clinic: Clinic) -> None:
    await set_form(clinic, CUSTOM)
    status, body = await post(
        clinic,
        {"fname": "Ann Lee", "dob": "1980-2-3", "shower": "no", "ssn": "1234567890"},
    )
    assert status == 201, body
    assert list(body)[:6] == ["id", "fname", "dob", "phone", "shower", "image"]
    assert body["dob"] == "1980-02-03" and body["phone"] is None and body["shower"] == "no"
    assert "ssn" not in body  # not asked: neither stored nor echoed
    assert stored_intake(clinic, body["id"]) == {"dob": "1980-02-03", "phone": None, "shower": "no"}


async def test_a_clinics_required_question_must_be_answered(clinic: Clinic) -> None:
    """In a clinic's own form "required" means answered: unlike the original's form, an
    empty value is not let through as null."""
    await set_form(clinic, CUSTOM)
    status, body = await post(clinic, {"fname": "Ann Lee", "dob": None, "shower": "maybe"})
    assert status == 400
    assert body == {
        "dob": ["This field is required."],
        "shower": ['"maybe" is not a valid choice.'],
        "codes": {"dob": "field_required", "shower": "choice_invalid"},
        "error": "This field is required.",
        "code": "field_required",
    }
    form = await clinic.client.post(
        "/api/patients/",
        data={"fname": "Ann Lee", "dob": "", "shower": "yes", "phone": "12"},
        headers=clinic.headers(Role.FORM),
    )
    assert form.status == 400
    assert (await form.json())["codes"] == {"dob": "field_required", "phone": "format_invalid"}
    waiting = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    assert await waiting.json() == []  # nothing half-stored


async def test_the_name_only_form_answers_keyed_by_field_with_its_own_wording(
    clinic: Clinic,
) -> None:
    status, body = await post(clinic, {"dob": "1980-01-01"})
    assert status == 400
    assert body == {
        "fname": ["fname is required."],
        "codes": {"fname": "name_required"},
        "error": "fname is required.",
        "code": "name_required",
    }


async def test_free_text_answers_refuse_control_characters(clinic: Clinic) -> None:
    """A staff page shows the answers: an escape or a bidi override must not get there."""
    await set_form(clinic, {"preset": "custom", "fields": [{"key": "emergency_contact"}]})
    for text in ("Jo\x1b[31m", "Jo\u202eeoD"):
        status, body = await post(clinic, {"fname": "Ann Lee", "emergency_contact": text})
        assert status == 400 and body["codes"] == {"emergency_contact": "field_invalid_character"}


async def test_staff_see_every_answer_and_each_look_is_audited(clinic: Clinic) -> None:
    await set_form(clinic, {"preset": "original"})
    await set_form(clinic, CUSTOM)  # the form changed since: the answers stay readable
    status, checked_in = await post(
        clinic, {"fname": "Ann Lee", "dob": "1980-02-03", "shower": "yes"}
    )
    assert status == 201
    path = f"/api/patients/{checked_in['id']}/"

    resp = await clinic.client.get(path, headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 200
    detail = await resp.json()
    assert detail["fname"] == "Ann Lee" and detail["status"] == "waiting"
    assert detail["intake"] == {"dob": "1980-02-03", "phone": None, "shower": "yes"}
    labels = {f["key"]: f["label"]["en"] for f in detail["form"]}
    assert labels == {"dob": "Date of birth", "phone": "Mobile", "shower": "Do you need a shower?"}

    for role, status in ((Role.FORM, 403), (Role.QUEUE, 403), (Role.ADMIN, 200), (None, 401)):
        assert (await clinic.client.get(path, headers=clinic.headers(role))).status == status
    missing = await clinic.client.get("/api/patients/999/", headers=clinic.headers(Role.DOCTOR))
    assert missing.status == 404 and (await missing.json())["code"] == "patient_not_found"

    with sqlite3.connect(clinic.app[CONFIG].db_path) as db:
        looks = db.execute(
            "SELECT patient_id, detail FROM audit_log WHERE action = 'patient_viewed'"
        ).fetchall()
    assert looks == [(checked_in["id"], None)] * 2  # the doctor's and the admin's


async def test_answers_never_reach_the_feed_or_the_queue(clinic: Clinic) -> None:
    await set_form(clinic, {"preset": "original"})
    await clinic.client.patch(
        "/api/settings/",
        json={"anonymous_feed": True, "display_names": "full"},
        headers=clinic.headers(Role.ADMIN),
    )
    staff = await clinic.subscribe(Role.DOCTOR)
    display = await clinic.subscribe(None)
    answers = {
        "fname": "Ann Lee", "dob": "1971-04-05", "gender": "female", "pronoun": "she_her",
        "phone": "8045550199", "emergency_contact": "Bo Lee 8045550100", "ssn": "9876543210",
        "street1": "1 Secret Lane", "last_known_address": "1 Secret Lane", "city": "Richmond",
        "state": "VA", "zip": "23220", "medicaid_no": "111122223333", "id_card": "yes",
        "insurance": "aetna", "race": "asian", "pref_service_area": "ashland",
        "employed": "no", "shower": "no", "hungry": "yes", "homeless": "no",
    }  # fmt: skip
    status, body = await post(clinic, answers)
    assert status == 201, body
    secrets = [v for k, v in answers.items() if k != "fname"]
    seen = [json.dumps(await next_message(ws)) for ws in (staff, display)]
    for reader in (None, Role.QUEUE, Role.DOCTOR):
        resp = await clinic.client.get("/api/queue/", headers=clinic.headers(reader))
        seen.append(await resp.text())
    for text in seen:
        assert "Ann Lee" in text
        assert not [s for s in secrets if len(s) > 3 and s in text], text


async def test_a_retried_check_in_gets_its_answers_again_and_other_answers_are_refused(
    clinic: Clinic,
) -> None:
    await set_form(clinic, CUSTOM)
    answers = {"fname": "Ann Lee", "dob": "1980-02-03", "shower": "yes"}
    first = await post(clinic, answers, **{"Idempotency-Key": "k1"})
    again = await post(clinic, answers, **{"Idempotency-Key": "k1"})
    assert first[0] == again[0] == 201
    # The same answer, answers included; only the status link is new (the first one's
    # token is not kept, so the kiosk shows the link of the answer it got).
    assert again[1].pop("status_url") != first[1].pop("status_url")
    assert again[1] == first[1]
    other = await post(clinic, {**answers, "shower": "no"}, **{"Idempotency-Key": "k1"})
    assert other[0] == 422 and other[1]["code"] == "idempotency_key_reused"
    resp = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    assert len(await resp.json()) == 1


async def test_the_admin_applies_the_original_preset_and_restores_privacy(clinic: Clinic) -> None:
    preset = "/api/settings/preset/"
    resp = await clinic.client.post(
        preset, json={"name": "original"}, headers=clinic.headers(Role.DOCTOR)
    )
    assert resp.status == 403
    resp = await clinic.client.post(
        preset, json={"name": "open"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 400 and (await resp.json())["code"] == "preset_unknown"

    resp = await clinic.client.post(
        preset, json={"name": "original"}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    opened = await resp.json()
    assert opened["intake_form"] == {"preset": "original"} and opened["anonymous_feed"] is True
    assert (await clinic.client.get("/api/queue/")).status == 200
    form = await clinic.client.get("/api/intake-form/", headers=clinic.headers(Role.FORM))
    assert len((await form.json())["fields"]) == 23

    resp = await clinic.client.post(
        preset, json={"name": "private"}, headers=clinic.headers(Role.ADMIN)
    )
    closed = await resp.json()
    assert (closed["anonymous_feed"], closed["display_names"], closed["display_photos"]) == (
        False,
        "first_initial",
        False,
    )
    assert closed["intake_form"] == {"preset": "name"}
    assert (await clinic.client.get("/api/queue/")).status == 401
