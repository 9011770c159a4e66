"""The server runtime behind `serve`: TLS, the event loop, the ports, the start-up banner.

Start-up failures are logged (with their priority under systemd) and end `serve` with
exit code 1; each names what failed: the port, the data directory, the certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from checkin_appliance import __version__, memory, ownership, restore_upload, storage, systemd
from checkin_appliance.app import create_app, create_redirect_app, setup_banner
from checkin_appliance.config import Config, ConfigError, replica_passphrase
from checkin_appliance.connections import ConnectionGuard, open_file_limit
from checkin_appliance.own_names import IPAddress, lan_addresses
from checkin_appliance.store.lock import DataDirInUse
from checkin_appliance.store.schema import NewerSchema, SchemaError
from checkin_appliance.web import backups
from checkin_appliance.web.api import local_ca
from checkin_appliance.web.backups import BACKUPS
from checkin_appliance.web.headers import AccessLogger, MalformedRequestLog

if TYPE_CHECKING:
    from checkin_appliance.tls import CertificateKeeper

log = logging.getLogger(__name__)

# What a failed bind means, by errno; anything else is reported as the OS words it.
_BIND_ERRORS = {
    errno.EADDRINUSE: "the address is already in use (is another server running on it?)",
    errno.EACCES: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
    errno.EADDRNOTAVAIL: "this machine has no such address",
}


# `--host ::` (the unit's): every IPv4 and IPv6 address. `0.0.0.0` stays IPv4 only.
ANY_ADDRESS = "::"
ALL_INTERFACES = ("0.0.0.0", "::", "")  # noqa: S104 - recognising, not binding


class CannotListen(Exception):
    """A port could not be bound; the message names it and why."""


def serve(config: Config) -> int:
    """Runs until stopped; 0 after a clean stop, 1 when the server could not start."""
    try:
        return _serve(config)
    finally:
        # Started as root by mistake on the service's data directory: what it made there
        # (tls/, pre-upgrade/, the database) goes back to the directory's owner when it stops.
        ownership.give_to_data_dir_owner(config.data_dir)


def _serve(config: Config) -> int:
    problem = _data_dir_problem(config) or _replica_problem(config)
    if problem:
        log.error("%s", problem)
        return 1
    log.info("checkin-appliance %s: data in %s", __version__, config.data_dir.resolve())
    memory.tune_allocator()
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestLog())
    ssl_context = None
    app = create_app(config)
    app[BACKUPS].restart = backups.request_restart  # a restore uploaded in /admin
    if config.tls_mode != "off":
        from checkin_appliance import tls  # cryptography: ~5 MB, only for HTTPS

        try:
            ssl_context = tls.server_context(config)
        except (tls.TLSError, OSError) as exc:
            log.error("HTTPS cannot start: %s", exc)
            return 1
        if config.tls_mode == "self-signed":
            keeper = tls.CertificateKeeper(config, ssl_context)
            app.cleanup_ctx.append(_keeping_certificate(keeper, config.certificate_check_interval))
    # One guard for both ports: an address's connections count together.
    guard = ConnectionGuard(
        config.max_connections_per_address, config.header_timeout, open_file_limit()
    )
    if config.redirect_port is not None:
        app.cleanup_ctx.append(_plain_http_listener(config, guard))
    try:
        _run(app, config, ssl_context, guard, _banner(app, config, https=ssl_context is not None))
    except CannotListen as exc:
        log.error("cannot serve on %s", exc)
        return 1
    except NewerSchema as exc:  # a downgrade: one line, no traceback (the reason in the journal)
        log.error("cannot open %s: %s", config.db_path, exc)
        return 1
    except (DataDirInUse, SchemaError) as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        if exc.filename:  # a file of the data directory, not the port
            log.error("cannot use %s: %s", exc.filename, exc.strerror or exc)
        else:
            log.error("cannot serve on %s", _bind_error(config.host, config.port, exc))
        return 1
    if app[BACKUPS].restart_requested:
        return restore_upload.restart()  # the staged restore goes in place as it starts
    return 0


def _run(
    app: web.Application,
    config: Config,
    ssl_context: ssl.SSLContext | None,
    guard: ConnectionGuard,
    started: Callable[[], None],
) -> None:
    """What web.run_app does (a loop, SIGTERM/SIGINT as a clean stop, every task ended
    after), with our own listening site: run_app would give the socket aiohttp's protocol
    directly, and the connection guard has to stand in front of it."""
    loop = _event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve_app(app, config, ssl_context, guard, started))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_remaining_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)


async def _serve_app(
    app: web.Application,
    config: Config,
    ssl_context: ssl.SSLContext | None,
    guard: ConnectionGuard,
    started: Callable[[], None],
) -> None:
    runner = web.AppRunner(
        app,
        handle_signals=True,
        access_log_class=AccessLogger,
        shutdown_timeout=5.0,
        keepalive_timeout=60.0,
        # After an answer sent before the body was read (408, 413), read on for at most
        # this long so the client sees the answer; aiohttp's 10 s kept trickles around.
        lingering_time=2.0,
    )
    await runner.setup()
    try:
        await GuardedSite(runner, config.host, config.port, guard, ssl_context).start()
        started()
        await asyncio.Event().wait()  # until SIGTERM or SIGINT ends the loop
    finally:
        await runner.cleanup()


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass the ConnectionGuard before aiohttp sees them."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self.runner, self.host, self.port = runner, host, port
        self.guard, self.tls = guard, ssl_context

    @property
    def name(self) -> str:
        return _url("https" if self.tls else "http", self.host, self.port)

    async def start(self) -> None:
        await super().start()
        server = self.runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        async def listen(hosts: str | list[str]) -> asyncio.AbstractServer:
            return await loop.create_server(
                self.guard.protocol_factory(server),
                hosts,
                self.port,
                ssl=self.tls,
                ssl_handshake_timeout=self.guard.header_timeout if self.tls else None,
                backlog=128,
            )

        if self.host != ANY_ADDRESS:
            self._server = await listen(self.host)
            return
        # "::" is every address, IPv4 and IPv6: a socket each (asyncio makes IPv6 sockets
        # IPv6-only), so an IPv4 client is seen as itself, not as ::ffff:a.b.c.d.
        try:
            self._server = await listen(["0.0.0.0", "::"])  # noqa: S104 - every address, asked for
        except OSError as exc:
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
            log.warning("IPv6 is off on this machine (%s): serving on IPv4 only", exc.strerror)
            self._server = await listen("0.0.0.0")  # noqa: S104


def _data_dir_problem(config: Config) -> str | None:
    """Why the server could not keep its data in the data directory, naming it; or None."""
    data_dir = config.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the data directory {data_dir}: {exc.strerror or exc}"
    return storage.write_problem(config)


def _replica_problem(config: Config) -> str | None:
    """Why the box's keys could not be sealed for the replica (its passphrase file); or None."""
    if config.replica is None:
        return None
    try:
        replica_passphrase(config)
    except ConfigError as exc:
        return str(exc)
    return None


