"""Replication with Litestream over SFTP, to Debian's OpenSSH server on 127.0.0.1 (tests/sshd.py).

The server has two host keys (Ed25519 and ECDSA, as a Debian box has) and accepts one client
key. Check-ins reach it (restored with `litestream restore`, through the same config file,
so the restore checks the host key too); a server showing another host key is refused; while
the server is down the box keeps serving and says the replica is failing, and once it is back
the check-ins made meanwhile reach it. Skipped without litestream or sshd on a developer's
machine, failing in CI.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from checkin_appliance.config import Config, load_config
from checkin_appliance.domain import Role
from checkin_appliance.web.keys import REPLICATOR
from tests.conftest import StartClinic, wait_until
from tests.sshd import SSHD
from tests.test_replication import SYNC_TIMEOUT, needs_litestream, passphrase_file, replicated

pytestmark = needs_litestream
# Each test asks for `sshd` before `start_clinic`: the server then outlives the box, whose
# Litestream pushes what is left when it stops.

# Seconds for Litestream to notice the server went away, or came back: a dropped connection
# shows at the next push (0.2 s); a refused one at each retry.
OUTAGE_TIMEOUT = 30.0


def sftp_config(tmp_path: Path, server: SSHD) -> Config:
    """Through load_config: the URL passes the same validation an operator's does."""
    return load_config(
        data_dir=tmp_path / "data",
        replica=server.url(tmp_path / "replica"),
        replica_sync_interval=0.2,
        replica_passphrase_file=passphrase_file(tmp_path),
    )


def restore_args(tmp_path: Path) -> list[str]:
    """`litestream restore` through the box's own config file (URL, key, host key)."""
    data = tmp_path / "data"
    return ["-config", str(data / "litestream.yml"), str((data / "checkin.db").resolve())]


async def test_check_ins_reach_an_sftp_replica(
    sshd: SSHD, start_clinic: StartClinic, tmp_path: Path
) -> None:
    clinic = await start_clinic(sftp_config(tmp_path, sshd))
    replicator = clinic.app[REPLICATOR]
    await clinic.check_in("Ada")
    await clinic.check_in("Grace")
    await replicated(restore_args(tmp_path), tmp_path / "restored.db", "Grace")
    await wait_until(lambda: replicator.status() == "ok", SYNC_TIMEOUT)
    body = await (await clinic.client.get("/healthz")).json()
    assert body["replica"]["status"] == "ok"
    assert any((tmp_path / "replica").rglob("*.ltx"))  # written by sshd, on this machine
    # The host key was checked, not skipped (Litestream warns when it has none).
    assert '"host-key": "ecdsa-sha2-nistp256 ' in (tmp_path / "data" / "litestream.yml").read_text()
    assert "Accepted publickey" in sshd.log.read_text()


async def test_a_server_with_another_host_key_gets_nothing(
    sshd: SSHD, start_clinic: StartClinic, tmp_path: Path
) -> None:
    impostor = SSHD.make(tmp_path / "impostor")  # only its keys: the same server answers
    replica = sshd.url(tmp_path / "replica").replace(str(sshd.host_keys), str(impostor.host_keys))
    clinic = await start_clinic(
        load_config(
            data_dir=tmp_path / "data",
            replica=replica,
            replica_sync_interval=0.2,
            replica_passphrase_file=passphrase_file(tmp_path),
        )
    )
    replicator = clinic.app[REPLICATOR]
    await clinic.check_in("Ada")  # served all the same
    await wait_until(lambda: replicator.status() == "failing", SYNC_TIMEOUT)
    assert "host key mismatch" in (replicator.state.error or "")
    system = await clinic.client.get("/api/system/", headers=clinic.headers(Role.ADMIN))
    warnings = {w["code"]: w for w in (await system.json())["warnings"]}
    assert "host key mismatch" in warnings["replica_failing"]["error"]
    assert not (tmp_path / "replica").exists()


async def test_the_server_going_away_is_reported_and_its_return_catches_up(
    sshd: SSHD, start_clinic: StartClinic, tmp_path: Path
) -> None:
    clinic = await start_clinic(sftp_config(tmp_path, sshd))
    replicator = clinic.app[REPLICATOR]
    await clinic.check_in("Ada")
    await wait_until(lambda: replicator.status() == "ok", SYNC_TIMEOUT)

    await asyncio.to_thread(sshd.stop)  # the standby is switched off
    await clinic.check_in("Grace")  # the box keeps serving
    await wait_until(lambda: replicator.status() == "failing", OUTAGE_TIMEOUT)
    health = await clinic.client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["replica"]["status"] == "failing"
    await clinic.check_in("Katherine")

    await asyncio.to_thread(sshd.start)  # back on the same port, same keys
    await wait_until(lambda: replicator.status() == "ok", OUTAGE_TIMEOUT)
    body = await (await clinic.client.get("/healthz")).json()
    assert body["replica"]["status"] == "ok"
    await replicated(restore_args(tmp_path), tmp_path / "restored.db", "Katherine")
    await replicated(restore_args(tmp_path), tmp_path / "restored.db", "Grace")
