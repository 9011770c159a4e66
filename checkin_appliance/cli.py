"""The `checkin-appliance` command: its arguments, and one handler per command (the server
itself is server.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import platform
import signal
import sqlite3
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checkin_appliance import __version__, audit, logs, ownership, retention, storage
from checkin_appliance.access import Access
from checkin_appliance.audit import AuditEntry
from checkin_appliance.config import TLS_MODES, Config, ConfigError, check_config, load_config
from checkin_appliance.domain import CLI, DomainError, InvalidInput, NotFound, Role, Settings
from checkin_appliance.reception import Reception
from checkin_appliance.security import PasswordHasher
from checkin_appliance.store import Store
from checkin_appliance.store.database import read_audit_log
from checkin_appliance.store.errors import StoreUnavailable
from checkin_appliance.store.schema import SchemaError

# Where the package puts its configuration (data_dir = INSTALLED_DATA_DIR in it).
INSTALLED_CONFIG = Path("/etc/checkin-appliance/config.toml")
INSTALLED_DATA_DIR = Path("/var/lib/checkin-appliance")

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
            help="folder with checkin.db (default: data_dir from --config; as "
            f"installed, from {INSTALLED_CONFIG}; else ./data)",
        )
        p.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="FILE",
            help="TOML configuration file; flags given here override it (default: "
            f"{INSTALLED_CONFIG} when neither --config nor --data-dir is given and it exists)",
        )

    serve = commands.add_parser(
        "serve",
        help="run the appliance (HTTP, pages, /ws/queue/)",
        description="Run the appliance. On first start with an empty database it prints a "
        "one-time setup code for creating the administrator at /setup.",
    )
    serve.add_argument(
        "--host",
        default=None,
        help="address to listen on (default: 127.0.0.1); :: is every IPv4 and IPv6 address, "
        "0.0.0.0 every IPv4 one",
    )
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
    serve.set_defaults(handler=serve_command, config_flags=SERVE_FLAGS)

    token = commands.add_parser(
        "token",
        help="create, list and deactivate credentials; set their passwords",
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
    create.add_argument(
        "--lines",
        default=None,
        help="the lines a doctor serves, by ticket prefix, e.g. A,N (default: every line)",
    )
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
    create.set_defaults(handler=token_create)
    listing = token_commands.add_parser("list", help="list credentials (no secrets)")
    data_options(listing)
    listing.set_defaults(handler=token_list)
    deactivate = token_commands.add_parser(
        "deactivate", help="deactivate a credential, ending its sessions and live feeds"
    )
    deactivate.add_argument("token", help="the 8-digit token")
    data_options(deactivate)
    deactivate.set_defaults(handler=token_deactivate)
    reset = token_commands.add_parser(
        "password",
        help="set a credential's password (clears an imported one's reset flag)",
        description="Set a new password for a credential, with the same rules as a new one. "
        "Clears the reset flag of a credential imported from CheckIn with a weak password, "
        "and ends the credential's sessions and live feeds (it signs in again with the new "
        "password). Without --password-stdin the password is asked for twice.",
    )
    reset.add_argument("token", help="the credential's token (8 digits, or an imported one)")
    reset.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (first line)",
    )
    data_options(reset)
    reset.set_defaults(handler=token_password)

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
    show.set_defaults(handler=settings_show)
    setter = settings_commands.add_parser(
        "set", help="change one setting, e.g. `settings set anonymous_feed true`"
    )
    setter.add_argument(
        "key",
        help="clinic_name, language, display_names, display_photos, anonymous_feed, "
        "announce_voice, intake_form, time_zone (IANA name, e.g. America/New_York: tickets "
        "restart at its local midnight), priority_question, undo_seconds, "
        "photo_retention_days, name_retention_days or audit_retention_days (whole days)",
    )
    setter.add_argument(
        "value",
        help='the new value (true/false for switches; JSON for intake_form, e.g. \'{"preset": '
        '"original"}\'; else text)',
    )
    data_options(setter)
    setter.set_defaults(handler=settings_set)
    preset = settings_commands.add_parser(
        "preset",
        help="open like the original CheckIn, or restore the privacy defaults",
        description="original: anonymous queue reads and live feed, full names and photos on "
        "wall displays, the original's intake form (SSN, address, ...). private: our privacy "
        "defaults and the name-only form. CORS origins are the config file's cors_origins.",
    )
    preset.add_argument("name", choices=("original", "private"), help="original or private")
    data_options(preset)
    preset.set_defaults(handler=settings_preset)

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
        description="Walks the hash chain, keyed with DATA_DIR/audit.key (HMAC-SHA-256): "
        "an edited or removed row, or a trail re-chained by someone without that file, "
        "breaks it. Prints the number of rows and the head hash: the server logs the head "
        "every hour, so rows removed from the end show as a head the journal had and the "
        "database no longer has. Whoever can read audit.key (root, the service's user) can "
        "re-chain undetected but for that journal.",
    )
    data_options(verify)
    verify.set_defaults(handler=audit_verify)
    recent = audit_commands.add_parser("show", help="print the newest rows")
    recent.add_argument("--limit", type=int, default=50, help="how many rows (default: 50)")
    recent.add_argument("--json", action="store_true", help="one JSON object per line")
    data_options(recent)
    recent.set_defaults(handler=audit_show)
    _add_config_command(commands)
    _add_backup_commands(commands, data_options)
    _add_import_command(commands, data_options)
    _add_purge_command(commands, data_options)
    _add_set_clock_command(commands, data_options)
    _add_standby_commands(commands, data_options)
    return parser


def _add_standby_commands(
    commands: Any, data_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    standby = commands.add_parser(
        "standby",
        help="on a second box: keep a copy of the live box's database current from its replica",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Run on a second box (the standby) with the replica the live box writes to
(its `replica` setting, or --replica). Litestream restores the replica into
DATA_DIR/standby/checkin.db and applies every new transaction as it arrives
(follow mode), until stopped (SIGTERM, Ctrl+C). Every minute it asks the
replica for its newest transaction and logs how current the copy is when that
changes (current, behind, replica unreadable). Refuses to run where a database
of its own exists (DATA_DIR/checkin.db: that box is a primary). When the live
box dies, run `checkin-appliance promote` here.""",
        epilog="""\
exit status: 0 stopped, 1 refused or failed, 2 bad usage

example (as a service: sudo systemctl enable --now checkin-appliance-standby):
  sudo -u checkin-appliance checkin-appliance standby \\
      --config /etc/checkin-appliance/config.toml""",
    )
    standby.add_argument(
        "--replica",
        metavar="URL",
        help="the live box's replica (default: `replica` from the config file): a folder, "
        "sftp://user@host/path?key=FILE&host_key=FILE or s3://bucket/path?endpoint=URL",
    )
    data_options(standby)
    standby.set_defaults(handler=standby_command)

    promote = commands.add_parser(
        "promote",
        help="on the standby, when the live box died: make this box the live one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Turn the standby into the live box, one line per step: stop the standby (its
systemd unit, or the standby command); restore the replica's newest
transactions (at most 10 s; if the replica cannot be read, the followed copy
is used as it is and its age is said); check the copy as restore checks a
backup; open the box's keys it carries (the CA devices trust, the audit key)
with the replica's passphrase; put the copy in place as DATA_DIR/checkin.db
and the keys beside it (anything there is moved to before-promote-<time>/,
never deleted); record the promotion in the audit trail; take the old box's
hostname (hostnamectl, as root under systemd; else the command is printed);
enable and start the service (or print the serve command).

