"""What an operator meets on the box: `config check`, commands that find the installed data
directory (or say there is no database, never making an empty one), one clear line for an
unwritable or read-only data directory, a backup from a read-only one, and a restore as root
that leaves every file to the service's user.

The server and commands run as real processes; the non-root cases drop to uid 65534 with
setpriv (as root, which CI is)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkin_appliance import cli
from tests.serverproc import HOST, cli_command, free_port, launched, new_database, run_cli

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
CLI_TIMEOUT = 30.0
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="drops to uid 65534 with setpriv (root)")


def run_as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_NOBODY, *cli_command(*args)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user can reach (pytest's tmp_path is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="checkin-operator-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- config check ---------------------------------------------------------------------------


def test_config_check_prints_one_line_per_problem_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("colour = 'red'\nstaff_session_days = 2\nport = 'eighty'\n")
    result = run_cli("config", "check", "--config", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert "staff_session_idle_hours = 48" in result.stdout

    path.write_text("staff_session_idle_hours = 48\n")
    clean = run_cli("config", "check", "--config", str(path))
    assert clean.returncode == 0 and "no problems" in clean.stdout


def test_serve_starts_with_an_unknown_key_and_warns(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("colour = 'red'\nstaff_session_days = 2\n")
    port = free_port()
    command = cli_command(
        "serve", "--config", str(config), "--host", HOST, "--port", str(port),
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    with launched(tmp_path / "run", command, port, tmp_path / "data") as server:
        stderr = server.stderr()
    assert "WARNING" in stderr and "unknown setting 'colour'" in stderr
    assert "'staff_session_days' was renamed" in stderr and "staff_session_idle_hours" in stderr


# --- which data directory -------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["token", "list"], ["settings", "show"], ["audit", "show"], ["purge"]],
    ids=" ".join,
)
def test_a_command_on_a_folder_without_a_database_says_so_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    empty = tmp_path / "somewhere"
    empty.mkdir()
    result = run_cli(*command, "--data-dir", str(empty))
    assert result.returncode == 1
    line = one_line(result)
    assert f"no database at {empty / 'checkin.db'}" in line and "--data-dir" in line
    assert list(empty.iterdir()) == []


def test_as_installed_commands_use_the_package_config_and_its_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service_data = tmp_path / "var-lib"
    new_database(service_data)
    installed = tmp_path / "etc-config.toml"
    installed.write_text(f'data_dir = "{service_data}"\n')
    monkeypatch.setattr(cli, "INSTALLED_CONFIG", installed)
    monkeypatch.chdir(tmp_path)  # where ./data would be made by mistake

    assert cli.main(["settings", "show"]) == 0
    assert '"clinic_name"' in capsys.readouterr().out
    assert not (tmp_path / "data").exists()
    # Naming a data directory still wins over the installed file.
    assert cli.main(["token", "list", "--data-dir", str(tmp_path / "elsewhere")]) == 1
    assert "no database at" in capsys.readouterr().err


def test_the_frozen_executable_without_a_config_uses_the_service_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service_data = tmp_path / "var-lib"
    new_database(service_data)
    monkeypatch.setattr(cli, "INSTALLED_CONFIG", tmp_path / "absent.toml")
    monkeypatch.setattr(cli, "INSTALLED_DATA_DIR", service_data)
    monkeypatch.setattr("sys.frozen", True, raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["settings", "show"]) == 0
    assert '"clinic_name"' in capsys.readouterr().out
    assert not (tmp_path / "data").exists()


def test_the_packaged_config_names_the_service_data_dir() -> None:
    packaged = Path(__file__).resolve().parent.parent / "packaging" / "config.toml"
    config = cli.load_config(packaged)
    assert config.data_dir == cli.INSTALLED_DATA_DIR


# --- unwritable and read-only data directories ----------------------------------------------


@as_root
@pytest.mark.parametrize(
    "command", [["token", "list"], ["settings", "show"], ["purge"]], ids=" ".join
)
def test_commands_on_an_unwritable_data_dir_print_one_line_naming_it(
    open_dir: Path, command: list[str]
) -> None:
    data = open_dir / "data"
    new_database(data)
    for path in [data, *data.iterdir()]:
        path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    result = run_as_nobody(*command, "--data-dir", str(data))
    assert result.returncode == 1
    line = one_line(result)
    assert f"cannot write in the data directory {data}" in line and "permission denied" in line


@as_root
def test_a_read_only_database_file_is_named(open_dir: Path) -> None:
    data = open_dir / "data"
    new_database(data)
    for path in [data, *data.iterdir()]:
        os.chown(path, NOBODY, NOBODY)
    (data / "checkin.db").chmod(0o444)
    # Reading still works; a change says what is in the way.
    assert run_as_nobody("token", "list", "--data-dir", str(data)).returncode == 0
    result = run_as_nobody("settings", "set", "clinic_name", "North", "--data-dir", str(data))
    assert result.returncode == 1
    assert f"cannot write {data / 'checkin.db'}: permission denied" in one_line(result)
    port = free_port()
    served = run_as_nobody("serve", "--data-dir", str(data), "--port", str(port))
    assert served.returncode == 1
    assert f"cannot write {data / 'checkin.db'}" in served.stderr, served.stderr
    assert "cannot serve on" not in served.stderr and "Traceback" not in served.stderr


@as_root
def test_serve_on_an_unwritable_data_dir_names_it_not_the_port(open_dir: Path) -> None:
    data = open_dir / "data"
    data.mkdir(mode=0o755)
    port = free_port()
    result = run_as_nobody("serve", "--data-dir", str(data), "--port", str(port))
    assert result.returncode == 1
    assert f"cannot write in the data directory {data}" in result.stderr
    assert "cannot serve on" not in result.stderr and "Traceback" not in result.stderr


@as_root
def test_serve_and_commands_on_a_read_only_mount_say_read_only(open_dir: Path) -> None:
    data = open_dir / "data"
    new_database(data)
    subprocess.run(["mount", "--bind", str(data), str(data)], check=True, timeout=10)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(data)], check=True, timeout=10)
        for command in (["token", "list"], ["audit", "show"]):
            listing = run_cli(*command, "--data-dir", str(data))
            assert listing.returncode == 1
            assert f"{data} is on a read-only file system" in one_line(listing)
        port = free_port()
        served = subprocess.run(
            cli_command("serve", "--data-dir", str(data), "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert served.returncode == 1
        assert "read-only file system" in served.stderr and "cannot serve on" not in served.stderr
        # The rescue case: the backup still reads it, as root, with nothing written there.
        out = open_dir / "out"
        out.mkdir()
        backup = run_cli("backup", str(out), "--no-encryption", "--data-dir", str(data))
        assert backup.returncode == 0, backup.stderr
        assert len(list(out.iterdir())) == 1
    finally:
        subprocess.run(["umount", str(data)], check=True, timeout=10)


@as_root
def test_backup_from_a_data_dir_it_cannot_write_in(open_dir: Path) -> None:
    data = open_dir / "data"
    new_database(data)
    for path in [data, *data.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    before = sorted(p.name for p in data.iterdir())
    out = open_dir / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    result = run_as_nobody("backup", str(out), "--no-encryption", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert "backup written to" in result.stdout
    assert "not recorded in the audit trail" in result.stderr
    assert sorted(p.name for p in data.iterdir()) == before  # no -wal, -shm or lock left
    restored = open_dir / "check"
    assert run_cli("restore", str(next(out.iterdir())), "--data-dir", str(restored),
                   "--no-encryption").returncode == 0  # fmt: skip


# --- restore as root ------------------------------------------------------------------------


def owners(data_dir: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(data_dir)): (path.lstat().st_uid, path.lstat().st_gid)
        for path in data_dir.rglob("*")
    }


@as_root
def test_restore_as_root_into_a_never_started_dir_leaves_it_to_its_owner(open_dir: Path) -> None:
    source = open_dir / "source"
    new_database(source)
    out = open_dir / "backup.tar"
    made = run_cli("backup", str(out), "--no-encryption", "--data-dir", str(source))
    assert made.returncode == 0, made.stderr

    box = open_dir / "box"
    box.mkdir(mode=0o750)
    os.chown(box, NOBODY, NOBODY)
    restored = run_cli("restore", str(out), "--data-dir", str(box), "--no-encryption")
    assert restored.returncode == 0, restored.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in box.iterdir()}
    assert {"checkin.db", "checkin.lock"} <= set(modes)
    assert "media" not in modes  # the database holds the photos
    wrong = {name: who for name, who in owners(box).items() if who != (NOBODY, NOBODY)}
    assert wrong == {}, wrong
    # A command run as root on it (the server stopped) leaves nothing of root's either.
    created = run_cli(
        "token", "create", "--role", "admin", "--label", "Desk", "--password-stdin",
        "--data-dir", str(box), stdin="correct horse battery\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    wrong = {name: who for name, who in owners(box).items() if who != (NOBODY, NOBODY)}
    assert wrong == {}, wrong
    assert modes == {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in box.iterdir() if p.name in modes
    }

    port = free_port()
    command = [*AS_NOBODY, *cli_command("serve", "--host", HOST, "--port", str(port),
                                        "--data-dir", str(box))]  # fmt: skip
    with contextlib.ExitStack() as stack:
        run = open_dir / "run"
        run.mkdir(mode=0o777)
        run.chmod(0o777)
        server = stack.enter_context(launched(run, command, port, box))
        assert server.proc.poll() is None
    wrong = {name: who for name, who in owners(box).items() if who != (NOBODY, NOBODY)}
    assert wrong == {}, wrong


@as_root
def test_a_command_as_root_that_upgrades_the_schema_leaves_nothing_of_roots(
    open_dir: Path,
) -> None:
    from tests.test_upgrade_backup import old_database

    box = open_dir / "box"
    box.mkdir(mode=0o750)
    old_database(box / "checkin.db")
    for path in [box, *box.iterdir()]:
        os.chown(path, NOBODY, NOBODY)
    listing = run_cli("token", "list", "--data-dir", str(box))
    assert listing.returncode == 0, listing.stderr
    assert len(list((box / "pre-upgrade").iterdir())) == 1
    wrong = {name: who for name, who in owners(box).items() if who != (NOBODY, NOBODY)}
    assert wrong == {}, wrong


@as_root
def test_serve_as_root_on_the_services_data_dir_gives_it_all_back(open_dir: Path) -> None:
    box = open_dir / "box"
    box.mkdir(mode=0o750)
    os.chown(box, NOBODY, NOBODY)
    port = free_port()
    command = cli_command("serve", "--host", HOST, "--port", str(port), "--data-dir", str(box))
    with launched(open_dir / "run", command, port, box):
        pass
    assert {"checkin.db", "checkin.lock", "photo-links.key"} <= {p.name for p in box.iterdir()}
    wrong = {name: who for name, who in owners(box).items() if who != (NOBODY, NOBODY)}
    assert wrong == {}, wrong


@as_root
def test_a_lock_file_left_by_root_is_named(open_dir: Path) -> None:
    data = open_dir / "data"
    new_database(data)
    for path in [data, *data.iterdir()]:
        os.chown(path, NOBODY, NOBODY)
    lock = data / "checkin.lock"
    lock.touch(mode=0o600)
    os.chown(lock, 0, 0)
    port = free_port()
    served = run_as_nobody("serve", "--data-dir", str(data), "--port", str(port))
    assert served.returncode == 1
    assert f"cannot write {lock}: permission denied (owner uid 0" in served.stderr, served.stderr
