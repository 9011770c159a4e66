"""The packages on the boxes they are for, tested on this PC: each .deb installs in a fresh
copy of a Debian root (build/nspawn/<suite>-<arch>, made by packaging/build-root.sh) and its
service, started as its unit says (tests/test_deb_upgrade.py), serves HTTPS with the box's
own CA, takes a check-in with a photo that the staff's live feed announces, and a backup
taken while it serves restores after a stop. The one-file download answers --version there.

The boxes: Raspberry Pi OS 64-bit (Debian bookworm and bullseye, arm64), run through
qemu-user-static and binfmt_misc (packaging/binfmt.sh), so slowly: `-m "emulated and not
slow"` keeps the quick check that the emulated build starts and answers; and the oldest
supported PC (bullseye amd64, glibc 2.31). A root that was not made is skipped.
Root only; skipped elsewhere, failing in CI (CI=true) when something is missing.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from tests.test_deb_upgrade import (
    call,
    container,
    copy_root,
    create_token,
    dpkg_install,
    inside,
    installed_version,
    service,
)
from tests.test_packaging import DIST, ROOT, __version__, _request, login, unavailable

pytestmark = pytest.mark.packaging

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "")
# Emulated, a start takes seconds (tens for the first, which makes the box's CA).
START_TIMEOUT = 180.0
EVENT_TIMEOUT = 60.0
RUN_TIMEOUT = 300.0
BACKUP_COMMAND = ("checkin-appliance", "backup", "/srv/clinic.tar.age", "--passphrase-stdin")
PASSPHRASE = "a long backup passphrase"


@dataclass(frozen=True)
class Box:
    suite: str
    arch: str  # Debian's name
    machine: str  # uname -m, and the executable's name
    elf: int  # the ELF header's e_machine

    @property
    def root(self) -> Path:
        return ROOT / "build" / "nspawn" / f"{self.suite}-{self.arch}"

    @property
    def binary(self) -> Path:
        return DIST / f"checkin-appliance-{__version__}-linux-{self.machine}"

    @property
    def deb(self) -> Path:
        return DIST / f"checkin-appliance_{__version__}_{self.arch}.deb"


def boxes(*found: Box) -> list:
    """Each box as a test parameter; another architecture's is marked `emulated`."""
    return [
        pytest.param(box, id=f"{box.suite}-{box.arch}", marks=[pytest.mark.emulated])
        if box.arch != HOST_ARCH
        else pytest.param(box, id=f"{box.suite}-{box.arch}")
        for box in found
    ]


BOXES = boxes(
    Box("bookworm", "arm64", "aarch64", 183),  # Raspberry Pi OS 64-bit, bookworm
    Box("bullseye", "arm64", "aarch64", 183),  # Raspberry Pi OS 64-bit, bullseye (legacy)
    # The oldest C library the packages support (2.31): below Ubuntu 22.04's 2.35.
    Box("bullseye", "amd64", "x86_64", 62),
)


@pytest.fixture
def box(request: pytest.FixtureRequest) -> Box:
    box: Box = request.param
    if os.geteuid() != 0:
        pytest.skip("a Debian root in a container needs root")
    if shutil.which("systemd-nspawn") is None:
        unavailable("systemd-nspawn is missing (Debian package: systemd-container)")
    if not (box.root / "usr" / "bin" / "dpkg").is_file():
        # Optional (each takes minutes to make, CI makes some): skipped, never failed.
        pytest.skip(
            f"{box.root.relative_to(ROOT)} is missing "
            f"(packaging/build-root.sh {box.suite} {box.arch})"
        )
    registered = subprocess.run(
        [ROOT / "packaging" / "binfmt.sh", box.arch], capture_output=True, text=True, check=False
    )
    if registered.returncode != 0:
        unavailable(f"{box.arch} programs do not run here: {registered.stderr.strip()}")
    return box


