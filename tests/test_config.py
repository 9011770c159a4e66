"""Configuration: the documented example is the defaults; bad files fail with a clear message."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from checkin_appliance.config import Config, ConfigError, check_config, load_config

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


def test_an_unknown_key_is_a_warning_at_start_not_a_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("colour = 'red'\nport = 9000\n")
    with caplog.at_level(logging.WARNING, logger="checkin_appliance.config"):
        config = load_config(path)
    assert config.port == 9000
    assert "unknown setting 'colour'" in caplog.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Before 013977c: N days unused, renewed while in use, no absolute end.
        ("staff_session_days = 3", {"staff_session_idle_hours": 72, "staff_session_max_days": 7}),
        (
            "staff_session_days = 30",
            {"staff_session_idle_hours": 720, "staff_session_max_days": 30},
        ),
        ("device_session_days = 90", {"device_session_idle_days": 90}),
        # The new key written beside the old one wins.
        (
            "staff_session_days = 3\nstaff_session_idle_hours = 10",
            {"staff_session_idle_hours": 10, "staff_session_max_days": 7},
        ),
    ],
)
def test_renamed_keys_keep_working_with_a_warning_naming_the_new_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, expected: dict[str, int]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text + "\n")
    with caplog.at_level(logging.WARNING, logger="checkin_appliance.config"):
        config = load_config(path)
    assert {name: getattr(config, name) for name in expected} == expected
    old = text.split(" ")[0]
    new = next(iter(expected)) if "staff" in old else "device_session_idle_days"
    assert f"{old!r} was renamed" in caplog.text and new in caplog.text


@pytest.mark.parametrize("text", ["staff_session_days = 0", "device_session_days = 'week'"])
def test_a_bad_value_of_a_renamed_key_still_stops_the_start(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match="whole number of days"):
        load_config(path)


def test_config_check_lists_every_problem_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("colour = 'red'\nstaff_session_days = 2\nport = 'eighty'\nheartbeat = 5\n")
    problems = check_config(path)
    assert len(problems) == 3, problems
    assert any("unknown setting 'colour'" in p for p in problems)
    assert any("'staff_session_days' was renamed" in p for p in problems)
    assert any("port must be a positive whole number" in p for p in problems)
    clean = tmp_path / "clean.toml"
    clean.write_text("heartbeat = 5\n")
    assert check_config(clean) == []
    assert check_config(ROOT / "packaging" / "config.toml") == []
