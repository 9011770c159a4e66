"""The photo pipeline through the real app: upload, clean, store (in the database), serve; every
image made here."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import os
import random
import re
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from PIL import ExifTags, Image, ImageCms
from yarl import URL

from checkin_appliance.config import Config
from checkin_appliance.domain import Role
from checkin_appliance.reception import photo_decoders
from tests.conftest import Clinic, StartClinic, messages, next_message

# A signed link: the stored name, then its expiry and HMAC (photo_links.py).
IMAGE_URL = re.compile(
    r"^/media/patient_images/([0-9a-f]{32,}\.jpg)\?exp=[0-9]{10}&sig=[0-9a-f]{64}$"
)
STORED_NAME = re.compile(r"^[0-9a-f]{32,}\.jpg$")
BOUNDARY = "checkin-test-boundary-5b1e"
WRONG_TYPE = "JPEG, PNG or WebP"
XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"

RED = (220, 20, 20)
BLUE = (20, 40, 220)


# --- images, made fresh in each test -------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Random pixels: they do not compress, so the file size is predictable."""
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


def marked(size: tuple[int, int]) -> Image.Image:
    """Blue, with a red square in the top-left corner, to see where a rotation moved it."""
    img = Image.new("RGB", size, BLUE)
    img.paste(RED, (0, 0, 80, 80))
    return img


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of every JPEG segment, skipping the entropy-coded scan data."""
    assert data[:2] == b"\xff\xd8", "not a JPEG (no SOI)"
    segments: list[tuple[int, bytes]] = []
    i = 2
    while i < len(data):
        assert data[i] == 0xFF, f"expected a marker at byte {i}"
        while data[i] == 0xFF:  # fill bytes
            i += 1
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI
            segments.append((marker, b""))
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            segments.append((marker, b""))
            continue
        (length,) = struct.unpack(">H", data[i : i + 2])
        segments.append((marker, data[i + 2 : i + length]))
        i += length
        if marker == 0xDA:  # SOS: scan data runs to the next marker that is not FF00 / RSTn
            while True:
                j = data.index(b"\xff", i)
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i = j + 2
                    continue
                i = j
                break
    return segments


# --- requests ------------------------------------------------------------------------------


def multipart(
    fields: dict[str, str],
    image: bytes | None = None,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
) -> bytes:
    """A multipart/form-data body as a browser sends it, built by hand so nothing is tidied."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    if image is not None:
        parts.append(
            (
                f"--{BOUNDARY}\r\n"
                f'Content-Disposition: form-data; name="image"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + image
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def upload(
    clinic: Clinic,
    image: bytes | None,
    fname: str = "Ada Lovelace",
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
) -> ClientResponse:
    headers = {
        **clinic.headers(Role.FORM),
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    body = multipart({"fname": fname}, image, filename, content_type)
    return await clinic.client.post("/api/patients/", data=body, headers=headers)


async def checked_in(clinic: Clinic, image: bytes, **kwargs: Any) -> dict[str, Any]:
    resp = await upload(clinic, image, **kwargs)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def fetch_photo(clinic: Clinic, url: str) -> tuple[ClientResponse, bytes]:
    resp = await clinic.client.get(url)
    return resp, await resp.read()


async def stored_photo(clinic: Clinic, image: bytes, **kwargs: Any) -> Image.Image:
    """Checks a patient in with `image` and returns the photo the server serves back."""
    body = await checked_in(clinic, image, **kwargs)
    assert body["image"] is not None
    resp, data = await fetch_photo(clinic, body["image"])
    assert resp.status == 200
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG"
    img.load()
    return img


async def queue(clinic: Clinic) -> list[dict[str, Any]]:
    resp = await clinic.client.get("/api/queue/", headers=clinic.headers(Role.DOCTOR))
    assert resp.status == 200
    return await resp.json()


def stored_names(config: Config) -> list[str]:
    """The photos the database holds, by name (read as another process would)."""
    db = sqlite3.connect(f"{config.db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return sorted(row[0] for row in db.execute("SELECT name FROM photos"))
    finally:
        db.close()


def verbatim(clinic: Clinic, path: str) -> URL:
    """`path` sent byte for byte: yarl would otherwise resolve '..' and decode '%2e'."""
    return URL(str(clinic.client.make_url("/")).rstrip("/") + path, encoded=True)


async def get_verbatim(clinic: Clinic, path: str) -> tuple[int, str, bytes]:
    """As a doctor (who may see photos): what decides here is the name alone."""
    url = verbatim(clinic, path)
    async with clinic.client.session.get(url, headers=clinic.headers(Role.DOCTOR)) as resp:
        return resp.status, resp.content_type, await resp.read()


async def assert_rejected(
    clinic: Clinic, config: Config, resp: ClientResponse, status: int, *words: str
) -> None:
    """An error status with a JSON message naming the problem; no patient, no photo."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    # Keyed by field as the original answered, beside our error and code.
    assert body == {
        "image": [body["error"]],
        "codes": {"image": body["code"]},
        "error": body["error"],
        "code": body["code"],
    }
    for word in words:
        assert word.lower() in body["error"].lower(), body
    assert await queue(clinic) == []
    assert stored_names(config) == []


# --- the happy path ------------------------------------------------------------------------


@pytest.mark.parametrize(("cores", "decoders"), [(1, 1), (2, 1), (3, 2), (4, 2), (64, 2)])
def test_photos_decoded_at_once_leave_the_loop_a_core_and_never_exceed_two(
    monkeypatch: pytest.MonkeyPatch, cores: int, decoders: int
) -> None:
    # Each decode holds ~2 MB of pixels: the memory bound must not grow with the machine.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert photo_decoders() == decoders


async def test_jpeg_check_in_stores_a_served_jpeg_under_a_random_name(clinic: Clinic) -> None:
    body = await checked_in(clinic, encode(noise((320, 240)), "JPEG"))

    assert IMAGE_URL.match(body["image"]), body["image"]
    resp, data = await fetch_photo(clinic, body["image"])
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "private" in resp.headers["Cache-Control"]
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG"
    assert img.size == (320, 240)
    img.load()  # the whole file decodes, not just the header


async def test_each_upload_of_the_same_photo_gets_its_own_name(clinic: Clinic) -> None:
    photo = encode(noise((64, 64)), "JPEG")
    bodies = await asyncio.gather(*(checked_in(clinic, photo) for _ in range(5)))

    urls = {body["image"] for body in bodies}
    assert len(urls) == 5
    for url in urls:
        resp, _ = await fetch_photo(clinic, url)
        assert resp.status == 200


async def test_photo_url_is_in_queue_and_staff_live_event(clinic: Clinic) -> None:
    ws = await clinic.subscribe(Role.DOCTOR)
    body = await checked_in(clinic, encode(noise((64, 64)), "JPEG"))

    message = await next_message(ws)
    assert message["event"] == "PATIENT_ADDED"
    assert message["patient"]["image"] == body["image"]
    assert [item["patient"]["image"] for item in await queue(clinic)] == [body["image"]]
    await ws.close()


# --- what is kept and what is removed ------------------------------------------------------


async def test_all_metadata_is_stripped(clinic: Clinic) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretCam"
    exif[ExifTags.Base.Model] = "Model 7"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2024:01:02 03:04:05"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 11.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (4.0, 53.0, 7.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><secret>home address</secret></x:xmpmeta>'
    upload_bytes = encode(
        noise((200, 150)),
        "JPEG",
        exif=exif,
        icc_profile=icc,
        comment=b"patient Jane Roe",
        xmp=xmp,
    )
    # The upload really carries all four, so a pass below means they were removed.
    sent = jpeg_segments(upload_bytes)
    assert any(m == 0xE1 and p.startswith(b"Exif\x00\x00") for m, p in sent)
    assert any(m == 0xE1 and p.startswith(XMP_ID) for m, p in sent)
    assert any(m == 0xE2 and p.startswith(b"ICC_PROFILE\x00") for m, p in sent)
    assert any(m == 0xFE for m, _ in sent)

    body = await checked_in(clinic, upload_bytes)
    _, data = await fetch_photo(clinic, body["image"])

    segments = jpeg_segments(data)
    assert [m for m, _ in segments if m == 0xFE] == [], "COM comment kept"
    app_segments = [(m, p) for m, p in segments if 0xE0 <= m <= 0xEF]
    # Only the JFIF header may remain: no APP1 (EXIF, XMP), APP2 (ICC) or any other APPn.
    assert [(m, p[:5]) for m, p in app_segments] == [(0xE0, b"JFIF\x00")]
    for secret in (b"SecretCam", b"Jane Roe", b"home address", b"ICC_PROFILE", XMP_ID):
        assert secret not in data
    img = Image.open(io.BytesIO(data))
    assert not {"exif", "icc_profile", "comment", "xmp"} & set(img.info)
    assert dict(img.getexif()) == {}


ORIENTATIONS = [
    # 6: the camera was turned right; the top-left corner ends up top-right.
    (6, (200, 400), (180, 20), [(20, 20), (20, 380), (180, 380)]),
    # 8: turned left; the top-left corner ends up bottom-left.
    (8, (200, 400), (20, 380), [(20, 20), (180, 20), (180, 380)]),
    # 3: upside down; the top-left corner ends up bottom-right.
    (3, (400, 200), (380, 180), [(20, 20), (380, 20), (20, 180)]),
]


async def test_exif_orientation_is_applied_to_the_pixels(clinic: Clinic) -> None:
    for orientation, size, red_at, blue_at in ORIENTATIONS:
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        photo = encode(marked((400, 200)), "JPEG", exif=exif, quality=95)
        img = await stored_photo(clinic, photo)

        assert img.size == size, orientation
        assert near(img.getpixel(red_at), RED), orientation
        for xy in blue_at:
            assert near(img.getpixel(xy), BLUE), (orientation, xy)
        assert dict(img.getexif()) == {}  # no orientation left to be applied a second time


async def test_damaged_exif_still_yields_a_rotated_photo(clinic: Clinic) -> None:
    # A camera wrote ImageWidth as text: Pillow can read the block but not write it back.
    entries = sorted(
        [
            struct.pack("<HHI4s", ExifTags.Base.ImageWidth, 2, 4, b"Cam\0"),  # type 2 = ASCII
            struct.pack("<HHIHH", ExifTags.Base.Orientation, 3, 1, 6, 0),  # type 3 = SHORT
        ]
    )
    exif = b"Exif\0\0II*\0" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + b"\0" * 4
    img = await stored_photo(clinic, encode(marked((400, 200)), "JPEG", exif=exif, quality=95))

    assert img.size == (200, 400)
    assert near(img.getpixel((180, 20)), RED)


SIZES = [
    ("JPEG", (3000, 1000), (800, 267)),
    ("JPEG", (4000, 3000), (800, 600)),  # big enough for the reduced-scale JPEG decode
    ("PNG", (1000, 3000), (267, 800)),
    ("JPEG", (300, 200), (300, 200)),  # small photos are not upscaled
    ("PNG", (800, 100), (800, 100)),
]


async def test_long_side_is_capped_at_800_px(clinic: Clinic) -> None:
    for fmt, size, stored in SIZES:
        img = await stored_photo(clinic, encode(marked(size), fmt))
        assert img.size == stored, (fmt, size)


async def test_png_with_alpha_is_stored_as_jpeg_on_white(clinic: Clinic) -> None:
    png = Image.new("RGBA", (200, 100), (0, 0, 0, 0))  # fully transparent
    png.paste((*RED, 255), (0, 0, 100, 100))
    img = await stored_photo(clinic, encode(png, "PNG"), filename="a.png", content_type="image/png")

    assert img.mode == "RGB"
    assert near(img.getpixel((50, 50)), RED)
    assert near(img.getpixel((150, 50)), (255, 255, 255))  # not black


async def test_palette_png_with_transparency_is_accepted(clinic: Clinic) -> None:
    png = Image.new("P", (100, 100), 0)
    png.putpalette([0, 0, 0, *RED])
    png.paste(1, (0, 0, 50, 100))
    img = await stored_photo(clinic, encode(png, "PNG", transparency=0))

    assert near(img.getpixel((25, 50)), RED)
    assert near(img.getpixel((75, 50)), (255, 255, 255))


async def test_webp_is_accepted_and_stored_as_jpeg(clinic: Clinic) -> None:
    webp = encode(marked((300, 200)), "WEBP", quality=95)
    img = await stored_photo(clinic, webp, filename="a.webp", content_type="image/webp")

    assert img.size == (300, 200)
    assert near(img.getpixel((20, 20)), RED)
    assert near(img.getpixel((280, 180)), BLUE)


async def test_jpeg_with_extra_mpf_images_is_accepted(clinic: Clinic) -> None:
    # iPhone HDR gain maps and many Android and camera JPEGs carry a second image (MPF);
    # Pillow calls such a file MPO. It is an ordinary JPEG photo to the person uploading it.
    main, extra = marked((300, 200)), Image.new("RGB", (300, 200), (0, 255, 0))
    mpo = encode(main, "MPO", save_all=True, append_images=[extra], quality=95)
    assert Image.open(io.BytesIO(mpo)).format == "MPO"

    img = await stored_photo(clinic, mpo)
    assert img.size == (300, 200)
    assert near(img.getpixel((20, 20)), RED)  # the first image, not the extra one
    assert near(img.getpixel((280, 180)), BLUE)


async def test_16_bit_greyscale_png_keeps_its_tones(clinic: Clinic) -> None:
    grey = Image.new("I;16", (100, 100))
    grey.putdata([65535 * 3 // 5] * 10_000)  # 60 % grey; a plain convert() clips it to white
    img = await stored_photo(clinic, encode(grey, "PNG"), content_type="image/png")

    assert near(img.getpixel((50, 50)), (153, 153, 153), tolerance=6)


# --- what is refused -----------------------------------------------------------------------


async def test_decompression_bomb_is_a_400_and_creates_nobody(
    clinic: Clinic, config: Config
) -> None:
    # A 1-bit PNG: a few kB on the wire, 100 (or 49) million pixels once decoded.
    # 49 Mpx is over our limit but under twice Pillow's, where Pillow only warns.
    for size in [(10_000, 10_000), (7_000, 7_000)]:
        bomb = encode(Image.new("1", size), "PNG")
        assert len(bomb) < 200_000

        resp = await upload(clinic, bomb, content_type="image/png")
        await assert_rejected(clinic, config, resp, 400, "pixels")


async def test_not_an_allowed_image_is_a_400(clinic: Clinic, config: Config) -> None:
    # Each named photo.jpg, whatever it really is: the bytes decide, not the name or type.
    not_allowed = {
        "text": b"Hello, this is not a photo at all.\n" * 20,
        "gif": encode(Image.new("P", (50, 50)), "GIF"),
        "bmp": encode(Image.new("RGB", (50, 50)), "BMP"),
        "tiff": encode(Image.new("RGB", (50, 50)), "TIFF"),
        "svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    }
    for kind, data in not_allowed.items():
        resp = await upload(clinic, data, filename="photo.jpg", content_type="image/jpeg")
        assert resp.status == 400, kind
        await assert_rejected(clinic, config, resp, 400, WRONG_TYPE)


async def test_truncated_image_is_a_400(clinic: Clinic, config: Config) -> None:
    for fmt in ("JPEG", "PNG", "WEBP"):
        whole = encode(noise((200, 200)), fmt)
        resp = await upload(clinic, whole[: len(whole) // 2])
        assert resp.status == 400, fmt
        await assert_rejected(clinic, config, resp, 400, "truncated")


async def test_oversized_photo_is_a_413_and_the_server_goes_on(
    start_clinic: StartClinic, config: Config
) -> None:
    small = dataclasses.replace(config, max_photo_bytes=50_000)
    clinic = await start_clinic(small)
    big = encode(noise((200, 200)), "PNG")  # noise does not compress: ~120 kB
    assert len(big) > 2 * small.max_photo_bytes

    resp = await upload(clinic, big, content_type="image/png")
    await assert_rejected(clinic, small, resp, 413, "photo")

    fits = encode(noise((64, 64)), "JPEG")
    assert len(fits) < small.max_photo_bytes
    body = await checked_in(clinic, fits, fname="Next Patient")
    assert [item["patient"]["fname"] for item in await queue(clinic)] == ["Next Patient"]
    assert stored_names(small) == [IMAGE_URL.match(body["image"]).group(1)]


# --- names and paths -----------------------------------------------------------------------


async def test_client_file_name_and_patient_name_never_reach_the_disk(
    clinic: Clinic, config: Config, tmp_path: Path
) -> None:
    body = await checked_in(
        clinic,
        encode(noise((64, 64)), "JPEG"),
        fname="Zebedee Secretname",
        filename="../../x.jpg",
    )

    stored = IMAGE_URL.match(body["image"]).group(1)
    assert stored_names(config) == [stored]
    assert STORED_NAME.match(stored)
    assert "secretname" not in body["image"].lower()
    everything = [p.name for p in tmp_path.rglob("*")]
    assert "x.jpg" not in everything
    assert not any("secretname" in name.lower() for name in everything)


async def test_empty_image_part_means_no_photo(clinic: Clinic, config: Config) -> None:
    # What a browser sends for <input type=file> when nothing was chosen.
    resp = await upload(clinic, b"", filename="", content_type="application/octet-stream")

    assert resp.status == 201, await resp.text()
    assert (await resp.json())["image"] is None
    assert stored_names(config) == []


async def test_json_check_in_ignores_image_and_unknown_fields(
    clinic: Clinic, config: Config
) -> None:
    resp = await clinic.client.post(
        "/api/patients/",
        json={
            "fname": "Grace Hopper",
            "image": "/media/patient_images/" + "a" * 32 + ".jpg",
            "dob": "1906-12-09",
            "phone": "555-0100",
        },
        headers=clinic.headers(Role.FORM),
    )

    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["fname"] == "Grace Hopper"
    assert body["image"] is None
    assert "dob" not in body
    assert "phone" not in body
    assert stored_names(config) == []


async def test_multipart_check_in_ignores_unknown_fields(clinic: Clinic) -> None:
    headers = {
        **clinic.headers(Role.FORM),
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    body = multipart(
        {"fname": "Alan Turing", "dob": "1912-06-23", "phone": "555-0199"},
        encode(noise((64, 64)), "JPEG"),
    )
    resp = await clinic.client.post("/api/patients/", data=body, headers=headers)

    assert resp.status == 201, await resp.text()
    assert IMAGE_URL.match((await resp.json())["image"])


# --- serving -------------------------------------------------------------------------------


@pytest.fixture
async def stored_name(clinic: Clinic) -> str:
    body = await checked_in(clinic, encode(noise((64, 64)), "JPEG"))
    return IMAGE_URL.match(body["image"]).group(1)


async def test_unknown_photo_name_is_a_json_404(clinic: Clinic, stored_name: str) -> None:
    other = "0" * 32 + ".jpg" if stored_name != "0" * 32 + ".jpg" else "1" * 32 + ".jpg"
    resp = await clinic.client.get(
        "/media/patient_images/" + other, headers=clinic.headers(Role.DOCTOR)
    )

    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert await resp.json() == {"error": "Not found.", "code": "not_found"}


NOT_STORED_NAMES = [
    "..",
    "%2e%2e",
    "..%2Fcheckin.db",
    "%2e%2e%2F%2e%2e%2Fcheckin.db",  # photo dir -> data dir, where the database lives
    "..%2F..%2Fcheckin.db",
    "%2Fetc%2Fpasswd",
    "{stored}%2F",
    "{STORED}",
    "{stem}.JPG",
    "{stem}.jpeg",
    "{stored}%00",
    "{stored}.tmp",
    "",
]


async def test_anything_but_an_exact_stored_name_is_a_404(clinic: Clinic, stored_name: str) -> None:
    stem = stored_name.removesuffix(".jpg")
    for name in NOT_STORED_NAMES:
        path = "/media/patient_images/" + name.format(
            stored=stored_name, STORED=stored_name.upper(), stem=stem
        )
        status, content_type, data = await get_verbatim(clinic, path)

        assert status == 404, path
        assert content_type == "application/json", path
        assert b"SQLite format" not in data


async def test_files_in_the_old_photo_folder_are_never_served(
    clinic: Clinic, config: Config, stored_name: str
) -> None:
    # Photos are served from the database only: a file or a link planted where photos used
    # to be files (media/patient_images/) is nothing to the server.
    config.photo_dir.mkdir(parents=True)
    planted = config.photo_dir / ("a" * 32 + ".jpg")
    planted.write_bytes(encode(noise((64, 64)), "JPEG"))
    to_database = config.photo_dir / ("c" * 32 + ".jpg")
    to_database.symlink_to(config.db_path)

    for path in (planted, to_database):
        resp = await clinic.client.get(
            "/media/patient_images/" + path.name, headers=clinic.headers(Role.DOCTOR)
        )
        assert resp.status == 404, path
        assert b"SQLite format" not in await resp.read()
    resp = await clinic.client.get(
        "/media/patient_images/" + stored_name, headers=clinic.headers(Role.DOCTOR)
    )
    assert resp.status == 200  # the stored photo is still served


async def test_name_with_trailing_newline_is_not_served(
    clinic: Clinic, config: Config, stored_name: str
) -> None:
    # A regex ending in "$" also accepts "<name>\n"; only the exact name may be looked up,
    # even if such a row were there.
    db = sqlite3.connect(config.db_path, isolation_level=None)
    try:
        db.execute(
            "INSERT INTO photos (name, created_at, data) SELECT name || char(10), created_at,"
            " data FROM photos WHERE name = ?",
            (stored_name,),
        )
    finally:
        db.close()

    status, _, _ = await get_verbatim(clinic, f"/media/patient_images/{stored_name}%0A")
    assert status == 404


# --- who sees a photo -----------------------------------------------------------------------


def photo_name(url: str | None) -> str | None:
    """The stored name a signed photo link points at (its expiry may differ by source)."""
    if url is None:
        return None
    match = IMAGE_URL.match(url)
    assert match, url
    return match.group(1)


def images_in(message: dict[str, Any]) -> list[str | None]:
    """Every photo a feed message or REST body links to, wherever it carries one."""
    if "patient" in message:
        return [photo_name(message["patient"]["image"])]
    return [
        photo_name(item["patient"]["image"])
        for item in message.get("queue", []) + message.get("called", [])
    ]


async def test_wall_displays_never_get_photo_urls_unless_the_clinic_allows_it(
    clinic: Clinic,
) -> None:
    display = await clinic.subscribe(Role.QUEUE)
    staff = await clinic.subscribe(Role.DOCTOR)
    photos = [
        photo_name((await checked_in(clinic, encode(noise((64, 64), seed), "JPEG")))["image"])
        for seed in range(2)
    ]
    assert all(photos)
    assert (await clinic.call_next()).status == 200

    # The live feed: staff see both photos, the TV neither (added, added, called).
    shown, full = await messages(display, 3), await messages(staff, 3)
    assert [images_in(m) for m in full] == [[photos[0]], [photos[1]], [photos[0]]]
    assert [images_in(m) for m in shown] == [[None], [None], [None]]

    # GET /api/queue/ and the snapshot (waiting and called) and the replay: the same rule.
    async def seen_by(role: Role) -> list[str | None]:
        resp = await clinic.client.get("/api/queue/", headers=clinic.headers(role))
        rest = [image for item in await resp.json() for image in images_in(item)]
        snapshot = await next_message(ws := await clinic.subscribe(role, "snapshot=1"))
        await ws.close()
        replay = await messages(ws := await clinic.subscribe(role, "since=0"), 3)
        await ws.close()
        return rest + images_in(snapshot) + [i for m in replay for i in images_in(m)]

    staff_view = [photos[1], photos[1], photos[0], photos[0], photos[1], photos[0]]
    assert await seen_by(Role.DOCTOR) == staff_view
    assert await seen_by(Role.QUEUE) == [None] * 6

    # The clinic turns photos on for its displays: now the TV gets them too.
    resp = await clinic.client.patch(
        "/api/settings/", json={"display_photos": True}, headers=clinic.headers(Role.ADMIN)
    )
    assert resp.status == 200
    assert await seen_by(Role.QUEUE) == staff_view


def shared_prefix(a: str, b: str) -> int:
    return sum(
        1 for _ in itertools.takewhile(lambda pair: pair[0] == pair[1], zip(a, b, strict=False))
    )


async def test_photo_names_are_random_and_share_no_structure(clinic: Clinic) -> None:
    # A leaked name must not lead to the others (a session or a signed link is the lock
    # now, but a name is still not to be guessed): names made in one burst must not be
    # guessable from each other (time-ordered names, counters or a fixed part would be).
    photo = encode(noise((64, 64)), "JPEG")
    urls = [(await checked_in(clinic, photo))["image"] for _ in range(24)]
    names = [IMAGE_URL.match(url)[1].removesuffix(".jpg") for url in urls]  # type: ignore[index]
    assert all(len(name) >= 32 for name in names)  # 128 bits or more
    pairs = list(itertools.combinations(names, 2))
    # Two random names share 6 leading (or trailing) hex digits once in 16**6 pairs.
    assert max(shared_prefix(a, b) for a, b in pairs) < 6
    assert max(shared_prefix(a[::-1], b[::-1]) for a, b in pairs) < 6
    assert names != sorted(names)
    # Every digit varies across the burst (a counter or a clock leaves some nearly fixed).
    for position in range(32):
        assert len({name[position] for name in names}) >= 6, position