A wrong passphrase or a damaged copy changes nothing. Never turn the old box
on again with its network cable in: two live boxes would write one replica.""",
        epilog="""\
exit status: 0 promoted, 1 refused or failed, 2 bad usage

example:
  sudo checkin-appliance promote --config /etc/checkin-appliance/config.toml""",
    )
    way = promote.add_mutually_exclusive_group()
    way.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="the replica's passphrase, first line of FILE (default: replica_passphrase_file "
        "from the config file; else it is asked for)",
    )
    way.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="read the replica's passphrase from standard input (first line)",
    )
    promote.add_argument(
        "--no-start",
        action="store_true",
        help="do everything but start the service: print the command that starts it",
    )
    data_options(promote)
    promote.set_defaults(handler=promote_command)


def standby_command(args: argparse.Namespace, config: Config) -> int:
    import logging

    from checkin_appliance import standby
    from checkin_appliance.config import replica_setting

    log = logging.getLogger("checkin_appliance.standby")
    try:
        replica = replica_setting(args.replica) if args.replica else config.replica
    except ConfigError as exc:
        log.error("--replica: %s", exc)
        return 2
    if replica is None:
        log.error("no replica: give --replica URL, or set replica in the config file")
        return 2
    try:
        return standby.run(dataclasses.replace(config, replica=replica))
    except (standby.StandbyError, OSError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        ownership.give_to_data_dir_owner(config.data_dir)


def promote_command(args: argparse.Namespace, config: Config) -> int:
    from checkin_appliance import promote

    def passphrase() -> bytes:
        """--passphrase-file or --passphrase-stdin as backup reads them, else the config's
        replica_passphrase_file, else asked at the terminal."""
        from checkin_appliance.backup import BackupError

        if args.passphrase_file is None and not args.passphrase_stdin:
            args.passphrase_file = config.replica_passphrase_file
        try:
            found = _read_passphrase(args, writing=False)
        except BackupError as exc:
            raise promote.PromoteError(
                f"{exc.message}; nothing was changed", exc.exit_code
            ) from exc
        if found is not None:
            return found
        if not sys.stdin.isatty():
            raise promote.PromoteError(
                "the copy carries the box's keys: give the replica's passphrase with "
                "--passphrase-file FILE or --passphrase-stdin; nothing was changed",
                promote.USAGE,
            )
        import getpass

        typed = getpass.getpass("The replica's passphrase: ").encode()
        if not typed:
            raise promote.PromoteError(
                "the passphrase is empty; nothing was changed", promote.USAGE
            )
        return typed

    where = f"--config {args.config}" if args.config else f"--data-dir {config.data_dir}"
    try:
        with _stopping_signals_interrupt():
            return promote.promote(
                config,
                passphrase,
                lambda line: print(line, flush=True),
                f"checkin-appliance serve {where}",
                start=not args.no_start,
            )
    except promote.PromoteError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _add_config_command(commands: Any) -> None:
    config = commands.add_parser("config", help="check the configuration file")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="list every problem of the configuration file (exit code 1 if there is one)",
        description="Reads the file as `serve` does and prints one line per problem: a value "
        "the server cannot use (it would not start), and a key it does not use as written "
        "(renamed: read under its new name; removed or unknown: ignored). The server only "
        "warns about keys at start, so an upgrade that renames one never stops it.",
    )
    check.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"the file to check (default: {INSTALLED_CONFIG})",
    )
    check.set_defaults(handler=config_check, config_flags=())


def config_check(args: argparse.Namespace) -> int:
    path = args.config if args.config is not None else INSTALLED_CONFIG
    problems = check_config(path)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{path}: no problems")
    return 1 if problems else 0


def _add_set_clock_command(
    commands: Any, data_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    setter = commands.add_parser(
        "set-clock",
        help="(the clock helper) set the box's clock from an admin's request",
        description="Run by checkin-appliance-clock.service (CAP_SYS_TIME only) when the "
        "server writes a request (POST /api/system/clock/): validates it again, sets the "
        "system clock to the asked time plus the time the request waited, writes the RTC if "
        "hwclock and an RTC are there, and removes the request.",
    )
    setter.add_argument("--request", type=Path, required=True, metavar="FILE")
    data_options(setter)
    setter.set_defaults(handler=set_clock_command)


def set_clock_command(args: argparse.Namespace, config: Config) -> int:
    from checkin_appliance import clock_setting

    try:
        clock_setting.apply_request(args.request)
    except (ValueError, OSError) as exc:
        print(f"checkin-appliance: clock not set: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_purge_command(
    commands: Any, data_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    purge = commands.add_parser(
        "purge",
        help="remove now the names, answers and photos past their retention",
        description="The retention purge the server runs at start and daily at 03:00 local "
        "time, now: patients whose visits are all closed lose their photo "
        "photo_retention_days after their visit's local day, and their name and intake "
        "answers name_retention_days after it (settings). Visits keep their ticket, line, "
        "times, outcome and doctor, so the statistics do not change. The database file is "
        "then vacuumed and its WAL emptied, so the removed bytes are gone from the disk's "
        "files too (not from backups made before: they age out as you delete them). Works "
        "while the server runs. Prints what was removed as JSON; one audit row.",
    )
    data_options(purge)
    purge.set_defaults(handler=purge_command)


def _add_import_command(
    commands: Any, data_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    importer = commands.add_parser(
        "import-original",
        help="bring credentials, patients, queue and photos over from the original CheckIn",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Import the original CheckIn's SQLite database (its db.sqlite3, opened read-only
and never changed) and its photos (its MEDIA_ROOT folder, which holds
patient_images/):

- credentials keep their tokens and passwords (hashed here); staff becomes
  form; inactive ones stay inactive. A password too easy to guess (or the
  legacy "2") is flagged: signing in with it answers password_reset_required
  until an administrator sets a new one (`token password TOKEN`), unless
  --accept-weak-passwords. A token already in use here is skipped.
- patients with their intake answers as stored; waiting ones join the end of
  the queue in their original order (live screens show them at once),
  called ones arrive completed with their times.
- photos re-encoded like a kiosk's (new random names); a missing or
  unreadable file leaves that patient without a photo.

Works with the server stopped or running. All or nothing: on any failure
nothing is changed. Running it again adds nothing new. Prints counts only,
never a name, a token or a password; the audit trail records them.""",
        epilog="""\
exit status: 0 imported (or nothing new), 1 failed (nothing changed),
2 not an original CheckIn database or bad usage

example:
  sudo -u checkin checkin-appliance import-original --db /srv/checkin/db.sqlite3 \\
      --media /srv/checkin/media --data-dir /var/lib/checkin-appliance --dry-run""",
    )
    importer.add_argument(
        "--db", required=True, type=Path, metavar="PATH", help="the original's db.sqlite3"
    )
    importer.add_argument(
        "--media",
        required=True,
        type=Path,
        metavar="DIR",
        help="the original's MEDIA_ROOT (the folder that holds patient_images/)",
    )
    importer.add_argument(
        "--dry-run", action="store_true", help="print what would be imported; change nothing"
    )
    importer.add_argument(
        "--accept-weak-passwords",
        action="store_true",
        help="keep passwords our strength rules refuse usable instead of flagging them "
        '(the legacy "2" and empty ones are flagged anyway)',
    )
    data_options(importer)
    importer.set_defaults(handler=import_original_command)


