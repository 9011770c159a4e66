"""The clock helper's units as the package installs them (issue 19, item 12): the RTC is
written by a unit that may open /dev/rtc0 and set the clock, nothing else, and package
removal stops and disables the helper's trigger."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.test_packaging import unavailable

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
UNITS = (
    "checkin-appliance-clock.path",
    "checkin-appliance-clock.service",
    "checkin-appliance-rtc.service",
)
HWCLOCK = "/usr/sbin/hwclock"
MOST_EXPOSURE = 2.0  # systemd-analyze security's score ("OK" up to 4.9); the server is ~1.6


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        unavailable("systemd-analyze is missing (Debian package: systemd)")
    assert tool is not None
    return tool


def settings(name: str) -> list[str]:
    return [
        line
        for line in (SYSTEMD / name).read_text().splitlines()
        if line and not line.startswith(("#", "["))
    ]


def stand_ins(tmp_path: Path) -> Path:
    """The units with their programs replaced by one that exists here (verify wants it)."""
    program = tmp_path / "program"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        text = text.replace("/usr/bin/checkin-appliance ", f"{program} ")
        text = text.replace(f"ExecStart={HWCLOCK} ", f"ExecStart={program} ")
        (units / name).write_text(text)
    return units


def test_the_clock_units_verify_together(tmp_path: Path) -> None:
    units = stand_ins(tmp_path)
    verify = subprocess.run(
        [systemd_analyze(), "verify", *(str(units / name) for name in UNITS)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_the_rtc_is_written_after_the_helper_by_root_with_only_the_clock_and_the_rtc() -> None:
    helper = settings("checkin-appliance-clock.service")
    assert "OnSuccess=checkin-appliance-rtc.service" in helper  # only a clock actually set
    rtc = settings("checkin-appliance-rtc.service")
    assert not any(line.startswith(("User=", "DynamicUser=")) for line in rtc)  # root: rtc0 is 0600
    assert "CapabilityBoundingSet=CAP_SYS_TIME" in rtc  # RTC_SET_TIME; no CAP_DAC_*: no data dir
    assert not any(line.startswith("AmbientCapabilities=") for line in rtc)
    assert [line for line in rtc if line.startswith("Device")] == [
        "DevicePolicy=closed",
        "DeviceAllow=/dev/rtc0 rw",
    ]
    assert not any(line.startswith(("PrivateDevices=", "ProtectClock=")) for line in rtc)
    assert "ProtectSystem=strict" in rtc and not any("ReadWritePaths" in line for line in rtc)
    [start] = [line for line in rtc if line.startswith("ExecStart=")]
    assert start == f"ExecStart={HWCLOCK} --systohc --utc --noadjfile --rtc=/dev/rtc0"
    assert "ConditionPathExists=/dev/rtc0" in rtc  # a box without an RTC skips it
    build = (ROOT / "packaging" / "build-deb.sh").read_text()
    assert "systemd/checkin-appliance-rtc.service" in build


def test_the_rtc_units_exposure_stays_low(tmp_path: Path) -> None:
    units = stand_ins(tmp_path)
    scores = {}
    for name in ("checkin-appliance-rtc.service", "checkin-appliance-clock.service"):
        result = subprocess.run(
            [systemd_analyze(), "security", "--offline=yes", "--no-pager", name],
            capture_output=True, text=True, timeout=60, check=False, cwd=units,
        )  # fmt: skip
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
        if found is None:
            unavailable(f"systemd-analyze security --offline gave no score: {result.stderr}")
        assert found is not None
        scores[name] = float(found[1])
    assert all(score <= MOST_EXPOSURE for score in scores.values()), scores


def run_script(script: str, tmp_path: Path, *arguments: str) -> list[str]:
    """A maintainer script as on a systemd box, with systemctl and init-system-helpers'
    deb-systemd-helper and deb-systemd-invoke that only record ("<tool> <arguments>")."""
    systemd_runs = tmp_path / "run-systemd-system"
    systemd_runs.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    fakes = tmp_path / "bin"
    fakes.mkdir(exist_ok=True)
    for tool in ("systemctl", "deb-systemd-helper", "deb-systemd-invoke"):
        fake = fakes / tool
        fake.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        fake.chmod(0o755)
    text = (ROOT / "packaging" / "debian" / script).read_text()
    copy = tmp_path / script
    text = text.replace("@VERSION@", "1.0").replace("@SCHEMA_CEILING@", "99")  # build-deb.sh's
    copy.write_text(text.replace("/run/systemd/system", str(systemd_runs)))
    calls.unlink(missing_ok=True)
    subprocess.run(
        ["/bin/sh", str(copy), *arguments],
        env={"PATH": f"{fakes}:/usr/bin:/bin"}, check=True, timeout=30,
        capture_output=True,
    )  # fmt: skip
    return calls.read_text().splitlines() if calls.exists() else []


def test_removing_the_package_stops_and_masks_the_clock_helper(tmp_path: Path) -> None:
    prerm = run_script("prerm", tmp_path, "remove")
    stopped = [call.split() for call in prerm if call.split()[1:2] == ["stop"]]
    assert any("checkin-appliance-clock.path" in call for call in stopped), prerm
    # Masked on removal as the service is, so a reinstall restores what the admin had.
    postrm = run_script("postrm", tmp_path, "remove")
    masked = [call.split() for call in postrm if call.startswith("deb-systemd-helper mask ")]
    assert any("checkin-appliance-clock.path" in call for call in masked), postrm
    # Installing enables it (in a chroot too), as the service.
    postinst = [call.split() for call in run_script("postinst", tmp_path, "abort-upgrade", "9.9.9")]
    enabled = [
        c for c in postinst if c[0] == "deb-systemd-helper" and c[1] in ("enable", "update-state")
    ]
    assert any("checkin-appliance-clock.path" in call for call in enabled), postinst
    # An upgrade keeps the helper's trigger as it was.
    assert not any("clock" in call for call in run_script("prerm", tmp_path, "upgrade", "9.9.9"))
