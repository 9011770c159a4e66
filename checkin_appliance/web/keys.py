"""Every piece of typed application state, in one place."""

from __future__ import annotations

from aiohttp import web

from checkin_appliance.access import Access
from checkin_appliance.clock import ClockWatch
from checkin_appliance.clock_setting import ClockHelper
from checkin_appliance.config import Config
from checkin_appliance.connections import RefusalLog
from checkin_appliance.hub import Hub
from checkin_appliance.reception import Reception
from checkin_appliance.replication import Replicator
from checkin_appliance.speech import Speech
from checkin_appliance.store import Store
from checkin_appliance.system import System
from checkin_appliance.visits import StatusFeed

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
RECEPTION = web.AppKey("reception", Reception)
ACCESS = web.AppKey("access", Access)
SPEECH = web.AppKey("speech", Speech)
SYSTEM = web.AppKey("system", System)  # /admin's System section: uptime, checks, warnings
CLOCK = web.AppKey("clock", ClockWatch)  # is the box's clock believable (clock.py)
CLOCK_HELPER = web.AppKey("clock_helper", ClockHelper)  # is one installed (clock_setting.py)
# The Litestream child, only when `replica` is set (web/replica.py).
REPLICATOR = web.AppKey("replicator", Replicator)
STATUS_FEED = web.AppKey("status_feed", StatusFeed)  # the patients' open status pages
# Live feeds refused for being over max_feeds_per_credential, logged at most once per 10 s.
FEED_REFUSALS = web.AppKey("feed_refusals", RefusalLog)

# Set by a page request whose cookie session was slid forward: (cookie value, max-age).
RENEWED_COOKIE = web.RequestKey("renewed_cookie", tuple)
