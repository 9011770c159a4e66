"""The `checkin-appliance` command: serve, manage credentials and settings, audit."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import platform
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from checkin_appliance import __version__, audit, logs, memory, systemd
from checkin_appliance.config import TLS_MODES, Config, ConfigError, load_config
from checkin_appliance.domain import (
    CLI,
    InvalidInput,
    Role,
    Settings,
    credential_fields,
    settings_from_stored,
    updated_settings,
)
from checkin_appliance.security import check_password_rules, hash_password, new_credential_token
from checkin_appliance.store import Store
from checkin_appliance.store.database import read_audit_log
from checkin_appliance.store.lock import DataDirInUse

DESCRIPTION = """\
Patient check-in and waiting-room queue for small clinics: one process serves the REST API,
the pages and the live feed /ws/queue/ from one SQLite file in the data directory."""


def version_text() -> str:
    """Our version and what it was built with (the frozen binary carries its own copies)."""
    import aiohttp
    import PIL

    try:
        import uvloop

        loop = f", uvloop {uvloop.__version__}"
    except ImportError:
        loop = ""
    return (
        f"checkin-appliance {__version__} (aiohttp {aiohttp.__version__}, "
        f"Pillow {PIL.__version__}, SQLite {sqlite3.sqlite_version}, "
        f"Python {platform.python_version()}{loop})"
    )


class _PrintVersion(argparse.Action):
    """Like action="version", without argparse re-wrapping the line."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="checkin-appliance", description=DESCRIPTION)
    parser.add_argument(
        "--version", action=_PrintVersion, help="print the version and what it was built with"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="folder with checkin.db and media/ (default: ./data, or data_dir from --config)",
        )
        p.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="FILE",
            help="TOML configuration file; flags given here override it",
        )

    serve = commands.add_parser(
        "serve",
        help="run the appliance (HTTP, pages, /ws/queue/)",
        description="Run the appliance. On first start with an empty database it prints a "
        "one-time setup code for creating the administrator at /setup.",
    )
    serve.add_argument("--host", default=None, help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default: 8000)")
    serve.add_argument(
        "--tls",
        default=None,
        choices=TLS_MODES,
        help="HTTPS: self-signed makes the box's own certificate authority in DATA_DIR/tls/ "
        "on first start (devices trust it once, see /setup or /admin); off serves plain HTTP "
        "(default: off)",
    )
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="serve HTTPS with the clinic's own certificate (PEM, full chain) instead; "
        "needs --tls-key",
    )
    serve.add_argument(
        "--tls-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="the unencrypted private key (PEM) of --tls-cert",
    )
    serve.add_argument(
        "--http-port",
        type=int,
        default=None,
        metavar="N",
        help="with HTTPS, a plain-HTTP port that redirects browsers to HTTPS and serves "
        "/ca.crt (default: 80 when --port is 443, else none; 0: none)",
    )
    data_options(serve)
    serve.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: INFO)",
    )

    token = commands.add_parser(
        "token",
        help="create, list and deactivate credentials",
        description="Manage credentials (an 8-digit token plus a password, with one role). "
        "Works while the server runs; changes take effect at once.",
    )
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser(
        "create",
        help="create a credential and print its new token",
        description="Create a credential; prints the new 8-digit token on its own line.",
    )
    create.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in Role],
        help="form: kiosk check-in; doctor: call patients; queue: wall display; admin: everything",
    )
    create.add_argument("--label", required=True, help='a human name, e.g. "Kiosk 1" or "Dr. Lee"')
    create.add_argument("--room", default=None, help='consulting room of a doctor, e.g. "Room 3"')
    secret = create.add_mutually_exclusive_group(required=True)
    secret.add_argument(
        "--password", help="the password (visible in shell history; prefer --password-stdin)"
    )
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (first line)",
    )
    data_options(create)
    listing = token_commands.add_parser("list", help="list credentials (no secrets)")
    data_options(listing)
    deactivate = token_commands.add_parser(
        "deactivate", help="deactivate a credential, ending its sessions and live feeds"
    )
    deactivate.add_argument("token", help="the 8-digit token")
    data_options(deactivate)

    settings = commands.add_parser(
        "settings",
        help="show or change clinic settings",
        description="Show or change the settings stored in the database (the running server "
        "picks changes up within a second).",
    )
    settings_commands = settings.add_subparsers(
        dest="settings_command", required=True, metavar="ACTION"
    )
    show = settings_commands.add_parser("show", help="print the settings as JSON")
    data_options(show)
    setter = settings_commands.add_parser(
        "set", help="change one setting, e.g. `settings set anonymous_feed true`"
    )
    setter.add_argument(
        "key",
        help="clinic_name, language, display_names, display_photos, "
        "anonymous_feed or announce_voice",
    )
    setter.add_argument("value", help="the new value (JSON for true/false, else text)")
    data_options(setter)

    audit_parser = commands.add_parser(
        "audit",
        help="show or verify the audit trail",
        description="The audit trail records logins (and failed ones), check-ins, calls, "
        "credential and settings changes and backups: who, what, which patient (by id, never "
        "a name), when and from where. Rows are append-only and hash-chained.",
    )
    audit_commands = audit_parser.add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    verify = audit_commands.add_parser(
        "verify",
        help="check that no row was edited or removed (exit code 1 if one was)",
        description="Walks the hash chain. Prints the number of rows and the head hash: the "
        "server logs the head every hour, so rows removed from the end show as a head the "
        "journal had and the database no longer has.",
    )
    data_options(verify)
    recent = audit_commands.add_parser("show", help="print the newest rows")
    recent.add_argument("--limit", type=int, default=50, help="how many rows (default: 50)")
    recent.add_argument("--json", action="store_true", help="one JSON object per line")
    data_options(recent)
    _add_backup_commands(commands, data_options)
    return parser


