"""The processes under test: our appliance, the aiohttp baseline, or a server already running.

Each kind yields a `Target`: where to send requests, which headers to send, how to subscribe,
and (when the process is known) its pid, so RSS and CPU can be read from /proc.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

HOST = "127.0.0.1"  # never anything else
REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
HEALTH_TIMEOUT = 20.0
CLI_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
CREDENTIAL_ROLES = (("form", "Bench Kiosk"), ("doctor", "Bench Doctor"), ("queue", "Bench TV"))


# --- /proc --------------------------------------------------------------------------------


def status_kb(pid: int | None, key: str) -> int | None:
    """A `kB` line of /proc/<pid>/status: VmRSS (resident now) or VmHWM (the kernel's peak)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_kb(pid: int | None) -> int | None:
    return status_kb(pid, "VmRSS")


def cpu_s(pid: int | None) -> float | None:
    """utime + stime of a whole process (all its threads), in seconds."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_s() -> float | None:
    """CPU seconds all cores spent busy since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLK_TCK


def loadavg() -> str | None:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


def fs_type(path: Path) -> str:
    """Filesystem under `path`: a durable commit costs very differently on ext4 and tmpfs."""
    best, kind = "", "?"
    path_s = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                mount = parts[1]
                inside = path_s == mount or path_s.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, parts[2]
    return kind


def raise_fd_limit() -> int:
    """Hundreds of sockets in one process: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def compile_bytecode() -> None:
    """Byte-compiles our package and the baseline's, as a box runs them: the frozen build
    and every installed copy load bytecode. A machine with PYTHONDONTWRITEBYTECODE set (this
    VM) otherwise parsed every source at each start, and the 200-subscriber peak RSS carried
    ~0.5 MiB of the parser's leftovers (59.8-60.0 against 59.0-59.5 MiB, photo cell, 3 runs
    each). Up-to-date files are skipped."""
    for package in ("checkin_appliance", "bench"):
        compileall.compile_dir(REPO / package, quiet=1)


def write_results(result: dict[str, Any], out: Path | None, started: Any, kind: str) -> Path:
    """`result` as JSON in `out`, or in bench/results/<date>-<host>-<kind>.json."""
    host = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in socket.gethostname())
    out = out or REPO / "bench" / "results" / f"{started.strftime('%Y-%m-%d')}-{host}-{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"results: {out}")
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# --- what the load generator talks to -----------------------------------------------------


@dataclass
class Target:
    name: str  # "ours" or "baseline"
    host: str
    port: int
    pid: int | None = None
    form_headers: dict[str, str] = field(default_factory=dict)
    doctor_headers: dict[str, str] = field(default_factory=dict)
    feed_token: str | None = None
    supports_since: bool = True

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def feed_path(self, query: str) -> str:
        if self.feed_token:
            query = f"{query}&token={self.feed_token}" if query else f"token={self.feed_token}"
        return f"/ws/queue/?{query}" if query else "/ws/queue/"


class ServerProcess:
    """A server we start: the appliance (`python -m checkin_appliance serve`) or the baseline."""

    def __init__(self, name: str, workdir: Path, log_level: str = "INFO") -> None:
        self.name = name
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / f"{name}.log"
        self.log_level = log_level
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def command(self) -> list[str]:
        if self.name == "baseline":
            return [sys.executable, "-m", "bench.baseline_server", "--port", str(self.port)]
        return [
            sys.executable,
            "-m",
            "checkin_appliance",
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            self.log_level,
            "--config",
            str(self.limits_file()),
        ]

    def limits_file(self) -> Path:
        """The bench's hundreds of screens all come from this one machine and share one
        credential: lift the per-address and per-credential limits a LAN never reaches."""
        path = self.workdir / "bench-limits.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("max_connections_per_address = 4096\nmax_feeds_per_credential = 4096\n")
        return path

    def start(self) -> None:
        compile_bytecode()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            self.command(),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    async def wait_healthy(self, session: aiohttp.ClientSession, limit: float) -> float:
        """Bounded poll of /healthz; returns the seconds until the first 200."""
        start = time.perf_counter()
        limit = min(HEALTH_TIMEOUT, limit)
        for _ in range(int(limit / 0.05) + 1):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    f"http://{HOST}:{self.port}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                ) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name}: /healthz not 200 within {limit:.0f} s:\n{self.tail()}")

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL; returns the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(timeout=5)
            code = self.proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_problems(self) -> dict[str, Any]:
        """Warnings, errors and tracebacks the server logged (names never reach INFO logs)."""
        warnings, errors, tracebacks = [], [], 0
        for line in self.log_text().splitlines():
            if " WARNING " in line:
                warnings.append(line)
            elif " ERROR " in line or " CRITICAL " in line:
                errors.append(line)
            if line.startswith("Traceback"):
                tracebacks += 1
        return {
            "warnings": len(warnings),
            "errors": len(errors),
            "tracebacks": tracebacks,
            "first_warnings": warnings[:5],
            "first_errors": errors[:5],
        }


# --- credentials --------------------------------------------------------------------------


async def create_credential(data_dir: Path, role: str, label: str, password: str) -> str:
    """`checkin-appliance token create`, as an operator would; returns the new token."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "checkin_appliance",
        "token",
        "create",
        "--role",
        role,
        "--label",
        label,
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate((password + "\n").encode()), CLI_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    words = out.decode().split()
    if proc.returncode != 0 or not words or not words[-1].isdigit():
        raise RuntimeError(f"token create --role {role} failed: {err.decode().strip()}")
    return words[-1]


async def create_credentials(data_dir: Path) -> dict[str, tuple[str, str]]:
    """form, doctor and queue credentials through the CLI: {role: (token, password)}."""
    password = secrets.token_urlsafe(18)
    made = {}
    for role, label in CREDENTIAL_ROLES:
        made[role] = (await create_credential(data_dir, role, label, password), password)
    return made


async def login(api: aiohttp.ClientSession, base: str, token: str, password: str) -> str:
    async with api.post(f"{base}/api/login/", json={"token": token, "password": password}) as r:
        body = await r.json(content_type=None)
        if r.status != 200:
            raise RuntimeError(f"login {token} -> {r.status} {body}")
        return body["access"]


async def authorise(
    target: Target, api: aiohttp.ClientSession, credentials: dict[str, tuple[str, str]]
) -> None:
    """Logs each role in and fills the target's headers and feed token."""
    access = {
        role: await login(api, target.base, token, password)
        for role, (token, password) in credentials.items()
    }
    target.form_headers = {"Authorization": f"Bearer {access['form']}"}
    target.doctor_headers = {"Authorization": f"Bearer {access['doctor']}"}
    target.feed_token = access["queue"]


def external_target(base_url: str, pid: int | None) -> Target:
    """A server someone else started (--base-url); loopback only."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        raise ValueError("--base-url must be http:// on this machine (127.0.0.1 or localhost)")
    return Target("ours", HOST, parts.port or 80, pid)
