"""What the package adds around the executable: a unit that stops a restart storm and a
journal that files a failing start at error priority; the avahi service that names the box."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "checkin-appliance.service"
AVAHI = ROOT / "packaging" / "avahi.service"


def sections(text: str) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("["):
            current = found.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return found


def test_a_start_that_keeps_failing_stops_after_a_few_tries() -> None:
    unit = sections(UNIT.read_text())
    # systemd reads the start limit in [Unit] only (in [Service] it is ignored, with a warning).
    interval = int(unit["Unit"]["StartLimitIntervalSec"])
    burst = int(unit["Unit"]["StartLimitBurst"])
    restart_every = float(unit["Service"]["RestartSec"])
    assert unit["Service"]["Restart"] == "on-failure"
    assert 2 <= burst <= 10
    # The limit can trip: `burst` restarts fit in the interval (systemd's default, 5 in 10 s,
    # never did with RestartSec=2 and a start of a few seconds).
    assert burst * (restart_every + 10) < interval


def test_an_uncaught_error_reaches_the_journal_at_its_priority_every_line(
    tmp_path: Path,
) -> None:
    output = tmp_path / "stderr"
    script = (
        "from checkin_appliance import logs; logs.configure('INFO'); raise OSError('disk gone')"
    )
    with output.open("wb") as err:
        info = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        done = subprocess.run(
            [sys.executable, "-c", script], stderr=err, env=env, cwd=ROOT, timeout=60, check=False
        )
    assert done.returncode == 1
    lines = output.read_text().splitlines()
    assert len(lines) > 2, lines  # the traceback, line by line
    assert all(line.startswith("<2>") for line in lines), lines
    assert lines[-1] == "<2>OSError: disk gone"


def test_the_box_announces_its_https_pages_by_name() -> None:
    group = ET.parse(AVAHI).getroot()  # noqa: S314 (our own file)
    assert group.tag == "service-group"
    name = group.find("name")
    assert name is not None and name.get("replace-wildcards") == "yes"
    assert name.text == "Clinic check-in on %h"
    (service,) = group.findall("service")
    assert service.findtext("type") == "_https._tcp"
    assert service.findtext("port") == "443"
    # The port the unit serves HTTPS on.
    assert "--port 443" in UNIT.read_text() and "--tls self-signed" in UNIT.read_text()


def test_a_bad_config_under_systemd_is_one_line_at_error_priority(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("port = 'not a number'\n")
    output = tmp_path / "stderr"
    with output.open("wb") as err:
        info = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        done = subprocess.run(
            [sys.executable, "-m", "checkin_appliance", "serve", "--config", str(config)],
            stderr=err,
            env=env,
            cwd=ROOT,  # this checkout's package, not an installed one
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    (line,) = output.read_text().splitlines()
    assert line.startswith("<3>checkin-appliance: error: ") and "port" in line, line
