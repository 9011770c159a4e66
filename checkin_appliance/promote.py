"""`checkin-appliance promote`: the standby becomes the live box (README "When the box dies").

One line per step, in order: stop the standby; bring its copy up to the replica's newest
transaction (a bounded restore; when the replica cannot be reached, the followed copy as it
is, saying how old); check it as a restore checks a backup; open the box's keys it carries
(box_keys.py) with the replica's passphrase; put the copy in place as the live database and
the keys beside it (what was there moved aside, never deleted); record the promotion in the
audit trail; take the old box's hostname, so devices find it under the same .local name;
start the service. Everything that can fail on the copy or the passphrase fails before
anything in the data directory is moved: "nothing was changed".

The live feed's event numbers jump ahead by SEQ_GAP in the promoted database: the dead box
may have sent events the replica never got, and a wall display that saw them reconnects with
`?since=` a number the promoted box would otherwise give to different events. With the jump,
such a client is answered with a snapshot (the replay finds a gap), never with a replay that
silently skips the new box's first events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from checkin_appliance import audit, backup, box_keys, ownership
from checkin_appliance.config import Config
from checkin_appliance.domain import CLI, format_time
from checkin_appliance.files import fsync_directory, write_atomically
from checkin_appliance.replication import ReplicaSetupError, describe, find_litestream
from checkin_appliance.standby import (
    Follower,
    Paths,
    Position,
    age_of,
    copy_position,
    move_copy,
    remove_copy,
    replica_position,
)
from checkin_appliance.store import Store, inspect, lock
from checkin_appliance.store.box_keys import StoredKeys, read_keys

MAIN_UNIT = "checkin-appliance.service"
STANDBY_UNIT = "checkin-appliance-standby.service"
CATCH_UP_TIMEOUT = 10.0  # seconds the last restore from the replica may take
STOP_TIMEOUT = 15.0  # seconds a standby has to stop before it is killed
SYSTEMCTL_TIMEOUT = 60.0
SEQ_GAP = 100_000  # far above the events a box commits within a sync interval
# Litestream's own state beside a database it replicated (a box that was a primary once):
# its positions belong to that database, not to the promoted copy.
LITESTREAM_STATE = ".checkin.db-litestream"
_HOSTNAME = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})\Z")

FAILED = 1  # exit codes as restore's
USAGE = 2


class PromoteError(Exception):
    """The promotion stops here; the message says what happened and what to do."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


@dataclass(frozen=True)
class Chosen:
    """The copy to promote and how current it is."""

    path: Path
    txid: int | None
    caught_up: bool  # holds the replica's newest transaction, as asked just now
    age_seconds: float | None  # since it last changed, when not caught up


def under_systemd() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def promote(
    config: Config,
    passphrase: Callable[[], bytes],
    say: Callable[[str], None],
    serve_command: str,
    *,
    start: bool = True,
) -> int:
    """Runs every step; returns 0, or raises PromoteError. `passphrase()` is asked only when
    the copy carries keys; `serve_command` is printed when systemd does not start the server
    (not there, or not `start`)."""
    paths = Paths.of(config.data_dir)
    binary = find_litestream(config.litestream_path)
    candidate = _followed_copy(paths)
    key = _early_passphrase_check(candidate, passphrase)  # before anything stops
    _stop_standby(paths, say)
    try:
        with lock.hold(config.data_dir):
            backup.refuse_if_in_use(config)
            chosen = _catch_up(config, paths, binary, say)
            counts, _, _ = backup.check_database(
                chosen.path, "the standby's copy", "it was replicated"
            )
            say(f"copy checked: sound, a schema this version reads; {counts.describe()}")
            stored = read_keys(chosen.path)
            files = _open_keys(stored, key or (passphrase() if stored else None), say)
            if stored is not None and audit.KEY_FILE not in files and _audited(chosen.path):
                say(
                    f"warning: the keys were sealed before the old box made its "
                    f"{audit.KEY_FILE}: `audit verify` will call the trail's older rows changed"
                )
            _jump_event_numbers(chosen.path)
            aside = _put_in_place(config, paths, chosen, files)
            say(
                f"the copy is the live database now: {config.db_path}"
                + (f" (what was there is in {aside.name}/)" if aside else "")
            )
    except lock.DataDirInUse as exc:
        raise PromoteError(
            f"{config.data_dir} is in use ({exc}): a server runs there already; nothing was changed"
        ) from exc
    except backup.BackupError as exc:
        raise PromoteError(_standby_stopped(exc.message)) from exc
    finally:
        ownership.give_to_data_dir_owner(config.data_dir)
    _record(config, stored, chosen, say)
    if stored is not None:
        _take_hostname(stored.hostname, say)
    if config.replica is not None:
        say(
            f"replication: the server replicates to {describe(config.replica)} again once it "
            "runs, continuing the same replica; set up a new standby from it (README)"
        )
    else:
        say(
            "replication: off (this box's config names no replica): set replica and "
            "replica_passphrase_file, restart, then set up a new standby (README)"
        )
    if start:
        _start(say, serve_command)
    else:
        say(f"not started (--no-start); start the server: {serve_command}")
    return 0


