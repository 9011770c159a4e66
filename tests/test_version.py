"""One version from one place (BASE_VERSION plus git at build time), in an order pip and dpkg
agree on; and a server given a newer database (a downgrade) says so in one error line."""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from packaging.version import Version

import checkin_appliance
from tests.serverproc import free_port

ROOT = Path(__file__).resolve().parent.parent
STAMP = ROOT / "packaging" / "stamp_version.py"
SERVE = [sys.executable, "-m", "checkin_appliance", "serve"]


def stamp_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stamp_version", STAMP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_checkout_says_the_base_version_and_no_build_time() -> None:
    assert checkin_appliance.__version__ == checkin_appliance.BASE_VERSION == "0.2.0"
    assert checkin_appliance.__build_time__ is None


def test_the_stamped_version_is_the_base_plus_the_commits_since_and_valid_pep_440() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    stamped = stamp_module().version("0.2.0")
    assert re.fullmatch(r"0\.2\.0(\.post\d+)?(\+g[0-9a-f]{9}(\.dirty)?)?", stamped), stamped
    assert str(Version(stamped)) == stamped


def test_pip_and_dpkg_order_the_stamped_versions_alike() -> None:
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is missing")
    versions = [
        "0.1.0",
        "0.2.0",
        "0.2.0.post1+g0123abcde",
        "0.2.0.post2+g9abcdef01.dirty",
        "0.2.0.post12+g0000000aa",
        "0.2.1",
        "0.10.0",
    ]
    assert sorted(versions, key=Version) == versions
    for older, newer in itertools.pairwise(versions):
        lower = subprocess.run(["dpkg", "--compare-versions", older, "lt", newer], check=False)
        assert lower.returncode == 0, (older, newer)


def test_the_build_module_sets_version_and_an_aware_build_time(tmp_path: Path) -> None:
    package = tmp_path / "checkin_appliance"
    shutil.copytree(ROOT / "checkin_appliance", package, ignore=shutil.ignore_patterns("web"))
    (package / "_build.py").write_text('VERSION = "0.2.0.post3+gabcdef012"\nBUILD_TIME = 86400\n')
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import checkin_appliance as c; print(c.__version__, c.__build_time__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "0.2.0.post3+gabcdef012 1970-01-02 00:00:00+00:00"


@pytest.mark.parametrize("journal", [False, True])
def test_a_database_from_a_newer_version_is_one_error_line(tmp_path: Path, journal: bool) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "checkin.db")
    db.execute("PRAGMA user_version = 999")
    db.close()
    output = tmp_path / "stderr"
    with output.open("wb") as err:
        env = {**os.environ}
        if journal:  # what systemd's JOURNAL_STREAM names when stderr is the journal
            info = os.fstat(err.fileno())
            env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        code = subprocess.run(
            [*SERVE, "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(free_port())],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=False,
        ).returncode
    assert code == 1
    lines = output.read_text().splitlines()
    assert not any("Traceback" in line for line in lines), lines
    errors = [line for line in lines if "ERROR" in line]
    assert len(errors) == 1, lines
    assert "schema version 999, newer than this program" in errors[0]
    assert str(data / "checkin.db") in errors[0]
    if journal:
        assert errors[0].startswith("<3>ERROR "), errors[0]
