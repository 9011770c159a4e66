"""Kill-and-promote failover (issue 20, item 4), at a small size: the harness `make failover`
measures (bench/failover.py), with its behaviours asserted instead of its speeds.

A real primary replicating to a local folder (a mounted share) with a 1 s sync interval, a
real standby following it, a kiosk checking in with photos, live-feed clients; SIGKILL to
the primary's process group, `promote`, the server on the standby's data directory on the
same port. Once with a folder replica, once with an SFTP one (a real sshd on 127.0.0.1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.failover import Plan, run
from tests.test_replication import needs_litestream

SYNC_INTERVAL = 1.0
# Litestream pushes what was committed within the last interval at the next tick; a tick
# late under load (two cores, other tests) is the margin.
MARGIN = 1.0


@needs_litestream
@pytest.mark.parametrize("kind", ["folder", "sftp"])
async def test_a_killed_primary_is_replaced_by_its_promoted_standby(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A folder stands in for a mounted share; SFTP is a real sshd on 127.0.0.1 (tests/sshd.py).
    replica = None
    if kind == "sftp":
        replica = request.getfixturevalue("sshd").url(tmp_path / "replica")
    plan = Plan(
        feeds=4,
        rate=10.0,
        before_kill=4.0,
        after=3,
        sync_interval=SYNC_INTERVAL,
        replica=replica,
    )
    plan.timeout = 110.0  # the whole run; CI's bound is 2 minutes
    report = await run(tmp_path, plan, say=lambda line: None)
    print(report)

    # Only what was acknowledged within about one sync interval of the kill is lost;
    # nothing older.
    assert all(age <= SYNC_INTERVAL + MARGIN for age in report["lost_acked_before_kill_s"]), report
    # The same box to every device: the kiosk's token and password, the CA every connection
    # here verified against, the queue as the dead box's own file has it (minus that tail).
    assert report["same_credentials"], report
    assert report["same_ca"], report
    assert report["same_queue"], report
    # Every feed client reconnected by itself and received the check-ins made on the
    # promoted box, the late one too (with the snapshot a fork of the event numbers needs).
    assert report["feeds"]["all_resumed"], report
    assert report["feeds"]["reconnect_after_kill_s"]["max"] is not None
    # The promoted box goes on replicating to the same replica.
    assert report["replica_continues"], report


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
