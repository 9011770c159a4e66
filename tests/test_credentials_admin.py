"""An administrator edits, reactivates and watches credentials: label, room and lines changed
(audited), a deactivated credential brought back (its old sessions stay ended), each device's
last contact and whether it is online now, and the page of a device the admin signed out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType

from checkin_appliance import audit
from checkin_appliance.domain import Role, parse_time
from checkin_appliance.web.auth import SESSION_COOKIE
from checkin_appliance.web.keys import STORE
from checkin_appliance.web.messages.common import MESSAGES
from tests.conftest import PASSWORD, Clinic


async def listed(clinic: Clinic, token: str) -> dict[str, Any]:
    resp = await clinic.client.get("/api/credentials/", headers=clinic.headers(Role.ADMIN))
    assert resp.status == 200
    return next(c for c in await resp.json() if c["token"] == token)


async def audit_rows(clinic: Clinic, action: str) -> list[Any]:
    return [e for e in await clinic.app[STORE].audit_entries() if e.action == action]


async def test_label_room_and_lines_change_and_each_change_is_audited(clinic: Clinic) -> None:
    admin = clinic.headers(Role.ADMIN)
    token = clinic.tokens[Role.DOCTOR]
    resp = await clinic.client.patch(
        f"/api/credentials/{token}/",
        json={"label": "  Dr. Ana Ruiz ", "room": "Room 7", "lines": []},
        headers=admin,
    )
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert (changed["label"], changed["room"], changed["lines"]) == ("Dr. Ana Ruiz", "Room 7", [])
    assert (await listed(clinic, token))["label"] == "Dr. Ana Ruiz"
    rows = await audit_rows(clinic, audit.CREDENTIAL_CHANGED)
    assert rows and '"label":"Dr. Ana Ruiz"' in rows[-1].detail
    assert '"room":"Room 7"' in rows[-1].detail

    for body in ({"label": ""}, {"label": "x" * 101}, {"label": "a\u202eb"}, {"token": "1"}):
        bad = await clinic.client.patch(f"/api/credentials/{token}/", json=body, headers=admin)
        assert bad.status == 400, body
    assert (await listed(clinic, token))["label"] == "Dr. Ana Ruiz"


async def test_reactivated_credential_signs_in_again_but_old_sessions_stay_ended(
    clinic: Clinic,
) -> None:
    admin = clinic.headers(Role.ADMIN)
    token = clinic.tokens[Role.FORM]
    old = clinic.headers(Role.FORM)
    assert (await clinic.client.post(f"/api/credentials/{token}/deactivate/", headers=admin)).ok

    resp = await clinic.client.post(f"/api/credentials/{token}/reactivate/", headers=admin)
    assert resp.status == 200
    assert (await resp.json())["active"] is True
    assert (await listed(clinic, token))["active"] is True
    assert len(await audit_rows(clinic, audit.CREDENTIAL_REACTIVATED)) == 1

    assert (await clinic.client.get("/api/patients/", headers=old)).status == 401
    fresh = await clinic.login(token, PASSWORD)
    again = await clinic.client.get("/api/patients/", headers={"Authorization": f"Bearer {fresh}"})
    assert again.status == 200

    # Again on an active one: nothing changes, no second audit row.
    resp = await clinic.client.post(f"/api/credentials/{token}/reactivate/", headers=admin)
    assert resp.status == 200 and (await resp.json())["active"] is True
    assert len(await audit_rows(clinic, audit.CREDENTIAL_REACTIVATED)) == 1


async def test_reactivate_is_admin_only_and_404_for_an_unknown_token(clinic: Clinic) -> None:
    token = clinic.tokens[Role.FORM]
    for role in (Role.FORM, Role.DOCTOR, Role.QUEUE):
        resp = await clinic.client.post(
            f"/api/credentials/{token}/reactivate/", headers=clinic.headers(role)
        )
        assert resp.status == 403
    assert (await clinic.client.post(f"/api/credentials/{token}/reactivate/")).status == 401
    resp = await clinic.client.post(
        "/api/credentials/00000000/reactivate/", headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 404
    assert (await resp.json())["code"] == "no_such_credential"


async def test_last_seen_and_online(clinic: Clinic) -> None:
    before = datetime.now(UTC)
    never = await clinic.add_credential(Role.QUEUE, "Spare TV")
    item = await listed(clinic, never)
    assert (item["last_seen"], item["online"]) == (None, False)

    # Signed in: seen then, not online (no live feed).
    tv = await clinic.add_credential(Role.QUEUE, "Hall TV")
    access = await clinic.login(tv)
    item = await listed(clinic, tv)
    assert item["online"] is False
    assert parse_time(item["last_seen"]) >= before.replace(microsecond=0)

    ws = await clinic.client.ws_connect(f"/ws/queue/?token={access}")
    item = await listed(clinic, tv)
    assert item["online"] is True
    assert abs((parse_time(item["last_seen"]) - datetime.now(UTC)).total_seconds()) < 5
    await ws.close()
    for _ in range(100):
        if not (await listed(clinic, tv))["online"]:
            break
        await asyncio.sleep(0.05)
    item = await listed(clinic, tv)
    assert item["online"] is False and item["last_seen"] is not None


async def test_last_seen_survives_a_restart_from_the_sessions(
    clinic: Clinic, start_clinic: Any
) -> None:
    tv = await clinic.add_credential(Role.QUEUE, "Hall TV")
    await clinic.login(tv)
    seen = (await listed(clinic, tv))["last_seen"]
    tokens = dict(clinic.tokens)
    await clinic.client.close()
    again = await start_clinic(tokens=tokens)
    item = await listed(again, tv)
    assert item["last_seen"] is not None
    assert abs((parse_time(item["last_seen"]) - parse_time(seen)).total_seconds()) < 2


async def test_password_change_and_deactivation_close_the_feed_with_4403(clinic: Clinic) -> None:
    admin = clinic.headers(Role.ADMIN)
    token = clinic.tokens[Role.QUEUE]
    ws = await clinic.subscribe(Role.QUEUE)
    resp = await clinic.client.post(
        f"/api/credentials/{token}/password/",
        json={"password": "new wall tv pass 42"},
        headers=admin,
    )
    assert resp.status == 200
    msg = await ws.receive(timeout=5)
    while msg.type is WSMsgType.TEXT:
        msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE and ws.close_code == 4403


async def page_cookie(clinic: Clinic, token: str) -> dict[str, str]:
    resp = await clinic.client.post(
        "/login",
        data={"token": token, "password": PASSWORD},
        headers={"Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    return {"Cookie": f"{SESSION_COOKIE}={resp.cookies[SESSION_COOKIE].value}"}


async def test_a_device_page_the_admin_signed_out_says_so_instead_of_the_sign_in_form(
    clinic: Clinic,
) -> None:
    admin = clinic.headers(Role.ADMIN)
    kiosk = await clinic.add_credential(Role.FORM, "Front kiosk")
    tv = await clinic.add_credential(Role.QUEUE, "Hall TV")
    kiosk_cookie, tv_cookie = await page_cookie(clinic, kiosk), await page_cookie(clinic, tv)
    assert (await clinic.client.get("/kiosk", headers=kiosk_cookie)).status == 200

    await clinic.client.post(f"/api/credentials/{kiosk}/deactivate/", headers=admin)
    await clinic.client.post(
        f"/api/credentials/{tv}/password/", json={"password": "new wall tv pass 42"}, headers=admin
    )
    for path, cookie in (("/kiosk", kiosk_cookie), ("/display", tv_cookie)):
        resp = await clinic.client.get(path, headers=cookie, allow_redirects=False)
        assert resp.status == 200, path
        page = await resp.text()
        assert 'id="signed-out"' in page
        assert 'name="password"' not in page  # never the sign-in form
        assert f'href="/login?next={path}"' in page

        assert MESSAGES["en"]["signed_out.title"] in page

    # In the clinic's language.
    spanish = await clinic.client.patch("/api/settings/", json={"language": "es"}, headers=admin)
    assert spanish.status == 200
    page = await (await clinic.client.get("/kiosk", headers=kiosk_cookie)).text()
    assert MESSAGES["es"]["signed_out.title"] in page

    # A session that merely ended (signed out on the device itself) still goes to sign-in.
    other = await clinic.add_credential(Role.FORM, "Back kiosk")
    cookie = await page_cookie(clinic, other)
    out = await clinic.client.post(
        "/logout", headers={**cookie, "Sec-Fetch-Site": "same-origin"}, allow_redirects=False
    )
    assert out.status == 303
    resp = await clinic.client.get("/kiosk", headers=cookie, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")