def _add_backup_commands(
    commands: Any, data_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    backup = commands.add_parser(
        "backup",
        help="write an encrypted backup (database and photos) to one file; works while serving",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Write a consistent backup of the data directory to one file: a tar of checkin.db
(copied with SQLite's online backup API, checked with integrity_check), which
holds the photos, and manifest.json with the SHA-256 of each member, encrypted
and authenticated with your passphrase in the age format (`age -d` opens it).

The passphrase comes from a file (--passphrase-file, first line) or standard
input (--passphrase-stdin), never from the command line; keep it somewhere
other than the backup. Without it the backup cannot be read or restored.
--no-encryption writes a plain .tar instead (for a disk you encrypt yourself).

Safe while the server runs: check-ins go on during the copy. The file appears
only when complete (temp file, fsync, rename); only its owner can read it.
Prints one line with counts and size, never a patient's name.""",
        epilog="""\
exit status: 0 written, 1 failed (nothing written), 2 bad usage

example:
  sudo checkin-appliance backup /media/usb/ --data-dir /var/lib/checkin-appliance \\
      --passphrase-file /etc/checkin-appliance/backup-passphrase""",
    )
    backup.add_argument(
        "out",
        metavar="OUT",
        help="the file to write, e.g. /media/usb/clinic.tar.age; or an existing folder, to "
        "write checkin-backup-YYYYMMDD-HHMMSS.tar.age (.tar without encryption) in it",
    )
    backup.add_argument("--force", action="store_true", help="replace OUT if it exists")
    _passphrase_options(backup, writing=True)
    data_options(backup)
    backup.set_defaults(handler=backup_command)

    restore = commands.add_parser(
        "restore",
        help="put a backup back in place (stop the server first)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Restore a backup made by `checkin-appliance backup`. Refuses while a server
runs on the data directory. The whole file is checked first (passphrase and
authenticity, manifest, every SHA-256, integrity_check, the schema): a wrong
passphrase, or a damaged, incomplete or altered backup, changes nothing.

An encrypted backup needs its passphrase (--passphrase-file or
--passphrase-stdin). A plain .tar (made with --no-encryption, or by an older
version) is restored only with --no-encryption: nothing proves who wrote it.

The current checkin.db (with its -wal and -shm, and the photos it holds) is
moved to DATA_DIR/before-restore-<time>/, never deleted; tls/ is left as it
is. An older backup's photo files go into media/ and the server's next start
moves them into the database.""",
        epilog="""\
exit status: 0 restored, 1 refused or failed (nothing changed), 2 bad usage

example:
  sudo systemctl stop checkin-appliance
  sudo checkin-appliance restore /media/usb/clinic.tar.age \\
      --data-dir /var/lib/checkin-appliance \\
      --passphrase-file /etc/checkin-appliance/backup-passphrase
  sudo systemctl start checkin-appliance""",
    )
    restore.add_argument(
        "backup_file", type=Path, metavar="IN", help="a .tar.age (or .tar) made by `backup`"
    )
    _passphrase_options(restore, writing=False)
    data_options(restore)
    restore.set_defaults(handler=restore_command)


def _passphrase_options(p: argparse.ArgumentParser, *, writing: bool) -> None:
    way = p.add_mutually_exclusive_group()
    way.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="read the passphrase from the first line of FILE (keep it mode 600, root's)",
    )
    way.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="read the passphrase from standard input (first line)",
    )
    way.add_argument(
        "--no-encryption",
        action="store_true",
        help="write a plain .tar anyone with the file can read (only onto a disk you "
        "encrypt yourself)"
        if writing
        else "restore a plain .tar (made with --no-encryption or by an older version)",
    )


def _read_passphrase(args: argparse.Namespace, *, writing: bool) -> bytes | None:
    """The passphrase the options name (None with --no-encryption or none given); raises
    BackupError(USAGE) when it cannot be read or is too short to encrypt with."""
    from checkin_appliance import agefile
    from checkin_appliance.backup import USAGE, BackupError

    if args.passphrase_stdin:
        passphrase = sys.stdin.buffer.readline().rstrip(b"\r\n")
    elif args.passphrase_file is not None:
        try:
            passphrase, readable_by_others = agefile.read_passphrase_file(args.passphrase_file)
        except OSError as exc:
            raise BackupError(
                f"cannot read the passphrase file {args.passphrase_file}: {exc.strerror}", USAGE
            ) from exc
        if readable_by_others:
            print(
                f"warning: other users can read {args.passphrase_file}; "
                f"chmod 600 {args.passphrase_file}",
                file=sys.stderr,
            )
    else:
        return None
    if not passphrase:
        raise BackupError("the passphrase is empty", USAGE)
    if writing and agefile.too_short(passphrase):
        raise BackupError(
            f"the passphrase is shorter than {agefile.MIN_PASSPHRASE_CHARS} characters; use a "
            "longer one (e.g. four random words)",
            USAGE,
        )
    return passphrase


# --- the commands: each takes the parsed arguments and the configuration, returns the exit code


# The flags of `serve` that override the configuration file.
SERVE_FLAGS = ("host", "port", "log_level", "tls", "tls_cert", "tls_key", "http_port")


def serve_command(args: argparse.Namespace, config: Config) -> int:
    from checkin_appliance import server  # aiohttp and the web side: only to serve

    return server.serve(config)


@dataclass
class _Services:
    """What a command works through: the same services the server uses."""

    store: Store
    access: Access
    reception: Reception


def _with_services(
    config: Config, action: Callable[[_Services], Awaitable[int]], *, create: bool = False
) -> int:
    """Runs `action` on the data directory's database. Only `create` commands (import) may
    start a new one: any other, pointed at the wrong folder, says so instead of making an
    empty database there."""
    if not create and not config.db_path.exists():
        print(no_database(config), file=sys.stderr)
        return 1

    async def run() -> int:
        store = Store(config.db_path)
        try:
            await store.open()
        except SchemaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except (OSError, sqlite3.Error) as exc:
            print(f"error: {storage.problem(config, exc)}", file=sys.stderr)
            return 1
        try:
            if store.damaged:
                print(
                    f"error: {config.db_path} is damaged; restore a backup (see the README) "
                    "before changing anything",
                    file=sys.stderr,
                )
                return 1
            reception = Reception(store, config.photo_max_side)
            await reception.load_settings()
            return await action(
                _Services(store, Access(store, config, PasswordHasher()), reception)
            )
        except (sqlite3.OperationalError, StoreUnavailable) as exc:
            print(f"error: {storage.problem(config, exc)}", file=sys.stderr)
            return 1
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    finally:
        ownership.give_to_data_dir_owner(config.data_dir)


def no_database(config: Config) -> str:
    return (
        f"error: there is no database at {config.db_path.resolve()}; name the service's data "
        f"directory with --data-dir DIR (installed: {INSTALLED_DATA_DIR}) or --config FILE"
    )


def _refused(exc: DomainError, exit_code: int) -> int:
    print(f"error: {exc.message}", file=sys.stderr)
    return exit_code


def token_create(args: argparse.Namespace, config: Config) -> int:
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else args.password

    async def create(services: _Services) -> int:
        try:
            lines = [p.strip() for p in args.lines.split(",") if p.strip()] if args.lines else None
            credential = await services.access.create_credential(
                args.role, args.label, args.room, password, CLI, lines
            )
        except InvalidInput as exc:
            return _refused(exc, 2)
        print(credential.token)
        return 0

    return _with_services(config, create)


def printable(text: str) -> str:
    """Text for the terminal: control, format and separator characters written as escapes
    (\\x1b, \\u202e), so a label stored before they were refused cannot drive the terminal."""
    out = []
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            code = ord(char)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            else:
                out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def token_list(args: argparse.Namespace, config: Config) -> int:
    async def show(services: _Services) -> int:
        print(f"{'TOKEN':<9} {'ROLE':<7} {'ACTIVE':<7} {'ROOM':<10} LABEL")
        for c in await services.access.list_credentials():
            print(
                f"{c.token:<9} {c.role.value:<7} {'yes' if c.active else 'no':<7} "
                f"{printable(c.room or '-'):<10} {printable(c.label)}"
                + ("  [password reset required]" if c.password_reset_required else "")
            )
        return 0

    return _with_services(config, show)


def token_deactivate(args: argparse.Namespace, config: Config) -> int:
    async def deactivate(services: _Services) -> int:
        try:
            credential = await services.access.deactivate(args.token, CLI)
        except NotFound:
            print(f"error: no credential with token {args.token}", file=sys.stderr)
            return 1
        print(
            f"deactivated {credential.token} "
            f"({credential.role.value}, {printable(credential.label)})"
        )
        return 0

    return _with_services(config, deactivate)


def _new_password(args: argparse.Namespace) -> str | None:
    """From standard input, or typed twice at the terminal; None if the two differ."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        return None
    return first


def token_password(args: argparse.Namespace, config: Config) -> int:
    password = _new_password(args)
    if password is None:
        print("error: the two passwords differ; nothing changed", file=sys.stderr)
        return 2

    async def change(services: _Services) -> int:
        try:
            credential = await services.access.set_password(args.token, password, CLI)
        except NotFound:
            print(f"error: no credential with token {printable(args.token)}", file=sys.stderr)
            return 1
        except InvalidInput as exc:
            return _refused(exc, 2)
        print(
            f"password set for {printable(credential.token)} "
            f"({credential.role.value}, {printable(credential.label)}); its sessions ended"
        )
        return 0

    return _with_services(config, change)


def import_original_command(args: argparse.Namespace, config: Config) -> int:
    from checkin_appliance import import_original
    from checkin_appliance.store.original import NotAnOriginalDatabase

    async def run(services: _Services) -> int:
        try:
            summary = await import_original.run(
                args.db,
                args.media,
                services.store,
                services.access,
                config.photo_max_side,
                CLI,
                dry_run=args.dry_run,
                accept_weak=args.accept_weak_passwords,
            )
        except NotAnOriginalDatabase as exc:
            print(f"error: {exc}; give the original's db.sqlite3", file=sys.stderr)
            return 2
        except import_original.ImportFailed as exc:
            print(f"error: {exc}; nothing was imported", file=sys.stderr)
            return 1
        except Exception as exc:  # the store refused (locked, full disk): nothing committed
            print(f"error: the import failed ({exc}); nothing was imported", file=sys.stderr)
            return 1
        if args.dry_run:
            print("dry run: nothing was written")
        for line in summary.lines(args.dry_run):
            print(line)
        return 0

    if not args.media.is_dir():
        print(f"error: {args.media} is not a folder (the original's MEDIA_ROOT)", file=sys.stderr)
        return 2
    if args.dry_run and not config.db_path.exists():
        # Nothing here yet: plan against an empty database that is not kept, so a dry run
        # leaves no data directory behind.
        import tempfile

        with tempfile.TemporaryDirectory(prefix="checkin-dry-run-") as scratch:
            return _with_services(
                dataclasses.replace(config, data_dir=Path(scratch)), run, create=True
            )
    return _with_services(config, run, create=True)


def settings_show(args: argparse.Namespace, config: Config) -> int:
    async def show(services: _Services) -> int:
        print(json.dumps(services.reception.settings.public(), indent=2))
        return 0

    return _with_services(config, show)


ORIGINAL_PRESET_WARNING = """\
warning: the original CheckIn's openness is on:
  - anyone on the network can read the waiting queue and the live feed without signing in;
  - wall displays show full names and photos;
  - the kiosk asks the original's intake form, including SSN, Medicaid number and address
    (staff see them in the doctor console; they never reach the wall display or the feed).
  For browser apps on other origins, list them as cors_origins in the config file.
  `checkin-appliance settings preset private` restores the privacy defaults."""


def settings_preset(args: argparse.Namespace, config: Config) -> int:
    async def apply(services: _Services) -> int:
        new = await services.reception.apply_preset(args.name, CLI)
        if args.name == "original":
            print(ORIGINAL_PRESET_WARNING, file=sys.stderr)
        print(json.dumps(new.public(), indent=2))
        return 0

    return _with_services(config, apply)


def settings_set(args: argparse.Namespace, config: Config) -> int:
    # true/false are booleans only for the on/off settings; a clinic may be named "true".
    is_switch = isinstance(getattr(Settings(), args.key, None), bool)
    is_count = type(getattr(Settings(), args.key, None)) is int
    value: object = args.value
    if is_switch and args.value in ("true", "false"):
        value = json.loads(args.value)
    elif is_count and args.value.isascii() and args.value.lstrip("-").isdigit():
        value = int(args.value)
    elif args.key == "intake_form":
        try:
            value = json.loads(args.value)
        except ValueError:
            print('error: intake_form is JSON, e.g. \'{"preset": "original"}\'', file=sys.stderr)
            return 2

    async def change(services: _Services) -> int:
        try:
            new = await services.reception.update_settings({args.key: value}, CLI)
        except InvalidInput as exc:
            return _refused(exc, 2)
        print(json.dumps(new.public(), indent=2))
        return 0

    return _with_services(config, change)


def _audit_entries(config: Config) -> list[AuditEntry] | None:
    if not config.db_path.exists():
        print(no_database(config), file=sys.stderr)
        return None
    try:
        return list(read_audit_log(config.db_path))
    except sqlite3.DatabaseError as exc:
        # e.g. a WAL database in a read-only folder: name what is wrong with the folder.
        why = storage.write_problem(config) or str(exc)
        print(f"error: cannot read the audit trail of {config.db_path}: {why}", file=sys.stderr)
        return None


def audit_show(args: argparse.Namespace, config: Config) -> int:
    entries = _audit_entries(config)
    if entries is None:
        return 1
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


def audit_verify(args: argparse.Namespace, config: Config) -> int:
    entries = _audit_entries(config)
    if entries is None:
        return 1
    try:
        key = audit.load_key(config.data_dir)
    except audit.KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verdict = audit.verify(entries, key)
    if verdict.ok:
        print(f"audit trail intact: {verdict.count} entries, head {verdict.head}")
        if key is None and verdict.count:
            print(f"note: no {audit.KEY_FILE} in {config.data_dir}: checked as an unkeyed chain")
        return 0
    print(
        f"audit trail BROKEN: {verdict.problem} ({verdict.count} entries before it verify)",
        file=sys.stderr,
    )
    return 1


@contextlib.contextmanager
def _stopping_signals_interrupt() -> Iterator[None]:
    """SIGTERM (systemctl stop, a timeout) and SIGHUP end a backup or restore the way Ctrl-C
    does, through its clean-up: no temp copy of the database is left behind."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def purge_command(args: argparse.Namespace, config: Config) -> int:
    async def run(services: _Services) -> int:
        reception = services.reception
        purged = await retention.purge(services.store, reception.settings, CLI, datetime.now(UTC))
        print(json.dumps(purged.public(), indent=2))
        return 0

    return _with_services(config, run)


def backup_command(args: argparse.Namespace, config: Config) -> int:
    from checkin_appliance import backup, system

    try:
        passphrase = _read_passphrase(args, writing=True)
        if passphrase is None and not args.no_encryption:
            raise backup.BackupError(
                "give --passphrase-file FILE or --passphrase-stdin to encrypt the backup (it "
                "holds every patient's name and photo), or --no-encryption for a plain .tar",
                backup.USAGE,
            )
        with _stopping_signals_interrupt():
            try:
                result = backup.backup(config, args.out, force=args.force, passphrase=passphrase)
            except backup.BackupError as exc:  # /admin's System section shows the last one
                system.record_backup(config.data_dir, ok=False, where=args.out, error=exc.message)
                raise
        system.record_backup(
            config.data_dir, ok=True, where=result.path, size_bytes=result.size_bytes
        )
    except backup.BackupError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; no backup was written", file=sys.stderr)
        return 130
    if result.missing_photos:
        print(
            f"warning: {result.missing_photos} photos named in the database were neither in "
            f"it nor in {config.photo_dir}; the backup has the rest",
            file=sys.stderr,
        )
    print(result.summary())
    if storage.write_problem(config) is not None:
        print(
            f"note: not recorded in the audit trail: {storage.write_problem(config)}",
            file=sys.stderr,
        )
        return 0

    async def record(services: _Services) -> int:
        detail = {
            "file": result.path.name,
            "bytes": result.size_bytes,
            "encrypted": passphrase is not None,
        }
        await services.store.record_audit(
            audit.BACKUP, CLI, detail | dataclasses.asdict(result.counts)
        )
        return 0

    return _with_services(config, record)


def restore_command(args: argparse.Namespace, config: Config) -> int:
    from checkin_appliance import backup

    try:
        passphrase = _read_passphrase(args, writing=False)
        with _stopping_signals_interrupt():
            result = backup.restore(
                config,
                args.backup_file,
                passphrase=passphrase,
                allow_unencrypted=args.no_encryption,
            )
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


def _config_file(args: argparse.Namespace) -> Path | None:
    """--config, else the package's own file when the command runs as installed and names no
    data directory: `sudo checkin-appliance token list` must read the service's data, not
    make a new ./data wherever it was typed."""
    if args.config is not None or args.data_dir is not None:
        return args.config
    return INSTALLED_CONFIG if INSTALLED_CONFIG.is_file() else None


def _default_data_dir(args: argparse.Namespace, config_file: Path | None) -> Path | None:
    """The frozen executable without a config file still uses the service's data directory
    when it exists (a copy run from a USB stick on the box)."""
    if (
        config_file is None
        and args.data_dir is None
        and getattr(sys, "frozen", False)
        and INSTALLED_DATA_DIR.is_dir()
    ):
        return INSTALLED_DATA_DIR
    return args.data_dir


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is config_check:
        logs.configure("WARNING")
        return config_check(args)
    flags = {name: getattr(args, name) for name in getattr(args, "config_flags", ())}
    # Renamed or unknown keys are warnings (logged); configure logging before reading.
    running = args.handler in (serve_command, standby_command)  # they log as they go
    logs.configure((flags.get("log_level") or "INFO") if running else "WARNING")
    config_file = _config_file(args)
    try:
        config = load_config(config_file, data_dir=_default_data_dir(args, config_file), **flags)
        if (
            config_file == INSTALLED_CONFIG
            and args.data_dir is None
            and config.data_dir == Config().data_dir
        ):
            # The file 0.1.0 installed (kept by upgrades) names no data_dir: still the service's.
            config = dataclasses.replace(config, data_dir=INSTALLED_DATA_DIR)
    except ConfigError as exc:
        if logs.to_journal(sys.stderr):  # one line at error priority: journalctl -p err
            print(f"<3>checkin-appliance: error: {exc}", file=sys.stderr)
            return 2
        parser.error(str(exc))
    # The server and the standby log at the configured level; other commands only say what
    # went wrong.
    logs.configure(config.log_level if running else "WARNING")
    return args.handler(args, config)


if __name__ == "__main__":
    sys.exit(main())
