"""The one application factory: the CLI, the frozen binary and the tests all call it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from checkin_appliance import clock, clock_setting, photo_files, retention, systemd
from checkin_appliance.access import Access, CloseFeeds
from checkin_appliance.config import Config
from checkin_appliance.connections import RefusalLog
from checkin_appliance.domain import Actor, Settings, format_time, parse_time, utc_now
from checkin_appliance.hub import CLOSE_ACCESS_REVOKED, Hub
from checkin_appliance.own_names import HostAllowList
from checkin_appliance.photo_links import PhotoLinks
from checkin_appliance.reception import Reception
from checkin_appliance.security import PasswordHasher
from checkin_appliance.speech import Speech
from checkin_appliance.store import Store, lock
from checkin_appliance.store import clock as stored_clock
from checkin_appliance.store.database import StoreDamaged
from checkin_appliance.system import System
from checkin_appliance.visits import StatusFeed
from checkin_appliance.web import (
    api,
    audit_log,
    backups,
    cors,
    insight,
    openapi,
    pages,
    records,
    slashes,
    visit,
)
from checkin_appliance.web import clock as web_clock
from checkin_appliance.web import system as system_routes
from checkin_appliance.web.errors import error_middleware, maintenance_middleware
from checkin_appliance.web.feed import queue_feed
from checkin_appliance.web.headers import add_security_headers, host_check
from checkin_appliance.web.keys import (
    ACCESS,
    CLOCK,
    CLOCK_HELPER,
    CONFIG,
    FEED_REFUSALS,
    HUB,
    RECEPTION,
    SPEECH,
    STATUS_FEED,
    STORE,
    SYSTEM,
)

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0  # seconds between looks for changes made by other processes (the CLI)
SESSION_END_INTERVAL = 60.0  # seconds between looks for sessions past their absolute end
PRUNE_INTERVAL = 3600.0
IDEMPOTENCY_WINDOW = timedelta(hours=24)  # a kiosk's retry is answered for this long
JSON_BODY_LIMIT = 1024 * 1024
TIMED_INTERVAL = 30.0  # seconds between looks for a no-show grace or an end of day passed
# The box itself, in the audit trail of what its timers do.
END_OF_DAY_ACTOR = Actor(None, "end_of_day")
NO_SHOW_ACTOR = Actor(None, "no_show_grace")
RETENTION_ACTOR = Actor(None, "retention")
CLOCK_ACTOR = Actor(None, "clock")


def create_app(config: Config) -> web.Application:
    # Each part is built before the ones that tell it things: the store hands every committed
    # event to the hub (in seq order), reception every change of settings.
    photo_links = PhotoLinks()  # its key is loaded at start, with the database
    hub = Hub(config.feed_queue_size, photo_url=photo_links.url)
    # With a replica, Litestream owns the WAL: our own checkpoints stay PASSIVE (replication.py).
    checkpoint = "TRUNCATE" if config.replica is None else "PASSIVE"
    store = Store(config.db_path, on_event=hub.publish, checkpoint=checkpoint)
    reception = Reception(
        store,
        config.photo_max_side,
        on_settings=_settings_listener(hub),
        photo_links=photo_links,
    )
    app = web.Application(
        middlewares=[
            error_middleware(),
            host_check(HostAllowList(config.allowed_hosts)),
            slashes.add_slash_middleware(),  # /api/queue → /api/queue/ (301 GET/HEAD, else 308)
            maintenance_middleware(lambda: store.damaged),
        ],
        client_max_size=JSON_BODY_LIMIT,
    )
    app[CONFIG] = config
    app[STORE], app[HUB], app[RECEPTION] = store, hub, reception
    app[ACCESS] = Access(store, config, PasswordHasher(), _feed_closer(hub))
    app[FEED_REFUSALS] = RefusalLog("live feeds")
    app[SPEECH] = Speech(store)
    app[SYSTEM] = System(config)  # other parts add their warnings: app[SYSTEM].add_warnings
    app[CLOCK] = clock.ClockWatch(clock.build_time())
    app[SYSTEM].add_warnings(app[CLOCK].warnings)  # implausible, or a jump today
    app[CLOCK_HELPER] = clock_setting.ClockHelper()
    # The patients' status pages: refreshed once per burst of events, whatever their number.
    app[STATUS_FEED] = StatusFeed(reception.waits, store.list_lines, reception.note_shown)
    hub.watch(app[STATUS_FEED].published)

    visit.add_routes(app)
    app.add_routes(api.routes)
    app.add_routes(insight.routes)
    app.add_routes(openapi.routes)
    app.add_routes(records.routes)
    app.add_routes(audit_log.routes)
    app.add_routes(system_routes.routes)
    app.add_routes(web_clock.routes)
    app.add_routes(pages.routes)
    pages.setup_templates(app)
    app.router.add_get("/ws/queue/", queue_feed)
    visit.not_found_routes(app)
    app.on_response_prepare.append(add_security_headers)
    cors.setup(app, config.cors_origins)
    backups.setup(app)  # an uploaded restore goes in place before the database opens
    app.cleanup_ctx.append(_database)
    if config.replica is not None:  # no child, no state without one
        from checkin_appliance.web import replica

        replica.setup(app)
    app.cleanup_ctx.append(_background_jobs)
    backups.setup_after_database(app)  # the nightly backups
    app.on_shutdown.append(_close_feeds)
    return app


def create_redirect_app(config: Config, main: web.Application | None = None) -> web.Application:
    """The plain-HTTP port beside HTTPS: every request goes to HTTPS, except /ca.crt, which a
    device fetches to trust us, and, given the `main` app, the patients' status pages (/v/…),
    which a phone must reach without a certificate warning: they carry no name."""
    https_port = None if config.port == 443 else config.port

    async def to_https(request: web.Request) -> web.StreamResponse:
        target = request.url.with_scheme("https").with_port(https_port)
        # 308 keeps the method and body; GET and HEAD get the 301 every browser knows.
        if request.method in ("GET", "HEAD"):
            raise web.HTTPMovedPermanently(target)
        raise web.HTTPPermanentRedirect(target)

    app = web.Application(
        middlewares=[error_middleware(), host_check(HostAllowList(config.allowed_hosts))]
    )
    app[CONFIG] = config
    app.router.add_get("/ca.crt", api.ca_certificate)
    if main is not None:
        app[STORE], app[RECEPTION] = main[STORE], main[RECEPTION]
        app[STATUS_FEED] = main[STATUS_FEED]
        pages.setup_templates(app, visit.ASSETS)
        visit.add_routes(app)
        visit.not_found_routes(app)
    app.router.add_route("*", "/{path:.*}", to_https)
    app.on_response_prepare.append(add_security_headers)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]
    with lock.hold(app[CONFIG].data_dir):  # DataDirInUse: another server, or a restore
        app[RECEPTION].photo_links.load(app[CONFIG].data_dir)
        await store.open()
        try:
            if store.damaged:
                # Maintenance mode: no setup code, and no photo files moved in (a partly
                # readable table would make good photos look like orphans).
                with contextlib.suppress(StoreDamaged):
                    await app[RECEPTION].load_settings()
            else:
                await app[RECEPTION].load_settings()
                # An older box's photo files, into the database before anyone asks for one.
                await photo_files.move_into_database(store, app[CONFIG].photo_dir)
                await app[ACCESS].prepare_setup()
                await app[ACCESS].refresh_token_shapes()
                _, last_seq = await store.event_log_bounds()
                app[HUB].start_at(last_seq, store.events_after)
                app[CLOCK].start(await stored_clock.newest_stored_time(store))
            yield
        finally:
            await store.close()


def setup_banner(app: web.Application, base_url: str) -> str | None:
    """The one-time setup code message, while no admin exists; printed, never logged."""
    code = app[ACCESS].setup_code
    if code is None:
        return None
    return (
        "\n  First start: no administrator exists yet.\n"
        f"  One-time setup code: {code}\n"
        f"  Open {base_url}/setup in a browser to create the administrator, or:\n"
        f"    curl -X POST {base_url}/api/setup/ -H 'Content-Type: application/json' \\\n"
        f'         -d \'{{"code": "{code}", "password": "<new admin password>"}}\'\n'
    )


def _settings_listener(hub: Hub) -> Callable[[Settings], None]:
    """Every change of settings (API at once, CLI within WATCH_INTERVAL) reaches the hub; one
    that withdraws anonymous access also closes the token-less feeds now, before the next
    event is published, instead of at the next minute's look at the sessions."""

    def changed(settings: Settings) -> None:
        if not settings.anonymous_feed:
            hub.disconnect_where(
                lambda sub: sub.session_id is None, CLOSE_ACCESS_REVOKED, "access revoked"
            )
        hub.publish_settings(settings)

    return changed


