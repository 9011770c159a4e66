"""Hostile input: trickled uploads, disguised files, probing for tokens, and headers everywhere."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from typing import Any

import aiohttp
import pytest
from PIL import Image

from checkin_appliance.config import Config
from checkin_appliance.domain import Role
from tests.conftest import PASSWORD, Clinic, StartClinic


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, "JPEG")
    return out.getvalue()


async def upload(clinic: Clinic, data: bytes, filename: str = "photo.jpg") -> Any:
    form = aiohttp.FormData()
    form.add_field("fname", "Ann Lee")
    form.add_field("image", data, filename=filename, content_type="image/jpeg")
    return await clinic.client.post("/api/patients/", data=form, headers=clinic.headers(Role.FORM))


async def test_a_polyglot_jpeg_is_stored_without_its_payload(clinic: Clinic) -> None:
    payload = b"<script>alert(document.cookie)</script><?php system($_GET['c']); ?>"
    resp = await upload(clinic, jpeg() + payload)
    assert resp.status == 201
    stored = await (await clinic.client.get((await resp.json())["image"])).read()
    assert stored.endswith(b"\xff\xd9")
    assert b"script" not in stored and b"php" not in stored


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("EPS", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        ("PDF", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"),
        (
            "PSD",
            b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10"
            b"\x00\x08\x00\x03" + b"\x00" * 32,
        ),
        ("TIFF", b"II*\x00\x08\x00\x00\x00" + b"\x00" * 32),
    ],
)
async def test_other_formats_renamed_jpg_are_refused_undecoded(
    clinic: Clinic, name: str, data: bytes
) -> None:
    resp = await upload(clinic, data)
    assert resp.status == 400, name
    assert "JPEG, PNG or WebP" in (await resp.json())["error"]


async def test_a_trickled_upload_is_cut_off_and_the_server_keeps_serving(
    start_clinic: StartClinic, config: Config
) -> None:
    clinic = await start_clinic(dataclasses.replace(config, upload_timeout=0.5))
    boundary = "trickle"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="fname"\r\n\r\nAnn Lee\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()

    async def trickle() -> Any:
        yield head
        for _ in range(40):  # bounded: at most ~4 s if the server never cuts us off
            await asyncio.sleep(0.1)
            yield b"\xff"

    resp = await clinic.client.post(
        "/api/patients/",
        data=trickle(),
        headers={
            **clinic.headers(Role.FORM),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert resp.status == 408
    assert "took too long" in (await resp.json())["error"]
    assert resp.headers.get("Connection", "").lower() == "close"
    queue = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.FORM))
    assert await queue.json() == []


async def test_unknown_and_known_tokens_fail_login_byte_for_byte_alike(clinic: Clinic) -> None:
    async def attempt(token: str) -> tuple[int, bytes, dict[str, str]]:
        resp = await clinic.client.post("/api/login/", json={"token": token, "password": "x" * 9})
        headers = {k: v for k, v in resp.headers.items() if k.lower() != "date"}
        return resp.status, await resp.read(), headers

    known = await attempt(clinic.tokens[Role.DOCTOR])
    unknown = await attempt("99999999")
    assert known == unknown
    assert known[0] == 401


async def test_every_response_carries_the_security_headers(clinic: Clinic) -> None:
    photo = await upload(clinic, jpeg())
    photo_url = (await photo.json())["image"]
    paths = [
        "/",
        "/login",
        "/setup",
        "/kiosk",
        "/display",
        "/doctor",
        "/admin",
        "/healthz",
        "/api/queue/",
        "/api/settings/",
        "/api/stats/today/",
        "/api/credentials/",
        "/api/patients/",
        "/api/doctors/",
        "/ws/queue/",
        "/nope",
        photo_url,
        "/static/css/app.css",
        "/media/patient_images/" + "0" * 32 + ".jpg",
    ]
    for with_auth in (False, True):
        for path in paths:
            resp = await clinic.client.get(
                path,
                headers=clinic.headers(Role.ADMIN) if with_auth else {},
                allow_redirects=False,
            )
            headers = resp.headers
            assert headers["X-Content-Type-Options"] == "nosniff", path
            assert headers["Referrer-Policy"] == "same-origin", path
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
            if path.startswith(("/api/", "/media/")):
                assert "no-store" in headers["Cache-Control"], path


async def test_a_failed_login_never_echoes_the_password(clinic: Clinic) -> None:
    secret = "hunter2-very-secret"
    resp = await clinic.client.post(
        "/api/login/", json={"token": clinic.tokens[Role.FORM], "password": secret}
    )
    assert secret not in await resp.text()
    ok = await clinic.client.post(
        "/api/login/", json={"token": clinic.tokens[Role.FORM], "password": PASSWORD}
    )
    assert PASSWORD not in await ok.text()
