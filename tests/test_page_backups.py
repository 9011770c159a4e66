"""/admin's backups section in real Chromium against the real server: the download button
asks the passphrase twice and saves an encrypted backup the CLI restores; a nightly "Run now"
to an unplugged stick says so in the page's words."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from playwright.async_api import expect

from checkin_appliance import backup_schedule
from tests.browser import sign_in
from tests.serverproc import Server, http_json, run_cli

PASSPHRASE = "violet kettle harbour lamp"


@pytest.fixture(autouse=True)
def this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server runs this checkout's code, whatever is installed."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))


async def test_download_button_saves_a_backup_the_cli_restores(
    browser, appliance: Server, tmp_path: Path
) -> None:
    kiosk = appliance.login(appliance.create_token("form", "Kiosk"))
    status, _ = http_json(
        "POST",
        f"{appliance.base_url}/api/patients/",
        {"fname": "Page Backup"},
        {"Authorization": f"Bearer {kiosk}"},
    )
    assert status == 201
    page = await sign_in(browser, appliance, "admin", "Manager")
    await page.goto("/admin")
    await page.locator("#backup-download-passphrase").fill(PASSPHRASE)
    await page.locator("#backup-download-again").fill(PASSPHRASE + "x")
    await page.get_by_role("button", name="Download a backup").click()
    await expect(page.locator("#backup-download-status")).to_have_text(
        "The two passphrases differ."
    )

    await page.locator("#backup-download-again").fill(PASSPHRASE)
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download a backup").click()
    download = await info.value
    assert re.fullmatch(r"checkin-backup-\d{8}-\d{6}\.tar\.age", download.suggested_filename)
    await expect(page.locator("#backup-download-status")).to_have_text(
        f"Saved as {download.suggested_filename}."
    )
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert b"Page Backup" not in saved.read_bytes()
    restored = tmp_path / "restored"
    result = run_cli(
        "restore", str(saved), "--data-dir", str(restored), "--passphrase-stdin", stdin=PASSPHRASE
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(restored / "checkin.db") as db:
        assert [row[0] for row in db.execute("SELECT fname FROM patients")] == ["Page Backup"]
    # The schedule's line says what was made (last-backup.json).
    await page.reload()
    await expect(page.locator("#backup-schedule-state")).to_contain_text("Last backup:")


async def test_run_now_to_an_unplugged_stick_says_so(
    browser, appliance: Server, tmp_path: Path
) -> None:
    stick = tmp_path / "usb"
    stick.mkdir()
    page = await sign_in(browser, appliance, "admin", "Manager")
    await page.goto("/admin")
    await page.locator("#backup-folder").fill(str(stick))
    await page.locator("#backup-keep").fill("7")
    await page.locator("#backup-schedule-passphrase").fill(PASSPHRASE)
    await page.locator("#backup-schedule-again").fill(PASSPHRASE)
    await page.get_by_role("button", name="Save the schedule").click()
    await expect(page.locator("#backup-schedule-status")).to_have_text("Saved.")
    (stick / backup_schedule.MARKER).unlink()  # unplugged
    await page.get_by_role("button", name="Run now").click()
    await expect(page.locator("#backup-schedule-status")).to_have_text(
        "The folder's disk is not there: plug it in."
    )
    await expect(page.locator("#backup-schedule-state")).to_contain_text("Last backup failed")
    assert list(stick.iterdir()) == []
