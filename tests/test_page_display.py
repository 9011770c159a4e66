"""The waiting-room TV in real Chromium against the real server: check-ins and calls appear
live, the right queue comes back after a server restart, privacy and language follow the
settings without a reload, the queue never scrolls, and sound needs (and gets) one tap."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, Request, Route, WebSocketRoute, expect

from tests.browser import (
    TV,
    screenshot,
    sign_in,
)
from tests.serverproc import HOST, PROXY_VARIABLES, Server, cli_command

ROOM = "Room 3"
LIVE_MS = 1000  # a check-in or a call must be on the TV within a second
OUTAGE_MS = 8000  # the banner shows after 3 s down; allow for a slow machine
RECONNECT_MS = 20000  # feed.js backs off up to 10 s between attempts


class Clinic:
    """The rest of the clinic over the real API: a kiosk and a doctor in Room 3."""

    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.kiosk = {"Authorization": f"Bearer {server.login(server.create_token('form', 'K'))}"}
        doctor = server.create_token("doctor", "Dr. Lee", room=ROOM)
        self.doctor = {"Authorization": f"Bearer {server.login(doctor)}"}

    async def check_in(self, fname: str) -> dict[str, Any]:
        url = f"{self.server.base_url}/api/patients/"
        async with self.http.post(url, json={"fname": fname}, headers=self.kiosk) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()

    async def call_next(self) -> dict[str, Any]:
        url = f"{self.server.base_url}/api/doctors/"
        body = {"action": "call_next"}
        async with self.http.post(url, json=body, headers=self.doctor) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def settings(self, key: str, value: str) -> None:
        result = await self.server.cli_async("settings", "set", key, value)
        assert result.returncode == 0, result.stderr


@pytest.fixture
async def clinic(appliance: Server) -> AsyncIterator[Clinic]:
    async with aiohttp.ClientSession() as http:
        yield Clinic(appliance, http)


async def open_display(browser: Browser, server: Server, **kwargs: Any) -> Page:
    page = await sign_in(browser, server, "queue", "TV", viewport=TV, **kwargs)
    errors: list[str] = []
    SCRIPT_ERRORS[page] = errors
    page.on("pageerror", lambda error: errors.append(str(error)))
    await expect(page).to_have_url(re.compile(r"/display$"))
    await expect(page.locator("body")).not_to_have_class(re.compile(r"is-loading"))
    return page


SCRIPT_ERRORS: dict[Page, list[str]] = {}


@pytest.fixture(autouse=True)
def no_script_errors() -> Iterator[None]:
    """Whatever a test checks, the display's script must never have thrown."""
    SCRIPT_ERRORS.clear()
    yield
    thrown = {str(page.url): errors for page, errors in SCRIPT_ERRORS.items() if errors}
    SCRIPT_ERRORS.clear()
    assert not thrown, thrown


def waiting(page: Page):
    """The visible rows of the waiting list (rows beyond '+N more' are hidden)."""
    return page.locator("#waiting-list").get_by_role("listitem")


def now_called(page: Page):
    return page.locator("#called-current")


def earlier(page: Page):
    return page.get_by_role("list", name="Earlier").get_by_role("listitem")


async def settled(page: Page) -> None:
    """The calm entrance animations have finished: what a person sees a moment later."""
    await page.wait_for_function("() => document.getAnimations().length === 0")


def fits(name_locator):
    return name_locator.evaluate(
        "el => el.scrollWidth <= el.clientWidth + 1 && el.getBoundingClientRect().right"
        " <= el.closest('.called').getBoundingClientRect().right"
    )


@contextlib.contextmanager
def restarted(old: Server) -> Iterator[Server]:
    """`serve` again on the stopped server's data directory AND port, as after a power cut:
    the page keeps its URL and its session, and must find its way back by itself."""
    workdir = old.stdout_path.parent
    stdout_path = workdir / f"server-{old.port}-again.out"
    stderr_path = workdir / f"server-{old.port}-again.err"
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    command = cli_command(
        "serve", "--host", HOST, "--port", str(old.port), "--data-dir", str(old.data_dir)
    )
    # The old socket may linger a moment after the process exits: retry the bind briefly.
    deadline = time.monotonic() + 10
    while True:
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=workdir
            )
        server = Server(old.port, old.data_dir, proc, stdout_path, stderr_path)
        try:
            server.wait_healthy()
            break
        except AssertionError:
            server.stop()
            if "address already in use" not in server.stderr().lower():
                raise
            if time.monotonic() > deadline:
                raise
    try:
        yield server
    finally:
        server.stop()


