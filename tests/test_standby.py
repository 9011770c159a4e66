"""A standby box and `promote` (issue 20, item 3): the standby follows the replica and says
how current its copy is; promote refuses what it must, changes nothing when it fails, and
makes the standby the same box. The full kill-and-promote run is tests/test_failover.py;
the standby's systemd unit as the package installs it is here too."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from checkin_appliance import box_keys, promote, standby, tls
from checkin_appliance.config import Config
from checkin_appliance.replication import find_litestream
from checkin_appliance.store import inspect
from checkin_appliance.store.box_keys import read_keys
from checkin_appliance.web.keys import REPLICATOR, STORE
from tests.conftest import Clinic, StartClinic, wait_until
from tests.serverproc import _env, cli_command, run_cli, run_cli_async, running
from tests.test_clock_units import run_script, stand_ins, systemd_analyze
from tests.test_replication import PASSPHRASE, needs_litestream, replica_config

ROOT = Path(__file__).resolve().parent.parent
UNIT = "checkin-appliance-standby.service"
FOLLOW_TIMEOUT = 30.0
MOST_EXPOSURE = 2.0
# The old box's name in the sealed keys. Run as root under systemd, promote would really
# rename this machine with hostnamectl: there the old box has this machine's own name.
OLD_NAME = socket.gethostname() if os.geteuid() == 0 and promote.under_systemd() else "frontdesk"


# --- the unit ---------------------------------------------------------------------------


def unit_lines() -> list[str]:
    text = (ROOT / "systemd" / UNIT).read_text()
    return [line for line in text.splitlines() if line and not line.startswith(("#", "["))]


def test_the_standby_unit_verifies_beside_the_main_one_and_is_hardened(tmp_path: Path) -> None:
    units = stand_ins(tmp_path)
    for name in ("checkin-appliance.service", UNIT):
        text = (ROOT / "systemd" / name).read_text()
        (units / name).write_text(
            text.replace("/usr/bin/checkin-appliance ", f"{tmp_path}/program ")
        )
    verify = subprocess.run(
        [systemd_analyze(), "verify", str(units / UNIT), str(units / "checkin-appliance.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", UNIT],
        capture_output=True, text=True, timeout=60, check=False, cwd=units,
    )  # fmt: skip
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", security.stdout)
    assert score is not None, security.stdout + security.stderr
    assert float(score[1]) <= MOST_EXPOSURE, security.stdout
    lines = unit_lines()
    # Never both on one box: starting one stops the other.
    assert "Conflicts=checkin-appliance.service" in lines
    for setting in (
        "User=checkin-appliance",
        "StateDirectory=checkin-appliance",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
        "UMask=0077",
    ):
        assert setting in lines, setting


def test_the_standby_units_command_is_one_the_program_accepts() -> None:
    [start] = [line for line in unit_lines() if line.startswith("ExecStart=")]
    program, command, *args = start.removeprefix("ExecStart=").split()
    assert (program, command) == ("/usr/bin/checkin-appliance", "standby")
    help_text = subprocess.run(
        cli_command("standby", "--help"), capture_output=True, text=True, timeout=30, check=True
    ).stdout
    for flag in (a for a in args if a.startswith("--")):
        assert re.search(rf"{flag}\b", help_text), flag


def test_the_package_ships_the_standby_unit_without_enabling_it(tmp_path: Path) -> None:
    assert (
        "systemd/checkin-appliance-standby.service"
        in (ROOT / "packaging" / "build-deb.sh").read_text()
    )
    installed = run_script("postinst", tmp_path, "abort-upgrade", "9.9.9")
    assert not any("standby" in call for call in installed), installed
    stopped = [c for c in run_script("prerm", tmp_path, "remove") if " stop " in c]
    assert any(UNIT in call for call in stopped), stopped
    purged = [c for c in run_script("postrm", tmp_path, "purge") if " purge " in c]
    assert any(UNIT in call for call in purged), purged


# --- the standby ------------------------------------------------------------------------


def test_standby_refuses_a_box_with_a_database_of_its_own(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "checkin.db").write_bytes(b"")
    result = run_cli("standby", "--data-dir", str(data), "--replica", str(tmp_path / "replica"))
    assert result.returncode == 1
    assert "this box has a database of its own, so it is a primary" in result.stderr
    assert "systemctl disable --now checkin-appliance" in result.stderr
    assert not (data / "standby").exists()


def test_standby_without_a_replica_says_how_to_give_one(tmp_path: Path) -> None:
    result = run_cli("standby", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert "give --replica URL, or set replica in the config file" in result.stderr


@dataclass
class Replicated:
    """A primary replicating to a folder, its keys sealed; a standby data directory."""

    clinic: Clinic
    config: Config  # the primary's
    standby: Config
    passphrase_file: Path

    @property
    def copy(self) -> Path:
        return standby.Paths.of(self.standby.data_dir).copy


@pytest.fixture
async def replicated(
    start_clinic: StartClinic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Replicated:
    config = replica_config(tmp_path)
    tls.ensure_certificates(config.tls_dir)  # what `serve --tls self-signed` makes first
    monkeypatch.setattr(socket, "gethostname", lambda: OLD_NAME)  # the old box's name
    clinic = await start_clinic(config)
    for name in ("Ada", "Grace", "Linus"):
        await clinic.check_in(name)
    # The server sealed its keys at start, before its credentials' audit rows made audit.key;
    # once that seal is in, seal again now rather than at its next look.
    db = config.db_path
    await wait_until(lambda: read_keys(db) is not None, FOLLOW_TIMEOUT)
    await box_keys.KeyKeeper(config, clinic.app[STORE]).check()
    sealed_at = time.time()
    state = clinic.app[REPLICATOR].state  # the replica confirmed current after the seal
    await wait_until(lambda: (state.last_sync_at or 0) > sealed_at, FOLLOW_TIMEOUT)
    standby_config = Config(
        data_dir=tmp_path / "standby",
        replica=config.replica,
        replica_sync_interval=0.2,
        replica_passphrase_file=config.replica_passphrase_file,
    )
    assert config.replica_passphrase_file is not None
    return Replicated(clinic, config, standby_config, config.replica_passphrase_file)


def standby_args(r: Replicated) -> list[str]:
    assert r.standby.replica is not None
    return ["--data-dir", str(r.standby.data_dir), "--replica", r.standby.replica]


@pytest.fixture
async def following(
    replicated: Replicated, tmp_path: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """The `standby` command on the standby's data directory, until its copy has the keys."""
    log_path = tmp_path / "standby.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cli_command("standby", *standby_args(replicated)),
            stdout=log, stderr=subprocess.STDOUT, env=_env(),
        )  # fmt: skip
    try:
        async with asyncio.timeout(FOLLOW_TIMEOUT):
            while not _has_keys(replicated.copy):
                assert proc.poll() is None, log_path.read_text()
                await asyncio.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)