def _standby_stopped(message: str) -> str:
    return (
        f"{message}. The standby is stopped: start it again "
        "(sudo systemctl start checkin-appliance-standby, or checkin-appliance standby)"
    )


# --- the standby ------------------------------------------------------------------------


def _followed_copy(paths: Paths) -> Path | None:
    for path in (paths.copy, paths.previous):
        if path.exists():
            return path
    return None


def _early_passphrase_check(candidate: Path | None, passphrase: Callable[[], bytes]) -> bytes:
    """A wrong passphrase is found while the standby still runs: the keys the followed copy
    carries now are opened once (the next opening of the same file costs no scrypt)."""
    if candidate is None:
        return b""
    with contextlib.suppress(sqlite3.Error):
        stored = read_keys(candidate)
        if stored is not None:
            key = passphrase()
            try:
                box_keys.unseal(stored.sealed, key)
            except box_keys.KeysError as exc:
                raise PromoteError(f"{exc}; nothing was changed, the standby still runs") from exc
            return key
    return b""


def _stop_standby(paths: Paths, say: Callable[[str], None]) -> None:
    if under_systemd() and _systemctl("is-active", "--quiet", STANDBY_UNIT).returncode == 0:
        result = _systemctl("stop", STANDBY_UNIT)
        if result.returncode != 0:
            raise PromoteError(f"cannot stop {STANDBY_UNIT}: {result.stderr.strip()}")
        say(f"standby stopped ({STANDBY_UNIT})")
        return
    pid = _standby_pid(paths)
    if pid is None:
        say("standby: none running")
        return
    os.kill(pid, signal.SIGTERM)  # it stops Litestream between two transactions
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    say(f"standby stopped (process {pid})")


def _standby_pid(paths: Paths) -> int | None:
    """The running `standby` command's process, from its pid file, if it is one."""
    try:
        pid = int(paths.pid.read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"standby" in command else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for our purpose (its parent has not reaped it yet).
    with contextlib.suppress(OSError):
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    return True


def _systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed arguments, no shell
        ["systemctl", *args],  # noqa: S607 - systemctl where systemd runs
        capture_output=True,
        text=True,
        timeout=SYSTEMCTL_TIMEOUT,
        check=False,
    )


# --- the copy ---------------------------------------------------------------------------