def elf_machine(path: Path) -> int:
    with path.open("rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize("box", BOXES, indirect=True)
def test_the_executable_starts_on_the_box_and_answers_version(box: Box) -> None:
    if not box.binary.is_file():
        unavailable(f"{box.binary.relative_to(ROOT)} not built (make package ARCH={box.arch})")
    assert elf_machine(box.binary) == box.elf
    version = subprocess.run(
        [
            *container(box.root, f"--bind-ro={box.binary}:/srv/checkin-appliance"),
            "/bin/sh",
            "-c",
            "uname -m && /srv/checkin-appliance --version",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert version.returncode == 0, version.stdout + version.stderr
    machine, line = version.stdout.splitlines()
    assert machine == box.machine
    assert line.startswith(f"checkin-appliance {__version__} "), line
    assert "uvloop" in line and "SQLite" in line, line


@pytest.mark.slow
@pytest.mark.parametrize("box", BOXES, indirect=True)
def test_the_package_serves_a_check_in_with_its_photo_and_restores_a_backup(
    box: Box, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An admin's command beside the running service: a second container on the same root.
    monkeypatch.setenv("SYSTEMD_NSPAWN_LOCK", "0")
    if not box.deb.is_file():
        unavailable(f"{box.deb.relative_to(ROOT)} not built (make package ARCH={box.arch})")
    root = copy_root(box.root, tmp_path)
    # A build root's own Python (packaging/build-python.sh) is on no clinic's box.
    shutil.rmtree(root / "opt", ignore_errors=True)
    installed = dpkg_install(root, box.deb)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert installed_version(root) == __version__
    assert elf_machine(root / "usr/lib/checkin-appliance/checkin-appliance") == box.elf
    with service(root, START_TIMEOUT) as (url, context):
        assert url.startswith("https://")
        # The first start made the database: an admin's commands work beside the service.
        form, doctor = create_token(root, "form"), create_token(root, "doctor")
        health = json.loads(_request("GET", f"{url}/healthz", context)[2])
        assert health["version"] == __version__, health
        checked = asyncio.run(check_in_with_photo(url, context, form, doctor))
        # The backup a clinic takes while the box serves (as root, through the installed
        # config), encrypted: scrypt and age from the bundled cryptography.
        backed = inside(root, *BACKUP_COMMAND, stdin=PASSPHRASE + "\n")
        assert backed.returncode == 0, backed.stdout + backed.stderr
        assert "1 patient (1 waiting), 1 photo" in backed.stdout, backed.stdout
        call(url, context, "POST", "/api/patients/", form, {"fname": "Grace Hopper"})

    restore = [*BACKUP_COMMAND[:1], "restore", *BACKUP_COMMAND[2:]]
    restored = inside(root, *restore, stdin=PASSPHRASE + "\n")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    with service(root, START_TIMEOUT) as (url, context):
        queue = json.dumps(call(url, context, "GET", "/api/queue/", doctor))
    assert "Ada Lovelace" in queue and "Grace Hopper" not in queue
    assert checked["image"].split("?")[0] in queue


async def check_in_with_photo(url: str, context: ssl.SSLContext, form: str, doctor: str) -> dict:
    """Kiosk check-in with a photo; the doctor's live feed announces it with the photo's
    link, which serves the (re-encoded) JPEG."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        staff = await login(http, url, doctor)
        feed = await http.ws_connect(f"{url.replace('https', 'wss')}/ws/queue/?token={staff}")
        data = aiohttp.FormData()
        data.add_field("fname", "Ada Lovelace")
        data.add_field("image", jpeg(), filename="ada.jpg", content_type="image/jpeg")
        headers = {"Authorization": f"Bearer {await login(http, url, form)}"}
        async with http.post(f"{url}/api/patients/", data=data, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            checked = await resp.json()
        assert checked["image"], checked
        deadline = time.monotonic() + EVENT_TIMEOUT
        seen: list[dict] = []
        while not any(event.get("event") == "PATIENT_ADDED" for event in seen):
            msg = await feed.receive(timeout=max(0.1, deadline - time.monotonic()))
            assert msg.type is aiohttp.WSMsgType.TEXT, (msg, seen)
            seen.append(json.loads(msg.data))
        added = next(event for event in seen if event.get("event") == "PATIENT_ADDED")
        assert added["patient"]["image"] == checked["image"], added
        await feed.close()
        async with http.get(
            f"{url}{checked['image']}", headers={"Authorization": f"Bearer {staff}"}
        ) as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg", resp.status
            assert (await resp.read())[:2] == b"\xff\xd8"
    return checked