def _has_keys(copy: Path) -> bool:
    try:
        return copy.exists() and read_keys(copy) is not None
    except Exception:  # mid-restore: not yet a database
        return False


def patients(db: Path) -> set[str]:
    with inspect.read_only(db) as conn:
        return {row["fname"] for row in conn.execute("SELECT fname FROM patients")}


async def run_promote(r: Replicated, *more: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return await run_cli_async(
        "promote", "--data-dir", str(r.standby.data_dir), "--no-start", *more, stdin=stdin
    )


@needs_litestream
async def test_the_standby_follows_and_says_how_current_its_copy_is(
    replicated: Replicated, tmp_path: Path
) -> None:
    """Follow mode itself logs nothing while nothing changes, so the copy is compared with
    what the replica holds: current, behind, or the replica cannot be read."""
    follower = standby.Follower(replicated.standby, find_litestream(None))
    follower.write_config()
    follower.child.start()
    try:
        await wait_until(lambda: follower.following, FOLLOW_TIMEOUT)
        await replicated.clinic.check_in("Barbara")
        await wait_until(lambda: "Barbara" in patients(follower.paths.copy), FOLLOW_TIMEOUT)
        position = await asyncio.to_thread(
            standby.replica_position, follower.binary, follower.paths.config, follower.paths.copy
        )
        assert position.problem is None and position.txid is not None
        kind, line = follower.status(position)
        assert kind == "current" and "the replica's newest" in line, line
        assert standby.copy_position(follower.paths.copy) == follower.copy_txid
        # A replica newer than the copy (the poll not yet done) is "behind", with both numbers.
        ahead = standby.Position(position.txid + 3, position.written_at)
        kind, line = follower.status(ahead)
        assert kind == "behind" and f"{position.txid + 3:016x}" in line, line
        # The share is gone: follow mode alone would look like a quiet clinic. (The primary
        # stops first: its Litestream would make the folder again.)
        await replicated.clinic.client.close()
        replica = Path(replicated.config.replica or "")
        replica.rename(replica.with_name("replica.gone"))
        position = await asyncio.to_thread(
            standby.replica_position, follower.binary, follower.paths.config, follower.paths.copy
        )
        kind, line = follower.status(position)
        assert kind == "unreadable" and "cannot read the replica" in line, line
        assert "last changed" in line
    finally:
        await follower.child.stop()


@needs_litestream
async def test_a_restarted_standby_keeps_its_last_copy_until_it_follows_again(
    replicated: Replicated,
) -> None:
    """Litestream 0.5.17 cannot resume a copy ahead of the replica's last snapshot, so each
    start restores afresh: meanwhile the last copy waits in previous/, promotable."""
    follower = standby.Follower(replicated.standby, find_litestream(None))
    follower.write_config()
    follower.child.start()
    await wait_until(lambda: follower.following, FOLLOW_TIMEOUT)
    await follower.child.stop()
    await replicated.clinic.client.close()  # the primary, whose Litestream would remake it
    replica = Path(replicated.config.replica or "")
    replica.rename(replica.with_name("replica.gone"))  # and the share is gone meanwhile
    again = standby.Follower(replicated.standby, find_litestream(None))
    again.child.start()
    try:
        await wait_until(lambda: again.error is not None or again.child.restarts > 0, 20)
        assert not again.following
        assert "Ada" in patients(again.paths.previous)
    finally:
        await again.child.stop()


# --- promote ----------------------------------------------------------------------------


@needs_litestream
async def test_a_wrong_passphrase_changes_nothing_and_leaves_the_standby_running(
    replicated: Replicated, following: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the replica passphrase\n")
    before = sorted(p.name for p in replicated.standby.data_dir.iterdir())
    result = await run_promote(replicated, "--passphrase-file", str(wrong))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the passphrase is wrong" in result.stderr
    assert "nothing was changed, the standby still runs" in result.stderr
    assert PASSPHRASE not in result.stdout + result.stderr
    assert following.poll() is None
    assert sorted(p.name for p in replicated.standby.data_dir.iterdir()) == before
    assert not replicated.standby.db_path.exists()


@needs_litestream
async def test_promote_makes_the_standby_the_same_box_and_moves_aside_what_was_there(
    replicated: Replicated, following: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    data = replicated.standby.data_dir
    # A fresh install's own database (its service started once before it became a standby).
    (data / "checkin.db-shm").write_bytes(b"old shm")
    result = await run_promote(replicated, "--passphrase-file", str(replicated.passphrase_file))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("standby stopped (process ")
    assert following.poll() is not None
    assert any(line.startswith(("caught up", "the followed copy is current")) for line in lines)
    assert patients(replicated.standby.db_path) == {"Ada", "Grace", "Linus"}
    primary = replicated.config.data_dir
    for name in ("tls/ca.crt", "tls/ca.key", "audit.key", "photo-links.key"):
        assert (data / name).read_bytes() == (primary / name).read_bytes(), name
    assert (data / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert replicated.standby.db_path.stat().st_mode & 0o777 == 0o600
    [aside] = data.glob("before-promote-*")
    assert (aside / "checkin.db-shm").read_bytes() == b"old shm"
    # The trail goes on, keyed as before, with the promotion in it.
    verified = await run_cli_async("audit", "verify", "--data-dir", str(data))
    assert verified.returncode == 0, verified.stderr
    shown = await run_cli_async("audit", "show", "--json", "--data-dir", str(data))
    assert '"action": "promote"' in shown.stdout and f'"from_host": "{OLD_NAME}"' in shown.stdout
    # The old box's name, so devices find this one: not root under systemd here, so the
    # command to run is printed.
    if socket.gethostname() != OLD_NAME:
        assert any(f"sudo hostnamectl set-hostname {OLD_NAME}" in line for line in lines), lines
    assert lines[-1].startswith(
        "not started (--no-start); start the server: checkin-appliance serve"
    )


@needs_litestream
async def test_a_spare_box_that_never_followed_restores_the_replica_on_demand(
    replicated: Replicated,
) -> None:
    config_file = replicated.standby.data_dir.parent / "spare.toml"
    config_file.write_text(
        f'data_dir = "{replicated.standby.data_dir}"\n'
        f'replica = "{replicated.standby.replica}"\n'
        f'replica_passphrase_file = "{replicated.passphrase_file}"\n'
    )
    result = await run_cli_async("promote", "--config", str(config_file), "--no-start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "standby: none running" in result.stdout
    assert "caught up: restored the replica up to transaction" in result.stdout
    assert patients(replicated.standby.db_path) == {"Ada", "Grace", "Linus"}
    assert "keys opened" in result.stdout  # the passphrase from the config file


@needs_litestream
async def test_an_unreachable_replica_promotes_the_followed_copy_and_says_how_old(
    replicated: Replicated, following: subprocess.Popen[bytes]
) -> None:
    await replicated.clinic.client.close()  # the box dies, and the share with it
    replica = Path(replicated.config.replica or "")
    replica.rename(replica.with_name("replica.gone"))
    result = await run_promote(replicated, "--passphrase-file", str(replicated.passphrase_file))
    assert result.returncode == 0, result.stdout + result.stderr
    said = result.stdout
    assert "the replica cannot be read" in said and "promoting the followed copy as it is" in said
    assert re.search(r"last changed \d+ s ago", said), said
    assert patients(replicated.standby.db_path) == {"Ada", "Grace", "Linus"}


@needs_litestream
async def test_promote_refuses_a_box_that_serves(tmp_path: Path) -> None:
    with running(tmp_path / "box") as server:
        result = await run_cli_async("promote", "--data-dir", str(server.data_dir), "--no-start")
        assert result.returncode == 1
        assert "a server runs there already; nothing was changed" in result.stderr
        assert not list(server.data_dir.glob("before-promote-*"))
