"""The replication child's place in the app: started after the database opens, stopped
before it closes, its state in /healthz and /admin's System warnings; and the box's keys
sealed into the database beside it (box_keys.py), off the event loop once serving."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from checkin_appliance.box_keys import KeyKeeper
from checkin_appliance.replication import Replicator, find_litestream
from checkin_appliance.web.keys import CONFIG, REPLICATOR, STORE, SYSTEM


def setup(app: web.Application) -> None:
    """Call after the database's cleanup_ctx (Litestream needs the migrated file)."""
    config = app[CONFIG]
    app[REPLICATOR] = Replicator(config, find_litestream(config.litestream_path))
    app[SYSTEM].add_warnings(app[REPLICATOR].warnings)
    app.cleanup_ctx.append(_replicating)


async def _replicating(app: web.Application) -> AsyncIterator[None]:
    replicator = app[REPLICATOR]
    await replicator.start()
    keeper = asyncio.create_task(
        KeyKeeper(app[CONFIG], app[STORE]).keep(), name="box keys for the replica"
    )
    try:
        yield
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await replicator.stop()
