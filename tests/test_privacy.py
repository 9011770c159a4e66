"""Issue 13's smaller leaks, tried as an attacker on the LAN would, against the real `serve`:
form charsets, names and labels that hide or reorder text, a reused Idempotency-Key, what
a kiosk credential may read, and who may load a photo.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import io
import json
import sqlite3
import stat
import uuid
from collections.abc import Iterator

import pytest
from PIL import Image

from checkin_appliance.domain import display_name
from tests.serverproc import HOST, Server, http_json, running

TIMEOUT = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("privacy")) as srv:
        yield srv


@pytest.fixture(scope="module")
def kiosk(server: Server) -> str:
    return server.login(server.create_token("form", "Kiosk"))


def request(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """One raw HTTP request (the bytes exactly as an attacker would send them)."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def multipart(fields: list[tuple[str, str, bytes]], boundary: str = "b0undary") -> bytes:
    """A multipart body of (name, part Content-Type, bytes) parts."""
    out = b""
    for name, content_type, data in fields:
        out += (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


def form_headers(access: str, boundary: str = "b0undary") -> dict[str, str]:
    return {
        "Authorization": f"Bearer {access}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }


# --- item 14: a multipart part's charset ---------------------------------------------------


@pytest.mark.parametrize("charset", ["unicode_escape", "utf-7", "latin-1", "utf-16", "rot13"])
def test_a_form_field_in_another_charset_is_refused_with_400(
    server: Server, kiosk: str, charset: str
) -> None:
    # "+AFw-" is utf-7 for a backslash; "\\x41" is what unicode_escape would turn into "A".
    body = multipart([("fname", f"text/plain; charset={charset}", b"Ann \\x41 +AFw- Lee")])
    status, raw, _ = request(server, "POST", "/api/patients/", body, form_headers(kiosk))
    assert status == 400, raw
    assert b'"code": "charset_unsupported"' in raw
    assert b"Traceback" not in raw


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", "us-ascii"])
def test_a_form_field_in_utf8_or_ascii_is_accepted(
    server: Server, kiosk: str, charset: str
) -> None:
    body = multipart([("fname", f"text/plain; charset={charset}", "Zoë Lee".encode())])
    status, raw, _ = request(server, "POST", "/api/patients/", body, form_headers(kiosk))
    assert status == 201, raw


def test_a_login_form_in_another_charset_is_refused_with_400(server: Server) -> None:
    body = multipart([("token", "text/plain; charset=utf-7", b"12345678")])
    status, raw, _ = request(server, "POST", "/api/login/", body, form_headers("x"))
    assert status == 400 and b'"code": "charset_unsupported"' in raw, raw
    status, raw, _ = request(
        server,
        "POST",
        "/api/login/",
        b"token=12345678&password=x",
        {"Content-Type": "application/x-www-form-urlencoded; charset=unicode_escape"},
    )
    assert status == 400 and b'"code": "charset_unsupported"' in raw, raw


def test_a_multipart_check_in_without_a_charset_is_utf8(server: Server, kiosk: str) -> None:
    body = multipart([("fname", "text/plain", "Zoë Lee".encode())])
    status, raw, _ = request(server, "POST", "/api/patients/", body, form_headers(kiosk))
    assert status == 201, raw
    assert "Zoë Lee".encode() in raw


# --- item 26: names that show nothing or reorder the page ----------------------------------


def check_in(server: Server, access: str, fname: object) -> tuple[int, dict[str, object]]:
    status, body = http_json(
        "POST",
        f"{server.base_url}/api/patients/",
        {"fname": fname},
        {"Authorization": f"Bearer {access}"},
    )
    return status, body


@pytest.mark.parametrize(
    ("fname", "code"),
    [
        ("\u200b", "name_required"),  # zero-width space
        ("\u200b\u200c\u200d\u2060\ufeff", "name_required"),  # joiners, word joiner, BOM
        ("\u3164 \u115f", "name_required"),  # Hangul fillers: blank letters
        ("\u200e\u200f", "name_required"),  # only direction marks
        ("Ann\x00Lee", "name_invalid_character"),
        ("Ann\x1b[2JLee", "name_invalid_character"),  # a terminal escape
        ("Ann\x7fLee", "name_invalid_character"),
        ("Ann\x85Lee", "name_invalid_character"),  # a C1 control
        ("Ann \u202eeeL", "name_invalid_character"),  # right-to-left override
        ("\u202aAnn Lee\u202c", "name_invalid_character"),  # embedding
        ("Ann \u2067Lee\u2069", "name_invalid_character"),  # isolate
    ],
)
def test_names_that_show_nothing_or_hold_controls_are_refused(
    server: Server, kiosk: str, fname: str, code: str
) -> None:
    status, body = check_in(server, kiosk, fname)
    assert (status, body["code"]) == (400, code), body
    assert "fname" in body["error"]


@pytest.mark.parametrize(
    "fname",
    [
        "Zoë Ångström",
        "王小明",
        "山田太郎",
        "김민준",
        "محمد علي",
        "דוד לוי",
        "Anna\u200dKowalska",  # a joiner inside a name is kept (Persian and Indic need it)
        "x" * 255,
        "A\tB\nC",  # whitespace is folded, as before
    ],
)
def test_real_names_in_any_script_are_still_accepted(
    server: Server, kiosk: str, fname: str
) -> None:
    status, body = check_in(server, kiosk, fname)
    assert status == 201, body
    assert body["fname"] == " ".join(fname.split())


def test_names_are_stored_in_nfc(server: Server, kiosk: str) -> None:
    status, body = check_in(server, kiosk, "Zoe\u0308 Lee")  # e + combining diaeresis
    assert (status, body["fname"]) == (201, "Zo\u00eb Lee")


# --- item 25: one Idempotency-Key, two different check-ins ---------------------------------


def tiny_jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(out, "JPEG")
    return out.getvalue()


def photo_check_in(
    server: Server, access: str, key: str, fname: str, photo: bytes | None
) -> tuple[int, bytes, dict[str, str]]:
    boundary = "k3yb0undary"
    parts = f'--{boundary}\r\nContent-Disposition: form-data; name="fname"\r\n\r\n{fname}\r\n'
    body = parts.encode()
    if photo is not None:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                'filename="me.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + photo
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    headers = {**form_headers(access, boundary), "Idempotency-Key": key}
    return request(server, "POST", "/api/patients/", body, headers)


def waiting_names(server: Server) -> list[str]:
    admin = server.login(server.create_token("admin", "Queue reader"))
    status, queue = http_json(
        "GET", f"{server.base_url}/api/queue/", None, {"Authorization": f"Bearer {admin}"}
    )
    assert status == 200, queue
    return [item["patient"]["fname"] for item in queue]


def stored_photos(server: Server) -> list[str]:
    """The photos the database holds, by name (read beside the running server)."""
    path = server.data_dir / "checkin.db"
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        return sorted(row[0] for row in db.execute("SELECT name FROM photos"))


def test_the_same_key_with_another_body_is_422_and_adds_nobody(server: Server, kiosk: str) -> None:
    key = uuid.uuid4().hex
    red, blue = tiny_jpeg((200, 0, 0)), tiny_jpeg((0, 0, 200))
    status, first, _ = photo_check_in(server, kiosk, key, "Key Holder", red)
    assert status == 201, first
    before = waiting_names(server)
    photos_before = stored_photos(server)
    for fname, photo in [("Someone Else", red), ("Key Holder", blue), ("Key Holder", None)]:
        status, raw, headers = photo_check_in(server, kiosk, key, fname, photo)
        assert status == 422, raw
        assert json.loads(raw)["code"] == "idempotency_key_reused"
        assert b"Key Holder" not in raw and "Idempotent-Replayed" not in headers
    assert waiting_names(server) == before
    assert stored_photos(server) == photos_before  # the refused photos are not kept
    # The same body again is a retry: the first answer, once more.
    status, again, headers = photo_check_in(server, kiosk, key, "Key  Holder", red)
    assert (status, headers.get("Idempotent-Replayed")) == (201, "true"), again
    # (ours: a replay carries a new status link, as only the first one's hash was kept)
    assert {**json.loads(again), "status_url": None} == {**json.loads(first), "status_url": None}
    assert waiting_names(server) == before


# --- item 8: the kiosk reads the queue; photos without a credential -----------------------


def get(server: Server, path: str, access: str | None = None, **headers: str) -> tuple[int, bytes]:
    if access:
        headers["Authorization"] = f"Bearer {access}"
    status, raw, _ = request(server, "GET", path, None, headers)
    return status, raw


def test_the_kiosk_reads_only_the_wall_displays_view_of_the_queue(
    server: Server, kiosk: str
) -> None:
    status, first, _ = photo_check_in(
        server, kiosk, uuid.uuid4().hex, "Kiosk Victim Longname", tiny_jpeg((0, 150, 0))
    )
    assert status == 201, first
    status, raw = get(server, "/api/queue/", kiosk)
    assert status == 200, raw  # compat: every role may read the queue
    mine = [item for item in json.loads(raw) if item["id"] == json.loads(first)["queue_entry_id"]]
    assert [item["patient"] for item in mine] == [
        {"id": json.loads(first)["id"], "fname": "Kiosk L.", "image": None}
    ]
    assert b"Victim" not in raw and b"/media/" not in raw
    doctor = server.login(server.create_token("doctor", "Dr. Feed"))
    assert b"Kiosk Victim Longname" in get(server, "/api/queue/", doctor)[1]


def test_a_photo_needs_a_staff_session_or_a_signed_link(server: Server, kiosk: str) -> None:
    status, raw, _ = photo_check_in(
        server, kiosk, uuid.uuid4().hex, "Photo Owner", tiny_jpeg((10, 20, 200))
    )
    assert status == 201, raw
    link = json.loads(raw)["image"]
    path, _, query = link.partition("?")

    # The bare name, as the kiosk's 400-day session (or anyone who saw it) would try it.
    assert get(server, path)[0] == 401
    assert query.startswith("exp=") and "&sig=" in query
    status, body = get(server, path, kiosk)
    assert (status, json.loads(body)["code"]) == (403, "photo_not_allowed")
    queue_tv = server.login(server.create_token("queue", "TV no photos"))
    assert get(server, path, queue_tv)[0] == 403  # display_photos is off
    doctor = server.login(server.create_token("doctor", "Dr. Photo"))
    status, body = get(server, path, doctor)
    assert status == 200 and body[:2] == b"\xff\xd8"
    cookie = f"checkin_session={doctor}"
    assert get(server, path, None, Cookie=cookie)[0] == 200  # a page's <img>

    # The signed link works with no credential: integrators' clients keep working.
    status, body = get(server, link)
    assert status == 200 and body[:2] == b"\xff\xd8"
    # Tampered, moved to another photo, or expired: refused.
    exp, sig = (part.split("=")[1] for part in query.split("&"))
    other = "0" * 32 + ".jpg"
    bad_sig = ("1" if sig[0] != "1" else "2") + sig[1:]
    for tampered in (
        f"{path}?exp={exp}&sig={bad_sig}",
        f"{path}?exp={int(exp) + 3600}&sig={sig}",
        f"/media/patient_images/{other}?{query}",
        f"{path}?exp={exp}",
    ):
        status, body = get(server, tampered)
        assert (status, json.loads(body)["code"]) == (403, "photo_link_invalid"), tampered
    key = (server.data_dir / "photo-links.key").read_bytes()
    name = path.rsplit("/", 1)[1]
    past = 1_000_000_000
    expired_sig = hmac.new(key, f"{name}\n{past}".encode(), hashlib.sha256).hexdigest()
    status, body = get(server, f"{path}?exp={past}&sig={expired_sig}")
    assert (status, json.loads(body)["code"]) == (403, "photo_link_invalid")


def test_the_photo_link_key_is_private_to_the_box(server: Server) -> None:
    key = server.data_dir / "photo-links.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32


# --- item 11: a short form of every name ---------------------------------------------------


@pytest.mark.parametrize(
    ("fname", "short"),
    [
        ("John Doe", "John D."),
        ("Mary Ann Smith", "Mary S."),
        ("Émile Zola", "Émile Z."),
        ("محمد علي", "محمد ع."),
        ("王小明", "王…"),  # family name first, no space: never the whole name
        ("山田太郎", "山…"),
        ("山田 太郎", "山…"),
        ("김민준", "김…"),
        ("アンナ・コワルスカ", "ア…"),
        ("Anna\u200bKowalska", "Anna K."),  # a zero-width space separates
        ("Anna·Kowalska", "Anna K."),
        ("Smith,John", "John S."),  # a comma means family name first
        ("Smith, John Paul", "John S."),
        ("Madonna", "M…"),  # one word: its first letter only
        ("AnnaKowalska", "A…"),
        ("Ångström", "Å…"),
        ("A\u030angström Lee", "A\u030angström L."),  # a letter keeps its marks
    ],
)
def test_first_initial_never_shows_a_name_whole(fname: str, short: str) -> None:
    assert display_name(fname, "first_initial") == short
    assert display_name(fname, "full") == fname


def test_the_wall_display_gets_the_short_form_of_every_script(server: Server, kiosk: str) -> None:
    tv = server.login(server.create_token("queue", "Lobby TV"))
    names = ["王小明", "김민준", "Anna\u200bKowalska", "Smith,John", "Madonna"]
    for name in names:
        assert check_in(server, kiosk, name)[0] == 201
    status, raw = get(server, "/api/queue/", tv)
    assert status == 200
    shown = [item["patient"]["fname"] for item in json.loads(raw)]
    assert shown[-5:] == ["王…", "김…", "Anna K.", "John S.", "M…"]
    for name in names:
        assert name.encode() not in raw