# --- the live queue --------------------------------------------------------------------


async def test_a_check_in_and_a_call_reach_the_tv_within_a_second(
    browser: Browser,
    appliance: Server,
    clinic: Clinic,
) -> None:
    page = await open_display(browser, appliance)
    await expect(page.get_by_text("No one is waiting", exact=True)).to_be_visible()
    await expect(page.get_by_text("No one has been called yet", exact=True)).to_be_visible()
    await expect(page.locator("#clinic-name")).to_have_text("Clinic")
    await expect(page.locator("#clock")).to_have_text(re.compile(r"\d{1,2}:\d{2}"))
    # This browser lets pages play sound: no button in the way.
    await expect(page.get_by_role("button", name="Tap to enable sound")).to_be_hidden()
    await screenshot(page, "display-empty")

    await clinic.check_in("John Doe")
    await expect(waiting(page).filter(has_text="John D.")).to_be_visible(timeout=LIVE_MS)
    await expect(page.get_by_text("No one is waiting", exact=True)).to_be_hidden()
    await expect(page.locator("#waiting-count")).to_have_text("1 waiting")
    assert "John Doe" not in await page.locator("body").inner_text()  # privacy by default

    called = await clinic.call_next()
    assert called["patient"]["fname"] == "John Doe"
    await expect(now_called(page)).to_contain_text("John D.", timeout=LIVE_MS)
    await expect(now_called(page)).to_contain_text(f"→ {ROOM}")
    await expect(waiting(page)).to_have_count(0)
    await expect(page.get_by_text("No one is waiting", exact=True)).to_be_visible()
    await expect(page.get_by_text("No one has been called yet", exact=True)).to_be_hidden()


async def test_the_tv_shows_the_queue_in_order_and_never_scrolls(
    browser: Browser,
    appliance: Server,
    clinic: Clinic,
) -> None:
    names = [
        "Ana Torres", "Ben Okafor", "Carla Mendes", "David Kim", "Elena Rossi",
        "Farid Haddad", "Grace Liu", "Hugo Martin", "Ines Silva",
    ]  # fmt: skip
    for name in names:
        await clinic.check_in(name)
    page = await open_display(browser, appliance)
    for _ in range(3):
        await clinic.call_next()
    await expect(now_called(page)).to_contain_text("Carla M.")
    await expect(now_called(page)).to_contain_text(ROOM)
    await expect(earlier(page).locator(".earlier__name")).to_have_text(["Ben O.", "Ana T."])
    await expect(waiting(page).locator(".waiting__name")).to_have_text(
        ["David K.", "Elena R.", "Farid H.", "Grace L.", "Hugo M.", "Ines S."]
    )
    await expect(page.locator("#waiting-count")).to_have_text("6 waiting")
    await expect(page.locator(".waiting__page")).to_be_hidden()
    await settled(page)
    await screenshot(page, "display-tv")

    # Ten waiting still fit a 1080p screen whole, in letters legible from across the room.
    for n in range(4):
        await clinic.check_in(f"Walk In{chr(65 + n)}")
    await expect(page.locator("#waiting-count")).to_have_text("10 waiting")
    await expect(waiting(page)).to_have_count(10)
    await expect(page.locator(".waiting__page")).to_be_hidden()
    for n in range(4, 6):
        await clinic.check_in(f"Walk In{chr(65 + n)}")

    # A busy morning: what does not fit is paged ("1/2"), and nothing ever scrolls.
    for n in range(8):
        await clinic.check_in(f"Late Comer{chr(65 + n)}")
    await expect(page.locator("#waiting-count")).to_have_text("20 waiting")
    for viewport in (TV, {"width": 1280, "height": 720}):
        await page.set_viewport_size(viewport)
        mark = page.locator(".waiting__page")
        await expect(mark).to_have_text(re.compile(r"^\d+/\d+$"))
        shown = await waiting(page).count()
        assert 8 <= shown < 20, (viewport, shown)
        assert await page.evaluate(
            "() => document.documentElement.scrollHeight <= innerHeight"
            " && document.documentElement.scrollWidth <= innerWidth"
        )
        rows = waiting(page)
        box = await rows.nth(shown - 1).bounding_box()
        assert box and box["y"] + box["height"] <= viewport["height"], box


