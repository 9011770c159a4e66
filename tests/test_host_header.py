"""DNS rebinding (issue 13, item 13): the box answers only to its own names and addresses
and the operator's `allowed_hosts`; a page served under an attacker's name gets 421."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkin_appliance.config import Config
from tests.conftest import StartClinic
from tests.serverproc import Server, http_json, running

OWN = ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST.:8443", "[::1]:8000", "::1"]
FOREIGN = ["attacker.example", "attacker.example:8000", "10.255.255.1", "[2001:db8::1]:80"]


@pytest.mark.parametrize("host", OWN)
async def test_own_names_are_served(start_clinic: StartClinic, host: str) -> None:
    clinic = await start_clinic()
    resp = await clinic.client.get("/healthz", headers={"Host": host})
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("host", FOREIGN)
async def test_foreign_names_get_421_with_a_code(start_clinic: StartClinic, host: str) -> None:
    clinic = await start_clinic()
    for path in ("/healthz", "/api/queue/", "/ws/queue/", "/login"):
        resp = await clinic.client.get(path, headers={"Host": host})
        assert resp.status == 421, (path, await resp.text())
        assert (await resp.json())["code"] == "host_not_allowed"


async def test_allowed_hosts_adds_names(start_clinic: StartClinic, config: Config) -> None:
    clinic = await start_clinic(dataclasses.replace(config, allowed_hosts=("Checkin.Clinic.LAN",)))
    resp = await clinic.client.get("/healthz", headers={"Host": "checkin.clinic.lan:8443"})
    assert resp.status == 200
    resp = await clinic.client.get("/healthz", headers={"Host": "other.clinic.lan"})
    assert resp.status == 421


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("host")) as srv:
        yield srv


def test_real_server_refuses_a_rebound_name(server: Server, tmp_path: Path) -> None:
    status, body = http_json("GET", f"{server.base_url}/healthz", headers={"Host": "evil.test"})
    assert status == 421 and body["code"] == "host_not_allowed", body
    status, _ = http_json("GET", f"{server.base_url}/healthz")  # Host: 127.0.0.1:<port>
    assert status == 200
