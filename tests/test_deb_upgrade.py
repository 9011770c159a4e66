"""The .deb over time: an upgrade from the previous release keeps the clinic's edited config
and its data and never asks a question; a downgrade below the database's schema is refused
before anything changes.

Each test gets a copy of a Debian bookworm root (debootstrap, `make deb-test-root`, kept in
build/nspawn/bookworm) and runs dpkg inside it with systemd-nspawn as a better chroot. systemd
itself does not boot in a container on every machine (not in this project's Firecracker VMs:
no cgroup delegation), so, as on a box without systemd, the maintainer scripts run with
/run/systemd/system absent and the test starts the service the way the unit's ExecStart says,
as its User=, on a free loopback port instead of 443. The previous release's .deb is built
from git by `make package-previous` (build/previous/<commit>/, once per commit).
Root only; skipped elsewhere, failing in CI (CI=true) when something is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import free_port
from tests.test_packaging import DIST, PASSWORD, ROOT, __version__, _request, unavailable

pytestmark = pytest.mark.packaging

PREVIOUS_COMMIT = "88654a7"  # the release 0.1.0
DEBIAN_ROOT = ROOT / "build" / "nspawn" / "bookworm"
UNIT = "lib/systemd/system/checkin-appliance.service"
STATE = "var/lib/checkin-appliance"
CONFIG = "etc/checkin-appliance/config.toml"
RUN_TIMEOUT = 180.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# A setting both releases know, set to something other than its default.
EDITED = "\n# Edited by the clinic.\nevent_log_keep_hours = 48\n"


@pytest.fixture(scope="module")
def nspawn() -> str:
    if os.geteuid() != 0:
        pytest.skip("dpkg in a container needs root")
    tool = shutil.which("systemd-nspawn")
    if tool is None:
        unavailable("systemd-nspawn is missing (Debian package: systemd-container)")
    if not (DEBIAN_ROOT / "usr" / "bin" / "dpkg").is_file():
        unavailable(f"{DEBIAN_ROOT.relative_to(ROOT)} is missing (run `make deb-test-root`)")
    assert tool is not None
    return tool


@pytest.fixture(scope="module")
def new_deb() -> Path:
    found = sorted(DIST.glob(f"checkin-appliance_{__version__}_*.deb"))
    if not found:
        unavailable(f"dist/checkin-appliance_{__version__}_*.deb not built (run `make package`)")
    return found[0]


@pytest.fixture(scope="module")
def previous_deb() -> Path:
    found = sorted((ROOT / "build" / "previous" / PREVIOUS_COMMIT).glob("*.deb"))
    if not found:
        unavailable(f"the release {PREVIOUS_COMMIT} is not built (run `make package-previous`)")
    return found[0]


def copy_root(source: Path, tmp_path: Path) -> Path:
    """A fresh copy of a Debian root: a box on which nothing was installed yet."""
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", source, root], check=True)
    return root


@pytest.fixture
def box(nspawn: str, tmp_path: Path) -> Path:
    return copy_root(DEBIAN_ROOT, tmp_path)


def container(root: Path, *extra: str) -> list[str]:
    # --keep-unit and --register=no: no machined or D-Bus needed on the host; --pipe: our
    # stdin, stdout and stderr as they are (not a pseudo-terminal, which drops stdin).
    return [
        "systemd-nspawn",
        "-q",
        "-D",
        str(root),
        "--register=no",
        "--keep-unit",
        "--pipe",
        *extra,
    ]


def inside(root: Path, *command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command in the box as root; stdin is `stdin` or closed, so a question dpkg asks
    fails the step."""
    return subprocess.run(
        [*container(root), *command],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def dpkg_install(root: Path, deb: Path) -> subprocess.CompletedProcess[str]:
    # nspawn mounts its own /tmp: the package goes where dpkg inside can read it.
    shutil.copy(deb, root / "srv" / deb.name)
    return inside(root, "env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "-i", f"/srv/{deb.name}")


def installed_version(root: Path) -> str:
    status = inside(root, "dpkg-query", "-W", "-f=${Status} ${Version}", "checkin-appliance")
    assert status.returncode == 0, status.stderr
    state, _, version = status.stdout.rpartition(" ")
    assert state == "install ok installed", status.stdout
    return version


def service_command(root: Path, port: int) -> list[str]:
    """The installed unit's ExecStart, on a loopback port (the box shares our network)."""
    unit = (root / UNIT).read_text()
    line = next(v for v in re.findall(r"^ExecStart=(.*)$", unit, re.M))
    args = shlex.split(line)
    for flag, value in (("--port", str(port)), ("--host", "127.0.0.1")):
        args[args.index(flag) + 1] = value
    return args


@contextlib.contextmanager
def service(
    root: Path, start_timeout: float = START_TIMEOUT
) -> Iterator[tuple[str, ssl.SSLContext]]:
    """The service as its unit starts it (User=, WorkingDirectory=, TMPDIR), stopped with
    SIGTERM after; yields its URL and a context trusting the box's own CA."""
    port = free_port()
    log = root.parent / f"service-{port}.log"
    unit = (root / UNIT).read_text()
    user = re.search(r"^User=(.*)$", unit, re.M)
    assert user is not None
    command = container(
        root,
        "--kill-signal=SIGTERM",  # to the executable, as systemd's KillMode=mixed
        f"--user={user.group(1)}",
        f"--chdir=/{STATE}",
        "--setenv=TMPDIR=/tmp",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, *service_command(root, port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"https://127.0.0.1:{port}"
    try:
        ca = root / STATE / "tls" / "ca.crt"
        deadline = time.monotonic() + start_timeout
        while True:
            assert proc.poll() is None, f"the service exited\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not up in {start_timeout}s\n{log.read_text()}"
            if ca.is_file():
                context = ssl.create_default_context(cafile=str(ca))
                with contextlib.suppress(OSError):
                    if _request("GET", f"{url}/healthz", context)[0] == 200:
                        break
            time.sleep(0.1)
        yield url, context
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"still running {STOP_TIMEOUT}s after SIGTERM") from None


def create_token(root: Path, role: str) -> str:
    made = subprocess.run(
        [
            *container(root, "--user=checkin-appliance", f"--chdir=/{STATE}"),
            "checkin-appliance",
            "token",
            "create",
            "--role",
            role,
            "--label",
            f"{role} 1",
            "--password-stdin",
            "--data-dir",
            f"/{STATE}",
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def call(
    url: str, context: ssl.SSLContext, method: str, path: str, token: str, body: object = None
) -> dict:
    """Signs in with the credential and makes one request as it."""
    status, _, answer = _request(
        "POST", f"{url}/api/login/", context, {"token": token, "password": PASSWORD}
    )
    assert status == 200, answer
    access = json.loads(answer)["access"]
    status, _, answer = _request(method, f"{url}{path}", context, body, access)
    assert status in (200, 201), answer
    return json.loads(answer)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrap(deb: Path, out: Path, *, version: str, ceiling: int | None = None) -> Path:
    """This tree's .deb as another version (and schema ceiling): two builds of one tree."""
    tree = out.with_suffix("")
    subprocess.run(["dpkg-deb", "-R", deb, tree], check=True)
    control = tree / "DEBIAN" / "control"
    control.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}", control.read_text()))
    for script in ("postinst", "prerm", "postrm"):  # what build-deb.sh wrote into them
        path = tree / "DEBIAN" / script
        path.write_text(re.sub(r'(?m)^VERSION=".*"$', f'VERSION="{version}"', path.read_text()))
    if ceiling is not None:
        prerm = tree / "DEBIAN" / "prerm"
        text, count = re.subn(
            r"(?m)^SCHEMA_CEILING=\d+$", f"SCHEMA_CEILING={ceiling}", prerm.read_text()
        )
        assert count == 1, "prerm has no SCHEMA_CEILING line"
        prerm.write_text(text)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", tree, out],
        check=True,
        capture_output=True,
    )
    return out


def ceiling_of(deb: Path) -> int:
    """The newest schema a package reads, as build-deb.sh wrote it into its prerm."""
    prerm = subprocess.run(
        ["dpkg-deb", "-I", deb, "prerm"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"(?m)^SCHEMA_CEILING=(\d+)$", prerm)
    assert found, "prerm has no SCHEMA_CEILING line"
    return int(found.group(1))


def schema_of(root: Path) -> int:
    header = (root / STATE / "checkin.db").read_bytes()[60:64]
    return int.from_bytes(header, "big")


def test_upgrade_from_the_previous_release_keeps_the_edited_config_and_the_data(
    box: Path, previous_deb: Path, new_deb: Path
) -> None:
    installed = dpkg_install(box, previous_deb)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    old_version = installed_version(box)
    config = box / CONFIG
    config.write_text(config.read_text() + EDITED)
    edited = config.read_text()
    form, doctor = create_token(box, "form"), create_token(box, "doctor")
    with service(box) as (url, context):
        call(url, context, "POST", "/api/patients/", form, {"fname": "Ada Lovelace"})
    old_schema = schema_of(box)

    upgraded = dpkg_install(box, new_deb)
    # Non-interactive, no conffile question: stdin is closed, a prompt would fail dpkg.
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "Configuration file" not in upgraded.stdout + upgraded.stderr
    assert installed_version(box) == __version__ != old_version
    assert config.read_text() == edited
    assert not list(config.parent.glob("config.toml.dpkg-*"))

    with service(box) as (url, context):
        assert _request("GET", f"{url}/healthz", context)[2].decode().count(__version__) == 1
        queue = call(url, context, "GET", "/api/queue/", doctor)
    assert "Ada Lovelace" in json.dumps(queue)
    # The old data at the new release's schema (migrated when it has newer migrations), with
    # the copy taken before the migration to roll back to.
    assert schema_of(box) == ceiling_of(new_deb) >= old_schema
    if ceiling_of(new_deb) > old_schema:
        assert list((box / STATE / "pre-upgrade").glob(f"checkin-schema-{old_schema}-*.db"))
    # An admin's command as root, naming no data directory, reads the service's data through
    # the config file 0.1.0 installed (which names none) and leaves nothing owned by root.
    listed = inside(box, "checkin-appliance", "token", "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "form 1" in listed.stdout and "doctor 1" in listed.stdout
    assert not [p for p in (box / STATE).rglob("*") if p.stat().st_uid == 0]

    # Purge removes the configuration (no longer the package's file) and keeps the data.
    purged = inside(box, "dpkg", "--purge", "checkin-appliance")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not config.exists()
    assert (box / STATE / "checkin.db").is_file()


def test_a_downgrade_below_the_databases_schema_is_refused_before_anything_changes(
    box: Path, new_deb: Path, tmp_path: Path
) -> None:
    installed = dpkg_install(box, new_deb)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    with service(box):
        pass  # the database is made and migrated to this build's ceiling, then closed
    ceiling = schema_of(box)
    assert ceiling > 1
    # The same version minus a little: "~" sorts before anything in dpkg.
    older = f"{__version__}~older"
    lower = rewrap(new_deb, tmp_path / "lower.deb", version=older, ceiling=ceiling - 1)
    watched = [box / "usr/bin/checkin-appliance", box / STATE / "checkin.db", box / CONFIG]
    before = {path: digest(path) for path in watched}

    refused = dpkg_install(box, lower)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0, said
    assert f"refusing to downgrade checkin-appliance from {__version__} to {older}" in said
    assert f"schema {ceiling}" in said and f"up to {ceiling - 1} only" in said
    assert installed_version(box) == __version__
    assert {path: digest(path) for path in watched} == before
    with service(box) as (url, context):
        assert __version__ in _request("GET", f"{url}/healthz", context)[2].decode()

    # An older build that reads this schema is let through: only the schema decides.
    same = rewrap(new_deb, tmp_path / "same.deb", version=older, ceiling=ceiling)
    allowed = dpkg_install(box, same)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert installed_version(box) == older


def test_the_previous_release_is_the_one_this_test_upgrades_from(previous_deb: Path) -> None:
    fields = subprocess.run(
        ["dpkg-deb", "-f", previous_deb, "Version"], capture_output=True, text=True, check=True
    )
    assert fields.stdout.strip() == "0.1.0"
    # 0.1.0's prerm exits 0 for everything: a downgrade TO it cannot be refused (README).
    prerm = subprocess.run(
        ["dpkg-deb", "-I", previous_deb, "prerm"], capture_output=True, text=True, check=True
    )
    assert "failed-upgrade" not in prerm.stdout
