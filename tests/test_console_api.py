"""GET /api/doctors/current/: the doctor console's own open call, found again after a reload.

Only the credential that made the call gets it, only while the visit is still open for it
(called, in service, no-show), and never any role that may not call."""

from __future__ import annotations

from typing import Any

from checkin_appliance.domain import Role
from tests.conftest import Clinic

ROOM = "Room 3"


async def current(clinic: Clinic, headers: dict[str, str]) -> Any:
    resp = await clinic.client.get("/api/doctors/current/", headers=headers)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["current"]


async def act(clinic: Clinic, headers: dict[str, str], action: str, **fields: Any) -> Any:
    resp = await clinic.client.post(
        "/api/doctors/", json={"action": action, **fields}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def doctor(clinic: Clinic, label: str, room: str | None = None) -> dict[str, str]:
    token = await clinic.add_credential(Role.DOCTOR, label, room)
    return {"Authorization": f"Bearer {await clinic.login(token)}"}


async def test_the_open_call_follows_the_visit_through_the_cycle(clinic: Clinic) -> None:
    lee = await doctor(clinic, "Dr. Lee", ROOM)
    assert await current(clinic, lee) is None
    ann = await clinic.check_in("Ann Example-Longname")
    bob = await clinic.check_in("Bob Example")

    await act(clinic, lee, "call_next")
    call = await current(clinic, lee)
    assert call["id"] == ann["queue_entry_id"]
    assert call["patient"] == {"id": ann["id"], "fname": "Ann Example-Longname", "image": None}
    assert (call["status"], call["room"], call["call_count"]) == ("called", ROOM, 1)
    assert (call["ticket"], call["line"], call["priority"]) == (ann["ticket"], "A", "normal")
    assert call["called_at"] and call["check_in_time"] == ann["check_in_time"]

    await act(clinic, lee, "recall", patient_id=ann["id"])
    assert (await current(clinic, lee))["call_count"] == 2
    await act(clinic, lee, "no_show", patient_id=ann["id"])
    assert (await current(clinic, lee))["status"] == "no_show"
    await act(clinic, lee, "requeue", patient_id=ann["id"], position="front")
    assert await current(clinic, lee) is None  # waiting again: nobody's call
    await act(clinic, lee, "undo", patient_id=ann["id"])
    assert (await current(clinic, lee))["status"] == "no_show"  # the undo brings it back

    # A newer call is the open one; done closes it.
    await act(clinic, lee, "complete", patient_id=bob["id"])
    assert (await current(clinic, lee))["patient"]["id"] == bob["id"]
    await act(clinic, lee, "start", patient_id=bob["id"])
    assert (await current(clinic, lee))["status"] == "in_service"
    await act(clinic, lee, "done", patient_id=bob["id"])
    assert await current(clinic, lee) is None

    # An undone call is nobody's.
    await act(clinic, lee, "requeue", patient_id=ann["id"], position="back")
    await act(clinic, lee, "call_next")
    assert (await current(clinic, lee))["patient"]["id"] == ann["id"]
    await act(clinic, lee, "undo")
    assert await current(clinic, lee) is None


async def test_only_the_caller_sees_it_and_a_transfer_passes_it_on(clinic: Clinic) -> None:
    resp = await clinic.client.post(
        "/api/lines/",
        json={"prefix": "L", "name": {"en": "Lab"}},
        headers=clinic.headers(Role.ADMIN),
    )
    assert resp.status == 201, await resp.text()
    nurse = await doctor(clinic, "Nurse", "Room 1")
    lab = await doctor(clinic, "Lab", "Lab 2")
    ann = await clinic.check_in("Ann Example")

    await act(clinic, nurse, "call_next")
    assert (await current(clinic, nurse))["patient"]["id"] == ann["id"]
    assert await current(clinic, lab) is None

    await act(clinic, nurse, "transfer", patient_id=ann["id"], line="L")
    assert await current(clinic, nurse) is None
    await act(clinic, lab, "complete", patient_id=ann["id"])
    call = await current(clinic, lab)
    assert (call["ticket"], call["line"], call["room"]) == (ann["ticket"], "L", "Lab 2")
    assert await current(clinic, nurse) is None


async def test_roles_that_do_not_call_get_nothing(clinic: Clinic) -> None:
    await clinic.check_in("Ann Example")
    assert (await clinic.call_next()).status == 200
    for role in (Role.QUEUE, Role.FORM):
        resp = await clinic.client.get("/api/doctors/current/", headers=clinic.headers(role))
        assert resp.status == 403
        assert (await resp.json())["code"] == "permission_denied"
    resp = await clinic.client.get("/api/doctors/current/")
    assert resp.status == 401
    # The admin may do everything, but called nobody: null, not the doctor's call.
    assert await current(clinic, clinic.headers(Role.ADMIN)) is None
    assert (await current(clinic, clinic.headers(Role.DOCTOR)))["patient"]["fname"] == (
        "Ann Example"
    )


async def test_a_transferred_ticket_never_blocks_the_other_line(clinic: Clinic) -> None:
    """N-001 transferred into L, which already gave L-001 today and gives L-002 next: both
    lines go on numbering by their own counters, and the ticket stays N-001 throughout."""
    for prefix, name in (("N", "Nurse"), ("L", "Lab")):
        resp = await clinic.client.post(
            "/api/lines/",
            json={"prefix": prefix, "name": {"en": name}},
            headers=clinic.headers(Role.ADMIN),
        )
        assert resp.status == 201, await resp.text()

    async def check_in(fname: str, line: str) -> dict[str, Any]:
        resp = await clinic.client.post(
            "/api/patients/", json={"fname": fname, "line": line}, headers=clinic.headers(Role.FORM)
        )
        assert resp.status == 201, await resp.text()
        return await resp.json()

    lee = clinic.headers(Role.DOCTOR)
    ann = await check_in("Ann Example", "N")
    assert (await check_in("Lena Example", "L"))["ticket"] == "L-001"
    await act(clinic, lee, "complete", patient_id=ann["id"])
    moved = await act(clinic, lee, "transfer", patient_id=ann["id"], line="L")
    assert (moved["ticket"], moved["line"], moved["status"]) == ("N-001", "L", "waiting")
    assert (await check_in("Mo Example", "L"))["ticket"] == "L-002"
    assert (await check_in("Nia Example", "N"))["ticket"] == "N-002"
    # Back and forth: the undo returns it to N as it was, and N numbers on.
    await act(clinic, lee, "undo", patient_id=ann["id"])
    assert (await check_in("Ola Example", "N"))["ticket"] == "N-003"
    resp = await clinic.client.get("/api/queue/", headers=lee)
    assert sorted(item["ticket"] for item in await resp.json()) == [
        "L-001",
        "L-002",
        "N-002",
        "N-003",
    ]
