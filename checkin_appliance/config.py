"""Server configuration: defaults, the TOML file, and command-line overrides."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration file or a flag has a value the server cannot use."""


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=lambda: Path("data"))
    # Largest photo a kiosk may upload; the whole multipart body may be a little larger.
    max_photo_bytes: int = 5 * 1024 * 1024
    # Longest side of a stored photo, in pixels.
    photo_max_side: int = 800
    # Seconds between WebSocket pings; a peer that misses the pong is dropped.
    heartbeat: float = 30.0
    # Events buffered per live-feed subscriber before it is disconnected as too slow (1013).
    feed_queue_size: int = 512
    # API session lifetimes, in seconds.
    access_ttl: int = 12 * 3600
    refresh_ttl: int = 30 * 24 * 3600
    # Browser sessions (the pages' cookie), renewed while in use: kiosks and wall displays
    # stay signed in across reboots; doctor and admin browsers sign in again after a week idle.
    device_session_days: int = 400
    staff_session_days: int = 7
    # The event log keeps at least this many events and at least this many hours.
    event_log_keep: int = 10_000
    event_log_keep_hours: int = 24
    # Failed logins (per address, per token) allowed before answering 429.
    login_failures_allowed: int = 5
    log_level: str = "INFO"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "checkin.db"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def photo_dir(self) -> Path:
        return self.media_dir / "patient_images"


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, value: Any) -> Any:
    default = getattr(Config(), name)
    if isinstance(default, Path):
        if not isinstance(value, str | Path):
            raise ConfigError(f"{name} must be a path")
        return Path(value)
    if isinstance(default, bool) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a number or text, not true/false")
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


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Defaults, then the TOML file (if any), then overrides that are not None."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        for key, value in raw.items():
            name = key.replace("-", "_")
            if name not in _FIELDS:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[name] = _coerce(name, value)
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value)
    return Config(**values)
