"""Configuration: the documented example is the defaults; bad files fail with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkin_appliance.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_the_documented_example_lists_exactly_the_defaults() -> None:
    assert load_config(ROOT / "config.example.toml") == Config()


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('port = 9000\nhost = "192.0.2.1"\ndata_dir = "/srv/x"\n')
    config = load_config(path, port=9100, host=None)
    assert (config.port, config.host, config.data_dir) == (9100, "192.0.2.1", Path("/srv/x"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'red'", "unknown setting 'colour'"),
        ("port = 'eighty'", "port must be a positive whole number"),
        ("port = -1", "port must be a positive whole number"),
        ("heartbeat = true", "heartbeat must be a number"),
        ("port = [", "not valid TOML"),
        ("cors_origins = '*'", "cors_origins must be a list of origins"),
        ("cors_origins = ['*']", "'\\*' is not an origin"),
        ("cors_origins = ['https://frontdesk.clinic.lan/app']", "is not an origin"),
        ("cors_origins = ['frontdesk.clinic.lan']", "is not an origin"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_cors_origins_are_written_as_browsers_send_them(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('cors_origins = ["HTTPS://FrontDesk.Clinic.LAN/", "http://tablet.lan:8080"]\n')
    config = load_config(path)
    assert config.cors_origins == ("https://frontdesk.clinic.lan", "http://tablet.lan:8080")
