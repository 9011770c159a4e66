"""The replication child's place in the app: started after the database opens, stopped
before it closes, its state in /healthz and /admin's System warnings."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from checkin_appliance.replication import Replicator, find_litestream
from checkin_appliance.web.keys import CONFIG, REPLICATOR, SYSTEM


def setup(app: web.Application) -> None:
    """Call after the database's cleanup_ctx (Litestream needs the migrated file)."""
    config = app[CONFIG]
    app[REPLICATOR] = Replicator(config, find_litestream(config.litestream_path))
    app[SYSTEM].add_warnings(app[REPLICATOR].warnings)
    app.cleanup_ctx.append(_replicating)


async def _replicating(app: web.Application) -> AsyncIterator[None]:
    replicator = app[REPLICATOR]
    await replicator.start()
    try:
        yield
    finally:
        await replicator.stop()