def _bind_error(host: str, port: int | None, exc: OSError) -> str:
    reason = _BIND_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{host}:{port}: {reason}"


def _banner(app: web.Application, config: Config, *, https: bool) -> Callable[[], None]:
    """What _serve_app calls once the port is bound, so a setup code is only shown for a
    server that runs. Printed to stdout, never logged: the setup code is a secret."""

    def started() -> None:
        urls = reachable_urls(config, https=https)
        base_url = urls[0].rstrip("/")
        print(
            f"checkin-appliance {__version__} serving on {base_url} "
            f"(data: {config.data_dir.resolve()}); press Ctrl+C to stop",
            flush=True,
        )
        if len(urls) > 1:
            print(f"  Devices on the LAN open: {'  '.join(urls)}", flush=True)
        ca = local_ca(config)
        if ca is not None:
            print(
                f"  Devices trust this box once: {_ca_url(config)} (SHA-256 {ca.fingerprint})",
                flush=True,
            )
        banner = setup_banner(app, base_url)
        if banner:
            print(banner, flush=True)
        systemd.notify("READY=1")

    return started


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (the box: a dependency), else asyncio's own loop.

    The same server either way; uvloop's loop and transports answer ~15 % more check-ins
    per second on the box (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _public_host(config: Config, *, https: bool) -> str:
    """The host to print; on every interface, the mDNS name (the certificate has it)."""
    host = config.host
    if host in ALL_INTERFACES:
        return f"{socket.gethostname().split('.')[0] or 'localhost'}.local"
    return f"[{host}]" if ":" in host else host


def reachable_urls(
    config: Config, *, https: bool, addresses: set[IPAddress] | None = None
) -> list[str]:
    """What a device on the LAN can open: <hostname>.local and each of the box's addresses
    it listens on (IPv6 ones only with `--host ::`); never 0.0.0.0. One URL for one host."""
    scheme = "https" if https else "http"
    urls = [_url(scheme, _public_host(config, https=https), config.port, "/")]
    if config.host not in ALL_INTERFACES:
        return urls
    families = (4, 6) if config.host != "0.0.0.0" else (4,)  # noqa: S104
    found = lan_addresses() if addresses is None else addresses
    for address in sorted(found, key=lambda a: (a.version, int(a))):
        if address.version in families:
            host = f"[{address}]" if address.version == 6 else str(address)
            urls.append(_url(scheme, host, config.port, "/"))
    return urls


def _url(scheme: str, host: str, port: int, path: str = "") -> str:
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}{'' if port == default else f':{port}'}{path}"


def _ca_url(config: Config) -> str:
    """Where a device that does not trust the box yet downloads the CA: plain HTTP if served."""
    host = _public_host(config, https=True)
    if config.redirect_port is None:
        return _url("https", host, config.port, "/ca.crt")
    return _url("http", host, config.redirect_port, "/ca.crt")


def _plain_http_listener(
    config: Config, guard: ConnectionGuard
) -> Callable[[Any], AsyncIterator[None]]:
    """A cleanup_ctx: the plain-HTTP port, owned by the main app so it starts and stops with it."""

    async def listener(main: web.Application) -> AsyncIterator[None]:
        port = config.redirect_port
        runner = web.AppRunner(
            create_redirect_app(config, main),
            access_log_class=AccessLogger,
            shutdown_timeout=1.0,
            keepalive_timeout=60.0,
        )
        await runner.setup()
        try:
            try:
                await GuardedSite(runner, config.host, port, guard).start()
            except OSError as exc:
                reason = _bind_error(config.host, port, exc)
                raise CannotListen(f"{reason} (plain HTTP)") from exc
            yield
        finally:
            await runner.cleanup()

    return listener


def _keeping_certificate(
    keeper: CertificateKeeper, interval: float
) -> Callable[[Any], AsyncIterator[None]]:
    """A cleanup_ctx: every `interval` seconds, the server certificate is remade if it no
    longer fits the box (and served at once); a failure is logged and tried again."""

    async def keep() -> None:
        while True:
            await asyncio.sleep(interval)  # a period, not a wait for something
            try:
                await keeper.check()
            except Exception as exc:  # the keeper outlives any one failure
                log.warning("cannot renew the server certificate: %s (trying again)", exc)

    async def keeping(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(keep(), name="certificate keeper")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return keeping