async def test_after_a_server_restart_the_tv_shows_exactly_the_right_queue(
    browser: Browser,
    appliance: Server,
    clinic: Clinic,
) -> None:
    page = await open_display(browser, appliance)
    await clinic.check_in("Ann Lee")
    await clinic.check_in("Bob Stone")
    await expect(waiting(page).locator(".waiting__name")).to_have_text(["Ann L.", "Bob S."])
    banner = page.get_by_role("status").filter(has_text="Reconnecting…")
    await expect(banner).to_be_hidden()

    await asyncio.to_thread(appliance.stop)
    await expect(banner).to_be_visible(timeout=OUTAGE_MS)
    # What it knew stays on screen meanwhile.
    await expect(waiting(page).locator(".waiting__name")).to_have_text(["Ann L.", "Bob S."])
    await screenshot(page, "display-reconnecting")

    with restarted(appliance):
        # Changes while the TV is still away: it must catch up on exactly these.
        await clinic.check_in("Cara Diaz")
        await clinic.check_in("Dan Eve")
        assert (await clinic.call_next())["patient"]["fname"] == "Ann Lee"
        await expect(banner).to_be_hidden(timeout=RECONNECT_MS)
        await expect(waiting(page).locator(".waiting__name")).to_have_text(
            ["Bob S.", "Cara D.", "Dan E."]
        )
        await expect(now_called(page)).to_contain_text("Ann L.")
        await expect(now_called(page)).to_contain_text(ROOM)
        await expect(page.locator("#waiting-count")).to_have_text("3 waiting")

        # And it is live again.
        await clinic.check_in("Eva Frost")
        await expect(waiting(page).filter(has_text="Eva F.")).to_be_visible(timeout=LIVE_MS)


# --- settings follow without a reload ----------------------------------------------------


async def test_full_names_and_language_follow_the_settings_live(
    browser: Browser,
    appliance: Server,
    clinic: Clinic,
) -> None:
    await clinic.check_in("Maria Lopez Garcia")
    await clinic.check_in("Tom Baker")
    await clinic.call_next()
    page = await open_display(browser, appliance)
    await expect(waiting(page).locator(".waiting__name")).to_have_text(["Tom B."])
    await expect(now_called(page)).to_contain_text("Maria G.")
    await page.evaluate("window.sameDocument = true")  # gone if the page reloads

    await clinic.settings("display_names", "full")
    await expect(waiting(page).locator(".waiting__name")).to_have_text(["Tom Baker"])
    await expect(now_called(page)).to_contain_text("Maria Lopez Garcia")
    assert await fits(now_called(page).locator(".call__name"))  # a long name shrinks to fit

    await clinic.settings("clinic_name", "Clínica Sol")
    await clinic.settings("language", "es")
    await expect(page.locator("#clinic-name")).to_have_text("Clínica Sol")
    await expect(page.get_by_role("heading", name="En espera")).to_be_visible()
    await expect(page.get_by_role("heading", name="Llamando ahora")).to_be_visible()
    await expect(page.locator("#waiting-count")).to_have_text("1 en espera")
    await expect(page.locator("html")).to_have_attribute("lang", "es")
    await expect(page).to_have_title("Sala de espera · Clínica Sol")
    await settled(page)
    await screenshot(page, "display-es-full-names")

    await clinic.settings("display_names", "first_initial")
    await expect(waiting(page).locator(".waiting__name")).to_have_text(["Tom B."])
    assert await page.evaluate("window.sameDocument === true")


# --- sound ------------------------------------------------------------------------------