def _feed_closer(hub: Hub) -> CloseFeeds:
    """How Access closes the live feeds a logout or deactivation ended (4403)."""

    def close(ended: Callable[[int | None, int | None], bool], reason: str) -> None:
        hub.disconnect_where(
            lambda sub: ended(sub.session_id, sub.credential_id), CLOSE_ACCESS_REVOKED, reason
        )

    return close


async def _close_feeds(app: web.Application) -> None:
    await app[STATUS_FEED].close_all()
    await app[HUB].close_all()


async def _background_jobs(app: web.Application) -> AsyncIterator[None]:
    tasks = []
    if not app[STORE].damaged:  # in maintenance mode they would only fail every second
        tasks += [
            asyncio.create_task(_watch_other_writers(app)),
            asyncio.create_task(_prune_old_records(app)),
            asyncio.create_task(_timed_transitions(app)),
            asyncio.create_task(_retention_purges(app)),
            asyncio.create_task(_watch_the_clock(app)),
        ]
    interval = systemd.watchdog_interval()
    if interval is not None:
        tasks.append(asyncio.create_task(_systemd_watchdog(interval, app[STORE])))
    yield
    systemd.notify("STOPPING=1")
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _systemd_watchdog(interval: float, store: Store) -> None:
    """WATCHDOG=1 only while the event loop turns AND the database writer answers: each ping
    first makes a round trip through the writer thread, within most of the interval. A hung
    loop or a wedged writer stops the pings, and systemd restarts the service."""
    while True:
        started = time.monotonic()
        if await writer_answers(store, within=interval * 0.8):
            systemd.notify("WATCHDOG=1")
        else:
            log.error(
                "the database writer did not answer within %.1f s, nor make progress: no "
                "watchdog ping",
                interval * 0.8,
            )
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def writer_answers(store: Store, within: float) -> bool:
    """True when the writer thread ran a trivial job within `within` seconds, or is inside a
    statement that keeps making progress (a VACUUM longer than the watchdog's interval)."""
    try:
        await asyncio.wait_for(store.writer_round_trip(), within)
    except TimeoutError:
        return store.writer_progressed_within(within)
    return True