def _catch_up(
    config: Config, paths: Paths, binary: Path | None, say: Callable[[str], None]
) -> Chosen:
    """The newest copy to be had: the replica restored now when it has more than the
    followed copy, else the followed copy (saying how old it is)."""
    followed = _followed_copy(paths)
    have = None if followed is None else copy_position(followed)
    position = _position(config, paths, binary)
    if position.problem is None and position.txid is not None:
        if have is not None and have >= position.txid:
            say(
                f"the followed copy is current: transaction {position.txid:016x}, the "
                "replica's newest"
            )
            assert followed is not None
            return Chosen(followed, have, True, None)
        restored = _restore(paths, binary)
        if restored is None:
            assert position.txid is not None
            say(
                f"caught up: restored the replica up to transaction {position.txid:016x} "
                f"(written {position.written_at or '?'})"
            )
            return Chosen(paths.folder / "catch-up.db", position.txid, True, None)
        problem = restored
    else:
        problem = position.problem or "no answer"
    if followed is None:
        raise PromoteError(
            _standby_stopped(
                f"there is no copy to promote: the standby never restored the replica, and "
                f"the replica cannot be read now ({problem}); nothing was changed"
            )
        )
    age = age_of(followed)
    say(
        f"the replica cannot be read ({problem}): promoting the followed copy as it is, "
        f"transaction {'?' if have is None else f'{have:016x}'}"
        + ("" if age is None else f", last changed {_ago(age)}")
    )
    return Chosen(followed, have, False, age)


def _position(config: Config, paths: Paths, binary: Path | None) -> Position:
    if binary is None:
        return Position(problem="the litestream program is not installed")
    if config.replica is not None:  # the replica as configured now (a spare box: on demand)
        try:
            Follower(config, binary).write_config()
        except ReplicaSetupError as exc:
            return Position(problem=str(exc))
    elif not paths.config.exists():
        return Position(problem="no replica: set replica in the config file")
    return replica_position(binary, paths.config, paths.copy)


