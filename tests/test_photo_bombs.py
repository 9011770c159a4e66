"""Photo bombs against the real `serve`, held to the unit's memory limit as systemd holds it.

Each bomb is a small file that decodes to tens of millions of pixels: the server must refuse
it from its header (400 with a code), stay alive under the unit's `MemoryMax`, and check in the
next patient as usual. Every image is made here with Pillow.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from checkin_appliance import errors, photos
from checkin_appliance.domain import InvalidInput
from tests.serverproc import HOST, POLL_INTERVAL, Server, cli_command, free_port, launched
from tests.test_photos import BOUNDARY, encode, multipart

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "checkin-appliance.service"
WAIT_BEHIND_A_BOMB = 3.0  # seconds a normal photo may take behind a scan bomb (about 1 s)
UPLOAD_TIMEOUT = 60.0  # seconds: a bomb decoded before the fix takes a few
EXIT_TIMEOUT = 2.0  # seconds for a server that closed its socket to be seen to have died
CGROUP_EMPTY_TIMEOUT = 10.0  # seconds for the stopped server to leave its cgroup


def unit_memory_max() -> int:
    """The unit's MemoryMax in bytes, so the test follows the unit if it changes."""
    found = re.search(r"^MemoryMax=(\d+)([KMG]?)$", UNIT.read_text(), re.MULTILINE)
    assert found, f"no MemoryMax= in {UNIT}"
    return int(found.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[found.group(2)]


# --- holding the server to the unit's memory limit ----------------------------------------


@dataclass
class MemoryLimit:
    how: str  # for the test output and assertion messages
    prefix: list[str]  # put before the server command; it execs the server inside the limit
    group: Path | None = None  # the cgroup to remove after

    def peak(self, pid: int) -> str:
        """The most the server ever held (the group's peak, else the process's VmHWM)."""
        names = ("memory.peak", "memory.max_usage_in_bytes") if self.group is not None else ()
        for name in names:
            source = self.group / name  # type: ignore[operator]
            with contextlib.suppress(OSError, ValueError):
                return f"{int(source.read_text()) / 2**20:.0f} MiB"
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
            if found:
                return f"{int(found.group(1)) / 1024:.0f} MiB (VmHWM)"
        return "unknown"


def _own_cgroup(controller: str) -> str | None:
    """This process's path in the v1 hierarchy of `controller`, or in v2 ("")."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


def _mounts(fstype: str, option: str | None = None) -> list[Path]:
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, kind, options, *_ = line.split()
        if kind == fstype and (option is None or option in options.split(",")):
            found.append(Path(where))
    return found


def _child_group(limit: int) -> tuple[Path, str] | None:
    """A new cgroup below our own with the memory limit set (v2 memory.max, else v1
    memory.limit_in_bytes), or None where this machine does not let us make one."""
    name = f"checkin-photo-bombs-{secrets.token_hex(4)}"
    candidates: list[tuple[Path, str, str, str]] = []
    v2_path = _own_cgroup("")
    for mount in _mounts("cgroup2"):
        if v2_path is not None:
            candidates.append((mount, v2_path, "memory.max", "memory.swap.max"))
    v1_path = _own_cgroup("memory")
    for mount in _mounts("cgroup", "memory"):
        if v1_path is not None:
            candidates.append(
                (mount, v1_path, "memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
            )
    for mount, own, limit_file, swap_file in candidates:
        group = mount / own.lstrip("/") / name
        try:
            group.mkdir()
        except OSError:
            continue
        try:
            (group / limit_file).write_text(str(limit))
            if (group / swap_file).exists():  # no swapping out of the limit
                (group / swap_file).write_text("0" if limit_file == "memory.max" else str(limit))
            return group, f"cgroup {'v2' if limit_file == 'memory.max' else 'v1'} {limit_file}"
        except OSError:  # v2 without the memory controller delegated here
            with contextlib.suppress(OSError):
                group.rmdir()
    return None


def _remove_group(group: Path) -> None:
    deadline = time.monotonic() + CGROUP_EMPTY_TIMEOUT
    while True:
        try:
            group.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_INTERVAL)


# RLIMIT_AS counts reserved address space, not memory: glibc's per-thread arenas (64 MB
# each) would use it up with nothing resident, so the server gets two.
_RLIMIT_EXEC = (
    "import os, resource, sys; "
    "n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_AS, (n, n)); "
    "os.environ['MALLOC_ARENA_MAX'] = '2'; os.execv(sys.argv[2], sys.argv[2:])"
)


@contextlib.contextmanager
def memory_limit(limit: int) -> Iterator[MemoryLimit]:
    """The unit's limit as close as this machine allows: a cgroup (what systemd's MemoryMax
    is) where we may make one, else RLIMIT_AS. CHECKIN_BOMB_LIMIT=rlimit forces the latter."""
    made = None if os.environ.get("CHECKIN_BOMB_LIMIT") == "rlimit" else _child_group(limit)
    if made is not None:
        group, how = made
        # The shell joins the group, then becomes the server: nothing runs outside it.
        prefix = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs")]
        try:
            yield MemoryLimit(how, prefix, group)
        finally:
            _remove_group(group)
        return
    if sys.platform != "linux":
        pytest.skip("no cgroup and no RLIMIT_AS to hold the server to the unit's MemoryMax")
    yield MemoryLimit("RLIMIT_AS", [sys.executable, "-c", _RLIMIT_EXEC, str(limit)])


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[Server, MemoryLimit]]:
    """The real `serve` under the unit's MemoryMax, and a kiosk credential to upload with."""
    port = free_port()
    data_dir = tmp_path / "data"
    command = cli_command("serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir))
    with (
        memory_limit(unit_memory_max()) as limit,
        launched(tmp_path, limit.prefix + command, port, data_dir) as server,
    ):
        yield server, limit


# --- requests ------------------------------------------------------------------------------


def send_check_in(server: Server, access: str, image: bytes) -> http.client.HTTPConnection:
    """A multipart check-in sent whole; its answer is read with `answer`."""
    body = multipart({"fname": "Ada Lovelace"}, image)
    headers = {
        "Authorization": f"Bearer {access}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    conn = http.client.HTTPConnection(HOST, server.port, timeout=UPLOAD_TIMEOUT)
    conn.request("POST", "/api/patients/", body=body, headers=headers)
    return conn


def check_in(server: Server, access: str, image: bytes) -> Any:
    """(status, JSON body) of a multipart check-in; AssertionError if the server died on it."""
    return answer(server, send_check_in(server, access, image))


def answer(server: Server, conn: http.client.HTTPConnection) -> Any:
    try:
        response = conn.getresponse()
        status, raw = response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        # The kernel's OOM kill closes the socket a moment before the process is reaped.
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=EXIT_TIMEOUT)
        state = "alive" if server.proc.poll() is None else f"exited {server.proc.returncode}"
        raise AssertionError(f"no answer ({exc!r}); server {state}\n{server.describe()}") from exc
    finally:
        conn.close()
    return status, json.loads(raw)


def kiosk(server: Server) -> str:
    return server.login(server.create_token("form", "Kiosk"))


# --- the bombs -----------------------------------------------------------------------------
# Each just under the 40 Mpx pixel cap, so only the memory budget can refuse it. The sizes
# and file sizes are the outside review's.


def webp_lossless() -> bytes:
    return encode(Image.new("RGB", (16383, 2441)), "WEBP", lossless=True)


def png_rgba() -> bytes:
    return encode(Image.new("RGBA", (6324, 6324)), "PNG")


def png_grey_16_bit() -> bytes:
    return encode(Image.new("I;16", (6324, 6324)), "PNG")


def jpeg_progressive_40_mpx() -> bytes:
    return encode(Image.new("RGB", (7296, 5472), (90, 120, 150)), "JPEG", progressive=True)


BOMBS = {
    "lossless WebP 16383x2441": webp_lossless,
    "RGBA PNG 6324x6324": png_rgba,
    "16-bit grey PNG 6324x6324": png_grey_16_bit,
    "progressive JPEG 40 Mpx": jpeg_progressive_40_mpx,
}


@pytest.mark.parametrize("kind", BOMBS)
def test_a_photo_bomb_is_refused_under_the_units_memory_limit(
    limited: tuple[Server, MemoryLimit], kind: str
) -> None:
    server, limit = limited
    bomb = BOMBS[kind]()
    assert len(bomb) < 300_000, len(bomb)  # small on the wire; tens of Mpx once decoded
    access = kiosk(server)

    status, body = check_in(server, access, bomb)
    peak = limit.peak(server.proc.pid)
    print(f"{kind}: {len(bomb)} bytes -> {status} {body.get('code')}, peak {peak}")
    assert server.proc.poll() is None, f"server died ({limit.how})\n{server.describe()}"
    assert (status, body.get("code")) == (400, "photo_too_large_to_decode"), body

    status, body = check_in(server, access, encode(Image.new("RGB", (640, 480)), "JPEG"))
    assert status == 201, body
    assert body["image"], body


def test_big_photos_that_fit_the_budget_still_check_in_under_the_limit(
    limited: tuple[Server, MemoryLimit],
) -> None:
    # What a clinic sends: a 12 Mpx phone shot (progressive, the costlier kind), a 40 Mpx
    # camera JPEG (decoded at 1/8), a phone screenshot with alpha. All within the budget
    # and the unit's limit, one right after the other.
    server, limit = limited
    access = kiosk(server)
    photos = {
        "12 Mpx progressive JPEG": encode(
            Image.linear_gradient("L").resize((4000, 3000)).convert("RGB"),
            "JPEG",
            progressive=True,
        ),
        "40 Mpx baseline JPEG": encode(Image.new("RGB", (7296, 5472), (200, 180, 160)), "JPEG"),
        "RGBA PNG screenshot 1170x2532": encode(Image.new("RGBA", (1170, 2532)), "PNG"),
    }
    for kind, data in photos.items():
        status, body = check_in(server, access, data)
        print(f"{kind}: {len(data)} bytes -> {status}, peak {limit.peak(server.proc.pid)}")
        assert status == 201, (kind, body)
        assert server.proc.poll() is None


def test_the_limit_is_really_applied(limited: tuple[Server, MemoryLimit]) -> None:
    # The server runs inside the group the test made (or under RLIMIT_AS): otherwise every
    # test above would pass without proving anything.
    server, limit = limited
    pid = server.proc.pid
    if limit.group is not None:
        assert str(pid) in (limit.group / "cgroup.procs").read_text().split(), limit.how
    else:
        soft = Path(f"/proc/{pid}/limits").read_text()
        assert re.search(rf"Max address space\s+{unit_memory_max()}\s", soft), soft


# --- the progressive-JPEG scan bomb ---------------------------------------------------------


def scan_spans(jpeg: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan: its SOS segment and the coded data after it, to the next
    marker (not FF00 stuffing or a restart marker)."""
    spans = []
    i = 2
    while jpeg[i + 1] != 0xD9:  # EOI
        start, marker = i, jpeg[i + 1]
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if marker == 0xDA:
            while jpeg[i] != 0xFF or jpeg[i + 1] == 0x00 or 0xD0 <= jpeg[i + 1] <= 0xD7:
                i += 1
            spans.append((start, i))
    return spans


def scan_bomb(repeats: int = 2000, size: tuple[int, int] = (4000, 3000)) -> bytes:
    """A valid progressive JPEG whose first AC refinement scan is repeated `repeats` times
    before EOI: a plain area makes that scan a few bytes, yet each is a pass over every
    block of the 12 Mpx image (the review's: 184 KB, 7-10 s to decode)."""
    plain = encode(Image.new("RGB", size, (90, 120, 150)), "JPEG", progressive=True)
    spans = scan_spans(plain)
    assert len(spans) == 10, len(spans)  # libjpeg's progressive script

    def refines_ac(span: tuple[int, int]) -> bool:
        header = plain[span[0] + 4 :]
        components = header[0]
        ss, _, ah_al = header[1 + 2 * components : 4 + 2 * components]
        return ss > 0 and ah_al >> 4 > 0

    start, end = next(span for span in spans if refines_ac(span))
    last = spans[-1][1]
    return plain[:last] + plain[start:end] * repeats + plain[last:]


def test_a_jpeg_scan_bomb_is_refused_and_the_next_photo_does_not_wait(
    limited: tuple[Server, MemoryLimit],
) -> None:
    server, _ = limited
    bomb = scan_bomb()
    assert 100_000 < len(bomb) < 200_000, len(bomb)
    normal = encode(Image.linear_gradient("L").resize((3000, 2000)).convert("RGB"), "JPEG")
    access = kiosk(server)

    # The bomb first, the next patient's photo right behind it (photos decode one at a time).
    started = time.monotonic()
    bomb_conn = send_check_in(server, access, bomb)
    normal_sent = time.monotonic()
    status, body = check_in(server, access, normal)
    normal_waited = time.monotonic() - normal_sent
    bomb_status, bomb_body = answer(server, bomb_conn)
    bomb_took = time.monotonic() - started
    print(
        f"scan bomb ({len(bomb)} bytes): {bomb_took:.2f} s; the photo behind: {normal_waited:.2f} s"
    )

    assert (bomb_status, bomb_body.get("code")) == (400, "photo_too_many_scans"), bomb_body
    assert status == 201, body
    assert normal_waited < WAIT_BEHIND_A_BOMB, normal_waited
    assert bomb_took < WAIT_BEHIND_A_BOMB, bomb_took


def test_scans_are_counted_without_decoding() -> None:
    normal = encode(Image.new("RGB", (64, 48)), "JPEG", progressive=True)
    assert photos.jpeg_scan_count(normal, photos.MAX_JPEG_SCANS) == 10
    baseline = encode(Image.new("RGB", (64, 48)), "JPEG")
    assert photos.jpeg_scan_count(baseline, photos.MAX_JPEG_SCANS) == 1
    # Counting stops just past the limit: a file of thousands of scans is not walked to its end.
    bomb = scan_bomb(repeats=5_000, size=(64, 48))
    assert photos.jpeg_scan_count(bomb, photos.MAX_JPEG_SCANS) == photos.MAX_JPEG_SCANS + 1
    # Just within the limit is an ordinary photo.
    within = scan_bomb(repeats=photos.MAX_JPEG_SCANS - 10, size=(64, 48))
    assert photos.jpeg_scan_count(within, photos.MAX_JPEG_SCANS) == photos.MAX_JPEG_SCANS
    assert photos.reencode(within)


def test_a_decode_past_its_cpu_allowance_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The backstop behind the scan count: whatever makes a decode slow, it stops at its
    # allowance (checked between feeds of 256 bytes). 50 scans over 12 Mpx take ~0.5 s of
    # CPU; here the allowance is 20 ms.
    within_the_count = scan_bomb(repeats=photos.MAX_JPEG_SCANS - 10)
    monkeypatch.setattr(photos, "DECODE_CPU_SECONDS", 0.02)
    started = time.thread_time()
    with pytest.raises(InvalidInput) as refused:
        photos.reencode(within_the_count)
    assert refused.value.code is errors.PHOTO_TOO_SLOW_TO_DECODE
    assert time.thread_time() - started < 0.4


# --- the budget holds what it says ----------------------------------------------------------

# Measured in a fresh interpreter: its resident high-water mark (VmHWM, which unlike
# ru_maxrss starts afresh at exec) over reencode() of a photo just inside the budget. The
# libraries' first use adds a few MB of their own.
_MEASURE = """
import re, sys
from checkin_appliance import photos
def kb(field):
    status = open("/proc/self/status").read()
    return int(re.search(field + r":\\s+(\\d+) kB", status).group(1))
data = open(sys.argv[1], "rb").read()
before = kb("VmRSS")
photos.reencode(data)
print((kb("VmHWM") - before) * 1024)
"""
FIRST_USE_SLACK = 12 * 2**20


def _grain(size: tuple[int, int], mode: str) -> Image.Image:
    """A smooth picture (compresses, but is not one flat colour) in `mode`."""
    grey = Image.linear_gradient("L").resize(size)
    if mode == "I;16":
        return grey.convert("I").point(lambda v: v * 257).convert("I;16")
    return grey.convert(mode)


AT_THE_BUDGET = {
    "RGBA PNG 2700x2700": lambda: encode(_grain((2700, 2700), "RGBA"), "PNG"),
    "LA PNG 2400x2400": lambda: encode(_grain((2400, 2400), "LA"), "PNG"),
    "16-bit grey PNG 2700x2700": lambda: encode(_grain((2700, 2700), "I;16"), "PNG"),
    "WebP 2000x2400": lambda: encode(_grain((2000, 2400), "RGB"), "WEBP"),
    "progressive JPEG 5600x4200": lambda: encode(
        _grain((5600, 4200), "RGB"), "JPEG", progressive=True
    ),
}


@pytest.mark.parametrize("kind", AT_THE_BUDGET)
def test_a_photo_just_inside_the_budget_holds_no_more_than_the_budget(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "photo"
    path.write_bytes(AT_THE_BUDGET[kind]())
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=UPLOAD_TIMEOUT,
        check=False,
    )
    assert measured.returncode == 0, measured.stderr  # accepted: inside the budget
    peak = int(measured.stdout)
    print(f"{kind}: peak +{peak / 2**20:.1f} MiB (budget {photos.DECODE_BUDGET_BYTES / 2**20:.0f})")
    assert peak <= photos.DECODE_BUDGET_BYTES + FIRST_USE_SLACK
