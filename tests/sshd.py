"""A real OpenSSH server for tests: Debian's sshd on 127.0.0.1, e.g. an SFTP replica's host.

    from tests.sshd import SSHD  # the `sshd` fixture comes with conftest.py's pytest_plugins

    async def test_x(sshd: SSHD, tmp_path: Path) -> None:
        replica = sshd.url(tmp_path / "replica")  # sftp://user@127.0.0.1:port/…?key=…&host_key=…
        await asyncio.to_thread(sshd.stop)        # the server goes away (open sessions too)
        await asyncio.to_thread(sshd.start)       # back, same port, same keys

The `sshd` fixture starts `/usr/sbin/sshd -D -e -f <config>` as the current user (root in CI,
anyone on a developer's machine) on a free loopback port, with keys made for the test in its
tmp_path: host keys of two types (Ed25519 and ECDSA, as a Debian box has), and one Ed25519
client key, the only way in (no passwords; root only with the key). `host_keys` holds the
server's public host keys one per line, as an operator would copy them from the server's
/etc/ssh/ssh_host_*_key.pub. Paths in the server are the machine's own (no chroot): the
replica folder is any absolute path the user can write.

start() waits until the port answers with an SSH banner (polled, bounded by START_TIMEOUT);
stop() ends the listener and every session process under it (sshd's sessions outlive a
stopped listener), bounded by STOP_TIMEOUT; the fixture stops it at teardown. Without sshd
(Debian package openssh-server) the fixture skips on a developer's machine and fails in CI
(CI set). As root, sshd needs its privilege separation folder /run/sshd, which the fixture
creates when missing (the package's service would).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.serverproc import HOST, free_port

SSHD_PROGRAM = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
START_TIMEOUT = 10.0  # seconds until the port answers with an SSH banner
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
POLL_INTERVAL = 0.05
IN_CI = bool(os.environ.get("CI"))

CONFIG = """\
Port {port}
ListenAddress {host}
HostKey {root}/host_ed25519
HostKey {root}/host_ecdsa
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _private(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _public(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def _descendants(pid: int) -> list[int]:
    """Every process under pid (its children, theirs…), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid …: comm may hold spaces, so split after its ')'.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may be slow to reap the orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class SSHD:
    root: Path  # config, keys, pid file and log
    port: int
    user: str
    client_key: Path  # the private key the server accepts (OpenSSH format, 0600)
    host_keys: Path  # the server's public host keys, one per line
    log: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def make(cls, root: Path) -> SSHD:
        root.mkdir(parents=True, exist_ok=True)
        user = pwd.getpwuid(os.geteuid()).pw_name
        host_keys = {
            "host_ed25519": ed25519.Ed25519PrivateKey.generate(),
            "host_ecdsa": ec.generate_private_key(ec.SECP256R1()),
        }
        for name, key in host_keys.items():
            _write(root / name, _private(key), 0o600)
        client = ed25519.Ed25519PrivateKey.generate()
        _write(root / "client_ed25519", _private(client), 0o600)
        _write(root / "authorized_keys", _public(client) + b"\n", 0o600)
        publics = b"".join(_public(key) + b"\n" for key in host_keys.values())
        _write(root / "host_keys.pub", publics, 0o644)
        port = free_port()
        config = CONFIG.format(port=port, host=HOST, root=root, user=user)
        _write(root / "sshd_config", config.encode(), 0o600)
        return cls(
            root, port, user, root / "client_ed25519", root / "host_keys.pub", root / "sshd.log"
        )

    def url(self, path: Path) -> str:
        """The `replica` setting for an SFTP copy in `path` on this server."""
        return (
            f"sftp://{self.user}@{HOST}:{self.port}{path}"
            f"?key={self.client_key}&host_key={self.host_keys}"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        assert not self.running, "sshd is already running"
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(SSHD_PROGRAM), "-D", "-e", "-f", str(self.root / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None:
                raise AssertionError(f"sshd exited with {self._process.returncode}\n{self.output}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"sshd did not answer within {START_TIMEOUT} s\n{self.output}")
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """Ends the listener and its sessions: clients see the connection drop."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        sessions = _descendants(process.pid)
        process.terminate()
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while (left := [p for p in sessions if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @property
    def output(self) -> str:
        return f"--- sshd log ---\n{self.log.read_text(errors='replace')}"

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SSHD]:
    """A started sshd on 127.0.0.1 for this test (see the module's docstring)."""
    if not os.access(SSHD_PROGRAM, os.X_OK):
        reason = f"{SSHD_PROGRAM} is missing (Debian package: openssh-server)"
        if IN_CI:
            pytest.fail(f"{reason}; CI must install it (.ci/run)")
        pytest.skip(reason)
    server = SSHD.make(tmp_path / "sshd")
    server.start()
    try:
        yield server
    finally:
        server.stop()