def _restore(paths: Paths, binary: Path | None) -> str | None:
    """Restores the replica into standby/catch-up.db within CATCH_UP_TIMEOUT; None when it
    did, else why not."""
    assert binary is not None
    out = paths.folder / "catch-up.db"
    remove_copy(out)
    args = [str(binary), "restore", "-no-expand-env", "-config", str(paths.config)]
    args += ["-o", str(out), str(paths.copy)]
    try:
        result = subprocess.run(  # noqa: S603 - our own arguments, no shell
            args, capture_output=True, text=True, timeout=CATCH_UP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        why = f"the restore took longer than {CATCH_UP_TIMEOUT:g} s"
    else:
        if result.returncode == 0 and out.exists():
            return None
        lines = (result.stderr or result.stdout).strip().splitlines()
        why = lines[-1] if lines else f"restore failed ({result.returncode})"
    remove_copy(out)
    for leftover in paths.folder.glob("catch-up.db.tmp*"):
        leftover.unlink()
    return why


def _ago(seconds: float) -> str:
    moment = format_time(datetime.fromtimestamp(time.time() - seconds, UTC))
    if seconds < 120:
        return f"{seconds:.0f} s ago ({moment})"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago ({moment})"
    return f"{seconds / 3600:.1f} hours ago ({moment})"


def _open_keys(
    stored: StoredKeys | None, passphrase: bytes | None, say: Callable[[str], None]
) -> dict[str, bytes]:
    if stored is None:
        say(
            "keys: the copy carries none (the old box ran without replica_passphrase_file, "
            "or before this version): the server makes a new CA at start, which every device "
            "must trust again, and a new audit key (audit verify fails for the old rows)"
        )
        return {}
    assert passphrase is not None
    try:
        files = box_keys.unseal(stored.sealed, passphrase)
    except box_keys.KeysError as exc:
        raise PromoteError(_standby_stopped(f"{exc}; nothing was changed")) from exc
    say(
        f"keys opened ({', '.join(sorted(files)) or 'none'}), sealed {stored.sealed_at} "
        f"on {stored.hostname}"
    )
    return files


def _audited(copy: Path) -> bool:
    with inspect.read_only(copy) as db:
        return db.execute("SELECT EXISTS (SELECT 1 FROM audit_log)").fetchone()[0] == 1


def _jump_event_numbers(copy: Path) -> None:
    """The next event gets a number far past any the dead box may have sent (the module)."""
    db = sqlite3.connect(copy, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'events', coalesce(max(seq), 0) "
            "FROM events WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events')"
        )
        db.execute("UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'events'", (SEQ_GAP,))
        db.execute("COMMIT")
    finally:
        db.close()


def _put_in_place(
    config: Config, paths: Paths, chosen: Chosen, files: dict[str, bytes]
) -> Path | None:
    """What the promoted box replaces goes aside (renames, one filesystem); the keys are
    written, then the copy becomes checkin.db last, so a database in place always has its keys."""
    data_dir = config.data_dir
    replaced = [config.db_path.with_name(config.db_path.name + s) for s in backup.SIDE_FILES]
    replaced += [config.db_path, data_dir / LITESTREAM_STATE]
    replaced += [data_dir / name for name in files]
    if "tls/ca.key" in files:  # the server certificate of another CA: the server makes one
        replaced += [config.tls_dir / "server.crt", config.tls_dir / "server.key"]
    replaced = [path for path in replaced if os.path.lexists(path)]
    aside = backup.new_aside_dir(data_dir, "before-promote") if replaced else None
    for path in replaced:
        assert aside is not None
        target = aside / path.relative_to(data_dir)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.rename(path, target)
    if aside is not None:
        fsync_directory(aside)
    for name, content in sorted(files.items()):
        path = data_dir / name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(path, content, 0o644 if name in box_keys.PUBLIC else 0o600)
    chosen.path.with_name(chosen.path.name + "-txid").unlink(missing_ok=True)  # Litestream's
    move_copy(chosen.path, config.db_path)
    os.chmod(config.db_path, 0o600)  # as the service makes it (Litestream's copy: its umask)
    fsync_directory(data_dir)
    if chosen.path != paths.copy:  # a catch-up restore: the followed copy is stale now
        remove_copy(paths.copy)
    shutil.rmtree(paths.previous.parent, ignore_errors=True)
    return aside


# --- after ------------------------------------------------------------------------------


def _record(
    config: Config, stored: StoredKeys | None, chosen: Chosen, say: Callable[[str], None]
) -> None:
    detail = {
        "from_host": stored.hostname if stored else None,
        "txid": None if chosen.txid is None else f"{chosen.txid:016x}",
        "caught_up": chosen.caught_up,
        "copy_age_seconds": None if chosen.age_seconds is None else round(chosen.age_seconds),
        "keys": stored is not None,
    }

    async def record() -> None:
        store = Store(config.db_path)
        await store.open()
        try:
            await store.record_audit(audit.PROMOTE, CLI, detail)
        finally:
            await store.close()

    try:
        asyncio.run(record())
    except Exception as exc:  # the box must come up all the same
        say(f"warning: the promotion is not in the audit trail: {exc}")
        return
    finally:
        ownership.give_to_data_dir_owner(config.data_dir)
    say("the promotion is recorded in the audit trail")


def _take_hostname(name: str, say: Callable[[str], None]) -> None:
    """The old box's name, so devices find this one as <name>.local (avahi announces %h)."""
    current = socket.gethostname()
    if name == current:
        say(f"hostname: already {name}; devices find the box as {name}.local")
        return
    if not _HOSTNAME.match(name):
        say(f"hostname: the old box's name {name!r} is not a host name; left as {current}")
        return
    if os.geteuid() == 0 and under_systemd() and shutil.which("hostnamectl"):
        result = subprocess.run(  # noqa: S603 - a checked name, no shell
            ["hostnamectl", "set-hostname", name],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT,
            check=False,
        )
        if result.returncode == 0:
            _systemctl("try-restart", "avahi-daemon.service")  # announce the new name now
            say(f"hostname: set to {name} (was {current}); devices find the box as {name}.local")
            return
        say(f"hostname: hostnamectl failed ({result.stderr.strip()})")
    say(
        f"hostname: this box is {current}, the old one was {name}; so devices find it, run: "
        f"sudo hostnamectl set-hostname {name}"
    )


def _start(say: Callable[[str], None], serve_command: str) -> None:
    if os.geteuid() == 0 and under_systemd():
        _systemctl("disable", STANDBY_UNIT)  # it would refuse to start beside a database
        result = _systemctl("enable", "--now", MAIN_UNIT)
        if result.returncode == 0:
            say(f"started: {MAIN_UNIT} is enabled and running")
            return
        say(f"warning: systemctl enable --now {MAIN_UNIT} failed: {result.stderr.strip()}")
    say(f"start the server: {serve_command}")