async def _watch_the_clock(app: web.Application) -> None:
    """Every clock.CHECK_INTERVAL: a jump of the box's clock restates the live sessions'
    expiries and the open visits' times (store.clock), so a clock set right does not sign
    everyone out nor give a visit a year's wait."""
    while True:
        await asyncio.sleep(clock.CHECK_INTERVAL)
        try:
            await follow_a_clock_jump(app)
        except Exception:
            log.exception("following a clock jump failed; will retry")


async def follow_a_clock_jump(app: web.Application) -> stored_clock.Restated | None:
    """One look at the clock; after a jump, what was restated."""
    jump = app[CLOCK].check()
    if jump is None:
        return None
    restated = await stored_clock.restate_for_jump(app[STORE], jump, CLOCK_ACTOR)
    app[ACCESS].forget_sessions()  # cached sessions carry the old expiries
    log.warning(
        "clock jump of %+.0f s: %d live session(s) and %d open visit(s) restated",
        jump.delta.total_seconds(),
        restated.sessions,
        restated.visits,
    )
    return restated


async def _watch_other_writers(app: web.Application) -> None:
    """Picks up what another process committed (CLI `token deactivate`, settings) at once,
    and ends live feeds whose session reached its absolute end."""
    store = app[STORE]
    seen = await store.outside_version()
    checked = time.monotonic()
    while not store.damaged:  # found corrupt while running: maintenance mode, stop looking
        await asyncio.sleep(WATCH_INTERVAL)
        try:
            version = await store.outside_version()
            if version != seen or time.monotonic() - checked >= SESSION_END_INTERVAL:
                seen, checked = version, time.monotonic()
                await _apply_stored_changes(app)
        except Exception:
            log.exception("checking for outside changes failed; will retry")


