"""/healthz answers every LAN client without writing the SD card on every call (issue 13, 17)."""

from __future__ import annotations

import sqlite3
from typing import Any

from tests.conftest import Clinic

CALLS = 200


async def test_many_healthz_calls_commit_at_most_a_couple_of_times(
    clinic: Clinic, config: Any
) -> None:
    # PRAGMA data_version changes on this independent connection whenever another one
    # commits: reading it after each call counts the calls that were followed by a commit.
    watcher = sqlite3.connect(config.db_path)
    try:
        seen = watcher.execute("PRAGMA data_version").fetchone()[0]
        commits = 0
        for _ in range(CALLS):
            resp = await clinic.client.get("/healthz")
            assert resp.status == 200
            version = watcher.execute("PRAGMA data_version").fetchone()[0]
            if version != seen:
                commits, seen = commits + 1, version
    finally:
        watcher.close()
    # One probe, and perhaps a second if the calls straddle the probe interval.
    assert commits <= 2, f"{CALLS} /healthz calls committed {commits} times"