# Headless Chromium never blocks audio, whatever --autoplay-policy says. A TV's browser does:
# an AudioContext made before anyone touched the page stays suspended until a real gesture
# resumes it. This puts that rule back, and records what the page plays and says.
BLOCKED_AUDIO = """
(() => {
  const Real = window.AudioContext;
  window.soundLog = { oscillators: 0, spoken: [], timeline: [] };
  const note = (...what) => window.soundLog.timeline.push([...what, performance.now()]);
  window.AudioContext = class extends Real {
    constructor(options) { super(options); this.unlocked = false; }
    get state() { return this.unlocked ? super.state : "suspended"; }
    resume() {
      if (navigator.userActivation.isActive) this.unlocked = true;
      return super.resume();
    }
    createOscillator() {
      window.soundLog.oscillators += 1;
      note("chime");
      return super.createOscillator();
    }
  };
  const fetchReal = window.fetch.bind(window);
  window.fetch = (url, init) => {
    if (String(url).includes("/api/speech/")) note("fetch", String(url));
    return fetchReal(url, init);
  };
  // "ended" noted by a listener added first, before the page's own handler runs.
  const RealAudio = window.Audio;
  window.Audio = class extends RealAudio {
    constructor(...args) { super(...args); this.addEventListener("ended", () => note("ended")); }
  };
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    note("play");
    return play.call(this);
  };
  const speak = speechSynthesis.speak.bind(speechSynthesis);
  speechSynthesis.speak = (u) => {
    if (u.text) window.soundLog.spoken.push({ text: u.text, lang: u.lang });
    if (u.text) setTimeout(() => u.onend && u.onend(), 10); // headless has no voice to finish
    return speak(u);
  };
})();
"""


async def box_cannot_speak(route: Route) -> None:
    await route.fulfill(
        status=503, json={"error": "Spoken calls need espeak-ng.", "code": "speech_unavailable"}
    )


async def test_one_tap_enables_sound_and_calls_chime_and_are_spoken(
    browser: Browser,
    appliance: Server,
    clinic: Clinic,
) -> None:
    await clinic.settings("announce_voice", "true")
    page = await open_display(browser, appliance)
    await clinic.settings("language", "es")
    await expect(page.locator("html")).to_have_attribute("lang", "es")
    # An init script applies from the next document on: reload under a TV browser's rules.
    await page.context.add_init_script(BLOCKED_AUDIO)
    # The box cannot speak here (no espeak-ng): the browser's own voice says the call.
    await page.route(re.compile(r"/api/speech/call/"), box_cannot_speak)
    await page.reload()
    button = page.get_by_role("button", name="Toque para activar el sonido")
    await expect(button).to_be_visible()
    size = await button.bounding_box()
    assert size and size["height"] >= 48 and size["width"] >= 48

    # Before the tap the TV stays silent (the browser would refuse anyway).
    await clinic.check_in("Ana Ruiz")
    await clinic.call_next()
    await expect(now_called(page)).to_contain_text("Ana R.")

    # The keyboard alone is enough: Tab to the button, Enter.
    await page.keyboard.press("Tab")
    await expect(button).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(button).to_be_hidden()
    assert await page.evaluate("window.soundLog") == {
        "oscillators": 0,
        "spoken": [],
        "timeline": [],
    }

    await clinic.check_in("John Doe")
    await clinic.call_next()
    await expect(now_called(page)).to_contain_text("John D.")
    await page.wait_for_function("() => window.soundLog.oscillators > 0")
    await page.wait_for_function("() => window.soundLog.spoken.length > 0")
    spoken = await page.evaluate("window.soundLog.spoken")
    assert spoken == [{"text": f"John D., por favor, pase a {ROOM}.", "lang": "es-ES"}]