def _add_backup_commands(
    commands: Any, data_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    backup = commands.add_parser(
        "backup",
        help="write a backup (database and photos) to one .tar file; works while serving",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Write a consistent backup of the data directory to one .tar file: checkin.db
(copied with SQLite's online backup API, checked with integrity_check), every
photo it names, and manifest.json with the SHA-256 of each member.

Safe while the server runs: check-ins go on during the copy. The file appears
only when complete (temp file, fsync, rename); only its owner can read it.
Prints one line with counts and size, never a patient's name.""",
        epilog="""\
exit status: 0 written, 1 failed (nothing written), 2 bad usage

example:
  sudo checkin-appliance backup /media/usb/ --data-dir /var/lib/checkin-appliance""",
    )
    backup.add_argument(
        "out",
        metavar="OUT",
        help="the file to write, e.g. /media/usb/clinic.tar; or an existing folder, to write "
        "checkin-backup-YYYYMMDD-HHMMSS.tar in it",
    )
    backup.add_argument("--force", action="store_true", help="replace OUT if it exists")
    data_options(backup)

    restore = commands.add_parser(
        "restore",
        help="put a backup back in place (stop the server first)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Restore a backup made by `checkin-appliance backup`. Refuses while a server
runs on the data directory. The whole file is checked first (manifest, every
SHA-256, integrity_check): a damaged or incomplete backup changes nothing.

The current checkin.db (with its -wal and -shm) and photos are moved to
DATA_DIR/before-restore-<time>/, never deleted; tls/ is left as it is.""",
        epilog="""\
exit status: 0 restored, 1 refused or failed (nothing changed), 2 bad usage

example:
  sudo systemctl stop checkin-appliance
  sudo checkin-appliance restore /media/usb/clinic.tar \\
      --data-dir /var/lib/checkin-appliance
  sudo systemctl start checkin-appliance""",
    )
    restore.add_argument("backup_file", type=Path, metavar="IN", help="a .tar made by `backup`")
    data_options(restore)


def _config(args: argparse.Namespace, **extra: Any) -> Config:
    return load_config(args.config, data_dir=args.data_dir, **extra)


def _with_store(config: Config, action: Callable[[Store], Awaitable[int]]) -> int:
    async def run() -> int:
        store = Store(config.db_path)
        await store.open()
        try:
            if store.damaged:
                print(
                    f"error: {config.db_path} is damaged; restore a backup (see the README) "
                    "before changing anything",
                    file=sys.stderr,
                )
                return 1
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _token_command(args: argparse.Namespace, config: Config) -> int:
    if args.token_command == "create":
        password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else args.password
        try:
            role, label, room = credential_fields(args.role, args.label, args.room)
        except InvalidInput as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        problem = check_password_rules(password)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        password_hash = hash_password(password)

        async def create(store: Store) -> int:
            credential = await store.create_credential(
                new_credential_token, role, label, room, password_hash, actor=CLI
            )
            assert credential is not None
            print(credential.token)
            return 0

        return _with_store(config, create)

    if args.token_command == "list":

        async def show(store: Store) -> int:
            print(f"{'TOKEN':<9} {'ROLE':<7} {'ACTIVE':<7} {'ROOM':<10} LABEL")
            for c in await store.list_credentials():
                print(
                    f"{c.token:<9} {c.role.value:<7} {'yes' if c.active else 'no':<7} "
                    f"{c.room or '-':<10} {c.label}"
                )
            return 0

        return _with_store(config, show)

    async def deactivate(store: Store) -> int:
        credential = await store.deactivate_credential(args.token, actor=CLI)
        if credential is None:
            print(f"error: no credential with token {args.token}", file=sys.stderr)
            return 1
        print(f"deactivated {credential.token} ({credential.role.value}, {credential.label})")
        return 0

    return _with_store(config, deactivate)


def _settings_command(args: argparse.Namespace, config: Config) -> int:
    async def run(store: Store) -> int:
        current = settings_from_stored(await store.load_settings())
        if args.settings_command == "show":
            print(json.dumps(current.public(), indent=2))
            return 0
        try:
            # true/false are booleans only for the on/off settings; a clinic may be named "true".
            is_switch = isinstance(getattr(Settings(), args.key, None), bool)
            value = (
                json.loads(args.value)
                if is_switch and args.value in ("true", "false")
                else args.value
            )
            new = updated_settings(current, {args.key: value})
        except InvalidInput as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        await store.save_settings({args.key: json.dumps(new.public()[args.key])}, actor=CLI)
        print(json.dumps(new.public(), indent=2))
        return 0

    return _with_store(config, run)


def _audit_command(args: argparse.Namespace, config: Config) -> int:
    if not config.db_path.exists():
        print(f"error: no database at {config.db_path}", file=sys.stderr)
        return 1
    try:
        entries = list(read_audit_log(config.db_path))
    except sqlite3.DatabaseError as exc:
        print(f"error: cannot read the audit trail of {config.db_path}: {exc}", file=sys.stderr)
        return 1
    if args.audit_command == "show":
        for entry in entries[-args.limit :] if args.limit > 0 else []:
            if args.json:
                print(json.dumps(entry.public()))
            else:
                detail = f" {entry.detail}" if entry.detail else ""
                patient = f" patient {entry.patient_id}" if entry.patient_id else ""
                who = f"credential {entry.actor}" if entry.actor else "-"
                print(
                    f"{entry.id:>6} {entry.at} {entry.address:<15} {who:<14} "
                    f"{entry.action}{patient}{detail}"
                )
        return 0
    verdict = audit.verify(entries)
    if verdict.ok:
        print(f"audit trail intact: {verdict.count} entries, head {verdict.head}")
        return 0
    print(
        f"audit trail BROKEN: {verdict.problem} ({verdict.count} entries before it verify)",
        file=sys.stderr,
    )
    return 1


def _backup_command(args: argparse.Namespace, config: Config) -> int:
    from checkin_appliance import backup

    try:
        result = backup.backup(config, args.out, force=args.force)
    except backup.BackupError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; no backup was written", file=sys.stderr)
        return 130
    if result.missing_photos:
        print(
            f"warning: {result.missing_photos} photos named in the database were not in "
            f"{config.photo_dir}; the backup has the rest",
            file=sys.stderr,
        )
    print(result.summary())

    async def record(store: Store) -> int:
        detail = {"file": result.path.name, "bytes": result.size_bytes}
        await store.record_audit(audit.BACKUP, CLI, detail | dataclasses.asdict(result.counts))
        return 0

    return _with_store(config, record)


def _restore_command(args: argparse.Namespace, config: Config) -> int:
    from checkin_appliance import backup

    try:
        result = backup.restore(config, args.backup_file)
    except backup.BackupError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; nothing was changed", file=sys.stderr)
        return 130
    print(
        f"restored {result.source} (made {result.backup_created_at} by checkin-appliance "
        f"{result.backup_app_version}) into {result.data_dir}: {result.counts.describe()}"
    )
    if result.missing_photos:
        print(f"warning: {result.missing_photos} photos the database names were not in it")
    if result.moved_aside is not None:
        print(
            f"the previous files ({', '.join(result.moved)}) are in {result.moved_aside}/ "
            "(delete that folder once you no longer need it)"
        )
    else:
        print("there was no previous database to move aside")
    print(
        "start the service again: sudo systemctl start checkin-appliance "
        f"(or: checkin-appliance serve --data-dir {result.data_dir})"
    )
    return 0


def _serve(args: argparse.Namespace, config: Config) -> int:
    from aiohttp import web

    from checkin_appliance.app import create_app, setup_banner
    from checkin_appliance.web.api import local_ca
    from checkin_appliance.web.headers import AccessLogger

    config.data_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger(__name__).info(
        "checkin-appliance %s: data in %s", __version__, config.data_dir.resolve()
    )
    memory.keep_large_allocations_returnable()
    ssl_context = None
    if config.tls_mode != "off":
        from checkin_appliance import tls  # cryptography: ~5 MB, only for HTTPS

        try:
            ssl_context = tls.server_context(config)
        except (tls.TLSError, OSError) as exc:
            print(f"error: HTTPS cannot start: {exc}", file=sys.stderr)
            return 1
    app = create_app(config)
    if config.redirect_port is not None:
        app.cleanup_ctx.append(_plain_http_listener(config))

    def started(_: str) -> None:
        # Called once the port is bound, so a setup code is only shown for a server that runs.
        base_url = _base_url(config, https=ssl_context is not None)
        print(
            f"checkin-appliance {__version__} serving on {base_url} "
            f"(data: {config.data_dir.resolve()}); press Ctrl+C to stop",
            flush=True,
        )
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

    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            ssl_context=ssl_context,
            access_log_class=AccessLogger,
            shutdown_timeout=5.0,
            keepalive_timeout=60.0,
            # After an answer sent before the body was read (408, 413), read on for at most
            # this long so the client sees the answer; aiohttp's 10 s kept trickles around.
            lingering_time=2.0,
            print=started,
            loop=_event_loop(),
        )
    except _CannotListen as exc:
        print(f"error: cannot serve on {exc}", file=sys.stderr)
        return 1
    except DataDirInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"error: cannot serve on {config.host}:{config.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (the box: a dependency), else asyncio's own loop.

    The same server either way; uvloop's loop and transports answer ~15 % more check-ins
    per second on the box (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _CannotListen(Exception):
    """A second port (plain HTTP) could not be bound; the message names it and why."""


def _public_host(config: Config, *, https: bool) -> str:
    """The host to print; with HTTPS on every interface, the mDNS name the certificate has."""
    host = config.host
    if https and host in ("0.0.0.0", "::", ""):  # noqa: S104 - recognising, not binding
        return f"{socket.gethostname().split('.')[0] or 'localhost'}.local"
    return f"[{host}]" if ":" in host else host


def _url(scheme: str, host: str, port: int, path: str = "") -> str:
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}{'' if port == default else f':{port}'}{path}"


def _base_url(config: Config, *, https: bool) -> str:
    return _url("https" if https else "http", _public_host(config, https=https), config.port)


def _ca_url(config: Config) -> str:
    """Where a device that does not trust the box yet downloads the CA: plain HTTP if served."""
    host = _public_host(config, https=True)
    if config.redirect_port is None:
        return _url("https", host, config.port, "/ca.crt")
    return _url("http", host, config.redirect_port, "/ca.crt")


def _plain_http_listener(config: Config) -> Callable[[Any], AsyncIterator[None]]:
    """A cleanup_ctx: the plain-HTTP port, owned by the main app so it starts and stops with it."""

    async def listener(_: Any) -> AsyncIterator[None]:
        from aiohttp import web

        from checkin_appliance.web.headers import AccessLogger

        port = config.redirect_port
        runner = web.AppRunner(
            _plain_http_app(config), access_log_class=AccessLogger, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, config.host, port).start()
            except OSError as exc:
                raise _CannotListen(
                    f"{config.host}:{port} (plain HTTP): {exc.strerror or exc}"
                ) from exc
            yield
        finally:
            await runner.cleanup()

    return listener


def _plain_http_app(config: Config) -> Any:
    """Every plain-HTTP request goes to HTTPS, except /ca.crt: a device fetches it to trust us."""
    from aiohttp import web

    from checkin_appliance.web import api
    from checkin_appliance.web.errors import error_middleware
    from checkin_appliance.web.headers import add_security_headers
    from checkin_appliance.web.keys import CONFIG

    https_port = None if config.port == 443 else config.port

    async def to_https(request: web.Request) -> web.StreamResponse:
        target = request.url.with_scheme("https").with_port(https_port)
        # 308 keeps the method and body; GET and HEAD get the 301 every browser knows.
        if request.method in ("GET", "HEAD"):
            raise web.HTTPMovedPermanently(target)
        raise web.HTTPPermanentRedirect(target)

    app = web.Application(middlewares=[error_middleware()])
    app[CONFIG] = config
    app.router.add_get("/ca.crt", api.ca_certificate)
    app.router.add_route("*", "/{path:.*}", to_https)
    app.on_response_prepare.append(add_security_headers)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            config = _config(
                args,
                host=args.host,
                port=args.port,
                log_level=args.log_level,
                tls=args.tls,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                http_port=args.http_port,
            )
        else:
            config = _config(args)
    except ConfigError as exc:
        parser.error(str(exc))
    logs.configure(config.log_level if args.command == "serve" else "WARNING")
    if args.command == "serve":
        return _serve(args, config)
    if args.command == "token":
        return _token_command(args, config)
    if args.command == "audit":
        return _audit_command(args, config)
    if args.command == "backup":
        return _backup_command(args, config)
    if args.command == "restore":
        return _restore_command(args, config)
    return _settings_command(args, config)


if __name__ == "__main__":
    sys.exit(main())