async def _apply_stored_changes(app: web.Application) -> None:
    """Reload settings and token shapes; publish events another process committed; close
    feeds whose session ended or whose anonymous access was withdrawn (the settings listener
    already closed those when the change reached it)."""
    settings = await app[RECEPTION].load_settings()
    app[ACCESS].forget_sessions()  # a credential the CLI deactivated stops working now
    await app[ACCESS].refresh_token_shapes()  # import-original may have brought other tokens
    hub = app[HUB]
    # Events another process committed (import-original's waiting patients) go out through
    # the normal path, in seq order with ours.
    catching_up = hub.catch_up()
    if catching_up is not None:
        await catching_up
    open_sessions = hub.session_ids()
    ended = open_sessions - await app[STORE].live_sessions(open_sessions, utc_now())
    hub.disconnect_where(
        lambda sub: (
            sub.session_id in ended or (sub.session_id is None and not settings.anonymous_feed)
        ),
        CLOSE_ACCESS_REVOKED,
        "access revoked",
    )


async def _timed_transitions(app: web.Application) -> None:
    """Every TIMED_INTERVAL: the no-show grace, then the end of day (close_the_day_if_due).
    Both are stateless, so a box that was off catches up when it starts."""
    while True:
        await asyncio.sleep(TIMED_INTERVAL)
        try:
            await mark_no_shows(app)
            await close_the_day_if_due(app)
        except Exception:
            log.exception("a timed transition failed; will retry")


async def mark_no_shows(app: web.Application) -> int:
    """One look of the no-show grace (the no_show_minutes setting): how many visits it
    marked as no-shows."""
    marked = await app[RECEPTION].no_show_overdue(NO_SHOW_ACTOR, parse_time(app[STORE].now()))
    if marked:
        log.info("no-show grace: %d called visit(s) marked as no-shows", marked)
    return marked


async def close_the_day_if_due(app: web.Application) -> int:
    """One look of the end of day: once the end_of_day setting's local time has passed, the
    visits still open that were checked in before it are closed as not seen; how many."""
    reception = app[RECEPTION]
    cutoff = reception.last_end_of_day(parse_time(app[STORE].now()))
    if cutoff is None:
        return 0
    closed = await reception.end_of_day(END_OF_DAY_ACTOR, checked_in_before=cutoff)
    if closed:
        log.info("end of day: %d open visit(s) closed as not seen", closed)
    return closed


async def _prune_old_records(app: web.Application) -> None:
    """Hourly: event-log rows past the replay window, idempotency keys past 24 hours; and
    the audit trail's head in the log."""
    config, store = app[CONFIG], app[STORE]
    while True:
        try:
            now = datetime.now(UTC)
            before = format_time(now - timedelta(hours=config.event_log_keep_hours))
            removed = await store.prune_events(config.event_log_keep, before)
            keys = await store.prune_idempotency_keys(format_time(now - IDEMPOTENCY_WINDOW))
            if removed or keys:
                log.info("pruned %d old event(s) and %d idempotency key(s)", removed, keys)
            # In the journal, outside the database: the audit chain's head, so removing the
            # newest rows (which leaves a shorter chain that verifies) shows against it.
            head = await store.audit_head()
            log.info("audit trail: %d entries, head %s", head.count, head.head)
        except Exception:
            log.exception("pruning old records failed; will retry")
        await asyncio.sleep(PRUNE_INTERVAL)


async def _retention_purges(app: web.Application) -> None:
    """The retention purge at start (a box that was off past its time catches up), then
    daily at retention.PURGE_AT local time; looked at every TIMED_INTERVAL."""
    done_at = None
    while True:
        try:
            now = parse_time(app[STORE].now())
            if retention.due(done_at, now, app[RECEPTION].settings.time_zone):
                await scheduled_purge(app, now)
                done_at = now
        except Exception:
            log.exception("the retention purge failed; will retry")
        await asyncio.sleep(TIMED_INTERVAL)


async def scheduled_purge(app: web.Application, now: datetime) -> retention.Purged:
    """One automatic purge: what the retention settings say is due at `now`."""
    reception = app[RECEPTION]
    purged = await retention.purge(app[STORE], reception.settings, RETENTION_ACTOR, now, quiet=True)
    if purged.anything:
        log.info(
            "retention purge: %d name(s), %d photo(s), %d event(s) removed",
            purged.names,
            purged.photos,
            purged.events,
        )
    return purged