async def test_a_call_made_while_the_tv_was_away_is_announced_when_it_is_back(
    browser: Browser,
    appliance: Server,
    clinic: Clinic,
) -> None:
    await clinic.settings("announce_voice", "true")
    page = await open_display(browser, appliance)
    await page.context.add_init_script(BLOCKED_AUDIO)
    # The TV's feed goes through a switch: it can drop the connection and refuse new ones,
    # as a Wi-Fi outage would, while the server (and the doctor) carry on.
    feeds: list[str] = []
    live: list[WebSocketRoute] = []
    network_up = True

    async def switch(ws: WebSocketRoute) -> None:
        feeds.append(ws.url)
        if not network_up:
            await ws.close(code=1011, reason="no network")
            return
        ws.connect_to_server()
        live.append(ws)

    await page.route_web_socket(re.compile(r"/ws/queue/"), switch)
    await page.route(re.compile(r"/api/speech/call/"), box_cannot_speak)
    await page.reload()
    await page.get_by_role("button", name="Tap to enable sound").click()
    await clinic.check_in("John Doe")
    await expect(waiting(page).filter(has_text="John D.")).to_be_visible(timeout=LIVE_MS)
    banner = page.get_by_role("status").filter(has_text="Reconnecting…")

    # The TV's network drops; meanwhile the doctor calls John.
    network_up = False
    await live.pop().close(code=1011, reason="network down")
    await expect(banner).to_be_visible(timeout=OUTAGE_MS)
    await clinic.call_next()
    assert await page.evaluate("window.soundLog.spoken") == []
    network_up = True

    # Back: it asked for what it missed (since=, not a fresh snapshot that would only show
    # the call), so the call is chimed and spoken like any other.
    await expect(banner).to_be_hidden(timeout=RECONNECT_MS)
    await expect(now_called(page)).to_contain_text("John D.")
    await page.wait_for_function("() => window.soundLog.spoken.length > 0")
    spoken = await page.evaluate("window.soundLog.spoken")
    assert spoken == [{"text": f"John D., please go to {ROOM}.", "lang": "en-US"}]
    assert await page.evaluate("window.soundLog.oscillators") > 0
    assert "snapshot=1" in feeds[0] and "since=" not in feeds[0], feeds
    assert len(feeds) >= 2 and all(re.search(r"[?&]since=\d+", url) for url in feeds[1:]), feeds


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed here (apt-get install espeak-ng; CI installs it)",
)
async def test_each_call_chimes_then_plays_the_box_s_speech_one_after_the_other(
    browser: Browser,
    appliance: Server,
    clinic: Clinic,
) -> None:
    """No browser voice needed: the TV plays the box's own rendering of each call, after
    its chime, and two calls never talk over each other."""
    await clinic.settings("announce_voice", "true")
    page = await open_display(browser, appliance)
    await page.context.add_init_script(BLOCKED_AUDIO)
    requests: list[str] = []

    def seen(request: Request) -> None:
        if "/api/speech/" in request.url:
            requests.append(request.url)

    page.on("request", seen)
    await page.reload()
    await page.get_by_role("button", name="Tap to enable sound").click()
    first = await clinic.check_in("John Doe")
    second = await clinic.check_in("Ann Lee")
    await clinic.call_next()
    await page.wait_for_function("() => window.soundLog.timeline.some(e => e[0] === 'play')")
    await clinic.call_next()
    await expect(now_called(page)).to_contain_text("Ann L.")
    await page.wait_for_function(
        "() => window.soundLog.timeline.filter(e => e[0] === 'ended').length === 2",
        timeout=20000,
    )
    timeline = await page.evaluate("window.soundLog.timeline")
    order = [event[0] for event in timeline]
    # Each call: its chime, then the box's audio fetched and played to the end, then the next.
    fetches = [event for event in timeline if event[0] == "fetch"]
    assert [f"entry={first['queue_entry_id']}" in fetches[0][1], len(fetches)] == [True, 2]
    assert f"entry={second['queue_entry_id']}" in fetches[1][1]
    assert all("lang=en" in url and "show=ticket_name" in url for _, url, _ in fetches)
    chimes = [index for index, kind in enumerate(order) if kind == "chime"]
    plays = [index for index, kind in enumerate(order) if kind == "play"]
    ends = [index for index, kind in enumerate(order) if kind == "ended"]
    assert len(plays) == 2 and len(ends) == 2
    assert chimes[0] < plays[0] < ends[0] < plays[1] < ends[1], order
    assert any(ends[0] < chime < plays[1] for chime in chimes), " ".join(order)
    assert requests and len(requests) == 2, requests
    # The box spoke: the browser's voice was not needed.
    assert await page.evaluate("window.soundLog.spoken") == []
    await expect(page.get_by_role("button", name="Tap to enable sound")).to_be_hidden()


async def test_names_on_the_tv_are_bidi_isolated(
    browser: Browser,
    appliance: Server,
    clinic: Clinic,
) -> None:
    """A right-to-left name never reorders the room or the names beside it (issue 13,
    item 11): every name element is its own isolated run."""
    page = await open_display(browser, appliance)
    await clinic.check_in("دانة خليل")
    await clinic.check_in("Ann Lee")
    names = waiting(page).locator(".waiting__name")
    await expect(names).to_have_text(["دانة خ.", "Ann L."])
    for index in range(2):
        assert await names.nth(index).evaluate("n => getComputedStyle(n).unicodeBidi") == "isolate"
    await clinic.call_next()
    call = page.locator(".call__name")
    await expect(call).to_have_text("دانة خ.")
    assert await call.evaluate("n => getComputedStyle(n).unicodeBidi") == "isolate"
